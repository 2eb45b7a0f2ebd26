//! Pauses asked for by `spock.pause_apply_workers()` (sql-api.md §4.11):
//! the worker stops between two remote transactions, says so in the
//! registry, and goes on when the pause is lifted or has lasted until the
//! deadline the request set (`spock.pause_timeout`), whichever comes first.

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
        super::wait::nap(100);
    }
    registry::set_paused(dboid, sub_id, false);
    pgrx::log!("spock apply worker for subscription {sub_name} resumed");
}
