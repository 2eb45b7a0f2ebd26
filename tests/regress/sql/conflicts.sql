-- cluster: nodes=2
-- Last-update-wins between two nodes that wrote while disconnected
-- (behaviour.md §7, acceptance 1, 3, 4, 5, 6, 9): both nodes end with the
-- later version, and spock.resolutions records exactly the conflicts §7.6
-- lists; an UPDATE of a row deleted meanwhile is an apply error handled in
-- exception mode, which replication survives. With check_all_uc_indexes, an
-- INSERT that collides on another unique index is an insert_exists (§7.8).
\c :n1
ALTER SYSTEM SET spock.save_resolutions = on;
ALTER SYSTEM SET spock.check_all_uc_indexes = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);
SELECT spock.repset_add_table('default', 't');
SELECT spock.repset_add_table('default', 'u');
\c :n2
ALTER SYSTEM SET spock.save_resolutions = on;
ALTER SYSTEM SET spock.check_all_uc_indexes = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);
SELECT spock.repset_add_table('default', 't');
SELECT spock.repset_add_table('default', 'u');
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
\c :n2
SHOW spock.save_resolutions;
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
SHOW spock.save_resolutions;
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n1_n2');
INSERT INTO t VALUES (1, 'a'), (7, 'seven'), (8, 'eight'), (9, 'nine');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
-- Disconnect: both subscriptions disabled, then both nodes write, n1 first.
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
\c :n1
SELECT spock.sub_disable('sub_n1_n2', immediate := true);
UPDATE t SET v = 'x' WHERE id = 1;
INSERT INTO t VALUES (5, 'p');
DELETE FROM t WHERE id = 7;
DELETE FROM t WHERE id = 9;
INSERT INTO u VALUES (1, 'a@example.org');
\c :n2
UPDATE t SET v = 'y' WHERE id = 1;
INSERT INTO t VALUES (5, 'q');
DELETE FROM t WHERE id = 7;
UPDATE t SET v = 'nine on n2' WHERE id = 9;
INSERT INTO u VALUES (2, 'a@example.org');
-- Reconnect, and wait for each side's changes on the other.
SELECT spock.sub_enable('sub_n2_n1');
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
SELECT spock.sub_enable('sub_n1_n2');
SELECT spock.sync_event() AS lsn1 \gset
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
-- Both nodes hold n2's versions: it committed later. Row 9 stays on n2 only
-- (update against delete, behaviour.md §7.9). The two rows with the same
-- email became n2's one row.
SELECT * FROM t ORDER BY id;
SELECT * FROM u ORDER BY id;
\c :n1
SELECT * FROM t ORDER BY id;
SELECT * FROM u ORDER BY id;
-- The server-log message of each conflict (log_origin_change = none: the
-- overwrite of n1's own version is not logged), update_missing included.
--! log n1 spock conflict
--! log n2 spock conflict
\c :n1
-- n1 could not apply n2's UPDATE of row 9 (update_missing): the transaction
-- was discarded and logged, and replication went on.
SELECT command_counter, table_name, operation, remote_old_tup, remote_new_tup,
       error_message LIKE '[P0002] update_missing:%' AS update_missing
  FROM spock.exception_log ORDER BY command_counter;
-- n1 applied n2's later INSERT over its own row and met n2's DELETE of a
-- row it had deleted already; overwriting its own 'x' is ordinary flow.
SELECT r.conflict_type, r.conflict_resolution, r.relname, r.idxname, r.local_origin,
       r.remote_origin = n.node_id AS remote_is_n2,
       r.local_tuple::jsonb, r.remote_tuple::jsonb,
       r.local_timestamp < r.remote_timestamp AS remote_later, r.remote_lsn IS NOT NULL AS has_lsn
  FROM spock.resolutions r, spock.node n WHERE n.node_name = 'n2' ORDER BY r.id;
\c :n2
-- n2 kept its own later versions of rows 1 and 5.
SELECT r.conflict_type, r.conflict_resolution, r.relname, r.idxname, r.local_origin,
       r.remote_origin = n.node_id AS remote_is_n1,
       r.local_tuple::jsonb, r.remote_tuple::jsonb,
       r.local_timestamp > r.remote_timestamp AS local_later, r.node_name
  FROM spock.resolutions r, spock.node n WHERE n.node_name = 'n1' ORDER BY r.id;
-- Two updates of one row on n1, in two transactions: ordinary replication,
-- no new resolutions anywhere.
\c :n1
SELECT count(*) AS n1_before FROM spock.resolutions \gset
UPDATE t SET v = 'eight once' WHERE id = 8;
UPDATE t SET v = 'eight twice' WHERE id = 8;
SELECT spock.sync_event() AS lsn \gset
\c :n2
SELECT count(*) AS n2_before FROM spock.resolutions \gset
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT v FROM t WHERE id = 8;
SELECT count(*) = :n2_before AS n2_no_new_resolutions FROM spock.resolutions;
\c :n1
SELECT count(*) = :n1_before AS n1_no_new_resolutions FROM spock.resolutions;
SELECT subscription_name, status FROM spock.sub_show_status();
\c :n2
SELECT subscription_name, status FROM spock.sub_show_status();
-- cleanup_resolutions: rows older than the given days, 0 keeps everything,
-- negative is an error, and only superusers may call it.
UPDATE spock.resolutions SET log_time = now() - interval '2 days'
 WHERE id = (SELECT min(id) FROM spock.resolutions);
SELECT spock.cleanup_resolutions(0) AS kept_all;
SELECT spock.cleanup_resolutions(1) AS deleted_old;
SELECT count(*) AS left_after_cleanup FROM spock.resolutions;
SELECT try('SELECT spock.cleanup_resolutions(-1)');
CREATE ROLE conflicts_nobody;
SET ROLE conflicts_nobody;
SELECT try('SELECT spock.cleanup_resolutions(1)');
RESET ROLE;
DROP ROLE conflicts_nobody;
ALTER SYSTEM RESET spock.save_resolutions;
ALTER SYSTEM RESET spock.check_all_uc_indexes;
SELECT pg_reload_conf();
\c :n1
ALTER SYSTEM RESET spock.save_resolutions;
ALTER SYSTEM RESET spock.check_all_uc_indexes;
SELECT pg_reload_conf();
