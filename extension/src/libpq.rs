//! A small, safe wrapper over the parts of libpq the extension uses: normal
//! and replication connections, simple queries, and the COPY BOTH stream of
//! logical replication. libpq is linked from the server's own installation.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;

#[allow(non_camel_case_types)]
type PGconn = c_void;
#[allow(non_camel_case_types)]
type PGresult = c_void;

// ExecStatusType values.
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PGRES_COPY_BOTH: c_int = 8;
// ConnStatusType.
const CONNECTION_OK: c_int = 0;

unsafe extern "C" {
    fn PQconnectdb(conninfo: *const c_char) -> *mut PGconn;
    fn PQstatus(conn: *const PGconn) -> c_int;
    fn PQerrorMessage(conn: *const PGconn) -> *const c_char;
    fn PQfinish(conn: *mut PGconn);
    fn PQexec(conn: *mut PGconn, query: *const c_char) -> *mut PGresult;
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
    fn PQflush(conn: *mut PGconn) -> c_int;
    fn PQfreemem(ptr: *mut c_void);
    fn PQgetResult(conn: *mut PGconn) -> *mut PGresult;
    fn PQescapeLiteral(conn: *mut PGconn, str: *const c_char, len: usize) -> *mut c_char;
    fn PQescapeIdentifier(conn: *mut PGconn, str: *const c_char, len: usize) -> *mut c_char;
    fn PQconninfoParse(conninfo: *const c_char, errmsg: *mut *mut c_char) -> *mut c_void;
    fn PQconninfoFree(conn_options: *mut c_void);
}

const PG_DIAG_SQLSTATE: c_int = b'C' as c_int;
const PG_DIAG_MESSAGE_PRIMARY: c_int = b'M' as c_int;

/// An error from libpq or the server, with the SQLSTATE when the server sent one.
#[derive(Debug, Clone)]
pub struct PqError {
    pub sqlstate: Option<String>,
    pub message: String,
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
        unsafe { CStr::from_ptr(p) }.to_string_lossy().trim_end().to_string()
    }
}

/// Checks that `dsn` parses as a libpq connection string; the error is libpq's.
pub fn parse_dsn(dsn: &str) -> Result<(), String> {
    let c = CString::new(dsn).map_err(|_| "the connection string contains a NUL byte".to_string())?;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: PQconninfoParse returns an allocated array or NULL with err set.
    let opts = unsafe { PQconninfoParse(c.as_ptr(), &mut err) };
    if opts.is_null() {
        let msg = if err.is_null() { "out of memory".to_string() } else { cstr(err) };
        if !err.is_null() {
            unsafe { PQfreemem(err as *mut c_void) };
        }
        return Err(msg);
    }
    unsafe { PQconninfoFree(opts) };
    Ok(())
}

/// One connection.
pub struct Conn {
    conn: NonNull<PGconn>,
}

// The connection is used by one process (the backend or worker that made it).
unsafe impl Send for Conn {}

/// The rows of a query result, as text.
pub struct Rows {
    pub rows: Vec<Vec<Option<String>>>,
}

impl Conn {
    /// Connects (blocking) with the given connection string.
    pub fn connect(conninfo: &str) -> Result<Conn, PqError> {
        let c = CString::new(conninfo).map_err(|_| PqError {
            sqlstate: None,
            message: "connection string contains a NUL byte".into(),
        })?;
        // SAFETY: PQconnectdb returns a connection object or NULL on OOM.
        let raw = unsafe { PQconnectdb(c.as_ptr()) };
        let conn = NonNull::new(raw)
            .ok_or_else(|| PqError { sqlstate: None, message: "out of memory connecting".into() })?;
        let conn = Conn { conn };
        if unsafe { PQstatus(conn.conn.as_ptr()) } != CONNECTION_OK {
            return Err(PqError { sqlstate: Some("08001".into()), message: conn.error_message() });
        }
        Ok(conn)
    }

    pub fn error_message(&self) -> String {
        cstr(unsafe { PQerrorMessage(self.conn.as_ptr()) })
    }

    pub fn socket(&self) -> c_int {
        unsafe { PQsocket(self.conn.as_ptr()) }
    }

    /// The server's primary message (without "ERROR:" and the query
    /// position), or libpq's own message when the server sent none.
    fn result_error(&self, res: *mut PGresult) -> PqError {
        let message = if res.is_null() {
            self.error_message()
        } else {
            let primary = cstr(unsafe { PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) });
            if primary.is_empty() { cstr(unsafe { PQresultErrorMessage(res) }) } else { primary }
        };
        let sqlstate = if res.is_null() {
            None
        } else {
            let s = cstr(unsafe { PQresultErrorField(res, PG_DIAG_SQLSTATE) });
            (!s.is_empty()).then_some(s)
        };
        PqError { sqlstate, message: if message.is_empty() { self.error_message() } else { message } }
    }

    /// Runs a command or query and returns its rows (empty for commands).
    pub fn query(&mut self, sql: &str) -> Result<Rows, PqError> {
        let c = CString::new(sql)
            .map_err(|_| PqError { sqlstate: None, message: "query contains a NUL byte".into() })?;
        let res = unsafe { PQexec(self.conn.as_ptr(), c.as_ptr()) };
        let status = if res.is_null() { -1 } else { unsafe { PQresultStatus(res) } };
        if status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK {
            let err = self.result_error(res);
            if !res.is_null() {
                unsafe { PQclear(res) };
            }
            return Err(err);
        }
        let mut rows = Vec::new();
        let (n, columns) = unsafe { (PQntuples(res), PQnfields(res)) };
        for r in 0..n {
            let mut row = Vec::with_capacity(columns as usize);
            for c in 0..columns {
                row.push(if unsafe { PQgetisnull(res, r, c) } != 0 {
                    None
                } else {
                    Some(cstr(unsafe { PQgetvalue(res, r, c) }))
                });
            }
            rows.push(row);
        }
        unsafe { PQclear(res) };
        Ok(Rows { rows })
    }

    /// Quotes a string as an SQL literal for this connection.
    pub fn literal(&mut self, s: &str) -> String {
        let p = unsafe { PQescapeLiteral(self.conn.as_ptr(), s.as_ptr() as *const c_char, s.len()) };
        let out = cstr(p);
        if !p.is_null() {
            unsafe { PQfreemem(p as *mut c_void) };
        }
        out
    }

    /// Quotes an identifier for this connection.
    pub fn ident(&mut self, s: &str) -> String {
        let p = unsafe { PQescapeIdentifier(self.conn.as_ptr(), s.as_ptr() as *const c_char, s.len()) };
        let out = cstr(p);
        if !p.is_null() {
            unsafe { PQfreemem(p as *mut c_void) };
        }
        out
    }

    /// Sends a command that starts COPY BOTH (START_REPLICATION).
    pub fn start_copy_both(&mut self, command: &str) -> Result<(), PqError> {
        let c = CString::new(command)
            .map_err(|_| PqError { sqlstate: None, message: "NUL in command".into() })?;
        let res = unsafe { PQexec(self.conn.as_ptr(), c.as_ptr()) };
        let status = if res.is_null() { -1 } else { unsafe { PQresultStatus(res) } };
        if status != PGRES_COPY_BOTH {
            let err = self.result_error(res);
            if !res.is_null() {
                unsafe { PQclear(res) };
            }
            return Err(err);
        }
        unsafe { PQclear(res) };
        Ok(())
    }

    /// Reads whatever the socket has, without blocking.
    pub fn consume_input(&mut self) -> Result<(), PqError> {
        if unsafe { PQconsumeInput(self.conn.as_ptr()) } == 0 {
            return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() });
        }
        Ok(())
    }

    /// The next CopyData message, without blocking: `Ok(None)` when none is
    /// buffered; an error when the stream ended or failed.
    pub fn get_copy_data(&mut self) -> Result<Option<CopyData>, PqError> {
        let mut buf: *mut c_char = std::ptr::null_mut();
        let n = unsafe { PQgetCopyData(self.conn.as_ptr(), &mut buf, 1) };
        match n {
            0 => Ok(None),
            n if n > 0 => {
                Ok(Some(CopyData { ptr: NonNull::new(buf as *mut u8).expect("data"), len: n as usize }))
            }
            -1 => {
                // The server ended the COPY; fetch the final result for its error.
                let res = unsafe { PQgetResult(self.conn.as_ptr()) };
                let err = self.result_error(res);
                if !res.is_null() {
                    unsafe { PQclear(res) };
                }
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
        let ok =
            unsafe { PQputCopyData(self.conn.as_ptr(), data.as_ptr() as *const c_char, data.len() as c_int) };
        if ok != 1 || unsafe { PQflush(self.conn.as_ptr()) } != 0 {
            return Err(PqError { sqlstate: Some("08006".into()), message: self.error_message() });
        }
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
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
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for CopyData {
    fn drop(&mut self) {
        unsafe { PQfreemem(self.ptr.as_ptr() as *mut c_void) };
    }
}
