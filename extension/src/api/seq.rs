//! Sequences in replication sets (sql-api.md §4.9, behaviour.md §11): a
//! sequence's value reaches subscribers only when it is pushed, by
//! `sync_seq` or `repset_add_seq(..., synchronize_data := true)`, as a
//! `spock.queue` message carrying the value plus the sequence's cache
//! margin. A subscriber moves its sequence forward to that value, never
//! back.

use std::ffi::CStr;

use pgrx::prelude::*;
use spock_core::ddl::MessageType;
use spock_core::protocol::QueueRow;

use super::relation_names;
use super::repset::require_set;
use crate::catalog::node::{self, LocalNode};
use crate::catalog::{self, queue, repset};
use crate::errors::{raise, require_superuser};
use crate::hooks::ddl::current_role;

fn qualified(relid: pg_sys::Oid) -> String {
    let (schema, name) = relation_names(relid);
    format!("{}.{}", pgrx::spi::quote_identifier(&schema), pgrx::spi::quote_identifier(&name))
}

/// Refuses what cannot join a set as a sequence.
fn check_sequence(relid: pg_sys::Oid) {
    // SAFETY: syscache reads of the relation's kind and persistence.
    let (kind, persistence) =
        unsafe { (pg_sys::get_rel_relkind(relid) as u8, pg_sys::get_rel_persistence(relid) as u8) };
    if kind != pg_sys::RELKIND_SEQUENCE {
        raise(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("{} is not a sequence", qualified(relid)));
    }
    if persistence != pg_sys::RELPERSISTENCE_PERMANENT {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "{} is a temporary or unlogged sequence; only permanent sequences are replicated",
                qualified(relid)
            ),
        );
    }
}

/// Queues the sequence's value plus its cache margin for the subscribers
/// of its sets, in the caller's transaction; returns the value pushed.
fn push(client: &mut pgrx::spi::SpiClient<'_>, node: &LocalNode, seqoid: pg_sys::Oid) -> i64 {
    let sets = repset::seq_set_names(client, node.node_id, seqoid);
    if sets.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "sequence {} is in no replication set; add it with spock.repset_add_seq() first",
                qualified(seqoid)
            ),
        );
    }
    let current: i64 = client
        .select(&format!("SELECT last_value FROM {}", qualified(seqoid)), None, &[])
        .unwrap_or_else(catalog::spi_failed("read a sequence"))
        .next()
        .and_then(|r| r.get::<i64>(1).unwrap())
        .unwrap_or(0);
    let value = current.saturating_add(repset::seq_cache_size(client, seqoid));
    let (schema, name) = relation_names(seqoid);
    let message = serde_json::json!({
        "schema_name": schema,
        "sequence_name": name,
        "last_value": value.to_string(),
    });
    let row = QueueRow {
        queued_at: 0,
        role: current_role(),
        replication_sets: Some(sets),
        message_type: MessageType::Sequence.code(),
        message: message.to_string(),
    };
    queue::insert(client, &row, None);
    repset::set_seq_pushed(client, seqoid, value);
    value
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_add_seq(set_name name, relation regclass, synchronize_data boolean DEFAULT false)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_seq_wrapper';
"#)]
fn repset_add_seq(set_name: &CStr, relation: pg_sys::Oid, synchronize_data: bool) -> bool {
    require_superuser("spock.repset_add_seq");
    let set_name = set_name.to_string_lossy().into_owned();
    check_sequence(relation);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_add_seq");
        let set = require_set(client, &node, &set_name);
        if repset::has_seq(client, &set, relation) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("{} is already in replication set \"{set_name}\"", qualified(relation)),
            );
        }
        repset::add_seq(client, &set, relation);
        if synchronize_data {
            push(client, &node, relation);
        }
        true
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_add_all_seqs(set_name name, schema_names text[], synchronize_data boolean DEFAULT false)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_all_seqs_wrapper';
"#)]
fn repset_add_all_seqs(set_name: &CStr, schema_names: Vec<String>, synchronize_data: bool) -> bool {
    require_superuser("spock.repset_add_all_seqs");
    let set_name = set_name.to_string_lossy().into_owned();
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_add_all_seqs");
        let set = require_set(client, &node, &set_name);
        let mut seqs = Vec::new();
        for schema in &schema_names {
            let found = client
                .select(
                    "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1",
                    None,
                    &[schema.as_str().into()],
                )
                .unwrap_or_else(catalog::spi_failed("read pg_namespace"))
                .next()
                .and_then(|r| r.get::<pg_sys::Oid>(1).unwrap());
            let Some(nsp) = found else {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                    format!("schema \"{schema}\" does not exist"),
                )
            };
            seqs.extend(
                client
                    .select(
                        "SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1 AND relkind = 'S'
                            AND relpersistence = 'p' ORDER BY relname",
                        None,
                        &[nsp.into()],
                    )
                    .unwrap_or_else(catalog::spi_failed("read pg_class"))
                    .filter_map(|r| r.get::<pg_sys::Oid>(1).unwrap()),
            );
        }
        for seq in seqs {
            if repset::has_seq(client, &set, seq) {
                continue;
            }
            repset::add_seq(client, &set, seq);
            if synchronize_data {
                push(client, &node, seq);
            }
        }
        true
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_remove_seq(set_name name, relation regclass)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_remove_seq_wrapper';
"#)]
fn repset_remove_seq(set_name: &CStr, relation: pg_sys::Oid) -> bool {
    require_superuser("spock.repset_remove_seq");
    let set_name = set_name.to_string_lossy().into_owned();
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_remove_seq");
        let set = require_set(client, &node, &set_name);
        if !repset::has_seq(client, &set, relation) {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{} is not in replication set \"{set_name}\"", qualified(relation)),
            );
        }
        repset::remove_seq(client, &set, relation);
        true
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sync_seq(relation regclass)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_seq_wrapper';
"#)]
fn sync_seq(relation: pg_sys::Oid) -> bool {
    require_superuser("spock.sync_seq");
    check_sequence(relation);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.sync_seq");
        push(client, &node, relation);
        true
    })
}
