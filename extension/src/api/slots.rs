//! Slot helpers of sql-api.md §4.11. `spock.get_lsn_from_commit_ts`: the
//! position in a logical slot's WAL of the last commit made on this node at
//! or before a given time (a node being added turns "what the copy holds
//! up to time T" into a position), read with PostgreSQL's own WAL reader
//! from the slot's restart LSN up to the flush position when the call
//! starts, without waiting for more. `spock.slot_enable_failover`: the
//! `failover` flag (PostgreSQL 17+) on slots made before it was set.

use std::ffi::CStr;

use pgrx::prelude::*;

use crate::errors::{raise, require_superuser};

// The WAL reader's callbacks, as C function pointers (pgrx binds them only
// as Rust wrappers).
unsafe extern "C-unwind" {
    fn read_local_xlog_page_no_wait(
        state: *mut pg_sys::XLogReaderState,
        target_page: pg_sys::XLogRecPtr,
        req_len: std::ffi::c_int,
        target_rec: pg_sys::XLogRecPtr,
        cur_page: *mut std::ffi::c_char,
    ) -> std::ffi::c_int;
    fn wal_segment_open(
        state: *mut pg_sys::XLogReaderState,
        seg: pg_sys::XLogSegNo,
        tli: *mut pg_sys::TimeLineID,
    );
    fn wal_segment_close(state: *mut pg_sys::XLogReaderState);
}

/// `xl_info` bits of a transaction record that say which kind it is.
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;

#[pg_extern(sql = r#"
CREATE FUNCTION spock.get_lsn_from_commit_ts(slot_name name, commit_ts timestamptz) RETURNS pg_lsn
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'get_lsn_from_commit_ts_wrapper';
"#)]
// pg_lsn is a pass-by-value 64-bit datum, returned as i64.
fn get_lsn_from_commit_ts(slot_name: &CStr, commit_ts: TimestampWithTimeZone) -> Option<i64> {
    require_superuser("spock.get_lsn_from_commit_ts");
    // SAFETY: reads shared recovery state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "spock.get_lsn_from_commit_ts cannot run during recovery; run it on the primary",
        );
    }
    let name = slot_name.to_string_lossy().into_owned();
    let slot = Spi::connect(|client| {
        client
            .select(
                "SELECT slot_type::text, (restart_lsn - '0/0'::pg_lsn)::int8 FROM pg_catalog.pg_replication_slots
                  WHERE slot_name = $1",
                None,
                &[name.as_str().into()],
            )
            .ok()
            .and_then(|mut t| t.next().map(|r| (r.get::<String>(1).ok().flatten(), r.get::<i64>(2).ok().flatten())))
    });
    let Some((kind, restart)) = slot else {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("replication slot \"{name}\" does not exist"))
    };
    if kind.as_deref() != Some("logical") {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("replication slot \"{name}\" is not a logical slot"),
        );
    }
    let Some(restart) = restart.filter(|l| *l > 0) else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("replication slot \"{name}\" has never reserved WAL"),
        )
    };
    // SAFETY: reads the WAL flush position.
    let end = unsafe { pg_sys::GetFlushRecPtr(std::ptr::null_mut()) };
    let wanted: i64 = commit_ts.into_inner();
    last_local_commit_before(restart as u64, end, wanted).map(|lsn| lsn as i64)
}

/// Reads the WAL from `start` up to `end` and returns the end of the last
/// commit record of a transaction made on this node (no replication origin)
/// whose commit time is at or before `wanted`.
fn last_local_commit_before(start: u64, end: u64, wanted: i64) -> Option<u64> {
    let mut found = None;
    // SAFETY: PostgreSQL's WAL reader over this server's own WAL, allocated
    // and freed here; records are read only up to `end`, which is flushed,
    // with the no-wait page reader whose private state is allocated for it.
    // The decoded record and its main data belong to the reader and are
    // read before the next record is.
    unsafe {
        let private = pg_sys::palloc0(std::mem::size_of::<pg_sys::ReadLocalXLogPageNoWaitPrivate>());
        let mut routine = pg_sys::XLogReaderRoutine {
            page_read: Some(read_local_xlog_page_no_wait),
            segment_open: Some(wal_segment_open),
            segment_close: Some(wal_segment_close),
        };
        let reader =
            pg_sys::XLogReaderAllocate(pg_sys::wal_segment_size, std::ptr::null(), &mut routine, private);
        if reader.is_null() {
            raise(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY, "cannot allocate a WAL reader");
        }
        let first = pg_sys::XLogFindNextRecord(reader, start);
        if first == 0 {
            pg_sys::XLogReaderFree(reader);
            return None;
        }
        pg_sys::XLogBeginRead(reader, first);
        loop {
            if (*reader).EndRecPtr >= end && (*reader).EndRecPtr != 0 {
                break;
            }
            let mut errormsg: *mut std::ffi::c_char = std::ptr::null_mut();
            let record = pg_sys::XLogReadRecord(reader, &mut errormsg);
            if record.is_null() {
                // The end of what is flushed (or of the WAL kept).
                break;
            }
            let decoded = (*reader).record;
            if (*reader).EndRecPtr > end {
                break;
            }
            let header = &(*decoded).header;
            if u32::from(header.xl_rmid) != pg_sys::RmgrIds::RM_XACT_ID
                || (*decoded).record_origin != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId
            {
                continue;
            }
            let info = header.xl_info & XLOG_XACT_OPMASK;
            if info != XLOG_XACT_COMMIT && info != XLOG_XACT_COMMIT_PREPARED {
                continue;
            }
            let mut parsed: pg_sys::xl_xact_parsed_commit = std::mem::zeroed();
            pg_sys::ParseCommitRecord(
                header.xl_info,
                (*decoded).main_data as *mut pg_sys::xl_xact_commit,
                &mut parsed,
            );
            if parsed.xact_time <= wanted {
                found = Some((*reader).EndRecPtr);
            }
        }
        pg_sys::XLogReaderFree(reader);
    }
    found
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.slot_enable_failover() RETURNS integer
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'slot_enable_failover_wrapper';
"#)]
/// Sets the `failover` flag of this database's lasting spock slots that
/// lack it and are not in use (PostgreSQL 17 and later; new slots get it
/// when they are made). Returns how many were changed.
fn slot_enable_failover() -> i32 {
    require_superuser("spock.slot_enable_failover");
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        pgrx::notice!(
            "replication slots of PostgreSQL {} have no failover flag (it came with 17); nothing was changed",
            pg_sys::PG_MAJORVERSION_NUM
        );
        0
    }
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        // SAFETY: reads shared recovery state.
        if unsafe { pg_sys::RecoveryInProgress() } {
            pgrx::notice!("this server is a standby: slot flags are set on the primary; nothing was changed");
            return 0;
        }
        let slots: Vec<(String, bool)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT slot_name::text, active FROM pg_catalog.pg_replication_slots
                      WHERE plugin = 'spock_output' AND database = pg_catalog.current_database()
                        AND NOT temporary AND NOT failover
                      ORDER BY 1",
                    None,
                    &[],
                )
                .map(|t| {
                    t.filter_map(|r| Some((r.get::<String>(1).ok()??, r.get::<bool>(2).ok()??))).collect()
                })
                .unwrap_or_default()
        });
        let mut changed = 0;
        for (name, active) in slots {
            if active {
                pgrx::notice!(
                    "replication slot \"{name}\" is in use; its failover flag is left off (run this again while \
                     its subscription is disabled)"
                );
                continue;
            }
            let c = std::ffi::CString::new(name).expect("slot names have no NUL byte");
            // SAFETY: alters a slot by name; PostgreSQL acquires it without
            // waiting (an error if a walsender took it meanwhile) and
            // releases it.
            unsafe {
                #[cfg(feature = "pg17")]
                pg_sys::ReplicationSlotAlter(c.as_ptr(), true);
                #[cfg(feature = "pg18")]
                pg_sys::ReplicationSlotAlter(c.as_ptr(), &true, std::ptr::null());
            }
            changed += 1;
        }
        changed
    }
}
