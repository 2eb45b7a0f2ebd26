//! Subscriptions of the local node (`spock.subscription`) and the local
//! copies of their providers' nodes.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{oid, oid_u32, spi_failed};

/// A subscription of the local node, with what its worker needs.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub sub_id: u32,
    pub name: String,
    pub origin_id: u32,
    pub origin_name: String,
    pub origin_dsn: String,
    pub enabled: bool,
    pub slot_name: String,
    pub replication_sets: Vec<String>,
    pub forward_origins: Vec<String>,
    /// The local node (the subscription's target).
    pub target_id: u32,
    pub target_name: String,
    /// `sub_created_at` as a PostgreSQL timestamp (microseconds since 2000).
    pub created_at: i64,
    /// The armed skip LSN (`sub_skip_lsn`), 0 when none.
    pub skip_lsn: u64,
    /// Schemas the initial copy leaves out (`sub_skip_schema`).
    pub skip_schema: Vec<String>,
    /// `sub_apply_delay` in microseconds (as `extract(epoch ...)` counts:
    /// a day is 24 hours, a month 30 days).
    pub apply_delay_us: i64,
}

const SUBSCRIPTION_QUERY: &str = "SELECT s.sub_id, s.sub_name::text, s.sub_origin, o.node_name::text,
        i.if_dsn, s.sub_enabled, s.sub_slot_name::text,
        coalesce(s.sub_replication_sets, '{}'), coalesce(s.sub_forward_origins, '{}'),
        s.sub_target, t.node_name::text, s.sub_created_at, (s.sub_skip_lsn - '0/0')::int8,
        coalesce(s.sub_skip_schema, '{}'),
        (extract(epoch FROM s.sub_apply_delay) * 1000000)::int8
   FROM spock.subscription s
   JOIN spock.node o ON o.node_id = s.sub_origin
   JOIN spock.node t ON t.node_id = s.sub_target
   JOIN spock.node_interface i ON i.if_id = s.sub_origin_if";

fn from_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> Subscription {
    Subscription {
        sub_id: oid_u32(row.get(1).unwrap()),
        name: row.get::<String>(2).unwrap().unwrap_or_default(),
        origin_id: oid_u32(row.get(3).unwrap()),
        origin_name: row.get::<String>(4).unwrap().unwrap_or_default(),
        origin_dsn: row.get::<String>(5).unwrap().unwrap_or_default(),
        enabled: row.get::<bool>(6).unwrap().unwrap_or(false),
        slot_name: row.get::<String>(7).unwrap().unwrap_or_default(),
        replication_sets: row.get::<Vec<String>>(8).unwrap().unwrap_or_default(),
        forward_origins: row.get::<Vec<String>>(9).unwrap().unwrap_or_default(),
        target_id: oid_u32(row.get(10).unwrap()),
        target_name: row.get::<String>(11).unwrap().unwrap_or_default(),
        created_at: row.get::<TimestampWithTimeZone>(12).unwrap().map(|t| t.into_inner()).unwrap_or(0),
        skip_lsn: row.get::<i64>(13).unwrap().unwrap_or(0) as u64,
        skip_schema: row.get::<Vec<String>>(14).unwrap().unwrap_or_default(),
        apply_delay_us: row.get::<i64>(15).unwrap().unwrap_or(0),
    }
}

fn query(client: &SpiClient<'_>, filter: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> Vec<Subscription> {
    client
        .select(&format!("{SUBSCRIPTION_QUERY} {filter}"), None, args)
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .map(|row| from_row(&row))
        .collect()
}

/// Every subscription of the local node, ordered by name.
pub fn all(client: &SpiClient<'_>) -> Vec<Subscription> {
    query(client, "ORDER BY s.sub_name", &[])
}

/// The subscription whose slot (and replication origin) has this name.
pub fn by_slot_name(client: &SpiClient<'_>, slot: &str) -> Option<Subscription> {
    query(client, "WHERE s.sub_slot_name = $1", &[slot.into()]).into_iter().next()
}

/// One subscription by name.
pub fn by_name(client: &SpiClient<'_>, name: &str) -> Option<Subscription> {
    query(client, "WHERE s.sub_name = $1", &[name.into()]).into_iter().next()
}

/// One subscription by id.
pub fn by_id(client: &SpiClient<'_>, id: u32) -> Option<Subscription> {
    query(client, "WHERE s.sub_id = $1", &[oid(id).into()]).into_iter().next()
}

/// The subscriptions (enabled or not) whose provider is `node_id`.
pub fn from_provider(client: &SpiClient<'_>, node_id: u32) -> Vec<Subscription> {
    query(client, "WHERE s.sub_origin = $1 ORDER BY s.sub_name", &[oid(node_id).into()])
}

/// What a new subscription row holds.
pub struct NewSubscription<'a> {
    pub name: &'a str,
    pub origin: u32,
    pub target: u32,
    pub origin_if: u32,
    pub target_if: u32,
    pub enabled: bool,
    pub slot_name: &'a str,
    pub replication_sets: &'a [String],
    pub forward_origins: &'a [String],
    pub force_text_transfer: bool,
    pub skip_schema: &'a [String],
    pub apply_delay: pgrx::datum::Interval,
}

/// A fresh subscription id from `spock.sub_id_generator`.
pub fn next_id(client: &SpiClient<'_>) -> u32 {
    client
        .select("SELECT nextval('spock.sub_id_generator')::int", None, &[])
        .unwrap_or_else(spi_failed("allocate a subscription id"))
        .first()
        .get_one::<i32>()
        .ok()
        .flatten()
        .unwrap_or_else(|| pgrx::error!("spock cannot allocate a subscription id")) as u32
}

pub fn insert(client: &mut SpiClient<'_>, id: u32, sub: &NewSubscription<'_>) {
    client
        .update(
            "INSERT INTO spock.subscription (sub_id, sub_name, sub_origin, sub_target, sub_origin_if, sub_target_if,
                sub_enabled, sub_slot_name, sub_replication_sets, sub_forward_origins, sub_skip_schema,
                sub_apply_delay, sub_force_text_transfer)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            None,
            &[
                oid(id).into(),
                sub.name.into(),
                oid(sub.origin).into(),
                oid(sub.target).into(),
                oid(sub.origin_if).into(),
                oid(sub.target_if).into(),
                sub.enabled.into(),
                sub.slot_name.into(),
                sub.replication_sets.to_vec().into(),
                sub.forward_origins.to_vec().into(),
                sub.skip_schema.to_vec().into(),
                sub.apply_delay.into(),
                sub.force_text_transfer.into(),
            ],
        )
        .unwrap_or_else(spi_failed("insert into spock.subscription"));
}

/// Names of other subscriptions to the same provider that receive one of `sets`.
pub fn overlapping(client: &SpiClient<'_>, provider: u32, except: u32, sets: &[String]) -> Vec<String> {
    client
        .select(
            "SELECT sub_name::text FROM spock.subscription
              WHERE sub_origin = $1 AND sub_id <> $2 AND sub_replication_sets && $3 ORDER BY 1",
            None,
            &[oid(provider).into(), oid(except).into(), sets.to_vec().into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// Deletes a subscription and its sync status rows.
pub fn delete(client: &mut SpiClient<'_>, id: u32) {
    for sql in [
        "DELETE FROM spock.local_sync_status WHERE sync_subid = $1",
        "DELETE FROM spock.subscription WHERE sub_id = $1",
    ] {
        client.update(sql, None, &[oid(id).into()]).unwrap_or_else(spi_failed("drop a subscription"));
    }
}

pub fn set_enabled(client: &mut SpiClient<'_>, id: u32, enabled: bool) {
    client
        .update(
            "UPDATE spock.subscription SET sub_enabled = $2 WHERE sub_id = $1",
            None,
            &[oid(id).into(), enabled.into()],
        )
        .unwrap_or_else(spi_failed("update spock.subscription"));
}

/// Arms (or with 0, disarms) the one-shot skip of a remote transaction.
pub fn set_skip_lsn(client: &mut SpiClient<'_>, id: u32, lsn: u64) {
    client
        .update(
            "UPDATE spock.subscription SET sub_skip_lsn = $2::pg_lsn WHERE sub_id = $1",
            None,
            &[oid(id).into(), spock_core::stream::format_lsn(lsn).into()],
        )
        .unwrap_or_else(spi_failed("update spock.subscription"));
}

/// Points the subscription at another interface of its provider; false
/// when it already uses that one.
pub fn set_origin_interface(client: &mut SpiClient<'_>, id: u32, if_id: u32) -> bool {
    !client
        .update(
            "UPDATE spock.subscription SET sub_origin_if = $2
              WHERE sub_id = $1 AND sub_origin_if <> $2 RETURNING 1",
            None,
            &[oid(id).into(), oid(if_id).into()],
        )
        .unwrap_or_else(spi_failed("update spock.subscription"))
        .is_empty()
}

/// The list-valued settings of a subscription.
#[derive(Clone, Copy)]
pub enum List {
    /// `sub_replication_sets`: the sets it receives.
    ReplicationSets,
    /// `sub_forward_origins`: `{}` or `{all}`.
    ForwardOrigins,
    /// `sub_skip_schema`: schemas the initial copy leaves out.
    SkipSchema,
}

/// Sets one of a subscription's lists.
pub fn set_list(client: &mut SpiClient<'_>, id: u32, list: List, values: &[String]) {
    let column = match list {
        List::ReplicationSets => "sub_replication_sets",
        List::ForwardOrigins => "sub_forward_origins",
        List::SkipSchema => "sub_skip_schema",
    };
    client
        .update(
            &format!("UPDATE spock.subscription SET {column} = $2 WHERE sub_id = $1"),
            None,
            &[oid(id).into(), values.to_vec().into()],
        )
        .unwrap_or_else(spi_failed("update spock.subscription"));
}

/// The forwarding rule (behaviour.md §5.3): an enabled subscription of this
/// node other than `except` that stops a subscription from being enabled,
/// any one if that subscription forwards, else a forwarding one (the same
/// change would arrive twice, by two paths). With `lock`,
/// `spock.subscription` is locked against other sessions changing the
/// answer until commit.
pub fn forwarding_conflict(
    client: &mut SpiClient<'_>,
    except: u32,
    forwards: bool,
    lock: bool,
) -> Option<String> {
    if lock {
        client
            .update("LOCK TABLE spock.subscription IN SHARE ROW EXCLUSIVE MODE", None, &[])
            .unwrap_or_else(spi_failed("lock spock.subscription"));
    }
    client
        .select(
            "SELECT sub_name::text FROM spock.subscription
              WHERE sub_enabled AND sub_id::int8 <> $1
                AND ($2 OR coalesce(cardinality(sub_forward_origins), 0) > 0)
              ORDER BY sub_name LIMIT 1",
            None,
            // As int8: an oid argument of 0 would arrive as NULL.
            &[i64::from(except).into(), forwards.into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .next()
        .and_then(|row| row.get::<String>(1).unwrap())
}

/// Sets the apply delay from an interval's text (checked by the caller).
pub fn set_apply_delay(client: &mut SpiClient<'_>, id: u32, delay: &str) {
    client
        .update(
            "UPDATE spock.subscription SET sub_apply_delay = $2::interval WHERE sub_id = $1",
            None,
            &[oid(id).into(), delay.into()],
        )
        .unwrap_or_else(spi_failed("update spock.subscription"));
}
