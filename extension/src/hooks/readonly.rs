//! Read-only mode (`spock.readonly`, behaviour.md §14): before each
//! statement of a client session whose user is not a superuser, while the
//! mode is not `off`, the transaction is made read-only, so PostgreSQL's
//! own checks refuse DML, DDL, `TRUNCATE`, `nextval` and other writes with
//! `25006` and let queries, `COPY ... TO`, `VACUUM` and `ANALYZE` through.
//! Background workers (spock's apply and table-sync workers among them) and
//! walsenders are not client sessions and are left alone; in mode `all`
//! the apply workers stop by themselves (`apply/stream.rs`, `workers/manager.rs`).

use pgrx::prelude::*;

use crate::guc::{self, ReadOnly};

/// Whether the mode restricts client sessions (`local`, `user` or `all`).
pub fn restricts_sessions() -> bool {
    guc::READONLY.get() != ReadOnly::Off
}

/// Whether apply workers must stop applying (`all`).
pub fn stops_apply() -> bool {
    guc::READONLY.get() == ReadOnly::All
}

/// Makes the current transaction read-only when the mode applies to this
/// session: before every statement, so a session cannot switch it back.
pub fn restrict() {
    if !restricts_sessions() {
        return;
    }
    // SAFETY: reads the process type and the current user's superuser
    // status, then sets the transaction's read-only flag (reset by the next
    // transaction start), as SET TRANSACTION READ ONLY does.
    unsafe {
        if pg_sys::MyBackendType != pg_sys::BackendType::B_BACKEND || pg_sys::superuser() {
            return;
        }
        pg_sys::XactReadOnly = true;
    }
}
