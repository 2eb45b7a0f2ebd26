//! A manager (behaviour.md §3): one per database with a spock node, started
//! by the supervisor. It runs one apply worker per enabled subscription (an
//! apply worker starts its subscription's table-sync worker itself),
//! restarts failed ones after `spock.restart_delay_default`, and stops those
//! of disabled or dropped subscriptions. First it brings the database's
//! spock catalog to the library's version (`ALTER EXTENSION spock UPDATE`,
//! sql-api.md §2.4), or, when no update script leads there, logs why once
//! and starts no worker. A manager of a database without a node (or without
//! the extension) exits.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use super::registry::{self, Kind};
use spock_core::version::CatalogCheck;

use crate::catalog;
use crate::guc;

/// The spock catalog of the manager's database against the loaded library.
enum Catalog {
    /// No extension here: nothing to manage.
    Absent,
    /// Catalog and library agree (perhaps after this call updated the catalog).
    Current,
    /// The library cannot work with this catalog: why, and what to do.
    Refused(String),
}

/// Checks the database's catalog version and, when it is older and update
/// scripts lead to the library's version, runs `ALTER EXTENSION spock
/// UPDATE` (sql-api.md §2.4), so that a server restarted on a newer package
/// brings each database level by itself.
fn check_catalog() -> Catalog {
    BackgroundWorker::transaction(|| {
        Spi::connect_mut(|client| {
            let Some((from, check)) = catalog::extension::check(client) else { return Catalog::Absent };
            match check {
                CatalogCheck::Matches => Catalog::Current,
                CatalogCheck::Update => {
                    catalog::extension::update(client);
                    pgrx::log!(
                        "spock: updated the spock catalog of database \"{}\" from version {from} to {}",
                        database_name(client),
                        crate::version::VERSION
                    );
                    Catalog::Current
                }
                CatalogCheck::Refuse(why) => {
                    Catalog::Refused(format!("database \"{}\": {why}", database_name(client)))
                }
            }
        })
    })
}

fn database_name(client: &pgrx::spi::SpiClient<'_>) -> String {
    client
        .select("SELECT current_database()::text", None, &[])
        .ok()
        .and_then(|mut t| t.next().and_then(|row| row.get::<String>(1).ok().flatten()))
        .unwrap_or_default()
}

/// Subscriptions of the manager's database: (id, name, enabled).
fn subscriptions() -> Option<Vec<(u32, String, bool)>> {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            catalog::node::local_node(client)?;
            Some(
                catalog::subscription::all(client)
                    .into_iter()
                    .map(|s| (s.sub_id, s.name, s.enabled))
                    .collect(),
            )
        })
    })
}

fn launch_apply(dboid: u32, sub_id: u32, name: &str) {
    if launch(dboid, sub_id, &format!("spock apply {name}"), "spock apply", c"spock_apply_main") {
        registry::note_launch(dboid, sub_id);
    } else {
        pgrx::warning!(
            "spock: cannot start the apply worker of subscription {name}: no free background worker slot \
             (raise max_worker_processes)"
        );
    }
}

/// Starts the table-sync worker of a subscription (its apply worker does,
/// when tables wait for their copy).
pub fn launch_sync(dboid: u32, sub_id: u32, name: &str) {
    if launch(dboid, sub_id, &format!("spock sync {name}"), "spock sync", c"spock_sync_main") {
        registry::note_sync_launch(dboid, sub_id);
    } else {
        pgrx::warning!(
            "spock: cannot start the table-sync worker of subscription {name}: no free background worker \
             slot (raise max_worker_processes); it is tried again"
        );
    }
}

fn launch(dboid: u32, sub_id: u32, name: &str, kind: &str, function: &std::ffi::CStr) -> bool {
    BackgroundWorkerBuilder::new(name)
        .set_type(kind)
        .set_library("spock")
        .set_function(function.to_str().expect("ASCII function names"))
        .set_argument(Some(pg_sys::Datum::from(sub_id)))
        .set_extra(&dboid.to_string())
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: reads this process's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .is_ok()
}

/// A manager's main loop.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_manager_main(arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    if !registry::claim(Kind::Manager, dboid, 0) {
        // Another manager runs for this database.
        return;
    }
    // The refusal last logged, so that a waiting manager logs it once.
    let mut refused: Option<String> = None;
    let mut read_only_noted = false;
    loop {
        super::reload_config_if_asked();
        match check_catalog() {
            Catalog::Absent => return,
            Catalog::Current => refused = None,
            Catalog::Refused(why) => {
                // No workers run against a catalog the library does not
                // know; the manager waits (rather than failing and being
                // restarted) until a matching library or catalog is there.
                if refused.as_ref() != Some(&why) {
                    pgrx::warning!("spock: no replication workers start in {why}");
                    refused = Some(why);
                }
                if !BackgroundWorker::wait_latch(Some(Duration::from_secs(10))) {
                    break;
                }
                continue;
            }
        }
        if crate::hooks::readonly::stops_apply() {
            // Read-only mode `all`: no apply worker runs (a running one stops
            // by itself) until the mode is relaxed.
            if !read_only_noted {
                pgrx::log!("spock: spock.readonly = all, so no apply worker starts in this database");
                read_only_noted = true;
            }
            if !BackgroundWorker::wait_latch(Some(Duration::from_millis(500))) {
                break;
            }
            continue;
        }
        read_only_noted = false;
        let Some(subs) = subscriptions() else {
            // No spock node here (any more): nothing to manage.
            return;
        };
        let restart_delay = i64::from(guc::RESTART_DELAY_DEFAULT.get()) * 1000;
        let exception_delay = i64::from(guc::RESTART_DELAY_ON_EXCEPTION.get()) * 1000;
        let now = super::now();
        for (sub_id, name, enabled) in &subs {
            let slot = registry::apply_slot(dboid, *sub_id);
            let running = slot.is_some_and(|s| s.pid != 0);
            if *enabled && !running {
                let starting = slot.is_some_and(|s| s.launched_at != 0 && now - s.launched_at < 10_000_000);
                // A worker that left a failed transaction to handle in
                // exception mode comes back after the exception delay.
                let backing_off = slot.is_some_and(|s| {
                    let delay = if s.exception_pending() { exception_delay } else { restart_delay };
                    s.failed_at != 0 && now - s.failed_at < delay
                });
                let held = slot.is_some_and(|s| s.held(now));
                if !starting && !backing_off && !held {
                    launch_apply(dboid, *sub_id, name);
                }
            } else if !*enabled && running {
                registry::stop_apply_worker(dboid, *sub_id, false);
            }
            if !*enabled {
                registry::stop_sync_worker(dboid, *sub_id);
            }
        }
        // Workers of dropped subscriptions are stopped, their slots forgotten.
        let keep: Vec<u32> = subs.iter().map(|(id, _, _)| *id).collect();
        registry::stop_orphans(dboid, &keep);
        registry::forget_apply_slots(dboid, &keep);
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(500))) {
            break;
        }
    }
}
