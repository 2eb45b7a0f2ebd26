//! `spock.queue` (sql-api.md §6.10): rows written where a message starts
//! (`replicate_ddl`, automatic DDL replication) and where it arrives (the
//! apply worker stores what it received before acting on it).

use pgrx::spi::SpiClient;
use spock_core::protocol::QueueRow;

use super::spi_failed;

/// Inserts a queue row. `queued_at` is microseconds since 2000-01-01 UTC
/// (the provider's value for a received row), or `None` for now.
pub fn insert(client: &mut SpiClient<'_>, row: &QueueRow, queued_at: Option<i64>) {
    let message_type = (row.message_type as char).to_string();
    client
        .update(
            "INSERT INTO spock.queue (queued_at, role, replication_sets, message_type, message)
             VALUES (coalesce('2000-01-01 00:00:00+00'::timestamptz + $1 * interval '1 microsecond', now()),
                     $2, $3, $4::\"char\", $5::json)",
            None,
            &[
                queued_at.into(),
                row.role.as_str().into(),
                row.replication_sets.clone().into(),
                message_type.into(),
                row.message.as_str().into(),
            ],
        )
        .unwrap_or_else(spi_failed("insert into spock.queue"));
}
