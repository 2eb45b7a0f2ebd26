//! Nodes and interfaces (sql-api.md §4.2): `node_create`, `node_drop`,
//! `node_add_interface`, `node_drop_interface`.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use spock_core::naming;

use super::{name_arg, required};
use crate::catalog;
use crate::errors::{raise, raise_hint, require_superuser};
use crate::libpq;
use crate::shmem;

/// The built-in replication sets every node gets: (name, insert, update, delete, truncate).
pub const BUILTIN_SETS: [(&str, bool, bool, bool, bool); 3] = [
    ("default", true, true, true, true),
    ("default_insert_only", true, false, false, true),
    ("ddl_sql", true, false, false, false),
];

fn check_dsn(dsn: &str) {
    if let Err(e) = libpq::parse_dsn(dsn) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            // The DSN goes last: masking a password value runs to the end of it.
            format!("invalid connection string ({e}): {dsn}"),
        );
    }
}

/// The tiebreaker a node's `info` declares, if any; errors for a non-integer.
fn tiebreaker_of(info: &serde_json::Value) -> Option<i64> {
    let obj = info.as_object().unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("info must be a JSON object, not {info}"),
        )
    });
    let value = obj.get("tiebreaker")?;
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    Some(parsed.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("info.tiebreaker must be an integer, not {value}"),
        )
    }))
}

/// The node ids and effective tiebreakers of every node in the catalog.
fn known_tiebreakers(client: &SpiClient<'_>) -> Vec<(String, u32, i64)> {
    client
        .select("SELECT node_name::text, node_id, info FROM spock.node", None, &[])
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.node: {e}"))
        .into_iter()
        .map(|row| {
            let name: String = row.get(1).unwrap().unwrap_or_default();
            let id: u32 = row.get::<pg_sys::Oid>(2).unwrap().map(|o| o.to_u32()).unwrap_or(0);
            let info: Option<pgrx::JsonB> = row.get(3).unwrap();
            let tb = info
                .and_then(|j| j.0.as_object().and_then(|o| o.get("tiebreaker").cloned()))
                .and_then(|v| match v {
                    serde_json::Value::Number(n) => n.as_i64(),
                    serde_json::Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .unwrap_or(i64::from(id));
            (name, id, tb)
        })
        .collect()
}

/// A set id for a set of a node: a hash of the node id and the set name,
/// moved on when another set already has it.
pub fn new_set_id(client: &SpiClient<'_>, node_id: u32, set_name: &str) -> u32 {
    let mut salt = 0u32;
    loop {
        let id = 1 + naming::fnv1a32(format!("{node_id}/{set_name}/{salt}").as_bytes()) % (u32::MAX - 1);
        let taken = client
            .select(
                "SELECT 1 FROM spock.replication_set WHERE set_id = $1",
                None,
                &[pg_sys::Oid::from(id).into()],
            )
            .map(|t| !t.is_empty())
            .unwrap_or(false);
        if !taken {
            return id;
        }
        salt += 1;
    }
}

/// Warns when the server has `output_plugin_libraries` and it does not list
/// spock's output plugin (patches.md §7).
pub fn check_output_plugin_libraries() {
    // SAFETY: reads a setting by name; NULL when the server does not have it.
    let value = unsafe { pg_sys::GetConfigOption(c"output_plugin_libraries".as_ptr(), true, false) };
    if value.is_null() {
        return;
    }
    let list = unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned();
    if !list.split(',').any(|p| p.trim() == "spock_output") {
        pgrx::ereport!(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "output_plugin_libraries ({list}) does not list spock_output; other nodes cannot subscribe to this one"
            ),
            "Add spock_output to output_plugin_libraries (keep pgoutput and test_decoding) and reload."
        );
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_create(node_name name, dsn text, location text DEFAULT NULL,
    country text DEFAULT NULL, info jsonb DEFAULT NULL) RETURNS oid
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'node_create_wrapper';
"#)]
fn node_create(
    node_name: Option<&CStr>,
    dsn: Option<&str>,
    location: Option<&str>,
    country: Option<&str>,
    info: Option<pgrx::JsonB>,
) -> pg_sys::Oid {
    require_superuser("spock.node_create");
    let node_name = required(name_arg(node_name), "node_name", "spock.node_create");
    let dsn = required(dsn, "dsn", "spock.node_create");
    if node_name.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_NAME, "node_name must not be empty");
    }
    check_dsn(dsn);
    let tiebreaker = info.as_ref().and_then(|j| tiebreaker_of(&j.0));
    let node_id = naming::node_id(&node_name);

    Spi::connect_mut(|client| {
        if let Some(local) = catalog::local_node(client) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("this database is already node \"{}\"", local.node_name),
            );
        }
        for (name, id, tb) in known_tiebreakers(client) {
            if name == node_name {
                raise(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                    format!("a node named \"{node_name}\" is already known"),
                );
            }
            if id == node_id {
                raise_hint(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                    format!(
                        "node name \"{node_name}\" gives node id {node_id}, which node \"{name}\" already has"
                    ),
                    "Choose another node name.",
                );
            }
            if tb == tiebreaker.unwrap_or(i64::from(node_id)) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "node \"{name}\" already has tiebreaker {tb}; tiebreakers must differ between nodes"
                    ),
                );
            }
        }
        let oid = |v: u32| pg_sys::Oid::from(v);
        client
            .update(
                "INSERT INTO spock.node (node_id, node_name, location, country, info) VALUES ($1, $2, $3, $4, $5)",
                None,
                &[oid(node_id).into(), node_name.as_str().into(), location.into(), country.into(), info.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot insert the node: {e}"));
        let if_id = insert_interface(client, node_id, &node_name, dsn);
        client
            .update(
                "INSERT INTO spock.local_node (node_id, node_local_interface) VALUES ($1, $2)",
                None,
                &[oid(node_id).into(), oid(if_id).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot insert the local node: {e}"));
        for (set, ins, upd, del, trunc) in BUILTIN_SETS {
            let set_id = new_set_id(client, node_id, set);
            client
                .update(
                    "INSERT INTO spock.replication_set (set_id, set_nodeid, set_name, replicate_insert,
                        replicate_update, replicate_delete, replicate_truncate) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    None,
                    &[oid(set_id).into(), oid(node_id).into(), set.into(), ins.into(), upd.into(), del.into(), trunc.into()],
                )
                .unwrap_or_else(|e| pgrx::error!("cannot insert replication set {set}: {e}"));
        }
    });
    check_output_plugin_libraries();
    shmem::wake_after_commit();
    pg_sys::Oid::from(node_id)
}

/// The node id of a node known in this database's catalog.
pub fn node_id_by_name(client: &SpiClient<'_>, name: &str) -> Option<u32> {
    client
        .select("SELECT node_id FROM spock.node WHERE node_name = $1", None, &[name.into()])
        .ok()
        .and_then(|t| t.first().get_one::<pg_sys::Oid>().ok().flatten())
        .map(|o| o.to_u32())
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_drop(node_name name, ifexists boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'node_drop_wrapper';
"#)]
fn node_drop(node_name: &CStr, ifexists: bool) -> bool {
    require_superuser("spock.node_drop");
    let node_name = node_name.to_string_lossy().into_owned();
    let dropped = Spi::connect_mut(|client| {
        let Some(node_id) = node_id_by_name(client, &node_name) else {
            if ifexists {
                return false;
            }
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"));
        };
        let oid = pg_sys::Oid::from(node_id);
        let subs: Vec<String> = client
            .select(
                "SELECT sub_name::text FROM spock.subscription WHERE sub_origin = $1 OR sub_target = $1 ORDER BY 1",
                None,
                &[oid.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot read spock.subscription: {e}"))
            .into_iter()
            .filter_map(|r| r.get::<String>(1).unwrap())
            .collect();
        if !subs.is_empty() {
            raise_hint(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("node \"{node_name}\" is used by subscription(s) {}", subs.join(", ")),
                "Drop those subscriptions first with spock.sub_drop().",
            );
        }
        let is_local = catalog::local_node(client).is_some_and(|l| l.node_id == node_id);
        if is_local {
            drop_local_slots(client);
            client
                .update("DELETE FROM spock.local_node", None, &[])
                .unwrap_or_else(|e| pgrx::error!("cannot delete the local node: {e}"));
        }
        for sql in [
            "DELETE FROM spock.replication_set_table WHERE set_id IN (SELECT set_id FROM spock.replication_set WHERE set_nodeid = $1)",
            "DELETE FROM spock.replication_set WHERE set_nodeid = $1",
            "DELETE FROM spock.node_interface WHERE if_nodeid = $1",
            "DELETE FROM spock.node WHERE node_id = $1",
        ] {
            client
                .update(sql, None, &[oid.into()])
                .unwrap_or_else(|e| pgrx::error!("cannot drop the node: {e}"));
        }
        true
    });
    if dropped {
        shmem::wake_after_commit();
    }
    dropped
}

/// Drops every spock slot of this database (the local node is going away).
fn drop_local_slots(client: &mut SpiClient<'_>) {
    let slots = client
        .select(
            "SELECT slot_name::text, active FROM pg_replication_slots
              WHERE database = current_database() AND plugin = 'spock_output' AND slot_name LIKE 'spk\\_%'",
            None,
            &[],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot list replication slots: {e}"));
    let slots: Vec<(String, bool)> = slots
        .into_iter()
        .map(|r| (r.get(1).unwrap().unwrap_or_default(), r.get(2).unwrap().unwrap_or(false)))
        .collect();
    if let Some((name, _)) = slots.iter().find(|(_, active)| *active) {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("replication slot \"{name}\" is in use"),
            "Drop the subscriptions that other nodes have on this node first.",
        );
    }
    for (name, _) in slots {
        client
            .update("SELECT pg_drop_replication_slot($1)", None, &[name.as_str().into()])
            .unwrap_or_else(|e| pgrx::error!("cannot drop replication slot {name}: {e}"));
    }
}

/// Adds an interface (a named DSN) to a node and returns its id.
fn insert_interface(client: &mut SpiClient<'_>, node_id: u32, if_name: &str, dsn: &str) -> u32 {
    let if_id: i32 = client
        .select("SELECT nextval('spock.interface_id_generator')::int", None, &[])
        .ok()
        .and_then(|t| t.first().get_one::<i32>().ok().flatten())
        .unwrap_or_else(|| pgrx::error!("cannot allocate an interface id"));
    let if_id = if_id as u32;
    client
        .update(
            "INSERT INTO spock.node_interface (if_id, if_name, if_nodeid, if_dsn) VALUES ($1, $2, $3, $4)",
            None,
            &[pg_sys::Oid::from(if_id).into(), if_name.into(), pg_sys::Oid::from(node_id).into(), dsn.into()],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot insert the interface: {e}"));
    if_id
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_add_interface(node_name name, interface_name name, dsn text) RETURNS oid
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'node_add_interface_wrapper';
"#)]
fn node_add_interface(node_name: &CStr, interface_name: &CStr, dsn: &str) -> pg_sys::Oid {
    require_superuser("spock.node_add_interface");
    let node_name = node_name.to_string_lossy().into_owned();
    let if_name = interface_name.to_string_lossy().into_owned();
    check_dsn(dsn);
    Spi::connect_mut(|client| {
        let node_id = node_id_by_name(client, &node_name).unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"))
        });
        let exists = client
            .select(
                "SELECT 1 FROM spock.node_interface WHERE if_nodeid = $1 AND if_name = $2",
                None,
                &[pg_sys::Oid::from(node_id).into(), if_name.as_str().into()],
            )
            .map(|t| !t.is_empty())
            .unwrap_or(false);
        if exists {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("node \"{node_name}\" already has an interface named \"{if_name}\""),
            );
        }
        pg_sys::Oid::from(insert_interface(client, node_id, &if_name, dsn))
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_drop_interface(node_name name, interface_name name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'node_drop_interface_wrapper';
"#)]
fn node_drop_interface(node_name: &CStr, interface_name: &CStr) -> bool {
    require_superuser("spock.node_drop_interface");
    let node_name = node_name.to_string_lossy().into_owned();
    let if_name = interface_name.to_string_lossy().into_owned();
    Spi::connect_mut(|client| {
        let node_id = node_id_by_name(client, &node_name).unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"))
        });
        let if_id = client
            .select(
                "SELECT if_id FROM spock.node_interface WHERE if_nodeid = $1 AND if_name = $2",
                None,
                &[pg_sys::Oid::from(node_id).into(), if_name.as_str().into()],
            )
            .ok()
            .and_then(|t| t.first().get_one::<pg_sys::Oid>().ok().flatten())
            .unwrap_or_else(|| {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                    format!("node \"{node_name}\" has no interface named \"{if_name}\""),
                )
            });
        let used = client
            .select(
                "SELECT 1 FROM spock.subscription WHERE sub_origin_if = $1 OR sub_target_if = $1
                 UNION ALL SELECT 1 FROM spock.local_node WHERE node_local_interface = $1",
                None,
                &[if_id.into()],
            )
            .map(|t| !t.is_empty())
            .unwrap_or(false);
        if used {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "interface \"{if_name}\" of node \"{node_name}\" is in use by a subscription or as the local node's own interface"
                ),
            );
        }
        client
            .update("DELETE FROM spock.node_interface WHERE if_id = $1", None, &[if_id.into()])
            .unwrap_or_else(|e| pgrx::error!("cannot drop the interface: {e}"));
        true
    })
}
