//! Run-time detection of the core patches (patches.md §1.2): markers and
//! functions are looked up with `dlsym(RTLD_DEFAULT, ...)` when the library
//! loads, never linked, so that the library also loads on a stock server.
//! Reports what it found in the server log and in `spock.core_patches`, and
//! refuses patch-dependent column options on a server without patch 020.

use std::ffi::{CStr, CString, c_int, c_void};
use std::sync::OnceLock;

use pgrx::prelude::*;
use spock_core::core_patches::{CORE_PATCHES, CorePatch, Status};

/// What `_PG_init` found, in the order of `CORE_PATCHES`.
static FOUND: OnceLock<[Status; 3]> = OnceLock::new();

/// The server's major version, for patch file names.
pub fn server_major() -> u32 {
    pg_sys::PG_VERSION_NUM / 10000
}

fn lookup(name: &str) -> *mut c_void {
    let name = CString::new(name).expect("symbol names have no NUL");
    // SAFETY: dlsym with RTLD_DEFAULT only searches the loaded objects; a
    // missing symbol gives NULL.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn detect() -> [Status; 3] {
    CORE_PATCHES.map(|patch| {
        let marker = lookup(patch.marker);
        // SAFETY: the marker is a `const int` exported by the patched server.
        let value = (!marker.is_null()).then(|| unsafe { *(marker as *const c_int) });
        Status::judge(&patch, value, |f| !lookup(f).is_null())
    })
}

/// What the server carries, detected once per process (inherited from the
/// postmaster when the library is preloaded).
pub fn found() -> &'static [Status; 3] {
    FOUND.get_or_init(detect)
}

/// Whether a patch is present at the revision this extension understands.
pub fn usable(patch: &CorePatch) -> bool {
    CORE_PATCHES.iter().zip(found()).any(|(p, s)| p.number == patch.number && s.usable())
}

/// The patches that are missing or not usable, as "patch 020 (column
/// options), patch 030 (...)"; empty when all are usable.
pub fn missing_summary() -> String {
    CORE_PATCHES
        .iter()
        .zip(found())
        .filter(|(_, s)| !s.usable())
        .map(|(p, _)| p.label())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Called from `_PG_init` while preloading: detect, log one summary line and
/// one WARNING per patch that is not usable, and guard column options.
pub fn init() {
    let found = found();
    let pairs: Vec<(CorePatch, Status)> = CORE_PATCHES.iter().copied().zip(found.iter().copied()).collect();
    pgrx::log!("spock: {}", spock_core::core_patches::summary(&pairs));
    for (patch, status) in &pairs {
        if let Some(problem) = patch.problem(*status, server_major()) {
            pgrx::warning!("spock: {problem}");
        }
    }
    if !usable(&spock_core::core_patches::COLUMN_OPTIONS) {
        install_column_option_guard();
    }
}

/// One row per capability: the view `spock.core_patches`.
#[pg_extern(stable, parallel_safe)]
fn core_patches_status() -> TableIterator<
    'static,
    (name!(patch, String), name!(present, bool), name!(abi, Option<i32>), name!(features, String)),
> {
    let rows: Vec<_> = CORE_PATCHES
        .iter()
        .zip(found())
        .map(|(p, s)| (p.label(), s.usable(), s.abi(), p.features.to_string()))
        .collect();
    TableIterator::new(rows)
}

pgrx::extension_sql!(
    r#"
CREATE VIEW spock.core_patches AS
    SELECT patch, present, abi, features FROM spock.core_patches_status();
COMMENT ON VIEW spock.core_patches IS 'Core patches this server carries and what is unavailable without them';
GRANT SELECT ON spock.core_patches TO PUBLIC;
"#,
    name = "core_patches_view",
    requires = [core_patches_status]
);

// ---------------------------------------------------------------------------
// The column-option guard for servers without patch 020.

const PATCHED_OPTIONS: [&str; 2] = ["log_old_value", "delta_apply_function"];

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

fn install_column_option_guard() {
    // SAFETY: hooks are installed while the library is preloaded, before
    // any backend runs; the previous hook is chained.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(column_option_guard);
    }
}

/// The pointers held by a `List` of pointers.
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
unsafe fn patched_option_in(stmt: *mut pg_sys::Node) -> Option<&'static str> {
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

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn column_option_guard(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        if let Some(option) = patched_option_in((*pstmt).utilityStmt) {
            let patch = spock_core::core_patches::COLUMN_OPTIONS;
            pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("column option \"{option}\" needs core patch {}", patch.label()),
                "column_option_guard",
            )
            .set_hint(format!(
                "This server was built without {}. Use a server built by the spock toolkit \
                 (cargo xtask build) or the spock server package.",
                patch.file(server_major())
            ))
            .report(PgLogLevel::ERROR);
        }
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}
