//! Synchronisation status rows (`spock.local_sync_status`), typed with
//! `spock_core::sync`: the subscription-level row (no relation) and one row
//! per table an initial copy copied. The statements that end an initial
//! copy run in the copying session's own transaction (so that the copied
//! rows and their status commit together); their text is made here too.

use pgrx::spi::SpiClient;
use spock_core::sync::{SyncKind, SyncStatus};

use super::{oid, spi_failed};

/// The subscription-level row of a subscription.
#[derive(Clone, Copy, Debug)]
pub struct SubscriptionSync {
    pub kind: SyncKind,
    pub status: SyncStatus,
    /// The provider position at which the subscription first streamed from
    /// its slot; `None` while it never did.
    pub stream_start: Option<u64>,
}

/// `(schema, table)` of a row whose first two columns are those names.
fn table_of(row: &pgrx::spi::SpiHeapTupleData<'_>) -> (String, String) {
    (
        row.get::<String>(1).ok().flatten().unwrap_or_default(),
        row.get::<String>(2).ok().flatten().unwrap_or_default(),
    )
}

/// `(schema, table, position)` of a row with a position third.
fn table_at(row: &pgrx::spi::SpiHeapTupleData<'_>) -> (String, String, u64) {
    let (nspname, relname) = table_of(row);
    (nspname, relname, row.get::<i64>(3).ok().flatten().unwrap_or(0) as u64)
}

fn code_of(text: Option<String>, what: &str) -> char {
    text.and_then(|s| s.chars().next())
        .unwrap_or_else(|| pgrx::error!("spock.local_sync_status has no {what}"))
}

/// The subscription-level row, if it exists.
pub fn subscription_sync(client: &SpiClient<'_>, sub_id: u32) -> Option<SubscriptionSync> {
    let row = client
        .select(
            "SELECT sync_status::text, (sync_statuslsn - '0/0'::pg_lsn)::int8, sync_kind::text
               FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_nspname IS NULL AND sync_relname IS NULL",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .next()?;
    let status = SyncStatus::from_code(code_of(row.get(1).unwrap(), "sync_status"))
        .unwrap_or_else(|e| pgrx::error!("{e}"));
    let lsn = row.get::<i64>(2).unwrap().unwrap_or(0) as u64;
    let kind = SyncKind::from_code(code_of(row.get(3).unwrap(), "sync_kind"))
        .unwrap_or_else(|e| pgrx::error!("{e}"));
    Some(SubscriptionSync { kind, status, stream_start: (lsn != 0).then_some(lsn) })
}

/// Inserts the subscription-level row of a new subscription.
pub fn insert_subscription_sync(client: &mut SpiClient<'_>, sub_id: u32, kind: SyncKind, status: SyncStatus) {
    client
        .update(
            "INSERT INTO spock.local_sync_status (sync_kind, sync_subid, sync_status) VALUES ($1, $2, $3)",
            None,
            &[kind.code().to_string().into(), oid(sub_id).into(), status.code().to_string().into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.local_sync_status"));
}

/// Records that the subscription streams from its slot, which the
/// provider says starts at `lsn`, and is ready. The start is kept once set.
pub fn mark_streaming(client: &mut SpiClient<'_>, sub_id: u32, lsn: u64) {
    client
        .update(
            "UPDATE spock.local_sync_status
                SET sync_status = 'r',
                    sync_statuslsn = CASE WHEN sync_statuslsn = '0/0' THEN '0/0'::pg_lsn + $2::numeric
                                          ELSE sync_statuslsn END
              WHERE sync_subid = $1 AND sync_nspname IS NULL AND sync_relname IS NULL",
            None,
            &[oid(sub_id).into(), (lsn.max(1) as i64).into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"));
}

/// `(enabled, subscription-level status)` of a subscription by name, read
/// with a fresh snapshot (a non-read-only SPI statement takes one), for
/// loops that wait for what a worker commits.
pub fn wait_state(client: &mut SpiClient<'_>, name: &str) -> Option<(bool, Option<SyncStatus>)> {
    client
        .update(
            "SELECT s.sub_enabled, l.sync_status::text FROM spock.subscription s
               LEFT JOIN spock.local_sync_status l
                 ON l.sync_subid = s.sub_id AND l.sync_nspname IS NULL AND l.sync_relname IS NULL
              WHERE s.sub_name = $1",
            None,
            &[name.into()],
        )
        .unwrap_or_else(spi_failed("read spock.subscription"))
        .next()
        .map(|r| {
            let status = r.get::<String>(2).ok().flatten().map(|t| {
                SyncStatus::from_code(t.chars().next().unwrap_or(' ')).unwrap_or_else(|e| pgrx::error!("{e}"))
            });
            (r.get::<bool>(1).ok().flatten().unwrap_or(false), status)
        })
}

/// The status of a table's sync row of a subscription, if the row exists,
/// read with a fresh snapshot (for wait loops).
pub fn table_status(
    client: &mut SpiClient<'_>,
    sub_id: u32,
    nspname: &str,
    relname: &str,
) -> Option<SyncStatus> {
    client
        .update(
            "SELECT sync_status::text FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_nspname = $2 AND sync_relname = $3",
            None,
            &[oid(sub_id).into(), nspname.into(), relname.into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .next()
        .map(|r| {
            SyncStatus::from_code(code_of(r.get(1).unwrap(), "sync_status"))
                .unwrap_or_else(|e| pgrx::error!("{e}"))
        })
}

/// Sets the status of the subscription-level row.
pub fn set_subscription_status(client: &mut SpiClient<'_>, sub_id: u32, status: SyncStatus) {
    client
        .update(
            "UPDATE spock.local_sync_status SET sync_status = $2
              WHERE sync_subid = $1 AND sync_nspname IS NULL AND sync_relname IS NULL",
            None,
            &[oid(sub_id).into(), status.code().to_string().into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"));
}

/// Starts the table rows of an initial data copy: the rows of an earlier
/// attempt go, and every table to copy gets a row in status `d`.
pub fn start_table_copies(client: &mut SpiClient<'_>, sub_id: u32, tables: &[(String, String)]) {
    client
        .update(
            "DELETE FROM spock.local_sync_status WHERE sync_subid = $1 AND sync_relname IS NOT NULL",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("delete from spock.local_sync_status"));
    for (nspname, relname) in tables {
        client
            .update(
                "INSERT INTO spock.local_sync_status (sync_kind, sync_subid, sync_nspname, sync_relname, sync_status)
                 VALUES ('d', $1, $2, $3, 'd')",
                None,
                &[oid(sub_id).into(), nspname.as_str().into(), relname.as_str().into()],
            )
            .unwrap_or_else(spi_failed("insert into spock.local_sync_status"));
    }
}

/// Marks every row of a subscription that is not ready as failed.
pub fn fail_unfinished(client: &mut SpiClient<'_>, sub_id: u32) {
    client
        .update(
            "UPDATE spock.local_sync_status SET sync_status = 'f' WHERE sync_subid = $1 AND sync_status <> 'r'",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"));
}

/// The tables of a subscription whose synchronisation failed, as
/// `schema.table`, read with a fresh snapshot (for wait loops).
pub fn failed_tables(client: &mut SpiClient<'_>, sub_id: u32) -> Vec<String> {
    client
        .update(
            "SELECT sync_nspname || '.' || sync_relname FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status = 'f' ORDER BY 1",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .filter_map(|r| r.get::<String>(1).ok().flatten())
        .collect()
}

/// SQL for the copying session: the copy of one table failed. Takes the
/// schema and table names as quoted literals.
pub fn table_failed_sql(sub_id: u32, nspname_literal: &str, relname_literal: &str) -> String {
    format!(
        "UPDATE spock.local_sync_status SET sync_status = 'f'
          WHERE sync_subid = {sub_id} AND sync_nspname = {nspname_literal} AND sync_relname = {relname_literal}"
    )
}

/// SQL for the copying session, run just before it commits: every row of
/// the subscription that did not fail is ready as of the slot's start
/// `lsn`, which is where the subscription starts streaming.
pub fn copy_finished_sql(sub_id: u32, lsn: u64) -> String {
    format!(
        "UPDATE spock.local_sync_status SET sync_status = 'r', sync_statuslsn = '{}'
          WHERE sync_subid = {sub_id} AND sync_status <> 'f'",
        spock_core::stream::format_lsn(lsn.max(1))
    )
}

/// A table whose copy was asked for (status `i`).
#[derive(Clone, Debug)]
pub struct TableRequest {
    pub nspname: String,
    pub relname: String,
    pub truncate: bool,
}

/// Asks for a table's copy: its row gets status `i` (created when missing).
pub fn request_table(client: &mut SpiClient<'_>, sub_id: u32, nspname: &str, relname: &str, truncate: bool) {
    client
        .update(
            "INSERT INTO spock.local_sync_status
                    (sync_kind, sync_subid, sync_nspname, sync_relname, sync_status, sync_truncate)
             VALUES ('d', $1, $2, $3, 'i', $4)
             ON CONFLICT (sync_subid, sync_nspname, sync_relname)
             DO UPDATE SET sync_status = 'i', sync_statuslsn = '0/0', sync_truncate = EXCLUDED.sync_truncate",
            None,
            &[oid(sub_id).into(), nspname.into(), relname.into(), truncate.into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.local_sync_status"));
}

/// Creates a table's row (status `i`) unless it has one; whether it did.
pub fn request_table_if_new(
    client: &mut SpiClient<'_>,
    sub_id: u32,
    nspname: &str,
    relname: &str,
    truncate: bool,
) -> bool {
    !client
        .update(
            "INSERT INTO spock.local_sync_status
                    (sync_kind, sync_subid, sync_nspname, sync_relname, sync_status, sync_truncate)
             VALUES ('d', $1, $2, $3, 'i', $4) ON CONFLICT DO NOTHING RETURNING 1",
            None,
            &[oid(sub_id).into(), nspname.into(), relname.into(), truncate.into()],
        )
        .unwrap_or_else(spi_failed("insert into spock.local_sync_status"))
        .is_empty()
}

/// The next table of a subscription waiting for its copy (status `i`),
/// for the table-sync worker.
pub fn next_request(client: &SpiClient<'_>, sub_id: u32) -> Option<TableRequest> {
    client
        .select(
            "SELECT sync_nspname::text, sync_relname::text, sync_truncate FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status = 'i'
              ORDER BY 1, 2 LIMIT 1",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .next()
        .map(|r| TableRequest {
            nspname: r.get::<String>(1).ok().flatten().unwrap_or_default(),
            relname: r.get::<String>(2).ok().flatten().unwrap_or_default(),
            truncate: r.get::<bool>(3).ok().flatten().unwrap_or(false),
        })
}

/// A table-sync worker starts: the copies an earlier one left unfinished
/// are asked for again. A copy that committed (`w`, `u`) left rows behind,
/// so the new copy truncates first.
pub fn restart_unfinished_copies(client: &mut SpiClient<'_>, sub_id: u32) {
    client
        .update(
            "UPDATE spock.local_sync_status
                SET sync_truncate = sync_truncate OR sync_status IN ('w', 'u'), sync_status = 'i',
                    sync_statuslsn = '0/0'
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status IN ('d', 'w', 'u')",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"));
}

/// Whether a subscription has tables whose copy is asked for or under way
/// (`i`, `d`, `w`, `u`): the apply worker leaves their changes to the
/// table-sync worker.
pub fn tables_being_copied(client: &SpiClient<'_>, sub_id: u32) -> Vec<(String, String)> {
    client
        .select(
            "SELECT sync_nspname::text, sync_relname::text FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status IN ('i', 'd', 'w', 'u')",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .map(|r| table_of(&r))
        .collect()
}

/// The apply worker takes over the copied tables (`w`) at its position
/// `lsn`: they go to `u`, and the table-sync worker applies their changes
/// up to there. Returns the tables.
pub fn start_catch_up(client: &mut SpiClient<'_>, sub_id: u32, lsn: u64) -> Vec<(String, String)> {
    client
        .update(
            "UPDATE spock.local_sync_status SET sync_status = 'u', sync_statuslsn = '0/0'::pg_lsn + $2::numeric
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status = 'w'
             RETURNING sync_nspname::text, sync_relname::text",
            None,
            &[oid(sub_id).into(), (lsn.max(1) as i64).into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"))
        .map(|r| table_of(&r))
        .collect()
}

/// A table's status and position, read with a fresh snapshot (for the
/// hand-over's wait loops).
pub fn table_state(
    client: &mut SpiClient<'_>,
    sub_id: u32,
    nspname: &str,
    relname: &str,
) -> Option<(SyncStatus, u64)> {
    client
        .update(
            "SELECT sync_status::text, (sync_statuslsn - '0/0'::pg_lsn)::int8 FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_nspname = $2 AND sync_relname = $3",
            None,
            &[oid(sub_id).into(), nspname.into(), relname.into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .next()
        .map(|r| {
            let status = SyncStatus::from_code(code_of(r.get(1).unwrap(), "sync_status"))
                .unwrap_or_else(|e| pgrx::error!("{e}"));
            (status, r.get::<i64>(2).ok().flatten().unwrap_or(0) as u64)
        })
}

/// Moves a table's row from status `from` to `to` at `lsn`; whether it was
/// in `from`.
pub fn move_table(
    client: &mut SpiClient<'_>,
    sub_id: u32,
    nspname: &str,
    relname: &str,
    from: SyncStatus,
    to: SyncStatus,
    lsn: u64,
) -> bool {
    !client
        .update(
            "UPDATE spock.local_sync_status SET sync_status = $5, sync_statuslsn = '0/0'::pg_lsn + $6::numeric
              WHERE sync_subid = $1 AND sync_nspname = $2 AND sync_relname = $3 AND sync_status = $4
             RETURNING 1",
            None,
            &[
                oid(sub_id).into(),
                nspname.into(),
                relname.into(),
                from.code().to_string().into(),
                to.code().to_string().into(),
                (lsn.max(1) as i64).into(),
            ],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"))
        .is_empty()
}

/// Tables handed over (`y`): `(schema, table, position)`.
pub fn synchronized_tables(client: &SpiClient<'_>, sub_id: u32) -> Vec<(String, String, u64)> {
    client
        .select(
            "SELECT sync_nspname::text, sync_relname::text, (sync_statuslsn - '0/0'::pg_lsn)::int8
               FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status = 'y'",
            None,
            &[oid(sub_id).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .map(|r| table_at(&r))
        .collect()
}

/// Tables copied from a snapshot later than `position`: `(schema, table,
/// snapshot position)`. Their changes committed before the snapshot are
/// in the copy.
pub fn copied_after(client: &SpiClient<'_>, sub_id: u32, position: u64) -> Vec<(String, String, u64)> {
    client
        .select(
            "SELECT sync_nspname::text, sync_relname::text, (sync_statuslsn - '0/0'::pg_lsn)::int8
               FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL AND sync_status = 'r'
                AND sync_statuslsn > '0/0'::pg_lsn + $2::numeric",
            None,
            &[oid(sub_id).into(), (position as i64).into()],
        )
        .unwrap_or_else(spi_failed("read spock.local_sync_status"))
        .map(|r| table_at(&r))
        .collect()
}

/// Sets a table row's status (the table-level copy's progress).
pub fn set_table_status(
    client: &mut SpiClient<'_>,
    sub_id: u32,
    nspname: &str,
    relname: &str,
    status: SyncStatus,
) {
    client
        .update(
            "UPDATE spock.local_sync_status SET sync_status = $4
              WHERE sync_subid = $1 AND sync_nspname = $2 AND sync_relname = $3",
            None,
            &[oid(sub_id).into(), nspname.into(), relname.into(), status.code().to_string().into()],
        )
        .unwrap_or_else(spi_failed("update spock.local_sync_status"));
}

/// Deletes the rows of tables that are not in `keep` (`schema.table`).
pub fn forget_tables_except(client: &mut SpiClient<'_>, sub_id: u32, keep: &[String]) {
    client
        .update(
            "DELETE FROM spock.local_sync_status
              WHERE sync_subid = $1 AND sync_relname IS NOT NULL
                AND NOT (sync_nspname || '.' || sync_relname = ANY ($2))",
            None,
            &[oid(sub_id).into(), keep.to_vec().into()],
        )
        .unwrap_or_else(spi_failed("delete from spock.local_sync_status"));
}

/// SQL for the copying session: one table was copied from the snapshot at
/// `lsn` (quoted literals of its names) and waits for the hand-over (`w`).
pub fn table_copied_sql(sub_id: u32, nspname_literal: &str, relname_literal: &str, lsn: u64) -> String {
    format!(
        "UPDATE spock.local_sync_status SET sync_status = 'w', sync_statuslsn = '{}', sync_truncate = false
          WHERE sync_subid = {sub_id} AND sync_nspname = {nspname_literal} AND sync_relname = {relname_literal}
            AND sync_status <> 'f'",
        spock_core::stream::format_lsn(lsn.max(1))
    )
}
