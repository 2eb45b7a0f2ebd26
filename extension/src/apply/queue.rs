//! Messages of a provider's `spock.queue` (behaviour.md §10.1-§10.2): the
//! row is stored in the local queue, then acted on inside the transaction
//! that applies it. SQL (`Q`, from `replicate_ddl`) and automatic DDL
//! (`D`) run as the role that queued them, with their search path, one
//! statement after another, never queued again. A sequence value (`S`)
//! moves the local sequence forward to it, never back, with the rights of
//! the sequence's owner. A table-sync request (`A`) is handed to the
//! dispatcher, which records it and has the table copied (`sync`).

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use spock_core::ddl::MessageType;
use spock_core::protocol::QueueRow;

use super::owner::OwnerContext;
use crate::catalog::{self, queue};
use crate::errors::{raise, raise_hint};
use crate::hooks::ddl::{Executor, executing};

/// The SQL a queue row carries (its `message` is a JSON string).
pub fn sql_of(row: &QueueRow) -> Option<String> {
    serde_json::from_str::<String>(&row.message).ok()
}

/// Stores a received queue row and acts on it.
pub fn apply(row: &QueueRow) {
    catalog::with_catalog_owner_rights(|| {
        Spi::connect_mut(|client| queue::insert(client, row, Some(row.queued_at)))
    });
    match MessageType::from_code(row.message_type) {
        Some(t @ (MessageType::Sql | MessageType::Ddl)) => execute(row, t),
        Some(MessageType::Sequence) => advance_sequence(row),
        Some(MessageType::TableSync) => {
            let message: serde_json::Value = serde_json::from_str(&row.message).unwrap_or_default();
            let name = |key: &str| message.get(key).and_then(|v| v.as_str()).map(str::to_string);
            match (name("schema_name"), name("table_name")) {
                (Some(nspname), Some(relname)) => super::sync::note_request(nspname, relname),
                _ => raise(
                    PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                    format!("a table-sync request names no table: {}", row.message),
                ),
            }
        }
        _ => raise_hint(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "the provider sent a spock.queue message of type '{}', which this node cannot act on",
                row.message_type as char
            ),
            "Upgrade spock on this node to the provider's version.",
        ),
    }
}

fn execute(row: &QueueRow, message_type: MessageType) {
    let Some(sql) = sql_of(row) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("a replicated DDL message is not a JSON string: {}", row.message),
        )
    };
    let role = std::ffi::CString::new(row.role.as_str()).unwrap_or_default();
    // SAFETY: a catalog lookup by name, missing_ok.
    let role_oid = unsafe { pg_sys::get_role_oid(role.as_ptr(), true) };
    if role_oid == pg_sys::InvalidOid {
        raise_hint(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "role \"{}\" of the replicated DDL does not exist on this node (statement: {sql})",
                row.role
            ),
            "Create the role on this node; the apply worker then tries the transaction again.",
        );
    }
    // SAFETY: switches the current user and opens a GUC nest level for the
    // statements (their SET search_path ends with it); both are restored
    // after them, or by the (sub)transaction's abort on error.
    unsafe {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let guc_level = pg_sys::NewGUCNestLevel();
        pg_sys::SetUserIdAndSecContext(role_oid, saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        PgTryBuilder::new(|| {
            executing(Executor::Apply(message_type), || {
                Spi::run(&sql).unwrap_or_else(|e| pgrx::error!("{e} (in replicated DDL: {sql})"))
            })
        })
        .catch_others(|e| match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                ErrorReport::new(
                    r.sql_error_code(),
                    format!("{} (in replicated DDL: {sql})", r.message()),
                    "spock",
                )
                .report(PgLogLevel::ERROR);
                unreachable!("ERROR does not return")
            }
            other => other.rethrow(),
        })
        .execute();
        pg_sys::AtEOXact_GUC(true, guc_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
}

/// A pushed sequence value (behaviour.md §11): the local sequence is set to
/// it only when that is higher than its own current value.
fn advance_sequence(row: &QueueRow) {
    let bad = || -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("a replicated sequence value is malformed: {}", row.message),
        )
    };
    let v: serde_json::Value = serde_json::from_str(&row.message).unwrap_or_else(|_| bad());
    let (Some(schema), Some(name), Some(value)) = (
        v["schema_name"].as_str(),
        v["sequence_name"].as_str(),
        v["last_value"].as_str().and_then(|s| s.parse::<i64>().ok()),
    ) else {
        bad()
    };
    let qualified = format!("{}.{}", pgrx::spi::quote_identifier(schema), pgrx::spi::quote_identifier(name));
    let seq = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'S'",
        &[schema.into(), name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        raise_hint(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("sequence {qualified} of a replicated sequence value does not exist on this node"),
            "Create the sequence on this node; the apply worker then tries the transaction again.",
        )
    });
    // SAFETY: a syscache read of the sequence's owner.
    let owner = unsafe {
        let tup =
            pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(seq));
        if tup.is_null() {
            pgrx::error!("cache lookup failed for relation {}", seq.to_u32());
        }
        let form = pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_class;
        let owner = (*form).relowner;
        pg_sys::ReleaseSysCache(tup);
        owner
    };
    let mut as_owner = OwnerContext::default();
    as_owner.enter(owner);
    let current = Spi::get_one::<i64>(&format!("SELECT last_value FROM {qualified}"))
        .unwrap_or_else(|e| pgrx::error!("cannot read sequence {qualified}: {e}"))
        .unwrap_or(i64::MIN);
    if value > current {
        Spi::run_with_args("SELECT pg_catalog.setval($1, $2)", &[seq.into(), value.into()])
            .unwrap_or_else(|e| pgrx::error!("cannot set sequence {qualified}: {e}"));
    }
    as_owner.leave();
}
