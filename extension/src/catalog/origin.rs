//! Replication origins: a subscription's (named like its slot), where its
//! stream has been applied up to; its table-sync worker's; and the
//! forwarding origins that stand for nodes whose transactions arrive
//! through another provider (behaviour.md §5.3).

use std::ffi::CString;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use spock_core::naming;

fn c_name(name: &str) -> CString {
    CString::new(name).expect("slot names have no NUL byte")
}

/// The origin's id, creating the origin if missing (a transactional
/// catalog change).
pub fn ensure(name: &str) -> pg_sys::RepOriginId {
    let c = c_name(name);
    // SAFETY: looks up, or inserts into, pg_replication_origin inside the
    // caller's transaction.
    unsafe {
        let id = pg_sys::replorigin_by_name(c.as_ptr(), true);
        if id != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId {
            id
        } else {
            pg_sys::replorigin_create(c.as_ptr())
        }
    }
}

/// The origin of this name, if it exists.
pub fn by_name(name: &str) -> Option<pg_sys::RepOriginId> {
    let c = c_name(name);
    // SAFETY: a lookup in pg_replication_origin, missing_ok.
    let id = unsafe { pg_sys::replorigin_by_name(c.as_ptr(), true) };
    (id != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId).then_some(id)
}

/// Drops the origin if it exists. Its progress is forgotten at once (not
/// transactionally), so callers do this only when nothing can roll back.
pub fn drop_if_exists(name: &str) {
    if let Some(id) = by_name(name) {
        // SAFETY: locks the origin as an object until the transaction ends;
        // a worker committing under it holds the lock shared (`hold`).
        unsafe {
            pg_sys::LockSharedObject(
                pg_sys::ReplicationOriginRelationId,
                pg_sys::Oid::from(u32::from(id)),
                0,
                pg_sys::AccessExclusiveLock as i32,
            )
        };
    }
    let c = c_name(name);
    // SAFETY: drops an origin by name; missing_ok, and waits if a worker
    // still holds it (nowait = false).
    unsafe { pg_sys::replorigin_drop_by_name(c.as_ptr(), true, false) };
}

/// Makes `origin` this session's origin (changes committed from now on
/// carry it), and returns how far it has applied.
pub fn setup_session(origin: pg_sys::RepOriginId) -> u64 {
    // SAFETY: acquires the origin for this process (an error if another
    // process holds it) and reads its progress.
    unsafe {
        #[cfg(feature = "pg15")]
        pg_sys::replorigin_session_setup(origin);
        #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
        pg_sys::replorigin_session_setup(origin, 0);
        pg_sys::replorigin_session_origin = origin;
        pg_sys::replorigin_session_get_progress(false)
    }
}

/// Gives up this session's origin (taken with `setup_session`).
pub fn reset_session() {
    // SAFETY: releases the origin this process acquired; session-local
    // globals cleared so that later commits carry no origin.
    unsafe {
        pg_sys::replorigin_session_reset();
        pg_sys::replorigin_session_origin = pg_sys::InvalidRepOriginId as pg_sys::RepOriginId;
        pg_sys::replorigin_session_origin_lsn = 0;
        pg_sys::replorigin_session_origin_timestamp = 0;
    }
}

/// Stamps the next commit of this session with the provider position and
/// commit time of the remote transaction it applies.
pub fn stamp_commit(end_lsn: u64, commit_time: i64) {
    // SAFETY: session-local globals read by the commit record code.
    unsafe {
        pg_sys::replorigin_session_origin_lsn = end_lsn;
        pg_sys::replorigin_session_origin_timestamp = commit_time;
    }
}

/// What the table-sync worker's origin name ends with.
const SYNC_SUFFIX: &str = "_sync";

/// The replication origin of a subscription's table-sync worker: the
/// commits of its copies and catch-ups carry it, so that they are never
/// sent on to this node's subscribers and last-update-wins sees them as
/// the provider's (`slot_of_origin`).
pub fn sync_origin_name(slot: &str) -> String {
    format!("{slot}{SYNC_SUFFIX}")
}

/// The slot name of the subscription an origin belongs to: its own name,
/// or that of the subscription whose table-sync worker it is.
pub fn slot_of_origin(name: &str) -> [&str; 2] {
    [name, name.strip_suffix(SYNC_SUFFIX).unwrap_or(name)]
}

/// The node a replication origin of this database stands for, from its
/// name: a subscription's provider (also for its table-sync worker's
/// origin), or the node of a forwarding origin. `None` for origins that
/// are not spock's.
pub fn node_of(client: &SpiClient<'_>, name: &str) -> Option<u32> {
    if let Some(node) = naming::node_of_forward_origin(name) {
        return Some(node);
    }
    slot_of_origin(name)
        .into_iter()
        .find_map(|slot| super::subscription::by_slot_name(client, slot))
        .map(|sub| sub.origin_id)
}

/// The origin that commits of transactions originated on `node` carry when
/// they arrive forwarded: the origin of a subscription from that node if
/// this node has one (enabled or not, so that enabling it later resumes
/// where the forwarded stream got to), else the forwarding origin of that
/// node, created if missing (a transactional catalog change).
/// Returns that origin, and every existing origin that stands for `node`
/// (it included): what was applied from `node` is what the furthest of
/// them has applied, whichever of them was in use when.
pub fn for_forwarded(client: &SpiClient<'_>, node: u32) -> (pg_sys::RepOriginId, Vec<pg_sys::RepOriginId>) {
    let forwarding = forward_origin_name(node);
    let direct = super::subscription::from_provider(client, node);
    let mut all: Vec<pg_sys::RepOriginId> = direct
        .iter()
        .map(|s| s.slot_name.as_str())
        .chain([forwarding.as_str()])
        .filter_map(by_name)
        .collect();
    let chosen = match direct.first() {
        Some(sub) => ensure(&sub.slot_name),
        None => ensure(&forwarding),
    };
    if !all.contains(&chosen) {
        all.push(chosen);
    }
    (chosen, all)
}

/// The name of this database's forwarding origin for `node`.
pub fn forward_origin_name(node: u32) -> String {
    // SAFETY: MyDatabaseId is set in a process connected to a database; the
    // name is palloc'd and copied at once.
    let db = unsafe {
        let name = pg_sys::get_database_name(pg_sys::MyDatabaseId);
        if name.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    };
    naming::forward_origin_name(&db, node)
}

/// Keeps the origin from being dropped until the transaction ends (`false`
/// when it is gone already).
pub fn hold(origin: pg_sys::RepOriginId) -> bool {
    // SAFETY: a shared lock on the origin as an object (the one
    // `drop_if_exists` takes exclusively).
    unsafe {
        pg_sys::LockSharedObject(
            pg_sys::ReplicationOriginRelationId,
            pg_sys::Oid::from(u32::from(origin)),
            0,
            pg_sys::AccessShareLock as i32,
        )
    };
    name_of(origin).is_some()
}

/// The name of the origin with this id, if it exists.
pub fn name_of(origin: pg_sys::RepOriginId) -> Option<String> {
    let mut name: *mut std::ffi::c_char = std::ptr::null_mut();
    // SAFETY: a lookup in pg_replication_origin (a shared catalog, also
    // readable while decoding), its name palloc'd in the current memory
    // context and copied at once.
    unsafe {
        if !pg_sys::replorigin_by_oid(origin, true, &mut name) || name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// How far an origin has applied (its remote LSN), without holding it.
pub fn progress(origin: pg_sys::RepOriginId) -> u64 {
    // SAFETY: reads an origin's progress from shared memory under its lock.
    unsafe { pg_sys::replorigin_get_progress(origin, false) }
}

/// Moves an origin that no process holds forward to `remote_lsn` (never
/// backward). Not WAL-logged: a crash can take it back to its last
/// checkpointed or committed position, which the forwarding path makes
/// harmless (`apply::forward`).
pub fn advance(origin: pg_sys::RepOriginId, remote_lsn: u64, local_lsn: u64) {
    // SAFETY: updates the origin's slot in shared memory under its lock; an
    // error if another process holds it.
    unsafe { pg_sys::replorigin_advance(origin, remote_lsn, local_lsn, false, false) };
}

/// This database's forwarding origins.
pub fn forwarding_origins(client: &SpiClient<'_>) -> Vec<String> {
    let names: Vec<String> = client
        .select(
            "SELECT roname::text FROM pg_catalog.pg_replication_origin WHERE roname LIKE 'spkfwd\\_%'",
            None,
            &[],
        )
        .unwrap_or_else(super::spi_failed("read pg_replication_origin"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect();
    names
        .into_iter()
        .filter(|name| {
            naming::node_of_forward_origin(name).is_some_and(|node| forward_origin_name(node) == *name)
        })
        .collect()
}

/// Counts the changes of `pg_replication_origin` this process has seen.
static mut GENERATION: u64 = 0;
/// Whether this process registered `origins_changed` (once: callback slots
/// are few, and a table-sync worker makes a dispatcher per table).
static mut CALLBACK_REGISTERED: bool = false;

#[pg_guard]
unsafe extern "C-unwind" fn origins_changed(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    // SAFETY: a counter of this single-threaded process, read by `ByOrigin`.
    unsafe { GENERATION += 1 };
}

fn generation() -> u64 {
    // SAFETY: process-local globals; the syscache callback is registered
    // once, for the life of the process.
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::REPLORIGIDENT as i32,
                Some(origins_changed),
                pg_sys::Datum::from(0),
            );
            CALLBACK_REGISTERED = true;
        }
        GENERATION
    }
}

/// A process-local cache of what replication origins stand for, emptied
/// whenever `pg_replication_origin` changes (an origin id can be reused
/// after a drop).
pub struct ByOrigin<K, V> {
    generation: u64,
    map: std::collections::HashMap<K, V>,
}

impl<K: std::hash::Hash + Eq, V: Clone> ByOrigin<K, V> {
    pub fn new() -> Self {
        ByOrigin { generation: generation(), map: std::collections::HashMap::new() }
    }

    /// The cached value of `key`, or `make`'s, cached.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        let now = generation();
        if now != self.generation {
            self.map.clear();
            self.generation = now;
        }
        self.map.entry(key).or_insert_with(make).clone()
    }
}
