//! spock's hooks into the server, installed once while the library is
//! preloaded, each chained to whatever was installed before: one
//! ProcessUtility hook that runs each utility-statement check in turn
//! (read-only mode of `readonly`, the column-option guard of
//! `column_options`, then automatic DDL replication (`ddl`), which looks at
//! the statement before it runs and queues it after it succeeded), and one
//! ExecutorStart hook for read-only mode.

pub mod column_options;
pub mod ddl;
pub mod readonly;

use pgrx::prelude::*;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

/// Installs the hooks; called from `_PG_init` while preloading.
pub fn install() {
    // SAFETY: hooks are installed while the library is preloaded, before
    // any backend runs; the previous hook is kept and chained.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int) {
    readonly::restrict();
    // SAFETY: the query PostgreSQL is about to start, passed on unchanged
    // to the previous hook or the standard implementation.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: the statement PostgreSQL is about to execute, passed on
    // unchanged to the previous hook or the standard implementation.
    unsafe {
        readonly::restrict();
        column_options::check((*pstmt).utilityStmt);
        let _level = ddl::enter_statement();
        let after = ddl::before(pstmt, query_string, context);
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
        if let Some(after) = after {
            after.run();
        }
    }
}
