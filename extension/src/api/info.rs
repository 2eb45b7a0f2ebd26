//! Information functions (sql-api.md §4.1): `node_info`, the protocol version
//! range, the slot-name rule, commit timestamps and origins of rows,
//! `get_country`.

use std::ffi::CStr;

use pgrx::prelude::*;
use spock_core::{naming, protocol};

use super::{current_database, require_replication_privilege};
use crate::catalog::{self, node, repset};

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
    // Replication roles may call this, but not read the catalogs: read them
    // with the catalogs' owner's rights.
    let row = catalog::with_catalog_owner_rights(|| {
        Spi::connect(|client| {
            let local = node::require_local_node(client, "spock.node_info");
            let sets = repset::set_names(client, local.node_id);
            let details = node::node_details(client, local.node_id);
            (local, sets, details)
        })
    });
    let (local, sets, details) = row;
    // SAFETY: reads the control file's system identifier.
    let sysid = unsafe { pg_sys::GetSystemIdentifier() }.to_string();
    TableIterator::new(vec![(
        pg_sys::Oid::from(local.node_id),
        local.node_name,
        sysid,
        current_database(),
        protocol::encode_name_list(&sets),
        details.location,
        details.country,
        details.info,
    )])
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

/// `spock.get_country()`: the value of `spock.country` (sql-api.md §4.1).
#[pg_extern(sql = r#"
CREATE FUNCTION spock.get_country() RETURNS text STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'get_country_wrapper';
"#)]
fn get_country() -> Option<String> {
    crate::guc::COUNTRY.get().map(|c| c.to_string_lossy().into_owned())
}
