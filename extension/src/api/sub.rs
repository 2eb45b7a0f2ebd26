//! Subscriptions (sql-api.md §4.4): create, drop, enable, disable, change
//! their sets, show their status, wait for their initial synchronisation.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{PgXactCallbackEvent, register_xact_callback};
use spock_core::naming;
use spock_core::sync::{SyncKind, SyncStatus};

use super::{before_commit, current_database, my_database, relation_names};
use crate::catalog::node::{self, LocalNode, NodeDetails};
use crate::catalog::subscription::{self, NewSubscription, Subscription};
use crate::catalog::{origin, sync_status};
use crate::errors::{raise, raise_hint, require_preloaded, require_superuser};
use crate::guc;
use crate::remote::provider::{self, ProviderInfo, SlotDrop};
use crate::remote::{self, Conn, PqError, Purpose};
use crate::workers::registry;

/// Connects to the provider for `sub_create`; an error is `08001` with the
/// (masked) connection string.
fn connect_provider(provider_dsn: &str, purpose: Purpose<'_>) -> Conn {
    remote::connect(provider_dsn, purpose).unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            // The DSN goes last: masking a password value runs to the end of it.
            format!("cannot connect to the provider ({}); connection string: {provider_dsn}", e.message),
        )
    })
}

/// Turns a provider's error into the spec's SQLSTATE for what was asked.
fn provider_failed<T>(what: &str) -> impl FnOnce(PqError) -> T + '_ {
    move |e| {
        let code = match e.sqlstate.as_deref() {
            Some("42501") => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Some("55000") | Some("3F000") | Some("42883") | Some("42P01") => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            _ => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
        };
        raise(code, format!("the provider cannot {what}: {}", e.message))
    }
}

fn local_sysid() -> String {
    // SAFETY: reads the control file's system identifier.
    unsafe { pg_sys::GetSystemIdentifier() }.to_string()
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
    if !guc::track_commit_timestamp() {
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
    if apply_delay.as_micros() < 0 {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "apply_delay must not be negative");
    }
    if replication_sets.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "replication_sets must name at least one set");
    }
    if skip_schema.iter().any(|s| s.is_empty()) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "skip_schema contains an empty schema name");
    }
    if let Some(bad) = replication_sets.iter().find(|s| s.is_empty()) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("replication_sets contains an empty name {bad:?}"),
        );
    }

    let local = Spi::connect(|client| {
        let local = node::require_local_node(client, "spock.sub_create");
        if subscription::by_name(client, &name).is_some() {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("subscription \"{name}\" already exists"),
            );
        }
        local
    });
    // Checked again, under a lock, when the row is inserted; this early
    // check spares a connection to the provider.
    if enabled {
        Spi::connect_mut(|client| {
            check_forwarding_rule(client, 0, &name, !forward_origins.is_empty(), false)
        });
    }

    // Talk to the provider: a normal connection for its catalog, and a
    // replication connection to prove this role may stream from it.
    let provider = {
        let mut conn = connect_provider(provider_dsn, Purpose::Query);
        let provider = provider::node_info(&mut conn)
            .unwrap_or_else(provider_failed(
                "describe its spock node (is the spock extension installed there, with spock.node_create() run?)",
            ))
            .unwrap_or_else(|| {
                raise(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "the provider has no spock node")
            });
        if !provider::role_can_replicate(&mut conn)
            .unwrap_or_else(provider_failed("check the role's privileges"))
        {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "the role in provider_dsn has neither superuser nor the REPLICATION attribute on the provider",
            );
        }
        if synchronize_structure {
            let theirs =
                provider::server_major(&mut conn).unwrap_or_else(provider_failed("read its server version"));
            let ours = pg_sys::PG_VERSION_NUM / 10000;
            if theirs > ours {
                raise_hint(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "the provider runs PostgreSQL {theirs}, newer than this node's {ours}: this node's \
                         pg_dump cannot copy its structure"
                    ),
                    "Create the tables on this node yourself and subscribe with synchronize_data only, or \
                     upgrade this node first.",
                );
            }
        }
        let libs =
            provider::output_plugin_libraries(&mut conn).unwrap_or_else(provider_failed("read its settings"));
        if let Some(list) = libs
            && !list.split(',').any(|p| p.trim() == "spock_output")
        {
            raise_hint(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("the provider's output_plugin_libraries ({list}) does not list spock_output"),
                "On the provider, add spock_output to output_plugin_libraries (keeping pgoutput and test_decoding) and reload.",
            );
        }
        provider
    };
    {
        let mut repl = connect_provider(provider_dsn, Purpose::Replication { subscription: &name });
        provider::identify_system(&mut repl)
            .unwrap_or_else(provider_failed("start a replication connection"));
    }
    // The local node's own DSN must work too: other nodes use it to reach
    // this one, and so will this node's tools.
    if let Err(e) = remote::connect(&local.dsn, Purpose::Query) {
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
        if enabled {
            check_forwarding_rule(client, 0, &name, !forward_origins.is_empty(), true);
        }
        let provider_if = record_provider(client, &local, &provider, provider_dsn);
        let sub_id = subscription::next_id(client);
        let slot = naming::slot_name(&current_database(), &provider.node_name, &name);
        subscription::insert(
            client,
            sub_id,
            &NewSubscription {
                name: &name,
                origin: provider.node_id,
                target: local.node_id,
                origin_if: provider_if,
                target_if: local.if_id,
                enabled,
                slot_name: &slot,
                replication_sets: &replication_sets,
                forward_origins: &forward_origins,
                // Values travel as text whatever this says (docs/replication.md).
                force_text_transfer,
                skip_schema: &skip_schema,
                apply_delay,
            },
        );
        // A subscription created disabled is ready at once, with its origin,
        // so that tools can position it before enabling (sql-api.md §4.4).
        let status = if enabled { SyncStatus::Requested } else { SyncStatus::Ready };
        let kind = SyncKind::from_flags(synchronize_structure, synchronize_data);
        sync_status::insert_subscription_sync(client, sub_id, kind, status);
        let overlap = subscription::overlapping(client, provider.node_id, sub_id, &replication_sets);
        if !overlap.is_empty() {
            pgrx::warning!(
                "subscription(s) {} already receive some of these sets from provider \"{}\"; their changes would arrive twice",
                overlap.join(", "),
                provider.node_name
            );
        }
        if !enabled {
            origin::ensure(&slot);
        }
        sub_id
    });
    registry::wake_after_commit();
    pg_sys::Oid::from(sub_id)
}

/// Raises `55000` when enabling subscription `name` (id `sub_id`, 0 for a
/// new one) would break the forwarding rule (behaviour.md §5.3); with
/// `lock`, the answer holds until the transaction ends.
fn check_forwarding_rule(client: &mut SpiClient<'_>, sub_id: u32, name: &str, forwards: bool, lock: bool) {
    let Some(other) = subscription::forwarding_conflict(client, sub_id, forwards, lock) else { return };
    let (message, hint) = if forwards {
        (
            format!(
                "subscription \"{name}\" forwards transactions from other nodes and cannot be enabled while \
                 subscription \"{other}\" is enabled"
            ),
            "A forwarding subscription must be the node's only enabled one, or changes would arrive twice. \
             Disable the other subscriptions first (spock.sub_disable), or do not forward.",
        )
    } else {
        (
            format!(
                "subscription \"{name}\" cannot be enabled while subscription \"{other}\", which forwards \
                 transactions from other nodes, is enabled"
            ),
            "Changes would arrive twice. Disable the forwarding subscription first (spock.sub_disable), or \
             stop it forwarding (spock.sub_alter_options with forward_origins []).",
        )
    };
    raise_hint(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, message, hint);
}

/// Records the local copy of the provider's node and an interface for its
/// DSN (reusing what exists); returns the interface id.
fn record_provider(
    client: &mut SpiClient<'_>,
    local: &LocalNode,
    provider: &ProviderInfo,
    provider_dsn: &str,
) -> u32 {
    if provider.node_id == local.node_id {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "the provider is the local node itself");
    }
    let known = node::known_nodes(client);
    for k in &known {
        if k.name == provider.node_name && k.id != provider.node_id {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("a different node named \"{}\" (id {}) is already known here", k.name, k.id),
            );
        }
        if k.id == provider.node_id && k.name != provider.node_name {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!("the provider's node id {} is already used by node \"{}\"", k.id, k.name),
            );
        }
    }
    if !known.iter().any(|k| k.id == provider.node_id) {
        let info = provider.info.as_deref().map(|text| {
            pgrx::JsonB(serde_json::from_str(text).unwrap_or_else(|e| {
                raise(
                    PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                    format!("the provider's node info is not valid JSON ({e})"),
                )
            }))
        });
        node::insert_node(
            client,
            provider.node_id,
            &provider.node_name,
            NodeDetails { location: provider.location.clone(), country: provider.country.clone(), info },
        );
    }
    if let Some(if_id) = node::interface_by_dsn(client, provider.node_id, provider_dsn) {
        return if_id;
    }
    let name_taken = node::interface_by_name(client, provider.node_id, &provider.node_name).is_some();
    let if_name = if name_taken {
        // Unique, as the interface ids are.
        format!("{}_{}", provider.node_name, subscription::next_id(client))
    } else {
        provider.node_name.clone()
    };
    node::insert_interface(client, provider.node_id, &if_name, provider_dsn)
}

/// Stops the apply worker of a subscription and waits (up to 30 s) for the
/// process to be gone, holding off a restart until the caller commits.
fn stop_worker_and_wait(sub: &Subscription) {
    let (db, sub_id) = (my_database(), sub.sub_id);
    // Its table-sync worker stops too (and is not started again while the
    // apply worker is held off).
    registry::stop_sync_worker(db, sub_id);
    let pid = registry::stop_apply_worker(db, sub_id, true);
    if pid.is_some() {
        register_xact_callback(PgXactCallbackEvent::Commit, move || registry::release_hold(db, sub_id));
        register_xact_callback(PgXactCallbackEvent::Abort, move || registry::release_hold(db, sub_id));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let alive = || pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
    while (registry::apply_running(db, sub_id) || registry::sync_running(db, sub_id) || alive())
        && Instant::now() < deadline
    {
        pgrx::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes the worker restart when the current transaction commits, so that a
/// changed catalog row takes effect.
fn restart_worker_after_commit(sub_id: u32) {
    let db = my_database();
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        registry::stop_apply_worker(db, sub_id, false);
        registry::wake_all();
    });
}

/// Refuses `what` (`55000`) while `spock.readonly` is not `off`.
fn require_read_write(what: &str) {
    if crate::hooks::readonly::restricts_sessions() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what} cannot run while spock.readonly is {}", crate::guc::READONLY.get().name()),
            "Set spock.readonly = off (ALTER SYSTEM and reload) and call it again.",
        );
    }
}

fn require_subscription(client: &SpiClient<'_>, name: &str) -> Subscription {
    subscription::by_name(client, name).unwrap_or_else(|| {
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
        node::require_local_node(client, "spock.sub_drop");
        subscription::by_name(client, &name)
    });
    let Some(sub) = sub else {
        if ifexists {
            return false;
        }
        raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"));
    };
    stop_worker_and_wait(&sub);
    Spi::connect_mut(|client| {
        subscription::delete(client, sub.sub_id);
        // The provider's node copy goes with its last subscription.
        if !node::node_in_use(client, sub.origin_id) {
            node::delete_node(client, sub.origin_id);
        }
    });
    // The two steps a rollback could not undo (the origin's progress is
    // forgotten at once, the provider's slot is gone) happen when the
    // transaction commits, just before the commit is final, and only if the
    // subscription is still gone then (a rolled-back savepoint may have
    // brought it back). A rollback of the statement or the transaction
    // leaves the subscription whole.
    before_commit(move || {
        if Spi::connect(|client| subscription::by_id(client, sub.sub_id)).is_none() {
            origin::drop_if_exists(&sub.slot_name);
            origin::drop_if_exists(&origin::sync_origin_name(&sub.slot_name));
            drop_remote_slot(&sub);
        }
    });
    registry::wake_after_commit();
    true
}

/// Drops the subscription's slot on the provider; a WARNING (not an error)
/// when that is not possible.
fn drop_remote_slot(sub: &Subscription) {
    let by_hand = "drop it there by hand with pg_drop_replication_slot()";
    let mut conn = match remote::connect(&sub.origin_dsn, Purpose::Query) {
        Ok(conn) => conn,
        Err(e) => {
            pgrx::warning!(
                "{}",
                spock_core::dsn::mask_passwords(&format!(
                    "cannot connect to provider \"{}\" to drop slot {}: {}; {by_hand}",
                    sub.origin_name, sub.slot_name, e.message
                ))
            );
            return;
        }
    };
    // The provider's walsender for the stopped worker may take a moment to exit.
    match provider::drop_slot(&mut conn, &sub.slot_name, Duration::from_secs(10)) {
        Ok(SlotDrop::Dropped) | Ok(SlotDrop::Absent) => {}
        Ok(SlotDrop::InUse) => pgrx::warning!(
            "slot {} on provider \"{}\" is still in use; {by_hand}",
            sub.slot_name,
            sub.origin_name
        ),
        Err(e) => pgrx::warning!(
            "cannot drop slot {} on provider \"{}\": {}; {by_hand}",
            sub.slot_name,
            sub.origin_name,
            e.message
        ),
    }
}

fn set_enabled(name: &str, enabled: bool, immediate: bool, what: &str) -> bool {
    require_superuser(what);
    if immediate {
        // SAFETY: reads the transaction block state.
        if unsafe { pg_sys::IsTransactionBlock() } {
            raise(
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                format!("{what} with immediate = true cannot run inside a transaction block"),
            );
        }
    }
    let sub = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
        let sub = require_subscription(client, name);
        if enabled {
            check_forwarding_rule(client, sub.sub_id, name, !sub.forward_origins.is_empty(), true);
        }
        subscription::set_enabled(client, sub.sub_id, enabled);
        // Enabling a subscription whose initial copy failed asks for a new
        // attempt (behaviour.md §6.6; nothing of the failed one was kept).
        if enabled
            && let Some(sync) = sync_status::subscription_sync(client, sub.sub_id)
            && sync.status == SyncStatus::Failed
            && sync.stream_start.is_none()
        {
            sync_status::set_subscription_status(client, sub.sub_id, SyncStatus::Requested);
        }
        sub
    });
    if !enabled && immediate {
        stop_worker_and_wait(&sub);
    }
    if enabled {
        registry::wake_after_commit();
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
    if set.is_empty() {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "replication_set must not be empty");
    }
    let changed = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
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
        subscription::set_list(client, sub.sub_id, subscription::List::ReplicationSets, &sets);
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

/// A subscription's status as `sub_show_status` reports it, and the error
/// its worker last failed with while it is not streaming.
fn status_of(client: &SpiClient<'_>, sub: &Subscription) -> (&'static str, Option<String>) {
    let slot = registry::apply_slot(my_database(), sub.sub_id);
    let last_error = slot.and_then(|s| s.last_error());
    if !sub.enabled {
        return ("disabled", last_error);
    }
    let running = slot.is_some_and(|s| s.pid != 0);
    let streaming = slot.is_some_and(|s| s.streaming);
    // A worker that keeps failing is down, also in the moments it runs
    // again before failing the same way.
    if !running || (!streaming && last_error.is_some()) {
        return ("down", last_error);
    }
    let status = match sync_status::subscription_sync(client, sub.sub_id).map(|s| s.status) {
        Some(SyncStatus::Ready) => "replicating",
        Some(_) => "initializing",
        None => "unknown",
    };
    (status, last_error)
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_show_status(subscription_name name DEFAULT NULL,
    OUT subscription_name text, OUT status text, OUT provider_node text, OUT provider_dsn text,
    OUT slot_name text, OUT replication_sets text[], OUT forward_origins text[], OUT last_error text)
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
        name!(last_error, Option<String>),
    ),
> {
    require_superuser("spock.sub_show_status");
    let filter = subscription_name.map(|c| c.to_string_lossy().into_owned());
    let rows = Spi::connect(|client| {
        node::require_local_node(client, "spock.sub_show_status");
        let subs = match &filter {
            Some(name) => vec![require_subscription(client, name)],
            None => subscription::all(client),
        };
        subs.into_iter()
            .map(|sub| {
                let (status, last_error) = status_of(client, &sub);
                (
                    sub.name,
                    status.to_string(),
                    sub.origin_name,
                    sub.origin_dsn,
                    sub.slot_name,
                    sub.replication_sets,
                    sub.forward_origins,
                    last_error,
                )
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(rows)
}

/// Waits until the subscription-level sync status is `r`.
fn wait_for_sync(name: &str) {
    wait_for_sync_of(name, None);
}

/// Waits for the subscription-level sync and, given a table, for that
/// table's sync row if it has one (a table without a row has nothing to
/// wait for).
fn wait_for_sync_of(name: &str, table: Option<(&str, &str)>) {
    loop {
        if let Some((nspname, relname)) = table {
            let status = Spi::connect_mut(|client| {
                let sub = require_subscription(client, name);
                sync_status::table_status(client, sub.sub_id, nspname, relname)
            });
            match status {
                Some(SyncStatus::Failed) => raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "the synchronisation of table {nspname}.{relname} in subscription \"{name}\" failed"
                    ),
                ),
                Some(SyncStatus::Ready) | None => {}
                Some(_) => {
                    pgrx::check_for_interrupts!();
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let state = Spi::connect_mut(|client| sync_status::wait_state(client, name));
        let Some((enabled, status)) = state else {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("subscription \"{name}\" does not exist"))
        };
        match status {
            Some(SyncStatus::Ready) => {
                let failed = Spi::connect_mut(|client| {
                    let sub = require_subscription(client, name);
                    sync_status::failed_tables(client, sub.sub_id)
                });
                if table.is_none() && !failed.is_empty() {
                    raise_hint(
                        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "the synchronisation of table(s) {} in subscription \"{name}\" failed",
                            failed.join(", ")
                        ),
                        "The server log says why; spock.sub_show_table shows each table's status.",
                    );
                }
                return;
            }
            Some(SyncStatus::Failed) => raise(
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

#[pg_extern(sql = r#"
CREATE FUNCTION spock.table_wait_for_sync(subscription_name name, relation regclass) RETURNS void
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'table_wait_for_sync_wrapper';
"#)]
fn table_wait_for_sync(subscription_name: &CStr, relation: pg_sys::Oid) {
    require_superuser("spock.table_wait_for_sync");
    let (nspname, relname) = relation_names(relation);
    wait_for_sync_of(&subscription_name.to_string_lossy(), Some((&nspname, &relname)));
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_show_table_rows(subscription_name name, relation regclass,
    OUT nspname text, OUT relname text, OUT status text)
    RETURNS SETOF record STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_show_table_wrapper';
CREATE FUNCTION spock.sub_show_table(subscription_name name, relation regclass,
    OUT nspname text, OUT relname text, OUT status text)
    RETURNS record STRICT STABLE LANGUAGE sql AS 'SELECT * FROM spock.sub_show_table_rows($1, $2)';
"#)]
fn sub_show_table(
    subscription_name: &CStr,
    relation: pg_sys::Oid,
) -> TableIterator<'static, (name!(nspname, String), name!(relname, String), name!(status, String))> {
    require_superuser("spock.sub_show_table");
    let name = subscription_name.to_string_lossy().into_owned();
    let (nspname, relname) = relation_names(relation);
    let status = Spi::connect_mut(|client| {
        let sub = require_subscription(client, &name);
        sync_status::table_status(client, sub.sub_id, &nspname, &relname)
    });
    // A table without a sync row (a subscription created without data
    // synchronisation) is `unknown` (sql-api.md §4.4).
    let status = status.map_or("unknown", SyncStatus::name).to_string();
    TableIterator::once((nspname, relname, status))
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_alter_skiplsn(subscription_name name, lsn pg_lsn) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_skiplsn_wrapper';
"#)]
// pg_lsn is a pass-by-value 64-bit datum, taken as i64.
fn sub_alter_skiplsn(subscription_name: &CStr, lsn: i64) -> bool {
    let what = "spock.sub_alter_skiplsn";
    require_superuser(what);
    let name = subscription_name.to_string_lossy();
    let sub_id = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
        let sub = require_subscription(client, &name);
        subscription::set_skip_lsn(client, sub.sub_id, lsn as u64);
        sub.sub_id
    });
    // The worker reads the skip when it starts.
    restart_worker_after_commit(sub_id);
    true
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_alter_options(subscription_name name, options jsonb) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_options_wrapper';
"#)]
fn sub_alter_options(subscription_name: &CStr, options: pgrx::JsonB) -> bool {
    let what = "spock.sub_alter_options";
    require_superuser(what);
    let name = subscription_name.to_string_lossy().into_owned();
    let wanted = spock_core::options::parse_sub_options(&options.0)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("{what}: {e}")));
    if wanted.is_empty() {
        // Still an error for a subscription that does not exist.
        Spi::connect(|client| require_subscription(client, &name));
        return false;
    }
    if wanted.apply_delay.as_deref().is_some_and(interval_is_negative) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{what}: apply_delay must not be negative"),
        );
    }
    if wanted.skip_schema.as_ref().is_some_and(|s| s.iter().any(String::is_empty)) {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "skip_schema contains an empty schema name");
    }
    let sub_id = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
        let sub = require_subscription(client, &name);
        if let Some(origins) = &wanted.forward_origins {
            if sub.enabled {
                check_forwarding_rule(client, sub.sub_id, &name, !origins.is_empty(), true);
            }
            subscription::set_list(client, sub.sub_id, subscription::List::ForwardOrigins, origins);
        }
        if let Some(schemas) = &wanted.skip_schema {
            subscription::set_list(client, sub.sub_id, subscription::List::SkipSchema, schemas);
        }
        if let Some(delay) = &wanted.apply_delay {
            subscription::set_apply_delay(client, sub.sub_id, delay);
        }
        sub.sub_id
    });
    // The worker reads its options when it starts.
    restart_worker_after_commit(sub_id);
    true
}

/// Whether `text` is a negative interval; `22023` when it is no interval
/// at all.
fn interval_is_negative(text: &str) -> bool {
    PgTryBuilder::new(|| {
        Spi::get_one_with_args::<bool>("SELECT $1::interval < '0'::interval", &[text.into()])
            .ok()
            .flatten()
            .unwrap_or(false)
    })
    .catch_others(|_| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("spock.sub_alter_options: apply_delay \"{text}\" is not an interval"),
        )
    })
    .execute()
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_alter_interface(subscription_name name, interface_name name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_interface_wrapper';
"#)]
fn sub_alter_interface(subscription_name: &CStr, interface_name: &CStr) -> bool {
    let what = "spock.sub_alter_interface";
    require_superuser(what);
    let name = subscription_name.to_string_lossy();
    let if_name = interface_name.to_string_lossy();
    let changed = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
        let sub = require_subscription(client, &name);
        let if_id = node::interface_by_name(client, sub.origin_id, &if_name).unwrap_or_else(|| {
            raise_hint(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("node \"{}\" has no interface \"{if_name}\"", sub.origin_name),
                format!(
                    "Add it on this node first: SELECT spock.node_add_interface('{}', '{if_name}', '<dsn>').",
                    sub.origin_name
                ),
            )
        });
        subscription::set_origin_interface(client, sub.sub_id, if_id).then_some(sub.sub_id)
    });
    let Some(sub_id) = changed else { return false };
    // The worker connects through the new interface when it starts again;
    // the slot, and so the position, stay the same.
    restart_worker_after_commit(sub_id);
    true
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_resync_table(subscription_name name, relation regclass, truncate boolean DEFAULT true)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_resync_table_wrapper';
"#)]
fn sub_resync_table(subscription_name: &CStr, relation: pg_sys::Oid, truncate: bool) -> bool {
    let what = "spock.sub_resync_table";
    require_superuser(what);
    require_read_write(what);
    let name = subscription_name.to_string_lossy().into_owned();
    let (nspname, relname) = relation_names(relation);
    let sub_id = Spi::connect_mut(|client| {
        node::require_local_node(client, what);
        let sub = require_subscription(client, &name);
        if let Some(
            status @ (SyncStatus::Requested
            | SyncStatus::Data
            | SyncStatus::Waiting
            | SyncStatus::CatchUp
            | SyncStatus::Synchronized),
        ) = sync_status::table_status(client, sub.sub_id, &nspname, &relname)
        {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "table {nspname}.{relname} is already being synchronised in subscription \"{name}\" ({})",
                    status.name()
                ),
            );
        }
        sync_status::request_table(client, sub.sub_id, &nspname, &relname, truncate);
        sub.sub_id
    });
    // The worker copies requested tables when it starts.
    restart_worker_after_commit(sub_id);
    true
}

#[pg_extern(sql = r#"
CREATE FUNCTION spock.sub_alter_sync(subscription_name name, truncate boolean DEFAULT false)
    RETURNS boolean STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_sync_wrapper';
"#)]
fn sub_alter_sync(subscription_name: &CStr, truncate: bool) -> bool {
    let what = "spock.sub_alter_sync";
    require_superuser(what);
    require_read_write(what);
    let name = subscription_name.to_string_lossy().into_owned();
    let sub = Spi::connect(|client| {
        node::require_local_node(client, what);
        require_subscription(client, &name)
    });
    let tables = {
        let mut conn = connect_provider(&sub.origin_dsn, Purpose::Query);
        conn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .unwrap_or_else(provider_failed("start a transaction"));
        // Tables of schemas reserved here are not copied either (sql-api.md §6.15).
        let mut not_copied = sub.skip_schema.clone();
        not_copied.extend(crate::catalog::reserved::blocked_schemas());
        let tables = provider::sync_tables(&mut conn, &sub.replication_sets, &not_copied)
            .unwrap_or_else(provider_failed("list the tables of the subscribed sets"));
        let _ = conn.query("COMMIT");
        tables
    };
    let keep: Vec<String> = tables.iter().map(|t| format!("{}.{}", t.nspname, t.relname)).collect();
    Spi::connect_mut(|client| {
        for t in &tables {
            sync_status::request_table_if_new(client, sub.sub_id, &t.nspname, &t.relname, truncate);
        }
        sync_status::forget_tables_except(client, sub.sub_id, &keep);
    });
    restart_worker_after_commit(sub.sub_id);
    true
}
