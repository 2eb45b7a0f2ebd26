//! Progress and lag (sql-api.md §6.17-§6.19): what the apply workers of
//! this database published. `spock.apply_group_progress()`, and the views
//! `spock.progress` and `spock.lag_tracker` over it, are SQL (`sql/views.sql`)
//! joining this with the subscriptions and their replication origins.
//! `spock.sync_progress` shows the table each running initial copy is
//! copying and how many rows it has copied so far.

use pgrx::prelude::*;

use super::my_database;
use crate::errors::require_superuser;
use crate::workers::registry;

#[pg_extern(sql = r#"
CREATE FUNCTION spock.progress_published(OUT sub_id oid, OUT remote_commit_ts timestamptz,
    OUT remote_insert_lsn pg_lsn, OUT received_lsn pg_lsn, OUT last_updated_ts timestamptz)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'progress_published_wrapper';
"#)]
// pg_lsn is a pass-by-value 64-bit datum, returned as i64.
#[allow(clippy::type_complexity)]
fn progress_published() -> TableIterator<
    'static,
    (
        name!(sub_id, pg_sys::Oid),
        name!(remote_commit_ts, Option<TimestampWithTimeZone>),
        name!(remote_insert_lsn, Option<i64>),
        name!(received_lsn, Option<i64>),
        name!(last_updated_ts, Option<TimestampWithTimeZone>),
    ),
> {
    require_superuser("spock.progress_published");
    let ts = |t: i64| (t != 0).then(|| TimestampWithTimeZone::try_from(t).ok()).flatten();
    let lsn = |l: u64| (l != 0).then_some(l as i64);
    TableIterator::new(registry::progress_of(my_database()).into_iter().map(move |(subid, p)| {
        (pg_sys::Oid::from(subid), ts(p.commit_ts), lsn(p.insert_lsn), lsn(p.received_lsn), ts(p.updated_ts))
    }))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.copies_published(OUT sub_id oid, OUT relation text, OUT rows_copied int8,
    OUT bytes_copied int8, OUT copy_started timestamptz)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'copies_published_wrapper';
"#)]
#[allow(clippy::type_complexity)]
fn copies_published() -> TableIterator<
    'static,
    (
        name!(sub_id, pg_sys::Oid),
        name!(relation, String),
        name!(rows_copied, i64),
        name!(bytes_copied, i64),
        name!(copy_started, Option<TimestampWithTimeZone>),
    ),
> {
    require_superuser("spock.copies_published");
    TableIterator::new(registry::copies_of(my_database()).into_iter().map(|(subid, c)| {
        (
            pg_sys::Oid::from(subid),
            c.table().unwrap_or_default(),
            c.rows as i64,
            c.bytes as i64,
            TimestampWithTimeZone::try_from(c.started).ok(),
        )
    }))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.get_apply_worker_status(OUT worker_pid bigint, OUT worker_dboid integer,
    OUT worker_subid bigint, OUT worker_status text)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'get_apply_worker_status_wrapper';
"#)]
#[allow(clippy::type_complexity)]
fn get_apply_worker_status() -> TableIterator<
    'static,
    (
        name!(worker_pid, i64),
        name!(worker_dboid, i32),
        name!(worker_subid, i64),
        name!(worker_status, &'static str),
    ),
> {
    require_superuser("spock.get_apply_worker_status");
    TableIterator::new(
        registry::apply_slots()
            .into_iter()
            .map(|slot| (i64::from(slot.pid), slot.dboid as i32, i64::from(slot.subid), slot.status())),
    )
}
