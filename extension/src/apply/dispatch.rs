//! Dispatch of decoded protocol messages: each remote transaction becomes
//! one local transaction committed with the replication origin's position
//! and the origin's commit time; each change is applied in a memory context
//! of its own; sync events outside a transaction move the origin on. The
//! flush bookkeeping that feedback reports from lives here, next to the
//! commits it tracks.

use pgrx::prelude::*;
use spock_core::protocol::{Message, truncate_flags};
use spock_core::stream::FlushTracker;

use super::rowops::Applier;
use crate::catalog::origin;
use crate::catalog::subscription::Subscription;
use crate::errors::raise;

pub struct Dispatcher {
    applier: Applier,
    flush: FlushTracker,
    in_transaction: bool,
    /// When `spock.resolutions` was last pruned by this worker.
    last_prune: Option<std::time::Instant>,
    /// Memory for applying one change, reset after each (what the executor,
    /// type input functions and catalog lookups allocate for a row must not
    /// pile up over a transaction of a million rows).
    change_cxt: pg_sys::MemoryContext,
}

impl Dispatcher {
    pub fn new(sub: &Subscription) -> Dispatcher {
        Dispatcher {
            applier: Applier::new(sub),
            flush: FlushTracker::default(),
            in_transaction: false,
            last_prune: None,
            // SAFETY: a process-lifetime memory context under TopMemoryContext.
            change_cxt: unsafe {
                pg_sys::AllocSetContextCreateExtended(
                    pg_sys::TopMemoryContext,
                    c"spock apply change".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                )
            },
        }
    }

    /// The highest provider position whose transactions are all flushed
    /// locally (see `FlushTracker`).
    pub fn flushed(&mut self, local_flush: u64, received: u64) -> u64 {
        self.flush.flushed(local_flush, received, self.in_transaction)
    }

    /// Runs `f` in the per-change memory context, then frees what it allocated.
    fn in_change_context(&mut self, f: impl FnOnce(&mut Applier)) {
        // SAFETY: switches to a context this worker owns and resets it after.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(self.change_cxt);
            f(&mut self.applier);
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(self.change_cxt);
        }
    }

    fn require_transaction(&self, what: &str) {
        if !self.in_transaction {
            raise(
                PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                format!("the provider sent {what} outside a transaction"),
            );
        }
    }

    pub fn handle(&mut self, msg: Message) {
        match msg {
            Message::Begin { final_lsn, commit_time, xid, origin_node, .. } => {
                if self.in_transaction {
                    raise(
                        PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                        "the provider began a transaction inside another",
                    );
                }
                self.in_transaction = true;
                // SAFETY: starts the local transaction that applies the remote one.
                unsafe {
                    pg_sys::SetCurrentStatementStartTimestamp();
                    pg_sys::StartTransactionCommand();
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
                all_constraints_immediate();
                self.applier.begin(commit_time, origin_node, xid, final_lsn);
            }
            Message::Commit { end_lsn, commit_time, .. } => {
                self.require_transaction("Commit");
                self.applier.end_transaction();
                origin::stamp_commit(end_lsn, commit_time);
                // SAFETY: commits the local transaction started at Begin.
                let local_end = unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::CommitTransactionCommand();
                    pg_sys::pgstat_report_stat(false);
                    pg_sys::XactLastCommitEnd
                };
                self.in_transaction = false;
                self.flush.committed(end_lsn, local_end);
            }
            Message::Relation { relid, nspname, relname, columns } => {
                self.applier.relmap.relation(relid, nspname, relname, columns);
            }
            Message::Insert { relid, new } => {
                self.require_transaction("Insert");
                self.in_change_context(|a| a.insert(relid, &new));
            }
            Message::Update { relid, old, new } => {
                self.require_transaction("Update");
                self.in_change_context(|a| a.update(relid, old.as_ref(), &new));
            }
            Message::Delete { relid, old } => {
                self.require_transaction("Delete");
                self.in_change_context(|a| a.delete(relid, &old));
            }
            Message::Truncate { flags, relids } => {
                self.require_transaction("Truncate");
                self.in_change_context(|a| {
                    a.truncate(&relids, flags & truncate_flags::RESTART_IDENTITY != 0)
                });
            }
            Message::SyncEvent { lsn } => {
                if self.in_transaction {
                    // A transactional event: the commit carries the origin past it.
                    return;
                }
                self.advance_origin(lsn);
            }
        }
    }

    /// Deletes `spock.resolutions` rows older than
    /// `spock.resolutions_retention_days`, when this worker starts and then
    /// once a day, between remote transactions.
    pub fn prune_resolutions_if_due(&mut self) {
        const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
        if self.in_transaction || self.last_prune.is_some_and(|t| t.elapsed() < DAY) {
            return;
        }
        self.last_prune = Some(std::time::Instant::now());
        let days = crate::guc::RESOLUTIONS_RETENTION_DAYS.get();
        if days <= 0 {
            return;
        }
        // SAFETY: a transaction of its own that moves no origin: the
        // session's origin position and timestamp are cleared first, so its
        // commit neither advances the origin nor takes a remote timestamp.
        let deleted = unsafe {
            pg_sys::replorigin_session_origin_lsn = 0;
            pg_sys::replorigin_session_origin_timestamp = 0;
            pg_sys::StartTransactionCommand();
            let n = crate::catalog::with_catalog_owner_rights(|| {
                Spi::connect_mut(|client| crate::catalog::resolutions::delete_older_than(client, days))
            });
            pg_sys::CommitTransactionCommand();
            n
        };
        if deleted > 0 {
            pgrx::log!("spock: deleted {deleted} spock.resolutions rows older than {days} days");
        }
    }

    /// Moves the replication origin to `lsn` with a local transaction of its
    /// own (it must write a commit record for the move to be durable).
    fn advance_origin(&mut self, lsn: u64) {
        // SAFETY: a small transaction that only advances the session's origin.
        let local_end = unsafe {
            pg_sys::StartTransactionCommand();
            pg_sys::GetCurrentTransactionId();
            origin::stamp_commit(lsn, pg_sys::GetCurrentTimestamp());
            pg_sys::CommitTransactionCommand();
            pg_sys::XactLastCommitEnd
        };
        self.flush.committed(lsn, local_end);
    }
}

/// `SET CONSTRAINTS ALL IMMEDIATE` for the transaction: deferred constraint
/// triggers then fire at the end of the change that queued them, while the
/// table owner's rights are in force (`owner`), instead of at commit with
/// the worker's.
fn all_constraints_immediate() {
    // SAFETY: a ConstraintsSetStmt node allocated in the transaction's
    // memory; `constraints = NIL` means all constraints.
    unsafe {
        let stmt = pg_sys::palloc0(std::mem::size_of::<pg_sys::ConstraintsSetStmt>())
            as *mut pg_sys::ConstraintsSetStmt;
        (*stmt).type_ = pg_sys::NodeTag::T_ConstraintsSetStmt;
        (*stmt).constraints = std::ptr::null_mut();
        (*stmt).deferred = false;
        pg_sys::AfterTriggerSetState(stmt);
    }
}
