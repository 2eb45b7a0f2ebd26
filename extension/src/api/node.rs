//! Nodes and interfaces (sql-api.md §4.2): `node_create`, `node_drop`,
//! `node_add_interface`, `node_drop_interface`.

use std::ffi::CStr;

use pgrx::prelude::*;
use spock_core::naming;

use super::{before_commit, name_arg, required};
use crate::catalog::node::{self, NodeDetails};
use crate::catalog::{self, repset};
use crate::errors::{raise, raise_hint, require_superuser};
use crate::remote::conn::parse_conninfo;
use crate::workers::registry;

fn check_dsn(dsn: &str) {
    if let Err(e) = parse_conninfo(dsn) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            // The DSN goes last: masking a password value runs to the end of it.
            format!("invalid connection string ({e}): {dsn}"),
        );
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
    // SAFETY: a NUL-terminated string owned by the GUC machinery.
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
    let tiebreaker = match info.as_ref().map(|j| (j.0.is_object(), node::declared_tiebreaker(&j.0))) {
        None => None,
        Some((false, _)) => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "info must be a JSON object, not {}",
                info.as_ref().map(|j| j.0.to_string()).unwrap_or_default()
            ),
        ),
        Some((true, Ok(t))) => t,
        Some((true, Err(value))) => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("info.tiebreaker must be an integer, not {value}"),
        ),
    };
    let node_id = naming::node_id(&node_name);

    Spi::connect_mut(|client| {
        catalog::extension::require_current(client, "spock.node_create");
        if let Some(local) = node::local_node(client) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("this database is already node \"{}\"", local.node_name),
            );
        }
        for known in node::known_nodes(client) {
            if known.name == node_name {
                raise(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                    format!("a node named \"{node_name}\" is already known"),
                );
            }
            if known.id == node_id {
                raise_hint(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                    format!(
                        "node name \"{node_name}\" gives node id {node_id}, which node \"{}\" already has",
                        known.name
                    ),
                    "Choose another node name.",
                );
            }
            if known.tiebreaker == tiebreaker.unwrap_or(i64::from(node_id)) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "node \"{}\" already has tiebreaker {}; tiebreakers must differ between nodes",
                        known.name, known.tiebreaker
                    ),
                );
            }
        }
        node::insert_node(
            client,
            node_id,
            &node_name,
            NodeDetails {
                location: location.map(str::to_string),
                country: country.map(str::to_string),
                info,
            },
        );
        let if_id = node::insert_interface(client, node_id, &node_name, dsn);
        node::set_local_node(client, node_id, if_id);
        for (set, ins, upd, del, trunc) in repset::BUILTIN_SETS {
            repset::insert_set(client, node_id, set, [ins, upd, del, trunc]);
        }
    });
    check_output_plugin_libraries();
    registry::wake_after_commit();
    pg_sys::Oid::from(node_id)
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_drop(node_name name, ifexists boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'node_drop_wrapper';
"#)]
fn node_drop(node_name: &CStr, ifexists: bool) -> bool {
    require_superuser("spock.node_drop");
    let node_name = node_name.to_string_lossy().into_owned();
    let dropped = Spi::connect_mut(|client| {
        let Some(node_id) = node::node_id_by_name(client, &node_name) else {
            if ifexists {
                return false;
            }
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"));
        };
        let subs = node::subscriptions_of_node(client, node_id);
        if !subs.is_empty() {
            raise_hint(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("node \"{node_name}\" is used by subscription(s) {}", subs.join(", ")),
                "Drop those subscriptions first with spock.sub_drop().",
            );
        }
        if node::local_node(client).is_some_and(|l| l.node_id == node_id) {
            drop_local_slots(client);
            drop_forwarding_origins(client);
            node::clear_local_node(client);
        }
        node::delete_node(client, node_id);
        true
    });
    if dropped {
        registry::wake_after_commit();
    }
    dropped
}

/// Drops this database's forwarding origins (the local node is going away)
/// when the transaction commits: a dropped origin forgets its progress at
/// once, which a rollback could not undo.
fn drop_forwarding_origins(client: &pgrx::spi::SpiClient<'_>) {
    let names = crate::catalog::origin::forwarding_origins(client);
    if names.is_empty() {
        return;
    }
    before_commit(move || {
        if Spi::connect(node::local_node).is_some() {
            return;
        }
        for name in &names {
            crate::catalog::origin::drop_if_exists(name);
        }
    });
}

/// Drops every spock slot of this database (the local node is going away).
/// A dropped slot cannot come back, so the slots are dropped when the
/// transaction commits, just before the commit is final, and only if the
/// node is still gone then; a slot in use is refused at once.
fn drop_local_slots(client: &mut pgrx::spi::SpiClient<'_>) {
    let slots: Vec<(String, bool)> = client
        .select(
            "SELECT slot_name::text, active FROM pg_catalog.pg_replication_slots
              WHERE database = current_database() AND plugin = 'spock_output' AND slot_name LIKE 'spk\\_%'",
            None,
            &[],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot list replication slots: {e}"))
        .map(|r| (r.get(1).unwrap().unwrap_or_default(), r.get(2).unwrap().unwrap_or(false)))
        .collect();
    if let Some((name, _)) = slots.iter().find(|(_, active)| *active) {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            format!("replication slot \"{name}\" is in use"),
            "Drop the subscriptions that other nodes have on this node first.",
        );
    }
    if slots.is_empty() {
        return;
    }
    before_commit(move || {
        if Spi::connect(node::local_node).is_some() {
            return;
        }
        for (name, _) in slots {
            let c = std::ffi::CString::new(name).expect("slot names have no NUL byte");
            // SAFETY: drops a logical slot of this database by name; an
            // error (the slot became active) aborts the commit.
            unsafe { pg_sys::ReplicationSlotDrop(c.as_ptr(), true) };
        }
    });
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
        let node_id = node::node_id_by_name(client, &node_name).unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"))
        });
        if node::interface_by_name(client, node_id, &if_name).is_some() {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("node \"{node_name}\" already has an interface named \"{if_name}\""),
            );
        }
        pg_sys::Oid::from(node::insert_interface(client, node_id, &if_name, dsn))
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
        let node_id = node::node_id_by_name(client, &node_name).unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{node_name}\" does not exist"))
        });
        let if_id = node::interface_by_name(client, node_id, &if_name).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("node \"{node_name}\" has no interface named \"{if_name}\""),
            )
        });
        if node::interface_in_use(client, if_id) {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "interface \"{if_name}\" of node \"{node_name}\" is in use by a subscription or as the local node's own interface"
                ),
            );
        }
        node::delete_interface(client, if_id);
        true
    })
}
