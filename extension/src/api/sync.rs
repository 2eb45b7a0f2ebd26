//! Sync events and waiting (sql-api.md §4.5, behaviour.md §12): a provider
//! writes a marker into its WAL stream; a subscriber waits until its
//! replication origin for that provider has passed the marker.

use pgrx::prelude::*;

use spock_core::protocol::SYNC_EVENT_PREFIX;

use crate::catalog::{node, subscription};
use crate::errors::{raise, require_superuser};

unsafe extern "C-unwind" {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    fn LogLogicalMessage(
        prefix: *const std::ffi::c_char,
        message: *const std::ffi::c_char,
        size: usize,
        transactional: bool,
    ) -> pg_sys::XLogRecPtr;
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    fn LogLogicalMessage(
        prefix: *const std::ffi::c_char,
        message: *const std::ffi::c_char,
        size: usize,
        transactional: bool,
        flush: bool,
    ) -> pg_sys::XLogRecPtr;
}

/// Writes a logical message with spock's sync-event prefix; returns the LSN
/// just past it. A non-transactional one is flushed at once.
fn log_sync_event(transactional: bool, payload: &[u8]) -> u64 {
    log_message(SYNC_EVENT_PREFIX, transactional, payload)
}

/// Writes a logical decoding message; returns the LSN just past it. A
/// non-transactional one is flushed at once.
pub(crate) fn log_message(prefix: &str, transactional: bool, payload: &[u8]) -> u64 {
    let prefix = std::ffi::CString::new(prefix).expect("no NUL");
    // SAFETY: writes a WAL record; the call is guarded against ERROR.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            let lsn =
                LogLogicalMessage(prefix.as_ptr(), payload.as_ptr().cast(), payload.len(), transactional);
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            let lsn = LogLogicalMessage(
                prefix.as_ptr(),
                payload.as_ptr().cast(),
                payload.len(),
                transactional,
                false,
            );
            if !transactional {
                pg_sys::XLogFlush(lsn);
            }
            lsn
        })
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sync_event(transactional boolean DEFAULT false) RETURNS pg_lsn
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_event_wrapper';
"#)]
// pg_lsn is a pass-by-value 64-bit datum: the Rust side takes and returns
// it as i64, the SQL declaration says pg_lsn.
fn sync_event(transactional: bool) -> i64 {
    require_superuser("spock.sync_event");
    let node = Spi::connect(|client| node::require_local_node(client, "spock.sync_event"));
    log_sync_event(transactional, node.node_name.as_bytes()) as i64
}

/// One poll of `wait_for_sync_event`: whether the replication origin of the
/// local subscription from `provider` has reached `lsn`. Raises the spec's
/// errors for an unknown provider and for a missing or disabled subscription
/// (unless `wait_if_disabled`, when it just reports not reached).
#[pg_extern(sql = r#"
CREATE FUNCTION spock.sync_event_reached(provider name, lsn pg_lsn, wait_if_disabled boolean) RETURNS boolean
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sync_event_reached_wrapper';
"#)]
fn sync_event_reached(
    provider: Option<&std::ffi::CStr>,
    lsn: Option<i64>,
    wait_if_disabled: Option<bool>,
) -> bool {
    let Some(provider) = provider else {
        raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "the origin to wait for must not be NULL")
    };
    let provider = provider.to_string_lossy().into_owned();
    let lsn =
        lsn.unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "lsn must not be NULL"));
    let wait_if_disabled = wait_if_disabled.unwrap_or(false);
    Spi::connect(|client| {
        node::require_local_node(client, "spock.wait_for_sync_event");
        let node_id = node::node_id_by_name(client, &provider).unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("node \"{provider}\" does not exist"))
        });
        let Some(sub) = subscription::from_provider(client, node_id).into_iter().next() else {
            if wait_if_disabled {
                return false;
            }
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("this node has no subscription from node \"{provider}\""),
            );
        };
        if !sub.enabled {
            if wait_if_disabled {
                return false;
            }
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("subscription \"{}\" from node \"{provider}\" is disabled", sub.name),
            );
        }
        client
            .select(
                "SELECT coalesce(pg_catalog.pg_replication_origin_progress($1, false) >= '0/0'::pg_lsn + $2::numeric, false)",
                None,
                &[sub.slot_name.as_str().into(), lsn.into()],
            )
            .ok()
            .and_then(|t| t.first().get_one::<bool>().ok().flatten())
            .unwrap_or(false)
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.wait_slot_confirm_lsn(slotname name, target pg_lsn) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'wait_slot_confirm_lsn_wrapper';
"#)]
// pg_lsn is a pass-by-value 64-bit datum, taken as i64.
fn wait_slot_confirm_lsn(slotname: Option<&std::ffi::CStr>, target: Option<i64>) {
    require_superuser("spock.wait_slot_confirm_lsn");
    // NULL: the end of this session's last commit, or the current insert
    // position when it committed nothing.
    // SAFETY: reads this backend's last commit end and the WAL insert position.
    let target = target.map_or_else(
        || unsafe {
            if pg_sys::XactLastCommitEnd != 0 {
                pg_sys::XactLastCommitEnd
            } else {
                pg_sys::GetXLogInsertRecPtr()
            }
        },
        |t| t as u64,
    );
    let slot = slotname.map(|s| s.to_string_lossy().into_owned());
    loop {
        // pg_replication_slots reads shared memory: always current.
        let behind: i64 = match &slot {
            Some(name) => {
                let lsn = Spi::connect(|client| {
                    client
                        .select(
                            "SELECT (coalesce(confirmed_flush_lsn, '0/0') - '0/0'::pg_lsn)::int8
                               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                            None,
                            &[name.as_str().into()],
                        )
                        .unwrap_or_else(|e| pgrx::error!("cannot read pg_replication_slots: {e}"))
                        .next()
                        .map(|r| r.get::<i64>(1).ok().flatten().unwrap_or(0))
                });
                match lsn {
                    Some(l) => i64::from((l as u64) < target),
                    None => crate::errors::raise(
                        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                        format!("replication slot \"{name}\" does not exist"),
                    ),
                }
            }
            None => Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM pg_catalog.pg_replication_slots
                  WHERE slot_type = 'logical' AND database = current_database()
                    AND coalesce(confirmed_flush_lsn, '0/0') < '0/0'::pg_lsn + $1::numeric",
                &[(target as i64).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot read pg_replication_slots: {e}"))
            .unwrap_or(0),
        };
        if behind == 0 {
            return;
        }
        pgrx::check_for_interrupts!();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.stamp_copied_rows(commit_ts timestamptz, node_id oid) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'stamp_copied_rows_wrapper';
"#)]
/// For the sessions that copy tables (behaviour.md §6.3): the rows the
/// current subtransaction wrote keep the commit timestamp and origin node
/// they have on the provider (core patch 040), so that last-update-wins
/// weighs every copied row by its own version. `node_id` 0 is the provider
/// itself. False (nothing done) without the patch or when the
/// subtransaction wrote nothing.
fn stamp_copied_rows(commit_ts: TimestampWithTimeZone, node_id: pg_sys::Oid) -> bool {
    require_superuser("spock.stamp_copied_rows");
    // SAFETY: reads this backend's transaction ids.
    let (subxid, top) =
        unsafe { (pg_sys::GetCurrentTransactionIdIfAny(), pg_sys::GetTopTransactionIdIfAny()) };
    if subxid == pg_sys::InvalidTransactionId || subxid == top {
        return false;
    }
    let node_id = node_id.to_u32();
    // SAFETY: reads this session's replication origin (set by the copying session).
    let session_origin = unsafe { pg_sys::replorigin_session_origin };
    let roident = if node_id == 0 { session_origin } else { origin_of_node(node_id, session_origin) };
    crate::core_patches::set_subxact_commit_ts(subxid, commit_ts.into_inner(), roident).unwrap_or(false)
}

thread_local! {
    /// The origins `stamp_copied_rows` found for nodes, for the rest of the
    /// copying session (its subscriptions do not change while it copies).
    static NODE_ORIGINS: std::cell::RefCell<std::collections::HashMap<u32, pg_sys::RepOriginId>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The local replication origin that stands for node `node_id`: this node's
/// own (`InvalidRepOriginId`) for itself, the origin of a subscription to
/// that node, the forwarding origin of a node whose transactions arrived
/// forwarded, or `fallback` (the provider's) for any other node.
fn origin_of_node(node_id: u32, fallback: pg_sys::RepOriginId) -> pg_sys::RepOriginId {
    if let Some(found) = NODE_ORIGINS.with(|m| m.borrow().get(&node_id).copied()) {
        return found;
    }
    let slot = Spi::connect(|client| {
        let local = node::local_node(client).map(|n| n.node_id);
        if local == Some(node_id) {
            return Some(None);
        }
        subscription::all(client).into_iter().find(|s| s.origin_id == node_id).map(|s| Some(s.slot_name))
    });
    let found = match slot {
        Some(None) => pg_sys::InvalidRepOriginId as pg_sys::RepOriginId,
        Some(Some(name)) => crate::catalog::origin::by_name(&name).unwrap_or(fallback),
        // A node whose transactions came forwarded has a forwarding origin.
        None => crate::catalog::origin::by_name(&crate::catalog::origin::forward_origin_name(node_id))
            .unwrap_or(fallback),
    };
    NODE_ORIGINS.with(|m| m.borrow_mut().insert(node_id, found));
    found
}
