//! The version of spock's catalog in this database (`pg_extension`) against
//! the loaded library's (sql-api.md §2.4): what the manager updates, and
//! what the functions refuse to work with.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use spock_core::version::{CatalogCheck, check_catalog};

use super::spi_failed;
use crate::errors::raise_hint;
use crate::version::VERSION;

/// `pg_extension.extversion` of spock in this database, `None` when the
/// extension is not installed.
pub fn installed_version(client: &SpiClient<'_>) -> Option<String> {
    client
        .select("SELECT extversion FROM pg_extension WHERE extname = 'spock'", None, &[])
        .unwrap_or_else(spi_failed("read pg_extension"))
        .next()
        .and_then(|row| row.get::<String>(1).unwrap())
}

/// Whether the installed update scripts lead from `from` to `to`.
fn update_path(client: &SpiClient<'_>, from: &str, to: &str) -> bool {
    client
        .select(
            "SELECT 1 FROM pg_extension_update_paths('spock')
              WHERE source = $1 AND target = $2 AND path IS NOT NULL",
            None,
            &[from.into(), to.into()],
        )
        .unwrap_or_else(spi_failed("read pg_extension_update_paths('spock')"))
        .next()
        .is_some()
}

/// The catalog of this database against the loaded library, with the
/// catalog's version; `None` when the extension is not installed.
pub fn check(client: &SpiClient<'_>) -> Option<(String, CatalogCheck)> {
    let catalog = installed_version(client)?;
    let path = catalog != VERSION && update_path(client, &catalog, VERSION);
    let check = check_catalog(VERSION, &catalog, path);
    Some((catalog, check))
}

/// Brings the catalog to the library's version (the manager does, as the
/// bootstrap superuser).
pub fn update(client: &mut SpiClient<'_>) {
    client
        .update(&format!("ALTER EXTENSION spock UPDATE TO '{VERSION}'"), None, &[])
        .unwrap_or_else(spi_failed("update the extension (ALTER EXTENSION spock UPDATE)"));
}

/// Stops `what` with `55000` unless the catalog is the library's version.
pub fn require_current(client: &SpiClient<'_>, what: &str) {
    let Some((catalog, check)) = check(client) else { return };
    let why = match check {
        CatalogCheck::Matches => return,
        CatalogCheck::Update => format!(
            "the spock catalog of this database is version {catalog} and the loaded library is {VERSION}"
        ),
        CatalogCheck::Refuse(why) => why,
    };
    raise_hint(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("{what} cannot run: {why}"),
        "The database's spock manager runs ALTER EXTENSION spock UPDATE by itself when update scripts \
         lead to the library's version; a superuser can run it too. See the server log.",
    )
}
