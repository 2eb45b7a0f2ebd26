//! Shared memory: the registry of spock's workers (which apply worker runs
//! for which subscription, which failed and when) and the way SQL functions
//! wake the supervisor and the managers after a catalog change commits.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{PgXactCallbackEvent, pg_shmem_init, register_xact_callback};

/// Most workers spock runs at once (managers and apply workers).
pub const MAX_WORKERS: usize = 128;

pub const KIND_FREE: u8 = 0;
pub const KIND_MANAGER: u8 = 1;
pub const KIND_APPLY: u8 = 2;

/// One worker: a manager of a database or the apply worker of a subscription.
#[derive(Copy, Clone, Debug, Default)]
pub struct Slot {
    pub kind: u8,
    pub dboid: u32,
    /// The subscription of an apply worker; 0 for a manager.
    pub subid: u32,
    /// The running process, 0 when none.
    pub pid: i32,
    /// Its latch, for waking it.
    pub latch: usize,
    /// When the last process of this slot exited with an error (0 if never,
    /// or if it later exited cleanly).
    pub failed_at: i64,
    /// The manager's view: a worker was launched and has not reported yet.
    pub launched_at: i64,
    /// No new worker before this time: a backend stopped the worker and is
    /// about to commit a catalog change (disable, drop) the manager must see
    /// before it decides to start one again.
    pub hold_until: i64,
}

#[derive(Copy, Clone, Debug)]
pub struct Registry {
    pub supervisor_latch: usize,
    /// Bumped whenever a catalog change needs workers to look again.
    pub generation: u64,
    pub slots: [Slot; MAX_WORKERS],
}

impl Default for Registry {
    fn default() -> Self {
        Registry { supervisor_latch: 0, generation: 0, slots: [Slot::default(); MAX_WORKERS] }
    }
}

// SAFETY: plain data, no pointers that are dereferenced across processes
// except latches, which live in shared memory.
unsafe impl PGRXSharedMemory for Registry {}

pub static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"spock_worker_registry") };

/// Set in the postmaster when the library is preloaded (inherited by every
/// process it forks).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; called from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(REGISTRY);
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Whether the registry exists (the library was preloaded).
pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn my_latch() -> usize {
    // SAFETY: MyLatch is this process's latch, in shared memory for
    // processes that have a PGPROC.
    unsafe { pg_sys::MyLatch as usize }
}

fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: a latch recorded by a live worker; setting a latch of a
        // process that just exited is harmless (it is reused only by a new
        // process of the same slot in PGPROC memory).
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// The supervisor records its latch.
pub fn register_supervisor() {
    REGISTRY.exclusive().supervisor_latch = my_latch();
}

/// A worker claims its slot (one per manager database or subscription) and
/// arranges for the slot to be released when the process exits.
pub fn claim(kind: u8, dboid: u32, subid: u32) {
    {
        let mut reg = REGISTRY.exclusive();
        let index =
            match reg.slots.iter().position(|s| s.kind == kind && s.dboid == dboid && s.subid == subid) {
                Some(i) => i,
                None => match reg.slots.iter().position(|s| s.kind == KIND_FREE) {
                    Some(i) => i,
                    None => crate::errors::raise(
                        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                        format!("spock cannot run more than {MAX_WORKERS} workers"),
                    ),
                },
            };
        let slot = &mut reg.slots[index];
        // SAFETY: reads this process's pid.
        *slot = Slot {
            kind,
            dboid,
            subid,
            pid: unsafe { pg_sys::MyProcPid },
            latch: my_latch(),
            failed_at: slot.failed_at,
            launched_at: 0,
            hold_until: 0,
        };
    }
    // SAFETY: registers a callback that runs while shared memory is still attached.
    unsafe { pg_sys::before_shmem_exit(Some(release_on_exit), pg_sys::Datum::from(0usize)) };
}

/// Clears this process's slot; an exit with an error code marks it failed so
/// that the manager waits `spock.restart_delay_default` before a restart.
#[pg_guard]
unsafe extern "C-unwind" fn release_on_exit(code: i32, _arg: pg_sys::Datum) {
    // SAFETY: reads this process's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    let mut reg = REGISTRY.exclusive();
    for slot in reg.slots.iter_mut().filter(|s| s.pid == pid) {
        slot.pid = 0;
        slot.latch = 0;
        slot.failed_at = if code != 0 { now() } else { 0 };
    }
}

/// A copy of the slot of a subscription's apply worker, if any.
pub fn apply_slot(dboid: u32, subid: u32) -> Option<Slot> {
    if !available() {
        return None;
    }
    REGISTRY
        .share()
        .slots
        .iter()
        .find(|s| s.kind == KIND_APPLY && s.dboid == dboid && s.subid == subid)
        .copied()
}

/// Whether a process currently runs the apply worker of a subscription.
pub fn apply_running(dboid: u32, subid: u32) -> bool {
    apply_slot(dboid, subid).is_some_and(|s| s.pid != 0)
}

/// The manager notes it launched a worker (so it does not launch it twice
/// while the worker starts).
pub fn note_launch(dboid: u32, subid: u32) {
    let mut reg = REGISTRY.exclusive();
    let index = reg
        .slots
        .iter()
        .position(|s| s.kind == KIND_APPLY && s.dboid == dboid && s.subid == subid)
        .or_else(|| reg.slots.iter().position(|s| s.kind == KIND_FREE));
    if let Some(i) = index {
        let slot = &mut reg.slots[i];
        if slot.kind == KIND_FREE {
            *slot = Slot { kind: KIND_APPLY, dboid, subid, ..Slot::default() };
        }
        slot.launched_at = now();
    }
}

/// Forgets the slots of subscriptions that no longer exist in a database.
pub fn forget_apply_slots(dboid: u32, keep: &[u32]) {
    let mut reg = REGISTRY.exclusive();
    for slot in reg.slots.iter_mut() {
        if slot.kind == KIND_APPLY && slot.dboid == dboid && slot.pid == 0 && !keep.contains(&slot.subid) {
            *slot = Slot::default();
        }
    }
}

/// The current generation (see [`wake_after_commit`]).
pub fn generation() -> u64 {
    REGISTRY.share().generation
}

/// Wakes the supervisor and every manager now.
pub fn wake_all() {
    if !available() {
        return;
    }
    let latches: Vec<usize> = {
        let mut reg = REGISTRY.exclusive();
        reg.generation += 1;
        std::iter::once(reg.supervisor_latch)
            .chain(reg.slots.iter().filter(|s| s.kind == KIND_MANAGER && s.pid != 0).map(|s| s.latch))
            .collect()
    };
    for latch in latches {
        set_latch(latch);
    }
}

/// Wakes the supervisor and the managers when the current transaction
/// commits: catalog changes (a new node, a subscription created, enabled,
/// disabled or dropped) are acted on within moments of the commit.
pub fn wake_after_commit() {
    if available() {
        register_xact_callback(PgXactCallbackEvent::Commit, wake_all);
    }
}

/// Asks the apply worker of a subscription to stop (SIGTERM). With `hold`,
/// the manager starts no new worker for it for a while (long enough for the
/// caller's transaction to commit the change that made it stop).
pub fn stop_apply_worker(dboid: u32, subid: u32, hold: bool) -> Option<i32> {
    if !available() {
        return None;
    }
    let pid = {
        let mut reg = REGISTRY.exclusive();
        let slot =
            reg.slots.iter_mut().find(|s| s.kind == KIND_APPLY && s.dboid == dboid && s.subid == subid)?;
        if hold {
            slot.hold_until = now() + HOLD_MICROS;
        }
        slot.pid
    };
    if pid == 0 {
        return None;
    }
    // SAFETY: signals a process spock started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    Some(pid)
}

/// Ends the hold of [`stop_apply_worker`] (when the transaction that asked
/// for it ends) and wakes the managers.
pub fn release_hold(dboid: u32, subid: u32) {
    if !available() {
        return;
    }
    {
        let mut reg = REGISTRY.exclusive();
        for slot in
            reg.slots.iter_mut().filter(|s| s.kind == KIND_APPLY && s.dboid == dboid && s.subid == subid)
        {
            slot.hold_until = 0;
        }
    }
    wake_all();
}

/// How long a stop with `hold` keeps the manager from starting a new worker
/// at most (the hold normally ends with the transaction that set it).
const HOLD_MICROS: i64 = 10_000_000;

/// Stops the apply workers of a database whose subscriptions are gone.
pub fn stop_orphans(dboid: u32, keep: &[u32]) {
    let pids: Vec<i32> = REGISTRY
        .share()
        .slots
        .iter()
        .filter(|s| s.kind == KIND_APPLY && s.dboid == dboid && s.pid != 0 && !keep.contains(&s.subid))
        .map(|s| s.pid)
        .collect();
    for pid in pids {
        // SAFETY: signals a process spock started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
