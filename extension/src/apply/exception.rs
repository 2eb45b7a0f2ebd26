//! Apply errors (behaviour.md §8): where in a remote transaction the
//! worker is (so that the error it dies of can be pinned to an operation),
//! turning a permanent error into a failed transaction to handle in
//! exception mode by the next worker, and the `spock.exception_log` rows of
//! that handling. The rules are `spock_core::exception`.
//!
//! A failed transaction is not kept in memory: the worker exits, the next
//! one receives the transaction again from the provider (its origin has not
//! moved past it) and handles it in exception mode, which therefore also
//! holds after a restart in the middle of the handling.

use std::cell::Cell;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use spock_core::exception::{self, is_transient, unpack_sqlstate};
use spock_core::protocol::{Tuple, Value};

use super::conflict::InvolvedRow;
use super::relmap::RemoteRel;
use crate::catalog::{self, exception_log};
use crate::workers::registry::{self, PendingException};

/// Where the worker is in the stream.
#[derive(Clone, Copy, Debug, Default)]
struct Position {
    /// Commit LSN of the remote transaction being applied; 0 between them.
    commit_lsn: u64,
    /// 1-based position of the operation being applied.
    counter: u32,
    /// The transaction is already being handled in exception mode.
    handling: bool,
}

thread_local! {
    static POSITION: Cell<Position> = Cell::new(Position::default());
}

/// A remote transaction begins (`handling`: in exception mode).
pub fn enter_transaction(commit_lsn: u64, handling: bool) {
    POSITION.set(Position { commit_lsn, counter: 0, handling });
}

/// The next operation of the transaction begins; returns its position.
pub fn next_operation() -> u32 {
    let mut p = POSITION.get();
    p.counter += 1;
    POSITION.set(p);
    p.counter
}

/// The transaction committed.
pub fn leave_transaction() {
    POSITION.set(Position::default());
}

/// The SQLSTATE and message of a caught error.
pub fn error_parts(e: &CaughtError) -> (String, String) {
    let (code, message) = match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
            (r.sql_error_code(), r.message().to_string())
        }
        CaughtError::RustPanic { ereport, .. } => (ereport.sql_error_code(), ereport.message().to_string()),
    };
    (unpack_sqlstate(code as i32), message)
}

/// Called with the error the worker is about to exit with: a permanent
/// error inside a remote transaction that is not yet being handled makes
/// that transaction one to handle in exception mode. Transient errors, and
/// failures while handling, are retried as they are.
pub fn on_worker_error(dboid: u32, sub_id: u32, e: &CaughtError) {
    let p = POSITION.get();
    let (sqlstate, message) = error_parts(e);
    if p.handling {
        // Tried again after spock.restart_delay_default, still in exception mode.
        registry::exception_handling_failed(dboid, sub_id);
        return;
    }
    if p.commit_lsn == 0 || is_transient(&sqlstate) {
        return;
    }
    registry::remember_exception(
        dboid,
        sub_id,
        &PendingException {
            commit_lsn: p.commit_lsn,
            counter: p.counter,
            error: exception::failed_text(&sqlstate, &message),
        },
    );
}

/// The remote transaction being handled, for its log rows.
#[derive(Clone, Copy, Debug)]
pub struct FailedXact {
    pub origin: u32,
    pub commit_ts: i64,
    pub xid: u32,
}

/// One operation as `exception_log` shows it.
pub struct Operation<'a> {
    pub counter: u32,
    pub rel: Option<&'a RemoteRel>,
    pub kind: &'a str,
    pub old: Option<&'a Tuple>,
    pub new: Option<&'a Tuple>,
    /// A replicated DDL statement and the role it ran as.
    pub ddl: Option<(&'a str, &'a str)>,
}

/// A row as JSON keyed by the provider's column names, values as text.
fn tuple_json(rel: &RemoteRel, tuple: &Tuple) -> String {
    exception::text_row_json(rel.columns.iter().zip(tuple.0.iter()).map(|(c, v)| {
        let value = match v {
            Value::Null => Some(None),
            Value::Text(bytes) => Some(Some(std::str::from_utf8(bytes).unwrap_or("<not UTF-8>"))),
            Value::Binary(_) => Some(Some("<binary>")),
            Value::Unchanged => None,
        };
        (c.name.as_str(), value)
    }))
}

/// Writes one `exception_log` row, in the current transaction.
pub fn log_operation(
    xact: &FailedXact,
    op: &Operation<'_>,
    local: Option<&InvolvedRow>,
    error_message: &str,
) {
    let old = op.rel.zip(op.old).map(|(r, t)| tuple_json(r, t));
    let new = op.rel.zip(op.new).map(|(r, t)| tuple_json(r, t));
    let entry = exception_log::Entry {
        remote_origin: xact.origin,
        remote_commit_ts: xact.commit_ts,
        command_counter: op.counter,
        remote_xid: xact.xid,
        local_origin: local.and_then(|l| l.origin),
        local_commit_ts: local.and_then(|l| l.commit_ts),
        local_tup: local.and_then(|l| l.json.as_deref()),
        table_schema: op.rel.map(|r| r.nspname.as_str()),
        table_name: op.rel.map(|r| r.relname.as_str()),
        operation: op.kind,
        remote_old_tup: old.as_deref(),
        remote_new_tup: new.as_deref(),
        ddl_statement: op.ddl.map(|d| d.0),
        ddl_user: op.ddl.map(|d| d.1),
        error_message,
    };
    catalog::with_catalog_owner_rights(|| Spi::connect_mut(|client| exception_log::insert(client, &entry)));
}
