//! What spock asks a provider, and the replication slots it keeps there:
//! typed results over a [`Conn`]. Errors are the connection's or the
//! provider's, unchanged; callers say what they were doing.

use std::time::{Duration, Instant};

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
    let ident = conn.ident(slot);
    let rows =
        conn.query(&format!("CREATE_REPLICATION_SLOT {ident} LOGICAL spock_output (SNAPSHOT 'nothing')"))?;
    // slot_name, consistent_point, snapshot_name, output_plugin
    let point = rows.rows.first().and_then(|r| r.get(1).cloned().flatten()).unwrap_or_default();
    parse_lsn(&point)
        .ok_or_else(|| malformed("CREATE_REPLICATION_SLOT", format!("consistent point {point:?}")))
}

/// Starts streaming from a slot at `start` with the output plugin options
/// `options`; the connection is then in COPY BOTH mode.
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
