//! Operations of failed remote transactions (`spock.exception_log`,
//! behaviour.md §8.5).

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{oid, spi_failed};

/// One row of `spock.exception_log`. Tuples are JSON text.
pub struct Entry<'a> {
    pub remote_origin: u32,
    /// The remote transaction's origin commit timestamp (PostgreSQL
    /// microseconds since 2000).
    pub remote_commit_ts: i64,
    pub command_counter: u32,
    pub remote_xid: u32,
    /// The local row involved: the node that wrote it, when, and the row.
    pub local_origin: Option<u32>,
    pub local_commit_ts: Option<i64>,
    pub local_tup: Option<&'a str>,
    pub table_schema: Option<&'a str>,
    pub table_name: Option<&'a str>,
    pub operation: &'a str,
    pub remote_old_tup: Option<&'a str>,
    pub remote_new_tup: Option<&'a str>,
    pub ddl_statement: Option<&'a str>,
    pub ddl_user: Option<&'a str>,
    pub error_message: &'a str,
}

/// Adds one row, in the caller's transaction.
pub fn insert(client: &mut SpiClient<'_>, e: &Entry<'_>) {
    let ts = TimestampWithTimeZone::try_from(e.remote_commit_ts).ok();
    let local_ts = e.local_commit_ts.and_then(|t| TimestampWithTimeZone::try_from(t).ok());
    client
        .update(
            "INSERT INTO spock.exception_log (remote_origin, remote_commit_ts, command_counter,
                 retry_errored_at, remote_xid, table_schema, table_name, operation, remote_old_tup,
                 remote_new_tup, error_message, local_origin, local_commit_ts, local_tup, ddl_statement, ddl_user)
             VALUES ($1, $2, $3, now(), $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13::jsonb, $14, $15)",
            None,
            &[
                oid(e.remote_origin).into(),
                ts.into(),
                (e.command_counter as i32).into(),
                i64::from(e.remote_xid).into(),
                e.table_schema.into(),
                e.table_name.into(),
                e.operation.into(),
                e.remote_old_tup.into(),
                e.remote_new_tup.into(),
                e.error_message.into(),
                e.local_origin.map(oid).into(),
                local_ts.into(),
                e.local_tup.into(),
                e.ddl_statement.into(),
                e.ddl_user.into(),
            ],
        )
        .unwrap_or_else(spi_failed("write spock.exception_log"));
}
