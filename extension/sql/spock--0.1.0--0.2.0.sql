-- spock 0.1.0 -> 0.2.0 (run by ALTER EXTENSION spock UPDATE, which each
-- database's manager does by itself when the server runs the 0.2.0 library).
--
-- The objects 0.2.0 adds, exactly as a fresh CREATE EXTENSION spock of 0.2.0
-- creates them (cargo xtask test compares the two catalogs).

CREATE FUNCTION spock.sub_alter_interface(subscription_name name, interface_name name) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_interface_wrapper';
REVOKE EXECUTE ON FUNCTION spock.sub_alter_interface(name, name) FROM PUBLIC;

CREATE FUNCTION spock.terminate_active_transactions() RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'terminate_active_transactions_wrapper';
REVOKE EXECUTE ON FUNCTION spock.terminate_active_transactions() FROM PUBLIC;

CREATE FUNCTION spock.sub_alter_options(subscription_name name, options jsonb) RETURNS boolean
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'sub_alter_options_wrapper';
REVOKE EXECUTE ON FUNCTION spock.sub_alter_options(name, jsonb) FROM PUBLIC;

CREATE FUNCTION spock.get_apply_worker_status(OUT worker_pid bigint, OUT worker_dboid integer,
    OUT worker_subid bigint, OUT worker_status text)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'get_apply_worker_status_wrapper';
REVOKE EXECUTE ON FUNCTION spock.get_apply_worker_status() FROM PUBLIC;

-- Revoked, then granted, as sql/privileges.sql does, so the ACL is the same.
CREATE FUNCTION spock.get_country() RETURNS text STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'get_country_wrapper';
REVOKE EXECUTE ON FUNCTION spock.get_country() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION spock.get_country() TO PUBLIC;

-- Column lists and row filters (behaviour.md §15).
CREATE FUNCTION spock.row_filter_condition(relation regclass, repsets text[]) RETURNS text
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'row_filter_condition_wrapper';
REVOKE EXECUTE ON FUNCTION spock.row_filter_condition(regclass, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION spock.row_filter_condition(regclass, text[]) TO PUBLIC;

CREATE FUNCTION spock.row_filter_uses_column(row_filter text, attnum int2) RETURNS boolean
    STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'row_filter_uses_column_wrapper';
REVOKE EXECUTE ON FUNCTION spock.row_filter_uses_column(text, int2) FROM PUBLIC;

CREATE FUNCTION spock.table_data_filtered(reltyp anyelement, relation regclass, repsets text[])
    RETURNS SETOF anyelement STABLE SET search_path = pg_catalog
    LANGUAGE plpgsql AS $$
DECLARE
    rowtype regtype;
    kind "char";
BEGIN
    IF relation IS NULL OR repsets IS NULL THEN
        RAISE EXCEPTION 'spock.table_data_filtered: relation and repsets must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    SELECT c.reltype, c.relkind INTO rowtype, kind FROM pg_class c WHERE c.oid = relation;
    IF pg_typeof(reltyp) IS DISTINCT FROM rowtype THEN
        RAISE EXCEPTION 'spock.table_data_filtered: reltyp is of type %, not the row type of %',
            pg_typeof(reltyp), relation
            USING ERRCODE = '42804', HINT = format('Pass NULL::%s.', relation);
    END IF;
    RETURN QUERY EXECUTE format('SELECT * FROM %s %s WHERE %s',
        CASE WHEN kind = 'p' THEN '' ELSE 'ONLY' END, relation,
        spock.row_filter_condition(relation, repsets));
END
$$;
REVOKE EXECUTE ON FUNCTION spock.table_data_filtered(anyelement, regclass, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION spock.table_data_filtered(anyelement, regclass, text[]) TO PUBLIC;

-- A dropped column leaves column lists; a row filter that read it takes its
-- membership with it.
CREATE OR REPLACE FUNCTION spock.drop_memberships_of_dropped_tables() RETURNS event_trigger
    SECURITY DEFINER SET search_path = pg_catalog
    LANGUAGE plpgsql AS $$
DECLARE
    gone oid[];
    col record;
BEGIN
    SELECT array_agg(objid) INTO gone FROM pg_event_trigger_dropped_objects()
     WHERE classid = 'pg_class'::regclass AND objsubid = 0;
    IF gone IS NOT NULL THEN
        DELETE FROM spock.replication_set_table WHERE set_reloid::oid = ANY (gone);
        DELETE FROM spock.replication_set_seq WHERE set_seqoid::oid = ANY (gone);
        DELETE FROM spock.sequence_state WHERE seqoid = ANY (gone);
    END IF;
    FOR col IN SELECT objid, objsubid::int2 AS attnum, address_names[3] AS attname
                 FROM pg_event_trigger_dropped_objects()
                WHERE classid = 'pg_class'::regclass AND objsubid > 0
                  AND objid IN (SELECT set_reloid::oid FROM spock.replication_set_table) LOOP
        DELETE FROM spock.replication_set_table
         WHERE set_reloid::oid = col.objid AND set_row_filter IS NOT NULL
           AND spock.row_filter_uses_column(set_row_filter::text, col.attnum);
        UPDATE spock.replication_set_table SET set_att_list = array_remove(set_att_list, col.attname)
         WHERE set_reloid::oid = col.objid AND col.attname = ANY (set_att_list);
    END LOOP;
END
$$;

-- Partitions joining and leaving their parent's sets.
CREATE FUNCTION spock.repset_add_partition(parent regclass, partition regclass DEFAULT NULL,
    row_filter text DEFAULT NULL) RETURNS integer
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_add_partition_wrapper';
REVOKE EXECUTE ON FUNCTION spock.repset_add_partition(regclass, regclass, text) FROM PUBLIC;

CREATE FUNCTION spock.repset_remove_partition(parent regclass, partition regclass DEFAULT NULL) RETURNS integer
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repset_remove_partition_wrapper';
REVOKE EXECUTE ON FUNCTION spock.repset_remove_partition(regclass, regclass) FROM PUBLIC;

-- Statistics (sql-api.md §4.8, §6.20).
CREATE FUNCTION spock.channel_stats_rows(OUT subid int8, OUT relid oid, OUT n_tup_ins bigint,
    OUT n_tup_upd bigint, OUT n_tup_del bigint, OUT n_conflict bigint, OUT n_dca bigint)
    RETURNS SETOF record VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'channel_stats_rows_wrapper';
REVOKE EXECUTE ON FUNCTION spock.channel_stats_rows() FROM PUBLIC;
CREATE FUNCTION spock.get_channel_stats(OUT subid oid, OUT relid oid, OUT n_tup_ins bigint,
    OUT n_tup_upd bigint, OUT n_tup_del bigint, OUT n_conflict bigint, OUT n_dca bigint)
    RETURNS SETOF record VOLATILE LANGUAGE sql
    AS 'SELECT subid::oid, relid, n_tup_ins, n_tup_upd, n_tup_del, n_conflict, n_dca FROM spock.channel_stats_rows()';
REVOKE EXECUTE ON FUNCTION spock.get_channel_stats() FROM PUBLIC;

CREATE FUNCTION spock.reset_channel_stats() RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'reset_channel_stats_wrapper';
REVOKE EXECUTE ON FUNCTION spock.reset_channel_stats() FROM PUBLIC;

CREATE FUNCTION spock.subscription_stats_rows(subid oid, OUT subid oid, OUT confl_insert_exists bigint,
    OUT confl_update_origin_differs bigint, OUT confl_update_exists bigint, OUT confl_update_missing bigint,
    OUT confl_delete_origin_differs bigint, OUT confl_delete_missing bigint, OUT confl_delete_exists bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'subscription_stats_rows_wrapper';
REVOKE EXECUTE ON FUNCTION spock.subscription_stats_rows(oid) FROM PUBLIC;
CREATE FUNCTION spock.get_subscription_stats(subid oid, OUT subid oid, OUT confl_insert_exists bigint,
    OUT confl_update_origin_differs bigint, OUT confl_update_exists bigint, OUT confl_update_missing bigint,
    OUT confl_delete_origin_differs bigint, OUT confl_delete_missing bigint, OUT confl_delete_exists bigint,
    OUT stats_reset timestamptz)
    RETURNS record STRICT VOLATILE LANGUAGE sql AS 'SELECT * FROM spock.subscription_stats_rows($1)';
REVOKE EXECUTE ON FUNCTION spock.get_subscription_stats(oid) FROM PUBLIC;

CREATE FUNCTION spock.reset_subscription_stats(subid oid DEFAULT NULL) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'reset_subscription_stats_wrapper';
REVOKE EXECUTE ON FUNCTION spock.reset_subscription_stats(oid) FROM PUBLIC;
-- Channel statistics (sql-api.md §6.20): per subscription and table, the
-- rows applied (subid 0, '<output>': the rows this node's walsenders sent).
CREATE VIEW spock.channel_table_stats AS
    SELECT c.subid, c.relid,
           CASE WHEN c.subid = 0 THEN '<output>' ELSE s.sub_name::text END AS sub_name,
           pg_catalog.format('%I.%I', n.nspname, r.relname) AS table_name,
           c.n_tup_ins, c.n_tup_upd, c.n_tup_del, c.n_conflict, c.n_dca
      FROM spock.get_channel_stats() c
      LEFT JOIN spock.subscription s ON s.sub_id = c.subid
      LEFT JOIN pg_catalog.pg_class r ON r.oid = c.relid
      LEFT JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace;

CREATE VIEW spock.channel_summary_stats AS
    SELECT subid, sub_name,
           sum(n_tup_ins)::bigint AS n_tup_ins, sum(n_tup_upd)::bigint AS n_tup_upd,
           sum(n_tup_del)::bigint AS n_tup_del, sum(n_conflict)::bigint AS n_conflict,
           sum(n_dca)::bigint AS n_dca
      FROM spock.channel_table_stats
     GROUP BY subid, sub_name;
REVOKE ALL ON spock.channel_table_stats, spock.channel_summary_stats FROM PUBLIC;

-- Repair mode (sql-api.md §4.6).
CREATE FUNCTION spock.repair_mode(enabled boolean) RETURNS pg_lsn
    STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'repair_mode_wrapper';
REVOKE EXECUTE ON FUNCTION spock.repair_mode(boolean) FROM PUBLIC;

-- Forwarding (behaviour.md §5.3): walsenders read spock.subscription while
-- decoding, to tell which node a forwarded transaction came from; the
-- function also knows forwarding origins.
ALTER TABLE spock.subscription SET (user_catalog_table = true);
-- Commit timestamp and origin of a transaction, with the origin given as the
-- spock node id it stands for: the provider of the subscription (or of its
-- table-sync worker) whose replication origin applied it, or the node of a
-- forwarding origin (behaviour.md §5.3).
CREATE OR REPLACE FUNCTION spock.xact_commit_timestamp_origin(xid xid, OUT "timestamp" timestamptz, OUT roident oid)
    RETURNS record STRICT STABLE SECURITY DEFINER SET search_path = pg_catalog
    LANGUAGE sql AS $$
    SELECT c.timestamp,
           CASE WHEN c.roident = 0 THEN 0::oid
                ELSE coalesce((SELECT s.sub_origin FROM spock.subscription s
                                 JOIN pg_catalog.pg_replication_origin o
                                   ON o.roname IN (s.sub_slot_name, s.sub_slot_name || '_sync')
                                WHERE o.roident = c.roident
                                ORDER BY o.roname = s.sub_slot_name DESC LIMIT 1),
                              (SELECT substring(o.roname FROM '^spkfwd_.*_([0-9]+)$')::oid
                                 FROM pg_catalog.pg_replication_origin o
                                WHERE o.roident = c.roident),
                              c.roident)
           END
      FROM pg_catalog.pg_xact_commit_timestamp_origin($1) c
$$;

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

-- Reserved objects (sql-api.md §4.3, §6.15).
CREATE FUNCTION spock.reserved_object_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'spock.reserved_object holds built-in rows and cannot be truncated'
            USING ERRCODE = '42501', HINT = 'Remove rows with spock.reserved_object_remove().';
    END IF;
    IF OLD.builtin THEN
        RAISE EXCEPTION 'the reserved % "%" is built in and cannot be changed or removed', OLD.kind, OLD.name
            USING ERRCODE = '42501';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.builtin THEN
        RAISE EXCEPTION 'a reserved object cannot be made built in' USING ERRCODE = '42501';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER reserved_object_guard BEFORE UPDATE OR DELETE ON spock.reserved_object
    FOR EACH ROW EXECUTE FUNCTION spock.reserved_object_guard();
CREATE TRIGGER reserved_object_truncate_guard BEFORE TRUNCATE ON spock.reserved_object
    FOR EACH STATEMENT EXECUTE FUNCTION spock.reserved_object_guard();
-- Also under session_replication_role = replica.
ALTER TABLE spock.reserved_object ENABLE ALWAYS TRIGGER reserved_object_guard;
ALTER TABLE spock.reserved_object ENABLE ALWAYS TRIGGER reserved_object_truncate_guard;

CREATE FUNCTION spock.reserved_object_add(p_name name, p_kind text, p_exclude_from_dump boolean DEFAULT true,
    p_block_in_repset boolean DEFAULT true, p_replicate_ddl boolean DEFAULT NULL) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'spock.reserved_object_add is for superusers only' USING ERRCODE = '42501';
    END IF;
    IF p_name IS NULL OR p_kind IS NULL THEN
        RAISE EXCEPTION 'spock.reserved_object_add needs p_name and p_kind' USING ERRCODE = '22004';
    END IF;
    IF p_kind NOT IN ('schema', 'extension') THEN
        RAISE EXCEPTION 'p_kind must be ''schema'' or ''extension'', not "%"', p_kind USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM spock.reserved_object WHERE name = p_name AND kind = p_kind AND builtin) THEN
        RAISE EXCEPTION 'the reserved % "%" is built in and cannot be changed', p_kind, p_name
            USING ERRCODE = '42501';
    END IF;
    -- A user catalog table takes no INSERT ... ON CONFLICT.
    UPDATE spock.reserved_object
       SET exclude_from_dump = coalesce(p_exclude_from_dump, true),
           block_in_repset = coalesce(p_block_in_repset, true),
           replicate_ddl = CASE WHEN p_kind = 'schema' THEN coalesce(p_replicate_ddl, true) END
     WHERE name = p_name AND kind = p_kind;
    IF NOT FOUND THEN
        INSERT INTO spock.reserved_object (name, kind, exclude_from_dump, block_in_repset, replicate_ddl)
        VALUES (p_name, p_kind, coalesce(p_exclude_from_dump, true), coalesce(p_block_in_repset, true),
                CASE WHEN p_kind = 'schema' THEN coalesce(p_replicate_ddl, true) END);
    END IF;
END
$$;

CREATE FUNCTION spock.reserved_object_remove(p_name name, p_kind text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'spock.reserved_object_remove is for superusers only' USING ERRCODE = '42501';
    END IF;
    IF p_name IS NULL OR p_kind IS NULL THEN
        RAISE EXCEPTION 'spock.reserved_object_remove needs p_name and p_kind' USING ERRCODE = '22004';
    END IF;
    IF p_kind NOT IN ('schema', 'extension') THEN
        RAISE EXCEPTION 'p_kind must be ''schema'' or ''extension'', not "%"', p_kind USING ERRCODE = '22023';
    END IF;
    DELETE FROM spock.reserved_object WHERE name = p_name AND kind = p_kind;
END
$$;
REVOKE ALL ON spock.reserved_object FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION spock.reserved_object_guard(), spock.reserved_object_add(name, text, boolean, boolean, boolean), spock.reserved_object_remove(name, text) FROM PUBLIC;

-- The schemas of the objects a DDL statement created, changed or dropped,
-- noted for the statement's automatic replication: a schema reserved with
-- replicate_ddl = false keeps it local (sql-api.md §6.15). The notes go to
-- spock.note_ddl_schemas (api/ddl.rs).
CREATE FUNCTION spock.note_ddl_schemas(schemas text[]) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'note_ddl_schemas_wrapper';
CREATE FUNCTION spock.ddl_schemas_of_statement() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    -- A schema itself counts as in itself.
    IF TG_EVENT = 'sql_drop' THEN
        PERFORM spock.note_ddl_schemas(array_agg(DISTINCT s))
           FROM (SELECT coalesce(schema_name, CASE WHEN object_type = 'schema' THEN object_name END)::text
                   FROM pg_event_trigger_dropped_objects()) d(s)
          WHERE s IS NOT NULL;
    ELSE
        PERFORM spock.note_ddl_schemas(array_agg(DISTINCT s))
           FROM (SELECT coalesce(schema_name, CASE WHEN object_type = 'schema'
                        THEN (SELECT nspname FROM pg_namespace WHERE oid = objid) END)::text
                   FROM pg_event_trigger_ddl_commands()) c(s)
          WHERE s IS NOT NULL;
    END IF;
END
$$;
CREATE EVENT TRIGGER spock_ddl_schemas ON ddl_command_end EXECUTE FUNCTION spock.ddl_schemas_of_statement();
CREATE EVENT TRIGGER spock_ddl_dropped_schemas ON sql_drop EXECUTE FUNCTION spock.ddl_schemas_of_statement();
-- Also in sessions with session_replication_role = replica, whose DDL the
-- hook queues all the same.
ALTER EVENT TRIGGER spock_ddl_schemas ENABLE ALWAYS;
ALTER EVENT TRIGGER spock_ddl_dropped_schemas ENABLE ALWAYS;
REVOKE EXECUTE ON FUNCTION spock.note_ddl_schemas(text[]), spock.ddl_schemas_of_statement() FROM PUBLIC;

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
REVOKE ALL ON spock.exception_status, spock.exception_status_detail, spock.pii FROM PUBLIC;
REVOKE ALL ON SEQUENCE spock.pii_id_seq FROM PUBLIC;
