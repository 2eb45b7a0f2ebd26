//! Recorded conflict resolutions (`spock.resolutions`, behaviour.md §7.6).

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::spi_failed;

/// One row of `spock.resolutions`. Timestamps are PostgreSQL `timestamptz`
/// values (microseconds since 2000); LSNs and xids as PostgreSQL counts them.
pub struct Resolution<'a> {
    pub node_name: &'a str,
    pub relname: &'a str,
    pub idxname: Option<&'a str>,
    pub conflict_type: &'a str,
    pub conflict_resolution: &'a str,
    pub local_origin: Option<u32>,
    pub local_tuple: Option<&'a str>,
    pub local_xid: Option<u32>,
    pub local_timestamp: Option<i64>,
    pub remote_origin: u32,
    pub remote_tuple: Option<&'a str>,
    pub remote_xid: u32,
    pub remote_timestamp: i64,
    pub remote_lsn: u64,
}

fn timestamptz(v: Option<i64>) -> Option<TimestampWithTimeZone> {
    v.and_then(|us| TimestampWithTimeZone::try_from(us).ok())
}

/// Adds one row, in the caller's (apply) transaction.
pub fn insert(client: &mut SpiClient<'_>, r: &Resolution<'_>) {
    client
        .update(
            "INSERT INTO spock.resolutions (node_name, log_time, relname, idxname, conflict_type,
                 conflict_resolution, local_origin, local_tuple, local_xid, local_timestamp,
                 remote_origin, remote_tuple, remote_xid, remote_timestamp, remote_lsn)
             VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8::text::xid, $9, $10, $11, $12::text::xid, $13,
                 $14::pg_lsn)",
            None,
            &[
                r.node_name.into(),
                r.relname.into(),
                r.idxname.into(),
                r.conflict_type.into(),
                r.conflict_resolution.into(),
                r.local_origin.map(|o| o as i32).into(),
                r.local_tuple.into(),
                r.local_xid.map(|x| x.to_string()).into(),
                timestamptz(r.local_timestamp).into(),
                (r.remote_origin as i32).into(),
                r.remote_tuple.into(),
                r.remote_xid.to_string().into(),
                timestamptz(Some(r.remote_timestamp)).into(),
                spock_core::stream::format_lsn(r.remote_lsn).into(),
            ],
        )
        .unwrap_or_else(spi_failed("write spock.resolutions"));
}

/// Deletes the rows logged more than `days` days ago; returns how many.
pub fn delete_older_than(client: &mut SpiClient<'_>, days: i32) -> i64 {
    client
        .update(
            "WITH gone AS (DELETE FROM spock.resolutions
                            WHERE log_time < now() - make_interval(days => $1) RETURNING 1)
             SELECT count(*) FROM gone",
            None,
            &[days.into()],
        )
        .unwrap_or_else(spi_failed("prune spock.resolutions"))
        .first()
        .get_one::<i64>()
        .ok()
        .flatten()
        .unwrap_or(0)
}
