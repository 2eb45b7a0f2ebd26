//! Conflict bookkeeping (sql-api.md §4.7): pruning `spock.resolutions`.

use pgrx::prelude::*;

use crate::catalog::resolutions;
use crate::errors::{raise_hint, require_superuser};
use crate::guc;

#[pg_extern(sql = r#"
CREATE FUNCTION spock.cleanup_resolutions(days integer DEFAULT NULL) RETURNS bigint
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'cleanup_resolutions_wrapper';
"#)]
fn cleanup_resolutions(days: Option<i32>) -> i64 {
    require_superuser("spock.cleanup_resolutions()");
    let days = days.unwrap_or_else(|| guc::RESOLUTIONS_RETENTION_DAYS.get());
    if days < 0 {
        raise_hint(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("days must not be negative (got {days})"),
            "Give the number of days of resolutions to keep, or NULL for spock.resolutions_retention_days.",
        );
    }
    if days == 0 {
        return 0;
    }
    Spi::connect_mut(|client| resolutions::delete_older_than(client, days))
}
