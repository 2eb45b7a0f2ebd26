//! The initial synchronisation of a new subscription (behaviour.md §6.1-6.3).
//!
//! The slot is created with an exported snapshot. From that snapshot the
//! subscriber's own `pg_dump` dumps the provider's structure, and every
//! table of the subscribed sets is copied: the provider's `COPY TO` is
//! streamed, a chunk at a time, into `COPY FROM` of a session on this node
//! (through the node's own DSN). That session restores the pre-data part,
//! copies the tables, restores the post-data part and marks everything
//! ready in one transaction, which commits with the subscription's
//! replication origin at the slot's start: the stream then starts exactly
//! after what was copied. Each copied row carries a version that makes
//! last-update-wins decide here as on the provider (§7.3): rows committed
//! before the oldest change that may be missing from the snapshot get a
//! version just older than it, more recent ones keep their own (`Sink`).
//!
//! Failures: anything the provider or the network does is retried by the
//! next worker (nothing was committed; the slot is made again). An error of
//! this node while restoring the structure (an object that already exists,
//! a missing role) marks the subscription failed and disables it. A table
//! whose copy fails is rolled back alone and marked failed; the others go
//! on.

use std::collections::HashMap;
use std::ffi::{CStr, OsString};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use spock_core::stream::format_lsn;
use spock_core::sync::{self as sync_rules, SyncKind, SyncStatus};

use crate::catalog::subscription::Subscription;
use crate::catalog::{self, origin, repset, sync_status};
use crate::errors::raise;
use crate::guc;
use crate::remote::conn::parse_conninfo;
use crate::remote::{self, Conn, PqError, Purpose, provider};
use crate::workers::{self, registry};

thread_local! {
    /// Table-sync requests (`A` queue messages) met in the remote
    /// transaction being applied: `(schema, table)`.
    static REQUESTS: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A table-sync request arrived in the transaction being applied.
pub fn note_request(nspname: String, relname: String) {
    REQUESTS.with(|r| r.borrow_mut().push((nspname, relname)));
}

/// The requests noted since the last call.
pub fn take_requests() -> Vec<(String, String)> {
    REQUESTS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Bytes of copy data handed to the local session at a time.
const CHUNK: usize = 256 * 1024;

/// Why an attempt stopped.
struct SyncError {
    /// This node refused the provider's structure: retrying cannot help.
    permanent: bool,
    message: String,
}

impl SyncError {
    fn retry(what: &str, e: impl std::fmt::Display) -> SyncError {
        SyncError { permanent: false, message: format!("{what}: {e}") }
    }

    fn permanent(what: &str, e: impl std::fmt::Display) -> SyncError {
        SyncError { permanent: true, message: format!("{what}: {e}") }
    }
}

/// Runs the initial synchronisation of `sub` on the replication connection
/// `repl` (which has no slot yet, or a leftover one of a failed attempt).
/// Returns the slot's start, where streaming begins; raises an error when
/// the attempt failed.
pub fn initial_copy(sub: &Subscription, kind: SyncKind, dboid: u32, repl: &mut Conn) -> u64 {
    match attempt(sub, kind, dboid, repl) {
        Ok(start) => start,
        Err(e) => {
            registry::publish_copy(dboid, sub.sub_id, None);
            if e.permanent {
                let sub_id = sub.sub_id;
                BackgroundWorker::transaction(|| {
                    Spi::connect_mut(|client| {
                        sync_status::fail_unfinished(client, sub_id);
                        catalog::subscription::set_enabled(client, sub_id, false);
                    })
                });
                raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "the initial synchronisation of subscription \"{}\" failed and the subscription is \
                         disabled; nothing was written on this node: {}",
                        sub.name, e.message
                    ),
                )
            }
            raise(
                PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                format!(
                    "the initial synchronisation of subscription \"{}\" will be retried: {}",
                    sub.name, e.message
                ),
            )
        }
    }
}

fn attempt(sub: &Subscription, kind: SyncKind, dboid: u32, repl: &mut Conn) -> Result<u64, SyncError> {
    let started = Instant::now();
    let slot = sub.slot_name.clone();
    let structure = matches!(kind, SyncKind::Structure | SyncKind::Full);
    let data = matches!(kind, SyncKind::Data | SyncKind::Full);

    // A slot left by an earlier attempt has lost its snapshot.
    match provider::drop_slot(repl, &slot, Duration::from_secs(30)) {
        Ok(provider::SlotDrop::Dropped) => {
            pgrx::log!("dropped replication slot {slot} of an earlier synchronisation attempt")
        }
        Ok(provider::SlotDrop::Absent) => {}
        Ok(provider::SlotDrop::InUse) => {
            return Err(SyncError::retry("dropping the slot of an earlier attempt", "it is still in use"));
        }
        Err(e) => return Err(SyncError::retry("dropping the slot of an earlier attempt", e.message)),
    }
    let times = provider::copy_times(repl, sub.target_id)
        .map_err(|e| SyncError::retry("reading the provider's clock and progress", e.message))?;
    let (start, snapshot) = provider::create_slot_exported(repl, &slot).map_err(|e| {
        SyncError::retry(&format!("creating replication slot {slot} on the provider"), e.message)
    })?;
    pgrx::log!(
        "created replication slot {slot} on provider \"{}\" at {} with snapshot {snapshot} for the initial \
         synchronisation",
        sub.origin_name,
        format_lsn(start)
    );
    let (sub_id, first) = (sub.sub_id, if structure { SyncStatus::Structure } else { SyncStatus::Data });
    let (local_dsn, reserved) = BackgroundWorker::transaction(|| {
        origin::ensure(&slot);
        let dsn = Spi::connect_mut(|client| {
            sync_status::set_subscription_status(client, sub_id, first);
            catalog::node::local_node(client).map(|n| n.dsn)
        });
        (dsn, Reserved::read())
    });
    let local_dsn =
        local_dsn.ok_or_else(|| SyncError::permanent("this database", "is no spock node any more"))?;

    // The snapshot lives while `repl` runs no other command: the dump and
    // the copying transaction take it first.
    let scripts = if structure { Some(dump_structure(sub, &snapshot, &reserved)?) } else { None };
    let mut source = Source::open(&sub.origin_dsn, &snapshot, &times.recent_since)?;
    let tables = if data || structure {
        provider::sync_tables(&mut source.conn, &sub.replication_sets, &reserved.not_copied(&sub.skip_schema))
            .map_err(|e| SyncError::retry("listing the tables of the subscribed sets", e.message))?
    } else {
        Vec::new()
    };

    let mut target = Target::open(&local_dsn, &slot, start, &times.stamp)?;
    if let Some(scripts) = &scripts {
        target
            .conn
            .query(&scripts.pre_data)
            .map_err(|e| SyncError::permanent("restoring the provider's structure (pre-data)", e.message))?;
        pgrx::log!("subscription {}: restored the provider's structure (pre-data)", sub.name);
    }
    let (mut total_rows, mut failed) = (0u64, 0usize);
    if data {
        let names: Vec<(String, String)> =
            tables.iter().map(|t| (t.nspname.clone(), t.relname.clone())).collect();
        BackgroundWorker::transaction(|| {
            Spi::connect_mut(|client| {
                sync_status::start_table_copies(client, sub_id, &names);
                sync_status::set_subscription_status(client, sub_id, SyncStatus::Data);
            })
        });
        for table in &tables {
            match copy_table(sub, dboid, &mut source, &mut target, table, false)? {
                Some(rows) => total_rows += rows,
                None => failed += 1,
            }
        }
        registry::publish_copy(dboid, sub_id, None);
    }
    if let Some(scripts) = &scripts {
        BackgroundWorker::transaction(|| {
            Spi::connect_mut(|client| {
                sync_status::set_subscription_status(client, sub_id, SyncStatus::Constraints)
            })
        });
        target.conn.query(&scripts.post_data).map_err(|e| {
            SyncError::permanent("restoring the provider's indexes and constraints (post-data)", e.message)
        })?;
        for table in &tables {
            target.adopt_memberships(table)?;
        }
        pgrx::log!("subscription {}: restored the provider's indexes, constraints and triggers", sub.name);
    }
    target.commit(sub_id, start)?;
    let _ = source.conn.query("COMMIT");
    pgrx::log!(
        "subscription {}: initial synchronisation done in {:.1} s: {} table(s), {total_rows} row(s){}; \
         streaming starts at {}",
        sub.name,
        started.elapsed().as_secs_f64(),
        tables.len(),
        if failed > 0 { format!(", {failed} table(s) failed") } else { String::new() },
        format_lsn(start)
    );
    Ok(start)
}

/// A table copied by the table-sync worker (`tablesync`): the
/// replication connection whose temporary slot's snapshot it came from,
/// still open for the catch-up, and that snapshot's position.
pub struct TableCopy {
    pub repl: Conn,
    pub slot: String,
    pub snapshot_at: u64,
    /// False when this node refused the table (marked failed).
    pub copied: bool,
}

/// Copies one requested table of `sub` (`repset_add_table(...,
/// synchronize_data := true)` on the provider, `sub_resync_table`,
/// `sub_alter_sync`) from the snapshot of a temporary slot, at `S`, in one
/// transaction of a session on this node that carries the table-sync
/// origin `sync_origin` (so that nothing of it, the resync's truncate
/// included, is sent on to this node's subscribers), with the copied rows'
/// versions chosen as in the initial copy. The table's row ends in status
/// `w` at `S`. Provider failures are returned (the worker tries again); a
/// table this node refuses is marked failed.
pub fn copy_one_table(
    sub: &Subscription,
    dboid: u32,
    request: &sync_status::TableRequest,
    local_dsn: &str,
    sync_origin: &str,
) -> Result<TableCopy, String> {
    copy_table_at(sub, dboid, request, local_dsn, sync_origin).map_err(|e| {
        registry::publish_copy(dboid, sub.sub_id, None);
        e.message
    })
}

fn copy_table_at(
    sub: &Subscription,
    dboid: u32,
    request: &sync_status::TableRequest,
    local_dsn: &str,
    sync_origin: &str,
) -> Result<TableCopy, SyncError> {
    let started = Instant::now();
    let mut repl = remote::connect(&sub.origin_dsn, Purpose::Replication { subscription: &sub.name })
        .map_err(|e| SyncError::retry("connecting to the provider for a table copy", e.message))?;
    let times = provider::copy_times(&mut repl, sub.target_id)
        .map_err(|e| SyncError::retry("reading the provider's clock and progress", e.message))?;
    let temp_slot = format!("spk_copy_{}_{}", sub.sub_id, std::process::id());
    let (snapshot_at, snapshot) = provider::create_temporary_slot_exported(&mut repl, &temp_slot)
        .map_err(|e| SyncError::retry("creating a temporary slot on the provider", e.message))?;
    let mut source = Source::open(&sub.origin_dsn, &snapshot, &times.recent_since)?;
    let not_copied = BackgroundWorker::transaction(Reserved::read).not_copied(&sub.skip_schema);
    let offered = provider::sync_tables(&mut source.conn, &sub.replication_sets, &not_copied)
        .map_err(|e| SyncError::retry("listing the tables of the subscribed sets", e.message))?;
    let (sub_id, nspname, relname) = (sub.sub_id, request.nspname.clone(), request.relname.clone());
    let name = format!("{nspname}.{relname}");
    BackgroundWorker::transaction(|| {
        Spi::connect_mut(|client| {
            sync_status::set_table_status(client, sub_id, &nspname, &relname, SyncStatus::Data)
        })
    });
    pgrx::log!(
        "subscription {}: copying table {name} from the provider's snapshot at {}",
        sub.name,
        format_lsn(snapshot_at)
    );
    let mut target = Target::open(local_dsn, sync_origin, snapshot_at, &times.stamp)?;
    let (nsp, rel) = (target.conn.literal(&request.nspname), target.conn.literal(&request.relname));
    let copied = match offered.iter().find(|t| t.nspname == request.nspname && t.relname == request.relname) {
        None => {
            pgrx::warning!(
                "subscription {}: table {name} is not in the subscribed replication sets on the provider; \
                 it is marked failed",
                sub.name
            );
            target.run(&sync_status::table_failed_sql(sub_id, &nsp, &rel), "marking a table failed")?;
            false
        }
        Some(table) => {
            let copied = copy_table(sub, dboid, &mut source, &mut target, table, request.truncate)?.is_some();
            if copied {
                target.run(
                    &sync_status::table_copied_sql(sub_id, &nsp, &rel, snapshot_at),
                    "marking a table copied",
                )?;
            }
            copied
        }
    };
    registry::publish_copy(dboid, sub_id, None);
    target.run("COMMIT", "committing the table copy")?;
    let _ = target.conn.query("SELECT pg_catalog.pg_replication_origin_session_reset()");
    let _ = source.conn.query("COMMIT");
    if copied {
        pgrx::log!(
            "subscription {}: copied table {name} in {:.1} s; the apply worker hands over its changes from {} on",
            sub.name,
            started.elapsed().as_secs_f64(),
            format_lsn(snapshot_at)
        );
    }
    Ok(TableCopy { repl, slot: temp_slot, snapshot_at, copied })
}

/// The local session that writes everything of the initial copy.
struct Target {
    conn: Conn,
}

impl Target {
    /// Connects through the node's own DSN and starts the transaction that
    /// commits with the subscription's origin at `start` (never moved back)
    /// and the copy's version `stamp` (a commit time). Triggers do not fire
    /// (replica role), and nothing it does is queued as DDL for this node's
    /// subscribers.
    fn open(local_dsn: &str, origin_name: &str, start: u64, stamp: &str) -> Result<Target, SyncError> {
        let mut conn = remote::connect(local_dsn, Purpose::Query)
            .map_err(|e| SyncError::retry("connecting to this node through its own DSN", e.message))?;
        let origin = conn.literal(origin_name);
        let stamp = conn.literal(stamp);
        conn.query(&format!(
            "SET session_replication_role = replica; SET spock.enable_ddl_replication = off;
             SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;
             SET log_min_error_statement = panic;
             SELECT pg_catalog.pg_replication_origin_session_setup({origin});
             BEGIN;
             SELECT pg_catalog.pg_replication_origin_xact_setup('{}', {stamp}::timestamptz)",
            format_lsn(start)
        ))
        .map_err(|e| SyncError::retry("preparing this node's copying session", e.message))?;
        Ok(Target { conn })
    }

    /// The quoted owner of a local table, `None` when there is no such table.
    fn owner_of(&mut self, qualified: &str) -> Result<Option<String>, SyncError> {
        let literal = self.conn.literal(qualified);
        let rows = self
            .conn
            .query(&format!(
                "SELECT pg_catalog.quote_ident(r.rolname) FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
                  WHERE c.oid = pg_catalog.to_regclass({literal})"
            ))
            .map_err(|e| SyncError::retry("looking up a table on this node", e.message))?;
        Ok(rows.scalar().map(str::to_string))
    }

    fn run(&mut self, sql: &str, what: &str) -> Result<(), SyncError> {
        self.conn.query(sql).map(|_| ()).map_err(|e| SyncError::retry(what, e.message))
    }

    /// Puts a restored table into this node's sets of the names it has on
    /// the provider (those this node has).
    fn adopt_memberships(&mut self, table: &provider::SyncTable) -> Result<(), SyncError> {
        let qualified = self.conn.literal(&table.qualified);
        for set in &table.sets {
            let set = self.conn.literal(set);
            self.conn.query(&repset::adopt_membership_sql(&set, &qualified)).map_err(|e| {
                SyncError::permanent(
                    &format!("adding {} to its replication sets", table.qualified),
                    e.message,
                )
            })?;
        }
        Ok(())
    }

    fn commit(mut self, sub_id: u32, start: u64) -> Result<(), SyncError> {
        let finish = sync_status::copy_finished_sql(sub_id, start);
        self.conn
            .query(&format!("{finish}; COMMIT"))
            .map_err(|e| SyncError::retry("committing the initial copy", e.message))?;
        // The origin is released at once, for the apply worker to take.
        let _ = self.conn.query("SELECT pg_catalog.pg_replication_origin_session_reset()");
        Ok(())
    }
}

/// The provider's side of the copies: a connection in a transaction with
/// the slot's snapshot, and, when this server can keep each copied row's
/// own version (core patch 040), a second connection that looks versions
/// up and the provider's replication origins by the node each stands for.
struct Source {
    conn: Conn,
    versions: Option<Versions>,
    /// Rows committed at or after this time keep their own version.
    recent_since: String,
}

/// Where copied rows' versions come from: the commit timestamp and origin
/// of the transaction that wrote each (its `xmin`), looked up on the
/// provider for a batch of transactions at a time.
struct Versions {
    lookup: Conn,
    /// Provider origin id (as text) to node id.
    origins: HashMap<String, u32>,
}

/// A version: commit timestamp (text, `None` when the provider has none)
/// and node (0: the provider itself).
type Version = (Option<String>, u32);

impl Versions {
    /// The versions of the transactions `xids` (decimal text).
    fn of(&mut self, xids: &[&str]) -> Result<HashMap<String, Version>, PqError> {
        if xids.iter().any(|x| x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit())) {
            return Err(PqError::local("the provider sent a copied row with a malformed xmin"));
        }
        let rows = self.lookup.query(&format!(
            "SELECT x::text, c.timestamp::text, c.roident::text
               FROM pg_catalog.unnest('{{{}}}'::xid[]) x
               LEFT JOIN LATERAL pg_catalog.pg_xact_commit_timestamp_origin(x) c ON true",
            xids.join(",")
        ))?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| {
                let xid = r.first()?.clone()?;
                let ts = r.get(1).cloned().flatten();
                let node =
                    r.get(2).cloned().flatten().and_then(|o| self.origins.get(&o).copied()).unwrap_or(0);
                Some((xid, (ts, node)))
            })
            .collect())
    }
}

impl Source {
    fn open(dsn: &str, snapshot: &str, recent_since: &str) -> Result<Source, SyncError> {
        let connect = || {
            remote::connect(dsn, Purpose::Query)
                .map_err(|e| SyncError::retry("connecting to the provider to copy", e.message))
        };
        let mut conn = connect()?;
        provider::begin_with_snapshot(&mut conn, snapshot)
            .map_err(|e| SyncError::retry("taking the slot's snapshot on the provider", e.message))?;
        let versions = if crate::core_patches::usable(&spock_core::core_patches::SUBXACT_COMMIT_TS) {
            let origins = provider::origin_nodes(&mut conn)
                .map_err(|e| SyncError::retry("reading the provider's replication origins", e.message))?;
            Some(Versions { lookup: connect()?, origins })
        } else {
            None
        };
        Ok(Source { conn, versions, recent_since: recent_since.to_string() })
    }

    /// The `COPY ... TO STDOUT` of a table; with versions, each row ends
    /// with one more field: its `xmin` when it was committed since
    /// `recent_since`, else NULL.
    fn copy_sql(&mut self, table: &provider::SyncTable) -> String {
        let only = if table.partitioned { "" } else { "ONLY " };
        let since = self.conn.literal(&self.recent_since);
        // Row filters (behaviour.md §15) are deparsed over the table's own
        // column names, which the alias x does not hide.
        let filter = table.where_clause();
        match self.versions {
            Some(_) => format!(
                "COPY (SELECT {}, CASE WHEN pg_catalog.pg_xact_commit_timestamp(x.xmin) >= {since}::timestamptz \
                 THEN x.xmin END FROM {only}{} x{filter}) TO STDOUT",
                table.columns_of_x, table.qualified
            ),
            None if table.partitioned || !filter.is_empty() => {
                format!(
                    "COPY (SELECT {} FROM {only}{} x{filter}) TO STDOUT",
                    table.columns_of_x, table.qualified
                )
            }
            None => format!("COPY {} ({}) TO STDOUT", table.qualified, table.columns),
        }
    }
}

/// Runs of rows of one transaction shorter than this are written with
/// `INSERT`, many runs to a round trip; longer ones with `COPY FROM`.
const SMALL_RUN: usize = 64;
/// Bytes of batched statements sent at a time.
const BATCH_BYTES: usize = 1 << 20;

/// The local side of one table's copy: one `COPY FROM` fed in chunks for
/// every row the provider committed before `Source::recent_since` (they
/// get the copy's own version). With versions, the recent rows are held
/// until then and written last, in runs of the same provider transaction,
/// each run in a subtransaction stamped with that transaction's commit
/// timestamp and origin node (`spock.stamp_copied_rows`): a long run through
/// `COPY FROM`, short ones as `INSERT`s batched into one query with their
/// versions looked up together, so that many transactions do not cost
/// round trips each.
struct Sink<'a> {
    target: &'a mut Target,
    versions: Option<&'a mut Versions>,
    local_sql: String,
    insert_sql: String,
    buf: Vec<u8>,
    written: u64,
    /// The provider transaction (`xmin`) of the current run.
    xmin: Option<String>,
    /// The current run's rows while it is short.
    run: Vec<Vec<u8>>,
    /// A `COPY FROM` is open (for the whole table, or the current run).
    copying: bool,
    /// Short runs not sent yet: their transaction and `VALUES` rows.
    pending: Vec<(String, String)>,
    pending_bytes: usize,
    /// Recent rows (committed since `Source::recent_since`), kept until the
    /// table's other rows are written: `(xmin, row)`.
    recent: Vec<(u64, Vec<u8>)>,
}

impl Sink<'_> {
    fn send(&mut self) -> Result<(), PqError> {
        if !self.buf.is_empty() {
            self.target.conn.copy_in_send(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn push(&mut self, data: &[u8]) -> Result<(), PqError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK { self.send() } else { Ok(()) }
    }

    /// The statement that stamps a run's rows with `version`.
    fn stamp_sql(&mut self, version: Option<&Version>) -> String {
        match version {
            Some((Some(ts), node)) => {
                let ts = self.target.conn.literal(ts);
                format!("SELECT spock.stamp_copied_rows({ts}::timestamptz, {node}); ")
            }
            _ => String::new(),
        }
    }

    fn lookup(&mut self, xids: &[&str]) -> Result<HashMap<String, Version>, PqError> {
        match self.versions.as_mut() {
            Some(v) => v.of(xids),
            None => Ok(HashMap::new()),
        }
    }

    /// Sends the short runs collected so far, each stamped.
    fn flush_pending(&mut self) -> Result<(), PqError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut xids: Vec<&str> = pending.iter().map(|(x, _)| x.as_str()).collect();
        xids.sort_unstable();
        xids.dedup();
        let versions = self.lookup(&xids)?;
        let mut sql = String::new();
        for (xid, values) in &pending {
            let stamp = self.stamp_sql(versions.get(xid));
            sql.push_str(&format!(
                "SAVEPOINT spock_version; {}{values}; {stamp}RELEASE SAVEPOINT spock_version;\n",
                self.insert_sql
            ));
        }
        self.target.conn.query(&sql).map(|_| ())
    }

    /// Opens a `COPY FROM` (in a subtransaction for a versioned run).
    fn begin_copy(&mut self, versioned: bool) -> Result<(), PqError> {
        if versioned {
            self.flush_pending()?;
            self.target.conn.query("SAVEPOINT spock_version")?;
        }
        self.target.conn.start_copy_in(&self.local_sql)?;
        self.copying = true;
        Ok(())
    }

    /// Ends the open `COPY FROM` (and stamps and ends the subtransaction
    /// of a versioned run).
    fn end_copy(&mut self, xmin: Option<&str>) -> Result<(), PqError> {
        self.send()?;
        self.written += self.target.conn.copy_in_end()?;
        self.copying = false;
        if let Some(xmin) = xmin {
            let versions = self.lookup(&[xmin])?;
            let stamp = self.stamp_sql(versions.get(xmin));
            self.target.conn.query(&format!("{stamp}RELEASE SAVEPOINT spock_version"))?;
        }
        Ok(())
    }

    /// Writes out (or collects) the current run of a versioned copy.
    fn end_run(&mut self) -> Result<(), PqError> {
        let Some(xmin) = self.xmin.take() else { return Ok(()) };
        if self.copying {
            return self.end_copy(Some(&xmin));
        }
        let rows = std::mem::take(&mut self.run);
        let values: Option<Vec<String>> = rows.iter().map(|r| sync_rules::copy_row_to_values(r)).collect();
        match values {
            Some(values) => {
                let values = values.join(", ");
                self.written += rows.len() as u64;
                self.pending_bytes += values.len();
                self.pending.push((xmin, values));
                if self.pending_bytes >= BATCH_BYTES { self.flush_pending() } else { Ok(()) }
            }
            // Bytes that are not UTF-8 cannot travel as SQL text: COPY.
            None => {
                self.begin_copy(true)?;
                for row in &rows {
                    self.push(row)?;
                }
                self.end_copy(Some(&xmin))
            }
        }
    }

    /// Takes a row of a versioned copy, written by provider transaction `xmin`.
    fn push_versioned(&mut self, data: &[u8], xmin: &[u8]) -> Result<(), PqError> {
        if self.xmin.as_deref().map(str::as_bytes) != Some(xmin) {
            self.end_run()?;
            self.xmin = Some(String::from_utf8_lossy(xmin).into_owned());
        }
        if self.copying {
            self.buf.extend_from_slice(data);
            self.buf.push(b'\n');
            return if self.buf.len() >= CHUNK { self.send() } else { Ok(()) };
        }
        let mut row = Vec::with_capacity(data.len() + 1);
        row.extend_from_slice(data);
        row.push(b'\n');
        self.run.push(row);
        if self.run.len() >= SMALL_RUN {
            // A long run: on through COPY.
            self.begin_copy(true)?;
            for row in std::mem::take(&mut self.run) {
                self.push(&row)?;
            }
        }
        Ok(())
    }

    /// Takes a row of a versioned copy: an older one goes to the table's
    /// `COPY FROM` at once (with the copy's own version), a recent one
    /// waits for the end.
    fn push_row(&mut self, data: &[u8], xmin: &[u8]) -> Result<(), PqError> {
        if xmin == b"\\N" {
            self.buf.extend_from_slice(data);
            self.buf.push(b'\n');
            return if self.buf.len() >= CHUNK { self.send() } else { Ok(()) };
        }
        let xid = std::str::from_utf8(xmin)
            .ok()
            .and_then(|x| x.parse::<u64>().ok())
            .ok_or_else(|| PqError::local("the provider sent a copied row with a malformed xmin"))?;
        let mut row = Vec::with_capacity(data.len() + 1);
        row.extend_from_slice(data);
        row.push(b'\n');
        self.recent.push((xid, row));
        Ok(())
    }

    /// Ends the copy; returns the rows written. The recent rows of a
    /// versioned copy are written last, grouped by the transaction that
    /// wrote them, each group keeping that transaction's version.
    fn finish(&mut self, versioned: bool) -> Result<u64, PqError> {
        if self.copying {
            self.end_copy(None)?;
        }
        if versioned {
            let mut recent = std::mem::take(&mut self.recent);
            recent.sort_by_key(|(xid, _)| *xid);
            for (xid, row) in recent {
                let xmin = xid.to_string();
                let data = row.strip_suffix(b"\n").unwrap_or(&row);
                self.push_versioned(data, xmin.as_bytes())?;
            }
            self.end_run()?;
            self.flush_pending()?;
        }
        Ok(self.written)
    }
}

/// Copies one table from the provider's snapshot. `Ok(None)`: this node
/// refused its rows; the table is marked failed and everything else goes on.
fn copy_table(
    sub: &Subscription,
    dboid: u32,
    source: &mut Source,
    target: &mut Target,
    table: &provider::SyncTable,
    truncate: bool,
) -> Result<Option<u64>, SyncError> {
    let started = Instant::now();
    let name = format!("{}.{}", table.nspname, table.relname);
    let fail = |target: &mut Target, why: &str| -> Result<Option<u64>, SyncError> {
        pgrx::warning!(
            "subscription {}: the initial copy of table {name} failed: {why}; the table is marked failed \
             (spock.sub_show_table shows sync_failed) and the other tables go on",
            sub.name
        );
        let (nsp, rel) = (target.conn.literal(&table.nspname), target.conn.literal(&table.relname));
        target.run(&sync_status::table_failed_sql(sub.sub_id, &nsp, &rel), "marking a table failed")?;
        Ok(None)
    };
    const ROLLBACK: &str = "ROLLBACK TO SAVEPOINT spock_copy; RELEASE SAVEPOINT spock_copy; RESET ROLE";
    let Some(owner) = target.owner_of(&table.qualified)? else {
        return fail(target, "there is no such table on this node");
    };
    // The rows are written with the table owner's rights (behaviour.md §19).
    let role = if guc::APPLY_AS_SUPERUSER.get() { String::new() } else { format!("SET ROLE {owner};") };
    target.run(&format!("SAVEPOINT spock_copy; {role}"), "starting a table's copy")?;
    // Emptied by the copying session, whose changes carry the
    // subscription's origin: the TRUNCATE is never sent on to this node's
    // own subscribers (behaviour.md §6.5).
    if truncate && let Err(e) = target.conn.query(&format!("TRUNCATE ONLY {}", table.qualified)) {
        target.run(ROLLBACK, "rolling back")?;
        return fail(target, &e.message);
    }
    let copy_sql = source.copy_sql(table);
    source
        .conn
        .start_copy_out(&copy_sql)
        .map_err(|e| SyncError::retry(&format!("reading {name} on the provider"), e.message))?;

    let versioned = source.versions.is_some();
    let mut sink = Sink {
        target,
        versions: source.versions.as_mut(),
        local_sql: format!("COPY {} ({}) FROM STDIN", table.qualified, table.columns),
        insert_sql: format!("INSERT INTO {} ({}) VALUES ", table.qualified, table.columns),
        buf: Vec::with_capacity(CHUNK + 8192),
        written: 0,
        xmin: None,
        run: Vec::new(),
        copying: false,
        pending: Vec::new(),
        pending_bytes: 0,
        recent: Vec::new(),
    };
    let mut refused: Option<PqError> = sink.begin_copy(false).err();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let copy_start = workers::now();
    registry::publish_copy(dboid, sub.sub_id, Some(registry::CopyProgress::new(&name, 0, 0, copy_start)));
    // After a refusal the provider's rows are still read to the end, so
    // that its connection can copy the next table.
    while let Some(row) = source
        .conn
        .copy_out_next()
        .map_err(|e| SyncError::retry(&format!("reading {name} on the provider"), e.message))?
    {
        rows += 1;
        bytes += row.len() as u64;
        if refused.is_some() {
            continue;
        }
        let pushed = if versioned {
            match sync_rules::split_last_field(&row) {
                Some((data, xmin)) => sink.push_row(data, xmin),
                None => Err(PqError::local("the provider sent a copied row without its xmin")),
            }
        } else {
            sink.push(&row)
        };
        if let Err(e) = pushed {
            refused = Some(e);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            registry::publish_copy(
                dboid,
                sub.sub_id,
                Some(registry::CopyProgress::new(&name, rows, bytes, copy_start)),
            );
            last_report = Instant::now();
        }
    }
    let outcome = match refused {
        Some(e) => Err(e),
        None => sink.finish(versioned),
    };
    match outcome {
        Ok(written) => {
            target.run("RELEASE SAVEPOINT spock_copy; RESET ROLE", "ending a table's copy")?;
            let secs = started.elapsed().as_secs_f64();
            pgrx::log!(
                "subscription {}: copied table {name}: {written} row(s), {:.1} MB in {secs:.1} s ({:.0} rows/s)",
                sub.name,
                bytes as f64 / 1e6,
                written as f64 / secs.max(1e-6)
            );
            Ok(Some(written))
        }
        Err(e) => {
            // A COPY the server ended with an error is over; one still
            // open is ended so that the rollback can run.
            let _ = target.conn.copy_in_end();
            target.run(ROLLBACK, "rolling back")?;
            fail(target, &e.message)
        }
    }
}

/// The provider's structure as two SQL scripts.
struct Scripts {
    pre_data: String,
    post_data: String,
}

/// Files of one structure dump, removed when dropped.
struct DumpFiles {
    dir: PathBuf,
}

impl DumpFiles {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for DumpFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What this node's reserved objects (sql-api.md §6.15) keep out of an
/// initial copy.
struct Reserved {
    /// Schemas and extensions reserved with `exclude_from_dump`.
    dump_schemas: Vec<String>,
    dump_extensions: Vec<String>,
    /// Schemas reserved with `block_in_repset`: their tables are not copied.
    blocked_schemas: Vec<String>,
}

impl Reserved {
    /// Reads them, in a transaction.
    fn read() -> Reserved {
        let (dump_schemas, dump_extensions) = catalog::reserved::excluded_from_dump();
        Reserved { dump_schemas, dump_extensions, blocked_schemas: catalog::reserved::blocked_schemas() }
    }

    /// The schemas whose tables are not copied: `skip_schema` and the
    /// blocked ones.
    fn not_copied(&self, skip_schema: &[String]) -> Vec<String> {
        let mut all = skip_schema.to_vec();
        all.extend(self.blocked_schemas.iter().filter(|s| !skip_schema.contains(s)).cloned());
        all
    }
}

/// Dumps the provider's schema as of `snapshot` with this server's own
/// `pg_dump` (so the provider's major must not be newer), without the
/// `spock` schema and extension and the `skip_schema` schemas, and turns it
/// into the pre-data and post-data scripts.
fn dump_structure(sub: &Subscription, snapshot: &str, reserved: &Reserved) -> Result<Scripts, SyncError> {
    let bindir = bindir();
    let dir = guc::temp_directory().join(format!("spock-sync-{}-{}", sub.sub_id, std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SyncError::retry(&format!("creating {}", dir.display()), e))?;
    let files = DumpFiles { dir };
    let dump = files.path("structure.dump");
    let (conninfo, password) = client_conninfo(&sub.origin_dsn)?;
    let mut args: Vec<OsString> = vec![
        "--schema-only".into(),
        "--format=custom".into(),
        "--no-publications".into(),
        "--no-subscriptions".into(),
        format!("--snapshot={snapshot}").into(),
        format!("--exclude-schema={}", sync_rules::exact_pattern(sync_rules::OWN_EXTENSION)).into(),
    ];
    for schema in sub.skip_schema.iter().chain(&reserved.dump_schemas) {
        args.push(format!("--exclude-schema={}", sync_rules::exact_pattern(schema)).into());
    }
    args.push("--file".into());
    args.push(dump.clone().into());
    args.push("--dbname".into());
    args.push(conninfo.into());
    run_tool(&bindir.join("pg_dump"), &args, password.as_deref(), &files.path("pg_dump.log"))
        .map_err(|e| SyncError::retry("dumping the provider's structure with pg_dump", e))?;

    let list = files.path("structure.list");
    run_tool(
        &bindir.join("pg_restore"),
        &["--list".into(), "--file".into(), list.clone().into(), dump.clone().into()],
        None,
        &files.path("pg_restore-list.log"),
    )
    .map_err(|e| SyncError::retry("listing the structure dump", e))?;
    let entries = fs::read_to_string(&list).map_err(|e| SyncError::retry("reading the dump's list", e))?;
    let kept: String = entries
        .lines()
        .filter(|l| sync_rules::keep_in_restore(l, &reserved.dump_extensions))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&list, kept).map_err(|e| SyncError::retry("writing the dump's list", e))?;

    let section = |name: &str| -> Result<String, SyncError> {
        let out = files.path(&format!("{name}.sql"));
        run_tool(
            &bindir.join("pg_restore"),
            &[
                format!("--section={name}").into(),
                "--use-list".into(),
                list.clone().into(),
                "--file".into(),
                out.clone().into(),
                dump.clone().into(),
            ],
            None,
            &files.path(&format!("pg_restore-{name}.log")),
        )
        .map_err(|e| SyncError::retry(&format!("writing the {name} script"), e))?;
        fs::read_to_string(&out)
            .map(|text| sync_rules::restore_script(&text))
            .map_err(|e| SyncError::retry(&format!("reading the {name} script"), e))
    };
    Ok(Scripts { pre_data: section("pre-data")?, post_data: section("post-data")? })
}

/// The directory of this server's programs.
fn bindir() -> PathBuf {
    // SAFETY: my_exec_path is the NUL-terminated path of the postgres
    // executable, set at start-up and never changed.
    let exec = unsafe { CStr::from_ptr((&raw const pg_sys::my_exec_path).cast()) };
    Path::new(&*exec.to_string_lossy()).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The provider's connection string for a client program: spock's extra
/// connection options, then the DSN; the password apart.
fn client_conninfo(dsn: &str) -> Result<(String, Option<String>), SyncError> {
    let mut pairs: Vec<(String, String)> = parse_conninfo(&guc::extra_connection_options())
        .map_err(|e| SyncError::permanent("reading spock.extra_connection_options", e))?
        .into_iter()
        .filter(|(k, _)| k != "dbname")
        .collect();
    pairs.extend(parse_conninfo(dsn).map_err(|e| SyncError::permanent("reading the provider's DSN", e))?);
    Ok(spock_core::dsn::client_conninfo(&pairs))
}

/// Runs a PostgreSQL client program to its end, waiting interruptibly; its
/// messages go to `log`, whose content is the error when it fails.
fn run_tool(program: &Path, args: &[OsString], password: Option<&str>, log: &Path) -> Result<(), String> {
    let log_file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let status = loop {
        if let Some(status) =
            child.try_wait().map_err(|e| format!("waiting for {}: {e}", program.display()))?
        {
            break status;
        }
        // SAFETY: sleeps on this process's latch for at most 100 ms.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                100,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        // SAFETY: reads the interrupt flags of this process.
        if unsafe { pg_sys::ProcDiePending != 0 || pg_sys::QueryCancelPending != 0 } {
            // The program does not outlive the worker.
            let _ = child.kill();
            let _ = child.wait();
        }
        pgrx::check_for_interrupts!();
    };
    if status.success() {
        return Ok(());
    }
    let messages = fs::read_to_string(log).unwrap_or_default();
    Err(format!(
        "{} failed ({status}): {}",
        program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        spock_core::dsn::mask_passwords(messages.trim())
    ))
}
