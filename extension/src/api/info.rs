//! Information functions (sql-api.md §4.1): `node_info`, the protocol version
//! range, the slot-name rule, commit timestamps and origins of rows.

use std::ffi::CStr;

use pgrx::prelude::*;
use spock_core::{naming, protocol};

use super::{current_database, require_replication_privilege};
use crate::catalog;

/// The row of `spock.node_info()`, as a set-returning function that the SQL
/// function of that name (which returns one record) selects from.
#[pg_extern(sql = r#"
CREATE FUNCTION spock.node_info_rows(OUT node_id oid, OUT node_name text, OUT sysid text, OUT dbname text,
    OUT replication_sets text, OUT location text, OUT country text, OUT info jsonb)
    RETURNS SETOF record STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'node_info_wrapper';
CREATE FUNCTION spock.node_info(OUT node_id oid, OUT node_name text, OUT sysid text, OUT dbname text,
    OUT replication_sets text, OUT location text, OUT country text, OUT info jsonb)
    RETURNS record STABLE LANGUAGE sql AS 'SELECT * FROM spock.node_info_rows()';
"#)]
#[allow(clippy::type_complexity)]
fn node_info() -> TableIterator<
    'static,
    (
        name!(node_id, pg_sys::Oid),
        name!(node_name, String),
        name!(sysid, String),
        name!(dbname, String),
        name!(replication_sets, String),
        name!(location, Option<String>),
        name!(country, Option<String>),
        name!(info, Option<pgrx::JsonB>),
    ),
> {
    require_replication_privilege("spock.node_info");
    let row = Spi::connect(|client| {
        let local = catalog::require_local_node(client, "spock.node_info");
        let sets: Vec<String> = client
            .select(
                "SELECT set_name::text FROM spock.replication_set WHERE set_nodeid = $1 ORDER BY set_name",
                None,
                &[pg_sys::Oid::from(local.node_id).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot read spock.replication_set: {e}"))
            .into_iter()
            .filter_map(|r| r.get::<String>(1).unwrap())
            .collect();
        let extra = client
            .select(
                "SELECT location, country, info FROM spock.node WHERE node_id = $1",
                None,
                &[pg_sys::Oid::from(local.node_id).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot read spock.node: {e}"))
            .into_iter()
            .next()
            .map(|r| {
                (r.get::<String>(1).unwrap(), r.get::<String>(2).unwrap(), r.get::<pgrx::JsonB>(3).unwrap())
            })
            .unwrap_or((None, None, None));
        // SAFETY: reads the control file's system identifier.
        let sysid = unsafe { pg_sys::GetSystemIdentifier() }.to_string();
        (
            pg_sys::Oid::from(local.node_id),
            local.node_name,
            sysid,
            current_database(),
            sets.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(","),
            extra.0,
            extra.1,
            extra.2,
        )
    });
    TableIterator::new(vec![row])
}

#[pg_extern(immutable, parallel_safe)]
fn spock_max_proto_version() -> i32 {
    protocol::MAX_PROTO_VERSION as i32
}

#[pg_extern(immutable, parallel_safe)]
fn spock_min_proto_version() -> i32 {
    protocol::MIN_PROTO_VERSION as i32
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.spock_gen_slot_name(dbname name, provider_node name, subscription name) RETURNS name
    IMMUTABLE STRICT PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'spock_gen_slot_name_wrapper';
"#)]
fn spock_gen_slot_name(dbname: &CStr, provider_node: &CStr, subscription: &CStr) -> String {
    naming::slot_name(
        &dbname.to_string_lossy(),
        &provider_node.to_string_lossy(),
        &subscription.to_string_lossy(),
    )
}

pgrx::extension_sql!(
    r#"
-- Commit timestamp and origin of a transaction, with the origin given as the
-- spock node id of the subscription whose replication origin applied it.
CREATE FUNCTION spock.xact_commit_timestamp_origin(xid xid, OUT "timestamp" timestamptz, OUT roident oid)
    RETURNS record STRICT STABLE SECURITY DEFINER SET search_path = pg_catalog
    LANGUAGE sql AS $$
    SELECT c.timestamp,
           CASE WHEN c.roident = 0 THEN 0::oid
                ELSE coalesce((SELECT s.sub_origin FROM spock.subscription s
                                 JOIN pg_catalog.pg_replication_origin o ON o.roname = s.sub_slot_name
                                WHERE o.roident = c.roident), c.roident)
           END
      FROM pg_catalog.pg_xact_commit_timestamp_origin($1) c
$$;
GRANT EXECUTE ON FUNCTION spock.xact_commit_timestamp_origin(xid) TO PUBLIC;
"#,
    name = "xact_commit_timestamp_origin",
    requires = ["catalog"]
);
