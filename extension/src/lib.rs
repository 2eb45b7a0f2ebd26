//! The `spock` PostgreSQL extension: multi-master logical replication.
//!
//! Loaded from `shared_preload_libraries`, the library registers its
//! settings (`guc`), its shared memory (`workers::registry`), its hooks
//! (`hooks`) and the supervisor background worker (`workers`). The SQL API
//! (`api`) checks arguments and privileges and calls `catalog` (the only
//! code that touches spock's tables) and `remote` (connections to other
//! nodes). The output plugin (`output`, loaded by walsenders as
//! `spock_output`) decodes changes for subscribers; the apply worker
//! (`apply`) applies them. Server-independent logic (the wire protocol,
//! sync states, naming, connection strings) lives in the `spock-core` crate.
//! `docs/ARCHITECTURE.md` has the map.

#![warn(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod api;
mod apply;
mod catalog;
mod core_patches;
mod errors;
mod filters;
mod guc;
mod hooks;
mod output;
mod remote;
mod stats;
mod version;
mod workers;

/// Called once per process that loads the library: by the postmaster when
/// `spock` is in `shared_preload_libraries`, or by a backend or walsender
/// that loads it later (`CREATE EXTENSION`, the output plugin).
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    // SAFETY: reading a postmaster global that is only written while
    // libraries are being preloaded.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if preloading {
        pgrx::log!("spock {} loaded", version::VERSION);
        core_patches::init();
        workers::registry::init();
        stats::init();
        hooks::install();
        workers::supervisor::register();
    }
}
