//! The `spock` PostgreSQL extension: multi-master logical replication.
//!
//! At this stage the library loads from `shared_preload_libraries`, detects
//! which core patches the server carries (`spock.core_patches`), and
//! `CREATE EXTENSION spock` creates schema `spock` with the version functions.
//! Replication itself (nodes, sets, subscriptions, the output plugin and the
//! apply workers) is not implemented yet, and nothing here pretends otherwise.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod core_patches;
mod version;

/// Called once when the library is loaded, normally by the postmaster
/// because `spock` is listed in `shared_preload_libraries`.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reading a postmaster global that is only written while
    // libraries are being preloaded, which is the context we run in.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if preloading {
        pgrx::log!("spock {} loaded", version::VERSION);
        core_patches::init();
    }
}
