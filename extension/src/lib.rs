//! The `spock` PostgreSQL extension: multi-master logical replication.
//!
//! Loaded from `shared_preload_libraries`, the library registers its
//! settings, its shared memory and the supervisor background worker. The
//! SQL API (`api`) manages nodes, replication sets and subscriptions in
//! spock's catalogs (`catalog`); the output plugin (`output`, loaded by
//! walsenders as `spock_output`) decodes changes for subscribers; the
//! supervisor and per-database managers (`supervisor`) run one apply worker
//! (`apply`) per enabled subscription. Server-independent logic (the wire
//! protocol, naming, connection strings) lives in the `spock-core` crate.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod api;
mod apply;
mod catalog;
mod core_patches;
mod errors;
mod guc;
mod libpq;
mod output;
mod shmem;
mod supervisor;
mod version;

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
        shmem::init();
        supervisor::register();
    }
}
