//! Progress and lag of this worker's subscription (behaviour.md §13): what
//! it received from the provider and what it applied, published in the
//! worker registry for `spock.progress` and `spock.lag_tracker`, saved in
//! `pg_spock/` of the data directory when the worker exits, and recovered
//! when the next one starts: from that file if the replication origin has
//! not moved since, otherwise (after a crash) from the local commit
//! timestamps, where every applied transaction carries the provider's
//! commit time and the subscription's origin.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use spock_core::progress::Saved;

use crate::workers::registry::{self, Progress};

/// How often received positions are published when nothing is applied.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Most transaction ids looked at, newest first, when recovering the commit
/// time of the last applied transaction after a crash.
const SCAN_LIMIT: u32 = 1 << 22;

thread_local! {
    /// What the exit callback saves: (dboid, subid, progress, origin position).
    static LAST: Cell<Option<(u32, u32, Progress, u64)>> = const { Cell::new(None) };
    /// This worker's tracker, once streaming starts: updated by the stream
    /// loop, by the dispatcher at commits, and while a change waits for a
    /// lock (`wait`).
    static TRACKER: RefCell<Option<Tracker>> = const { RefCell::new(None) };
}

/// Starts tracking (see [`Tracker::start`]).
pub fn start(dboid: u32, subid: u32, origin: pg_sys::RepOriginId, origin_lsn: u64) {
    let t = Tracker::start(dboid, subid, origin, origin_lsn);
    TRACKER.with(|c| *c.borrow_mut() = Some(t));
}

fn with<R>(f: impl FnOnce(&mut Tracker) -> R) -> Option<R> {
    TRACKER.with(|c| c.borrow_mut().as_mut().map(f))
}

/// A transaction from the provider was applied (committed here), which
/// moved the origin to `end_lsn`.
pub fn applied(end_lsn: u64, commit_ts: i64) {
    with(|t| t.applied(end_lsn, commit_ts));
}

/// A sync event moved the origin to `lsn` (and nothing else).
pub fn origin_moved(lsn: u64) {
    with(|t| {
        t.origin_lsn = lsn;
        t.publish();
    });
}

/// Something arrived from the provider (see [`Tracker::received`]).
pub fn received(lsn: u64, wal_end: u64) {
    with(|t| t.received(lsn, wal_end));
}

/// Publishes pending progress if it is time.
pub fn tick() {
    with(|t| t.tick());
}

/// The origin commit time of the last transaction applied (0: unknown).
pub fn last_commit_ts() -> i64 {
    with(|t| t.progress.commit_ts).unwrap_or(0)
}

struct Tracker {
    dboid: u32,
    subid: u32,
    progress: Progress,
    /// The replication origin's position, as this worker moved it.
    origin_lsn: u64,
    last_publish: Instant,
    dirty: bool,
}

fn file_of(dboid: u32, subid: u32) -> PathBuf {
    crate::workers::state_file(&format!("progress-{dboid}-{subid}"))
}

impl Tracker {
    /// Recovers the subscription's progress for an origin now at
    /// `origin_lsn` and publishes it, before anything is streamed.
    fn start(dboid: u32, subid: u32, origin: pg_sys::RepOriginId, origin_lsn: u64) -> Tracker {
        let mut progress = registry::apply_slot(dboid, subid).map(|s| s.progress).unwrap_or_default();
        if progress.commit_ts == 0 {
            let saved = std::fs::read_to_string(file_of(dboid, subid))
                .ok()
                .and_then(|t| Saved::parse(&t))
                .and_then(|s| s.if_current(origin_lsn));
            match saved {
                Some(s) => {
                    progress.commit_ts = s.commit_ts;
                    progress.updated_ts = s.updated_ts;
                }
                None => {
                    progress.commit_ts = last_commit_ts_of(origin).unwrap_or(0);
                    pgrx::log!(
                        "spock: progress of subscription {subid} recovered from the commit timestamps: {}",
                        if progress.commit_ts == 0 {
                            "no transaction applied through its origin was found".to_string()
                        } else {
                            format!("the last applied transaction committed at {}", progress.commit_ts)
                        }
                    );
                }
            }
        }
        let mut t = Tracker { dboid, subid, progress, origin_lsn, last_publish: Instant::now(), dirty: true };
        t.publish();
        // SAFETY: registers a callback that runs at process exit (it only
        // writes a file from what this process kept).
        unsafe { pg_sys::before_shmem_exit(Some(save_on_exit), pg_sys::Datum::from(0usize)) };
        t
    }

    fn publish(&mut self) {
        registry::publish_progress(self.dboid, self.subid, &self.progress);
        LAST.with(|l| l.set(Some((self.dboid, self.subid, self.progress, self.origin_lsn))));
        self.last_publish = Instant::now();
        self.dirty = false;
    }

    /// A transaction from the provider was applied (committed here).
    fn applied(&mut self, end_lsn: u64, commit_ts: i64) {
        self.origin_lsn = end_lsn;
        self.progress.commit_ts = commit_ts;
        self.progress.updated_ts = crate::workers::now();
        self.publish();
    }

    /// Something arrived: `lsn` is the highest position received,
    /// `wal_end` the provider's WAL position it reported.
    fn received(&mut self, lsn: u64, wal_end: u64) {
        if lsn > self.progress.received_lsn || wal_end != self.progress.insert_lsn {
            self.progress.received_lsn = self.progress.received_lsn.max(lsn);
            self.progress.insert_lsn = wal_end;
            self.dirty = true;
        }
        if self.dirty && self.last_publish.elapsed() >= PUBLISH_INTERVAL {
            self.publish();
        }
    }

    /// Publishes what arrived since the last publication, if it is time.
    fn tick(&mut self) {
        if self.dirty && self.last_publish.elapsed() >= PUBLISH_INTERVAL {
            self.publish();
        }
    }
}

/// Saves the last published progress with the origin's position.
#[pg_guard]
unsafe extern "C-unwind" fn save_on_exit(_code: i32, _arg: pg_sys::Datum) {
    let Some((dboid, subid, progress, origin_lsn)) = LAST.with(|l| l.get()) else { return };
    let saved = Saved { origin_lsn, commit_ts: progress.commit_ts, updated_ts: progress.updated_ts };
    let path = file_of(dboid, subid);
    if let Err(e) = crate::workers::write_state_file(&path, &saved.encode()) {
        pgrx::log!("spock: cannot save the progress of subscription {subid} in {}: {e}", path.display());
    }
}

/// The commit time of the newest local transaction applied through
/// `origin` (the provider's commit time, as the apply stamps it), from the
/// commit timestamp data; `None` when none is found among the newest
/// `SCAN_LIMIT` transactions.
fn last_commit_ts_of(origin: pg_sys::RepOriginId) -> Option<i64> {
    if !crate::guc::track_commit_timestamp() {
        return None;
    }
    // SAFETY: reads the next transaction id and the commit timestamp data
    // (which answers false for ids outside what it keeps).
    unsafe {
        let next = pg_sys::ReadNextFullTransactionId().value;
        let mut xid = (next as u32).wrapping_sub(1);
        for _ in 0..SCAN_LIMIT {
            if xid < pg_sys::FirstNormalTransactionId.into_inner() {
                if next <= u64::from(u32::MAX) {
                    return None;
                }
                xid = u32::MAX;
            }
            let mut ts: pg_sys::TimestampTz = 0;
            let mut node: pg_sys::RepOriginId = 0;
            if pg_sys::TransactionIdGetCommitTsData(
                pg_sys::TransactionId::from_inner(xid),
                &mut ts,
                &mut node,
            ) && node == origin
                && ts != 0
            {
                return Some(ts);
            }
            xid -= 1;
        }
        None
    }
}
