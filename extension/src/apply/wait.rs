//! Waiting for a table lock without going deaf to the provider (behaviour.md
//! §13.2): while a local session holds a lock the next change needs, the
//! apply worker keeps reading the stream, so that `received_lsn` and
//! `remote_insert_lsn` go on moving (and the provider's walsender keeps
//! getting feedback). What arrives meanwhile is kept, in order, and
//! dispatched once the change goes on.
//!
//! The worker waits this way only as long as nobody waits for a lock of its
//! own transaction: a wait that could be part of a deadlock is a normal
//! lock wait, which the deadlock detector sees.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use spock_core::stream::{self, FromProvider};

use crate::errors::raise;
use crate::remote::Conn;

/// Most bytes of stream messages kept while waiting; beyond, the worker
/// stops reading until the change goes on.
const PENDING_LIMIT: usize = 64 << 20;

/// How often the last feedback is repeated while waiting.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// The provider connection while streaming.
    static CONN: RefCell<Option<Conn>> = const { RefCell::new(None) };
    /// Stream messages read while waiting, not yet dispatched.
    static PENDING: RefCell<VecDeque<Vec<u8>>> = const { RefCell::new(VecDeque::new()) };
    static PENDING_BYTES: Cell<usize> = const { Cell::new(0) };
    /// Relations this transaction locked for writing.
    static LOCKED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Whether a lock may be waited for while reading (not in exception
    /// mode, where subtransactions release locks on rollback).
    static READ_WHILE_WAITING: Cell<bool> = const { Cell::new(false) };
    /// The last feedback message sent.
    static LAST_FEEDBACK: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    static RECEIVED: Cell<u64> = const { Cell::new(0) };
}

/// Hands the streaming connection over for the rest of the worker's life.
pub fn attach(conn: Conn) {
    CONN.with(|c| *c.borrow_mut() = Some(conn));
}

/// Runs `f` on the streaming connection.
pub fn with_conn<R>(f: impl FnOnce(&mut Conn) -> R) -> R {
    CONN.with(|c| f(c.borrow_mut().as_mut().expect("the streaming connection is attached")))
}

/// The oldest message read while waiting, if any.
pub fn next_pending() -> Option<Vec<u8>> {
    let msg = PENDING.with(|p| p.borrow_mut().pop_front())?;
    PENDING_BYTES.with(|b| b.set(b.get() - msg.len()));
    Some(msg)
}

/// A remote transaction begins; `read_while_waiting` says whether its
/// changes may wait for locks while reading the stream.
pub fn begin_transaction(read_while_waiting: bool) {
    LOCKED.with(|l| l.borrow_mut().clear());
    READ_WHILE_WAITING.with(|r| r.set(read_while_waiting));
}

/// Notes the feedback just sent (repeated while waiting) and how far the
/// stream has been received.
pub fn note_feedback(write: u64, flush: u64) {
    LAST_FEEDBACK.with(|f| f.set(Some((write, flush))));
    RECEIVED.with(|r| r.set(r.get().max(write)));
}

/// Locks a table for writing until the transaction ends, reading the
/// stream while a local session holds a conflicting lock.
pub fn lock_table(relid: pg_sys::Oid) {
    let mode = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    // SAFETY: lock manager calls inside the apply transaction.
    unsafe {
        if !pg_sys::ConditionalLockRelationOid(relid, mode) {
            let mut last_feedback = Instant::now();
            loop {
                if !READ_WHILE_WAITING.with(|r| r.get())
                    || CONN.with(|c| c.borrow().is_none())
                    || others_wait_for_us()
                {
                    pg_sys::LockRelationOid(relid, mode);
                    break;
                }
                if last_feedback.elapsed() >= FEEDBACK_INTERVAL {
                    repeat_feedback();
                    last_feedback = Instant::now();
                }
                read_or_nap(Duration::from_millis(100), pg_sys::PG_WAIT_LOCK);
                if pg_sys::ConditionalLockRelationOid(relid, mode) {
                    break;
                }
            }
        }
    }
    LOCKED.with(|l| {
        let mut l = l.borrow_mut();
        if !l.contains(&relid) {
            l.push(relid);
        }
    });
}

/// Waits until the server clock reaches `until` (a PostgreSQL timestamp):
/// the apply delay (behaviour.md §18). The stream is read meanwhile and
/// feedback repeated, as during a lock wait, so that the provider neither
/// times the connection out nor stops sending; `between` runs at every
/// turn (a pause request is honoured there).
pub fn delay_until(until: i64, between: &mut dyn FnMut()) {
    let mut last_feedback = Instant::now();
    loop {
        between();
        // SAFETY: reads the server clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        if now >= until {
            return;
        }
        let left = Duration::from_micros((until - now) as u64).min(Duration::from_millis(100));
        if CONN.with(|c| c.borrow().is_none()) {
            nap(left.as_millis().max(1) as i64);
            continue;
        }
        if last_feedback.elapsed() >= FEEDBACK_INTERVAL {
            repeat_feedback();
            last_feedback = Instant::now();
        }
        read_or_nap(left.max(Duration::from_millis(1)), pg_sys::PG_WAIT_EXTENSION);
    }
}

/// Reads what the provider sent and waits for more, for at most
/// `timeout`; once `PENDING_LIMIT` bytes wait to be dispatched, only
/// sleeps: nothing more is taken off the connection, so libpq's buffer
/// stays as it is and TCP makes the provider wait.
fn read_or_nap(timeout: Duration, wait_event: u32) {
    if PENDING_BYTES.with(|b| b.get()) >= PENDING_LIMIT {
        nap(timeout.as_millis().max(1) as i64);
        return;
    }
    read_stream();
    wait_for_provider(timeout, wait_event);
}

/// Sleeps on this process's latch for at most `ms` milliseconds, then
/// handles interrupts (a SIGTERM ends the worker here).
pub fn nap(ms: i64) {
    // SAFETY: waits on this process's own latch; exits if the postmaster died.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}

/// Waits until the provider's socket is readable, the latch is set or
/// `timeout` has passed, then handles interrupts.
pub fn wait_for_provider(timeout: Duration, wait_event: u32) {
    let socket = with_conn(|c| c.socket());
    // SAFETY: waits on this process's latch and the provider's socket.
    unsafe {
        let events = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET
                | pg_sys::WL_SOCKET_READABLE
                | pg_sys::WL_TIMEOUT
                | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            socket,
            timeout.as_millis() as i64,
            wait_event,
        );
        if events & pg_sys::WL_LATCH_SET as i32 != 0 {
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
    }
    pgrx::check_for_interrupts!();
}

/// Whether another process waits for a lock this transaction holds: its
/// transaction id, or a table it locked for writing.
unsafe fn others_wait_for_us() -> bool {
    // SAFETY: lock tags of locks this backend holds (LockHasWaiters
    // requires that); the transaction id locks exist once ids are assigned.
    unsafe {
        let mut xids = vec![pg_sys::GetTopTransactionIdIfAny()];
        xids.push(pg_sys::GetCurrentTransactionIdIfAny());
        for xid in xids {
            if xid.into_inner() == 0 {
                continue;
            }
            let mut tag: pg_sys::LOCKTAG = std::mem::zeroed();
            tag.locktag_field1 = xid.into_inner();
            tag.locktag_type = pg_sys::LockTagType::LOCKTAG_TRANSACTION as u8;
            tag.locktag_lockmethodid = pg_sys::DEFAULT_LOCKMETHOD as u8;
            if pg_sys::LockHasWaiters(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false) {
                return true;
            }
        }
        let locked = LOCKED.with(|l| l.borrow().clone());
        for relid in locked {
            let mut tag: pg_sys::LOCKTAG = std::mem::zeroed();
            tag.locktag_field1 = pg_sys::MyDatabaseId.to_u32();
            tag.locktag_field2 = relid.to_u32();
            tag.locktag_type = pg_sys::LockTagType::LOCKTAG_RELATION as u8;
            tag.locktag_lockmethodid = pg_sys::DEFAULT_LOCKMETHOD as u8;
            if pg_sys::LockHasWaiters(&tag, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE, false) {
                return true;
            }
        }
        false
    }
}

/// Reads what the provider sent: keepalives and positions go to the
/// progress tracker, messages are kept for later.
fn read_stream() {
    with_conn(|conn| {
        conn.consume_input().unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                format!("lost the connection to the provider: {}", e.message),
            )
        });
        while PENDING_BYTES.with(|b| b.get()) < PENDING_LIMIT {
            let Some(data) = conn.get_copy_data().unwrap_or_else(|e| {
                raise(
                    PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                    format!("the provider's stream failed: {}", e.message),
                )
            }) else {
                break;
            };
            match stream::parse(&data) {
                Ok(FromProvider::XLogData { wal_end, .. }) => {
                    let received = RECEIVED.with(|r| {
                        r.set(r.get().max(wal_end));
                        r.get()
                    });
                    super::progress::received(received, wal_end);
                    PENDING_BYTES.with(|b| b.set(b.get() + data.len()));
                    PENDING.with(|p| p.borrow_mut().push_back(data.to_vec()));
                }
                Ok(FromProvider::Keepalive { wal_end, .. }) => {
                    let received = RECEIVED.with(|r| {
                        r.set(r.get().max(wal_end));
                        r.get()
                    });
                    super::progress::received(received, wal_end);
                }
                Err(e) => raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e),
            }
        }
    });
    super::progress::tick();
}

/// Sends the last feedback again (its positions are still true: nothing
/// was committed since), so that the walsender does not time out.
fn repeat_feedback() {
    let Some((write, flush)) = LAST_FEEDBACK.with(|f| f.get()) else { return };
    let msg = stream::feedback(write, flush, flush, crate::workers::now(), false);
    with_conn(|conn| {
        conn.put_copy_data(&msg).unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                format!("cannot send feedback to the provider: {}", e.message),
            )
        })
    });
}
