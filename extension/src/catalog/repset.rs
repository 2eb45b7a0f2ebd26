//! Replication sets and their tables (`spock.replication_set`,
//! `spock.replication_set_table`). Every membership or flag change queues a
//! relation cache invalidation of the tables it affects, so that walsenders
//! see it in stream order (at the changing transaction's commit).

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use spock_core::naming;

use super::{oid, spi_failed};

/// The built-in replication sets every node gets: (name, insert, update, delete, truncate).
pub const BUILTIN_SETS: [(&str, bool, bool, bool, bool); 3] = [
    ("default", true, true, true, true),
    ("default_insert_only", true, false, false, true),
    ("ddl_sql", true, false, false, false),
];

/// A set of the local node.
#[derive(Clone, Debug)]
pub struct Set {
    pub id: pg_sys::Oid,
    pub update: bool,
    pub delete: bool,
}

/// A set of `node_id` by name.
pub fn find_set(client: &SpiClient<'_>, node_id: u32, name: &str) -> Option<Set> {
    client
        .select(
            "SELECT set_id, replicate_update, replicate_delete
               FROM spock.replication_set WHERE set_nodeid = $1 AND set_name = $2",
            None,
            &[oid(node_id).into(), name.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set"))
        .next()
        .map(|r| Set {
            id: r.get(1).unwrap().unwrap(),
            update: r.get(2).unwrap().unwrap_or(true),
            delete: r.get(3).unwrap().unwrap_or(true),
        })
}

/// The names of a node's sets, ordered.
pub fn set_names(client: &SpiClient<'_>, node_id: u32) -> Vec<String> {
    client
        .select(
            "SELECT set_name::text FROM spock.replication_set WHERE set_nodeid = $1 ORDER BY set_name",
            None,
            &[oid(node_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// A set id for a set of a node: a hash of the node id and the set name,
/// moved on when another set already has it.
fn new_set_id(client: &SpiClient<'_>, node_id: u32, set_name: &str) -> u32 {
    let mut salt = 0u32;
    loop {
        let id = 1 + naming::fnv1a32(format!("{node_id}/{set_name}/{salt}").as_bytes()) % (u32::MAX - 1);
        let taken = !client
            .select("SELECT 1 FROM spock.replication_set WHERE set_id = $1", None, &[oid(id).into()])
            .unwrap_or_else(spi_failed("read spock.replication_set"))
            .is_empty();
        if !taken {
            return id;
        }
        salt += 1;
    }
}

/// Creates a set of `node_id` with the given flags (insert, update, delete,
/// truncate) and returns its id.
pub fn insert_set(client: &mut SpiClient<'_>, node_id: u32, name: &str, flags: [bool; 4]) -> pg_sys::Oid {
    let id = new_set_id(client, node_id, name);
    let [insert, update, delete, truncate] = flags;
    client
        .update(
            "INSERT INTO spock.replication_set (set_id, set_nodeid, set_name, replicate_insert, replicate_update,
                replicate_delete, replicate_truncate) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            None,
            &[
                oid(id).into(),
                oid(node_id).into(),
                name.into(),
                insert.into(),
                update.into(),
                delete.into(),
                truncate.into(),
            ],
        )
        .unwrap_or_else(spi_failed("insert into spock.replication_set"));
    oid(id)
}

/// Changes the flags given as `Some` and invalidates the set's tables.
pub fn alter_set(client: &mut SpiClient<'_>, set: &Set, flags: [Option<bool>; 4]) {
    let [insert, update, delete, truncate] = flags;
    client
        .update(
            "UPDATE spock.replication_set SET
                replicate_insert = coalesce($2, replicate_insert),
                replicate_update = coalesce($3, replicate_update),
                replicate_delete = coalesce($4, replicate_delete),
                replicate_truncate = coalesce($5, replicate_truncate)
              WHERE set_id = $1",
            None,
            &[set.id.into(), insert.into(), update.into(), delete.into(), truncate.into()],
        )
        .unwrap_or_else(spi_failed("update spock.replication_set"));
    for reloid in members(client, set.id) {
        invalidate(reloid);
    }
}

/// Drops a set and its memberships.
pub fn delete_set(client: &mut SpiClient<'_>, set: &Set) {
    let tables = members(client, set.id);
    for sql in [
        "DELETE FROM spock.replication_set_table WHERE set_id = $1",
        "DELETE FROM spock.replication_set_seq WHERE set_id = $1",
        "DELETE FROM spock.replication_set WHERE set_id = $1",
    ] {
        client.update(sql, None, &[set.id.into()]).unwrap_or_else(spi_failed("drop a replication set"));
    }
    for reloid in tables {
        invalidate(reloid);
    }
}

/// Queues a relation cache invalidation of a table, transactionally: the
/// output plugin sees it at this transaction's commit.
fn invalidate(reloid: pg_sys::Oid) {
    // SAFETY: queues an invalidation message for a relation id; the
    // relation need not be open.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(reloid) };
}

/// The tables of a set.
pub fn members(client: &SpiClient<'_>, set: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    client
        .select(
            "SELECT set_reloid::oid FROM spock.replication_set_table WHERE set_id = $1",
            None,
            &[set.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .filter_map(|r| r.get::<pg_sys::Oid>(1).unwrap())
        .collect()
}

pub fn is_member(client: &SpiClient<'_>, set: &Set, reloid: pg_sys::Oid) -> bool {
    !client
        .select(
            "SELECT 1 FROM spock.replication_set_table WHERE set_id = $1 AND set_reloid = $2",
            None,
            &[set.id.into(), reloid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .is_empty()
}

pub fn add_member(client: &mut SpiClient<'_>, set: &Set, reloid: pg_sys::Oid) {
    add_filtered_member(client, set, reloid, &MemberFilter::default());
}

/// What a membership sends of its table: the column list (all columns when
/// `None`) and the row filter (an expression tree, `filters::row_filter`).
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    pub att_list: Option<Vec<String>>,
    pub row_filter: Option<String>,
}

pub fn add_filtered_member(
    client: &mut SpiClient<'_>,
    set: &Set,
    reloid: pg_sys::Oid,
    filter: &MemberFilter,
) {
    // A pg_node_tree cannot be written from text (its input function
    // refuses); the tree is passed as a parameter of that type, which has
    // text's representation.
    // SAFETY: a text datum passed with the binary-compatible pg_node_tree oid.
    let tree = unsafe { DatumWithOid::new(filter.row_filter.clone(), pg_sys::PG_NODE_TREEOID) };
    client
        .update(
            "INSERT INTO spock.replication_set_table (set_id, set_reloid, set_att_list, set_row_filter)
             VALUES ($1, $2, $3, $4)",
            None,
            &[set.id.into(), reloid.into(), filter.att_list.clone().into(), tree],
        )
        .unwrap_or_else(spi_failed("add a table to a replication set"));
    invalidate(reloid);
}

/// The column list and row filter of a membership, the filter as SQL
/// over the table's columns (`pg_get_expr`), to be checked again for
/// another table (a partition) with `filters::row_filter`.
pub fn member_definition(
    client: &SpiClient<'_>,
    set: &Set,
    reloid: pg_sys::Oid,
) -> (Option<Vec<String>>, Option<String>) {
    client
        .select(
            "SELECT set_att_list, pg_catalog.pg_get_expr(set_row_filter, set_reloid)
               FROM spock.replication_set_table WHERE set_id = $1 AND set_reloid = $2",
            None,
            &[set.id.into(), reloid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .next()
        .map(|r| (r.get(1).unwrap(), r.get(2).unwrap()))
        .unwrap_or_default()
}

/// The effective configuration of a table across the named sets of the
/// local node `node_id` (sql-api.md `repset_show_table`): the union of the
/// column lists (`None` when a set sends every column) and whether any set
/// filters rows.
pub fn effective_filter(
    client: &SpiClient<'_>,
    node_id: u32,
    reloid: pg_sys::Oid,
    sets: &[String],
) -> (Option<Vec<String>>, bool) {
    let mut lists = Vec::new();
    let mut filtered = false;
    let rows = client
        .select(
            "SELECT t.set_att_list, t.set_row_filter IS NOT NULL
               FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE s.set_nodeid = $1 AND t.set_reloid = $2 AND s.set_name::text = ANY ($3)",
            None,
            &[oid(node_id).into(), reloid.into(), sets.to_vec().into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"));
    for r in rows {
        lists.push(r.get::<Vec<String>>(1).unwrap());
        filtered |= r.get::<bool>(2).unwrap().unwrap_or(false);
    }
    (spock_core::filters::union_of_lists(lists), filtered)
}

pub fn remove_member(client: &mut SpiClient<'_>, set: &Set, reloid: pg_sys::Oid) {
    client
        .update(
            "DELETE FROM spock.replication_set_table WHERE set_id = $1 AND set_reloid = $2",
            None,
            &[set.id.into(), reloid.into()],
        )
        .unwrap_or_else(spi_failed("remove a table from a replication set"));
    invalidate(reloid);
}

/// The row filters of a table in the named sets of the local node
/// `node_id`, as SQL over the table's columns (`pg_get_expr`).
pub fn row_filters_sql(
    client: &SpiClient<'_>,
    node_id: u32,
    reloid: pg_sys::Oid,
    sets: &[String],
) -> Vec<String> {
    client
        .select(
            "SELECT pg_catalog.pg_get_expr(t.set_row_filter, t.set_reloid)
               FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE s.set_nodeid = $1 AND t.set_reloid = $2 AND s.set_name::text = ANY ($3)
                AND t.set_row_filter IS NOT NULL
              ORDER BY s.set_name",
            None,
            &[oid(node_id).into(), reloid.into(), sets.to_vec().into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// The sets (of any node) whose column list of `reloid` names `column`.
pub fn sets_listing_column(client: &SpiClient<'_>, reloid: pg_sys::Oid, column: &str) -> Vec<String> {
    client
        .select(
            "SELECT s.set_name::text FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE t.set_reloid = $1 AND $2 = ANY (t.set_att_list) ORDER BY 1",
            None,
            &[reloid.into(), column.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// The sets (of any node) whose row filter of `reloid` reads column
/// `attnum`, by name.
pub fn sets_filtering_on(client: &SpiClient<'_>, reloid: pg_sys::Oid, attnum: i16) -> Vec<String> {
    client
        .select(
            "SELECT s.set_name::text, t.set_row_filter::text
               FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE t.set_reloid = $1 AND t.set_row_filter IS NOT NULL ORDER BY 1",
            None,
            &[reloid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .filter_map(|r| {
            let tree = r.get::<String>(2).unwrap()?;
            crate::filters::uses_column(&tree, attnum).then(|| r.get::<String>(1).unwrap()).flatten()
        })
        .collect()
}

/// The sets of the local node `node_id` a table belongs to, by name.
pub fn memberships(client: &SpiClient<'_>, node_id: u32, reloid: pg_sys::Oid) -> Vec<(String, Set)> {
    client
        .select(
            "SELECT s.set_name::text, s.set_id, s.replicate_update, s.replicate_delete
               FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE s.set_nodeid = $1 AND t.set_reloid = $2 ORDER BY s.set_name",
            None,
            &[oid(node_id).into(), reloid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .map(|r| {
            let set = Set {
                id: r.get(2).unwrap().unwrap(),
                update: r.get(3).unwrap().unwrap_or(true),
                delete: r.get(4).unwrap().unwrap_or(true),
            };
            (r.get::<String>(1).unwrap().unwrap_or_default(), set)
        })
        .collect()
}

/// The names of the sets (of any node) a table belongs to.
pub fn set_names_of(client: &SpiClient<'_>, reloid: pg_sys::Oid) -> Vec<String> {
    client
        .select(
            "SELECT s.set_name::text FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
              WHERE t.set_reloid = $1 ORDER BY 1",
            None,
            &[reloid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_table"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// Whether a sequence is in a set.
pub fn has_seq(client: &SpiClient<'_>, set: &Set, seqoid: pg_sys::Oid) -> bool {
    !client
        .select(
            "SELECT 1 FROM spock.replication_set_seq WHERE set_id = $1 AND set_seqoid = $2",
            None,
            &[set.id.into(), seqoid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_seq"))
        .is_empty()
}

/// Adds a sequence to a set, with its `sequence_state` row if it has none.
pub fn add_seq(client: &mut SpiClient<'_>, set: &Set, seqoid: pg_sys::Oid) {
    for sql in [
        "INSERT INTO spock.replication_set_seq (set_id, set_seqoid) VALUES ($1, $2)",
        "INSERT INTO spock.sequence_state (seqoid) VALUES ($2) ON CONFLICT DO NOTHING",
    ] {
        client
            .update(sql, None, &[set.id.into(), seqoid.into()])
            .unwrap_or_else(spi_failed("add a sequence to a replication set"));
    }
}

pub fn remove_seq(client: &mut SpiClient<'_>, set: &Set, seqoid: pg_sys::Oid) {
    client
        .update(
            "DELETE FROM spock.replication_set_seq WHERE set_id = $1 AND set_seqoid = $2",
            None,
            &[set.id.into(), seqoid.into()],
        )
        .unwrap_or_else(spi_failed("remove a sequence from a replication set"));
}

/// The names of the local node's sets a sequence is in.
pub fn seq_set_names(client: &SpiClient<'_>, node_id: u32, seqoid: pg_sys::Oid) -> Vec<String> {
    client
        .select(
            "SELECT s.set_name::text FROM spock.replication_set_seq q JOIN spock.replication_set s USING (set_id)
              WHERE s.set_nodeid = $1 AND q.set_seqoid = $2 ORDER BY 1",
            None,
            &[oid(node_id).into(), seqoid.into()],
        )
        .unwrap_or_else(spi_failed("read spock.replication_set_seq"))
        .filter_map(|r| r.get::<String>(1).unwrap())
        .collect()
}

/// A sequence's cache margin (`sequence_state.cache_size`; 1000 without a row).
pub fn seq_cache_size(client: &SpiClient<'_>, seqoid: pg_sys::Oid) -> i64 {
    client
        .select("SELECT cache_size FROM spock.sequence_state WHERE seqoid = $1", None, &[seqoid.into()])
        .unwrap_or_else(spi_failed("read spock.sequence_state"))
        .next()
        .and_then(|r| r.get::<i32>(1).unwrap())
        .map_or(1000, i64::from)
}

/// Records the value last pushed for a sequence.
pub fn set_seq_pushed(client: &mut SpiClient<'_>, seqoid: pg_sys::Oid, value: i64) {
    client
        .update(
            "INSERT INTO spock.sequence_state (seqoid, last_value) VALUES ($1, $2)
             ON CONFLICT (seqoid) DO UPDATE SET last_value = EXCLUDED.last_value",
            None,
            &[seqoid.into(), value.into()],
        )
        .unwrap_or_else(spi_failed("write spock.sequence_state"));
}

/// SQL for the copying session of an initial structure copy: puts the
/// restored table `qualified_literal` (a quoted literal of its quoted name)
/// into the local set named `set_literal`, as it is on the provider, when
/// this node has such a set and the table is not yet in it.
pub fn adopt_membership_sql(set_literal: &str, qualified_literal: &str) -> String {
    format!(
        "SELECT spock.repset_add_table(s.set_name, {qualified_literal}::regclass)
           FROM spock.replication_set s JOIN spock.local_node l ON l.node_id = s.set_nodeid
          WHERE s.set_name = {set_literal}
            AND NOT EXISTS (SELECT 1 FROM spock.replication_set_table t
                             WHERE t.set_id = s.set_id AND t.set_reloid = {qualified_literal}::regclass)"
    )
}
