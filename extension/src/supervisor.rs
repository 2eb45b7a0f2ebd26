//! The supervisor and the managers (behaviour.md §3): one supervisor per
//! instance starts a manager for every database; a manager of a database
//! with a spock node runs one apply worker per enabled subscription, restarts
//! failed ones after `spock.restart_delay_default`, and stops those of
//! disabled or dropped subscriptions. Managers of other databases exit.

use std::collections::HashMap;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::shmem::{self, KIND_MANAGER};
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

fn reload_config_if_asked() {
    if BackgroundWorker::sighup_received() {
        // SAFETY: re-reads the configuration files in this process.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
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
    shmem::register_supervisor();
    // Per database: the generation at which its manager was last launched,
    // and when.
    let mut launched: HashMap<u32, (u64, i64)> = HashMap::new();
    loop {
        reload_config_if_asked();
        let generation = shmem::generation();
        for dboid in databases() {
            let running = shmem::REGISTRY
                .share()
                .slots
                .iter()
                .any(|s| s.kind == KIND_MANAGER && s.dboid == dboid.to_u32() && s.pid != 0);
            if running {
                continue;
            }
            let due = match launched.get(&dboid.to_u32()) {
                None => true,
                // Relaunch after a catalog change, or once a minute.
                Some((seen, at)) => *seen != generation || now() - *at > 60_000_000,
            };
            if due {
                launched.insert(dboid.to_u32(), (generation, now()));
                launch_manager(dboid);
            }
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(5))) {
            break;
        }
    }
}

/// Subscriptions of the manager's database: (id, name, enabled).
fn subscriptions() -> Option<Vec<(u32, String, bool)>> {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            let installed = client
                .select("SELECT 1 FROM pg_extension WHERE extname = 'spock'", None, &[])
                .map(|t| !t.is_empty())
                .unwrap_or(false);
            if !installed || crate::catalog::local_node(client).is_none() {
                return None;
            }
            Some(
                crate::catalog::subscriptions(client)
                    .into_iter()
                    .map(|s| (s.sub_id, s.name, s.enabled))
                    .collect(),
            )
        })
    })
}

fn launch_apply(dboid: u32, sub_id: u32, name: &str) {
    let result = BackgroundWorkerBuilder::new(&format!("spock apply {name}"))
        .set_type("spock apply")
        .set_library("spock")
        .set_function("spock_apply_main")
        .set_argument(Some(pg_sys::Datum::from(sub_id)))
        .set_extra(&dboid.to_string())
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reads this process's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    match result {
        Ok(_) => shmem::note_launch(dboid, sub_id),
        Err(_) => pgrx::warning!(
            "spock: cannot start the apply worker of subscription {name}: no free background worker slot \
             (raise max_worker_processes)"
        ),
    }
}

/// A manager's main loop.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_manager_main(arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    shmem::claim(KIND_MANAGER, dboid, 0);
    loop {
        reload_config_if_asked();
        let Some(subs) = subscriptions() else {
            // No spock node here (any more): nothing to manage.
            return;
        };
        let restart_delay = i64::from(guc::RESTART_DELAY_DEFAULT.get()) * 1000;
        let now = now();
        for (sub_id, name, enabled) in &subs {
            let slot = shmem::apply_slot(dboid, *sub_id);
            let running = slot.is_some_and(|s| s.pid != 0);
            if *enabled && !running {
                let starting = slot.is_some_and(|s| s.launched_at != 0 && now - s.launched_at < 10_000_000);
                let backing_off = slot.is_some_and(|s| s.failed_at != 0 && now - s.failed_at < restart_delay);
                let held = slot.is_some_and(|s| now < s.hold_until);
                if !starting && !backing_off && !held {
                    launch_apply(dboid, *sub_id, name);
                }
            } else if !*enabled && running {
                shmem::stop_apply_worker(dboid, *sub_id, false);
            }
        }
        // Workers of dropped subscriptions are stopped, their slots forgotten.
        let keep: Vec<u32> = subs.iter().map(|(id, _, _)| *id).collect();
        shmem::stop_orphans(dboid, &keep);
        shmem::forget_apply_slots(dboid, &keep);
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(500))) {
            break;
        }
    }
}
