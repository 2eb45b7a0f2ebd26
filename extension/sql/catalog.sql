-- The extension's catalog tables (sql-api.md §6). Tables the output plugin
-- reads while decoding are user catalog tables, so that walsenders can read
-- them with the historic snapshot of the change being decoded.

CREATE TABLE spock.node (
    node_id oid NOT NULL PRIMARY KEY,
    node_name name NOT NULL UNIQUE,
    location text,
    country text,
    info jsonb
) WITH (user_catalog_table = true);

CREATE TABLE spock.node_interface (
    if_id oid NOT NULL PRIMARY KEY,
    if_name name NOT NULL,
    if_nodeid oid NOT NULL REFERENCES spock.node (node_id),
    if_dsn text NOT NULL,
    UNIQUE (if_nodeid, if_name)
);
CREATE SEQUENCE spock.interface_id_generator AS integer START 1;

CREATE TABLE spock.local_node (
    node_id oid NOT NULL PRIMARY KEY REFERENCES spock.node (node_id),
    node_local_interface oid NOT NULL REFERENCES spock.node_interface (if_id)
) WITH (user_catalog_table = true);

CREATE TABLE spock.replication_set (
    set_id oid NOT NULL PRIMARY KEY,
    set_nodeid oid NOT NULL REFERENCES spock.node (node_id),
    set_name name NOT NULL,
    replicate_insert boolean NOT NULL DEFAULT true,
    replicate_update boolean NOT NULL DEFAULT true,
    replicate_delete boolean NOT NULL DEFAULT true,
    replicate_truncate boolean NOT NULL DEFAULT true,
    UNIQUE (set_nodeid, set_name)
) WITH (user_catalog_table = true);

CREATE TABLE spock.replication_set_table (
    set_id oid NOT NULL REFERENCES spock.replication_set (set_id),
    set_reloid regclass NOT NULL,
    set_att_list text[],
    set_row_filter pg_node_tree,
    PRIMARY KEY (set_id, set_reloid)
) WITH (user_catalog_table = true);

CREATE SEQUENCE spock.sub_id_generator AS integer START 1 CYCLE;

CREATE TABLE spock.subscription (
    sub_id oid NOT NULL PRIMARY KEY,
    sub_name name NOT NULL UNIQUE,
    sub_origin oid NOT NULL REFERENCES spock.node (node_id),
    sub_target oid NOT NULL REFERENCES spock.node (node_id),
    sub_origin_if oid NOT NULL REFERENCES spock.node_interface (if_id),
    sub_target_if oid NOT NULL REFERENCES spock.node_interface (if_id),
    sub_enabled boolean NOT NULL DEFAULT true,
    sub_slot_name name NOT NULL,
    sub_replication_sets text[],
    sub_forward_origins text[],
    sub_apply_delay interval NOT NULL DEFAULT '0',
    sub_force_text_transfer boolean NOT NULL DEFAULT false,
    sub_skip_lsn pg_lsn NOT NULL DEFAULT '0/0',
    sub_skip_schema text[],
    sub_created_at timestamptz NOT NULL DEFAULT now()
) WITH (user_catalog_table = true);
ALTER SEQUENCE spock.sub_id_generator OWNED BY spock.subscription.sub_id;

-- sync_status codes are spock_core::sync::SyncStatus; for the
-- subscription-level row (no relation), sync_statuslsn is the provider
-- position at which the subscription first streamed from its slot, 0/0
-- while it never did (the slot may then be created). For a table's row it
-- is the position of the snapshot the table was copied from: the apply
-- worker skips the table's changes committed before it.
CREATE TABLE spock.local_sync_status (
    sync_kind "char" NOT NULL CHECK (sync_kind IN ('i', 's', 'd', 'f')),
    sync_subid oid NOT NULL REFERENCES spock.subscription (sub_id),
    sync_nspname name,
    sync_relname name,
    sync_status "char" NOT NULL CHECK (sync_status IN ('i', 's', 'd', 'c', 'w', 'u', 'y', 'r', 'f')),
    sync_statuslsn pg_lsn NOT NULL DEFAULT '0/0',
    -- Ours: the table is emptied before it is copied (sub_resync_table).
    sync_truncate boolean NOT NULL DEFAULT false,
    UNIQUE NULLS NOT DISTINCT (sync_subid, sync_nspname, sync_relname)
);

-- Conflicts resolved on this node (behaviour.md §7.6), written by apply
-- workers under spock.save_resolutions and pruned by
-- spock.cleanup_resolutions(). Tuples are JSON text keyed by column name.
CREATE TABLE spock.resolutions (
    id integer GENERATED ALWAYS AS IDENTITY,
    node_name name NOT NULL,
    log_time timestamptz NOT NULL,
    relname text,
    idxname text,
    conflict_type text,
    conflict_resolution text,
    local_origin integer,
    local_tuple text,
    local_xid xid,
    local_timestamp timestamptz,
    remote_origin integer,
    remote_tuple text,
    remote_xid xid,
    remote_timestamp timestamptz,
    remote_lsn pg_lsn,
    PRIMARY KEY (id, node_name)
) WITH (user_catalog_table = true);
CREATE INDEX resolutions_log_time ON spock.resolutions (log_time);

-- Operations of remote transactions that failed to apply (behaviour.md §8.5),
-- written by apply workers in exception mode. Never pruned automatically.
CREATE TABLE spock.exception_log (
    remote_origin oid NOT NULL,
    remote_commit_ts timestamptz NOT NULL,
    command_counter integer NOT NULL,
    retry_errored_at timestamptz NOT NULL,
    remote_xid bigint NOT NULL,
    local_origin oid,
    local_commit_ts timestamptz,
    table_schema text,
    table_name text,
    operation text,
    local_tup jsonb,
    remote_old_tup jsonb,
    remote_new_tup jsonb,
    ddl_statement text,
    ddl_user text,
    error_message text NOT NULL,
    PRIMARY KEY (remote_origin, remote_commit_ts, command_counter, retry_errored_at)
) WITH (user_catalog_table = true);

-- Sequences of replication sets (sql-api.md §6.8-§6.9, behaviour.md §11):
-- their values are pushed to subscribers only by sync_seq() and
-- repset_add_seq(..., synchronize_data := true), as queue messages 'S'
-- carrying last_value + cache_size.
CREATE TABLE spock.replication_set_seq (
    set_id oid NOT NULL REFERENCES spock.replication_set (set_id),
    set_seqoid regclass NOT NULL,
    PRIMARY KEY (set_id, set_seqoid)
);

CREATE TABLE spock.sequence_state (
    seqoid oid NOT NULL PRIMARY KEY,
    cache_size integer NOT NULL DEFAULT 1000,
    last_value bigint
);

-- Messages for subscribers (sql-api.md §6.10): DDL from replicate_ddl ('Q')
-- and automatic DDL replication ('D'). The output plugin sends each row
-- inserted here to the subscriptions whose sets intersect
-- replication_sets (NULL: all), in the transaction that inserted it; a
-- subscriber stores the row it received in its own table, then acts on it.
-- Never pruned automatically; deleting rows has no effect on replication.
CREATE TABLE spock.queue (
    queued_at timestamptz NOT NULL,
    role name NOT NULL,
    replication_sets text[],
    message_type "char" NOT NULL CHECK (message_type IN ('Q', 'D', 'A', 'S')),
    message json NOT NULL
);
CREATE INDEX queue_queued_at ON spock.queue (queued_at);

-- Reserved schemas and extensions (sql-api.md §6.15): node-local, never
-- replicated. Built-in rows (the spock schema and extension) are protected
-- by spock.reserved_object_guard; user rows survive pg_dump/pg_restore.
CREATE TABLE spock.reserved_object (
    name name NOT NULL,
    kind text NOT NULL CHECK (kind IN ('schema', 'extension')),
    exclude_from_dump boolean NOT NULL DEFAULT true,
    block_in_repset boolean NOT NULL DEFAULT true,
    replicate_ddl boolean,
    builtin boolean NOT NULL DEFAULT false,
    PRIMARY KEY (name, kind)
) WITH (user_catalog_table = true);
INSERT INTO spock.reserved_object (name, kind, exclude_from_dump, block_in_repset, replicate_ddl, builtin)
VALUES ('spock', 'schema', true, true, true, true), ('spock', 'extension', true, true, NULL, true);
SELECT pg_catalog.pg_extension_config_dump('spock.reserved_object', 'WHERE NOT builtin');

-- For external tooling that tracks how exception_log entries were handled
-- (sql-api.md §6.13); the extension never writes them.
CREATE TABLE spock.exception_status (
    remote_origin oid NOT NULL,
    remote_commit_ts timestamptz NOT NULL,
    retry_errored_at timestamptz NOT NULL,
    remote_xid bigint NOT NULL,
    status text NOT NULL,
    resolved_at timestamptz,
    resolution_details jsonb,
    PRIMARY KEY (remote_origin, remote_commit_ts, retry_errored_at)
) WITH (user_catalog_table = true);
CREATE TABLE spock.exception_status_detail (
    remote_origin oid NOT NULL,
    remote_commit_ts timestamptz NOT NULL,
    command_counter integer NOT NULL,
    retry_errored_at timestamptz NOT NULL,
    remote_xid bigint NOT NULL,
    status text NOT NULL,
    resolved_at timestamptz,
    resolution_details jsonb,
    PRIMARY KEY (remote_origin, remote_commit_ts, command_counter, retry_errored_at),
    FOREIGN KEY (remote_origin, remote_commit_ts, retry_errored_at)
        REFERENCES spock.exception_status (remote_origin, remote_commit_ts, retry_errored_at)
) WITH (user_catalog_table = true);

-- A registry of personal-data columns kept by users (sql-api.md §6.14), to
-- help them build column lists; the extension never reads it.
CREATE TABLE spock.pii (
    id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    pii_schema text,
    pii_table text,
    pii_column text
);
