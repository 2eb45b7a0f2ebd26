//! The replication origin of a subscription (named like its slot): where
//! its stream has been applied up to.

use std::ffi::CString;

use pgrx::prelude::*;

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

/// Drops the origin if it exists. Its progress is forgotten at once (not
/// transactionally), so callers do this only when nothing can roll back.
pub fn drop_if_exists(name: &str) {
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
