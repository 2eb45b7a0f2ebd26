//! The apply worker of one subscription (behaviour.md §3, §19): started by
//! the manager, it first copies the provider's structure and data when the
//! subscription asked for it (`sync`), then streams from the provider
//! (`stream`), applies each remote transaction as one local transaction
//! stamped with the origin and the origin's commit timestamp (`dispatch`),
//! maps provider tables onto local ones (`relmap`) and changes rows through the executor (`rowops`) with the
//! table owner's rights (`owner`). The error it exits with is kept in the
//! worker registry, where `sub_show_status` shows it. Tables copied later
//! (`repset_add_table(..., synchronize_data := true)`, `sub_resync_table`)
//! are copied and caught up by the subscription's table-sync worker
//! (`tablesync`) while the apply worker streams on, and handed over to it.
//! Transactions a forwarding provider sends from other nodes are committed
//! under the local origin of the node they came from (`forward`).

mod conflict;
mod delta;
mod dispatch;
mod exception;
mod forward;
mod owner;
mod pause;
mod progress;
mod queue;
mod relmap;
mod rowops;
mod stream;
mod subxact;
mod sync;
mod tablesync;
mod wait;

use std::ffi::CString;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;

use crate::catalog;
use crate::errors::raise;
use crate::guc;
use crate::workers::registry::{self, Kind};

static mut CONTEXT_NAME: Option<CString> = None;

// errcontext() is a macro over these two; pgrx does not bind them.
unsafe extern "C-unwind" {
    fn set_errcontext_domain(domain: *const std::ffi::c_char) -> std::ffi::c_int;
    fn errcontext_msg(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
    /// PostgreSQL's SIGTERM handler for backends (pgrx binds it only as a
    /// Rust wrapper, which cannot be a signal handler).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// Adds "spock apply worker for subscription X" (or the table-sync
/// worker's equivalent) to every message the worker logs.
#[pg_guard]
unsafe extern "C-unwind" fn error_context(_arg: *mut std::ffi::c_void) {
    // SAFETY: the worker is single-threaded; the name is set once, before
    // the callback is installed, and lives for the process.
    #[allow(static_mut_refs)]
    unsafe {
        if let Some(name) = CONTEXT_NAME.as_ref() {
            set_errcontext_domain(std::ptr::null());
            errcontext_msg(c"%s".as_ptr(), name.as_ptr());
        }
    }
}

static mut CONTEXT_CALLBACK: pg_sys::ErrorContextCallback = pg_sys::ErrorContextCallback {
    previous: std::ptr::null_mut(),
    callback: None,
    arg: std::ptr::null_mut(),
};

#[allow(static_mut_refs)]
fn push_error_context(context: &str) {
    // SAFETY: a process-lifetime callback at the bottom of the context
    // stack of this single-threaded worker.
    unsafe {
        CONTEXT_NAME = Some(CString::new(context).expect("no NUL in subscription names"));
        CONTEXT_CALLBACK.callback = Some(error_context);
        CONTEXT_CALLBACK.previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = &raw mut CONTEXT_CALLBACK;
    }
}

fn set_config(name: &str, value: &str) {
    let name = CString::new(name).expect("no NUL");
    let value = CString::new(value).expect("no NUL");
    // SAFETY: sets a configuration parameter for this process.
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        )
    };
}

/// The start of an apply or table-sync worker of the subscription in
/// `arg` (its database in the worker's extra data): signals, the database
/// connection, its registry slot, and the subscription, which must exist
/// and be enabled (`None`: the worker has nothing to do and exits).
fn start_worker(arg: pg_sys::Datum, kind: Kind) -> Option<(catalog::subscription::Subscription, u32)> {
    let sub_id = arg.value() as u32;
    let dboid: u32 = BackgroundWorker::get_extra().parse().unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    terminate_on_sigterm();
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    if !registry::claim(kind, dboid, sub_id) {
        pgrx::log!("spock: another {kind:?} worker already runs subscription {sub_id}; this one exits");
        return None;
    }
    let sub =
        BackgroundWorker::transaction(|| Spi::connect(|client| catalog::subscription::by_id(client, sub_id)));
    let sub = sub.filter(|s| s.enabled)?;
    if kind == Kind::Apply {
        crate::stats::start_apply_worker(dboid, sub_id, sub.created_at);
    } else {
        crate::stats::set_subscription(sub_id);
    }
    Some((sub, dboid))
}

/// The session settings of apply and table-sync workers.
fn apply_session_settings(application_name: &str) {
    set_config("application_name", application_name);
    set_config("session_replication_role", "replica");
    set_config("synchronous_commit", if guc::SYNCHRONOUS_COMMIT.get() { "local" } else { "off" });
}

/// SIGTERM ends the worker through PostgreSQL's own handler: the next
/// interrupt check (in every wait, also while connecting or waiting for the
/// provider) exits the process.
fn terminate_on_sigterm() {
    // SAFETY: installs PostgreSQL's `die` handler for SIGTERM in this
    // background worker, as PostgreSQL's own apply workers do.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(libc::SIGTERM, Some(postgres_die));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(libc::SIGTERM, Some(postgres_die));
    }
}

/// The entry point of an apply worker (started by the manager).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_apply_main(arg: pg_sys::Datum) {
    let Some((sub, dboid)) = start_worker(arg, Kind::Apply) else { return };
    let sub_id = sub.sub_id;
    push_error_context(&format!("spock apply worker for subscription {}", sub.name));
    apply_session_settings(&sub.name);
    PgTryBuilder::new(|| {
        if !guc::track_commit_timestamp() {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "apply workers need track_commit_timestamp = on; set it and restart the server",
            );
        }
        stream::Stream::new(sub, dboid).run()
    })
    .catch_others(|e| {
        exception::on_worker_error(dboid, sub_id, &e);
        registry::record_error(dboid, sub_id, &exception::error_parts(&e).1);
        e.rethrow()
    })
    .execute();
}
