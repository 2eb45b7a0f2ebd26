//! spock's background workers: the supervisor (one per instance), the
//! managers (one per database with a node) and the registry in shared
//! memory through which they, the apply workers and SQL functions find each
//! other. The apply worker itself is in `crate::apply`.

pub mod manager;
pub mod registry;
pub mod supervisor;

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

/// Re-reads the configuration files when a SIGHUP asked for it.
pub fn reload_config_if_asked() {
    if BackgroundWorker::sighup_received() {
        // SAFETY: re-reads the configuration files in this process.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// The current time as a `TimestampTz`.
pub fn now() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}
