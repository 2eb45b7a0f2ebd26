//! The registry of spock's workers in shared memory: which manager runs for
//! which database and which apply worker for which subscription, which
//! failed, when, and with what error, and which have reached their stream.
//! SQL functions wake the supervisor and the managers through it after a
//! catalog change commits.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use pgrx::{PgXactCallbackEvent, pg_shmem_init, register_xact_callback};

/// Most workers spock runs at once (managers and apply workers).
pub const MAX_WORKERS: usize = 128;

/// Bytes kept of a worker's last error message.
const ERROR_BYTES: usize = 512;

/// What a registry slot is for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Free,
    Manager,
    Apply,
    /// The table-sync worker of a subscription (one at a time).
    Sync,
}

/// What a subscription's apply worker last published about its progress
/// (behaviour.md §13); kept across the worker's restarts while the server
/// runs. Timestamps are PostgreSQL's (microseconds since 2000), 0 unknown.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Origin commit time of the last transaction applied from the provider.
    pub commit_ts: i64,
    /// The provider's WAL position as its last message or keepalive said.
    pub insert_lsn: u64,
    /// The highest provider position received.
    pub received_lsn: u64,
    /// Local time the last transaction from the provider was applied.
    pub updated_ts: i64,
}

/// Bytes kept of the name of the table being copied.
const TABLE_BYTES: usize = 160;

/// The table an apply worker is copying in its initial synchronisation
/// (behaviour.md §6.3), and how far it has come.
#[derive(Copy, Clone, Debug)]
pub struct CopyProgress {
    table: [u8; TABLE_BYTES],
    table_len: u16,
    pub rows: u64,
    pub bytes: u64,
    /// When this table's copy started (PostgreSQL time).
    pub started: i64,
}

impl Default for CopyProgress {
    fn default() -> Self {
        CopyProgress { table: [0; TABLE_BYTES], table_len: 0, rows: 0, bytes: 0, started: 0 }
    }
}

impl CopyProgress {
    pub fn new(table: &str, rows: u64, bytes: u64, started: i64) -> CopyProgress {
        let mut p = CopyProgress { rows, bytes, started, ..CopyProgress::default() };
        let mut end = table.len().min(TABLE_BYTES);
        while !table.is_char_boundary(end) {
            end -= 1;
        }
        p.table[..end].copy_from_slice(&table.as_bytes()[..end]);
        p.table_len = end as u16;
        p
    }

    /// The table (`schema.table`), `None` while no copy runs.
    pub fn table(&self) -> Option<String> {
        (self.table_len > 0)
            .then(|| String::from_utf8_lossy(&self.table[..self.table_len as usize]).into_owned())
    }
}

/// One worker: a manager of a database or the apply worker of a subscription.
#[derive(Copy, Clone, Debug)]
pub struct Slot {
    pub kind: Kind,
    pub dboid: u32,
    /// The subscription of an apply worker; 0 for a manager.
    pub subid: u32,
    /// The running process, 0 when none.
    pub pid: i32,
    /// Its latch, for waking it.
    latch: usize,
    /// When the last process of this slot exited with an error (0 if never,
    /// or if it later exited cleanly or was stopped on request).
    pub failed_at: i64,
    /// The manager's view: a worker was launched and has not reported yet.
    pub launched_at: i64,
    /// No new worker while this backend lives, until this time at the
    /// latest: it stopped the worker and is about to commit a catalog change
    /// (disable, drop) the manager must see before it decides to start one
    /// again (the hold ends with that backend's transaction).
    hold_until: i64,
    held_by: i32,
    /// The running worker was asked to stop (its exit is not a failure).
    stop_requested: bool,
    /// The running apply worker has started streaming from its provider.
    pub streaming: bool,
    /// The last error of this slot's workers, until one streams again
    /// (passwords masked, cut to `ERROR_BYTES`).
    error: [u8; ERROR_BYTES],
    error_len: u16,
    /// A remote transaction that failed with a permanent error and is to
    /// be handled in exception mode when it arrives again: its commit LSN
    /// (0: none), the 1-based position of the failing operation, and the
    /// error (`[SQLSTATE] message`). Kept across the worker's restarts.
    exception_lsn: u64,
    exception_counter: u32,
    exception_error: [u8; ERROR_BYTES],
    exception_error_len: u16,
    /// Handling that transaction in exception mode failed too: the next
    /// attempt waits `spock.restart_delay_default`.
    exception_retrying: bool,
    pub progress: Progress,
    /// The running worker's initial copy, if one runs.
    pub copy: CopyProgress,
    /// The running apply worker stopped between transactions for a pause.
    pub paused: bool,
    /// The running table-sync worker copied a table and waits for the
    /// apply worker to hand it over.
    handover: bool,
    /// The subscription's conflict counters (`spock_core::stats`
    /// order), when they were last reset (0: never), and whether the saved
    /// ones were read back since the server started.
    pub conflicts: [u64; 7],
    pub stats_reset: i64,
    stats_loaded: bool,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            kind: Kind::Free,
            dboid: 0,
            subid: 0,
            pid: 0,
            latch: 0,
            failed_at: 0,
            launched_at: 0,
            hold_until: 0,
            held_by: 0,
            stop_requested: false,
            streaming: false,
            error: [0; ERROR_BYTES],
            error_len: 0,
            exception_lsn: 0,
            exception_counter: 0,
            exception_error: [0; ERROR_BYTES],
            exception_error_len: 0,
            exception_retrying: false,
            progress: Progress::default(),
            copy: CopyProgress::default(),
            paused: false,
            handover: false,
            conflicts: [0; 7],
            stats_reset: 0,
            stats_loaded: false,
        }
    }
}

impl Slot {
    /// The last error recorded for this slot, if any.
    pub fn last_error(&self) -> Option<String> {
        (self.error_len > 0)
            .then(|| String::from_utf8_lossy(&self.error[..self.error_len as usize]).into_owned())
    }

    fn set_error(&mut self, message: &str) {
        self.error_len = copy_cut(&mut self.error, message);
    }

    /// Whether a failed transaction waits to be handled in exception mode
    /// (and its handling has not failed yet).
    pub fn exception_pending(&self) -> bool {
        self.exception_lsn != 0 && !self.exception_retrying
    }

    /// The state `spock.get_apply_worker_status()` shows (sql-api.md §4.8):
    /// a process that was asked to stop is `stopping`; one that streams
    /// (and is not paused) `running`; one that starts, connects or is paused
    /// `idle`; without a process, `failed` after an error, else `stopped`.
    pub fn status(&self) -> &'static str {
        match (self.pid != 0, self.stop_requested, self.streaming && !self.paused, self.failed_at != 0) {
            (true, true, _, _) => "stopping",
            (true, false, true, _) => "running",
            (true, false, false, _) => "idle",
            (false, _, _, true) => "failed",
            (false, _, _, false) => "stopped",
        }
    }

    /// Whether a backend holds off new workers for this slot at `now`.
    pub fn held(&self, now: i64) -> bool {
        now < self.hold_until && process_alive(self.held_by)
    }

    fn is_apply(&self, dboid: u32, subid: u32) -> bool {
        self.kind == Kind::Apply && self.dboid == dboid && self.subid == subid
    }
}

#[derive(Copy, Clone, Debug)]
pub struct Registry {
    supervisor_latch: usize,
    /// Bumped whenever a catalog change needs workers to look again.
    generation: u64,
    /// `pause_apply_workers()`: the database whose apply workers are to
    /// stop between transactions, until when at the latest (0: none).
    pause_dboid: u32,
    pause_until: i64,
    slots: [Slot; MAX_WORKERS],
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            supervisor_latch: 0,
            generation: 0,
            pause_dboid: 0,
            pause_until: 0,
            slots: [Slot::default(); MAX_WORKERS],
        }
    }
}

// SAFETY: plain data without pointers that are dereferenced across
// processes, except latches, which live in shared memory.
unsafe impl PGRXSharedMemory for Registry {}

// SAFETY: the lock's name is a static C string; pgrx initialises the lock
// in the shared memory startup hook before any process uses it.
static REGISTRY: PgLwLock<Registry> = unsafe { PgLwLock::new(c"spock_worker_registry") };

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

fn my_pid() -> i32 {
    // SAFETY: reads this process's pid, set at process start.
    unsafe { pg_sys::MyProcPid }
}

fn my_latch() -> usize {
    // SAFETY: MyLatch is this process's latch, in shared memory for
    // processes that have a PGPROC.
    unsafe { pg_sys::MyLatch as usize }
}

fn set_latch(latch: usize) {
    if latch != 0 {
        // SAFETY: a latch recorded by a live worker; setting a latch of a
        // process that just exited is harmless (its PGPROC latch stays valid
        // shared memory).
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid != 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn signal(pid: i32) {
    // SAFETY: sends SIGTERM to a process spock started (its pid is in the
    // registry only while it runs).
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

/// The supervisor records its latch.
pub fn register_supervisor() {
    REGISTRY.exclusive().supervisor_latch = my_latch();
}

/// A worker claims its slot (one per manager database or subscription) and
/// arranges for the slot to be released when the process exits. Returns
/// false, claiming nothing, when another live process has that slot already
/// (a second worker started while the first was slow to report): the caller
/// then exits.
pub fn claim(kind: Kind, dboid: u32, subid: u32) -> bool {
    enum Outcome {
        Claimed,
        Taken,
        Full,
    }
    let outcome = {
        let mut reg = REGISTRY.exclusive();
        let existing = reg.slots.iter().position(|s| s.kind == kind && s.dboid == dboid && s.subid == subid);
        match existing.or_else(|| reg.slots.iter().position(|s| s.kind == Kind::Free)) {
            Some(i)
                if reg.slots[i].pid != 0
                    && reg.slots[i].pid != my_pid()
                    && process_alive(reg.slots[i].pid) =>
            {
                Outcome::Taken
            }
            Some(i) => {
                let slot = &mut reg.slots[i];
                *slot = Slot {
                    kind,
                    dboid,
                    subid,
                    pid: my_pid(),
                    latch: my_latch(),
                    failed_at: slot.failed_at,
                    hold_until: slot.hold_until,
                    held_by: slot.held_by,
                    error: slot.error,
                    error_len: slot.error_len,
                    exception_lsn: slot.exception_lsn,
                    exception_counter: slot.exception_counter,
                    exception_error: slot.exception_error,
                    exception_error_len: slot.exception_error_len,
                    exception_retrying: slot.exception_retrying,
                    progress: slot.progress,
                    conflicts: slot.conflicts,
                    stats_reset: slot.stats_reset,
                    stats_loaded: slot.stats_loaded,
                    ..Slot::default()
                };
                Outcome::Claimed
            }
            None => Outcome::Full,
        }
    };
    // Raised only once the lock is released.
    match outcome {
        Outcome::Claimed => {}
        Outcome::Taken => return false,
        Outcome::Full => crate::errors::raise(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!("spock cannot run more than {MAX_WORKERS} workers"),
        ),
    }
    // SAFETY: registers a callback that runs while shared memory is still attached.
    unsafe { pg_sys::before_shmem_exit(Some(release_on_exit), pg_sys::Datum::from(0usize)) };
    true
}

/// Clears this process's slot; an exit with an error code that nobody asked
/// for marks it failed, so that the manager waits
/// `spock.restart_delay_default` before a restart.
#[pg_guard]
unsafe extern "C-unwind" fn release_on_exit(code: i32, _arg: pg_sys::Datum) {
    let pid = my_pid();
    let mut reg = REGISTRY.exclusive();
    for slot in reg.slots.iter_mut().filter(|s| s.pid == pid) {
        slot.failed_at = if code != 0 && !slot.stop_requested { now() } else { 0 };
        slot.pid = 0;
        slot.latch = 0;
        slot.stop_requested = false;
        slot.streaming = false;
        slot.handover = false;
    }
}

/// Records the error an apply worker is about to exit with.
pub fn record_error(dboid: u32, subid: u32, message: &str) {
    if !available() {
        return;
    }
    let masked = spock_core::dsn::mask_passwords(message);
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.set_error(&masked);
    }
}

/// Counts a conflict of subscription `subid` (column `column` of
/// `spock.get_subscription_stats`).
pub fn count_conflict(dboid: u32, subid: u32, column: usize) {
    if !available() {
        return;
    }
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.conflicts[column] += 1;
    }
}

/// The conflict counters of a subscription and when they were reset, if
/// its slot exists.
pub fn subscription_stats(dboid: u32, subid: u32) -> Option<([u64; 7], i64)> {
    let reg = REGISTRY.share();
    reg.slots.iter().find(|s| s.is_apply(dboid, subid)).map(|s| (s.conflicts, s.stats_reset))
}

/// Puts back the counters an earlier worker saved, once per server start
/// (and not over counters a reset or this server's workers set since).
pub fn load_subscription_stats(dboid: u32, subid: u32, conflicts: Option<([u64; 7], i64)>) {
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid))
        && !slot.stats_loaded
    {
        if let Some((counts, reset)) = conflicts {
            for (mine, saved) in slot.conflicts.iter_mut().zip(counts) {
                *mine += saved;
            }
            slot.stats_reset = reset;
        }
        slot.stats_loaded = true;
    }
}

/// Zeroes the conflict counters of the subscriptions `subids` of a
/// database that have a slot.
pub fn reset_subscription_stats(dboid: u32, subids: &[u32]) {
    let now = now();
    let mut reg = REGISTRY.exclusive();
    for slot in reg
        .slots
        .iter_mut()
        .filter(|s| s.kind == Kind::Apply && s.dboid == dboid && subids.contains(&s.subid))
    {
        slot.conflicts = [0; 7];
        slot.stats_reset = now;
        slot.stats_loaded = true;
    }
}

/// Copies `message` into `buf`, cut at a character boundary; returns the length.
fn copy_cut(buf: &mut [u8; ERROR_BYTES], message: &str) -> u16 {
    let mut end = message.len().min(ERROR_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    buf[..end].copy_from_slice(&message.as_bytes()[..end]);
    end as u16
}

/// A failed remote transaction to handle in exception mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingException {
    pub commit_lsn: u64,
    pub counter: u32,
    pub error: String,
}

/// Remembers that the remote transaction with this commit LSN failed at
/// operation `counter` with `error`, for the next worker of the subscription.
pub fn remember_exception(dboid: u32, subid: u32, e: &PendingException) {
    if !available() {
        return;
    }
    let masked = spock_core::dsn::mask_passwords(&e.error);
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.exception_lsn = e.commit_lsn;
        slot.exception_counter = e.counter;
        slot.exception_retrying = false;
        slot.exception_error_len = copy_cut(&mut slot.exception_error, &masked);
    }
}

/// Handling the failed transaction in exception mode failed as well.
pub fn exception_handling_failed(dboid: u32, subid: u32) {
    if !available() {
        return;
    }
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.exception_retrying = true;
    }
}

/// The failed transaction a subscription's worker is to handle, if any.
pub fn pending_exception(dboid: u32, subid: u32) -> Option<PendingException> {
    let slot = apply_slot(dboid, subid)?;
    (slot.exception_lsn != 0).then(|| PendingException {
        commit_lsn: slot.exception_lsn,
        counter: slot.exception_counter,
        error: String::from_utf8_lossy(&slot.exception_error[..slot.exception_error_len as usize])
            .into_owned(),
    })
}

/// The failed transaction has been handled (or skipped).
pub fn forget_exception(dboid: u32, subid: u32) {
    if !available() {
        return;
    }
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.exception_lsn = 0;
        slot.exception_counter = 0;
        slot.exception_error_len = 0;
        slot.exception_retrying = false;
    }
}

/// An apply worker has started streaming: it is healthy again.
pub fn mark_streaming(dboid: u32, subid: u32) {
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.streaming = true;
        slot.error_len = 0;
    }
}

/// Publishes an apply worker's progress.
pub fn publish_progress(dboid: u32, subid: u32, progress: &Progress) {
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.progress = *progress;
    }
}

/// Publishes how far an apply worker's initial copy has come (`None`:
/// no copy runs).
pub fn publish_copy(dboid: u32, subid: u32, copy: Option<CopyProgress>) {
    let mut reg = REGISTRY.exclusive();
    let pid = my_pid();
    let mine = |s: &&mut Slot| s.dboid == dboid && s.subid == subid && s.pid == pid;
    if let Some(slot) = reg.slots.iter_mut().find(mine) {
        slot.copy = copy.unwrap_or_default();
    }
}

/// The initial copies running in a database: subscription and progress.
pub fn copies_of(dboid: u32) -> Vec<(u32, CopyProgress)> {
    if !available() {
        return Vec::new();
    }
    REGISTRY
        .share()
        .slots
        .iter()
        .filter(|s| {
            matches!(s.kind, Kind::Apply | Kind::Sync)
                && s.dboid == dboid
                && s.pid != 0
                && s.copy.table_len > 0
        })
        .map(|s| (s.subid, s.copy))
        .collect()
}

/// The published progress of the subscriptions of a database.
pub fn progress_of(dboid: u32) -> Vec<(u32, Progress)> {
    if !available() {
        return Vec::new();
    }
    REGISTRY
        .share()
        .slots
        .iter()
        .filter(|s| s.kind == Kind::Apply && s.dboid == dboid)
        .map(|s| (s.subid, s.progress))
        .collect()
}

/// A copy of the slot of a subscription's apply worker, if any.
pub fn apply_slot(dboid: u32, subid: u32) -> Option<Slot> {
    if !available() {
        return None;
    }
    REGISTRY.share().slots.iter().find(|s| s.is_apply(dboid, subid)).copied()
}

/// Copies of every apply worker slot in use, in every database.
pub fn apply_slots() -> Vec<Slot> {
    if !available() {
        return Vec::new();
    }
    REGISTRY.share().slots.iter().filter(|s| s.kind == Kind::Apply).copied().collect()
}

/// Whether a process currently runs the apply worker of a subscription.
pub fn apply_running(dboid: u32, subid: u32) -> bool {
    apply_slot(dboid, subid).is_some_and(|s| s.pid != 0)
}

/// Whether a process currently runs the table-sync worker of a subscription.
pub fn sync_running(dboid: u32, subid: u32) -> bool {
    available()
        && REGISTRY
            .share()
            .slots
            .iter()
            .any(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid && s.pid != 0)
}

/// The table-sync worker of a subscription asks its apply worker for the
/// hand-over of a copied table (`true`), or stops asking.
pub fn set_handover_wanted(dboid: u32, subid: u32, wanted: bool) {
    let apply_latch = {
        let mut reg = REGISTRY.exclusive();
        if let Some(slot) =
            reg.slots.iter_mut().find(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid)
        {
            slot.handover = wanted;
        }
        reg.slots.iter().find(|s| s.is_apply(dboid, subid) && s.pid != 0).map(|s| s.latch)
    };
    // The apply worker hands over at its next pause between transactions.
    if let Some(latch) = apply_latch.filter(|_| wanted) {
        set_latch(latch);
    }
}

/// Whether a running table-sync worker of the subscription waits for its
/// apply worker's hand-over.
pub fn handover_wanted(dboid: u32, subid: u32) -> bool {
    REGISTRY
        .share()
        .slots
        .iter()
        .any(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid && s.pid != 0 && s.handover)
}

/// Asks the table-sync worker of a subscription to stop, if one runs.
pub fn stop_sync_worker(dboid: u32, subid: u32) {
    let pid = {
        let mut reg = REGISTRY.exclusive();
        let Some(slot) = reg
            .slots
            .iter_mut()
            .find(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid && s.pid != 0)
        else {
            return;
        };
        slot.stop_requested = true;
        slot.pid
    };
    signal(pid);
}

/// Whether a manager runs for a database.
pub fn manager_running(dboid: u32) -> bool {
    REGISTRY.share().slots.iter().any(|s| s.kind == Kind::Manager && s.dboid == dboid && s.pid != 0)
}

/// The manager notes it launched a worker (so it does not launch it twice
/// while the worker starts).
pub fn note_launch(dboid: u32, subid: u32) {
    let mut reg = REGISTRY.exclusive();
    let index = reg
        .slots
        .iter()
        .position(|s| s.is_apply(dboid, subid))
        .or_else(|| reg.slots.iter().position(|s| s.kind == Kind::Free));
    if let Some(i) = index {
        let slot = &mut reg.slots[i];
        if slot.kind == Kind::Free {
            *slot = Slot { kind: Kind::Apply, dboid, subid, ..Slot::default() };
        }
        slot.launched_at = now();
    }
}

/// An apply worker launched its subscription's table-sync worker.
pub fn note_sync_launch(dboid: u32, subid: u32) {
    let mut reg = REGISTRY.exclusive();
    let index = reg
        .slots
        .iter()
        .position(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid)
        .or_else(|| reg.slots.iter().position(|s| s.kind == Kind::Free));
    if let Some(i) = index {
        let slot = &mut reg.slots[i];
        if slot.kind == Kind::Free {
            *slot = Slot { kind: Kind::Sync, dboid, subid, ..Slot::default() };
        }
        slot.launched_at = now();
    }
}

/// Whether the table-sync worker of a subscription may be launched now:
/// none runs or is starting, and the last one did not fail less than
/// `restart_delay` microseconds ago.
pub fn sync_may_launch(dboid: u32, subid: u32, restart_delay: i64) -> bool {
    let reg = REGISTRY.share();
    let Some(slot) = reg.slots.iter().find(|s| s.kind == Kind::Sync && s.dboid == dboid && s.subid == subid)
    else {
        return true;
    };
    let now = now();
    slot.pid == 0
        && !(slot.launched_at != 0 && now - slot.launched_at < 10_000_000)
        && !(slot.failed_at != 0 && now - slot.failed_at < restart_delay)
}

/// Forgets the slots of subscriptions that no longer exist in a database.
pub fn forget_apply_slots(dboid: u32, keep: &[u32]) {
    let mut reg = REGISTRY.exclusive();
    for slot in reg.slots.iter_mut() {
        if matches!(slot.kind, Kind::Apply | Kind::Sync)
            && slot.dboid == dboid
            && slot.pid == 0
            && !keep.contains(&slot.subid)
        {
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
            .chain(reg.slots.iter().filter(|s| s.kind == Kind::Manager && s.pid != 0).map(|s| s.latch))
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

/// Asks the apply worker of a subscription to stop (SIGTERM); its exit is
/// not counted as a failure. With `hold`, the manager starts no new worker
/// for it for a while (long enough for the caller's transaction to commit
/// the change that made it stop). Returns the pid signalled.
pub fn stop_apply_worker(dboid: u32, subid: u32, hold: bool) -> Option<i32> {
    if !available() {
        return None;
    }
    let pid = {
        let mut reg = REGISTRY.exclusive();
        let slot = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid))?;
        if hold {
            slot.hold_until = now() + HOLD_MICROS;
            slot.held_by = my_pid();
        }
        if slot.pid != 0 {
            slot.stop_requested = true;
        }
        slot.pid
    };
    if pid == 0 {
        return None;
    }
    signal(pid);
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
        for slot in reg.slots.iter_mut().filter(|s| s.is_apply(dboid, subid)) {
            slot.hold_until = 0;
            slot.held_by = 0;
        }
    }
    wake_all();
}

/// How long a stop with `hold` keeps the manager from starting a new worker
/// at most (the hold normally ends with the transaction that set it, or with
/// its backend).
const HOLD_MICROS: i64 = 3_600_000_000;

/// Stops the apply workers of a database whose subscriptions are gone.
pub fn stop_orphans(dboid: u32, keep: &[u32]) {
    let pids: Vec<i32> = {
        let mut reg = REGISTRY.exclusive();
        reg.slots
            .iter_mut()
            .filter(|s| {
                matches!(s.kind, Kind::Apply | Kind::Sync)
                    && s.dboid == dboid
                    && s.pid != 0
                    && !keep.contains(&s.subid)
            })
            .map(|s| {
                s.stop_requested = true;
                s.pid
            })
            .collect()
    };
    for pid in pids {
        signal(pid);
    }
}

/// Asks the apply workers of a database to stop between transactions until
/// `until` (PostgreSQL time) or `clear_pause`. One database at a time.
pub fn request_pause(dboid: u32, until: i64) -> Result<(), u32> {
    let mut reg = REGISTRY.exclusive();
    if reg.pause_dboid != 0 && reg.pause_dboid != dboid && now() < reg.pause_until {
        return Err(reg.pause_dboid);
    }
    reg.pause_dboid = dboid;
    reg.pause_until = until;
    Ok(())
}

/// Ends a pause of a database's apply workers.
pub fn clear_pause(dboid: u32) {
    let latches: Vec<usize> = {
        let mut reg = REGISTRY.exclusive();
        if reg.pause_dboid == dboid {
            reg.pause_dboid = 0;
            reg.pause_until = 0;
        }
        reg.slots
            .iter()
            .filter(|s| s.kind == Kind::Apply && s.dboid == dboid && s.pid != 0)
            .map(|s| s.latch)
            .collect()
    };
    for latch in latches {
        set_latch(latch);
    }
}

/// Until when the apply workers of a database are to stay paused, if a
/// pause is requested now.
pub fn pause_requested(dboid: u32) -> Option<i64> {
    if !available() {
        return None;
    }
    let reg = REGISTRY.share();
    (reg.pause_dboid == dboid && now() < reg.pause_until).then_some(reg.pause_until)
}

/// An apply worker says whether it stands paused.
pub fn set_paused(dboid: u32, subid: u32, paused: bool) {
    let mut reg = REGISTRY.exclusive();
    if let Some(slot) = reg.slots.iter_mut().find(|s| s.is_apply(dboid, subid)) {
        slot.paused = paused;
    }
}

/// The streaming apply workers of a database that are not paused yet (a
/// worker that does not stream applies nothing).
pub fn unpaused_workers(dboid: u32) -> Vec<u32> {
    REGISTRY
        .share()
        .slots
        .iter()
        .filter(|s| s.kind == Kind::Apply && s.dboid == dboid && s.pid != 0 && s.streaming && !s.paused)
        .map(|s| s.subid)
        .collect()
}
