//! Raising errors with a SQLSTATE, a message that names the object, and an
//! optional hint; connection strings in messages are always masked.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use spock_core::dsn::mask_passwords;

/// Raises an ERROR. Never returns.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>) -> ! {
    ErrorReport::new(code, mask_passwords(&message.into()), "spock").report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises an ERROR with a hint. Never returns.
pub fn raise_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, mask_passwords(&message.into()), "spock")
        .set_hint(mask_passwords(&hint.into()))
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A superuser check for management functions (sql-api.md §1).
pub fn require_superuser(what: &str) {
    // SAFETY: reads the session's user id.
    if !unsafe { pg_sys::superuser() } {
        raise(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("only superusers can call {what}"));
    }
}

/// The check that the library was preloaded, for functions that need its
/// shared memory or workers.
pub fn require_preloaded(what: &str) {
    if !crate::workers::registry::available() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what} needs the spock library loaded at server start"),
            "Add spock to shared_preload_libraries in postgresql.conf and restart the server.",
        );
    }
}
