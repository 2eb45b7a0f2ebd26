//! Replication statistics (sql-api.md §4.8).
//!
//! Channel statistics: per (database, subscription, table) counters of the
//! rows a subscription's workers applied, and under subscription 0 of the
//! rows this node's walsenders sent. They live in a shared hash table of
//! `spock.stats_max_entries` entries (pairs beyond it are not counted) and
//! are lost at a restart. A process counts into a table of its own and adds
//! it to the shared one when its transaction commits: one lock per
//! transaction, and nothing from a transaction that aborted.
//!
//! Subscription statistics: the conflict counters of each subscription,
//! kept in its worker registry slot, written to `pg_spock/` when its apply
//! worker exits and read back by the first worker after the server starts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::path::PathBuf;

use pgrx::pg_guard;
use pgrx::prelude::*;
use spock_core::stats::SavedStats;

use crate::guc;
use crate::workers::registry;

/// The channel counters, in the order of `spock.get_channel_stats`.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    Insert = 0,
    Update = 1,
    Delete = 2,
    /// A conflict recorded as resolvable (behaviour.md §7.6).
    Conflict = 3,
    /// A delta-apply override (behaviour.md §9).
    DeltaApply = 4,
}

const COUNTERS: usize = 5;

#[repr(C)]
#[derive(Clone, Copy)]
struct Entry {
    dboid: u32,
    subid: u32,
    relid: u32,
    in_use: u32,
    counts: [u64; COUNTERS],
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    capacity: u32,
    used: u32,
}

static mut AREA: *mut Header = std::ptr::null_mut();
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

const TRANCHE: &CStr = c"spock_stats";

thread_local! {
    /// This process's counts since its transaction began: (subid, relid).
    static PENDING: RefCell<HashMap<(u32, u32), [u64; COUNTERS]>> = RefCell::new(HashMap::new());
    /// Conflicts and delta-apply overrides of the change being applied,
    /// kept apart until the change succeeds (in exception mode a change
    /// that fails is rolled back with its subtransaction).
    static STAGED: RefCell<HashMap<(u32, u32), [u64; COUNTERS]>> = RefCell::new(HashMap::new());
    /// The subscription this apply or table-sync worker applies for.
    static SUBSCRIPTION: Cell<u32> = const { Cell::new(0) };
}

/// The capacity `spock.stats_max_entries` asks for.
fn capacity() -> usize {
    match guc::STATS_MAX_ENTRIES.get() {
        // SAFETY: a postmaster setting, read while the postmaster sets up.
        n if n < 0 => 1000 * unsafe { pg_sys::max_worker_processes }.max(1) as usize,
        n => n as usize,
    }
}

fn area_size(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Entry>()
}

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    // SAFETY: hook chaining in the postmaster, while libraries are preloaded.
    unsafe {
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn request() {
    // SAFETY: runs in the postmaster's shared memory request phase.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(area_size(capacity()));
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: runs in the postmaster after shared memory is created; the
    // pointer it sets is inherited by every child process.
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let capacity = capacity();
        let mut found = false;
        let area =
            pg_sys::ShmemInitStruct(c"spock channel statistics".as_ptr(), area_size(capacity), &mut found)
                as *mut Header;
        if !found {
            std::ptr::write_bytes(area as *mut u8, 0, area_size(capacity));
            (*area).lock = &mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
            (*area).capacity = capacity as u32;
        }
        AREA = area;
    }
}

/// The shared table, when the library was preloaded.
fn area() -> Option<*mut Header> {
    // SAFETY: set once in the postmaster before any child exists.
    let area = unsafe { AREA };
    (!area.is_null()).then_some(area)
}

/// # Safety
/// `area` is the shared table, locked by the caller.
unsafe fn entries<'a>(area: *mut Header) -> &'a mut [Entry] {
    // SAFETY: the entries follow the header, `capacity` of them.
    unsafe {
        let first = (area as *mut u8).add(std::mem::size_of::<Header>()) as *mut Entry;
        std::slice::from_raw_parts_mut(first, (*area).capacity as usize)
    }
}

/// Runs `f` on the shared table under its lock.
fn locked<R>(exclusive: bool, f: impl FnOnce(&mut Header, &mut [Entry]) -> R) -> Option<R> {
    let area = area()?;
    let mode = if exclusive { pg_sys::LWLockMode::LW_EXCLUSIVE } else { pg_sys::LWLockMode::LW_SHARED };
    // SAFETY: the lock guards the table; the closure does not raise
    // errors (an error would release it anyway, with all LWLocks).
    unsafe {
        pg_sys::LWLockAcquire((*area).lock, mode);
        let out = f(&mut *area, entries(area));
        pg_sys::LWLockRelease((*area).lock);
        Some(out)
    }
}

fn home(dboid: u32, subid: u32, relid: u32, capacity: usize) -> usize {
    let key =
        (u64::from(dboid) << 32 | u64::from(relid)) ^ u64::from(subid).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (key.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 17) as usize % capacity.max(1)
}

/// The entry of a key, claimed if new; `None` when the table is full.
fn entry_of<'a>(
    header: &mut Header,
    entries: &'a mut [Entry],
    key: (u32, u32, u32),
) -> Option<&'a mut Entry> {
    let capacity = entries.len();
    if capacity == 0 {
        return None;
    }
    let (dboid, subid, relid) = key;
    let start = home(dboid, subid, relid, capacity);
    for step in 0..capacity {
        let i = (start + step) % capacity;
        let e = &entries[i];
        if e.in_use == 0 {
            if header.used as usize >= capacity {
                return None;
            }
            header.used += 1;
            entries[i] = Entry { dboid, subid, relid, in_use: 1, counts: [0; COUNTERS] };
            return Some(&mut entries[i]);
        }
        if e.dboid == dboid && e.subid == subid && e.relid == relid {
            return Some(&mut entries[i]);
        }
    }
    None
}

/// The subscription this worker applies for (its changes are counted
/// under it).
pub fn set_subscription(subid: u32) {
    SUBSCRIPTION.with(|s| s.set(subid));
}

/// Counts one row of `relid` for this worker's subscription, or as sent
/// (subscription 0) in a walsender; for an apply worker, the change
/// succeeded, and what it staged counts too.
pub fn count(relid: pg_sys::Oid, counter: Counter) {
    if !guc::CHANNEL_COUNTERS.get() || area().is_none() {
        return;
    }
    let subid = SUBSCRIPTION.with(|s| s.get());
    let staged = STAGED.with(|s| std::mem::take(&mut *s.borrow_mut()));
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        for (key, counts) in staged {
            let total = p.entry(key).or_default();
            for (t, n) in total.iter_mut().zip(counts) {
                *t += n;
            }
        }
        p.entry((subid, relid.to_u32())).or_default()[counter as usize] += 1;
    });
}

/// Notes a conflict or delta-apply override of the change being applied
/// (counted when the change succeeds, with [`count`]).
pub fn stage(relid: pg_sys::Oid, counter: Counter) {
    if !guc::CHANNEL_COUNTERS.get() || area().is_none() {
        return;
    }
    let subid = SUBSCRIPTION.with(|s| s.get());
    STAGED.with(|s| s.borrow_mut().entry((subid, relid.to_u32())).or_default()[counter as usize] += 1);
}

/// A change starts: what a failed one before it staged is forgotten.
pub fn drop_staged() {
    STAGED.with(|s| s.borrow_mut().clear());
}

/// Adds what this process counted to the shared table: call when its
/// transaction committed.
pub fn flush() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if pending.is_empty() {
        return;
    }
    // SAFETY: reads this backend's database.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    locked(true, |header, entries| {
        for ((subid, relid), counts) in pending {
            if let Some(e) = entry_of(header, entries, (dboid, subid, relid)) {
                for (total, n) in e.counts.iter_mut().zip(counts) {
                    *total += n;
                }
            }
        }
    });
}

/// One row of `spock.get_channel_stats`.
pub struct ChannelRow {
    pub subid: u32,
    pub relid: u32,
    pub counts: [u64; COUNTERS],
}

/// The channel counters of a database.
pub fn channel_stats(dboid: u32) -> Vec<ChannelRow> {
    locked(false, |_, entries| {
        entries
            .iter()
            .filter(|e| e.in_use != 0 && e.dboid == dboid)
            .map(|e| ChannelRow { subid: e.subid, relid: e.relid, counts: e.counts })
            .collect()
    })
    .unwrap_or_default()
}

/// Zeroes the channel counters of a database (the others stay).
pub fn reset_channel_stats(dboid: u32) {
    locked(true, |header, entries| {
        let kept: Vec<Entry> =
            entries.iter().filter(|e| e.in_use != 0 && e.dboid != dboid).copied().collect();
        entries.iter_mut().for_each(|e| e.in_use = 0);
        header.used = 0;
        for e in kept {
            if let Some(slot) = entry_of(header, entries, (e.dboid, e.subid, e.relid)) {
                slot.counts = e.counts;
            }
        }
    });
}

/// Where an apply worker saves its subscription's conflict counters.
fn stats_file(dboid: u32, subid: u32) -> PathBuf {
    crate::workers::state_file(&format!("stats-{dboid}-{subid}"))
}

/// The counters saved for a subscription created at `created_at`.
pub fn saved_subscription_stats(dboid: u32, subid: u32, created_at: i64) -> Option<SavedStats> {
    std::fs::read_to_string(stats_file(dboid, subid))
        .ok()
        .and_then(|t| SavedStats::parse(&t))
        .and_then(|s| s.of_subscription(created_at))
}

/// Writes a subscription's counters to its file.
pub fn save_subscription_stats(dboid: u32, subid: u32, stats: &SavedStats) {
    let path = stats_file(dboid, subid);
    if let Err(e) = crate::workers::write_state_file(&path, &stats.encode()) {
        pgrx::log!("spock: cannot save the statistics of subscription {subid} in {}: {e}", path.display());
    }
}

thread_local! {
    /// What the exit callback saves: (dboid, subid, created_at).
    static SAVE_AT_EXIT: Cell<Option<(u32, u32, i64)>> = const { Cell::new(None) };
}

/// An apply worker starts: it counts under its subscription, puts back
/// what the last worker saved (once per server start), and saves the
/// counters when it exits.
pub fn start_apply_worker(dboid: u32, subid: u32, created_at: i64) {
    set_subscription(subid);
    let saved = saved_subscription_stats(dboid, subid, created_at).map(|s| (s.conflicts, s.reset_at));
    registry::load_subscription_stats(dboid, subid, saved);
    SAVE_AT_EXIT.with(|s| s.set(Some((dboid, subid, created_at))));
    // SAFETY: registers a callback that runs while shared memory is attached.
    unsafe { pg_sys::before_shmem_exit(Some(save_on_exit), pg_sys::Datum::from(0usize)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn save_on_exit(_code: i32, _arg: pg_sys::Datum) {
    let Some((dboid, subid, created_at)) = SAVE_AT_EXIT.with(|s| s.get()) else { return };
    if let Some((conflicts, reset_at)) = registry::subscription_stats(dboid, subid) {
        save_subscription_stats(dboid, subid, &SavedStats { created_at, reset_at, conflicts });
    }
}
