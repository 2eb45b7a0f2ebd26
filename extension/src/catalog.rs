//! The extension's catalog tables (sql-api.md §6) and typed access to them
//! through SPI. Tables the output plugin reads while decoding are marked
//! `user_catalog_table`, so that they can be read with historic snapshots.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::errors::raise_hint;

pgrx::extension_sql!(
    r#"
CREATE TABLE spock.node (
    node_id oid NOT NULL PRIMARY KEY,
    node_name name NOT NULL UNIQUE,
    location text,
    country text,
    info jsonb
) WITH (user_catalog_table = true);

CREATE TABLE spock.node_interface (
    if_id oid NOT NULL PRIMARY KEY,
    if_name name NOT NULL,
    if_nodeid oid NOT NULL REFERENCES spock.node (node_id),
    if_dsn text NOT NULL,
    UNIQUE (if_nodeid, if_name)
);
CREATE SEQUENCE spock.interface_id_generator AS integer START 1;

CREATE TABLE spock.local_node (
    node_id oid NOT NULL PRIMARY KEY REFERENCES spock.node (node_id),
    node_local_interface oid NOT NULL REFERENCES spock.node_interface (if_id)
) WITH (user_catalog_table = true);

CREATE TABLE spock.replication_set (
    set_id oid NOT NULL PRIMARY KEY,
    set_nodeid oid NOT NULL REFERENCES spock.node (node_id),
    set_name name NOT NULL,
    replicate_insert boolean NOT NULL DEFAULT true,
    replicate_update boolean NOT NULL DEFAULT true,
    replicate_delete boolean NOT NULL DEFAULT true,
    replicate_truncate boolean NOT NULL DEFAULT true,
    UNIQUE (set_nodeid, set_name)
) WITH (user_catalog_table = true);

CREATE TABLE spock.replication_set_table (
    set_id oid NOT NULL REFERENCES spock.replication_set (set_id),
    set_reloid regclass NOT NULL,
    set_att_list text[],
    set_row_filter pg_node_tree,
    PRIMARY KEY (set_id, set_reloid)
) WITH (user_catalog_table = true);

CREATE SEQUENCE spock.sub_id_generator AS integer START 1 CYCLE;

CREATE TABLE spock.subscription (
    sub_id oid NOT NULL PRIMARY KEY,
    sub_name name NOT NULL UNIQUE,
    sub_origin oid NOT NULL REFERENCES spock.node (node_id),
    sub_target oid NOT NULL REFERENCES spock.node (node_id),
    sub_origin_if oid NOT NULL REFERENCES spock.node_interface (if_id),
    sub_target_if oid NOT NULL REFERENCES spock.node_interface (if_id),
    sub_enabled boolean NOT NULL DEFAULT true,
    sub_slot_name name NOT NULL,
    sub_replication_sets text[],
    sub_forward_origins text[],
    sub_apply_delay interval NOT NULL DEFAULT '0',
    sub_force_text_transfer boolean NOT NULL DEFAULT false,
    sub_skip_lsn pg_lsn NOT NULL DEFAULT '0/0',
    sub_skip_schema text[],
    sub_created_at timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE spock.sub_id_generator OWNED BY spock.subscription.sub_id;

CREATE TABLE spock.local_sync_status (
    sync_kind "char" NOT NULL CHECK (sync_kind IN ('i', 's', 'd', 'f')),
    sync_subid oid NOT NULL REFERENCES spock.subscription (sub_id),
    sync_nspname name,
    sync_relname name,
    sync_status "char" NOT NULL,
    sync_statuslsn pg_lsn NOT NULL DEFAULT '0/0',
    UNIQUE NULLS NOT DISTINCT (sync_subid, sync_nspname, sync_relname)
);

-- Catalogs holding connection strings are readable by superusers only.
REVOKE ALL ON ALL TABLES IN SCHEMA spock FROM PUBLIC;
"#,
    name = "catalog",
    bootstrap
);

/// The local node of this database.
#[derive(Clone, Debug)]
pub struct LocalNode {
    pub node_id: u32,
    pub node_name: String,
    pub if_id: u32,
    pub dsn: String,
}

fn oid_u32(v: Option<pg_sys::Oid>) -> u32 {
    v.map(|o| o.to_u32()).unwrap_or(0)
}

/// The local node, if this database is a node.
pub fn local_node(client: &SpiClient<'_>) -> Option<LocalNode> {
    let rows = client
        .select(
            "SELECT n.node_id, n.node_name::text, i.if_id, i.if_dsn
               FROM spock.local_node l
               JOIN spock.node n ON n.node_id = l.node_id
               JOIN spock.node_interface i ON i.if_id = l.node_local_interface",
            None,
            &[],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.local_node: {e}"));
    rows.into_iter().next().map(|row| LocalNode {
        node_id: oid_u32(row.get(1).unwrap()),
        node_name: row.get::<String>(2).unwrap().unwrap_or_default(),
        if_id: oid_u32(row.get(3).unwrap()),
        dsn: row.get::<String>(4).unwrap().unwrap_or_default(),
    })
}

/// The local node, or the spec's `55000` error naming `what`.
pub fn require_local_node(client: &SpiClient<'_>, what: &str) -> LocalNode {
    local_node(client).unwrap_or_else(|| {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what} needs a spock node in this database"),
            "Create one with spock.node_create().",
        )
    })
}

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
}

const SUBSCRIPTION_QUERY: &str = "SELECT s.sub_id, s.sub_name::text, s.sub_origin, o.node_name::text,
        i.if_dsn, s.sub_enabled, s.sub_slot_name::text,
        coalesce(s.sub_replication_sets, '{}'), coalesce(s.sub_forward_origins, '{}')
   FROM spock.subscription s
   JOIN spock.node o ON o.node_id = s.sub_origin
   JOIN spock.node_interface i ON i.if_id = s.sub_origin_if";

fn subscription_from(row: &pgrx::spi::SpiHeapTupleData<'_>) -> Subscription {
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
    }
}

/// Every subscription of the local node, ordered by name.
pub fn subscriptions(client: &SpiClient<'_>) -> Vec<Subscription> {
    client
        .select(&format!("{SUBSCRIPTION_QUERY} ORDER BY s.sub_name"), None, &[])
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.subscription: {e}"))
        .into_iter()
        .map(|row| subscription_from(&row))
        .collect()
}

/// One subscription by name.
pub fn subscription_by_name(client: &SpiClient<'_>, name: &str) -> Option<Subscription> {
    client
        .select(&format!("{SUBSCRIPTION_QUERY} WHERE s.sub_name = $1"), None, &[name.into()])
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.subscription: {e}"))
        .into_iter()
        .next()
        .map(|row| subscription_from(&row))
}

/// One subscription by id.
pub fn subscription_by_id(client: &SpiClient<'_>, id: u32) -> Option<Subscription> {
    client
        .select(&format!("{SUBSCRIPTION_QUERY} WHERE s.sub_id = $1"), None, &[pg_sys::Oid::from(id).into()])
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.subscription: {e}"))
        .into_iter()
        .next()
        .map(|row| subscription_from(&row))
}

/// The subscription-level sync status (`i`, `r`, ...), if the row exists.
pub fn sync_status(client: &SpiClient<'_>, sub_id: u32) -> Option<char> {
    client
        .select(
            "SELECT sync_status::text FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_nspname IS NULL AND sync_relname IS NULL",
            None,
            &[pg_sys::Oid::from(sub_id).into()],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.local_sync_status: {e}"))
        .into_iter()
        .next()
        .and_then(|row| row.get::<String>(1).unwrap())
        .and_then(|s| s.chars().next())
}
