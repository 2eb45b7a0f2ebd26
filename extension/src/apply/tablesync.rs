//! The table-sync worker of a subscription (behaviour.md §6.5): copies the
//! tables whose copy was asked for after the subscription began to stream,
//! one at a time, while the apply worker streams on and leaves those
//! tables' changes to it; then hands each table over.
//!
//! For one table: a temporary slot on the provider gives a snapshot at `S`;
//! the table is copied from it (`sync::copy_one_table`, truncating first
//! for a resync) and its row goes to `w`. The apply worker, between two
//! transactions, moves it to `u` at `P`, the position it has applied up to,
//! and waits. This worker then streams the temporary slot from `S` and
//! applies the table's changes of every transaction committed before `P`
//! (none when `P <= S`), marks the row `y` at `max(S, P)`, and the apply
//! worker applies the table's changes from there on (`r`). Every change of
//! the table is applied once: before `S` by the copy, between `S` and `P`
//! here, after `P` by the apply worker.
//!
//! Its commits carry an origin of their own (`origin::sync_origin_name`):
//! nothing it writes is sent on to this node's subscribers, and
//! last-update-wins sees its rows as the provider's. A worker that stops
//! half-way leaves the table to the next one, which copies it again.

use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use spock_core::protocol::{self, Message};
use spock_core::stream::{self, FromProvider, format_lsn};
use spock_core::sync::SyncStatus;

use super::dispatch::Dispatcher;
use super::sync::{self, TableCopy};
use super::wait;
use crate::catalog::subscription::Subscription;
use crate::catalog::{self, origin, sync_status};
use crate::errors::raise;
use crate::remote::{PqError, provider};
use crate::workers::{self, registry};

/// How often the worker asks the provider where its WAL is, while catching up.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

fn provider_failed(sub: &Subscription, what: &str, e: PqError) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        format!("table-sync worker of subscription \"{}\": {what}: {}", sub.name, e.message),
    )
}

/// The entry point of a table-sync worker (started by the subscription's
/// apply worker).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_sync_main(arg: pg_sys::Datum) {
    let Some((sub, dboid)) = super::start_worker(arg, registry::Kind::Sync) else { return };
    super::push_error_context(&format!("spock table-sync worker for subscription {}", sub.name));
    super::apply_session_settings(&format!("{} sync", sub.name));
    run(&sub, dboid);
}

fn run(sub: &Subscription, dboid: u32) {
    let sub_id = sub.sub_id;
    let sync_origin = origin::sync_origin_name(&sub.slot_name);
    let (origin_id, local_dsn) = BackgroundWorker::transaction(|| {
        Spi::connect_mut(|client| {
            // Copies an earlier worker left half-way are made again.
            sync_status::restart_unfinished_copies(client, sub_id);
            (origin::ensure(&sync_origin), catalog::node::local_node(client).map(|n| n.dsn))
        })
    });
    let Some(local_dsn) = local_dsn else { return };
    while let Some(request) =
        BackgroundWorker::transaction(|| Spi::connect(|client| sync_status::next_request(client, sub_id)))
    {
        let name = format!("{}.{}", request.nspname, request.relname);
        let copy = sync::copy_one_table(sub, dboid, &request, &local_dsn, &sync_origin).unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                format!("the copy of table {name} of subscription \"{}\" will be retried: {e}", sub.name),
            )
        });
        if copy.copied {
            hand_over(sub, dboid, &request, copy, origin_id);
        }
    }
}

/// Waits for the apply worker to take the copied table over (`u` at `P`),
/// catches the table up to `P`, and marks it `y`.
fn hand_over(
    sub: &Subscription,
    dboid: u32,
    request: &sync_status::TableRequest,
    copy: TableCopy,
    origin_id: pg_sys::RepOriginId,
) {
    let (sub_id, nspname, relname) = (sub.sub_id, request.nspname.as_str(), request.relname.as_str());
    registry::set_handover_wanted(dboid, sub_id, true);
    let until = loop {
        let state = BackgroundWorker::transaction(|| {
            Spi::connect_mut(|client| sync_status::table_state(client, sub_id, nspname, relname))
        });
        match state {
            Some((SyncStatus::CatchUp, lsn)) => break lsn,
            Some((SyncStatus::Waiting, _)) => {}
            // Dropped, or asked for again: the copy is given up.
            _ => {
                registry::set_handover_wanted(dboid, sub_id, false);
                return;
            }
        }
        wait::nap(50);
        workers::reload_config_if_asked();
    };
    registry::set_handover_wanted(dboid, sub_id, false);
    let at = if until > copy.snapshot_at {
        catch_up(sub, dboid, request, copy, until, origin_id);
        until
    } else {
        copy.snapshot_at
    };
    let moved = BackgroundWorker::transaction(|| {
        Spi::connect_mut(|client| {
            sync_status::move_table(
                client,
                sub_id,
                nspname,
                relname,
                SyncStatus::CatchUp,
                SyncStatus::Synchronized,
                at,
            )
        })
    });
    if moved {
        pgrx::log!(
            "subscription {}: table {nspname}.{relname} is synchronised up to {}; the apply worker takes it over",
            sub.name,
            format_lsn(at)
        );
    }
}

/// Streams the temporary slot of the copy from its snapshot and applies the
/// table's changes of the transactions committed before `until`.
fn catch_up(
    sub: &Subscription,
    dboid: u32,
    request: &sync_status::TableRequest,
    mut copy: TableCopy,
    until: u64,
    origin_id: pg_sys::RepOriginId,
) {
    let started = Instant::now();
    let repl = &mut copy.repl;
    let theirs = provider::protocol_versions(repl)
        .unwrap_or_else(|e| provider_failed(sub, "cannot ask the provider for its protocol versions", e));
    let version = protocol::negotiate((protocol::MIN_PROTO_VERSION, protocol::MAX_PROTO_VERSION), theirs)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e));
    let old_values = provider::sends_old_values(repl)
        .unwrap_or_else(|e| provider_failed(sub, "cannot ask the provider for its core patches", e));
    let mut dispatcher = Dispatcher::for_table(sub, dboid, &request.nspname, &request.relname);
    dispatcher.provider_sends_old_values(&sub.origin_name, old_values);
    dispatcher.start_at(copy.snapshot_at);
    BackgroundWorker::transaction(move || origin::setup_session(origin_id));
    let options =
        provider::stream_options(version, &sub.replication_sets, &sub.forward_origins, sub.target_id);
    provider::start_replication(repl, &copy.slot, copy.snapshot_at, &options)
        .unwrap_or_else(|e| provider_failed(sub, "cannot stream the copy's temporary slot", e));
    wait::attach(copy.repl);
    let mut received = copy.snapshot_at;
    let mut last_feedback: Option<Instant> = None;
    'stream: loop {
        if last_feedback.is_none_or(|t| t.elapsed() >= FEEDBACK_INTERVAL) {
            // Asks for a keepalive, which tells how far the provider has sent.
            let msg = stream::feedback(received, 0, 0, workers::now(), true);
            wait::with_conn(|c| c.put_copy_data(&msg))
                .unwrap_or_else(|e| provider_failed(sub, "cannot send feedback", e));
            last_feedback = Some(Instant::now());
        }
        wait::with_conn(|c| c.consume_input())
            .unwrap_or_else(|e| provider_failed(sub, "lost the connection to the provider", e));
        while let Some(data) = wait::next_pending().or_else(|| {
            wait::with_conn(|c| c.get_copy_data())
                .unwrap_or_else(|e| provider_failed(sub, "the provider's stream failed", e))
                .map(|d| d.to_vec())
        }) {
            match stream::parse(&data) {
                Ok(FromProvider::XLogData { wal_end, payload, .. }) => {
                    received = received.max(wal_end);
                    let messages = protocol::decode_all(payload)
                        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e.to_string()));
                    for msg in messages {
                        if let Message::Begin { final_lsn, .. } = &msg
                            && *final_lsn >= until
                        {
                            // The apply worker applied everything before `until`.
                            break 'stream;
                        }
                        dispatcher.handle(msg);
                    }
                }
                Ok(FromProvider::Keepalive { wal_end, .. }) => {
                    received = received.max(wal_end);
                    // The provider sent everything before `wal_end`.
                    if wal_end >= until && dispatcher.between_transactions() {
                        break 'stream;
                    }
                }
                Err(e) => raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e),
            }
            pgrx::check_for_interrupts!();
        }
        wait::wait_for_provider(Duration::from_millis(200), pg_sys::PG_WAIT_EXTENSION);
    }
    // The origin is given back: the next table's copying session takes it.
    BackgroundWorker::transaction(origin::reset_session);
    pgrx::log!(
        "subscription {}: table {}.{} caught up from {} to {} in {:.1} s",
        sub.name,
        request.nspname,
        request.relname,
        format_lsn(copy.snapshot_at),
        format_lsn(until),
        started.elapsed().as_secs_f64()
    );
}
