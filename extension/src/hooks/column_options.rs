//! The column-option guard: on a server without core patch 020, `ALTER TABLE
//! ... ALTER COLUMN ... SET (log_old_value | delta_apply_function ...)` fails
//! with an error that names the missing patch, instead of PostgreSQL's
//! generic "unrecognized parameter".

use std::ffi::{CStr, c_void};

use pgrx::prelude::*;
use spock_core::core_patches::COLUMN_OPTIONS;

use crate::core_patches;

const PATCHED_OPTIONS: [&str; 2] = ["log_old_value", "delta_apply_function"];

/// The pointers held by a `List` of pointers.
///
/// # Safety
/// `list` is NULL or a valid pointer list.
unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut c_void> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a non-NULL List of pointers has `length` initialised cells.
    unsafe {
        let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
        cells.iter().map(|cell| cell.ptr_value).collect()
    }
}

/// The first patched column option that an `ALTER TABLE` sets or resets.
///
/// # Safety
/// `stmt` is NULL or a valid parse node.
unsafe fn patched_option_in(stmt: *mut pg_sys::Node) -> Option<&'static str> {
    // SAFETY: walks the node tree of a valid statement, checking node tags
    // before each cast.
    unsafe {
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_AlterTableStmt {
            return None;
        }
        let alter = stmt as *mut pg_sys::AlterTableStmt;
        for cmd in list_ptrs((*alter).cmds) {
            let cmd = cmd as *mut pg_sys::AlterTableCmd;
            if !matches!(
                (*cmd).subtype,
                pg_sys::AlterTableType::AT_SetOptions | pg_sys::AlterTableType::AT_ResetOptions
            ) {
                continue;
            }
            for def in list_ptrs((*cmd).def as *mut pg_sys::List) {
                let def = def as *mut pg_sys::DefElem;
                if (*def).defname.is_null() {
                    continue;
                }
                let name = CStr::from_ptr((*def).defname).to_string_lossy();
                if let Some(found) = PATCHED_OPTIONS.iter().find(|o| **o == name) {
                    return Some(found);
                }
            }
        }
        None
    }
}

/// Refuses a patched column option when the server lacks patch 020.
///
/// # Safety
/// `stmt` is NULL or a valid parse node.
pub unsafe fn check(stmt: *mut pg_sys::Node) {
    if core_patches::usable(&COLUMN_OPTIONS) {
        return;
    }
    // SAFETY: the caller's statement.
    if let Some(option) = unsafe { patched_option_in(stmt) } {
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("column option \"{option}\" needs core patch {}", COLUMN_OPTIONS.label()),
            "column_option_guard",
        )
        .set_hint(format!(
            "This server was built without {}. Use a server built by the spock toolkit \
             (cargo xtask build) or the spock server package.",
            COLUMN_OPTIONS.file(core_patches::server_major())
        ))
        .report(PgLogLevel::ERROR);
    }
}
