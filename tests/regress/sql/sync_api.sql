-- cluster: nodes=2
-- The synchronisation-status functions for a subscription created without
-- data synchronisation (sql-api.md §4.3-§4.5): repset_show_table tells a subscriber what a
-- provider sends of a table; sub_show_table reports `unknown` for a table
-- of a subscription created without data synchronisation and
-- table_wait_for_sync returns once the subscription is ready;
-- wait_slot_confirm_lsn on a provider returns once its subscribers have
-- confirmed the session's last commit.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE TABLE t (id int PRIMARY KEY, v text, gone int, doubled int GENERATED ALWAYS AS (id * 2) STORED);
ALTER TABLE t DROP COLUMN gone;
CREATE TABLE u (id int PRIMARY KEY);
SELECT spock.repset_add_table('default', 't');
SELECT relid = 't'::regclass AS same_relid, nspname, relname, att_list, has_row_filter, relkind, relispartition
  FROM spock.repset_show_table('t', '{default,ddl_sql}');
SELECT try($$SELECT spock.repset_show_table('u', '{default}')$$);
SELECT try($$SELECT spock.repset_show_table('t', '{ddl_sql}')$$);
-- Subscribers call it with a replication role; other roles may not.
CREATE ROLE sync_api_replicator REPLICATION;
CREATE ROLE sync_api_plain;
SET ROLE sync_api_replicator;
SELECT relname, att_list FROM spock.repset_show_table('t', '{default}');
SET ROLE sync_api_plain;
SELECT try($$SELECT spock.repset_show_table('t', '{default}')$$);
RESET ROLE;
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text, doubled int GENERATED ALWAYS AS (id * 2) STORED);
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.table_wait_for_sync('sub_n2_n1', 't');
SELECT * FROM spock.sub_show_table('sub_n2_n1', 't');
SELECT try($$SELECT spock.sub_show_table('nosuchsub', 't')$$);
SELECT try($$SELECT spock.table_wait_for_sync('nosuchsub', 't')$$);
\c :n1
INSERT INTO t (id, v) VALUES (1, 'confirmed');
-- Returns once n2's slot has confirmed this session's last commit: the row
-- is then on n2 without any other wait.
SELECT spock.wait_slot_confirm_lsn(NULL, NULL);
SELECT try($$SELECT spock.wait_slot_confirm_lsn('nosuchslot', NULL)$$);
\c :n2
SELECT * FROM t;
-- md5_agg (sql-api.md §4.12): the same rows give the same text on both
-- nodes; the chain is md5(md5('' || r1) || r2) ...
SELECT spock.md5_agg(x ORDER BY x) = md5(md5(md5('1') || '2') || '3') AS chained FROM generate_series(1, 3) x;
\c :n1
SELECT spock.md5_agg(t ORDER BY id) AS n1_digest FROM t \gset
\c :n2
SELECT spock.md5_agg(t ORDER BY id) = :'n1_digest' AS same_on_both FROM t;
-- get_lsn_from_commit_ts (sql-api.md §4.11): the end of the last commit
-- made on n1 at or before a time, read from the WAL of n1's slot for n2.
\c :n1
SELECT slot_name AS n2_slot FROM pg_replication_slots WHERE plugin = 'spock_output' \gset
SELECT spock.get_lsn_from_commit_ts(:'n2_slot', '2000-01-01') IS NULL AS nothing_that_early;
SELECT pg_current_wal_insert_lsn() AS before_first \gset
INSERT INTO t (id, v) VALUES (2, 'first');
SELECT pg_current_wal_insert_lsn() AS after_first, clock_timestamp() AS between_them \gset
INSERT INTO t (id, v) VALUES (3, 'second');
SELECT spock.get_lsn_from_commit_ts(:'n2_slot', :'between_them') AS found \gset
SELECT :'found'::pg_lsn > :'before_first'::pg_lsn AND :'found'::pg_lsn <= :'after_first'::pg_lsn
    AS the_first_commit;
SELECT spock.get_lsn_from_commit_ts(:'n2_slot', clock_timestamp()) > :'after_first'::pg_lsn AS the_second_commit;
SELECT try($$SELECT spock.get_lsn_from_commit_ts('nosuchslot', now())$$);
SELECT (pg_create_physical_replication_slot('sync_api_physical')).slot_name IS NOT NULL AS physical;
SELECT try($$SELECT spock.get_lsn_from_commit_ts('sync_api_physical', now())$$);
SELECT pg_drop_replication_slot('sync_api_physical');
-- slot_enable_failover (sql-api.md §4.11): on 17 and later the
-- subscription's slot was made with the failover flag, and a spock slot
-- made without it gets it; on 15 and 16 nothing changes.
SELECT current_setting('server_version_num')::int >= 170000 AS has_failover \gset
SELECT pg_create_logical_replication_slot('sync_api_manual', 'spock_output') IS NOT NULL AS created;
SET client_min_messages = warning;
SELECT spock.slot_enable_failover() = CASE WHEN :'has_failover'::bool THEN 1 ELSE 0 END AS changed_as_expected;
RESET client_min_messages;
-- (15 and 16 have no failover column: their slots count as flagged.)
SELECT bool_and(coalesce((to_jsonb(s) ->> 'failover')::bool, NOT :'has_failover'::bool)) AS all_failover,
       count(*) AS slots
  FROM pg_replication_slots s WHERE plugin = 'spock_output';
SELECT pg_drop_replication_slot('sync_api_manual');
