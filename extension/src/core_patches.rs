//! Run-time detection of the core patches (patches.md §1.2): markers and
//! functions are looked up with `dlsym(RTLD_DEFAULT, ...)` when the library
//! loads, never linked, so that the library also loads on a stock server.
//! Reports what it found in the server log and in `spock.core_patches`
//! (`hooks` refuses patch-dependent column options on a server without
//! patch 020).

use std::ffi::{CString, c_int, c_void};
use std::sync::OnceLock;

use pgrx::prelude::*;
use spock_core::core_patches::{CORE_PATCHES, CorePatch, Status};

/// What `_PG_init` found, in the order of `CORE_PATCHES`.
static FOUND: OnceLock<[Status; 3]> = OnceLock::new();

/// The server's major version, for patch file names.
pub fn server_major() -> u32 {
    pg_sys::PG_VERSION_NUM / 10000
}

fn lookup(name: &str) -> *mut c_void {
    let name = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: dlsym with RTLD_DEFAULT only searches the loaded objects; a
    // missing symbol gives NULL.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn detect() -> [Status; 3] {
    CORE_PATCHES.map(|patch| {
        let marker = lookup(patch.marker);
        // SAFETY: the marker is a `const int` exported by the patched server.
        let value = (!marker.is_null()).then(|| unsafe { *(marker as *const c_int) });
        Status::judge(&patch, value, |f| !lookup(f).is_null())
    })
}

/// What the server carries, detected once per process (inherited from the
/// postmaster when the library is preloaded).
pub fn found() -> &'static [Status; 3] {
    FOUND.get_or_init(detect)
}

/// Whether a patch is present at the revision this extension understands.
pub fn usable(patch: &CorePatch) -> bool {
    CORE_PATCHES.iter().zip(found()).any(|(p, s)| p.number == patch.number && s.usable())
}

/// The patches that are missing or not usable, as "patch 020 (column
/// options), patch 030 (...)"; empty when all are usable.
pub fn missing_summary() -> String {
    CORE_PATCHES
        .iter()
        .zip(found())
        .filter(|(_, s)| !s.usable())
        .map(|(p, _)| p.label())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Called from `_PG_init` while preloading: detect, log one summary line and
/// one WARNING per patch that is not usable.
pub fn init() {
    let found = found();
    let pairs: Vec<(CorePatch, Status)> = CORE_PATCHES.iter().copied().zip(found.iter().copied()).collect();
    pgrx::log!("spock: {}", spock_core::core_patches::summary(&pairs));
    for (patch, status) in &pairs {
        if let Some(problem) = patch.problem(*status, server_major()) {
            pgrx::warning!("spock: {problem}");
        }
    }
}

/// One row per capability: the view `spock.core_patches`.
#[pg_extern(stable, parallel_safe)]
pub fn core_patches_status() -> TableIterator<
    'static,
    (name!(patch, String), name!(present, bool), name!(abi, Option<i32>), name!(features, String)),
> {
    let rows: Vec<_> = CORE_PATCHES
        .iter()
        .zip(found())
        .map(|(p, s)| (p.label(), s.usable(), s.abi(), p.features.to_string()))
        .collect();
    TableIterator::new(rows)
}

/// Whether this server can apply delta columns: patches 020 (column
/// options) and 040 (subtransaction commit-timestamp override).
pub fn delta_apply_available() -> bool {
    usable(&spock_core::core_patches::COLUMN_OPTIONS) && usable(&spock_core::core_patches::SUBXACT_COMMIT_TS)
}

type SetSubxactFn =
    unsafe extern "C-unwind" fn(pg_sys::TransactionId, pg_sys::TimestampTz, pg_sys::RepOriginId) -> bool;

/// `spock_commit_ts_set_subxact` (patch 040): at top-level commit, the
/// rows of subtransaction `subxid` get (`ts`, `origin`) as their commit
/// timestamp data. False when commit timestamps are off; `None` when the
/// server lacks the patch.
pub fn set_subxact_commit_ts(
    subxid: pg_sys::TransactionId,
    ts: i64,
    origin: pg_sys::RepOriginId,
) -> Option<bool> {
    static FUNCTION: OnceLock<usize> = OnceLock::new();
    if !usable(&spock_core::core_patches::SUBXACT_COMMIT_TS) {
        return None;
    }
    let address = *FUNCTION.get_or_init(|| lookup("spock_commit_ts_set_subxact") as usize);
    if address == 0 {
        return None;
    }
    // SAFETY: the patched server exports the function with this signature
    // (patches.md §1.2, checked by its ABI marker); it raises on a foreign
    // or top-level xid, which the caller never passes.
    Some(unsafe {
        let f: SetSubxactFn = std::mem::transmute(address);
        f(subxid, ts, origin)
    })
}
