//! The SQL API (sql-api.md §4): nodes and interfaces, replication sets,
//! subscriptions, sync events and waiting, information functions. Each
//! function's SQL signature is written out with the names, types and
//! defaults the specification lists; the Rust side checks arguments and
//! privileges, then calls `catalog` (spock's tables), `remote` (other
//! nodes) and `workers::registry` (waking or stopping workers). Nothing
//! here is used by the workers.

pub mod conflict;
pub mod ddl;
pub mod info;
pub mod node;
pub mod peers;
pub mod progress;
pub mod readonly;
pub mod repset;
pub mod seq;
pub mod slots;
pub mod stats;
pub mod sub;
pub mod sync;

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{PgXactCallbackEvent, register_xact_callback};

use crate::errors::raise;

/// A `name` argument as a Rust string.
pub fn name_arg(v: Option<&CStr>) -> Option<String> {
    v.map(|c| c.to_string_lossy().into_owned())
}

/// A required argument of a non-STRICT function: NULL is `22004`.
pub fn required<T>(v: Option<T>, arg: &str, function: &str) -> T {
    v.unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{arg} of {function} must not be NULL"))
    })
}

/// Schema and name of a relation (`42P01` when it does not exist).
pub fn relation_names(relid: pg_sys::Oid) -> (String, String) {
    // SAFETY: syscache lookups of a relation; the names are copied.
    unsafe {
        let rel = pg_sys::get_rel_name(relid);
        if rel.is_null() {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", relid.to_u32()),
            );
        }
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        (
            CStr::from_ptr(nsp).to_string_lossy().into_owned(),
            CStr::from_ptr(rel).to_string_lossy().into_owned(),
        )
    }
}

/// The current database's name.
pub fn current_database() -> String {
    // SAFETY: MyDatabaseId is set in a backend connected to a database; the
    // name is palloc'd and copied at once.
    unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() { String::new() } else { CStr::from_ptr(name).to_string_lossy().into_owned() }
    }
}

/// The current database's oid.
pub fn my_database() -> u32 {
    // SAFETY: reads this backend's database, set at connection start.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Whether the current user may call replication-level functions: a
/// superuser or a role with the REPLICATION attribute.
pub fn require_replication_privilege(what: &str) {
    // SAFETY: reads the session's current user and its role attributes.
    let ok = unsafe { pg_sys::superuser() || pg_sys::has_rolreplication(pg_sys::GetUserId()) };
    if !ok {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{what} needs superuser or the REPLICATION attribute"),
        );
    }
}

/// Runs `f` when the current transaction commits, just before the commit is
/// final (after deferred triggers), with a snapshot for the catalog reads it
/// makes; an error in `f` aborts the commit. Nothing runs on a rollback. For
/// the steps of a function that no rollback could undo.
pub fn before_commit<F>(f: F)
where
    F: FnOnce() + std::panic::UnwindSafe + std::panic::RefUnwindSafe + 'static,
{
    register_xact_callback(PgXactCallbackEvent::PreCommit, move || {
        // SAFETY: the transaction is still in progress at pre-commit; the
        // snapshot is popped again below, or by the abort if `f` fails.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
        f();
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    });
}
