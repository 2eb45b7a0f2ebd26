//! The supervisor (behaviour.md §3): one static background worker per
//! instance that starts a manager (`manager.rs`) for every database that
//! accepts connections, again after a catalog change wakes it, and once a
//! minute for databases whose manager exited.

use std::collections::HashMap;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use super::registry;
use crate::{core_patches, guc};

/// Registers the supervisor; called from `_PG_init` while preloading.
pub fn register() {
    BackgroundWorkerBuilder::new("spock supervisor")
        .set_type("spock supervisor")
        .set_library("spock")
        .set_function("spock_supervisor_main")
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Databases that accept connections (read from the shared catalog
/// `pg_database`; the supervisor is connected to no database).
fn databases() -> Vec<pg_sys::Oid> {
    let mut out = Vec::new();
    // SAFETY: a short transaction scanning a shared catalog.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tup = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tup.is_null() {
                break;
            }
            let header = (*tup).t_data;
            let form =
                (header as *mut u8).add((*header).t_hoff as usize) as *const pg_sys::FormData_pg_database;
            if (*form).datallowconn && !(*form).datistemplate {
                out.push((*form).oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    out
}

fn launch_manager(dboid: pg_sys::Oid) {
    let result = BackgroundWorkerBuilder::new(&format!("spock manager {}", dboid.to_u32()))
        .set_type("spock manager")
        .set_library("spock")
        .set_function("spock_manager_main")
        .set_argument(Some(pg_sys::Datum::from(dboid.to_u32())))
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reads this process's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    if result.is_err() {
        pgrx::warning!(
            "spock: cannot start a manager for database {}: no free background worker slot",
            dboid.to_u32()
        );
    }
}

/// The supervisor's main loop.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_supervisor_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    if guc::REQUIRE_CORE_PATCHES.get() {
        let missing = core_patches::missing_summary();
        if !missing.is_empty() {
            pgrx::ereport!(
                PgLogLevel::FATAL,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "spock.require_core_patches is on and this server lacks {missing}; spock's workers do not start"
                ),
                "Use a server built with the spock core patches, or turn spock.require_core_patches off."
            );
        }
    }
    registry::register_supervisor();
    // Per database: the generation at which its manager was last launched,
    // and when.
    let mut launched: HashMap<u32, (u64, i64)> = HashMap::new();
    loop {
        super::reload_config_if_asked();
        let generation = registry::generation();
        for dboid in databases() {
            if registry::manager_running(dboid.to_u32()) {
                continue;
            }
            let due = match launched.get(&dboid.to_u32()) {
                None => true,
                // Relaunch after a catalog change, or once a minute.
                Some((seen, at)) => *seen != generation || super::now() - *at > 60_000_000,
            };
            if due {
                launched.insert(dboid.to_u32(), (generation, super::now()));
                launch_manager(dboid);
            }
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(5))) {
            break;
        }
    }
}
