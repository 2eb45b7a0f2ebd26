//! Statistics (sql-api.md §4.8): the channel counters of this database
//! (`spock.get_channel_stats`, `reset_channel_stats`, and the views
//! `channel_table_stats` and `channel_summary_stats` in `sql/views.sql`)
//! and each subscription's conflict counters (`get_subscription_stats`,
//! `reset_subscription_stats`). The counting is `crate::stats`'s.

use pgrx::prelude::*;
use spock_core::stats::SavedStats;

use super::my_database;
use crate::catalog::{self, subscription};
use crate::errors::{raise, require_superuser};
use crate::stats;
use crate::workers::registry;

// pgrx returns an `Oid` of 0 as NULL, and subscription 0 (what the
// walsenders sent) is a real row: the C function returns the id as int8
// and the SQL function of the API casts it.
#[pg_extern(sql = r#"
CREATE FUNCTION spock.channel_stats_rows(OUT subid int8, OUT relid oid, OUT n_tup_ins bigint,
    OUT n_tup_upd bigint, OUT n_tup_del bigint, OUT n_conflict bigint, OUT n_dca bigint)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'channel_stats_rows_wrapper';
CREATE FUNCTION spock.get_channel_stats(OUT subid oid, OUT relid oid, OUT n_tup_ins bigint,
    OUT n_tup_upd bigint, OUT n_tup_del bigint, OUT n_conflict bigint, OUT n_dca bigint)
    RETURNS SETOF record VOLATILE LANGUAGE sql
    AS 'SELECT subid::oid, relid, n_tup_ins, n_tup_upd, n_tup_del, n_conflict, n_dca FROM spock.channel_stats_rows()';
"#)]
#[allow(clippy::type_complexity)]
fn channel_stats_rows() -> TableIterator<
    'static,
    (
        name!(subid, i64),
        name!(relid, pg_sys::Oid),
        name!(n_tup_ins, i64),
        name!(n_tup_upd, i64),
        name!(n_tup_del, i64),
        name!(n_conflict, i64),
        name!(n_dca, i64),
    ),
> {
    let rows = stats::channel_stats(my_database());
    TableIterator::new(rows.into_iter().map(|r| {
        let c = r.counts.map(|n| n as i64);
        (i64::from(r.subid), pg_sys::Oid::from(r.relid), c[0], c[1], c[2], c[3], c[4])
    }))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.reset_channel_stats() RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'reset_channel_stats_wrapper';
"#)]
fn reset_channel_stats() {
    require_superuser("spock.reset_channel_stats");
    stats::reset_channel_stats(my_database());
}

/// The subscription `subid` of this database, or 42704.
fn require_subscription(subid: pg_sys::Oid, what: &str) -> subscription::Subscription {
    catalog::with_catalog_owner_rights(|| Spi::connect(|client| subscription::by_id(client, subid.to_u32())))
        .unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{what}: subscription with id {} does not exist", subid.to_u32()),
            )
        })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.subscription_stats_rows(subid oid, OUT subid oid, OUT confl_insert_exists bigint,
    OUT confl_update_origin_differs bigint, OUT confl_update_exists bigint, OUT confl_update_missing bigint,
    OUT confl_delete_origin_differs bigint, OUT confl_delete_missing bigint, OUT confl_delete_exists bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'subscription_stats_rows_wrapper';
CREATE FUNCTION spock.get_subscription_stats(subid oid, OUT subid oid, OUT confl_insert_exists bigint,
    OUT confl_update_origin_differs bigint, OUT confl_update_exists bigint, OUT confl_update_missing bigint,
    OUT confl_delete_origin_differs bigint, OUT confl_delete_missing bigint, OUT confl_delete_exists bigint,
    OUT stats_reset timestamptz)
    RETURNS record STRICT VOLATILE LANGUAGE sql AS 'SELECT * FROM spock.subscription_stats_rows($1)';
"#)]
#[allow(clippy::type_complexity)]
fn subscription_stats_rows(
    subid: pg_sys::Oid,
) -> TableIterator<
    'static,
    (
        name!(subid, pg_sys::Oid),
        name!(confl_insert_exists, i64),
        name!(confl_update_origin_differs, i64),
        name!(confl_update_exists, i64),
        name!(confl_update_missing, i64),
        name!(confl_delete_origin_differs, i64),
        name!(confl_delete_missing, i64),
        name!(confl_delete_exists, i64),
        name!(stats_reset, Option<TimestampWithTimeZone>),
    ),
> {
    let sub = require_subscription(subid, "spock.get_subscription_stats");
    let dboid = my_database();
    // Counters in shared memory once a worker ran since the server started,
    // else what the last worker saved.
    let (counts, reset) = registry::subscription_stats(dboid, sub.sub_id)
        .or_else(|| {
            stats::saved_subscription_stats(dboid, sub.sub_id, sub.created_at)
                .map(|s| (s.conflicts, s.reset_at))
        })
        .unwrap_or(([0; 7], 0));
    let c = counts.map(|n| n as i64);
    let reset = (reset != 0).then(|| TimestampWithTimeZone::try_from(reset).ok()).flatten();
    TableIterator::once((subid, c[0], c[1], c[2], c[3], c[4], c[5], c[6], reset))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.reset_subscription_stats(subid oid DEFAULT NULL) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'reset_subscription_stats_wrapper';
"#)]
fn reset_subscription_stats(subid: Option<pg_sys::Oid>) {
    let what = "spock.reset_subscription_stats";
    require_superuser(what);
    let subs = match subid {
        Some(id) => vec![require_subscription(id, what)],
        None => Spi::connect(subscription::all),
    };
    let dboid = my_database();
    let ids: Vec<u32> = subs.iter().map(|s| s.sub_id).collect();
    registry::reset_subscription_stats(dboid, &ids);
    // The saved counters are replaced too: a subscription no worker ran for
    // since the server started, or one whose worker dies in a crash before
    // it saves again, then starts from zero, not from what was saved before.
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    for sub in &subs {
        let zero = SavedStats { created_at: sub.created_at, reset_at: now, conflicts: [0; 7] };
        stats::save_subscription_stats(dboid, sub.sub_id, &zero);
    }
}
