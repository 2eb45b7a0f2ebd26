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

/// A file spock keeps about a subscription in `pg_spock/` of the data
/// directory (what an exiting worker saves for the next one).
pub fn state_file(name: &str) -> std::path::PathBuf {
    // SAFETY: DataDir is set at process start, before any worker runs.
    let data = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) }.to_string_lossy().into_owned();
    std::path::PathBuf::from(data).join("pg_spock").join(name)
}

/// Replaces a state file with `text` at once (written under a temporary
/// name of this process, then renamed), creating `pg_spock/` if needed.
pub fn write_state_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    // SAFETY: reads this process's pid.
    let tmp = path.with_extension(format!("tmp.{}", unsafe { pg_sys::MyProcPid }));
    path.parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&tmp, text))
        .and_then(|_| std::fs::rename(&tmp, path))
}
