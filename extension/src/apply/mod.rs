//! The apply worker of one subscription (behaviour.md §3, §19): connects to
//! the provider with a replication connection, creates or reuses the slot,
//! streams from its replication origin's position, applies each remote
//! transaction as one local transaction stamped with the origin and the
//! origin's commit timestamp, and reports back only positions whose local
//! commits are flushed.

mod exec;

use std::ffi::CString;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use spock_core::dsn;
use spock_core::protocol::{self, Message, truncate_flags};
use spock_core::stream::{self, FlushTracker, FromProvider, format_lsn};

use crate::catalog::{self, Subscription};
use crate::errors::raise;
use crate::libpq::{Conn, PqError};
use crate::{guc, shmem};

/// How often feedback is sent when nothing asks for it.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

static mut CONTEXT_NAME: Option<CString> = None;

// errcontext() is a macro over these two; pgrx does not bind them.
unsafe extern "C-unwind" {
    fn set_errcontext_domain(domain: *const std::ffi::c_char) -> std::ffi::c_int;
    fn errcontext_msg(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
}

/// Adds "spock apply worker for subscription X" to every message the worker logs.
#[pg_guard]
unsafe extern "C-unwind" fn error_context(_arg: *mut std::ffi::c_void) {
    // SAFETY: the worker is single-threaded; the name lives for the process.
    #[allow(static_mut_refs)]
    unsafe {
        if let Some(name) = CONTEXT_NAME.as_ref() {
            set_errcontext_domain(std::ptr::null());
            errcontext_msg(c"spock apply worker for subscription %s".as_ptr(), name.as_ptr());
        }
    }
}

static mut CONTEXT_CALLBACK: pg_sys::ErrorContextCallback = pg_sys::ErrorContextCallback {
    previous: std::ptr::null_mut(),
    callback: None,
    arg: std::ptr::null_mut(),
};

#[allow(static_mut_refs)]
fn push_error_context(name: &str) {
    // SAFETY: a process-lifetime callback at the bottom of the context stack.
    unsafe {
        CONTEXT_NAME = Some(CString::new(name).expect("no NUL in subscription names"));
        CONTEXT_CALLBACK.callback = Some(error_context);
        CONTEXT_CALLBACK.previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = &raw mut CONTEXT_CALLBACK;
    }
}

fn set_config(name: &str, value: &str) {
    let name = CString::new(name).expect("no NUL");
    let value = CString::new(value).expect("no NUL");
    // SAFETY: sets a configuration parameter for this process.
    unsafe {
        pg_sys::SetConfigOption(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        )
    };
}

/// The entry point of an apply worker (started by the manager).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn spock_apply_main(arg: pg_sys::Datum) {
    let sub_id = arg.value() as u32;
    let dboid: u32 = BackgroundWorker::get_extra().parse().unwrap_or(0);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    shmem::claim(shmem::KIND_APPLY, dboid, sub_id);
    let sub =
        BackgroundWorker::transaction(|| Spi::connect(|client| catalog::subscription_by_id(client, sub_id)));
    let Some(sub) = sub else { return };
    if !sub.enabled {
        return;
    }
    push_error_context(&sub.name);
    set_config("application_name", &sub.name);
    set_config("session_replication_role", "replica");
    set_config("synchronous_commit", if guc::SYNCHRONOUS_COMMIT.get() { "local" } else { "off" });
    // SAFETY: reads a setting by name.
    let tracked = unsafe {
        let v = pg_sys::GetConfigOption(c"track_commit_timestamp".as_ptr(), false, false);
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"on"
    };
    if !tracked {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "apply workers need track_commit_timestamp = on; set it and restart the server",
        );
    }
    Worker::new(sub).run();
}

fn connect_error(e: PqError, what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE, format!("{what}: {}", dsn::mask_passwords(&e.message)))
}

struct Worker {
    sub: Subscription,
    applier: exec::Applier,
    flush: FlushTracker,
    /// Highest provider position received (data or keepalive).
    received: u64,
    in_transaction: bool,
    /// End LSN and commit time of the remote transaction being applied.
    remote_commit: (u64, i64),
    last_feedback: Instant,
    last_message: Instant,
    /// Memory for applying one change, reset after each (what the executor,
    /// type input functions and catalog lookups allocate for a row must not
    /// pile up over a transaction of a million rows).
    change_cxt: pg_sys::MemoryContext,
}

impl Worker {
    fn new(sub: Subscription) -> Worker {
        Worker {
            sub,
            applier: exec::Applier::new(),
            flush: FlushTracker::default(),
            received: 0,
            in_transaction: false,
            remote_commit: (0, 0),
            last_feedback: Instant::now(),
            last_message: Instant::now(),
            // SAFETY: a process-lifetime memory context under TopMemoryContext.
            change_cxt: unsafe {
                pg_sys::AllocSetContextCreateExtended(
                    pg_sys::TopMemoryContext,
                    c"spock apply change".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                )
            },
        }
    }

    /// Runs `f` in the per-change memory context, then frees what it allocated.
    fn in_change_context(&mut self, f: impl FnOnce(&mut exec::Applier)) {
        // SAFETY: switches to a context this worker owns and resets it after.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(self.change_cxt);
            f(&mut self.applier);
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(self.change_cxt);
        }
    }

    fn connect(&self) -> Conn {
        let mut conninfo = dsn::with_defaults(&self.sub.origin_dsn, &guc::extra_connection_options());
        conninfo.push_str(" replication=database application_name=");
        conninfo.push_str(&self.sub.name);
        Conn::connect(&conninfo).unwrap_or_else(|e| {
            connect_error(e, &format!("cannot connect to provider \"{}\"", self.sub.origin_name))
        })
    }

    /// Protocol negotiation, on the replication connection.
    fn negotiate(&self, conn: &mut Conn) -> u32 {
        let rows = conn
            .query("SELECT spock.spock_min_proto_version(), spock.spock_max_proto_version()")
            .unwrap_or_else(|e| connect_error(e, "cannot ask the provider for its protocol versions"));
        let row = rows.rows.first().cloned().unwrap_or_default();
        let parse = |i: usize| row.get(i).cloned().flatten().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let theirs = (parse(0), parse(1));
        protocol::negotiate((protocol::MIN_PROTO_VERSION, protocol::MAX_PROTO_VERSION), theirs)
            .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e))
    }

    /// Creates the slot on the provider unless it exists.
    fn ensure_slot(&self, conn: &mut Conn) {
        let slot = conn.literal(&self.sub.slot_name);
        let rows = conn
            .query(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = {slot}"))
            .unwrap_or_else(|e| connect_error(e, "cannot list the provider's replication slots"));
        if rows.rows.first().and_then(|r| r[0].clone()).as_deref() == Some("1") {
            return;
        }
        let ident = conn.ident(&self.sub.slot_name);
        conn.query(&format!("CREATE_REPLICATION_SLOT {ident} LOGICAL spock_output (SNAPSHOT 'nothing')"))
            .unwrap_or_else(|e| {
                connect_error(
                    e,
                    &format!("cannot create replication slot {} on the provider", self.sub.slot_name),
                )
            });
        pgrx::log!(
            "created replication slot {} on provider \"{}\"",
            self.sub.slot_name,
            self.sub.origin_name
        );
    }

    /// Sets up the replication origin for this session; returns its position.
    fn setup_origin(&self) -> u64 {
        let slot = self.sub.slot_name.clone();
        let sub_id = self.sub.sub_id;
        BackgroundWorker::transaction(move || {
            let origin = crate::api::sub::ensure_origin(&slot);
            // SAFETY: acquires the origin for this process (fails if another has it).
            unsafe {
                #[cfg(feature = "pg15")]
                pg_sys::replorigin_session_setup(origin);
                #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
                pg_sys::replorigin_session_setup(origin, 0);
                pg_sys::replorigin_session_origin = origin;
            }
            // Without initial synchronisation the subscription is ready as
            // soon as the slot and origin exist.
            Spi::run_with_args(
                "UPDATE spock.local_sync_status SET sync_status = 'r'
                  WHERE sync_subid = $1 AND sync_nspname IS NULL AND sync_relname IS NULL AND sync_status = 'i'",
                &[pg_sys::Oid::from(sub_id).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot update the sync status: {e}"));
            // SAFETY: reads the session origin's progress.
            unsafe { pg_sys::replorigin_session_get_progress(false) }
        })
    }

    fn run(mut self) {
        let mut conn = self.connect();
        let version = self.negotiate(&mut conn);
        self.ensure_slot(&mut conn);
        let start = self.setup_origin();
        self.flush = FlushTracker::default();
        self.received = start;
        let sets = self.sub.replication_sets.join(",");
        let command = format!(
            "START_REPLICATION SLOT {} LOGICAL {} (\"proto_version\" '{version}', \"replication_sets\" {}, \"forward_origins\" '')",
            conn.ident(&self.sub.slot_name),
            format_lsn(start),
            conn.literal(&sets),
        );
        conn.start_copy_both(&command).unwrap_or_else(|e| {
            connect_error(e, &format!("cannot start streaming from provider \"{}\"", self.sub.origin_name))
        });
        pgrx::log!(
            "spock apply worker for subscription {} is streaming from provider \"{}\" at {}",
            self.sub.name,
            self.sub.origin_name,
            format_lsn(start)
        );
        self.last_message = Instant::now();
        loop {
            if BackgroundWorker::sigterm_received() {
                return;
            }
            if BackgroundWorker::sighup_received() {
                // SAFETY: re-reads the configuration files.
                unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            }
            conn.consume_input().unwrap_or_else(|e| connect_error(e, "lost the connection to the provider"));
            let mut got_any = false;
            loop {
                let data =
                    conn.get_copy_data().unwrap_or_else(|e| connect_error(e, "the provider's stream failed"));
                let Some(data) = data else { break };
                got_any = true;
                self.last_message = Instant::now();
                match stream::parse(&data) {
                    Ok(FromProvider::XLogData { wal_end, payload, .. }) => {
                        self.received = self.received.max(wal_end);
                        let messages = protocol::decode_all(payload).unwrap_or_else(|e| {
                            raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e.to_string())
                        });
                        for msg in messages {
                            self.handle(msg);
                        }
                    }
                    Ok(FromProvider::Keepalive { wal_end, reply_requested, .. }) => {
                        self.received = self.received.max(wal_end);
                        if reply_requested {
                            self.send_feedback(&mut conn, true);
                        }
                    }
                    Err(e) => raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, e),
                }
                if BackgroundWorker::sigterm_received() {
                    return;
                }
            }
            if self.last_feedback.elapsed() >= FEEDBACK_INTERVAL {
                self.send_feedback(&mut conn, false);
            }
            if got_any {
                continue;
            }
            let idle = guc::APPLY_IDLE_TIMEOUT.get();
            if idle > 0 && self.last_message.elapsed() > Duration::from_secs(idle as u64) {
                raise(
                    PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                    format!(
                        "nothing arrived from provider \"{}\" for {idle} s; reconnecting",
                        self.sub.origin_name
                    ),
                );
            }
            // SAFETY: waits on the latch and the provider's socket.
            unsafe {
                let events = pg_sys::WaitLatchOrSocket(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET
                        | pg_sys::WL_SOCKET_READABLE
                        | pg_sys::WL_TIMEOUT
                        | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                    conn.socket(),
                    FEEDBACK_INTERVAL.as_millis() as i64,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                if events & pg_sys::WL_LATCH_SET as i32 != 0 {
                    pg_sys::ResetLatch(pg_sys::MyLatch);
                }
            }
            pgrx::check_for_interrupts!();
        }
    }

    fn send_feedback(&mut self, conn: &mut Conn, reply_requested_by_provider: bool) {
        // SAFETY: reads the local WAL flush position.
        let local_flush = unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) };
        let flushed = self.flush.flushed(local_flush, self.received, self.in_transaction);
        // SAFETY: reads the clock.
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let msg = stream::feedback(self.received, flushed, flushed, now, false);
        conn.put_copy_data(&msg).unwrap_or_else(|e| connect_error(e, "cannot send feedback to the provider"));
        let _ = reply_requested_by_provider;
        self.last_feedback = Instant::now();
    }

    fn handle(&mut self, msg: Message) {
        match msg {
            Message::Begin { final_lsn, commit_time, .. } => {
                if self.in_transaction {
                    raise(
                        PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                        "the provider began a transaction inside another",
                    );
                }
                self.remote_commit = (final_lsn, commit_time);
                self.in_transaction = true;
                // SAFETY: starts the local transaction that applies the remote one.
                unsafe {
                    pg_sys::SetCurrentStatementStartTimestamp();
                    pg_sys::StartTransactionCommand();
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
            }
            Message::Commit { end_lsn, commit_time, .. } => {
                self.require_transaction("Commit");
                self.applier.end_transaction();
                // SAFETY: commits with the origin's position and commit time.
                let local_end = unsafe {
                    pg_sys::replorigin_session_origin_lsn = end_lsn;
                    pg_sys::replorigin_session_origin_timestamp = commit_time;
                    pg_sys::PopActiveSnapshot();
                    pg_sys::CommitTransactionCommand();
                    pg_sys::pgstat_report_stat(false);
                    pg_sys::XactLastCommitEnd
                };
                self.in_transaction = false;
                self.flush.committed(end_lsn, local_end);
            }
            Message::Relation { relid, nspname, relname, columns } => {
                self.applier.relation(relid, nspname, relname, columns);
            }
            Message::Insert { relid, new } => {
                self.require_transaction("Insert");
                self.in_change_context(|a| a.insert(relid, &new));
            }
            Message::Update { relid, old, new } => {
                self.require_transaction("Update");
                self.in_change_context(|a| a.update(relid, old.as_ref(), &new));
            }
            Message::Delete { relid, old } => {
                self.require_transaction("Delete");
                self.in_change_context(|a| a.delete(relid, &old));
            }
            Message::Truncate { flags, relids } => {
                self.require_transaction("Truncate");
                self.in_change_context(|a| {
                    a.truncate(&relids, flags & truncate_flags::RESTART_IDENTITY != 0)
                });
            }
            Message::SyncEvent { lsn } => {
                if self.in_transaction {
                    // A transactional event: the commit carries the origin past it.
                    return;
                }
                self.advance_origin(lsn);
            }
        }
    }

    fn require_transaction(&self, what: &str) {
        if !self.in_transaction {
            raise(
                PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                format!("the provider sent {what} outside a transaction"),
            );
        }
    }

    /// Moves the replication origin to `lsn` with a local transaction of its
    /// own (it must write a commit record for the move to be durable).
    fn advance_origin(&mut self, lsn: u64) {
        // SAFETY: a small transaction that only advances the session's origin.
        let local_end = unsafe {
            pg_sys::StartTransactionCommand();
            pg_sys::GetCurrentTransactionId();
            pg_sys::replorigin_session_origin_lsn = lsn;
            pg_sys::replorigin_session_origin_timestamp = pg_sys::GetCurrentTimestamp();
            pg_sys::CommitTransactionCommand();
            pg_sys::XactLastCommitEnd
        };
        self.flush.committed(lsn, local_end);
    }
}
