//! Pauses asked for by `spock.pause_apply_workers()` (sql-api.md §4.11):
//! the worker stops between two remote transactions, says so in the
//! registry, and goes on when the pause is lifted or has lasted until the
//! deadline the request set (`spock.pause_timeout`), whichever comes first.

use std::time::Duration;

use pgrx::prelude::*;

use crate::workers::registry;

/// Waits while a pause of this database's apply workers is requested. Call
/// only between transactions.
pub fn hold_if_asked(dboid: u32, sub_id: u32, sub_name: &str) {
    if registry::pause_requested(dboid).is_none() {
        return;
    }
    registry::set_paused(dboid, sub_id, true);
    pgrx::log!("spock apply worker for subscription {sub_name} paused between transactions");
    while registry::pause_requested(dboid).is_some() {
        // SAFETY: sleeps on this process's latch for at most 100 ms.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                Duration::from_millis(100).as_millis() as i64,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
    registry::set_paused(dboid, sub_id, false);
    pgrx::log!("spock apply worker for subscription {sub_name} resumed");
}
