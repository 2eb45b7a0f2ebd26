-- Functions and procedures written in SQL (sql-api.md §4.1, §4.5).

-- Commit timestamp and origin of a transaction, with the origin given as the
-- spock node id it stands for: the provider of the subscription (or of its
-- table-sync worker) whose replication origin applied it, or the node of a
-- forwarding origin (behaviour.md §5.3).
CREATE FUNCTION spock.xact_commit_timestamp_origin(xid xid, OUT "timestamp" timestamptz, OUT roident oid)
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

CREATE PROCEDURE spock.wait_for_sync_event(OUT result boolean, origin name, lsn pg_lsn,
    timeout integer DEFAULT 0, wait_if_disabled boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => timeout);
BEGIN
    LOOP
        IF spock.sync_event_reached(origin, lsn, wait_if_disabled) THEN
            result := true;
            RETURN;
        END IF;
        IF timeout > 0 AND clock_timestamp() >= deadline THEN
            result := false;
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

CREATE PROCEDURE spock.wait_for_sync_event(OUT result boolean, origin_id oid, lsn pg_lsn,
    timeout integer DEFAULT 0, wait_if_disabled boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    origin_name name;
BEGIN
    IF origin_id IS NULL THEN
        RAISE EXCEPTION 'the origin to wait for must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT node_name INTO origin_name FROM spock.node WHERE node_id = origin_id;
    IF origin_name IS NULL THEN
        RAISE EXCEPTION 'node with id % does not exist', origin_id USING ERRCODE = '42704';
    END IF;
    CALL spock.wait_for_sync_event(result, origin_name, lsn, timeout, wait_if_disabled);
END
$$;

-- The default delta_apply_function (sql-api.md §4.7, behaviour.md §9):
-- local + (new - old), with the type's own overflow errors.
CREATE FUNCTION spock.delta_apply(old int2, new int2, local int2) RETURNS int2
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old int4, new int4, local int4) RETURNS int4
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old int8, new int8, local int8) RETURNS int8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old float4, new float4, local float4) RETURNS float4
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old float8, new float8, local float8) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old numeric, new numeric, local numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;
CREATE FUNCTION spock.delta_apply(old money, new money, local money) RETURNS money
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $3 + ($2 - $1) $$;

-- Memberships go with their tables and sequences (behaviour.md §10.6):
-- whatever dropped them (DROP TABLE ... CASCADE, DROP SCHEMA ... CASCADE, a
-- replicated DROP executed by an apply worker), their rows in
-- spock.replication_set_table, replication_set_seq and sequence_state are
-- deleted in the same transaction. A dropped column leaves the column
-- lists, and a membership whose row filter read it goes as if the table
-- had been dropped. Enabled ALWAYS so that it also fires in apply workers,
-- which run with session_replication_role = replica.
CREATE FUNCTION spock.drop_memberships_of_dropped_tables() RETURNS event_trigger
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
CREATE EVENT TRIGGER spock_drop_memberships ON sql_drop
    EXECUTE FUNCTION spock.drop_memberships_of_dropped_tables();
ALTER EVENT TRIGGER spock_drop_memberships ENABLE ALWAYS;

-- replicate_ddl for several commands (sql-api.md §4.6): the scalar form for
-- each element, in order.
CREATE FUNCTION spock.replicate_ddl(command text[], replication_sets text[] DEFAULT '{ddl_sql}',
    search_path text DEFAULT current_setting('search_path'), role text DEFAULT CURRENT_USER)
    RETURNS SETOF boolean STRICT VOLATILE LANGUAGE plpgsql AS $$
DECLARE
    one text;
BEGIN
    FOREACH one IN ARRAY command LOOP
        RETURN NEXT spock.replicate_ddl(one, replication_sets, search_path, role);
    END LOOP;
END
$$;

-- A cross-node consistency check (sql-api.md §4.12): chained MD5 over the
-- ordered input, state := md5(state || value::text) from the empty string.
-- `SELECT spock.md5_agg(t ORDER BY id) FROM t` gives the same text on every
-- node holding the same rows. NULL inputs are skipped (a strict step).
CREATE FUNCTION spock.md5_agg_sfunc(text, anyelement) RETURNS text
    STRICT IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT pg_catalog.md5($1 OPERATOR(pg_catalog.||) $2::text) $$;
CREATE AGGREGATE spock.md5_agg(anyelement) (
    SFUNC = spock.md5_agg_sfunc,
    STYPE = text,
    INITCOND = ''
);

-- The rows of a table that pass the row filters of the named sets of this
-- node (sql-api.md §4.3): the same condition the initial copy applies.
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

-- The schemas of the objects a DDL statement created, changed or dropped,
-- noted for the statement's automatic replication: a schema reserved with
-- replicate_ddl = false keeps it local (sql-api.md §6.15). The notes go to
-- spock.note_ddl_schemas (api/ddl.rs).
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
