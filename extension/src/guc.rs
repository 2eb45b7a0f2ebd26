//! Configuration parameters of the extension (sql-api.md §7) that the
//! replication engine uses today.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

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
        GucFlags::default(),
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
}

/// `spock.extra_connection_options` as a string.
pub fn extra_connection_options() -> String {
    EXTRA_CONNECTION_OPTIONS.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}
