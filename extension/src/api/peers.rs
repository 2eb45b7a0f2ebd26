//! Add-node support (sql-api.md §4.11): pausing this database's apply
//! workers between transactions while a new node takes its snapshot here,
//! so that the positions `spock.read_peer_progress` reports (SQL, in
//! `sql/views.sql`) match exactly what that snapshot holds.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::my_database;
use crate::errors::{raise, raise_hint, require_superuser};
use crate::guc;
use crate::workers::{self, registry};

#[pg_extern(sql = r#"
CREATE FUNCTION spock.pause_apply_workers() RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'pause_apply_workers_wrapper';
"#)]
fn pause_apply_workers() {
    require_superuser("spock.pause_apply_workers");
    let timeout = Duration::from_secs(guc::PAUSE_TIMEOUT.get().max(1) as u64);
    let db = my_database();
    let until = workers::now() + timeout.as_micros() as i64;
    if let Err(other) = registry::request_pause(db, until) {
        raise(
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
            format!("the apply workers of another database (oid {other}) are paused; resume them first"),
        );
    }
    let deadline = Instant::now() + timeout;
    loop {
        let waiting = registry::unpaused_workers(db);
        if waiting.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            registry::clear_pause(db);
            raise_hint(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                format!(
                    "{} apply worker(s) of this database did not pause within spock.pause_timeout ({} s)",
                    waiting.len(),
                    timeout.as_secs()
                ),
                "A worker applying a long transaction pauses only after it; raise spock.pause_timeout or try again.",
            );
        }
        pgrx::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.resume_apply_workers() RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'resume_apply_workers_wrapper';
"#)]
fn resume_apply_workers() {
    require_superuser("spock.resume_apply_workers");
    registry::clear_pause(my_database());
}
