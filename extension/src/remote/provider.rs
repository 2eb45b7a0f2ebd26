//! What spock asks a provider, and the replication slots it keeps there:
//! typed results over a [`Conn`]. Errors are the connection's or the
//! provider's, unchanged; callers say what they were doing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spock_core::filters;
use spock_core::naming;
use spock_core::protocol;
use spock_core::stream::parse_lsn;

use super::{Conn, PqError};

/// What the provider says about itself (`spock.node_info()` there).
pub struct ProviderInfo {
    pub node_id: u32,
    pub node_name: String,
    pub sysid: String,
    pub dbname: String,
    pub sets: Vec<String>,
    pub location: Option<String>,
    pub country: Option<String>,
    pub info: Option<String>,
}

fn malformed(what: &str, detail: impl std::fmt::Display) -> PqError {
    PqError {
        sqlstate: Some("08P01".into()),
        message: format!("the provider's answer to {what} is malformed: {detail}"),
    }
}

/// The provider's node (`spock.node_info()`); `Ok(None)` when it has none.
pub fn node_info(conn: &mut Conn) -> Result<Option<ProviderInfo>, PqError> {
    let rows = conn.query(
        "SELECT node_id::int8, node_name, sysid, dbname, replication_sets, location, country, info::text
           FROM spock.node_info()",
    )?;
    let Some(row) = rows.rows.into_iter().next() else { return Ok(None) };
    let get = |i: usize| row.get(i).cloned().flatten();
    let sets = protocol::decode_name_list(&get(4).unwrap_or_default())
        .map_err(|e| malformed("spock.node_info()", e))?;
    Ok(Some(ProviderInfo {
        node_id: get(0).and_then(|s| s.parse().ok()).unwrap_or(0),
        node_name: get(1).unwrap_or_default(),
        sysid: get(2).unwrap_or_default(),
        dbname: get(3).unwrap_or_default(),
        sets,
        location: get(5),
        country: get(6),
        info: get(7),
    }))
}

/// Whether the connected role is a superuser or has the REPLICATION attribute.
pub fn role_can_replicate(conn: &mut Conn) -> Result<bool, PqError> {
    let rows = conn
        .query("SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user")?;
    Ok(rows.scalar() == Some("t"))
}

/// The provider's `output_plugin_libraries`, when its server has that
/// setting and the connected role may read it (only superusers and members
/// of `pg_read_all_settings` may; for other roles a disallowed plugin shows
/// up when the apply worker creates its slot).
pub fn output_plugin_libraries(conn: &mut Conn) -> Result<Option<String>, PqError> {
    match conn.query("SELECT pg_catalog.current_setting('output_plugin_libraries', true)") {
        Ok(rows) => Ok(rows.scalar().map(str::to_string)),
        Err(e) if e.sqlstate.as_deref() == Some("42501") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the provider's server carries core patch 020, without which its
/// UPDATEs carry no old values for delta columns (sql-api.md §5).
pub fn sends_old_values(conn: &mut Conn) -> Result<bool, PqError> {
    let rows = conn.query(&format!(
        "SELECT present FROM spock.core_patches WHERE patch = '{}'",
        spock_core::core_patches::COLUMN_OPTIONS.label()
    ))?;
    Ok(rows.scalar() == Some("t"))
}

/// The provider's major version (`server_version_num / 10000`).
pub fn server_major(conn: &mut Conn) -> Result<u32, PqError> {
    let rows = conn.query("SELECT pg_catalog.current_setting('server_version_num')::int / 10000")?;
    rows.scalar().and_then(|v| v.parse().ok()).ok_or_else(|| malformed("server_version_num", "not a number"))
}

/// `IDENTIFY_SYSTEM` on a replication connection: proves the role may stream.
pub fn identify_system(conn: &mut Conn) -> Result<(), PqError> {
    conn.query("IDENTIFY_SYSTEM").map(|_| ())
}

/// The protocol versions the provider speaks.
pub fn protocol_versions(conn: &mut Conn) -> Result<(u32, u32), PqError> {
    let rows = conn.query("SELECT spock.spock_min_proto_version(), spock.spock_max_proto_version()")?;
    let row = rows.rows.first().cloned().unwrap_or_default();
    let parse = |i: usize| row.get(i).cloned().flatten().and_then(|s| s.parse::<u32>().ok());
    match (parse(0), parse(1)) {
        (Some(min), Some(max)) => Ok((min, max)),
        _ => Err(malformed("the protocol version query", format!("{row:?}"))),
    }
}

/// Where a slot on the provider stands (its confirmed position), or `None`
/// when the provider has no slot of that name.
pub fn slot_position(conn: &mut Conn, slot: &str) -> Result<Option<u64>, PqError> {
    let literal = conn.literal(slot);
    let rows = conn.query(&format!(
        "SELECT coalesce(confirmed_flush_lsn, restart_lsn, '0/1')::text FROM pg_catalog.pg_replication_slots
          WHERE slot_name = {literal}"
    ))?;
    match rows.scalar() {
        None => Ok(None),
        Some(text) => parse_lsn(text).map(Some).ok_or_else(|| malformed("pg_replication_slots", text)),
    }
}

/// Creates the subscription's logical slot with spock's output plugin (on
/// a replication connection); returns the position its stream starts at.
pub fn create_slot(conn: &mut Conn, slot: &str) -> Result<u64, PqError> {
    create_slot_with(conn, slot, "", "nothing").map(|(lsn, _)| lsn)
}

/// Creates the slot and exports its snapshot: the provider's data exactly
/// as of the slot's start. Returns the start and the snapshot's name, which
/// other sessions can use while this replication connection runs no other
/// command.
pub fn create_slot_exported(conn: &mut Conn, slot: &str) -> Result<(u64, String), PqError> {
    exported(create_slot_with(conn, slot, "", "export")?)
}

/// Like [`create_slot_exported`], with a temporary slot: it goes when the
/// connection closes (used only for its snapshot).
pub fn create_temporary_slot_exported(conn: &mut Conn, slot: &str) -> Result<(u64, String), PqError> {
    exported(create_slot_with(conn, slot, "TEMPORARY ", "export")?)
}

fn exported((lsn, snapshot): (u64, Option<String>)) -> Result<(u64, String), PqError> {
    let snapshot = snapshot
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("CREATE_REPLICATION_SLOT", "no exported snapshot"))?;
    Ok((lsn, snapshot))
}

fn create_slot_with(
    conn: &mut Conn,
    slot: &str,
    temporary: &str,
    snapshot: &str,
) -> Result<(u64, Option<String>), PqError> {
    let ident = conn.ident(slot);
    // A lasting slot on PostgreSQL 17 or later is a failover slot, which a
    // standby with `sync_replication_slots` keeps in step (sql-api.md §4.11).
    let failover = if temporary.is_empty() && server_major(conn)? >= 17 { ", FAILOVER true" } else { "" };
    let rows = conn.query(&format!(
        "CREATE_REPLICATION_SLOT {ident} {temporary}LOGICAL spock_output (SNAPSHOT '{snapshot}'{failover})"
    ))?;
    // slot_name, consistent_point, snapshot_name, output_plugin
    let row = rows.rows.into_iter().next().unwrap_or_default();
    let point = row.get(1).cloned().flatten().unwrap_or_default();
    let lsn = parse_lsn(&point)
        .ok_or_else(|| malformed("CREATE_REPLICATION_SLOT", format!("consistent point {point:?}")))?;
    Ok((lsn, row.get(2).cloned().flatten()))
}

/// When a copy begins, as the provider sees it (read just before the
/// copy's snapshot is taken).
pub struct CopyTimes {
    /// The oldest commit time a change not in the snapshot can have: the
    /// provider's clock, or earlier, the commit time of the last
    /// transaction it applied from a peer (other than the subscriber) whose
    /// later transactions may still be on their way to it.
    pub recent_since: String,
    /// The commit time the copied rows get unless they keep their own: just
    /// before `recent_since`, so that every change not in the copy wins
    /// against them.
    pub stamp: String,
}

/// Reads [`CopyTimes`] for a copy to the node `subscriber`. A role that
/// may not read `spock.progress` makes every row recent.
pub fn copy_times(conn: &mut Conn, subscriber: u32) -> Result<CopyTimes, PqError> {
    let allowed = conn.query("SELECT pg_catalog.has_table_privilege('spock.progress', 'SELECT')")?;
    let oldest_peer = if allowed.scalar() == Some("t") {
        format!(
            "(SELECT min(coalesce(remote_commit_ts, '-infinity')) FROM spock.progress
               WHERE remote_node_id IS DISTINCT FROM {subscriber})"
        )
    } else {
        "'-infinity'::timestamptz".to_string()
    };
    let rows = conn.query(&format!(
        "SELECT low::text,
                CASE WHEN low = '-infinity' THEN '2000-01-01 00:00:00.000001+00'
                     ELSE (low - interval '1 microsecond')::text END
           FROM (SELECT least(pg_catalog.clock_timestamp(), {oldest_peer}) AS low) t"
    ))?;
    let row = rows.rows.into_iter().next().unwrap_or_default();
    match (row.first().cloned().flatten(), row.get(1).cloned().flatten()) {
        (Some(recent_since), Some(stamp)) => Ok(CopyTimes { recent_since, stamp }),
        _ => Err(malformed("the copy's times", "no row")),
    }
}

/// Starts a read-only transaction that sees the exported snapshot `name`.
pub fn begin_with_snapshot(conn: &mut Conn, name: &str) -> Result<(), PqError> {
    let literal = conn.literal(name);
    conn.query(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {literal}"
    ))
    .map(|_| ())
}

/// The provider's replication origins (their ids, as text) and the nodes
/// they stand for, as far as the connected role may read them (a role that
/// may not read `spock.subscription` gets none: their rows then count as
/// the provider's own).
pub fn origin_nodes(conn: &mut Conn) -> Result<HashMap<String, u32>, PqError> {
    let allowed = conn.query("SELECT pg_catalog.has_table_privilege('spock.subscription', 'SELECT')")?;
    if allowed.scalar() != Some("t") {
        return Ok(HashMap::new());
    }
    let rows = conn.query(
        "SELECT r.roident::text, s.sub_origin::int8 FROM pg_catalog.pg_replication_origin r
           JOIN spock.subscription s ON r.roname IN (s.sub_slot_name, s.sub_slot_name || '_sync')",
    )?;
    let mut nodes: HashMap<String, u32> = rows
        .rows
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.as_deref()?.parse().ok()?)))
        .collect();
    // Forwarding origins of the provider's database (behaviour.md §5.3)
    // name their node.
    let forwarding = conn.query(
        "SELECT r.roident::text, r.roname::text, pg_catalog.current_database()::text
           FROM pg_catalog.pg_replication_origin r WHERE r.roname LIKE 'spkfwd\\_%'",
    )?;
    for r in forwarding.rows {
        let (Some(Some(id)), Some(Some(name)), Some(Some(db))) = (r.first(), r.get(1), r.get(2)) else {
            continue;
        };
        if let Some(node) = naming::node_of_forward_origin(name)
            && naming::forward_origin_name(db, node) == *name
        {
            nodes.insert(id.clone(), node);
        }
    }
    Ok(nodes)
}

/// A table of the provider that the initial copy copies.
#[derive(Clone, Debug)]
pub struct SyncTable {
    pub nspname: String,
    pub relname: String,
    /// `schema.table`, quoted.
    pub qualified: String,
    /// A partitioned table: copied through a query on it.
    pub partitioned: bool,
    /// The columns that travel (not dropped, not generated, in a set's
    /// column list or the replica identity), quoted and comma-separated,
    /// in the provider's order.
    pub columns: String,
    /// The same, each prefixed with `x.`.
    pub columns_of_x: String,
    /// The sets' row filters as SQL over the table's columns (a row is
    /// copied only if it passes all of them).
    pub filters: Vec<String>,
    /// The subscription's sets the table is a member of.
    pub sets: Vec<String>,
}

impl SyncTable {
    /// ` WHERE (f1) AND (f2)` for a filtered table, else nothing.
    pub fn where_clause(&self) -> String {
        filters::conjunction(&self.filters).map(|c| format!(" WHERE {c}")).unwrap_or_default()
    }
}

/// One (table, set) row of the provider's catalog.
struct Membership {
    nspname: String,
    relname: String,
    qualified: String,
    partitioned: bool,
    /// Live, non-generated columns in order.
    all_columns: Vec<String>,
    key_columns: Vec<String>,
    set: String,
    /// The set's column list (`None`: every column).
    att_list: Option<Vec<String>>,
    filter: Option<String>,
}

/// The tables of the provider's sets `sets`, except those in the schemas
/// `skip_schemas`, as the transaction running on `conn` sees them.
pub fn sync_tables(
    conn: &mut Conn,
    sets: &[String],
    skip_schemas: &[String],
) -> Result<Vec<SyncTable>, PqError> {
    let array = |conn: &mut Conn, names: &[String]| {
        let items: Vec<String> = names.iter().map(|n| conn.literal(n)).collect();
        format!("ARRAY[{}]::text[]", items.join(", "))
    };
    let (sets_sql, skip_sql) = (array(conn, sets), array(conn, skip_schemas));
    let rows = conn.query(&format!(
        "SELECT n.nspname::text, c.relname::text,
                pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
                c.relkind = 'p',
                (SELECT pg_catalog.json_agg(a.attname ORDER BY a.attnum)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
                s.set_name::text,
                pg_catalog.array_to_json(t.set_att_list),
                pg_catalog.pg_get_expr(t.set_row_filter, t.set_reloid),
                (SELECT pg_catalog.json_agg(a.attname)
                   FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = c.oid
                    AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident)))
           FROM spock.replication_set s
           JOIN spock.local_node l ON l.node_id = s.set_nodeid
           JOIN spock.replication_set_table t ON t.set_id = s.set_id
           JOIN pg_catalog.pg_class c ON c.oid = t.set_reloid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE s.set_name::text = ANY ({sets_sql}) AND n.nspname::text <> ALL ({skip_sql})
          ORDER BY 1, 2, 6"
    ))?;
    let names = |json: Option<String>| -> Option<Vec<String>> { serde_json::from_str(json.as_deref()?).ok() };
    let memberships: Vec<Membership> = rows
        .rows
        .into_iter()
        .map(|row| {
            let get = |i: usize| row.get(i).cloned().flatten();
            Membership {
                nspname: get(0).unwrap_or_default(),
                relname: get(1).unwrap_or_default(),
                qualified: get(2).unwrap_or_default(),
                partitioned: get(3).as_deref() == Some("t"),
                all_columns: names(get(4)).unwrap_or_default(),
                set: get(5).unwrap_or_default(),
                att_list: names(get(6)),
                filter: get(7),
                key_columns: names(get(8)).unwrap_or_default(),
            }
        })
        .collect();
    let mut tables = Vec::new();
    for group in memberships.chunk_by(|a, b| a.nspname == b.nspname && a.relname == b.relname) {
        let first = &group[0];
        let lists: Vec<Option<Vec<String>>> = group.iter().map(|m| m.att_list.clone()).collect();
        let columns: Vec<String> = filters::columns_sent(&first.all_columns, &first.key_columns, &lists)
            .into_iter()
            .map(|c| conn.ident(c))
            .collect();
        tables.push(SyncTable {
            nspname: first.nspname.clone(),
            relname: first.relname.clone(),
            qualified: first.qualified.clone(),
            partitioned: first.partitioned,
            columns: columns.join(", "),
            columns_of_x: columns.iter().map(|c| format!("x.{c}")).collect::<Vec<_>>().join(", "),
            filters: group.iter().filter_map(|m| m.filter.clone()).collect(),
            sets: group.iter().map(|m| m.set.clone()).collect(),
        });
    }
    Ok(tables)
}

/// Starts streaming from a slot at `start` with the output plugin options
/// `options`; the connection is then in COPY BOTH mode.
/// The output plugin's options for a subscription's stream. A forwarding
/// subscriber also names its node, whose own transactions the provider then
/// never sends back; the option is left out otherwise, so that providers
/// that predate it serve other subscribers as before.
pub fn stream_options(
    proto_version: u32,
    replication_sets: &[String],
    forward_origins: &[String],
    subscriber_node: u32,
) -> Vec<(&'static str, String)> {
    let mut options = vec![
        ("proto_version", proto_version.to_string()),
        ("replication_sets", protocol::encode_name_list(replication_sets)),
        ("forward_origins", protocol::encode_name_list(forward_origins)),
    ];
    if !forward_origins.is_empty() {
        options.push(("subscriber_node", subscriber_node.to_string()));
    }
    options
}

pub fn start_replication(
    conn: &mut Conn,
    slot: &str,
    start: u64,
    options: &[(&str, String)],
) -> Result<(), PqError> {
    // Replication commands take only plain '...' strings (no E'...'), in
    // which a quote is doubled and a backslash is an ordinary character.
    let quoted: Vec<String> =
        options.iter().map(|(name, value)| format!("\"{name}\" '{}'", value.replace('\'', "''"))).collect();
    let command = format!(
        "START_REPLICATION SLOT {} LOGICAL {} ({})",
        conn.ident(slot),
        spock_core::stream::format_lsn(start),
        quoted.join(", ")
    );
    conn.start_copy_both(&command)
}

/// How dropping a slot went.
pub enum SlotDrop {
    Dropped,
    /// There was no such slot.
    Absent,
    /// A walsender still used it after `patience`.
    InUse,
}

/// Drops a slot on the provider, waiting up to `patience` for the walsender
/// that used it (of a worker that was just stopped) to exit.
pub fn drop_slot(conn: &mut Conn, slot: &str, patience: Duration) -> Result<SlotDrop, PqError> {
    let literal = conn.literal(slot);
    let deadline = Instant::now() + patience;
    let mut dropped_any = false;
    loop {
        let rows = conn.query(&format!(
            "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots
              WHERE slot_name = {literal} AND NOT active"
        ))?;
        dropped_any |= !rows.rows.is_empty();
        if slot_position(conn, slot)?.is_none() {
            return Ok(if dropped_any { SlotDrop::Dropped } else { SlotDrop::Absent });
        }
        if Instant::now() > deadline {
            return Ok(SlotDrop::InUse);
        }
        // A short, interruptible pause before looking again.
        let _ = conn.query("SELECT pg_catalog.pg_sleep(0.1)")?;
    }
}
