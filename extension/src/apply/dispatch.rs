//! Dispatch of decoded protocol messages: each remote transaction becomes
//! one local transaction committed with the replication origin's position
//! and the origin's commit time; each change is applied in a memory context
//! of its own; sync events outside a transaction move the origin on. The
//! flush bookkeeping that feedback reports from lives here, next to the
//! commits it tracks.

use std::collections::HashMap;

use pgrx::prelude::*;
use spock_core::exception::{self as rules, SkipPlan, Verdict};
use spock_core::protocol::{Message, OldRow, QueueRow, Tuple, truncate_flags};
use spock_core::stream::{FlushTracker, format_lsn};

use super::conflict::InvolvedRow;
use super::exception::{self, FailedXact};
use super::forward::Arrival;
use super::rowops::Applier;
use super::subxact;
use crate::catalog::origin;
use crate::catalog::subscription::Subscription;
use crate::errors::raise;
use crate::guc;
use crate::workers::registry::{self, PendingException};

/// How the current remote transaction is applied.
enum XactMode {
    Normal,
    /// Skipped as `sub_alter_skiplsn` asked: nothing applied.
    Skip,
    /// A forwarded transaction applied here before (`forward`): nothing
    /// applied, the subscription's origin moves past it.
    AlreadyApplied,
    /// A transaction that failed before, handled as
    /// `spock.exception_behaviour` says (behaviour.md §8.3).
    Exception {
        failed: PendingException,
        mode: rules::Mode,
        logging: rules::Logging,
        xact: FailedXact,
    },
}

pub struct Dispatcher {
    applier: Applier,
    flush: FlushTracker,
    in_transaction: bool,
    mode: XactMode,
    dboid: u32,
    sub_id: u32,
    sub_name: String,
    /// The armed skip LSN (0: none), as read when the worker started and
    /// reset here once used.
    skip_lsn: u64,
    /// Commit LSN and xid of the current remote transaction.
    commit_lsn: u64,
    xid: u32,
    /// When `spock.resolutions` was last pruned by this worker.
    last_prune: Option<std::time::Instant>,
    /// Memory for applying one change, reset after each (what the executor,
    /// type input functions and catalog lookups allocate for a row must not
    /// pile up over a transaction of a million rows).
    change_cxt: pg_sys::MemoryContext,
    /// Tables copied by a table-level copy (or about to be): their changes
    /// committed before the copy's snapshot are in the copy.
    copied: HashMap<(String, String), Copied>,
    /// The table-sync worker's dispatcher applies the changes of this one
    /// table and nothing else (`tablesync`).
    only_table: Option<(String, String)>,
    /// Where the stream has been dispatched up to: the end of the last
    /// remote transaction or the last sync event handled.
    position: u64,
    /// The subscription's apply delay in microseconds (0: none).
    apply_delay_us: i64,
    /// The local origins of nodes whose transactions arrive forwarded.
    forwarding: super::forward::Forwarding,
    /// The current remote transaction, when forwarded from another node.
    forwarded: Option<super::forward::Forwarded>,
}

/// Where a table's copy stands for the changes the stream brings.
#[derive(Clone, Copy, Debug)]
enum Copied {
    /// Asked for, or being copied and caught up by the table-sync worker:
    /// every change is left to it.
    Pending,
    /// Copied from the snapshot at this provider position.
    At(u64),
}

/// One change of a remote transaction.
enum Change<'a> {
    Insert(u32, &'a Tuple),
    Update(u32, Option<&'a OldRow>, &'a Tuple),
    Delete(u32, &'a OldRow),
    Truncate(u8, &'a [u32]),
    /// A `spock.queue` row: replicated DDL.
    Queue(&'a QueueRow),
}

impl Change<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Change::Insert(..) => "INSERT",
            Change::Update(..) => "UPDATE",
            Change::Delete(..) => "DELETE",
            Change::Truncate(..) => "TRUNCATE",
            Change::Queue(..) => "DDL",
        }
    }

    fn apply(&self, a: &mut Applier) {
        match *self {
            Change::Insert(relid, new) => a.insert(relid, new),
            Change::Update(relid, old, new) => a.update(relid, old, new),
            Change::Delete(relid, old) => a.delete(relid, old),
            Change::Truncate(flags, relids) => {
                a.truncate(relids, flags & truncate_flags::RESTART_IDENTITY != 0)
            }
            Change::Queue(row) => {
                // The statements may alter or drop tables this transaction
                // has open.
                a.close_tables();
                super::queue::apply(row);
            }
        }
    }
}

impl Dispatcher {
    /// What the provider's server can send: without core patch 020 its
    /// updates carry no old values for delta columns.
    pub fn provider_sends_old_values(&mut self, provider: &str, yes: bool) {
        self.applier.relmap.provider_sends_old_values(provider, yes);
    }

    pub fn new(sub: &Subscription, dboid: u32) -> Dispatcher {
        Dispatcher {
            applier: Applier::new(sub),
            flush: FlushTracker::default(),
            in_transaction: false,
            mode: XactMode::Normal,
            dboid,
            sub_id: sub.sub_id,
            sub_name: sub.name.clone(),
            skip_lsn: sub.skip_lsn,
            commit_lsn: 0,
            xid: 0,
            last_prune: None,
            copied: HashMap::new(),
            only_table: None,
            position: 0,
            apply_delay_us: sub.apply_delay_us,
            forwarding: super::forward::Forwarding::new(sub.origin_id),
            forwarded: None,
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

    /// The dispatcher of a table-sync worker's catch-up: only the changes
    /// of one table are applied, each remote transaction as it comes, with
    /// no skips, exception handling, pauses or progress of the
    /// subscription (those belong to its apply worker).
    pub fn for_table(sub: &Subscription, dboid: u32, nspname: &str, relname: &str) -> Dispatcher {
        let mut d = Dispatcher::new(sub, dboid);
        d.skip_lsn = 0;
        d.only_table = Some((nspname.to_string(), relname.to_string()));
        d
    }

    /// Where the stream starts: everything before was dispatched.
    pub fn start_at(&mut self, lsn: u64) {
        self.position = lsn;
    }

    /// Where the stream has been dispatched up to (see `position`).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Tables copied from a snapshot later than where the stream starts:
    /// `(schema, table, snapshot position)`.
    pub fn set_copied(&mut self, tables: Vec<(String, String, u64)>) {
        self.copied.extend(tables.into_iter().map(|(n, r, lsn)| ((n, r), Copied::At(lsn))));
    }

    /// Tables whose changes are left to the table-sync worker.
    pub fn set_pending(&mut self, tables: Vec<(String, String)>) {
        self.copied.extend(tables.into_iter().map(|t| (t, Copied::Pending)));
    }

    /// A table handed over (`y` at `lsn`), or given up (`None`: its copy
    /// failed, and its changes are applied again as they come).
    pub fn handed_over(&mut self, table: (String, String), lsn: Option<u64>) {
        match lsn {
            Some(lsn) => self.copied.insert(table, Copied::At(lsn)),
            None => self.copied.remove(&table),
        };
    }

    /// Keeps only the pending tables the catalog still lists as asked for
    /// or being copied (a copy that failed gives its table back).
    pub fn keep_pending(&mut self, pending: &[(String, String)]) {
        self.copied.retain(|table, c| !matches!(c, Copied::Pending) || pending.contains(table));
    }

    /// Whether changes of some table are left to the table-sync worker.
    pub fn has_pending_copies(&self) -> bool {
        self.copied.values().any(|c| matches!(c, Copied::Pending))
    }

    /// Whether no remote transaction is open.
    pub fn between_transactions(&self) -> bool {
        !self.in_transaction
    }

    /// Whether the copy of a table holds this change of the current remote
    /// transaction already (behaviour.md §6.5).
    fn in_copy(&self, relid: u32) -> bool {
        if let Some((nspname, relname)) = &self.only_table {
            // The table-sync worker: every other table is the apply worker's.
            return self
                .applier
                .relmap
                .described(relid)
                .is_none_or(|rel| rel.nspname != *nspname || rel.relname != *relname);
        }
        if self.copied.is_empty() {
            return false;
        }
        let Some(rel) = self.applier.relmap.described(relid) else { return false };
        match self.copied.get(&(rel.nspname.clone(), rel.relname.clone())) {
            Some(Copied::Pending) => true,
            Some(Copied::At(snapshot)) => self.commit_lsn < *snapshot,
            None => false,
        }
    }

    /// Records the table-sync requests the last queue row made.
    fn record_requests(&mut self) {
        let requests = super::sync::take_requests();
        if requests.is_empty() {
            return;
        }
        let sub_id = self.sub_id;
        for (nspname, relname) in requests {
            let new = crate::catalog::with_catalog_owner_rights(|| {
                Spi::connect_mut(|client| {
                    crate::catalog::sync_status::request_table_if_new(
                        client, sub_id, &nspname, &relname, false,
                    )
                })
            });
            if new {
                pgrx::log!(
                    "subscription {}: the provider asks for a copy of table {nspname}.{relname}; the table-sync \
                     worker makes it once this transaction is applied",
                    self.sub_name
                );
                self.copied.insert((nspname, relname), Copied::Pending);
            }
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
            Message::Begin { final_lsn, commit_time, xid, origin_node, origin_lsn } => {
                if self.in_transaction {
                    raise(
                        PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                        "the provider began a transaction inside another",
                    );
                }
                if self.only_table.is_none() {
                    super::pause::hold_if_asked(self.dboid, self.sub_id, &self.sub_name);
                    // Apply delay (behaviour.md §18): not before the origin
                    // commit plus the delay, by this server's clock.
                    if self.apply_delay_us > 0 {
                        let (dboid, sub_id, sub_name) = (self.dboid, self.sub_id, self.sub_name.clone());
                        super::wait::delay_until(
                            commit_time.saturating_add(self.apply_delay_us),
                            &mut || super::pause::hold_if_asked(dboid, sub_id, &sub_name),
                        );
                    }
                }
                self.in_transaction = true;
                super::sync::take_requests();
                // SAFETY: starts the local transaction that applies the remote one.
                unsafe {
                    pg_sys::SetCurrentStatementStartTimestamp();
                    pg_sys::StartTransactionCommand();
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
                all_constraints_immediate();
                self.applier.begin(commit_time, origin_node, xid, final_lsn);
                self.commit_lsn = final_lsn;
                self.xid = xid;
                self.mode = if self.only_table.is_some() {
                    XactMode::Normal
                } else {
                    self.mode_for(final_lsn, commit_time, origin_node, xid)
                };
                // The table-sync worker commits what it applies under its
                // own origin: its catch-up comes after the apply worker
                // went further on the originating node.
                self.forwarded = None;
                if self.only_table.is_none() {
                    match self.forwarding.arrival(origin_node, origin_lsn) {
                        Arrival::Own => {}
                        Arrival::Forwarded(f) => self.forwarded = Some(f),
                        Arrival::AlreadyApplied { node, origin_lsn } => {
                            pgrx::ereport!(
                                PgLogLevel::LOG,
                                PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
                                format!(
                                    "spock: subscription {} passes over a transaction forwarded from node {node}: \
                                     it was applied here before",
                                    self.sub_name
                                ),
                                format!(
                                    "Transaction {xid} of the provider, at {} on node {node}.",
                                    format_lsn(origin_lsn)
                                )
                            );
                            // A skip armed for it, or a failure remembered
                            // for it, is settled: it is not applied again.
                            match std::mem::replace(&mut self.mode, XactMode::AlreadyApplied) {
                                XactMode::Skip => self.set_skip_lsn(0),
                                XactMode::Exception { .. } => {
                                    registry::forget_exception(self.dboid, self.sub_id)
                                }
                                XactMode::Normal | XactMode::AlreadyApplied => {}
                            }
                        }
                    }
                }
                exception::enter_transaction(final_lsn, matches!(self.mode, XactMode::Exception { .. }));
                super::wait::begin_transaction(matches!(self.mode, XactMode::Normal));
            }
            Message::Commit { end_lsn, commit_time, .. } => {
                self.require_transaction("Commit");
                self.applier.end_transaction();
                let mode = std::mem::replace(&mut self.mode, XactMode::Normal);
                let moves_progress = self.finish(&mode);
                let forwarded = self.forwarded.take().filter(|_| moves_progress);
                let local_end = if let Some(fwd) = forwarded {
                    super::forward::commit(fwd, end_lsn, commit_time)
                } else {
                    if moves_progress {
                        origin::stamp_commit(end_lsn, commit_time);
                        // A transaction that wrote nothing (every change kept
                        // local, skipped or discarded) has no xid and would
                        // commit without a record, leaving the origin behind.
                        // SAFETY: assigns the transaction id of the open transaction.
                        unsafe { pg_sys::GetCurrentTransactionId() };
                    } else {
                        // Not the origin's position, and the commit time of the
                        // last transaction applied (what progress recovery reads
                        // from the commit timestamps of this origin).
                        origin::stamp_commit(0, super::progress::last_commit_ts());
                    }
                    // SAFETY: commits the local transaction started at Begin.
                    unsafe {
                        pg_sys::PopActiveSnapshot();
                        pg_sys::CommitTransactionCommand();
                        pg_sys::XactLastCommitEnd
                    }
                };
                // SAFETY: reports the statistics of the transaction just committed.
                unsafe { pg_sys::pgstat_report_stat(false) };
                crate::stats::flush();
                self.in_transaction = false;
                self.position = end_lsn;
                exception::leave_transaction();
                if moves_progress {
                    self.flush.committed(end_lsn, local_end);
                    super::progress::applied(end_lsn, commit_time);
                }
                self.after_commit(mode);
            }
            Message::Relation { relid, nspname, relname, columns } => {
                self.applier.relmap.relation(relid, nspname, relname, columns);
            }
            Message::Insert { relid, new } => {
                self.require_transaction("Insert");
                if !self.in_copy(relid) {
                    self.change(Change::Insert(relid, &new));
                }
            }
            Message::Update { relid, old, new } => {
                self.require_transaction("Update");
                if !self.in_copy(relid) {
                    self.change(Change::Update(relid, old.as_ref(), &new));
                }
            }
            Message::Delete { relid, old } => {
                self.require_transaction("Delete");
                if !self.in_copy(relid) {
                    self.change(Change::Delete(relid, &old));
                }
            }
            Message::Truncate { flags, relids } => {
                self.require_transaction("Truncate");
                let relids: Vec<u32> = relids.into_iter().filter(|r| !self.in_copy(*r)).collect();
                if !relids.is_empty() {
                    self.change(Change::Truncate(flags, &relids));
                }
            }
            Message::Queue(row) => {
                self.require_transaction("a queue message");
                if self.only_table.is_none() {
                    self.change(Change::Queue(&row));
                    self.record_requests();
                }
            }
            Message::SyncEvent { lsn } => {
                if self.in_transaction || self.only_table.is_some() {
                    // A transactional event: the commit carries the origin past it.
                    return;
                }
                self.advance_origin(lsn);
            }
        }
    }

    /// How a remote transaction with this commit LSN is to be applied: a
    /// skip armed for it, a failure remembered for it, or normally.
    fn mode_for(&mut self, commit_lsn: u64, commit_ts: i64, origin_node: u32, xid: u32) -> XactMode {
        match rules::skip_plan(self.skip_lsn, commit_lsn) {
            SkipPlan::Skip => return XactMode::Skip,
            SkipPlan::Disarm => {
                pgrx::warning!(
                    "spock: subscription {} was to skip the remote transaction with commit LSN {}, but the next \
                     one has commit LSN {}; the skip is disarmed and this transaction is applied",
                    self.sub_name,
                    format_lsn(self.skip_lsn),
                    format_lsn(commit_lsn)
                );
                self.set_skip_lsn(0);
            }
            SkipPlan::None => {}
        }
        let Some(failed) = registry::pending_exception(self.dboid, self.sub_id) else {
            return XactMode::Normal;
        };
        if failed.commit_lsn != commit_lsn {
            if failed.commit_lsn < commit_lsn {
                // The failed transaction is behind us (skipped meanwhile).
                registry::forget_exception(self.dboid, self.sub_id);
            }
            return XactMode::Normal;
        }
        let (mode, logging) = guc::exception_settings();
        let origin = self.applier.remote_origin(origin_node);
        pgrx::log!(
            "spock: subscription {} handles the remote transaction {xid} (commit LSN {}) that failed at operation {} \
             in exception mode {}: {}",
            self.sub_name,
            format_lsn(commit_lsn),
            failed.counter,
            mode.name(),
            failed.error
        );
        XactMode::Exception { failed, mode, logging, xact: FailedXact { origin, commit_ts, xid } }
    }

    fn set_skip_lsn(&mut self, lsn: u64) {
        self.skip_lsn = lsn;
        let sub_id = self.sub_id;
        crate::catalog::with_catalog_owner_rights(|| {
            Spi::connect_mut(|client| crate::catalog::subscription::set_skip_lsn(client, sub_id, lsn))
        });
    }

    /// One change, as the transaction's mode says.
    fn change(&mut self, change: Change<'_>) {
        let counter = exception::next_operation();
        match &self.mode {
            XactMode::Normal => self.in_change_context(|a| change.apply(a)),
            XactMode::Skip | XactMode::AlreadyApplied => {}
            XactMode::Exception { failed, mode, logging, xact } => {
                let (failed, mode, logging, xact) = (failed.clone(), *mode, *logging, *xact);
                match rules::verdict(mode, logging, counter, failed.counter, &failed.error) {
                    Verdict::Skip => {}
                    Verdict::Log(text) => self.log_change(&xact, counter, &change, None, &text),
                    Verdict::Try => {
                        self.applier.forget_involved();
                        if let Err((sqlstate, message)) = self.try_change(&change) {
                            pgrx::log!(
                                "spock: subscription {}: operation {counter} of remote transaction {} failed and \
                                 is discarded: [{sqlstate}] {message}",
                                self.sub_name,
                                xact.xid
                            );
                            if rules::logs_failures(logging) {
                                let text = rules::failed_text(&sqlstate, &message);
                                let local = self.applier.involved_row();
                                self.log_change(&xact, counter, &change, local.as_ref(), &text);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes the `exception_log` row of a change not applied.
    fn log_change(
        &mut self,
        xact: &FailedXact,
        counter: u32,
        change: &Change<'_>,
        local: Option<&InvolvedRow>,
        text: &str,
    ) {
        let relmap = &self.applier.relmap;
        let (rel, old, new) = match *change {
            Change::Insert(relid, new) => (relmap.described(relid), None, Some(new)),
            Change::Update(relid, old, new) => (relmap.described(relid), old.map(|o| o.tuple()), Some(new)),
            Change::Delete(relid, old) => (relmap.described(relid), Some(old.tuple()), None),
            Change::Truncate(_, relids) => (relids.first().and_then(|r| relmap.described(*r)), None, None),
            Change::Queue(_) => (None, None, None),
        };
        let ddl = match *change {
            Change::Queue(row) => {
                Some((super::queue::sql_of(row).unwrap_or_else(|| row.message.clone()), row.role.as_str()))
            }
            _ => None,
        };
        let op = exception::Operation {
            counter,
            rel,
            kind: change.kind(),
            old,
            new,
            ddl: ddl.as_ref().map(|(sql, role)| (sql.as_str(), *role)),
        };
        // SAFETY: the per-change memory context, reset after the row is written.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(self.change_cxt);
            exception::log_operation(xact, &op, local, text);
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(self.change_cxt);
        }
    }

    /// Applies a change in a subtransaction of its own; on a permanent
    /// error the subtransaction is rolled back and the error returned. A
    /// transient error (a deadlock, ...) is raised again after the rollback:
    /// the worker restarts and tries the transaction again, as for any
    /// transient error, instead of discarding a change that would apply.
    fn try_change(&mut self, change: &Change<'_>) -> Result<(), (String, String)> {
        let result = subxact::run(|| {
            self.in_change_context(|a| change.apply(a));
            // Nothing opened in the subtransaction may outlive it.
            self.applier.close_tables();
        });
        let Err(e) = result else { return Ok(()) };
        // What was open went with the subtransaction's resources.
        self.applier.forget_after_abort();
        // SAFETY: the per-change context, no longer used by the failed change.
        unsafe { pg_sys::MemoryContextReset(self.change_cxt) };
        let (sqlstate, message) = exception::error_parts(&e);
        if rules::is_transient(&sqlstate) {
            e.rethrow();
        }
        Err((sqlstate, message))
    }

    /// Before the commit of a transaction handled specially: its last rows
    /// and catalog changes. Returns whether progress moves past it.
    fn finish(&mut self, mode: &XactMode) -> bool {
        match mode {
            XactMode::Normal | XactMode::AlreadyApplied => true,
            XactMode::Skip => {
                self.set_skip_lsn(0);
                true
            }
            XactMode::Exception { mode, xact, failed, logging } => {
                if *mode == rules::Mode::SubDisable {
                    let counter = exception::next_operation();
                    let text = rules::sub_disable_text(&self.sub_name, &format_lsn(self.commit_lsn));
                    if *logging != rules::Logging::None {
                        let op = exception::Operation {
                            counter,
                            rel: None,
                            kind: "SUB_DISABLE",
                            old: None,
                            new: None,
                            ddl: None,
                        };
                        exception::log_operation(xact, &op, None, &text);
                    }
                    let sub_id = self.sub_id;
                    crate::catalog::with_catalog_owner_rights(|| {
                        Spi::connect_mut(|client| {
                            crate::catalog::subscription::set_enabled(client, sub_id, false)
                        })
                    });
                    pgrx::log!("spock: {text}: {}", failed.error);
                }
                mode.moves_progress()
            }
        }
    }

    /// After the commit of a transaction handled specially.
    fn after_commit(&mut self, mode: XactMode) {
        match mode {
            XactMode::Normal | XactMode::AlreadyApplied => {}
            XactMode::Skip => {
                registry::forget_exception(self.dboid, self.sub_id);
                pgrx::log!(
                    "spock: subscription {} skipped the remote transaction {} with commit LSN {}, as sub_alter_skiplsn asked",
                    self.sub_name,
                    self.xid,
                    format_lsn(self.commit_lsn)
                );
            }
            XactMode::Exception { mode, failed, .. } => {
                registry::forget_exception(self.dboid, self.sub_id);
                if mode == rules::Mode::SubDisable {
                    // Shown by sub_show_status while the subscription is disabled.
                    registry::record_error(
                        self.dboid,
                        self.sub_id,
                        &format!(
                            "{} (disabled by spock.exception_behaviour = sub_disable; skip_lsn = {})",
                            failed.error,
                            format_lsn(self.commit_lsn)
                        ),
                    );
                    crate::workers::registry::wake_all();
                    // SAFETY: ends this worker process normally; nothing is
                    // in progress (the transaction committed).
                    unsafe { pg_sys::proc_exit(0) };
                }
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
        let deleted = local_transaction(|| {
            crate::catalog::with_catalog_owner_rights(|| {
                Spi::connect_mut(|client| crate::catalog::resolutions::delete_older_than(client, days))
            })
        });
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
            // A sync event moves only the origin's position: its commit
            // carries the commit time of the last transaction applied.
            origin::stamp_commit(lsn, super::progress::last_commit_ts());
            pg_sys::CommitTransactionCommand();
            pg_sys::XactLastCommitEnd
        };
        self.flush.committed(lsn, local_end);
        self.position = lsn;
        super::progress::origin_moved(lsn);
    }
}

/// Runs `f` in a local transaction of its own, between remote transactions,
/// that is not one of the origin's: the session's origin position and
/// timestamp are cleared and the origin is set aside, so that its commit
/// neither moves the origin nor looks like an applied transaction in the
/// commit timestamps (which is how progress is recovered after a crash).
pub fn local_transaction<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: session-local origin globals, restored after the commit; the
    // transaction is started and committed here.
    unsafe {
        pg_sys::replorigin_session_origin_lsn = 0;
        pg_sys::replorigin_session_origin_timestamp = 0;
        let origin = pg_sys::replorigin_session_origin;
        pg_sys::replorigin_session_origin = pg_sys::InvalidRepOriginId as pg_sys::RepOriginId;
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let result = f();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        pg_sys::replorigin_session_origin = origin;
        result
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
