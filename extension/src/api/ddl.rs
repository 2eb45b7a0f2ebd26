//! `spock.replicate_ddl` (sql-api.md §4.6, behaviour.md §10.1): a command
//! run here under a given role and search path, and queued in
//! `spock.queue`, in the caller's transaction, for the subscribers of the
//! given sets. (The text[] form is SQL, in `sql/functions.sql`.)

use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use spock_core::ddl::{self as rules, MessageType};
use spock_core::protocol::QueueRow;

use crate::catalog::{self, node, queue, repset};
use crate::errors::{raise, raise_hint, require_superuser};
use crate::hooks::ddl::{Executor, executing};

#[pg_extern(sql = r#"
CREATE FUNCTION spock.replicate_ddl(command text, replication_sets text[] DEFAULT '{ddl_sql}',
    search_path text DEFAULT current_setting('search_path'), role text DEFAULT CURRENT_USER)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'replicate_ddl_wrapper';
"#)]
fn replicate_ddl(command: &str, replication_sets: Vec<String>, search_path: &str, role: &str) -> bool {
    require_superuser("spock.replicate_ddl");
    refuse_non_ddl(command);
    Spi::connect(|client| {
        let local = node::require_local_node(client, "spock.replicate_ddl");
        let known = repset::set_names(client, local.node_id);
        if let Some(missing) = replication_sets.iter().find(|s| !known.contains(s)) {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("replication set \"{missing}\" does not exist"),
            );
        }
    });
    let role_c = CString::new(role)
        .unwrap_or_else(|_| raise(PgSqlErrorCode::ERRCODE_INVALID_NAME, "role contains a NUL byte"));
    // SAFETY: a catalog lookup by name, missing_ok.
    let role_oid = unsafe { pg_sys::get_role_oid(role_c.as_ptr(), true) };
    if role_oid == pg_sys::InvalidOid {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("role \"{role}\" does not exist"));
    }
    run_locally(command, search_path, role_oid);
    let row = QueueRow {
        queued_at: 0,
        role: role.to_string(),
        replication_sets: Some(replication_sets),
        message_type: MessageType::Sql.code(),
        message: serde_json::to_string(&rules::queued_sql(search_path, command)).expect("a string encodes"),
    };
    catalog::with_catalog_owner_rights(|| Spi::connect_mut(|client| queue::insert(client, &row, None)));
    true
}

/// Refuses a command with a statement that is not DDL (PostgreSQL's DDL
/// class of `log_statement`), before anything runs.
fn refuse_non_ddl(command: &str) {
    let c = CString::new(command).unwrap_or_else(|_| {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "command contains a NUL byte")
    });
    // SAFETY: parses the command into raw statements (syntax errors are
    // raised here) and classifies each without catalog access.
    unsafe {
        let list = pg_sys::pg_parse_query(c.as_ptr());
        let n = if list.is_null() { 0 } else { (*list).length as usize };
        if n == 0 {
            raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "command of spock.replicate_ddl is empty");
        }
        for i in 0..n {
            let raw = (*(*list).elements.add(i)).ptr_value as *mut pg_sys::RawStmt;
            let stmt = (*raw).stmt;
            if pg_sys::GetCommandLogLevel(stmt) != pg_sys::LogStmtLevel::LOGSTMT_DDL {
                let tag = CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(stmt)))
                    .to_string_lossy()
                    .into_owned();
                raise_hint(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("spock.replicate_ddl runs DDL only, and {tag} is not DDL"),
                    "Run data changes as ordinary statements: they replicate through the replication sets.",
                );
            }
        }
    }
}

/// Runs the command here, as `role`, with `search_path`; the path and the
/// user come back afterwards.
fn run_locally(command: &str, search_path: &str, role: pg_sys::Oid) {
    let path = CString::new(search_path).unwrap_or_else(|_| {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "search_path contains a NUL byte")
    });
    // SAFETY: a GUC nest level and a user switch, undone after the command
    // (and by the transaction's abort when it fails).
    unsafe {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let guc_level = pg_sys::NewGUCNestLevel();
        // An invalid path is 22023, from the setting's own check.
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            path.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(role, saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        executing(Executor::ReplicateDdl, || {
            Spi::run(command).unwrap_or_else(|e| pgrx::error!("spock.replicate_ddl: {e}"))
        });
        pg_sys::AtEOXact_GUC(true, guc_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.note_ddl_schemas(schemas text[]) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'note_ddl_schemas_wrapper';
"#)]
/// Called by the event triggers of `spock.ddl_schemas_of_statement` (not
/// by users: revoked from PUBLIC, the trigger function runs as the
/// extension's owner): the schemas of the objects the running DDL
/// statement touched.
fn note_ddl_schemas(schemas: Option<Vec<Option<String>>>) {
    crate::hooks::ddl::note_schemas(schemas.unwrap_or_default().into_iter().flatten());
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.repair_mode(enabled boolean) RETURNS pg_lsn
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repair_mode_wrapper';
"#)]
/// Turns repair mode on or off for the rest of the current transaction
/// (sql-api.md §4.6): a transactional marker in the stream tells the output
/// plugin to leave out the data changes that follow it, a flag of the
/// session (cleared when the transaction ends) stops automatic DDL
/// replication and set membership, and `spock.replication_repair_mode`
/// shows it (a transaction-local setting). Returns the
/// marker's LSN. The marker gives the transaction an id, so it commits a
/// record even if it writes nothing else. Called alone in autocommit mode
/// it has no effect beyond that statement; a DO block or function may use
/// it for the statements that follow in the same transaction.
// pg_lsn is a pass-by-value 64-bit datum, returned as i64.
fn repair_mode(enabled: bool) -> i64 {
    require_superuser("spock.repair_mode");
    let value = if enabled { c"on" } else { c"off" };
    // SAFETY: sets an internal setting for the current transaction only
    // (reverted at its end, like SET LOCAL).
    unsafe {
        pg_sys::set_config_option(
            c"spock.replication_repair_mode".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_INTERNAL,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            PgLogLevel::ERROR as i32,
            false,
        );
    }
    crate::hooks::ddl::set_repair_mode(enabled);
    let payload = if enabled { "on" } else { "off" };
    super::sync::log_message(spock_core::protocol::REPAIR_MODE_PREFIX, true, payload.as_bytes()) as i64
}
