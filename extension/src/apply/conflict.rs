//! Conflicts met while applying (behaviour.md §7): the metadata of the
//! local row version an incoming change finds (commit timestamp and the
//! node behind its replication origin), the tiebreakers of the nodes, and
//! the report of a conflict (a server-log message and a `spock.resolutions`
//! row). The rule itself is `spock_core::conflict`.

use std::cell::OnceCell;
use std::ffi::CStr;

use pgrx::pg_sys::elog::PgLogLevel;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use spock_core::conflict::{
    self, ConflictType, LocalOrigin, LocalVersion, Outcome, Reason, RemoteVersion, Tiebreakers,
};

use crate::catalog::subscription::Subscription;
use crate::catalog::{self, node::KnownNode, resolutions};
use crate::guc;
use crate::workers::registry;

/// The remote transaction being applied.
#[derive(Clone, Copy, Debug)]
pub struct RemoteXact {
    pub version: RemoteVersion,
    pub xid: u32,
    /// The provider's commit LSN of the transaction.
    pub commit_lsn: u64,
}

/// The local row version an incoming change found, with its `xmin`.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub version: LocalVersion,
    pub xmin: u32,
    /// The replication origin of the version's commit-timestamp data.
    pub roident: pg_sys::RepOriginId,
}

/// What one apply worker knows for resolving conflicts: its subscription's
/// nodes, and which node each replication origin stands for.
pub struct Conflicts {
    local_node: u32,
    local_node_name: String,
    provider: u32,
    sub_created_at: i64,
    sub_id: u32,
    /// Replication origin id → the node it applies from.
    origins: catalog::origin::ByOrigin<u16, LocalOrigin>,
}

/// The local row the current change last looked at (`Conflicts::found`):
/// the row an `exception_log` entry shows when the change fails.
#[derive(Clone, Copy)]
struct Involved {
    relid: pg_sys::Oid,
    tid: pg_sys::ItemPointerData,
    found: Found,
}

thread_local! {
    static INVOLVED: std::cell::Cell<Option<Involved>> = const { std::cell::Cell::new(None) };
}

/// The local row involved in a failed change, as `exception_log` shows it.
pub struct InvolvedRow {
    /// The node that wrote it (this node's id for a local write).
    pub origin: Option<u32>,
    pub commit_ts: Option<i64>,
    pub json: Option<String>,
}

impl Conflicts {
    pub fn new(sub: &Subscription) -> Conflicts {
        Conflicts {
            local_node: sub.target_id,
            local_node_name: sub.target_name.clone(),
            provider: sub.origin_id,
            sub_created_at: sub.created_at,
            sub_id: sub.sub_id,
            origins: catalog::origin::ByOrigin::new(),
        }
    }

    /// The node a remote transaction originated on: the provider, or the
    /// node it forwards from.
    pub fn remote_origin(&self, origin_node: u32) -> u32 {
        if origin_node != 0 { origin_node } else { self.provider }
    }

    /// The metadata of the local row version in `slot` (a row just found).
    ///
    /// # Safety
    /// `slot` holds a heap row of the target table.
    pub unsafe fn found(&mut self, slot: *mut pg_sys::TupleTableSlot, remote: &RemoteXact) -> Found {
        // SAFETY: per the contract.
        let found = unsafe { self.version_of(slot, remote) };
        // SAFETY: the slot holds a stored row, so its table and TID are set.
        let (relid, tid) = unsafe { ((*slot).tts_tableOid, (*slot).tts_tid) };
        INVOLVED.with(|i| i.set(Some(Involved { relid, tid, found })));
        found
    }

    /// Forgets the local row a previous change looked at.
    pub fn forget_involved(&self) {
        INVOLVED.with(|i| i.set(None));
    }

    /// The local row the failed change looked at last, read again by its
    /// TID after the change's subtransaction was rolled back; `None` when
    /// it found none.
    pub fn involved_row(&self) -> Option<InvolvedRow> {
        let involved = INVOLVED.with(|i| i.take())?;
        let origin = match involved.found.version.origin {
            LocalOrigin::ThisNode => Some(self.local_node),
            other => conflict::recorded_origin(other),
        };
        // SAFETY: reads one row version by TID from a table opened and
        // closed here, in the apply transaction, into a slot of its own.
        let json = unsafe {
            let rel = pg_sys::try_table_open(involved.relid, pg_sys::AccessShareLock as i32);
            if rel.is_null() {
                None
            } else {
                let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
                let mut tid = involved.tid;
                let json = pg_sys::table_tuple_fetch_row_version(
                    rel,
                    &mut tid,
                    &raw mut pg_sys::SnapshotAnyData,
                    slot,
                )
                .then(|| row_json(slot));
                pg_sys::ExecDropSingleTupleTableSlot(slot);
                pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
                json
            }
        };
        Some(InvolvedRow { origin, commit_ts: involved.found.version.commit_ts, json })
    }

    /// The version of the row in `slot`.
    ///
    /// # Safety
    /// As for [`Conflicts::found`].
    unsafe fn version_of(&mut self, slot: *mut pg_sys::TupleTableSlot, remote: &RemoteXact) -> Found {
        // SAFETY: per the contract, a slot with a physical tuple, so it has
        // system attributes; commit-timestamp data is read for its xmin.
        unsafe {
            let getsysattr = (*(*slot).tts_ops).getsysattr.expect("heap slots have system attributes");
            let mut isnull = false;
            let xmin = getsysattr(slot, pg_sys::MinTransactionIdAttributeNumber, &mut isnull).value() as u32;
            if pg_sys::TransactionIdIsCurrentTransactionId(xmin.into()) {
                let roident = pg_sys::replorigin_session_origin;
                return Found { version: LocalVersion::same_transaction(&remote.version), xmin, roident };
            }
            let mut ts: pg_sys::TimestampTz = 0;
            let mut roident: pg_sys::RepOriginId = 0;
            if !pg_sys::TransactionIdGetCommitTsData(xmin.into(), &mut ts, &mut roident) {
                return Found {
                    version: LocalVersion { commit_ts: None, origin: LocalOrigin::Unknown },
                    xmin,
                    roident,
                };
            }
            Found {
                version: LocalVersion { commit_ts: Some(ts), origin: self.origin_node(roident) },
                xmin,
                roident,
            }
        }
    }

    /// The node behind a replication origin of this database.
    fn origin_node(&mut self, roident: pg_sys::RepOriginId) -> LocalOrigin {
        if roident == pg_sys::InvalidRepOriginId as pg_sys::RepOriginId {
            return LocalOrigin::ThisNode;
        }
        // SAFETY: reads this session's origin, a process-local global.
        if roident == unsafe { pg_sys::replorigin_session_origin } {
            return LocalOrigin::Node(self.provider);
        }
        self.origins.get_or_insert_with(roident, || {
            catalog::origin::name_of(roident)
                .and_then(|name| {
                    catalog::with_catalog_owner_rights(|| {
                        Spi::connect(|client| catalog::origin::node_of(client, &name))
                    })
                })
                .map_or(LocalOrigin::Unknown, LocalOrigin::Node)
        })
    }

    /// Resolves an incoming change against the local version found (if
    /// any). The nodes' tiebreakers are read only for a tie.
    pub fn resolve(&self, change: conflict::Change, found: Option<&Found>, remote: &RemoteXact) -> Outcome {
        let nodes: OnceCell<Vec<KnownNode>> = OnceCell::new();
        let of =
            |id: u32| known_nodes(&nodes).iter().find(|n| n.id == id).map_or(i64::from(id), |n| n.tiebreaker);
        let tiebreakers = Tiebreakers { local_node: self.local_node, of: &of };
        let outcome = conflict::resolve(change, found.map(|f| &f.version), &remote.version, &tiebreakers);
        match outcome.reason {
            Some(Reason::Tiebreaker { local_node, local, remote_node, remote: r }) => {
                let (winner, loser) = if r < local {
                    ((remote_node, r), (local_node, local))
                } else {
                    ((local_node, local), (remote_node, r))
                };
                pgrx::log!(
                    "spock: equal commit timestamps; the version of node {} (tiebreaker {}) wins over node {} (tiebreaker {})",
                    node_name(&nodes, winner.0),
                    winner.1,
                    node_name(&nodes, loser.0),
                    loser.1
                );
            }
            Some(Reason::EqualTiebreakers { local_node, remote_node }) => {
                ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    format!(
                        "spock: nodes {} and {} have the same tiebreaker; the incoming change won a tie of equal commit timestamps",
                        node_name(&nodes, local_node),
                        node_name(&nodes, remote_node)
                    ),
                    "spock",
                )
                .set_hint("Give every node a distinct integer in spock.node.info->'tiebreaker', the same on every node.")
                .report(PgLogLevel::WARNING);
            }
            _ => {}
        }
        outcome
    }

    /// Logs and records a conflict as behaviour.md §7.6-7.7 say.
    pub fn report(&self, c: &Conflict<'_>, remote: &RemoteXact) {
        let Some(kind) = c.outcome.conflict else { return };
        // SAFETY: reads this backend's database.
        let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
        registry::count_conflict(dboid, self.sub_id, spock_core::stats::column_of(kind));
        let resolvable = conflict::recorded(kind, c.outcome.resolution);
        if resolvable {
            crate::stats::stage(c.relid, crate::stats::Counter::Conflict);
        }
        let record = guc::SAVE_RESOLUTIONS.get() && resolvable;
        let log = conflict::logged(
            &c.outcome,
            c.found.map(|f| &f.version),
            guc::log_origin_change(),
            self.sub_created_at,
        );
        let level = guc::CONFLICT_LOG_LEVEL.get().level();
        // SAFETY: asks whether a message at this level would go anywhere.
        let log = log
            && (level as i32 >= PgLogLevel::ERROR as i32
                || unsafe { pg_sys::message_level_is_interesting(level as i32) });
        if !record && !log {
            return;
        }
        // SAFETY: the caller's slots hold rows of the target table.
        let (local_json, remote_json) = unsafe {
            (
                c.local_slot.filter(|_| c.found.is_some()).map(|s| row_json(s)),
                c.remote_slot.map(|s| row_json(s)),
            )
        };
        let index = c.index.map(relation_name);
        if record {
            let row = resolutions::Resolution {
                node_name: &self.local_node_name,
                relname: c.relname,
                idxname: index.as_deref(),
                conflict_type: kind.name(),
                conflict_resolution: c.outcome.resolution.name(),
                local_origin: c.found.and_then(|f| conflict::recorded_origin(f.version.origin)),
                local_tuple: local_json.as_deref(),
                local_xid: c.found.map(|f| f.xmin),
                local_timestamp: c.found.and_then(|f| f.version.commit_ts),
                remote_origin: remote.version.origin,
                remote_tuple: remote_json.as_deref(),
                remote_xid: remote.xid,
                remote_timestamp: remote.version.commit_ts,
                remote_lsn: remote.commit_lsn,
            };
            catalog::with_catalog_owner_rights(|| {
                Spi::connect_mut(|client| resolutions::insert(client, &row))
            });
        }
        if log {
            let local = match c.found {
                None => "no local row".to_string(),
                Some(f) => format!(
                    "local row {} (origin {}, committed {}, xid {})",
                    local_json.as_deref().unwrap_or("?"),
                    origin_text(f.version.origin),
                    f.version.commit_ts.map_or("at an unknown time".to_string(), timestamp_text),
                    f.xmin
                ),
            };
            let detail = format!(
                "{local}; remote row {} (origin node {}, committed {}, xid {}, commit LSN {})",
                remote_json.as_deref().unwrap_or("?"),
                remote.version.origin,
                timestamp_text(remote.version.commit_ts),
                remote.xid,
                spock_core::stream::format_lsn(remote.commit_lsn)
            );
            let code = match kind {
                ConflictType::InsertExists | ConflictType::UpdateExists => {
                    PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION
                }
                ConflictType::UpdateMissing | ConflictType::DeleteMissing => {
                    PgSqlErrorCode::ERRCODE_NO_DATA_FOUND
                }
                _ => PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            };
            ErrorReport::new(
                code,
                format!(
                    "spock conflict {} on {}{}: {}",
                    kind.name(),
                    c.relname,
                    index.map(|i| format!(" (index {i})")).unwrap_or_default(),
                    c.outcome.resolution.name()
                ),
                "spock",
            )
            .set_detail(detail)
            .report(level);
        }
    }

    /// A WARNING when an incoming commit timestamp is more than a minute
    /// ahead of this node's clock (it pushes the commit clock forward).
    pub fn check_clock(&self, remote: &RemoteXact) {
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if conflict::far_ahead(remote.version.commit_ts, now) {
            pgrx::warning!(
                "spock: the remote transaction {} from node {} committed at {}, more than a minute ahead of this node's clock; check the clocks",
                remote.xid,
                remote.version.origin,
                timestamp_text(remote.version.commit_ts)
            );
        }
    }
}

/// One conflict to report.
pub struct Conflict<'a> {
    /// The local table.
    pub relid: pg_sys::Oid,
    pub outcome: Outcome,
    pub relname: &'a str,
    /// The index the local row was looked up with.
    pub index: Option<pg_sys::Oid>,
    pub found: Option<&'a Found>,
    pub local_slot: Option<*mut pg_sys::TupleTableSlot>,
    pub remote_slot: Option<*mut pg_sys::TupleTableSlot>,
}

fn known_nodes(cell: &OnceCell<Vec<KnownNode>>) -> &Vec<KnownNode> {
    cell.get_or_init(|| catalog::with_catalog_owner_rights(|| Spi::connect(catalog::node::known_nodes)))
}

fn node_name(cell: &OnceCell<Vec<KnownNode>>, id: u32) -> String {
    known_nodes(cell)
        .iter()
        .find(|n| n.id == id)
        .map_or_else(|| format!("with id {id}"), |n| format!("\"{}\"", n.name))
}

fn origin_text(origin: LocalOrigin) -> String {
    match origin {
        LocalOrigin::ThisNode => "this node".into(),
        LocalOrigin::Node(id) => format!("node {id}"),
        LocalOrigin::Unknown => "unknown".into(),
    }
}

fn timestamp_text(ts: i64) -> String {
    // SAFETY: formats into a static buffer, copied at once.
    unsafe { CStr::from_ptr(pg_sys::timestamptz_to_str(ts)) }.to_string_lossy().into_owned()
}

/// A relation's (or index's) name, for messages; its OID when it is gone.
pub(super) fn relation_name(oid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; NULL when the relation is gone.
    let name = unsafe { pg_sys::get_rel_name(oid) };
    if name.is_null() {
        return format!("{}", oid.to_u32());
    }
    // SAFETY: a palloc'd NUL-terminated name.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

unsafe extern "C-unwind" {
    /// PostgreSQL's `row_to_json(record)` as a function pointer (pgrx binds
    /// it only as a Rust wrapper).
    #[link_name = "row_to_json"]
    fn postgres_row_to_json(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}

/// A row as a JSON object keyed by column name (`row_to_json`).
///
/// # Safety
/// `slot` holds a row (stored, virtual or physical) of a table's row type.
unsafe fn row_json(slot: *mut pg_sys::TupleTableSlot) -> String {
    // SAFETY: per the contract; the composite datum and the text are
    // allocated in the current (per-change) memory context.
    unsafe {
        let datum = pg_sys::ExecFetchSlotHeapTupleDatum(slot);
        let json = pg_sys::DirectFunctionCall1Coll(Some(postgres_row_to_json), pg_sys::InvalidOid, datum);
        let text = pg_sys::text_to_cstring(json.cast_mut_ptr());
        CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}
