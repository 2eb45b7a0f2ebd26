-- Views (sql-api.md §6).

CREATE VIEW spock.tables AS
    SELECT c.oid AS relid, n.nspname, c.relname, s.set_name
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN spock.replication_set_table t ON t.set_reloid = c.oid
      LEFT JOIN spock.replication_set s ON s.set_id = t.set_id
     WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
       AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'spock');

CREATE VIEW spock.core_patches AS
    SELECT patch, present, abi, features FROM spock.core_patches_status();
COMMENT ON VIEW spock.core_patches IS 'Core patches this server carries and what is unavailable without them';

-- Progress and lag (sql-api.md §6.17-§6.19, behaviour.md §13). One row per
-- subscription of this database; remote_commit_lsn is the replication
-- origin's progress, the rest what the subscription's apply worker
-- published (NULL until a worker has run since the server started).
CREATE FUNCTION spock.apply_group_progress(OUT dbid oid, OUT node_id oid, OUT remote_node_id oid,
    OUT remote_commit_ts timestamptz, OUT remote_commit_lsn pg_lsn, OUT remote_insert_lsn pg_lsn,
    OUT received_lsn pg_lsn, OUT last_updated_ts timestamptz)
    RETURNS SETOF record VOLATILE SET search_path = pg_catalog LANGUAGE sql AS $$
    SELECT d.oid, s.sub_target, s.sub_origin, p.remote_commit_ts, o.remote_lsn,
           p.remote_insert_lsn, p.received_lsn, p.last_updated_ts
      FROM spock.subscription s
      JOIN pg_database d ON d.datname = current_database()
      LEFT JOIN pg_replication_origin_status o ON o.external_id = s.sub_slot_name
      LEFT JOIN spock.progress_published() p ON p.sub_id = s.sub_id
$$;

CREATE VIEW spock.progress AS SELECT * FROM spock.apply_group_progress();

CREATE VIEW spock.lag_tracker AS
    SELECT origin.node_name AS origin_name, receiver.node_name AS receiver_name,
           p.remote_commit_ts AS commit_timestamp, p.remote_commit_lsn AS commit_lsn,
           p.remote_insert_lsn, p.received_lsn,
           pg_wal_lsn_diff(p.remote_insert_lsn, p.remote_commit_lsn) AS replication_lag_bytes,
           p.last_updated_ts - p.remote_commit_ts AS replication_lag
      FROM spock.progress p
      JOIN spock.node origin ON origin.node_id = p.remote_node_id
      JOIN spock.node receiver ON receiver.node_id = p.node_id;

-- The table each running initial copy is copying, with the rows and bytes
-- copied so far (updated every second).
CREATE VIEW spock.sync_progress AS
    SELECT s.sub_name AS subscription_name, c.relation, c.rows_copied, c.bytes_copied, c.copy_started
      FROM spock.copies_published() c
      JOIN spock.subscription s ON s.sub_id = c.sub_id;

-- Add-node support (sql-api.md §4.11), run on the node a new node copies
-- from, while its apply workers are paused: the first row has the slot's
-- restart LSN; then one row per peer this node subscribes to (except the
-- new node), with remote_commit_lsn the exact position of this node's
-- replication origin for that peer, where the new node's own subscription
-- to the peer must start.
CREATE FUNCTION spock.read_peer_progress(p_slot_name text, p_provider_node_id oid, p_subscriber_node_id oid)
    RETURNS TABLE (lsn pg_lsn, snapshot text, dbid oid, node_id oid, remote_node_id oid,
        remote_commit_ts timestamptz, prev_remote_ts timestamptz, remote_commit_lsn pg_lsn,
        remote_insert_lsn pg_lsn, received_lsn pg_lsn, last_updated_ts timestamptz,
        updated_by_decode boolean)
    VOLATILE SET search_path = pg_catalog LANGUAGE sql AS $$
    SELECT (SELECT s.restart_lsn FROM pg_replication_slots s WHERE s.slot_name = p_slot_name),
           NULL::text, NULL::oid, p_provider_node_id, NULL::oid, NULL::timestamptz, NULL::timestamptz,
           NULL::pg_lsn, NULL::pg_lsn, NULL::pg_lsn, NULL::timestamptz, false
    UNION ALL
    SELECT NULL::pg_lsn, NULL::text, p.dbid, p.node_id, p.remote_node_id, p.remote_commit_ts, NULL::timestamptz,
           p.remote_commit_lsn, p.remote_insert_lsn, p.received_lsn, p.last_updated_ts, false
      FROM spock.progress p
     WHERE p.remote_node_id IS DISTINCT FROM p_subscriber_node_id
$$;

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
