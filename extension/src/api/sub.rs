//! Subscriptions (sql-api.md §4.4): create, drop, enable, disable, change
//! their sets, show their status, wait for their initial synchronisation.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{PgXactCallbackEvent, register_xact_callback};
use spock_core::{dsn, naming};

use super::current_database;
use crate::catalog::{self, Subscription};
use crate::errors::{raise, raise_hint, require_preloaded, require_superuser};
use crate::libpq::{self, Conn};
use crate::{guc, shmem};

/// What the provider says about itself (`spock.node_info()` there).
struct ProviderInfo {
    node_id: u32,
    node_name: String,
    sysid: String,
    dbname: String,
    sets: Vec<String>,
    location: Option<String>,
    country: Option<String>,
    info: Option<String>,
}

fn connect_provider(provider_dsn: &str, replication: bool) -> Conn {
    let mut conninfo = dsn::with_defaults(provider_dsn, &guc::extra_connection_options());
    if replication {
        conninfo.push_str(" replication=database");
    }
    Conn::connect(&conninfo).unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            // The DSN goes last: masking a password value runs to the end of it.
            format!("cannot connect to the provider ({}); connection string: {provider_dsn}", e.message),
        )
    })
}

fn provider_query(conn: &mut Conn, sql: &str, what: &str) -> libpq::Rows {
    conn.query(sql).unwrap_or_else(|e| {
        let code = match e.sqlstate.as_deref() {
            Some("42501") => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Some("55000") | Some("3F000") | Some("42883") | Some("42P01") => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            _ => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        };
        raise(code, format!("the provider cannot {what}: {}", e.message))
    })
}

fn read_provider(conn: &mut Conn) -> ProviderInfo {
    let rows = provider_query(
        conn,
        "SELECT node_id::int8, node_name, sysid, dbname, replication_sets, location, country, info::text
           FROM spock.node_info()",
        "describe its spock node (is the spock extension installed there, with spock.node_create() run?)",
    );
    let row = rows.rows.into_iter().next().unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the provider has no spock node")
    });
    let get = |i: usize| row.get(i).cloned().flatten();
    ProviderInfo {
        node_id: get(0).and_then(|s| s.parse().ok()).unwrap_or(0),
        node_name: get(1).unwrap_or_default(),
        sysid: get(2).unwrap_or_default(),
        dbname: get(3).unwrap_or_default(),
        sets: get(4)
            .map(|s| {
                s.split(',')
                    .map(|n| n.trim().trim_matches('"').to_string())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        location: get(5),
        country: get(6),
        info: get(7),
    }
}

fn local_sysid() -> String {
    // SAFETY: reads the control file's system identifier.
    unsafe { pg_sys::GetSystemIdentifier() }.to_string()
}

fn track_commit_timestamp_on() -> bool {
    // SAFETY: reads a setting by name.
    let v = unsafe { pg_sys::GetConfigOption(c"track_commit_timestamp".as_ptr(), false, false) };
    !v.is_null() && unsafe { CStr::from_ptr(v) }.to_bytes() == b"on"
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_create(subscription_name name, provider_dsn text,
    replication_sets text[] DEFAULT '{default,default_insert_only,ddl_sql}',
    synchronize_structure boolean DEFAULT false, synchronize_data boolean DEFAULT false,
    forward_origins text[] DEFAULT '{}', apply_delay interval DEFAULT '0',
    force_text_transfer boolean DEFAULT false, enabled boolean DEFAULT true,
    skip_schema text[] DEFAULT '{}') RETURNS oid
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_create_wrapper';
"#)]
#[allow(clippy::too_many_arguments)]
fn sub_create(
    subscription_name: &CStr,
    provider_dsn: &str,
    replication_sets: Vec<String>,
    synchronize_structure: bool,
    synchronize_data: bool,
    forward_origins: Vec<String>,
    apply_delay: pgrx::datum::Interval,
    force_text_transfer: bool,
    enabled: bool,
    skip_schema: Vec<String>,
) -> pg_sys::Oid {
    require_superuser("spock.sub_create");
    require_preloaded("spock.sub_create");
    let name = subscription_name.to_string_lossy().into_owned();
    if let Err(e) = naming::check_subscription_name(&name) {
        let code = match e {
            naming::NameError::TooLong(_) => PgSqlErrorCode::ERRCODE_NAME_TOO_LONG,
            _ => PgSqlErrorCode::ERRCODE_INVALID_NAME,
        };
        raise(code, format!("invalid subscription name \"{name}\": {e}"));
    }
    if !track_commit_timestamp_on() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "spock.sub_create needs track_commit_timestamp = on",
            "Set track_commit_timestamp = on in postgresql.conf and restart the server.",
        );
    }
    if let Some(bad) = forward_origins.iter().find(|o| o.as_str() != "all") {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("forward_origins may only contain \"all\", not \"{bad}\""),
        );
    }
    if !enabled && (synchronize_structure || synchronize_data) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a subscription created disabled cannot synchronise structure or data",
        );
    }
    for (set, what) in [
        (synchronize_structure, "synchronize_structure"),
        (synchronize_data, "synchronize_data"),
        (!forward_origins.is_empty(), "forward_origins = '{all}'"),
        (
            apply_delay.as_micros() != 0 || apply_delay.days() != 0 || apply_delay.months() != 0,
            "a non-zero apply_delay",
        ),
        (force_text_transfer, "force_text_transfer"),
        (!skip_schema.is_empty(), "skip_schema"),
    ] {
        if set {
            raise(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, format!("{what} is not supported yet"));
        }
    }
    if replication_sets.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "replication_sets must name at least one set");
    }

    let local = Spi::connect(|client| {
        let local = catalog::require_local_node(client, "spock.sub_create");
        if catalog::subscription_by_name(client, &name).is_some() {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("subscription \"{name}\" already exists"),
            );
        }
        local
    });

    // Talk to the provider: a normal connection for its catalog, and a
    // replication connection to prove this role may stream from it.
    let mut conn = connect_provider(provider_dsn, false);
    let provider = read_provider(&mut conn);
    let privileged = provider_query(
        &mut conn,
        "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user",
        "check the role's privileges",
    );
    if privileged.rows.first().and_then(|r| r[0].clone()).as_deref() != Some("t") {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "the role in provider_dsn has neither superuser nor the REPLICATION attribute on the provider",
        );
    }
    let libs = provider_query(
        &mut conn,
        "SELECT current_setting('output_plugin_libraries', true)",
        "read its settings",
    );
    if let Some(Some(list)) = libs.rows.first().map(|r| r[0].clone())
        && !list.split(',').any(|p| p.trim() == "spock_output")
    {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the provider's output_plugin_libraries ({list}) does not list spock_output"),
            "On the provider, add spock_output to output_plugin_libraries (keeping pgoutput and test_decoding) and reload.",
        );
    }
    drop(conn);
    {
        let mut repl = connect_provider(provider_dsn, true);
        provider_query(&mut repl, "IDENTIFY_SYSTEM", "start a replication connection");
    }
    // The local node's own DSN must work too: other nodes use it to reach
    // this one, and so will this node's tools.
    if let Err(e) = Conn::connect(&dsn::with_defaults(&local.dsn, &guc::extra_connection_options())) {
        raise_hint(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!(
                "cannot connect to this node through its own DSN ({}); connection string: {}",
                e.message, local.dsn
            ),
            "Recreate the local node (spock.node_drop, spock.node_create) with a DSN that works from this server.",
        );
    }
    if provider.sysid == local_sysid() && provider.dbname == current_database() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the provider is the local node itself");
    }
    if provider.node_id == 0 || provider.node_name.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the provider has no spock node");
    }
    let missing: Vec<&String> = replication_sets.iter().filter(|s| !provider.sets.contains(s)).collect();
    if !missing.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "replication set(s) {} do not exist on provider \"{}\"",
                missing.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "),
                provider.node_name
            ),
        );
    }

    let sub_id = Spi::connect_mut(|client| {
        let provider_if = record_provider(client, &local, &provider, provider_dsn);
        let sub_id: i32 = client
            .select("SELECT nextval('spock.sub_id_generator')::int", None, &[])
            .ok()
            .and_then(|t| t.first().get_one::<i32>().ok().flatten())
            .unwrap_or_else(|| pgrx::error!("cannot allocate a subscription id"));
        let slot = naming::slot_name(&current_database(), &provider.node_name, &name);
        let oid = |v: u32| pg_sys::Oid::from(v);
        client
            .update(
                "INSERT INTO spock.subscription (sub_id, sub_name, sub_origin, sub_target, sub_origin_if, sub_target_if,
                    sub_enabled, sub_slot_name, sub_replication_sets, sub_forward_origins, sub_skip_schema)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '{}', '{}')",
                None,
                &[
                    oid(sub_id as u32).into(),
                    name.as_str().into(),
                    oid(provider.node_id).into(),
                    oid(local.node_id).into(),
                    oid(provider_if).into(),
                    oid(local.if_id).into(),
                    enabled.into(),
                    slot.as_str().into(),
                    replication_sets.clone().into(),
                ],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot insert the subscription: {e}"));
        client
            .update(
                "INSERT INTO spock.local_sync_status (sync_kind, sync_subid, sync_status) VALUES ('i', $1, $2)",
                None,
                &[oid(sub_id as u32).into(), (if enabled { "i" } else { "r" }).into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot insert the sync status: {e}"));
        // Overlapping sets with another subscription to the same provider.
        let overlap = client
            .select(
                "SELECT sub_name::text FROM spock.subscription
                  WHERE sub_origin = $1 AND sub_id <> $2 AND sub_replication_sets && $3 ORDER BY 1",
                None,
                &[oid(provider.node_id).into(), oid(sub_id as u32).into(), replication_sets.clone().into()],
            )
            .map(|t| t.into_iter().filter_map(|r| r.get::<String>(1).unwrap()).collect::<Vec<_>>())
            .unwrap_or_default();
        if !overlap.is_empty() {
            pgrx::warning!(
                "subscription(s) {} already receive some of these sets from provider \"{}\"; their changes would arrive twice",
                overlap.join(", "),
                provider.node_name
            );
        }
        if !enabled {
            ensure_origin(&slot);
        }
        sub_id as u32
    });
    shmem::wake_after_commit();
    pg_sys::Oid::from(sub_id)
}

/// Records the local copy of the provider's node and an interface for its
/// DSN (reusing what exists); returns the interface id.
fn record_provider(
    client: &mut SpiClient<'_>,
    local: &catalog::LocalNode,
    provider: &ProviderInfo,
    provider_dsn: &str,
) -> u32 {
    let oid = |v: u32| pg_sys::Oid::from(v);
    let known: Vec<(u32, String)> = client
        .select("SELECT node_id, node_name::text FROM spock.node", None, &[])
        .unwrap_or_else(|e| pgrx::error!("cannot read spock.node: {e}"))
        .into_iter()
        .map(|r| {
            (
                r.get::<pg_sys::Oid>(1).unwrap().map(|o| o.to_u32()).unwrap_or(0),
                r.get(2).unwrap().unwrap_or_default(),
            )
        })
        .collect();
    if provider.node_id == local.node_id {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the provider is the local node itself");
    }
    for (id, node_name) in &known {
        if *node_name == provider.node_name && *id != provider.node_id {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("a different node named \"{node_name}\" (id {id}) is already known here"),
            );
        }
        if *id == provider.node_id && *node_name != provider.node_name {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("the provider's node id {id} is already used by node \"{node_name}\""),
            );
        }
    }
    if !known.iter().any(|(id, _)| *id == provider.node_id) {
        client
            .update(
                "INSERT INTO spock.node (node_id, node_name, location, country, info) VALUES ($1, $2, $3, $4, $5::jsonb)",
                None,
                &[
                    oid(provider.node_id).into(),
                    provider.node_name.as_str().into(),
                    provider.location.clone().into(),
                    provider.country.clone().into(),
                    provider.info.clone().into(),
                ],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot record the provider node: {e}"));
    }
    let existing = client
        .select(
            "SELECT if_id FROM spock.node_interface WHERE if_nodeid = $1 AND if_dsn = $2",
            None,
            &[oid(provider.node_id).into(), provider_dsn.into()],
        )
        .ok()
        .and_then(|t| t.first().get_one::<pg_sys::Oid>().ok().flatten());
    if let Some(if_id) = existing {
        return if_id.to_u32();
    }
    let if_id: i32 = client
        .select("SELECT nextval('spock.interface_id_generator')::int", None, &[])
        .ok()
        .and_then(|t| t.first().get_one::<i32>().ok().flatten())
        .unwrap_or_else(|| pgrx::error!("cannot allocate an interface id"));
    let name_taken = client
        .select(
            "SELECT 1 FROM spock.node_interface WHERE if_nodeid = $1 AND if_name = $2",
            None,
            &[oid(provider.node_id).into(), provider.node_name.as_str().into()],
        )
        .map(|t| !t.is_empty())
        .unwrap_or(false);
    let if_name =
        if name_taken { format!("{}_{if_id}", provider.node_name) } else { provider.node_name.clone() };
    client
        .update(
            "INSERT INTO spock.node_interface (if_id, if_name, if_nodeid, if_dsn) VALUES ($1, $2, $3, $4)",
            None,
            &[
                oid(if_id as u32).into(),
                if_name.as_str().into(),
                oid(provider.node_id).into(),
                provider_dsn.into(),
            ],
        )
        .unwrap_or_else(|e| pgrx::error!("cannot record the provider interface: {e}"));
    if_id as u32
}

/// Creates the local replication origin of a subscription if missing.
pub fn ensure_origin(name: &str) -> pg_sys::RepOriginId {
    let c = std::ffi::CString::new(name).expect("no NUL in slot names");
    // SAFETY: looks up or creates a replication origin by name (transactional catalog change).
    unsafe {
        let id = pg_sys::replorigin_by_name(c.as_ptr(), true);
        if id != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId {
            id
        } else {
            pg_sys::replorigin_create(c.as_ptr())
        }
    }
}

fn my_database() -> u32 {
    // SAFETY: reads this backend's database.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Stops the apply worker of a subscription and waits (up to 30 s) for the
/// process to be gone, holding off a restart until the caller commits.
fn stop_worker_and_wait(sub: &Subscription) {
    let Some(pid) = shmem::stop_apply_worker(my_database(), sub.sub_id, true) else {
        return;
    };
    let (db, sub_id) = (my_database(), sub.sub_id);
    register_xact_callback(PgXactCallbackEvent::Commit, move || shmem::release_hold(db, sub_id));
    register_xact_callback(PgXactCallbackEvent::Abort, move || shmem::release_hold(db, sub_id));
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let alive = || unsafe { libc::kill(pid, 0) } == 0;
    while (shmem::apply_running(my_database(), sub.sub_id) || alive()) && Instant::now() < deadline {
        pgrx::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes the worker restart when the current transaction commits, so that a
/// changed catalog row takes effect.
fn restart_worker_after_commit(sub_id: u32) {
    let db = my_database();
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        shmem::stop_apply_worker(db, sub_id, false);
        shmem::wake_all();
    });
}

fn require_subscription(client: &SpiClient<'_>, name: &str) -> Subscription {
    catalog::subscription_by_name(client, name).unwrap_or_else(|| {
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"))
    })
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_drop(subscription_name name, ifexists boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_drop_wrapper';
"#)]
fn sub_drop(subscription_name: &CStr, ifexists: bool) -> bool {
    require_superuser("spock.sub_drop");
    let name = subscription_name.to_string_lossy().into_owned();
    let sub = Spi::connect(|client| {
        catalog::require_local_node(client, "spock.sub_drop");
        catalog::subscription_by_name(client, &name)
    });
    let Some(sub) = sub else {
        if ifexists {
            return false;
        }
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"));
    };
    stop_worker_and_wait(&sub);
    Spi::connect_mut(|client| {
        let oid = pg_sys::Oid::from(sub.sub_id);
        for sql in [
            "DELETE FROM spock.local_sync_status WHERE sync_subid = $1",
            "DELETE FROM spock.subscription WHERE sub_id = $1",
        ] {
            client
                .update(sql, None, &[oid.into()])
                .unwrap_or_else(|e| pgrx::error!("cannot drop the subscription: {e}"));
        }
        // The provider's node copy goes with its last subscription.
        let still_used = client
            .select(
                "SELECT 1 FROM spock.subscription WHERE sub_origin = $1
                 UNION ALL SELECT 1 FROM spock.local_node WHERE node_id = $1",
                None,
                &[pg_sys::Oid::from(sub.origin_id).into()],
            )
            .map(|t| !t.is_empty())
            .unwrap_or(true);
        if !still_used {
            for sql in [
                "DELETE FROM spock.node_interface WHERE if_nodeid = $1",
                "DELETE FROM spock.node WHERE node_id = $1",
            ] {
                client
                    .update(sql, None, &[pg_sys::Oid::from(sub.origin_id).into()])
                    .unwrap_or_else(|e| pgrx::error!("cannot drop the provider node copy: {e}"));
            }
        }
    });
    let c = std::ffi::CString::new(sub.slot_name.as_str()).expect("no NUL in slot names");
    // SAFETY: drops the subscription's replication origin, if it exists.
    unsafe { pg_sys::replorigin_drop_by_name(c.as_ptr(), true, false) };
    drop_remote_slot(&sub);
    shmem::wake_after_commit();
    true
}

/// Drops the subscription's slot on the provider; a WARNING (not an error)
/// when that is not possible. Not undone if the transaction rolls back.
fn drop_remote_slot(sub: &Subscription) {
    let conninfo = dsn::with_defaults(&sub.origin_dsn, &guc::extra_connection_options());
    let mut conn = match Conn::connect(&conninfo) {
        Ok(conn) => conn,
        Err(e) => {
            pgrx::warning!(
                "{}",
                dsn::mask_passwords(&format!(
                    "cannot connect to the provider to drop slot {}: {}; drop it there by hand with pg_drop_replication_slot()",
                    sub.slot_name, e.message
                ))
            );
            return;
        }
    };
    let slot = conn.literal(&sub.slot_name);
    // The provider's walsender for the stopped worker may take a moment to exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sql = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {slot} AND NOT active"
        );
        let gone = conn
            .query(&format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = {slot}"))
            .map(|r| r.rows.first().and_then(|row| row[0].clone()).as_deref() == Some("0"))
            .unwrap_or(false);
        if gone {
            return;
        }
        if let Err(e) = conn.query(&sql) {
            pgrx::warning!(
                "cannot drop slot {} on the provider: {}; drop it there by hand",
                sub.slot_name,
                e.message
            );
            return;
        }
        if Instant::now() > deadline {
            pgrx::warning!(
                "slot {} on the provider is still in use; drop it there by hand with pg_drop_replication_slot()",
                sub.slot_name
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_enabled(name: &str, enabled: bool, immediate: bool, what: &str) -> bool {
    require_superuser(what);
    // SAFETY: reads the transaction block state.
    if immediate && unsafe { pg_sys::IsTransactionBlock() } {
        raise(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("{what} with immediate = true cannot run inside a transaction block"),
        );
    }
    let sub = Spi::connect_mut(|client| {
        catalog::require_local_node(client, what);
        let sub = require_subscription(client, name);
        client
            .update(
                "UPDATE spock.subscription SET sub_enabled = $2 WHERE sub_id = $1",
                None,
                &[pg_sys::Oid::from(sub.sub_id).into(), enabled.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot change the subscription: {e}"));
        sub
    });
    if !enabled && immediate {
        stop_worker_and_wait(&sub);
    }
    if enabled {
        shmem::wake_after_commit();
    } else {
        restart_worker_after_commit(sub.sub_id);
    }
    true
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_enable(subscription_name name, immediate boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_enable_wrapper';
"#)]
fn sub_enable(subscription_name: &CStr, immediate: bool) -> bool {
    set_enabled(&subscription_name.to_string_lossy(), true, immediate, "spock.sub_enable")
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_disable(subscription_name name, immediate boolean DEFAULT false) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_disable_wrapper';
"#)]
fn sub_disable(subscription_name: &CStr, immediate: bool) -> bool {
    set_enabled(&subscription_name.to_string_lossy(), false, immediate, "spock.sub_disable")
}

fn change_sets(name: &str, set: &str, add: bool, what: &str) -> bool {
    require_superuser(what);
    let changed = Spi::connect_mut(|client| {
        catalog::require_local_node(client, what);
        let sub = require_subscription(client, name);
        let present = sub.replication_sets.iter().any(|s| s == set);
        if present == add {
            return None;
        }
        let sets: Vec<String> = if add {
            sub.replication_sets.iter().cloned().chain(std::iter::once(set.to_string())).collect()
        } else {
            sub.replication_sets.iter().filter(|s| s.as_str() != set).cloned().collect()
        };
        client
            .update(
                "UPDATE spock.subscription SET sub_replication_sets = $2 WHERE sub_id = $1",
                None,
                &[pg_sys::Oid::from(sub.sub_id).into(), sets.into()],
            )
            .unwrap_or_else(|e| pgrx::error!("cannot change the subscription: {e}"));
        Some(sub.sub_id)
    });
    match changed {
        Some(sub_id) => {
            restart_worker_after_commit(sub_id);
            true
        }
        None => false,
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_add_repset(subscription_name name, replication_set name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_add_repset_wrapper';
"#)]
fn sub_add_repset(subscription_name: &CStr, replication_set: &CStr) -> bool {
    change_sets(
        &subscription_name.to_string_lossy(),
        &replication_set.to_string_lossy(),
        true,
        "spock.sub_add_repset",
    )
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_remove_repset(subscription_name name, replication_set name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_remove_repset_wrapper';
"#)]
fn sub_remove_repset(subscription_name: &CStr, replication_set: &CStr) -> bool {
    change_sets(
        &subscription_name.to_string_lossy(),
        &replication_set.to_string_lossy(),
        false,
        "spock.sub_remove_repset",
    )
}

/// A subscription's status as `sub_show_status` reports it.
pub fn status_of(client: &SpiClient<'_>, sub: &Subscription) -> &'static str {
    if !sub.enabled {
        return "disabled";
    }
    if !shmem::apply_running(my_database(), sub.sub_id) {
        return "down";
    }
    match catalog::sync_status(client, sub.sub_id) {
        Some('r') => "replicating",
        Some(_) => "initializing",
        None => "unknown",
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_show_status(subscription_name name DEFAULT NULL,
    OUT subscription_name text, OUT status text, OUT provider_node text, OUT provider_dsn text,
    OUT slot_name text, OUT replication_sets text[], OUT forward_origins text[])
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_show_status_wrapper';
"#)]
#[allow(clippy::type_complexity)]
fn sub_show_status(
    subscription_name: Option<&CStr>,
) -> TableIterator<
    'static,
    (
        name!(subscription_name, String),
        name!(status, String),
        name!(provider_node, String),
        name!(provider_dsn, String),
        name!(slot_name, String),
        name!(replication_sets, Vec<String>),
        name!(forward_origins, Vec<String>),
    ),
> {
    require_superuser("spock.sub_show_status");
    let filter = subscription_name.map(|c| c.to_string_lossy().into_owned());
    let rows = Spi::connect(|client| {
        catalog::require_local_node(client, "spock.sub_show_status");
        let subs = match &filter {
            Some(name) => vec![require_subscription(client, name)],
            None => catalog::subscriptions(client),
        };
        subs.into_iter()
            .map(|sub| {
                let status = status_of(client, &sub).to_string();
                (
                    sub.name.clone(),
                    status,
                    sub.origin_name.clone(),
                    sub.origin_dsn.clone(),
                    sub.slot_name.clone(),
                    sub.replication_sets.clone(),
                    sub.forward_origins.clone(),
                )
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

/// Waits until the subscription-level sync status is `r`.
fn wait_for_sync(name: &str) {
    loop {
        // A statement (not read-only) query takes a new snapshot each time,
        // so the loop sees what the apply worker commits meanwhile.
        let row = Spi::connect_mut(|client| {
            client
                .update(
                    "SELECT s.sub_enabled, l.sync_status::text FROM spock.subscription s
                       LEFT JOIN spock.local_sync_status l
                         ON l.sync_subid = s.sub_id AND l.sync_nspname IS NULL AND l.sync_relname IS NULL
                      WHERE s.sub_name = $1",
                    None,
                    &[name.into()],
                )
                .unwrap_or_else(|e| pgrx::error!("cannot read the subscription: {e}"))
                .into_iter()
                .next()
                .map(|r| {
                    (r.get::<bool>(1).ok().flatten().unwrap_or(false), r.get::<String>(2).ok().flatten())
                })
        });
        let Some((enabled, status)) = row else {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"))
        };
        let status = status.and_then(|s| s.chars().next());
        match status {
            Some('r') => return,
            Some('f') => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("the synchronisation of subscription \"{name}\" failed"),
            ),
            _ if !enabled => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("subscription \"{name}\" is disabled and not yet synchronised"),
            ),
            _ => {}
        }
        pgrx::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_wait_for_sync(subscription_name name) RETURNS void
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_wait_for_sync_wrapper';
"#)]
fn sub_wait_for_sync(subscription_name: &CStr) {
    require_superuser("spock.sub_wait_for_sync");
    wait_for_sync(&subscription_name.to_string_lossy());
}
