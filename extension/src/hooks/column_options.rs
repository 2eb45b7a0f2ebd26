//! The delta-apply column options of core patch 020 (sql-api.md §5): read
//! from the text of `pg_attribute.attoptions` (never from patched structs),
//! their function resolved by name and column type, and the guard on
//! `ALTER TABLE ... ALTER COLUMN ... SET (...)`: without the patch the
//! options fail with an error that names it, instead of PostgreSQL's
//! generic "unrecognized parameter"; with it, a `delta_apply_function` that
//! does not fit the column fails at once (42883).

use std::ffi::{CStr, CString, c_void};

use pgrx::prelude::*;
use spock_core::core_patches::COLUMN_OPTIONS;
use spock_core::delta::ColumnOptions;

use crate::core_patches;
use crate::errors::raise_hint;

/// The column options of attribute `attnum` of `relid`.
pub fn read(relid: pg_sys::Oid, attnum: i16) -> ColumnOptions {
    // SAFETY: a syscache lookup, released before returning; the options
    // array is copied out.
    unsafe {
        let tup = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::ATTNUM as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(attnum),
        );
        if tup.is_null() {
            return ColumnOptions::default();
        }
        let mut isnull = false;
        let datum = pg_sys::SysCacheGetAttr(
            pg_sys::SysCacheIdentifier::ATTNUM as i32,
            tup,
            pg_sys::Anum_pg_attribute_attoptions as i16,
            &mut isnull,
        );
        let options = if isnull {
            Vec::new()
        } else {
            Vec::<String>::from_polymorphic_datum(datum, false, pg_sys::TEXTARRAYOID).unwrap_or_default()
        };
        pg_sys::ReleaseSysCache(tup);
        ColumnOptions::parse(&options)
    }
}

#[cfg(feature = "pg15")]
unsafe fn qualified_name_list(name: &CStr) -> *mut pg_sys::List {
    // SAFETY: parses a NUL-terminated name; a syntax error raises.
    unsafe { pg_sys::stringToQualifiedNameList(name.as_ptr()) }
}

#[cfg(not(feature = "pg15"))]
unsafe fn qualified_name_list(name: &CStr) -> *mut pg_sys::List {
    // SAFETY: parses a NUL-terminated name; a syntax error raises.
    unsafe { pg_sys::stringToQualifiedNameList(name.as_ptr(), std::ptr::null_mut()) }
}

/// The function `name(T, T, T) RETURNS T` for the column type `typ`, looked
/// up through the current search path; `None` when there is none.
pub fn resolve_function(name: &str, typ: pg_sys::Oid) -> Option<pg_sys::Oid> {
    let cname = CString::new(name).ok()?;
    // SAFETY: catalog lookups; a malformed name raises PostgreSQL's own
    // syntax error.
    unsafe {
        let names = qualified_name_list(&cname);
        let mut args = [typ, typ, typ];
        let func = pg_sys::LookupFuncName(names, 3, args.as_mut_ptr(), true);
        (func != pg_sys::InvalidOid && pg_sys::get_func_rettype(func) == typ).then_some(func)
    }
}

/// The error for a `delta_apply_function` that does not fit its column.
pub fn raise_no_function(name: &str, typ: pg_sys::Oid, column: &str, table: &str) -> ! {
    // SAFETY: formats a type name (a palloc'd string, copied at once).
    let typname = unsafe { CStr::from_ptr(pg_sys::format_type_be(typ)) }.to_string_lossy().into_owned();
    raise_hint(
        PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
        format!(
            "delta_apply_function {name}({typname}, {typname}, {typname}) returning {typname} does not exist, \
             for column \"{column}\" of {table}"
        ),
        format!(
            "Create the function, or name one taking (old, new, local) of the column's type, such as {}.",
            spock_core::delta::DEFAULT_FUNCTION
        ),
    )
}

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

/// Refuses a patched column option when the server lacks patch 020, and,
/// in a database where spock is installed, a `delta_apply_function` that
/// names no fitting function when it has it.
///
/// # Safety
/// `stmt` is NULL or a valid parse node.
pub unsafe fn check(stmt: *mut pg_sys::Node) {
    // Nothing else is looked at, and no catalog is read for other
    // statements (a ROLLBACK may run in an aborted transaction).
    // SAFETY: a valid parse node or NULL, per the contract.
    if stmt.is_null() || unsafe { (*stmt).type_ } != pg_sys::NodeTag::T_AlterTableStmt {
        return;
    }
    if core_patches::usable(&COLUMN_OPTIONS) {
        // Only where spock is installed: elsewhere the options are the
        // core patch's alone, stored verbatim.
        // SAFETY: a catalog lookup by name; the caller's statement.
        unsafe {
            if pg_sys::get_extension_oid(c"spock".as_ptr(), true) != pg_sys::InvalidOid {
                check_functions(stmt);
            }
        }
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

/// Checks every `delta_apply_function` an `ALTER TABLE` sets against the
/// column's type.
///
/// # Safety
/// `stmt` is NULL or a valid parse node.
unsafe fn check_functions(stmt: *mut pg_sys::Node) {
    // SAFETY: walks the node tree of a valid statement, checking node tags
    // before each cast; catalog lookups of the named table.
    unsafe {
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_AlterTableStmt {
            return;
        }
        let alter = stmt as *mut pg_sys::AlterTableStmt;
        for cmd in list_ptrs((*alter).cmds) {
            let cmd = cmd as *mut pg_sys::AlterTableCmd;
            if (*cmd).subtype != pg_sys::AlterTableType::AT_SetOptions || (*cmd).name.is_null() {
                continue;
            }
            for def in list_ptrs((*cmd).def as *mut pg_sys::List) {
                let def = def as *mut pg_sys::DefElem;
                if (*def).defname.is_null()
                    || CStr::from_ptr((*def).defname).to_bytes() != b"delta_apply_function"
                    || (*def).arg.is_null()
                {
                    continue;
                }
                let name = CStr::from_ptr(pg_sys::defGetString(def)).to_string_lossy().into_owned();
                // PostgreSQL reports a missing table or column itself.
                let relid = pg_sys::RangeVarGetRelidExtended(
                    (*alter).relation,
                    pg_sys::NoLock as i32,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                );
                if relid == pg_sys::InvalidOid {
                    return;
                }
                let attnum = pg_sys::get_attnum(relid, (*cmd).name);
                if attnum <= 0 {
                    continue;
                }
                let typ = pg_sys::get_atttype(relid, attnum);
                if resolve_function(&name, typ).is_none() {
                    let column = CStr::from_ptr((*cmd).name).to_string_lossy().into_owned();
                    let table = CStr::from_ptr(pg_sys::get_rel_name(relid)).to_string_lossy().into_owned();
                    raise_no_function(&name, typ, &column, &table);
                }
            }
        }
    }
}
