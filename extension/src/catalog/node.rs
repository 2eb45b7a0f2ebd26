//! Nodes, their interfaces and the local node (`spock.node`,
//! `spock.node_interface`, `spock.local_node`).

use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use super::{oid, oid_u32, spi_failed};
use crate::errors::raise_hint;

/// The local node of this database.
#[derive(Clone, Debug)]
pub struct LocalNode {
    pub node_id: u32,
    pub node_name: String,
    pub if_id: u32,
    pub dsn: String,
}

/// The local node, if this database is a node.
pub fn local_node(client: &SpiClient<'_>) -> Option<LocalNode> {
    client
        .select(
            "SELECT n.node_id, n.node_name::text, i.if_id, i.if_dsn
               FROM spock.local_node l
               JOIN spock.node n ON n.node_id = l.node_id
               JOIN spock.node_interface i ON i.if_id = l.node_local_interface",
            None,
            &[],
        )
        .unwrap_or_else(spi_failed("read spock.local_node"))
        .next()
        .map(|row| LocalNode {
            node_id: oid_u32(row.get(1).unwrap()),
            node_name: row.get::<String>(2).unwrap().unwrap_or_default(),
            if_id: oid_u32(row.get(3).unwrap()),
            dsn: row.get::<String>(4).unwrap().unwrap_or_default(),
        })
}

/// The local node, or the spec's `55000` error naming `what`.
pub fn require_local_node(client: &SpiClient<'_>, what: &str) -> LocalNode {
    super::extension::require_current(client, what);
    local_node(client).unwrap_or_else(|| {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what} needs a spock node in this database"),
            "Create one with spock.node_create().",
        )
    })
}

/// A node this database knows (itself or a provider), with its effective
/// tiebreaker (`info.tiebreaker`, else the node id).
#[derive(Clone, Debug)]
pub struct KnownNode {
    pub name: String,
    pub id: u32,
    pub tiebreaker: i64,
}

/// The tiebreaker a node's `info` declares, if any: `Err` with the
/// offending value when it is not an integer.
pub fn declared_tiebreaker(info: &serde_json::Value) -> Result<Option<i64>, String> {
    let Some(value) = info.as_object().and_then(|o| o.get("tiebreaker")) else { return Ok(None) };
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| value.to_string())
}

/// Every node in the catalog.
pub fn known_nodes(client: &SpiClient<'_>) -> Vec<KnownNode> {
    client
        .select("SELECT node_name::text, node_id, info FROM spock.node", None, &[])
        .unwrap_or_else(spi_failed("read spock.node"))
        .map(|row| {
            let name: String = row.get(1).unwrap().unwrap_or_default();
            let id = oid_u32(row.get(2).unwrap());
            let info: Option<pgrx::JsonB> = row.get(3).unwrap();
            let tiebreaker =
                info.and_then(|j| declared_tiebreaker(&j.0).ok().flatten()).unwrap_or(i64::from(id));
            KnownNode { name, id, tiebreaker }
        })
        .collect()
}

/// The node id of a node known in this database's catalog.
pub fn node_id_by_name(client: &SpiClient<'_>, name: &str) -> Option<u32> {
    client
        .select("SELECT node_id FROM spock.node WHERE node_name = $1", None, &[name.into()])
        .unwrap_or_else(spi_failed("read spock.node"))
        .first()
        .get_one::<pg_sys::Oid>()
        .ok()
        .flatten()
        .map(|o| o.to_u32())
}

/// A node row's descriptive columns.
pub struct NodeDetails {
    pub location: Option<String>,
    pub country: Option<String>,
    pub info: Option<pgrx::JsonB>,
}

/// Inserts a node row.
pub fn insert_node(client: &mut SpiClient<'_>, id: u32, name: &str, details: NodeDetails) {
    client
        .update(
            "INSERT INTO spock.node (node_id, node_name, location, country, info) VALUES ($1, $2, $3, $4, $5)",
            None,
            &[oid(id).into(), name.into(), details.location.into(), details.country.into(), details.info.into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.node"));
}

/// The descriptive columns of a node.
pub fn node_details(client: &SpiClient<'_>, id: u32) -> NodeDetails {
    client
        .select("SELECT location, country, info FROM spock.node WHERE node_id = $1", None, &[oid(id).into()])
        .unwrap_or_else(spi_failed("read spock.node"))
        .next()
        .map(|r| NodeDetails {
            location: r.get(1).unwrap(),
            country: r.get(2).unwrap(),
            info: r.get(3).unwrap(),
        })
        .unwrap_or(NodeDetails { location: None, country: None, info: None })
}

/// Makes `node_id` with interface `if_id` the local node.
pub fn set_local_node(client: &mut SpiClient<'_>, node_id: u32, if_id: u32) {
    client
        .update(
            "INSERT INTO spock.local_node (node_id, node_local_interface) VALUES ($1, $2)",
            None,
            &[oid(node_id).into(), oid(if_id).into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.local_node"));
}

/// Forgets which node is local.
pub fn clear_local_node(client: &mut SpiClient<'_>) {
    client
        .update("DELETE FROM spock.local_node", None, &[])
        .unwrap_or_else(spi_failed("delete the local node"));
}

/// Deletes a node with its sets, their memberships and its interfaces.
pub fn delete_node(client: &mut SpiClient<'_>, node_id: u32) {
    for sql in [
        "DELETE FROM spock.replication_set_table WHERE set_id IN (SELECT set_id FROM spock.replication_set WHERE set_nodeid = $1)",
        "DELETE FROM spock.replication_set WHERE set_nodeid = $1",
        "DELETE FROM spock.node_interface WHERE if_nodeid = $1",
        "DELETE FROM spock.node WHERE node_id = $1",
    ] {
        client.update(sql, None, &[oid(node_id).into()]).unwrap_or_else(spi_failed("drop a node"));
    }
}

/// Adds an interface (a named DSN) to a node and returns its id.
pub fn insert_interface(client: &mut SpiClient<'_>, node_id: u32, if_name: &str, dsn: &str) -> u32 {
    let if_id = client
        .select("SELECT nextval('spock.interface_id_generator')::int", None, &[])
        .unwrap_or_else(spi_failed("allocate an interface id"))
        .first()
        .get_one::<i32>()
        .ok()
        .flatten()
        .unwrap_or_else(|| pgrx::error!("spock cannot allocate an interface id")) as u32;
    client
        .update(
            "INSERT INTO spock.node_interface (if_id, if_name, if_nodeid, if_dsn) VALUES ($1, $2, $3, $4)",
            None,
            &[oid(if_id).into(), if_name.into(), oid(node_id).into(), dsn.into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.node_interface"));
    if_id
}

/// The interface of a node whose `column` (`if_name` or `if_dsn`) is `value`.
fn interface_where(client: &SpiClient<'_>, node_id: u32, column: &str, value: &str) -> Option<u32> {
    client
        .select(
            &format!("SELECT if_id FROM spock.node_interface WHERE if_nodeid = $1 AND {column} = $2"),
            None,
            &[oid(node_id).into(), value.into()],
        )
        .unwrap_or_else(spi_failed("read spock.node_interface"))
        .first()
        .get_one::<pg_sys::Oid>()
        .ok()
        .flatten()
        .map(|o| o.to_u32())
}

/// The interface of a node by name.
pub fn interface_by_name(client: &SpiClient<'_>, node_id: u32, if_name: &str) -> Option<u32> {
    interface_where(client, node_id, "if_name", if_name)
}

/// The interface of a node with exactly this DSN.
pub fn interface_by_dsn(client: &SpiClient<'_>, node_id: u32, dsn: &str) -> Option<u32> {
    interface_where(client, node_id, "if_dsn", dsn)
}

/// Whether a subscription or the local node uses an interface.
pub fn interface_in_use(client: &SpiClient<'_>, if_id: u32) -> bool {
    !client
        .select(
            "SELECT 1 FROM spock.subscription WHERE sub_origin_if = $1 OR sub_target_if = $1
             UNION ALL SELECT 1 FROM spock.local_node WHERE node_local_interface = $1",
            None,
            &[oid(if_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .is_empty()
}

pub fn delete_interface(client: &mut SpiClient<'_>, if_id: u32) {
    client
        .update("DELETE FROM spock.node_interface WHERE if_id = $1", None, &[oid(if_id).into()])
        .unwrap_or_else(spi_failed("delete from spock.node_interface"));
}

/// Names of the subscriptions from or to a node.
pub fn subscriptions_of_node(client: &SpiClient<'_>, node_id: u32) -> Vec<String> {
    client
        .select(
            "SELECT sub_name::text FROM spock.subscription WHERE sub_origin = $1 OR sub_target = $1 ORDER BY 1",
            None,
            &[oid(node_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// Whether anything still refers to a node (a subscription, or it is local).
pub fn node_in_use(client: &SpiClient<'_>, node_id: u32) -> bool {
    !client
        .select(
            "SELECT 1 FROM spock.subscription WHERE sub_origin = $1
             UNION ALL SELECT 1 FROM spock.local_node WHERE node_id = $1",
            None,
            &[oid(node_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .is_empty()
}
