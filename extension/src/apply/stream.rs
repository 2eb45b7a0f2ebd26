//! The replication stream of one subscription: connect to the provider,
//! agree on a protocol version, make sure the slot is the one this
//! subscription has been streaming from (creating it only before the first
//! stream, `spock_core::sync::slot_plan`) or running the initial copy
//! (`sync`) that creates it, set up the replication origin,
//! stream from the origin's position, hand each message to the dispatcher,
//! and report back only positions whose local commits are flushed.

use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use spock_core::protocol;
use spock_core::stream::{self, FromProvider, format_lsn};
use spock_core::sync::{SlotPlan, SyncKind, SyncStatus, needs_initial_copy, slot_plan};

use super::dispatch::{Dispatcher, local_transaction};
use super::wait;
use crate::catalog::subscription::Subscription;
use crate::catalog::{origin, sync_status};
use crate::errors::{raise, raise_hint};
use crate::guc;
use crate::remote::{self, Conn, PqError, Purpose, provider};
use crate::workers::{self, registry};

/// How often feedback is sent when nothing asks for it.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

fn connect_error(e: PqError, what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE, format!("{what}: {}", e.message))
}

/// A stream message: read now, or kept while a change waited for a lock.
enum Data {
    Read(remote::CopyData),
    Kept(Vec<u8>),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Read(d) => d,
            Data::Kept(v) => v,
        }
    }
}

pub struct Stream {
    sub: Subscription,
    dboid: u32,
    dispatcher: Dispatcher,
    /// Highest provider position received (data or keepalive).
    received: u64,
    last_feedback: Instant,
    last_message: Instant,
    /// When the table-sync state was last read from the catalog.
    last_sync_check: Option<Instant>,
    /// When a reply was last asked for because the stream was silent.
    last_ping: Instant,
}

impl Stream {
    pub fn new(sub: Subscription, dboid: u32) -> Stream {
        Stream {
            dispatcher: Dispatcher::new(&sub, dboid),
            sub,
            dboid,
            received: 0,
            last_feedback: Instant::now(),
            last_message: Instant::now(),
            last_sync_check: None,
            last_ping: Instant::now(),
        }
    }

    fn connect(&self) -> Conn {
        remote::connect(&self.sub.origin_dsn, Purpose::Replication { subscription: &self.sub.name })
            .unwrap_or_else(|e| {
                connect_error(e, &format!("cannot connect to provider \"{}\"", self.sub.origin_name))
            })
    }

    /// Protocol negotiation, on the replication connection.
    fn negotiate(&self, conn: &mut Conn) -> u32 {
        let theirs = provider::protocol_versions(conn)
            .unwrap_or_else(|e| connect_error(e, "cannot ask the provider for its protocol versions"));
        protocol::negotiate((protocol::MIN_PROTO_VERSION, protocol::MAX_PROTO_VERSION), theirs)
            .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e))
    }

    /// Makes sure the slot is there (creating it only if this subscription
    /// never streamed, see `slot_plan`), records where the subscription's
    /// stream starts, and takes over the replication origin. Returns the
    /// origin's position, where streaming resumes.
    fn prepare(&self, conn: &mut Conn) -> u64 {
        let (sub_id, slot) = (self.sub.sub_id, self.sub.slot_name.clone());
        let sync = BackgroundWorker::transaction(|| {
            Spi::connect(|client| sync_status::subscription_sync(client, sub_id))
        });
        let stream_start = sync.and_then(|s| s.stream_start);
        let kind = sync.map_or(SyncKind::Init, |s| s.kind);
        let start = if needs_initial_copy(kind, stream_start) {
            super::sync::initial_copy(&self.sub, kind, self.dboid, conn)
        } else {
            self.slot_start(conn, stream_start)
        };
        let origin = BackgroundWorker::transaction(move || {
            Spi::connect_mut(|client| sync_status::mark_streaming(client, sub_id, start));
            origin::ensure(&slot)
        });
        // Taken over in a transaction that writes nothing: only the apply
        // transactions (and origin moves) carry the origin in their commit
        // timestamps, which is how progress is recovered after a crash.
        BackgroundWorker::transaction(move || origin::setup_session(origin))
    }

    /// Where the stream of a subscription without an initial copy starts.
    fn slot_start(&self, conn: &mut Conn, stream_start: Option<u64>) -> u64 {
        let slot = &self.sub.slot_name;
        let position = provider::slot_position(conn, slot)
            .unwrap_or_else(|e| connect_error(e, "cannot list the provider's replication slots"));
        match slot_plan(position.is_some(), stream_start) {
            SlotPlan::Use => position.unwrap_or(0),
            SlotPlan::Create => {
                let lsn = provider::create_slot(conn, slot).unwrap_or_else(|e| {
                    connect_error(e, &format!("cannot create replication slot {slot} on the provider"))
                });
                pgrx::log!(
                    "created replication slot {slot} on provider \"{}\" at {}",
                    self.sub.origin_name,
                    format_lsn(lsn)
                );
                lsn
            }
            SlotPlan::Missing => raise_hint(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!(
                    "replication slot \"{slot}\" of subscription \"{}\" does not exist on provider \"{}\"; \
                     the changes the provider made since this subscription last received from it are \
                     not available any more, so spock does not create a new slot",
                    self.sub.name, self.sub.origin_name
                ),
                "Was the slot dropped, or the provider restored from a backup or failed over? Drop and \
                 re-create the subscription (spock.sub_drop, spock.sub_create) to start again from the \
                 provider's current state, after making the two nodes' data equal.",
            ),
        }
    }

    pub fn run(mut self) {
        let mut conn = self.connect();
        let version = self.negotiate(&mut conn);
        let old_values = provider::sends_old_values(&mut conn)
            .unwrap_or_else(|e| connect_error(e, "cannot ask the provider for its core patches"));
        self.dispatcher.provider_sends_old_values(&self.sub.origin_name, old_values);
        let start = self.prepare(&mut conn);
        self.received = start;
        self.dispatcher.start_at(start);
        self.tables_at_start(start);
        // SAFETY: reads the origin `prepare` set up for this session.
        let origin = unsafe { pg_sys::replorigin_session_origin };
        super::progress::start(self.dboid, self.sub.sub_id, origin, start);
        let options = provider::stream_options(
            version,
            &self.sub.replication_sets,
            &self.sub.forward_origins,
            self.sub.target_id,
        );
        provider::start_replication(&mut conn, &self.sub.slot_name, start, &options).unwrap_or_else(|e| {
            connect_error(e, &format!("cannot start streaming from provider \"{}\"", self.sub.origin_name))
        });
        registry::mark_streaming(self.dboid, self.sub.sub_id);
        // From here on the connection is shared with `wait`, which reads
        // the stream while a change waits for a lock.
        wait::attach(conn);
        // A keepalive at once tells where the provider's WAL is.
        self.send_feedback(true);
        pgrx::log!(
            "spock apply worker for subscription {} is streaming from provider \"{}\" at {}",
            self.sub.name,
            self.sub.origin_name,
            format_lsn(start)
        );
        self.last_message = Instant::now();
        loop {
            workers::reload_config_if_asked();
            if crate::hooks::readonly::stops_apply() {
                // Between two messages: whatever is applied is committed
                // with its origin position, and a transaction half applied
                // is rolled back by the exit and comes again.
                pgrx::log!(
                    "spock apply worker for subscription {} stops applying: spock.readonly = all; it resumes where it \
                     stopped when the mode is relaxed",
                    self.sub.name
                );
                // SAFETY: ends the worker as PostgreSQL ends a background
                // worker, aborting any open transaction on the way out.
                unsafe { pg_sys::proc_exit(0) };
            }
            self.dispatcher.prune_resolutions_if_due();
            wait::with_conn(|c| c.consume_input())
                .unwrap_or_else(|e| connect_error(e, "lost the connection to the provider"));
            let mut got_any = false;
            // What was read while a change waited for a lock comes first.
            while let Some(data) = wait::next_pending().map(Data::Kept).or_else(|| {
                wait::with_conn(|c| c.get_copy_data())
                    .unwrap_or_else(|e| connect_error(e, "the provider's stream failed"))
                    .map(Data::Read)
            }) {
                got_any = true;
                self.last_message = Instant::now();
                match stream::parse(&data) {
                    Ok(FromProvider::XLogData { wal_end, payload, .. }) => {
                        self.received = self.received.max(wal_end);
                        super::progress::received(self.received, wal_end);
                        let messages = protocol::decode_all(payload).unwrap_or_else(|e| {
                            raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e.to_string())
                        });
                        for msg in messages {
                            self.dispatcher.handle(msg);
                        }
                    }
                    Ok(FromProvider::Keepalive { wal_end, reply_requested, .. }) => {
                        self.received = self.received.max(wal_end);
                        super::progress::received(self.received, wal_end);
                        if reply_requested {
                            self.send_feedback(false);
                        }
                    }
                    Err(e) => raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e),
                }
                pgrx::check_for_interrupts!();
            }
            if self.last_feedback.elapsed() >= FEEDBACK_INTERVAL {
                self.send_feedback(false);
            }
            if self.dispatcher.between_transactions() {
                super::pause::hold_if_asked(self.dboid, self.sub.sub_id, &self.sub.name);
                if self.dispatcher.has_pending_copies() {
                    self.tend_table_sync();
                }
            }
            super::progress::tick();
            if got_any {
                continue;
            }
            let idle = guc::APPLY_IDLE_TIMEOUT.get();
            // A walsender whose subscriber keeps sending feedback sends
            // nothing while its WAL is idle; after half the idle timeout
            // of silence, a reply is asked for, so that only a provider
            // that is really gone (or a network that drops everything)
            // reaches the timeout.
            let half = Duration::from_secs(idle.max(0) as u64) / 2;
            if idle > 0 && self.last_message.elapsed() > half && self.last_ping.elapsed() > half {
                self.send_feedback(true);
                self.last_ping = Instant::now();
            }
            if idle > 0 && self.last_message.elapsed() > Duration::from_secs(idle as u64) {
                raise(
                    PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                    format!(
                        "nothing arrived from provider \"{}\" for {idle} s; reconnecting",
                        self.sub.origin_name
                    ),
                );
            }
            wait::wait_for_provider(FEEDBACK_INTERVAL, pg_sys::PG_WAIT_EXTENSION);
        }
    }

    /// What the table-level copies left when this worker starts: tables
    /// copied from a snapshot later than `start` (their earlier changes are
    /// in the copy), tables handed over (`y`, now ready), and tables whose
    /// copy is asked for or under way, whose changes are the table-sync
    /// worker's.
    fn tables_at_start(&mut self, start: u64) {
        let sub_id = self.sub.sub_id;
        let (copied, pending) = local_transaction(|| {
            Spi::connect_mut(|client| {
                let mut copied = sync_status::copied_after(client, sub_id, start);
                for (nspname, relname, lsn) in sync_status::synchronized_tables(client, sub_id) {
                    sync_status::move_table(
                        client,
                        sub_id,
                        &nspname,
                        &relname,
                        SyncStatus::Synchronized,
                        SyncStatus::Ready,
                        lsn,
                    );
                    copied.push((nspname, relname, lsn));
                }
                (copied, sync_status::tables_being_copied(client, sub_id))
            })
        });
        self.dispatcher.set_copied(copied);
        self.dispatcher.set_pending(pending);
    }

    /// Between transactions, while tables are the table-sync worker's: hand
    /// a copied table over when the table-sync worker asks, and otherwise,
    /// once a second, follow the catalog (a copy that failed) and start the
    /// table-sync worker when none runs.
    fn tend_table_sync(&mut self) {
        let (dboid, sub_id) = (self.dboid, self.sub.sub_id);
        if registry::handover_wanted(dboid, sub_id) {
            self.hand_over();
            return;
        }
        if self.last_sync_check.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last_sync_check = Some(Instant::now());
        let pending = BackgroundWorker::transaction(|| {
            Spi::connect(|client| sync_status::tables_being_copied(client, sub_id))
        });
        self.dispatcher.keep_pending(&pending);
        self.dispatcher.set_pending(pending.clone());
        let delay = i64::from(guc::RESTART_DELAY_DEFAULT.get()) * 1000;
        if !pending.is_empty() && registry::sync_may_launch(dboid, sub_id, delay) {
            crate::workers::manager::launch_sync(dboid, sub_id, &self.sub.name);
        }
    }

    /// The hand-over (behaviour.md §6.5): the copied tables (`w`) go to
    /// `u` at the position this worker has applied up to; the table-sync
    /// worker applies their changes up to there and marks them `y`; from
    /// then on this worker applies them (ready, `r`).
    fn hand_over(&mut self) {
        let (dboid, sub_id, position) = (self.dboid, self.sub.sub_id, self.dispatcher.position());
        let tables = local_transaction(|| {
            Spi::connect_mut(|client| sync_status::start_catch_up(client, sub_id, position))
        });
        if tables.is_empty() {
            return;
        }
        let names: Vec<String> = tables.iter().map(|(n, r)| format!("{n}.{r}")).collect();
        pgrx::log!(
            "subscription {}: the table-sync worker catches table {} up to {}",
            self.sub.name,
            names.join(", "),
            format_lsn(position)
        );
        let mut waiting = tables;
        while !waiting.is_empty() {
            // Whether the table-sync worker runs, asked before its states are
            // read: a worker that marked its tables and exited between the
            // two reads is then seen with its tables marked.
            let sync_running = registry::sync_running(dboid, sub_id);
            let states: Vec<_> = BackgroundWorker::transaction(|| {
                Spi::connect_mut(|client| {
                    waiting.iter().map(|(n, r)| sync_status::table_state(client, sub_id, n, r)).collect()
                })
            });
            let mut still = Vec::new();
            for (table, state) in std::mem::take(&mut waiting).into_iter().zip(states) {
                match state {
                    Some((SyncStatus::CatchUp, _)) => still.push(table),
                    Some((SyncStatus::Synchronized, lsn)) => {
                        let (n, r) = (table.0.clone(), table.1.clone());
                        local_transaction(|| {
                            Spi::connect_mut(|client| {
                                sync_status::move_table(
                                    client,
                                    sub_id,
                                    &n,
                                    &r,
                                    SyncStatus::Synchronized,
                                    SyncStatus::Ready,
                                    lsn,
                                )
                            })
                        });
                        pgrx::log!(
                            "subscription {}: table {n}.{r} is handed over; its changes from {} on are applied here",
                            self.sub.name,
                            format_lsn(lsn)
                        );
                        self.dispatcher.handed_over(table, Some(lsn));
                    }
                    // Failed or dropped: its changes are applied as they come.
                    Some((SyncStatus::Failed, _)) | None => self.dispatcher.handed_over(table, None),
                    // Asked for again meanwhile: still the table-sync worker's.
                    Some(_) => {}
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if !sync_running {
                // Left as they are: the next table-sync worker copies them
                // again, and their changes stay its own meanwhile.
                pgrx::warning!(
                    "subscription {}: the table-sync worker stopped while it caught up table(s) {}; they are \
                     copied again",
                    self.sub.name,
                    names.join(", ")
                );
                return;
            }
            if self.last_feedback.elapsed() >= FEEDBACK_INTERVAL {
                self.send_feedback(false);
            }
            wait::nap(50);
        }
    }

    fn send_feedback(&mut self, reply_requested: bool) {
        // SAFETY: reads the local WAL flush position.
        let local_flush = unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) };
        let flushed = self.dispatcher.flushed(local_flush, self.received);
        let msg = stream::feedback(self.received, flushed, flushed, workers::now(), reply_requested);
        wait::with_conn(|c| c.put_copy_data(&msg))
            .unwrap_or_else(|e| connect_error(e, "cannot send feedback to the provider"));
        wait::note_feedback(self.received, flushed);
        self.last_feedback = Instant::now();
    }
}
