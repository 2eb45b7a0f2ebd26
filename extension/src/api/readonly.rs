//! The read-only mode helper (sql-api.md §4.10): ending the transactions
//! that started before `spock.readonly` was set, so that the mode holds for
//! every session at once.

use pgrx::prelude::*;

use crate::errors::require_superuser;

#[pg_extern(sql = r#"
CREATE FUNCTION spock.terminate_active_transactions() RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'terminate_active_transactions_wrapper';
"#)]
fn terminate_active_transactions() -> bool {
    require_superuser("spock.terminate_active_transactions");
    // Client sessions only (not walsenders, not spock's or other background
    // workers), with a transaction open. A running statement is cancelled,
    // which ends its transaction; a transaction idle between statements
    // cannot be cancelled, so its session is terminated.
    let (cancelled, terminated) = Spi::connect(|client| {
        let rows: Vec<(i32, bool)> = client
            .select(
                "SELECT pid, state = 'active' FROM pg_stat_activity
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                    AND xact_start IS NOT NULL",
                None,
                &[],
            )
            .unwrap_or_else(crate::catalog::spi_failed("read pg_stat_activity"))
            .map(|row| {
                (row.get::<i32>(1).unwrap().unwrap_or(0), row.get::<bool>(2).unwrap().unwrap_or(false))
            })
            .collect();
        let (mut cancelled, mut terminated) = (0, 0);
        for (pid, active) in rows {
            let function = if active { "pg_cancel_backend" } else { "pg_terminate_backend" };
            let done = client
                .select(&format!("SELECT {function}($1)"), None, &[pid.into()])
                .ok()
                .and_then(|mut t| t.next().and_then(|r| r.get::<bool>(1).ok().flatten()))
                .unwrap_or(false);
            match (done, active) {
                (true, true) => cancelled += 1,
                (true, false) => terminated += 1,
                _ => {}
            }
        }
        (cancelled, terminated)
    });
    pgrx::notice!(
        "spock: cancelled {cancelled} running statement(s) and ended {terminated} idle transaction(s) of other sessions"
    );
    true
}
