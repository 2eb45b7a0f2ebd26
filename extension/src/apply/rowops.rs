//! Applying one remote change to a local table through PostgreSQL's
//! executor, as a replicated change: indexes and constraints maintained,
//! triggers as `session_replication_role = replica` allows, rows found by
//! the replica identity index, and everything a change runs (input
//! functions, defaults, triggers) with the table owner's rights (`owner`).

use std::collections::HashMap;

use pgrx::prelude::*;
use spock_core::protocol::{OldRow, Tuple, Value};

use spock_core::conflict::{Change, Outcome, RemoteVersion};
use spock_core::delta::Action;

use super::conflict::{Conflict, Conflicts, Found, InvolvedRow, RemoteXact, relation_name};
use super::delta::{self, Computed, OldValues};
use super::owner::OwnerContext;
use super::relmap::{LocalMap, RelMap, RemoteRel};
use crate::catalog::subscription::Subscription;
use crate::errors::{raise, raise_hint};
use crate::guc;
use crate::stats::{self, Counter};

/// Applies changes: the relation map, the local tables kept open for
/// the current transaction, and what conflicts are resolved with.
pub struct Applier {
    pub relmap: RelMap,
    /// Local tables kept open, with their executor state, until the end of
    /// the current transaction (tables without triggers only).
    open: HashMap<u32, Target>,
    /// Whose rights changes run with.
    owner: OwnerContext,
    conflicts: Conflicts,
    /// The remote transaction being applied.
    remote: Option<RemoteXact>,
}

impl Applier {
    pub fn new(sub: &Subscription) -> Applier {
        Applier {
            relmap: RelMap::new(),
            open: HashMap::new(),
            owner: OwnerContext::default(),
            conflicts: Conflicts::new(sub),
            remote: None,
        }
    }

    /// A remote transaction begins: what its changes are stamped with.
    pub fn begin(&mut self, commit_ts: i64, origin_node: u32, xid: u32, commit_lsn: u64) {
        let origin = self.conflicts.remote_origin(origin_node);
        let remote = RemoteXact { version: RemoteVersion { commit_ts, origin }, xid, commit_lsn };
        self.conflicts.check_clock(&remote);
        self.remote = Some(remote);
    }

    fn remote(&self) -> RemoteXact {
        self.remote.unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                "the provider sent a change outside a transaction",
            )
        })
    }

    /// An INSERT; when a row with its key exists, an `insert_exists`
    /// conflict that last-update-wins resolves (the INSERT then updates
    /// the row with the columns it sent, or is dropped).
    pub fn insert(&mut self, relid: u32, new: &Tuple) {
        stats::drop_staged();
        let remote = self.remote();
        let (map, rr) = self.relmap.resolve(relid);
        let conflicts = &mut self.conflicts;
        on_table(&mut self.open, &mut self.owner, map, |t| {
            // SAFETY: the target's slots and executor state, in this transaction.
            unsafe {
                fill_slot(t.row, map, rr, new, None);
                fill_defaults(t, map);
                pg_sys::ExecStoreVirtualTuple(t.row);
                let key_index = pg_sys::RelationGetReplicaIndex(t.rel);
                let found_by = if key_index != pg_sys::InvalidOid
                    && pg_sys::RelationFindReplTupleByIndex(
                        t.rel,
                        key_index,
                        pg_sys::LockTupleMode::LockTupleExclusive,
                        t.row,
                        t.local,
                    ) {
                    Some(key_index)
                } else if t.speculative {
                    find_by_other_unique_index(t, key_index)
                } else {
                    None
                };
                if let Some(index) = found_by {
                    let found = conflicts.found(t.local, &remote);
                    let outcome = conflicts.resolve(Change::Insert, Some(&found), &remote);
                    let relname = rr.qualified();
                    conflicts.report(
                        &Conflict {
                            relid: (*t.rel).rd_id,
                            outcome,
                            relname: &relname,
                            index: Some(index),
                            found: Some(&found),
                            local_slot: Some(t.local),
                            remote_slot: Some(t.row),
                        },
                        &remote,
                    );
                    // An INSERT that wins updates the row with the columns
                    // it sent; one that loses may still add to delta columns.
                    clear_slot(t.row);
                    prepare_row(t);
                    slot_getallattrs(t.local);
                    fill_slot(t.row, map, rr, new, Some(t.local));
                    pg_sys::ExecStoreVirtualTuple(t.row);
                    let deltas = (!map.delta.is_empty())
                        .then(|| delta::compute(map, rr, OldValues::Zero, new, t.local));
                    apply_resolved(t, map, &found, outcome.resolution.applies(), deltas.as_ref());
                    return;
                }
                pg_sys::ExecSimpleRelationInsert(t.rri, t.estate, t.row);
            }
        });
        stats::count(map.relid, Counter::Insert);
    }

    /// An UPDATE of the row with the old key (or the new row's key):
    /// applied when the local version comes from the same origin or loses
    /// last-update-wins; a missing row is an `update_missing` error.
    pub fn update(&mut self, relid: u32, old: Option<&OldRow>, new: &Tuple) {
        stats::drop_staged();
        let remote = self.remote();
        let (map, rr) = self.relmap.resolve(relid);
        let key_source = old.map(|o| o.tuple()).unwrap_or(new);
        let conflicts = &mut self.conflicts;
        on_table(&mut self.open, &mut self.owner, map, |t| {
            // SAFETY: the target's slots and executor state, in this transaction.
            unsafe {
                let index = identity_index(t.rel, rr);
                if !find_row_retrying(t, map, rr, index, key_source) {
                    let outcome = conflicts.resolve(Change::Update, None, &remote);
                    fill_slot(t.row, map, rr, new, None);
                    pg_sys::ExecStoreVirtualTuple(t.row);
                    let relname = rr.qualified();
                    conflicts.report(
                        &Conflict {
                            relid: (*t.rel).rd_id,
                            outcome,
                            relname: &relname,
                            index: Some(index),
                            found: None,
                            local_slot: None,
                            remote_slot: Some(t.row),
                        },
                        &remote,
                    );
                    raise(
                        PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
                        format!(
                            "update_missing: the row to update in {} does not exist on this node",
                            rr.qualified()
                        ),
                    );
                }
                let found = conflicts.found(t.local, &remote);
                let outcome = conflicts.resolve(Change::Update, Some(&found), &remote);
                slot_getallattrs(t.local);
                fill_slot(t.row, map, rr, new, Some(t.local));
                pg_sys::ExecStoreVirtualTuple(t.row);
                if outcome.conflict.is_some() {
                    let relname = rr.qualified();
                    conflicts.report(
                        &Conflict {
                            relid: (*t.rel).rd_id,
                            outcome,
                            relname: &relname,
                            index: Some(index),
                            found: Some(&found),
                            local_slot: Some(t.local),
                            remote_slot: Some(t.row),
                        },
                        &remote,
                    );
                }
                let deltas = (!map.delta.is_empty())
                    .then(|| delta::compute(map, rr, OldValues::Sent(old.map(|o| o.tuple())), new, t.local));
                if outcome.resolution.applies() && !t.other_unique.is_empty() {
                    if let Some(d) = &deltas {
                        d.write_into(t.row);
                    }
                    refuse_update_exists(t, conflicts, rr, &remote);
                }
                apply_resolved(t, map, &found, outcome.resolution.applies(), deltas.as_ref());
            }
        });
        stats::count(map.relid, Counter::Update);
    }

    /// A DELETE of the row with the old key: applied when the local
    /// version comes from the same origin or loses last-update-wins
    /// (`delete_origin_differs`); kept when it wins (`delete_exists`);
    /// nothing to do when the row is missing (`delete_missing`).
    pub fn delete(&mut self, relid: u32, old: &OldRow) {
        stats::drop_staged();
        let remote = self.remote();
        let (map, rr) = self.relmap.resolve(relid);
        let conflicts = &mut self.conflicts;
        on_table(&mut self.open, &mut self.owner, map, |t| {
            // SAFETY: the target's slots and executor state, in this transaction.
            unsafe {
                let index = identity_index(t.rel, rr);
                let found = if find_row_retrying(t, map, rr, index, old.tuple()) {
                    Some(conflicts.found(t.local, &remote))
                } else {
                    None
                };
                let outcome = conflicts.resolve(Change::Delete, found.as_ref(), &remote);
                if outcome.conflict.is_some() {
                    let relname = rr.qualified();
                    conflicts.report(
                        &Conflict {
                            relid: (*t.rel).rd_id,
                            outcome,
                            relname: &relname,
                            index: Some(index),
                            found: found.as_ref(),
                            local_slot: Some(t.local),
                            remote_slot: Some(t.search),
                        },
                        &remote,
                    );
                }
                if found.is_some() && outcome.resolution.applies() {
                    let mut epq: pg_sys::EPQState = std::mem::zeroed();
                    epq_init(&mut epq, t.estate);
                    pg_sys::ExecSimpleRelationDelete(t.rri, t.estate, &mut epq, t.local);
                    pg_sys::EvalPlanQualEnd(&mut epq);
                }
            }
        });
        stats::count(map.relid, Counter::Delete);
    }

    /// The transaction ends: closes what it kept open.
    pub fn end_transaction(&mut self) {
        self.close_tables();
        self.remote = None;
    }

    /// Closes the tables kept open and goes back to the worker's own
    /// user; called before the transaction commits, and before anything
    /// that needs them closed.
    pub fn close_tables(&mut self) {
        for (_, target) in self.open.drain() {
            // SAFETY: a target opened in this transaction.
            unsafe { close_target(target) };
        }
        self.owner.leave();
    }

    /// A subtransaction that applied a change was rolled back: the tables
    /// it opened were closed and the user switched back by the abort, so
    /// they are forgotten without closing.
    pub fn forget_after_abort(&mut self) {
        self.open.clear();
        self.owner.forget();
    }

    /// Forgets the local row a previous change looked at.
    pub fn forget_involved(&self) {
        self.conflicts.forget_involved();
    }

    /// The local row a failed change looked at last (`exception_log`).
    pub fn involved_row(&self) -> Option<InvolvedRow> {
        self.conflicts.involved_row()
    }

    /// The node a remote transaction originated on.
    pub fn remote_origin(&self, origin_node: u32) -> u32 {
        self.conflicts.remote_origin(origin_node)
    }

    /// Truncates the local tables of the given provider relations without
    /// CASCADE: one statement per table owner (usually one), each run with
    /// that owner's rights.
    pub fn truncate(&mut self, relids: &[u32], restart_identity: bool) {
        // TRUNCATE refuses tables this session holds open.
        self.close_tables();
        let mut by_owner: Vec<(pg_sys::Oid, Vec<String>)> = Vec::new();
        for relid in relids {
            let (map, rr) = self.relmap.resolve(*relid);
            match by_owner.iter_mut().find(|(o, _)| *o == map.owner) {
                Some((_, names)) => names.push(rr.qualified()),
                None => by_owner.push((map.owner, vec![rr.qualified()])),
            }
        }
        for (owner, names) in by_owner {
            let sql = format!(
                "TRUNCATE ONLY {}{}",
                names.join(", "),
                if restart_identity { " RESTART IDENTITY" } else { "" }
            );
            self.owner.enter(owner);
            Spi::run(&sql).unwrap_or_else(|e| {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("{sql} failed: {e}"))
            });
            self.owner.leave();
        }
    }
}

/// Prepared default expressions: (0-based attribute, expression).
type Defaults = Vec<(usize, *mut pg_sys::ExprState)>;

/// A local table opened for applying changes: the relation, an executor
/// state with the table as its result relation and its indexes open, and the
/// slots a change needs.
pub struct Target {
    rel: pg_sys::Relation,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    /// The row to insert, or the new version of an updated row (virtual).
    row: *mut pg_sys::TupleTableSlot,
    /// The key being looked for (virtual).
    search: *mut pg_sys::TupleTableSlot,
    /// The local row found (the table's own slot type).
    local: *mut pg_sys::TupleTableSlot,
    /// Prepared default expressions of columns the provider does not send
    /// (0-based attribute, expression), built on the first INSERT, with the
    /// unmapped columns they were built for.
    defaults: Option<(Vec<usize>, Defaults)>,
    /// Whether the table has triggers: then AFTER triggers are collected and
    /// fired around each change, and the target is not kept open.
    has_triggers: bool,
    /// Whether its unique indexes can be probed before an insert (opened
    /// with speculative-insertion information, `spock.check_all_uc_indexes`
    /// being on when the table was opened).
    speculative: bool,
    /// The valid, immediate unique indexes other than the replica identity
    /// index, with speculative-insertion information: probed before an
    /// update is applied.
    other_unique: Vec<pg_sys::Oid>,
}

/// Opens `relid` with its executor state in a memory context that lives
/// until [`close_target`] (or the end of the transaction).
unsafe fn open_target(relid: pg_sys::Oid) -> Target {
    // SAFETY: called inside the apply transaction; everything allocated lives in
    // the executor state's context, freed by `close_target`.
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32);
        // In the (sub)transaction's own memory: freed with it when a
        // subtransaction that applied one change is rolled back.
        let previous = pg_sys::MemoryContextSwitchTo(pg_sys::CurTransactionContext);
        let estate = pg_sys::CreateExecutorState();
        pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        let rte = pg_sys::palloc0(std::mem::size_of::<pg_sys::RangeTblEntry>()) as *mut pg_sys::RangeTblEntry;
        (*rte).type_ = pg_sys::NodeTag::T_RangeTblEntry;
        (*rte).rtekind = pg_sys::RTEKind::RTE_RELATION;
        (*rte).relid = relid;
        (*rte).relkind = (*(*rel).rd_rel).relkind;
        (*rte).rellockmode = pg_sys::AccessShareLock as i32;
        init_range_table(estate, rte);
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
        (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(rri, rel, 1, std::ptr::null_mut(), 0);
        (*estate).es_opened_result_relations =
            pg_sys::lappend((*estate).es_opened_result_relations, rri.cast());
        // Speculative-insertion information lets unique indexes be probed
        // before an insert (`find_by_other_unique_index`).
        let speculative = guc::CHECK_ALL_UC_INDEXES.get();
        pg_sys::ExecOpenIndices(rri, speculative);
        // Unique indexes other than the key are probed before an update
        // (`update_exists`), which needs their speculative information.
        let key_index = pg_sys::RelationGetReplicaIndex(rel);
        let mut other_unique = Vec::new();
        for i in 0..(*rri).ri_NumIndices as usize {
            let index = *(*rri).ri_IndexRelationDescs.add(i);
            let info = *(*rri).ri_IndexRelationInfo.add(i);
            let form = (*index).rd_index;
            if (*form).indexrelid == key_index
                || !(*info).ii_Unique
                || !(*form).indisvalid
                || !(*form).indimmediate
            {
                continue;
            }
            if !speculative {
                pg_sys::BuildSpeculativeIndexInfo(index, info);
            }
            other_unique.push((*form).indexrelid);
        }
        let row = pg_sys::ExecInitExtraTupleSlot(estate, (*rel).rd_att, &pg_sys::TTSOpsVirtual);
        let search = pg_sys::ExecInitExtraTupleSlot(estate, (*rel).rd_att, &pg_sys::TTSOpsVirtual);
        let local = pg_sys::table_slot_create(rel, &mut (*estate).es_tupleTable);
        pg_sys::MemoryContextSwitchTo(previous);
        Target {
            rel,
            estate,
            rri,
            row,
            search,
            local,
            defaults: None,
            has_triggers: !(*rel).trigdesc.is_null(),
            speculative,
            other_unique,
        }
    }
}

unsafe fn close_target(t: Target) {
    // SAFETY: `t` was opened by `open_target` in this transaction and is not used again.
    unsafe {
        pg_sys::ExecCloseIndices(t.rri);
        pg_sys::ExecResetTupleTable((*t.estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(t.estate);
        pg_sys::table_close(t.rel, pg_sys::NoLock as i32);
    }
}

/// Applies one change to the local table of `map` with `f`, with the
/// table owner's rights (kept until the transaction ends or another owner's
/// table is next). A table without triggers stays open in `open` for
/// the rest of the transaction (opening a table and its indexes for every
/// row would cost about a third of the apply time); a table with triggers
/// is opened for the change, with its AFTER triggers fired at the end of
/// it, as a statement would.
fn on_table(
    open: &mut HashMap<u32, Target>,
    owner: &mut OwnerContext,
    map: &LocalMap,
    f: impl FnOnce(&mut Target),
) {
    let key = map.relid.to_u32();
    owner.enter(map.owner);
    // SAFETY: executor use within the apply transaction; targets are opened
    // and closed in it.
    unsafe {
        if let std::collections::hash_map::Entry::Vacant(e) = open.entry(key) {
            let target = open_target(map.relid);
            if target.has_triggers {
                let mut target = target;
                (*target.estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
                pg_sys::AfterTriggerBeginQuery();
                prepare_slots(&target);
                f(&mut target);
                pg_sys::AfterTriggerEndQuery(target.estate);
                close_target(target);
                pg_sys::CommandCounterIncrement();
                return;
            }
            e.insert(target);
        }
        let target = open.get_mut(&key).expect("just opened");
        (*target.estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        prepare_slots(target);
        f(target);
        // What the executor allocated per row (index keys, constraint
        // checks) goes with the per-tuple context.
        let econtext = (*target.estate).es_per_tuple_exprcontext;
        if !econtext.is_null() {
            pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
        }
        pg_sys::CommandCounterIncrement();
    }
}

/// Empties the target's slots before a change.
unsafe fn prepare_slots(t: &Target) {
    // SAFETY: the target's slots belong to its executor state and have the
    // table's number of attributes.
    unsafe {
        for slot in [t.row, t.search, t.local] {
            clear_slot(slot);
        }
        let natts = (*(*t.rel).rd_att).natts as usize;
        for slot in [t.row, t.search] {
            for i in 0..natts {
                *(*slot).tts_isnull.add(i) = true;
            }
        }
    }
}

/// Looks up the local row with the key in `key` through `index` into
/// `t.local`, locking it; false when there is none.
unsafe fn find_row(t: &Target, map: &LocalMap, rr: &RemoteRel, index: pg_sys::Oid, key: &Tuple) -> bool {
    // SAFETY: the caller's target, in the apply transaction.
    unsafe {
        clear_slot(t.search);
        let natts = (*(*t.rel).rd_att).natts as usize;
        for i in 0..natts {
            *(*t.search).tts_isnull.add(i) = true;
        }
        fill_slot(t.search, map, rr, key, None);
        pg_sys::ExecStoreVirtualTuple(t.search);
        pg_sys::RelationFindReplTupleByIndex(
            t.rel,
            index,
            pg_sys::LockTupleMode::LockTupleExclusive,
            t.search,
            t.local,
        )
    }
}

/// How long to wait between look-ups of a row not found
/// (`spock.read_retry_count` of them).
const READ_RETRY_PAUSE_US: i64 = 20_000;

/// [`find_row`], looking again up to `spock.read_retry_count` times, with a
/// short pause in between, before the row is declared missing (a change it
/// depends on may still be on its way from another origin, or a local
/// transaction about to commit it).
unsafe fn find_row_retrying(
    t: &Target,
    map: &LocalMap,
    rr: &RemoteRel,
    index: pg_sys::Oid,
    key: &Tuple,
) -> bool {
    let retries = guc::READ_RETRY_COUNT.get().max(0);
    for attempt in 0..=retries {
        // SAFETY: the caller's target, in the apply transaction.
        if unsafe { find_row(t, map, rr, index, key) } {
            return true;
        }
        if attempt < retries {
            // SAFETY: sleeps this process; interrupts are checked after.
            unsafe { pg_sys::pg_usleep(READ_RETRY_PAUSE_US) };
            pgrx::check_for_interrupts!();
        }
    }
    false
}

/// With `spock.check_all_uc_indexes`: looks for a local row that the new
/// row in `t.row` collides with on a unique index other than the key
/// (behaviour.md §7.8) into `t.local`, locked; returns that index. Every
/// valid, immediate unique index is probed in turn with PostgreSQL's own
/// pre-insertion check (the one `INSERT ... ON CONFLICT` uses), which
/// respects partial-index predicates and NULLs as the index treats them,
/// and waits for in-progress inserters.
unsafe fn find_by_other_unique_index(t: &Target, key_index: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: the target's indexes were opened with speculative-insertion
    // information (`open_target`); the conflicting row is locked as
    // `INSERT ... ON CONFLICT DO UPDATE` locks it.
    unsafe {
        let rri = t.rri;
        for i in 0..(*rri).ri_NumIndices as usize {
            let index = *(*rri).ri_IndexRelationDescs.add(i);
            let info = *(*rri).ri_IndexRelationInfo.add(i);
            let form = (*index).rd_index;
            let oid = (*form).indexrelid;
            if oid == key_index || !(*info).ii_Unique || !(*form).indisvalid || !(*form).indimmediate {
                continue;
            }
            let arbiter = pg_sys::lappend_oid(std::ptr::null_mut(), oid);
            loop {
                let mut tid: pg_sys::ItemPointerData = std::mem::zeroed();
                if check_index_constraints(t, &mut tid, arbiter) {
                    break;
                }
                let mut tmfd: pg_sys::TM_FailureData = std::mem::zeroed();
                let result = pg_sys::table_tuple_lock(
                    t.rel,
                    &mut tid,
                    pg_sys::GetLatestSnapshot(),
                    t.local,
                    pg_sys::GetCurrentCommandId(false),
                    pg_sys::LockTupleMode::LockTupleExclusive,
                    pg_sys::LockWaitPolicy::LockWaitBlock,
                    0,
                    &mut tmfd,
                );
                match result {
                    pg_sys::TM_Result::TM_Ok => return Some(oid),
                    // Updated or deleted meanwhile: look again.
                    pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => {}
                    other => raise(
                        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                        format!(
                            "could not lock the local row an incoming INSERT collides with (result {other})"
                        ),
                    ),
                }
            }
        }
        None
    }
}

/// `ExecCheckIndexConstraints`: true when inserting `t.row` violates none
/// of `arbiters`; otherwise the conflicting row's TID is in `tid`.
#[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
unsafe fn check_index_constraints(
    t: &Target,
    tid: &mut pg_sys::ItemPointerData,
    arbiters: *mut pg_sys::List,
) -> bool {
    // SAFETY: the caller's target, in the apply transaction.
    unsafe { pg_sys::ExecCheckIndexConstraints(t.rri, t.row, t.estate, tid, arbiters) }
}

#[cfg(feature = "pg18")]
unsafe fn check_index_constraints(
    t: &Target,
    tid: &mut pg_sys::ItemPointerData,
    arbiters: *mut pg_sys::List,
) -> bool {
    // SAFETY: the caller's target, in the apply transaction; no row of its
    // own is excluded from the check.
    unsafe { pg_sys::ExecCheckIndexConstraints(t.rri, t.row, t.estate, tid, std::ptr::null_mut(), arbiters) }
}

/// Before an UPDATE is applied: when its new row (`t.row`) collides with
/// another row than the one it updates (`t.local`) on a unique index other
/// than the key, reports an `update_exists` conflict and raises the apply
/// error (behaviour.md §7.5: not resolvable).
unsafe fn refuse_update_exists(t: &Target, conflicts: &mut Conflicts, rr: &RemoteRel, remote: &RemoteXact) {
    // SAFETY: the caller's target, with the row to update locked in
    // `t.local` and the new version stored in `t.row`; the colliding row is
    // read into a slot of its own, dropped before returning or raising.
    unsafe {
        for &index in &t.other_unique {
            let arbiter = pg_sys::lappend_oid(std::ptr::null_mut(), index);
            let mut tid: pg_sys::ItemPointerData = std::mem::zeroed();
            if check_index_constraints(t, &mut tid, arbiter)
                || pg_sys::ItemPointerEquals(&mut tid, &mut (*t.local).tts_tid)
            {
                continue;
            }
            let other = pg_sys::table_slot_create(t.rel, std::ptr::null_mut());
            let fetched = pg_sys::table_tuple_fetch_row_version(
                t.rel,
                &mut tid,
                &raw mut pg_sys::SnapshotAnyData,
                other,
            );
            let found = fetched.then(|| conflicts.found(other, remote));
            let relname = rr.qualified();
            conflicts.report(
                &Conflict {
                    relid: (*t.rel).rd_id,
                    outcome: Outcome::update_exists(),
                    relname: &relname,
                    index: Some(index),
                    found: found.as_ref(),
                    local_slot: Some(other),
                    remote_slot: Some(t.row),
                },
                remote,
            );
            pg_sys::ExecDropSingleTupleTableSlot(other);
            raise_hint(
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!(
                    "update_exists: the new version of a row of {} collides with another row on unique index {}",
                    rr.qualified(),
                    relation_name(index)
                ),
                "Another node inserted or updated a row with the same unique value; resolve it by hand on \
                 the nodes that differ.",
            );
        }
    }
}

/// After last-update-wins: replaces the local row (`t.local`) with the
/// incoming one (`t.row`) when it applies, with the computed delta columns
/// in it; when the local version wins but delta columns change, writes
/// them into the local row keeping its commit timestamp and origin.
unsafe fn apply_resolved(
    t: &Target,
    map: &LocalMap,
    found: &Found,
    applies: bool,
    deltas: Option<&Computed>,
) {
    // SAFETY: the caller's target, with the locked local row deformed in
    // `t.local` and the incoming row stored in `t.row`.
    unsafe {
        let changes = deltas.is_some_and(|d| !d.is_empty() && d.changes(map, t.local));
        match spock_core::delta::action(applies, changes) {
            Action::WriteRemote => {
                if let Some(d) = deltas {
                    d.write_into(t.row);
                }
                update_found(t);
            }
            Action::ForceLocalDeltas => {
                clear_slot(t.row);
                prepare_row(t);
                let natts = (*(*t.rel).rd_att).natts as usize;
                for i in 0..natts {
                    *(*t.row).tts_values.add(i) = *(*t.local).tts_values.add(i);
                    *(*t.row).tts_isnull.add(i) = *(*t.local).tts_isnull.add(i);
                }
                deltas.expect("changes come from deltas").write_into(t.row);
                pg_sys::ExecStoreVirtualTuple(t.row);
                delta::keeping_version(found, || update_found(t));
                stats::stage(map.relid, Counter::DeltaApply);
            }
            Action::Nothing => {}
        }
    }
}

/// Replaces the row found (`t.local`) with `t.row`.
unsafe fn update_found(t: &Target) {
    // SAFETY: the caller's target with a locked row in `t.local` and the
    // new version stored in `t.row`.
    unsafe {
        let mut epq: pg_sys::EPQState = std::mem::zeroed();
        epq_init(&mut epq, t.estate);
        pg_sys::ExecSimpleRelationUpdate(t.rri, t.estate, &mut epq, t.local, t.row);
        pg_sys::EvalPlanQualEnd(&mut epq);
    }
}

/// Marks every column of the (cleared) `t.row` NULL, as `prepare_slots` does.
unsafe fn prepare_row(t: &Target) {
    // SAFETY: the target's virtual slot with the table's number of attributes.
    unsafe {
        let natts = (*(*t.rel).rd_att).natts as usize;
        for i in 0..natts {
            *(*t.row).tts_isnull.add(i) = true;
        }
    }
}

#[cfg(feature = "pg15")]
unsafe fn init_range_table(estate: *mut pg_sys::EState, rte: *mut pg_sys::RangeTblEntry) {
    // SAFETY: `rte` was built by `open_target` for this executor state.
    unsafe { pg_sys::ExecInitRangeTable(estate, pg_sys::lappend(std::ptr::null_mut(), rte.cast())) };
}

#[cfg(any(feature = "pg16", feature = "pg17"))]
unsafe fn init_range_table(estate: *mut pg_sys::EState, rte: *mut pg_sys::RangeTblEntry) {
    // SAFETY: `rte` was built by `open_target` for this executor state.
    unsafe {
        let mut perminfos: *mut pg_sys::List = std::ptr::null_mut();
        pg_sys::addRTEPermissionInfo(&mut perminfos, rte);
        pg_sys::ExecInitRangeTable(estate, pg_sys::lappend(std::ptr::null_mut(), rte.cast()), perminfos);
    }
}

#[cfg(feature = "pg18")]
unsafe fn init_range_table(estate: *mut pg_sys::EState, rte: *mut pg_sys::RangeTblEntry) {
    // SAFETY: `rte` was built by `open_target` for this executor state.
    unsafe {
        let mut perminfos: *mut pg_sys::List = std::ptr::null_mut();
        pg_sys::addRTEPermissionInfo(&mut perminfos, rte);
        pg_sys::ExecInitRangeTable(
            estate,
            pg_sys::lappend(std::ptr::null_mut(), rte.cast()),
            perminfos,
            pg_sys::bms_make_singleton(1),
        );
    }
}

#[cfg(feature = "pg15")]
unsafe fn epq_init(epq: *mut pg_sys::EPQState, estate: *mut pg_sys::EState) {
    // SAFETY: `epq` is zeroed memory owned by the caller, `estate` a live executor state.
    unsafe { pg_sys::EvalPlanQualInit(epq, estate, std::ptr::null_mut(), std::ptr::null_mut(), -1) };
}

#[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
unsafe fn epq_init(epq: *mut pg_sys::EPQState, estate: *mut pg_sys::EState) {
    // SAFETY: `epq` is zeroed memory owned by the caller, `estate` a live executor state.
    unsafe {
        pg_sys::EvalPlanQualInit(
            epq,
            estate,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            -1,
            std::ptr::null_mut(),
        )
    };
}

/// `ExecClearTuple()`.
unsafe fn clear_slot(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: a live slot; every slot type has a clear callback.
    unsafe {
        let clear = (*(*slot).tts_ops).clear.expect("slots have a clear callback");
        clear(slot);
    }
}

/// `slot_getallattrs()`: deform every attribute of a slot.
unsafe fn slot_getallattrs(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: a live slot with a tuple descriptor.
    unsafe {
        let natts = (*(*slot).tts_tupleDescriptor).natts;
        if i32::from((*slot).tts_nvalid) < natts {
            pg_sys::slot_getsomeattrs_int(slot, natts);
        }
    }
}

/// The index that finds rows by the replica identity: the local table's
/// replica identity index (its primary key by default).
unsafe fn identity_index(rel: pg_sys::Relation, rr: &RemoteRel) -> pg_sys::Oid {
    // SAFETY: the relation is open (the caller's target).
    let index = unsafe { pg_sys::RelationGetReplicaIndex(rel) };
    if index == pg_sys::InvalidOid {
        raise_hint(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "table {} has no replica identity index on this node, so UPDATE and DELETE cannot find rows",
                rr.qualified()
            ),
            "Give the table the same primary key as on the provider.",
        );
    }
    index
}

/// Fills a cleared virtual slot from a remote tuple. Values the tuple does
/// not carry (unchanged TOAST, or columns outside the old key) come from
/// `base` (the local row) when given.
unsafe fn fill_slot(
    slot: *mut pg_sys::TupleTableSlot,
    map: &LocalMap,
    rr: &RemoteRel,
    tuple: &Tuple,
    base: Option<*mut pg_sys::TupleTableSlot>,
) {
    // SAFETY: `slot` and `base` are live slots of the same table, cleared by
    // `prepare_slots`; values are stored in the current memory context.
    unsafe {
        if let Some(base) = base {
            let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
            for i in 0..natts {
                *(*slot).tts_values.add(i) = *(*base).tts_values.add(i);
                *(*slot).tts_isnull.add(i) = *(*base).tts_isnull.add(i);
            }
        }
        if tuple.0.len() != rr.columns.len() {
            raise(
                PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                format!(
                    "the provider sent {} values for {} columns of {}",
                    tuple.0.len(),
                    rr.columns.len(),
                    rr.qualified()
                ),
            );
        }
        for (remote_idx, value) in tuple.0.iter().enumerate() {
            let local = map.local_att[remote_idx];
            match value {
                Value::Unchanged => {}
                Value::Null => *(*slot).tts_isnull.add(local) = true,
                Value::Text(bytes) => {
                    *(*slot).tts_values.add(local) = map.input(local, bytes);
                    *(*slot).tts_isnull.add(local) = false;
                }
                Value::Binary(_) => raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "the provider sent a value in binary form, which this node does not ask for",
                ),
            }
        }
    }
}

/// Columns the provider does not send get their local defaults on INSERT.
/// The default expressions are prepared once per target and set of
/// unmapped columns (a Relation message in the middle of a transaction can
/// change which columns the provider sends).
unsafe fn fill_defaults(t: &mut Target, map: &LocalMap) {
    // SAFETY: the target's executor state and slots are live; expressions are
    // prepared in the executor state's context.
    unsafe {
        if map.unmapped.is_empty() {
            return;
        }
        if t.defaults.as_ref().is_none_or(|(for_columns, _)| *for_columns != map.unmapped) {
            let previous = pg_sys::MemoryContextSwitchTo((*t.estate).es_query_cxt);
            let mut prepared = Vec::new();
            for &i in &map.unmapped {
                let expr = pg_sys::build_column_default(t.rel, (i + 1) as i32);
                if !expr.is_null() {
                    prepared.push((i, pg_sys::ExecPrepareExpr(expr as *mut pg_sys::Expr, t.estate)));
                }
            }
            pg_sys::MemoryContextSwitchTo(previous);
            t.defaults = Some((map.unmapped.clone(), prepared));
        }
        let econtext = if (*t.estate).es_per_tuple_exprcontext.is_null() {
            pg_sys::MakePerTupleExprContext(t.estate)
        } else {
            (*t.estate).es_per_tuple_exprcontext
        };
        for &(i, state) in &t.defaults.as_ref().expect("prepared above").1 {
            let mut isnull = false;
            let eval = (*state).evalfunc.expect("a prepared expression has an evaluation function");
            let value = eval(state, econtext, &mut isnull);
            *(*t.row).tts_values.add(i) = value;
            *(*t.row).tts_isnull.add(i) = isnull;
        }
    }
}
