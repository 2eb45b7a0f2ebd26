//! A safe wrapper over the parts of libpq spock uses: connections opened
//! with `PQconnectStartParams` (keyword/value pairs, the DSN expanded in
//! place), queries, and the COPY BOTH stream of logical replication.
//!
//! Every wait is asynchronous: connections are in libpq's non-blocking mode,
//! and the process sleeps in `WaitLatchOrSocket` on its latch and the
//! connection's socket (to read, to connect, or to write when the socket's
//! buffer is full), checking for interrupts after each wake-up. So a
//! query cancel or `statement_timeout` in a backend, and SIGTERM in an apply
//! worker, act within a second even while the other side does not answer.
//! libpq is linked from the server's own installation.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use pgrx::prelude::*;

#[allow(non_camel_case_types)]
type PGconn = c_void;
#[allow(non_camel_case_types)]
type PGresult = c_void;

/// `PQconninfoOption` of libpq-fe.h.
#[repr(C)]
struct ConninfoOption {
    keyword: *mut c_char,
    envvar: *mut c_char,
    compiled: *mut c_char,
    val: *mut c_char,
    label: *mut c_char,
    dispchar: *mut c_char,
    dispsize: c_int,
}

// ExecStatusType values.
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PGRES_COPY_OUT: c_int = 3;
const PGRES_COPY_IN: c_int = 4;
const PGRES_COPY_BOTH: c_int = 8;
// ConnStatusType.
const CONNECTION_BAD: c_int = 1;
// PostgresPollingStatusType.
const PGRES_POLLING_FAILED: c_int = 0;
const PGRES_POLLING_READING: c_int = 1;
const PGRES_POLLING_OK: c_int = 3;

const PG_DIAG_SQLSTATE: c_int = b'C' as c_int;
const PG_DIAG_MESSAGE_PRIMARY: c_int = b'M' as c_int;

unsafe extern "C" {
    fn PQconnectStartParams(
        keywords: *const *const c_char,
        values: *const *const c_char,
        expand_dbname: c_int,
    ) -> *mut PGconn;
    fn PQconnectPoll(conn: *mut PGconn) -> c_int;
    fn PQconninfo(conn: *mut PGconn) -> *mut ConninfoOption;
    fn PQstatus(conn: *const PGconn) -> c_int;
    fn PQerrorMessage(conn: *const PGconn) -> *const c_char;
    fn PQfinish(conn: *mut PGconn);
    fn PQsendQuery(conn: *mut PGconn, query: *const c_char) -> c_int;
    fn PQisBusy(conn: *mut PGconn) -> c_int;
    fn PQresultStatus(res: *const PGresult) -> c_int;
    fn PQresultErrorMessage(res: *const PGresult) -> *const c_char;
    fn PQresultErrorField(res: *const PGresult, fieldcode: c_int) -> *const c_char;
    fn PQntuples(res: *const PGresult) -> c_int;
    fn PQnfields(res: *const PGresult) -> c_int;
    fn PQgetvalue(res: *const PGresult, row: c_int, col: c_int) -> *const c_char;
    fn PQgetisnull(res: *const PGresult, row: c_int, col: c_int) -> c_int;
    fn PQclear(res: *mut PGresult);
    fn PQsocket(conn: *const PGconn) -> c_int;
    fn PQconsumeInput(conn: *mut PGconn) -> c_int;
    fn PQgetCopyData(conn: *mut PGconn, buffer: *mut *mut c_char, is_async: c_int) -> c_int;
    fn PQputCopyData(conn: *mut PGconn, buffer: *const c_char, nbytes: c_int) -> c_int;
    fn PQputCopyEnd(conn: *mut PGconn, errormsg: *const c_char) -> c_int;
    fn PQcmdTuples(res: *mut PGresult) -> *const c_char;
    fn PQflush(conn: *mut PGconn) -> c_int;
    fn PQsetnonblocking(conn: *mut PGconn, arg: c_int) -> c_int;
    fn PQfreemem(ptr: *mut c_void);
    fn PQgetResult(conn: *mut PGconn) -> *mut PGresult;
    fn PQescapeLiteral(conn: *mut PGconn, str: *const c_char, len: usize) -> *mut c_char;
    fn PQescapeIdentifier(conn: *mut PGconn, str: *const c_char, len: usize) -> *mut c_char;
    fn PQconninfoParse(conninfo: *const c_char, errmsg: *mut *mut c_char) -> *mut ConninfoOption;
    fn PQconninfoFree(conn_options: *mut ConninfoOption);
}

/// `PQescapeLiteral` or `PQescapeIdentifier`.
type EscapeFn = unsafe extern "C" fn(*mut PGconn, *const c_char, usize) -> *mut c_char;

/// An error from libpq or the server, with the SQLSTATE when the server sent one.
#[derive(Debug, Clone)]
pub struct PqError {
    pub sqlstate: Option<String>,
    pub message: String,
}

impl PqError {
    pub fn local(message: impl Into<String>) -> PqError {
        PqError { sqlstate: None, message: message.into() }
    }
}

impl std::fmt::Display for PqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: libpq returns NUL-terminated strings that live at least as
        // long as the object they came from, which the caller still holds.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().trim_end().to_string()
    }
}

/// The keyword/value pairs of a libpq options array (non-empty values only),
/// freeing the array.
///
/// # Safety
/// `opts` is NULL or an array returned by libpq, not used afterwards.
unsafe fn take_options(opts: *mut ConninfoOption) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if opts.is_null() {
        return out;
    }
    // SAFETY: the array ends with an entry whose keyword is NULL.
    unsafe {
        let mut p = opts;
        while !(*p).keyword.is_null() {
            if !(*p).val.is_null() && *(*p).val != 0 {
                out.push((cstr((*p).keyword), cstr((*p).val)));
            }
            p = p.add(1);
        }
        PQconninfoFree(opts);
    }
    out
}

/// Parses a libpq connection string (keyword/value or URI) into its
/// keyword/value pairs; the error is libpq's.
pub fn parse_conninfo(conninfo: &str) -> Result<Vec<(String, String)>, String> {
    let c = CString::new(conninfo).map_err(|_| "the connection string contains a NUL byte".to_string())?;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: PQconninfoParse returns an allocated array, or NULL with err
    // set (or NULL err on out of memory).
    let opts = unsafe { PQconninfoParse(c.as_ptr(), &mut err) };
    if opts.is_null() {
        let msg = if err.is_null() { "out of memory".to_string() } else { cstr(err) };
        if !err.is_null() {
            // SAFETY: err was allocated by libpq.
            unsafe { PQfreemem(err.cast()) };
        }
        return Err(msg);
    }
    // SAFETY: opts came from PQconninfoParse.
    Ok(unsafe { take_options(opts) })
}

/// What to wait for on the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

/// Sleeps until the socket is ready for `want`, the latch is set, or a
/// second passes; then processes interrupts (a cancel or termination raises
/// its error here). Returns whether the socket is ready; errors when
/// `deadline` has passed.
fn wait_socket(socket: c_int, want: Want, deadline: Option<Instant>) -> Result<bool, PqError> {
    if socket < 0 {
        // No socket (yet): nothing to wait for, let libpq go on.
        pgrx::check_for_interrupts!();
        return Ok(true);
    }
    let timeout = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PqError { sqlstate: Some("08001".into()), message: "timeout expired".into() });
            }
            left.min(Duration::from_secs(1))
        }
        None => Duration::from_secs(1),
    };
    let socket_event = match want {
        Want::Read => pg_sys::WL_SOCKET_READABLE,
        Want::Write => pg_sys::WL_SOCKET_WRITEABLE,
    };
    // SAFETY: waits on this process's latch and a socket libpq owns; the
    // latch is reset before interrupts are processed.
    let events = unsafe {
        let events = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | socket_event | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            socket,
            timeout.as_millis() as i64,
            pg_sys::PG_WAIT_EXTENSION,
        );
        if events & pg_sys::WL_LATCH_SET as i32 != 0 {
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        events
    };
    pgrx::check_for_interrupts!();
    Ok(events & socket_event as i32 != 0)
}

/// One connection.
pub struct Conn {
    conn: NonNull<PGconn>,
}

/// The rows of a query result, as text.
pub struct Rows {
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The first column of the first row.
    pub fn scalar(&self) -> Option<&str> {
        self.rows.first().and_then(|r| r.first()).and_then(|v| v.as_deref())
    }
}

impl Conn {
    /// Connects with keyword/value pairs (`dbname` is expanded when it is a
    /// connection string or URI), waiting interruptibly, and giving up after
    /// the effective `connect_timeout` (0 or unset: no limit).
    pub fn connect(params: &[(String, String)]) -> Result<Conn, PqError> {
        let nul = |_| PqError::local("a connection parameter contains a NUL byte");
        let keys: Vec<CString> =
            params.iter().map(|(k, _)| CString::new(k.as_str())).collect::<Result<_, _>>().map_err(nul)?;
        let values: Vec<CString> =
            params.iter().map(|(_, v)| CString::new(v.as_str())).collect::<Result<_, _>>().map_err(nul)?;
        let mut key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let mut value_ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
        key_ptrs.push(std::ptr::null());
        value_ptrs.push(std::ptr::null());
        // SAFETY: NULL-terminated arrays of C strings that outlive the call
        // (libpq copies what it keeps).
        let raw = unsafe { PQconnectStartParams(key_ptrs.as_ptr(), value_ptrs.as_ptr(), 1) };
        let conn =
            Conn { conn: NonNull::new(raw).ok_or_else(|| PqError::local("out of memory connecting"))? };
        if conn.status() == CONNECTION_BAD {
            return Err(conn.connect_error());
        }
        let deadline = conn
            .option("connect_timeout")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
            // libpq's own rule: a timeout under 2 s is raised to 2 s.
            .map(|s| Instant::now() + Duration::from_secs(s.max(2)));
        let mut want = Want::Write;
        loop {
            // libpq may be polled only once the socket is ready.
            while !wait_socket(conn.socket(), want, deadline).map_err(|e| PqError {
                sqlstate: e.sqlstate,
                message: format!("could not connect: {}", e.message),
            })? {}
            // SAFETY: a connection being established.
            match unsafe { PQconnectPoll(conn.conn.as_ptr()) } {
                PGRES_POLLING_OK => {
                    // From now on libpq never blocks on a write either: a
                    // full socket buffer is waited for in `flush`.
                    // SAFETY: a connected connection object.
                    if unsafe { PQsetnonblocking(conn.conn.as_ptr(), 1) } != 0 {
                        return Err(conn.connect_error());
                    }
                    return Ok(conn);
                }
                PGRES_POLLING_FAILED => return Err(conn.connect_error()),
                PGRES_POLLING_READING => want = Want::Read,
                _ => want = Want::Write,
            }
        }
    }

    fn status(&self) -> c_int {
        // SAFETY: a live connection object.
        unsafe { PQstatus(self.conn.as_ptr()) }
    }

    fn connect_error(&self) -> PqError {
        PqError { sqlstate: Some("08001".into()), message: self.error_message() }
    }

    /// The effective value of a connection option.
    fn option(&self, keyword: &str) -> Option<String> {
        // SAFETY: PQconninfo returns a fresh array (or NULL on out of memory).
        let options = unsafe { take_options(PQconninfo(self.conn.as_ptr())) };
        options.into_iter().find(|(k, _)| k == keyword).map(|(_, v)| v)
    }

    pub fn error_message(&self) -> String {
        // SAFETY: a live connection object.
        cstr(unsafe { PQerrorMessage(self.conn.as_ptr()) })
    }

    pub fn socket(&self) -> c_int {
        // SAFETY: a live connection object.
        unsafe { PQsocket(self.conn.as_ptr()) }
    }

    /// The server's primary message (without "ERROR:" and the query
    /// position), or libpq's own message when the server sent none.
    fn result_error(&self, res: *mut PGresult) -> PqError {
        if res.is_null() {
            return PqError { sqlstate: Some("08006".into()), message: self.error_message() };
        }
        // SAFETY: a result this connection returned, not yet cleared.
        let (primary, full, sqlstate) = unsafe {
            (
                cstr(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)),
                cstr(PQresultErrorMessage(res)),
                cstr(PQresultErrorField(res, PG_DIAG_SQLSTATE)),
            )
        };
        let message =
            [primary, full].into_iter().find(|m| !m.is_empty()).unwrap_or_else(|| self.error_message());
        PqError { sqlstate: (!sqlstate.is_empty()).then_some(sqlstate), message }
    }

    /// Sends a query and waits (interruptibly) for its first result.
    fn send_and_wait(&mut self, sql: &str) -> Result<*mut PGresult, PqError> {
        let c = CString::new(sql).map_err(|_| PqError::local("a query contains a NUL byte"))?;
        // SAFETY: a live connection; the query string outlives the call.
        if unsafe { PQsendQuery(self.conn.as_ptr(), c.as_ptr()) } == 0 {
            return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() });
        }
        self.flush()?;
        self.next_result()
    }

    /// Sends what libpq has buffered, waiting (interruptibly) while the
    /// socket cannot take more.
    fn flush(&mut self) -> Result<(), PqError> {
        loop {
            // SAFETY: a live connection in non-blocking mode.
            match unsafe { PQflush(self.conn.as_ptr()) } {
                0 => return Ok(()),
                1 => {
                    wait_socket(self.socket(), Want::Write, None)?;
                    // Reading what the server sent meanwhile keeps it from
                    // blocking on its own writes.
                    self.consume_input()?;
                }
                _ => return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() }),
            }
        }
    }

    /// Waits (interruptibly) for the next result; NULL when there is none.
    fn next_result(&mut self) -> Result<*mut PGresult, PqError> {
        // SAFETY: a live connection with a query in progress.
        unsafe {
            while PQisBusy(self.conn.as_ptr()) != 0 {
                wait_socket(self.socket(), Want::Read, None)?;
                if PQconsumeInput(self.conn.as_ptr()) == 0 {
                    return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() });
                }
            }
            Ok(PQgetResult(self.conn.as_ptr()))
        }
    }

    /// Runs a command or query and returns its rows (empty for commands).
    pub fn query(&mut self, sql: &str) -> Result<Rows, PqError> {
        let mut first_error: Option<PqError> = None;
        let mut rows = Vec::new();
        let mut res = self.send_and_wait(sql)?;
        while !res.is_null() {
            // SAFETY: a result of this connection, cleared at the end of the loop body.
            unsafe {
                let status = PQresultStatus(res);
                if status == PGRES_TUPLES_OK {
                    rows.clear();
                    let (n, columns) = (PQntuples(res), PQnfields(res));
                    for r in 0..n {
                        rows.push(
                            (0..columns)
                                .map(|c| (PQgetisnull(res, r, c) == 0).then(|| cstr(PQgetvalue(res, r, c))))
                                .collect(),
                        );
                    }
                } else if status != PGRES_COMMAND_OK && first_error.is_none() {
                    first_error = Some(self.result_error(res));
                }
                PQclear(res);
            }
            res = self.next_result()?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(Rows { rows }),
        }
    }

    /// Quotes `s` with one of libpq's escape functions.
    fn escape(&mut self, escape: EscapeFn, s: &str) -> String {
        // SAFETY: escapes `s.len()` bytes of `s` for this connection; the
        // result is libpq's allocation, copied and freed here.
        unsafe {
            let p = escape(self.conn.as_ptr(), s.as_ptr().cast(), s.len());
            let out = cstr(p);
            if !p.is_null() {
                PQfreemem(p.cast());
            }
            out
        }
    }

    /// Quotes a string as an SQL literal for this connection.
    pub fn literal(&mut self, s: &str) -> String {
        self.escape(PQescapeLiteral, s)
    }

    /// Quotes an identifier for this connection.
    pub fn ident(&mut self, s: &str) -> String {
        self.escape(PQescapeIdentifier, s)
    }

    /// Sends a command that starts a COPY of the kind `expected`.
    fn start_copy(&mut self, command: &str, expected: c_int) -> Result<(), PqError> {
        let res = self.send_and_wait(command)?;
        // SAFETY: a result of this connection (or NULL), cleared here.
        let outcome = unsafe {
            let status = if res.is_null() { -1 } else { PQresultStatus(res) };
            let outcome = if status == expected { Ok(()) } else { Err(self.result_error(res)) };
            if !res.is_null() {
                PQclear(res);
            }
            outcome
        };
        if outcome.is_err() {
            // Whatever else the command returned is drained, so that the
            // connection can take the next command.
            while !self.next_result()?.is_null() {}
        }
        outcome
    }

    /// Sends a command that starts COPY BOTH (START_REPLICATION).
    pub fn start_copy_both(&mut self, command: &str) -> Result<(), PqError> {
        self.start_copy(command, PGRES_COPY_BOTH)
    }

    /// Sends a `COPY ... TO STDOUT`; read it with [`Conn::copy_out_next`].
    pub fn start_copy_out(&mut self, command: &str) -> Result<(), PqError> {
        self.start_copy(command, PGRES_COPY_OUT)
    }

    /// Sends a `COPY ... FROM STDIN`; feed it with [`Conn::copy_in_send`]
    /// and finish it with [`Conn::copy_in_end`].
    pub fn start_copy_in(&mut self, command: &str) -> Result<(), PqError> {
        self.start_copy(command, PGRES_COPY_IN)
    }

    /// The next row of a COPY OUT, waiting (interruptibly) for it; `None`
    /// once the COPY ended well. The server's error when it failed.
    pub fn copy_out_next(&mut self) -> Result<Option<CopyData>, PqError> {
        loop {
            let mut buf: *mut c_char = std::ptr::null_mut();
            // SAFETY: a live connection in COPY OUT; on success libpq hands
            // us a buffer that CopyData frees.
            let n = unsafe { PQgetCopyData(self.conn.as_ptr(), &mut buf, 1) };
            match n {
                0 => {
                    wait_socket(self.socket(), Want::Read, None)?;
                    self.consume_input()?;
                }
                n if n > 0 => {
                    return Ok(Some(CopyData {
                        ptr: NonNull::new(buf.cast())
                            .ok_or_else(|| PqError::local("libpq returned no copy buffer"))?,
                        len: n as usize,
                    }));
                }
                -1 => return self.finish_command().map(|_| None),
                _ => return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() }),
            }
        }
    }

    /// Sends bytes of a COPY IN, waiting (interruptibly) until the socket
    /// took them all. (In non-blocking mode libpq would otherwise keep
    /// whatever the server has not read yet in a buffer that grows without
    /// limit while the server is slower than the caller.)
    pub fn copy_in_send(&mut self, data: &[u8]) -> Result<(), PqError> {
        loop {
            // SAFETY: a live connection in COPY IN; `data` outlives the call.
            match unsafe { PQputCopyData(self.conn.as_ptr(), data.as_ptr().cast(), data.len() as c_int) } {
                1 => return self.flush(),
                0 => {
                    wait_socket(self.socket(), Want::Write, None)?;
                    self.flush()?;
                }
                _ => return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() }),
            }
        }
    }

    /// Ends a COPY IN and returns how many rows the server took.
    pub fn copy_in_end(&mut self) -> Result<u64, PqError> {
        loop {
            // SAFETY: a live connection in COPY IN.
            match unsafe { PQputCopyEnd(self.conn.as_ptr(), std::ptr::null()) } {
                1 => break,
                0 => wait_socket(self.socket(), Want::Write, None).map(|_| ())?,
                // The server ended the COPY itself (with an error): that
                // error is in the results.
                _ => {
                    let message = self.error_message();
                    self.finish_command()?;
                    return Err(PqError { sqlstate: Some("08006".into()), message });
                }
            }
        }
        self.flush()?;
        self.finish_command()
    }

    /// Reads the results that end a COPY: the first error, or the rows the
    /// command reported.
    fn finish_command(&mut self) -> Result<u64, PqError> {
        let mut first_error: Option<PqError> = None;
        let mut rows = 0;
        let mut res = self.next_result()?;
        while !res.is_null() {
            // SAFETY: a result of this connection, cleared at the end of the loop body.
            unsafe {
                if PQresultStatus(res) == PGRES_COMMAND_OK {
                    rows = cstr(PQcmdTuples(res)).parse().unwrap_or(0);
                } else if first_error.is_none() {
                    first_error = Some(self.result_error(res));
                }
                PQclear(res);
            }
            res = self.next_result()?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Reads whatever the socket has, without blocking.
    pub fn consume_input(&mut self) -> Result<(), PqError> {
        // SAFETY: a live connection.
        if unsafe { PQconsumeInput(self.conn.as_ptr()) } == 0 {
            return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() });
        }
        Ok(())
    }

    /// The next CopyData message, without blocking: `Ok(None)` when none is
    /// buffered; an error when the stream ended or failed.
    pub fn get_copy_data(&mut self) -> Result<Option<CopyData>, PqError> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live connection in COPY BOTH; on success libpq hands us
        // a buffer that CopyData frees.
        let n = unsafe { PQgetCopyData(self.conn.as_ptr(), &mut buf, 1) };
        match n {
            0 => Ok(None),
            n if n > 0 => Ok(Some(CopyData {
                ptr: NonNull::new(buf.cast())
                    .ok_or_else(|| PqError::local("libpq returned no copy buffer"))?,
                len: n as usize,
            })),
            -1 => {
                // The server ended the COPY; its final result has the error.
                // SAFETY: fetches and clears the result that follows the COPY.
                let err = unsafe {
                    let res = PQgetResult(self.conn.as_ptr());
                    let err = self.result_error(res);
                    if !res.is_null() {
                        PQclear(res);
                    }
                    err
                };
                Err(PqError {
                    sqlstate: err.sqlstate,
                    message: format!("the replication stream ended: {}", err.message),
                })
            }
            _ => Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() }),
        }
    }

    /// Sends a CopyData message (feedback) and flushes.
    pub fn put_copy_data(&mut self, data: &[u8]) -> Result<(), PqError> {
        loop {
            // SAFETY: a live connection in COPY BOTH; `data` outlives the call.
            match unsafe { PQputCopyData(self.conn.as_ptr(), data.as_ptr().cast(), data.len() as c_int) } {
                1 => break,
                // No room in libpq's buffer yet (non-blocking mode).
                0 => wait_socket(self.socket(), Want::Write, None).map(|_| ())?,
                _ => return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() }),
            }
        }
        self.flush()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: closes the connection this object owns; not used afterwards.
        unsafe { PQfinish(self.conn.as_ptr()) };
    }
}

/// A CopyData message owned by libpq.
pub struct CopyData {
    ptr: NonNull<u8>,
    len: usize,
}

impl std::ops::Deref for CopyData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: libpq's buffer holds `len` bytes until it is freed in drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for CopyData {
    fn drop(&mut self) {
        // SAFETY: frees the buffer libpq allocated for this message.
        unsafe { PQfreemem(self.ptr.as_ptr().cast()) };
    }
}
