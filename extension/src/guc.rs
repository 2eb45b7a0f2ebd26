//! Configuration parameters of the extension (sql-api.md §7) that the
//! replication engine uses today.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

/// `spock.synchronous_commit`: apply transactions commit with
/// `synchronous_commit = local` when on, `off` when off.
pub static SYNCHRONOUS_COMMIT: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.apply_idle_timeout` (s): reconnect when nothing arrives for this long; 0 disables.
pub static APPLY_IDLE_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(300);
/// `spock.extra_connection_options`: libpq keywords put before every DSN.
pub static EXTRA_CONNECTION_OPTIONS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
/// `spock.restart_delay_default` (ms): delay before a failed apply worker is restarted.
pub static RESTART_DELAY_DEFAULT: GucSetting<i32> = GucSetting::<i32>::new(5000);
/// `spock.require_core_patches`: refuse to start workers when a core patch is missing.
pub static REQUIRE_CORE_PATCHES: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `spock.apply_as_superuser`: apply changes with the worker's superuser
/// rights instead of each table owner's (off by default; for setups that
/// relied on the old behaviour and trust every table owner).
pub static APPLY_AS_SUPERUSER: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"spock.synchronous_commit",
        c"Commit applied transactions with synchronous_commit = local instead of off.",
        c"Progress reported to providers only ever covers locally flushed transactions, whatever this says.",
        &SYNCHRONOUS_COMMIT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"spock.apply_idle_timeout",
        c"Seconds without any message from the provider after which an apply worker reconnects.",
        c"0 disables the check.",
        &APPLY_IDLE_TIMEOUT,
        0,
        i32::MAX / 1000,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"spock.extra_connection_options",
        c"libpq connection options placed before every connection string spock uses.",
        c"Values in the connection string itself win.",
        &EXTRA_CONNECTION_OPTIONS,
        GucContext::Sighup,
        // It may hold credentials (sslpassword, passfile, ...).
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"spock.restart_delay_default",
        c"Milliseconds before an apply worker that exited with an error is restarted.",
        c"",
        &RESTART_DELAY_DEFAULT,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"spock.require_core_patches",
        c"Refuse to start spock's workers when the server lacks one of the core patches.",
        c"When off, features that need a missing patch are disabled with a warning instead.",
        &REQUIRE_CORE_PATCHES,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"spock.apply_as_superuser",
        c"Apply replicated changes with the apply worker's superuser rights instead of each table owner's.",
        c"Off (the default): triggers, defaults and other code reached while applying a table's changes run \
          as the table's owner in a security-restricted operation. On: they run as the superuser the worker \
          runs as; only for setups that rely on that and trust every table owner.",
        &APPLY_AS_SUPERUSER,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// Whether `track_commit_timestamp` is on.
pub fn track_commit_timestamp() -> bool {
    // SAFETY: reads a setting by name; the returned string is owned by the
    // GUC machinery and only read here.
    unsafe {
        let v = pg_sys::GetConfigOption(c"track_commit_timestamp".as_ptr(), false, false);
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"on"
    }
}

/// `spock.extra_connection_options` as a string.
pub fn extra_connection_options() -> String {
    EXTRA_CONNECTION_OPTIONS.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}
