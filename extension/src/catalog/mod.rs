//! The extension's own catalogs (`spock.*`, sql-api.md §6) and the
//! replication origins of subscriptions: the only code that reads or writes
//! them. The tables are created by `sql/catalog.sql`; each submodule gives
//! typed access to one group of them through SPI, and `decoding` reads them
//! the way the output plugin must, with the historic snapshot of the change
//! being decoded.

pub mod decoding;
pub mod exception_log;
pub mod extension;
pub mod node;
pub mod origin;
pub mod queue;
pub mod repset;
pub mod reserved;
pub mod resolutions;
pub mod subscription;
pub mod sync_status;

use pgrx::prelude::*;

pgrx::extension_sql_file!("../../sql/catalog.sql", name = "catalog", bootstrap);
pgrx::extension_sql_file!(
    "../../sql/functions.sql",
    name = "sql_functions",
    requires = ["catalog", api::sync::sync_event_reached, api::ddl::replicate_ddl]
);
pgrx::extension_sql_file!(
    "../../sql/views.sql",
    name = "views",
    requires = [
        "catalog",
        core_patches::core_patches_status,
        api::progress::progress_published,
        api::progress::copies_published,
        api::stats::channel_stats_rows
    ]
);
pgrx::extension_sql_file!("../../sql/privileges.sql", name = "privileges", finalize);

/// An `oid` column or argument from a Rust id.
pub(crate) fn oid(v: u32) -> pg_sys::Oid {
    pg_sys::Oid::from(v)
}

/// An `oid` column value as a Rust id (0 for NULL).
pub(crate) fn oid_u32(v: Option<pg_sys::Oid>) -> u32 {
    v.map(|o| o.to_u32()).unwrap_or(0)
}

/// Fails the statement when SPI does, naming the catalog access that failed.
pub(crate) fn spi_failed<T>(what: &str) -> impl FnOnce(pgrx::spi::SpiError) -> T + '_ {
    move |e| pgrx::error!("spock cannot {what}: {e}")
}

/// Runs `f` with the rights of the owner of schema `spock` (who owns the
/// catalogs), for the few functions that callers without superuser may use
/// and that must read a catalog: the caller's own privilege has been checked
/// before. `f` runs as a security-restricted operation with `search_path`
/// set to `pg_catalog, pg_temp` (so that the caller's functions and
/// operators cannot stand in for the catalog's), and the previous user and
/// settings come back afterwards, on error too.
pub fn with_catalog_owner_rights<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: syscache lookup of the schema's owner, then a user switch and
    // a GUC nest level that are undone below (and by transaction abort if
    // anything fails).
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"spock".as_ptr(), false);
        let tup = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            pg_sys::Datum::from(nsp),
        );
        if tup.is_null() {
            pgrx::error!("cache lookup failed for schema spock");
        }
        let form = pg_sys::GETSTRUCT(tup) as *const pg_sys::FormData_pg_namespace;
        let owner = (*form).nspowner;
        pg_sys::ReleaseSysCache(tup);
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let guc_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context
                | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
        // On an error only the user and settings are restored; nothing `f`
        // left half done is looked at again (the transaction aborts).
        PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
            .finally(|| {
                pg_sys::AtEOXact_GUC(false, guc_level);
                pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
            })
            .execute()
    }
}
