//! Replication sets (sql-api.md §4.3): create, alter, drop, and table
//! membership, with the checks of which tables may join a set
//! (behaviour.md §4.2). The catalog changes (and the invalidations that
//! make walsenders see them in stream order) are `catalog::repset`'s.

use std::ffi::CStr;

use pgrx::prelude::*;

use spock_core::ddl::MessageType;
use spock_core::protocol::QueueRow;

use super::{name_arg, relation_names, required};
use crate::catalog::node::{self, LocalNode};
use crate::catalog::queue;
use crate::catalog::repset::{self, MemberFilter, Set};
use crate::errors::{raise, raise_hint, require_superuser};
use crate::filters;

pub(super) fn require_set(client: &pgrx::spi::SpiClient<'_>, node: &LocalNode, name: &str) -> Set {
    repset::find_set(client, node.node_id, name).unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("replication set \"{name}\" does not exist"))
    })
}

/// Facts about a table that decide whether it can join a set.
struct TableFacts {
    reloid: pg_sys::Oid,
    qualified_name: String,
    relkind: u8,
    persistence: u8,
    schema: String,
    has_identity_index: bool,
    is_partitioned: bool,
}

fn table_facts(reloid: pg_sys::Oid) -> TableFacts {
    // SAFETY: opens and closes the relation under a lock the caller chose.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(reloid);
        if rel.is_null() {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", reloid.to_u32()),
            );
        }
        let form = (*rel).rd_rel;
        let nsp = pg_sys::get_namespace_name((*form).relnamespace);
        let schema =
            if nsp.is_null() { String::new() } else { CStr::from_ptr(nsp).to_string_lossy().into_owned() };
        let relname = CStr::from_ptr((*form).relname.data.as_ptr()).to_string_lossy().into_owned();
        let has_identity_index = pg_sys::RelationGetReplicaIndex(rel) != pg_sys::InvalidOid;
        let facts = TableFacts {
            reloid,
            qualified_name: format!(
                "{}.{}",
                pgrx::spi::quote_identifier(&schema),
                pgrx::spi::quote_identifier(&relname)
            ),
            relkind: (*form).relkind as u8,
            persistence: (*form).relpersistence as u8,
            is_partitioned: (*form).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE,
            schema,
            has_identity_index,
        };
        pg_sys::RelationClose(rel);
        facts
    }
}

/// Why a table cannot join a set (SQLSTATE and message), if it cannot.
fn disqualification(
    facts: &TableFacts,
    set_name: &str,
    set: &Set,
) -> Option<(PgSqlErrorCode, String, Option<String>)> {
    let name = &facts.qualified_name;
    if facts.relkind != pg_sys::RELKIND_RELATION && facts.relkind != pg_sys::RELKIND_PARTITIONED_TABLE {
        return Some((
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{name} is not a table; only tables and partitioned tables can join a replication set"),
            None,
        ));
    }
    if facts.persistence != pg_sys::RELPERSISTENCE_PERMANENT {
        return Some((
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{name} is a temporary or unlogged table; only permanent tables are replicated"),
            None,
        ));
    }
    // `spock` also has a built-in reserved row; this holds even if that row
    // was removed behind the guard's back.
    if facts.schema.starts_with("pg_") || facts.schema == "information_schema" || facts.schema == "spock" {
        return Some((
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{name} is in the reserved schema {}; its tables cannot be replicated", facts.schema),
            None,
        ));
    }
    if let Some(reserved) = crate::catalog::reserved::blocking(facts.reloid) {
        return Some((
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("{name} belongs to the reserved {reserved}; its tables cannot be replicated"),
            Some("See spock.reserved_object; spock.reserved_object_add(..., p_block_in_repset := false) lifts the block for an object you reserved.".into()),
        ));
    }
    if (set.update || set.delete) && !facts.has_identity_index && !facts.is_partitioned {
        return Some((
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{name} has no replica identity index, which replication set \"{set_name}\" needs because it replicates UPDATE or DELETE"),
            Some("Add a primary key or set REPLICA IDENTITY USING INDEX, or use an insert-only set such as default_insert_only.".into()),
        ));
    }
    None
}

/// Raises the error of [`disqualification`], if there is one.
fn refuse_if_disqualified(facts: &TableFacts, set_name: &str, set: &Set) {
    if let Some((code, message, hint)) = disqualification(facts, set_name, set) {
        match hint {
            Some(hint) => raise_hint(code, message, hint),
            None => raise(code, message),
        }
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_create(set_name name, replicate_insert boolean DEFAULT true,
    replicate_update boolean DEFAULT true, replicate_delete boolean DEFAULT true,
    replicate_truncate boolean DEFAULT true) RETURNS oid
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_create_wrapper';
"#)]
fn repset_create(
    set_name: &CStr,
    replicate_insert: bool,
    replicate_update: bool,
    replicate_delete: bool,
    replicate_truncate: bool,
) -> pg_sys::Oid {
    require_superuser("spock.repset_create");
    let set_name = set_name.to_string_lossy().into_owned();
    if set_name.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_NAME, "set_name must not be empty");
    }
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_create");
        if repset::find_set(client, node.node_id, &set_name).is_some() {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("replication set \"{set_name}\" already exists"),
            );
        }
        repset::insert_set(
            client,
            node.node_id,
            &set_name,
            [replicate_insert, replicate_update, replicate_delete, replicate_truncate],
        )
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_alter(set_name name, replicate_insert boolean DEFAULT NULL,
    replicate_update boolean DEFAULT NULL, replicate_delete boolean DEFAULT NULL,
    replicate_truncate boolean DEFAULT NULL) RETURNS oid
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_alter_wrapper';
"#)]
fn repset_alter(
    set_name: Option<&CStr>,
    replicate_insert: Option<bool>,
    replicate_update: Option<bool>,
    replicate_delete: Option<bool>,
    replicate_truncate: Option<bool>,
) -> pg_sys::Oid {
    require_superuser("spock.repset_alter");
    let set_name = required(name_arg(set_name), "set_name", "spock.repset_alter");
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_alter");
        let set = require_set(client, &node, &set_name);
        let gains_update = replicate_update == Some(true) && !set.update;
        let gains_delete = replicate_delete == Some(true) && !set.delete;
        if gains_update || gains_delete {
            for reloid in repset::members(client, set.id) {
                let facts = table_facts(reloid);
                if !facts.has_identity_index && !facts.is_partitioned {
                    raise_hint(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!(
                            "{} has no replica identity index, so replication set \"{set_name}\" cannot replicate UPDATE or DELETE",
                            facts.qualified_name
                        ),
                        "Add a primary key or set REPLICA IDENTITY USING INDEX first, or remove the table from the set.",
                    );
                }
            }
        }
        repset::alter_set(
            client,
            &set,
            [replicate_insert, replicate_update, replicate_delete, replicate_truncate],
        );
        set.id
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_drop(set_name name, ifexists boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_drop_wrapper';
"#)]
fn repset_drop(set_name: &CStr, ifexists: bool) -> bool {
    require_superuser("spock.repset_drop");
    let set_name = set_name.to_string_lossy().into_owned();
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_drop");
        let Some(set) = repset::find_set(client, node.node_id, &set_name) else {
            if ifexists {
                return false;
            }
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("replication set \"{set_name}\" does not exist"),
            );
        };
        repset::delete_set(client, &set);
        true
    })
}

/// The table and, for a partitioned table when asked, all its partitions.
fn with_partitions(reloid: pg_sys::Oid, include_partitions: bool) -> Vec<pg_sys::Oid> {
    if !include_partitions {
        return vec![reloid];
    }
    Spi::connect(|client| {
        client
            .select(
                "WITH RECURSIVE tree(relid) AS (
                     SELECT $1::oid
                     UNION ALL
                     SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
                 SELECT relid FROM tree",
                None,
                &[reloid.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot list the partitions: {e}"))
            .filter_map(|row| row.get::<pg_sys::Oid>(1).ok().flatten())
            .collect()
    })
}

fn lock_table(reloid: pg_sys::Oid) {
    // SAFETY: takes a table lock for the rest of the transaction.
    unsafe { pg_sys::LockRelationOid(reloid, pg_sys::ShareRowExclusiveLock as i32) };
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_add_table(set_name name, relation regclass, synchronize_data boolean DEFAULT false,
    columns text[] DEFAULT NULL, row_filter text DEFAULT NULL, include_partitions boolean DEFAULT true)
    RETURNS boolean VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_table_wrapper';
"#)]
fn repset_add_table(
    set_name: Option<&CStr>,
    relation: Option<pg_sys::Oid>,
    synchronize_data: Option<bool>,
    columns: Option<Vec<String>>,
    row_filter: Option<&str>,
    include_partitions: Option<bool>,
) -> bool {
    require_superuser("spock.repset_add_table");
    let set_name = required(name_arg(set_name), "set_name", "spock.repset_add_table");
    let reloid = required(relation, "relation", "spock.repset_add_table");
    let synchronize_data = required(synchronize_data, "synchronize_data", "spock.repset_add_table");
    lock_table(reloid);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_add_table");
        let set = require_set(client, &node, &set_name);
        let facts = table_facts(reloid);
        refuse_if_disqualified(&facts, &set_name, &set);
        if repset::is_member(client, &set, reloid) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("{} is already in replication set \"{set_name}\"", facts.qualified_name),
            );
        }
        for table in with_partitions(reloid, include_partitions.unwrap_or(true)) {
            let facts = table_facts(table);
            if table != reloid {
                refuse_if_disqualified(&facts, &set_name, &set);
                if repset::is_member(client, &set, table) {
                    continue;
                }
            }
            // Checked on each partition: its columns may be numbered
            // differently from the parent's.
            let filter = MemberFilter {
                att_list: columns.as_deref().map(|c| filters::column_list(table, &facts.qualified_name, c)),
                row_filter: row_filter.map(|f| filters::row_filter(table, &facts.qualified_name, f)),
            };
            repset::add_filtered_member(client, &set, table, &filter);
        }
        if synchronize_data {
            queue_table_sync(client, &set_name, reloid);
        }
        true
    })
}

/// Queues a table-sync request (`A`, behaviour.md §6.5) for the subscribers
/// of `set_name`: it reaches each in stream order, right after the
/// membership change of the same transaction.
fn queue_table_sync(client: &mut pgrx::spi::SpiClient<'_>, set_name: &str, reloid: pg_sys::Oid) {
    let (schema_name, table_name) = relation_names(reloid);
    let row = QueueRow {
        queued_at: 0,
        role: crate::hooks::ddl::current_role(),
        replication_sets: Some(vec![set_name.to_string()]),
        message_type: MessageType::TableSync.code(),
        message: serde_json::json!({ "schema_name": schema_name, "table_name": table_name }).to_string(),
    };
    queue::insert(client, &row, None);
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_add_all_tables(set_name name, schema_names text[], synchronize_data boolean DEFAULT false)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_all_tables_wrapper';
"#)]
fn repset_add_all_tables(set_name: &CStr, schema_names: Vec<String>, synchronize_data: bool) -> bool {
    require_superuser("spock.repset_add_all_tables");
    let set_name = set_name.to_string_lossy().into_owned();
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_add_all_tables");
        let set = require_set(client, &node, &set_name);
        for schema in &schema_names {
            let known = client
                .select("SELECT 1 FROM pg_namespace WHERE nspname = $1", None, &[schema.as_str().into()])
                .map(|t| !t.is_empty())
                .unwrap_or(false);
            if !known {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                    format!("schema \"{schema}\" does not exist"),
                );
            }
            if schema.starts_with("pg_")
                || schema == "information_schema"
                || schema == "spock"
                || crate::catalog::reserved::blocks_schema(schema)
            {
                pgrx::warning!("skipping reserved schema {schema}: its tables cannot be replicated");
                continue;
            }
            let tables: Vec<pg_sys::Oid> = client
                .select(
                    "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
                      ORDER BY c.relname",
                    None,
                    &[schema.as_str().into()],
                )
                .unwrap_or_else(|e| pgrx::error!("cannot list tables: {e}"))
                .filter_map(|r| r.get::<pg_sys::Oid>(1).unwrap())
                .collect();
            for reloid in tables {
                lock_table(reloid);
                let facts = table_facts(reloid);
                if let Some((_, message, _)) = disqualification(&facts, &set_name, &set) {
                    pgrx::warning!("skipping {}: {message}", facts.qualified_name);
                    continue;
                }
                if !repset::is_member(client, &set, reloid) {
                    repset::add_member(client, &set, reloid);
                }
                if synchronize_data {
                    queue_table_sync(client, &set_name, reloid);
                }
            }
        }
        true
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_remove_table(set_name name, relation regclass, include_partitions boolean DEFAULT true)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_remove_table_wrapper';
"#)]
fn repset_remove_table(set_name: &CStr, relation: pg_sys::Oid, include_partitions: bool) -> bool {
    require_superuser("spock.repset_remove_table");
    let set_name = set_name.to_string_lossy().into_owned();
    lock_table(relation);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_remove_table");
        let set = require_set(client, &node, &set_name);
        if !repset::is_member(client, &set, relation) {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{} is not in replication set \"{set_name}\"", table_facts(relation).qualified_name),
            );
        }
        for table in with_partitions(relation, include_partitions) {
            repset::remove_member(client, &set, table);
        }
        true
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_show_table_rows(relation regclass, repsets text[], OUT relid oid, OUT nspname text,
    OUT relname text, OUT att_list text[], OUT has_row_filter boolean, OUT relkind "char",
    OUT relispartition boolean)
    RETURNS SETOF record STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_show_table_wrapper';
CREATE FUNCTION spock.repset_show_table(relation regclass, repsets text[], OUT relid oid, OUT nspname text,
    OUT relname text, OUT att_list text[], OUT has_row_filter boolean, OUT relkind "char",
    OUT relispartition boolean)
    RETURNS record STRICT STABLE LANGUAGE sql AS 'SELECT * FROM spock.repset_show_table_rows($1, $2)';
"#)]
#[allow(clippy::type_complexity)]
fn repset_show_table(
    relation: pg_sys::Oid,
    repsets: Vec<String>,
) -> TableIterator<
    'static,
    (
        name!(relid, pg_sys::Oid),
        name!(nspname, String),
        name!(relname, String),
        name!(att_list, Vec<String>),
        name!(has_row_filter, bool),
        name!(relkind, i8),
        name!(relispartition, bool),
    ),
> {
    super::require_replication_privilege("spock.repset_show_table");
    // Replication roles may call this, but not read the catalogs.
    let (member_of, (att_list, has_row_filter)) = crate::catalog::with_catalog_owner_rights(|| {
        Spi::connect(|client| {
            let local = node::require_local_node(client, "spock.repset_show_table");
            let member_of = repset::memberships(client, local.node_id, relation)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>();
            (member_of, repset::effective_filter(client, local.node_id, relation, &repsets))
        })
    });
    let facts = table_facts(relation);
    if !member_of.iter().any(|s| repsets.contains(s)) {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("{} is in none of the replication sets {}", facts.qualified_name, repsets.join(", ")),
        );
    }
    // SAFETY: the relation's descriptor through the relcache, closed after.
    let (columns, relispartition) = unsafe {
        let rel = pg_sys::RelationIdGetRelation(relation);
        let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let columns = desc
            .iter()
            .filter(|a| !a.attisdropped && a.attgenerated == 0)
            .map(|a| CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned())
            .filter(|name| att_list.as_ref().is_none_or(|list| list.contains(name)))
            .collect::<Vec<_>>();
        let relispartition = (*(*rel).rd_rel).relispartition;
        pg_sys::RelationClose(rel);
        (columns, relispartition)
    };
    let (nspname, relname) = super::relation_names(relation);
    TableIterator::once((
        relation,
        nspname,
        relname,
        columns,
        has_row_filter,
        facts.relkind as i8,
        relispartition,
    ))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.row_filter_condition(relation regclass, repsets text[]) RETURNS text
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'row_filter_condition_wrapper';
"#)]
/// The condition a row of `relation` must meet to pass the row filters of
/// the named sets of the local node (`true` when none filters rows): what
/// `spock.table_data_filtered` (sql/functions.sql) selects with.
fn row_filter_condition(relation: pg_sys::Oid, repsets: Vec<String>) -> String {
    super::require_replication_privilege("spock.table_data_filtered");
    let filters = crate::catalog::with_catalog_owner_rights(|| {
        Spi::connect(|client| {
            let local = node::require_local_node(client, "spock.table_data_filtered");
            repset::row_filters_sql(client, local.node_id, relation, &repsets)
        })
    });
    spock_core::filters::conjunction(&filters).unwrap_or_else(|| "true".to_string())
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.row_filter_uses_column(row_filter text, attnum int2) RETURNS boolean
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'row_filter_uses_column_wrapper';
"#)]
/// Whether a stored row filter (`set_row_filter::text`) reads column
/// `attnum`: for the event trigger that removes the memberships whose
/// filter lost a column. Superusers only (it parses a stored tree).
fn row_filter_uses_column(row_filter: &str, attnum: i16) -> bool {
    require_superuser("spock.row_filter_uses_column");
    filters::uses_column(row_filter, attnum)
}

/// The partitions (at any depth) of a partitioned table, or the one given
/// after checking it is one of them.
fn partitions_of(parent: pg_sys::Oid, partition: Option<pg_sys::Oid>) -> Vec<pg_sys::Oid> {
    let all: Vec<pg_sys::Oid> = with_partitions(parent, true).into_iter().filter(|r| *r != parent).collect();
    match partition {
        None => all,
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "{} is not a partition of {}",
                table_facts(p).qualified_name,
                table_facts(parent).qualified_name
            ),
        ),
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_add_partition(parent regclass, partition regclass DEFAULT NULL,
    row_filter text DEFAULT NULL) RETURNS integer
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_partition_wrapper';
"#)]
/// Adds partitions of `parent` to every set of the local node that has
/// `parent`, with the parent's column list and `row_filter` (the parent's
/// when NULL); returns how many memberships were added.
fn repset_add_partition(
    parent: Option<pg_sys::Oid>,
    partition: Option<pg_sys::Oid>,
    row_filter: Option<&str>,
) -> i32 {
    require_superuser("spock.repset_add_partition");
    let parent = required(parent, "parent", "spock.repset_add_partition");
    lock_table(parent);
    if !table_facts(parent).is_partitioned {
        return 0;
    }
    let partitions = partitions_of(parent, partition);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_add_partition");
        let mut added = 0;
        for (set_name, set) in repset::memberships(client, node.node_id, parent) {
            let (att_list, parent_filter) = repset::member_definition(client, &set, parent);
            let filter_text = row_filter.map(str::to_string).or(parent_filter);
            for &table in &partitions {
                if repset::is_member(client, &set, table) {
                    continue;
                }
                lock_table(table);
                let facts = table_facts(table);
                refuse_if_disqualified(&facts, &set_name, &set);
                let filter = MemberFilter {
                    att_list: att_list
                        .as_deref()
                        .map(|c| filters::column_list(table, &facts.qualified_name, c)),
                    row_filter: filter_text
                        .as_deref()
                        .map(|f| filters::row_filter(table, &facts.qualified_name, f)),
                };
                repset::add_filtered_member(client, &set, table, &filter);
                added += 1;
            }
        }
        added
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repset_remove_partition(parent regclass, partition regclass DEFAULT NULL) RETURNS integer
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_remove_partition_wrapper';
"#)]
/// Removes partitions of `parent` from every set of the local node that
/// has `parent`; returns how many memberships were removed.
fn repset_remove_partition(parent: Option<pg_sys::Oid>, partition: Option<pg_sys::Oid>) -> i32 {
    require_superuser("spock.repset_remove_partition");
    let parent = required(parent, "parent", "spock.repset_remove_partition");
    lock_table(parent);
    if !table_facts(parent).is_partitioned {
        return 0;
    }
    let partitions = partitions_of(parent, partition);
    Spi::connect_mut(|client| {
        let node = node::require_local_node(client, "spock.repset_remove_partition");
        let mut removed = 0;
        for (_, set) in repset::memberships(client, node.node_id, parent) {
            for &table in &partitions {
                if repset::is_member(client, &set, table) {
                    repset::remove_member(client, &set, table);
                    removed += 1;
                }
            }
        }
        removed
    })
}
