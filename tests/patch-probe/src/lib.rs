//! Test-only extension `spock_patch_probe`: wraps the functions the core
//! patches export (patches.md §1.2) as SQL, so that the acceptance tests can
//! drive them from psql. Symbols are looked up at run time, like the spock
//! extension does, so the probe also loads on a stock server (where every
//! call reports the missing patch). Never shipped in a package.

use std::ffi::{CString, c_void};

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

fn lookup(name: &str) -> *mut c_void {
    let cname = CString::new(name).expect("no NUL in symbol names");
    // SAFETY: dlsym over the loaded objects; NULL when missing.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, cname.as_ptr()) }
}

fn required(name: &str, patch: &str) -> *mut c_void {
    let f = lookup(name);
    if f.is_null() {
        error!("{name}() is not exported by this server: it was built without core patch {patch}");
    }
    f
}

/// The ABI revision of a patch marker, or NULL when the server lacks it.
#[pg_extern]
fn probe_marker(marker: &str) -> Option<i32> {
    let p = lookup(marker);
    // SAFETY: markers are exported `const int`s.
    (!p.is_null()).then(|| unsafe { *(p as *const i32) })
}

/// `spock_commit_clock_read()` (patch 030).
#[pg_extern]
fn probe_commit_clock_read() -> TimestampWithTimeZone {
    let f = required("spock_commit_clock_read", "030 commit-clock");
    // SAFETY: the patch exports `TimestampTz spock_commit_clock_read(void)`.
    let read: unsafe extern "C-unwind" fn() -> pg_sys::TimestampTz = unsafe { std::mem::transmute(f) };
    let ts = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| read()) };
    TimestampWithTimeZone::try_from(ts).unwrap_or_else(|_| error!("clock value {ts} is out of range"))
}

/// `spock_commit_clock_advance(ts)` (patch 030).
#[pg_extern]
fn probe_commit_clock_advance(ts: TimestampWithTimeZone) -> TimestampWithTimeZone {
    let f = required("spock_commit_clock_advance", "030 commit-clock");
    // SAFETY: the patch exports `TimestampTz spock_commit_clock_advance(TimestampTz)`.
    let advance: unsafe extern "C-unwind" fn(pg_sys::TimestampTz) -> pg_sys::TimestampTz =
        unsafe { std::mem::transmute(f) };
    let new = unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| advance(ts.into_inner())) };
    TimestampWithTimeZone::try_from(new).unwrap_or_else(|_| error!("clock value {new} is out of range"))
}

/// `spock_commit_ts_set_subxact(xid, ts, origin)` (patch 040).
#[pg_extern]
fn probe_set_subxact_commit_ts(xid: pg_sys::TransactionId, ts: TimestampWithTimeZone, origin: i32) -> bool {
    let Ok(origin) = u16::try_from(origin) else { error!("origin {origin} is not a replication origin id") };
    let f = required("spock_commit_ts_set_subxact", "040 subxact-commit-ts");
    // SAFETY: the patch exports
    // `bool spock_commit_ts_set_subxact(TransactionId, TimestampTz, RepOriginId)`.
    let set: unsafe extern "C-unwind" fn(pg_sys::TransactionId, pg_sys::TimestampTz, u16) -> bool =
        unsafe { std::mem::transmute(f) };
    // It raises ERROR for an xid that is not a subtransaction of ours; the
    // boundary turns that into a Rust panic that pgrx reports as the ERROR.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| set(xid, ts.into_inner(), origin)) }
}
