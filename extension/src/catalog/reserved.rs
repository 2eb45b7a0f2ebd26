//! Reserved schemas and extensions (`spock.reserved_object`, sql-api.md
//! §6.15): what keeps tables out of replication sets and objects out of a
//! structure copy. The built-in rows reserve the `spock` schema and
//! extension.

use pgrx::prelude::*;

use super::spi_failed;

/// Why table `relid` cannot join a replication set, if a reserved object
/// blocks it: `schema "s"` or `extension "e"` (its schema, or the extension
/// it belongs to, is reserved with `block_in_repset`).
pub fn blocking(relid: pg_sys::Oid) -> Option<String> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT r.kind || ' \"' || r.name || '\"'
                   FROM spock.reserved_object r
                  WHERE r.block_in_repset
                    AND ((r.kind = 'schema'
                          AND r.name = (SELECT n.nspname FROM pg_catalog.pg_class c
                                          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                         WHERE c.oid = $1))
                      OR (r.kind = 'extension'
                          AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                                        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                                       WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = $1
                                         AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                                         AND d.deptype = 'e' AND e.extname = r.name)))
                  ORDER BY r.kind DESC, r.name LIMIT 1",
                None,
                &[relid.into()],
            )
            .unwrap_or_else(spi_failed("read spock.reserved_object"))
            .next()
            .and_then(|row| row.get::<String>(1).unwrap())
    })
}

/// Whether schema `schema` is reserved with `block_in_repset`.
pub fn blocks_schema(schema: &str) -> bool {
    names("schema", "block_in_repset").iter().any(|s| s == schema)
}

/// The reserved objects of `kind` (`schema` or `extension`) whose boolean
/// column `flag` is true.
fn names(kind: &str, flag: &str) -> Vec<String> {
    Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT name::text FROM spock.reserved_object WHERE kind = $1 AND {flag} ORDER BY name"
                ),
                None,
                &[kind.into()],
            )
            .unwrap_or_else(spi_failed("read spock.reserved_object"))
            .filter_map(|row| row.get::<String>(1).unwrap())
            .collect()
    })
}

/// What a structure copy leaves out: the schemas and extensions reserved
/// with `exclude_from_dump`.
pub fn excluded_from_dump() -> (Vec<String>, Vec<String>) {
    (names("schema", "exclude_from_dump"), names("extension", "exclude_from_dump"))
}

/// The schemas whose tables an initial copy does not copy (reserved with
/// `block_in_repset`).
pub fn blocked_schemas() -> Vec<String> {
    names("schema", "block_in_repset")
}

/// The first of `schemas` reserved with `replicate_ddl = false`: DDL on
/// objects in it stays on this node.
pub fn keeps_ddl_local(schemas: &[String]) -> Option<String> {
    names("schema", "replicate_ddl = false").into_iter().find(|s| schemas.contains(s))
}
