-- cluster: nodes=3
-- Last-update-wins on three nodes (behaviour.md §7): all three write the
-- same rows while disconnected, n1 first, then n2, then n3. They are
-- reconnected one provider at a time (n1's changes reach the others first,
-- then n2's, then n3's), so every node meets the other versions in a known
-- order. Every node ends with the latest version of each row it could
-- resolve, records the conflicts §7.6 lists as seen from where it stood, and
-- logs them. The unresolvable ones (an update of a row deleted elsewhere, an
-- update colliding on another unique index) are apply errors that leave the
-- nodes different, as §7.9 documents, while replication goes on.
\c :n1
ALTER SYSTEM SET spock.save_resolutions = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);
SELECT spock.repset_add_table('default', 't'), spock.repset_add_table('default', 'u');
\c :n2
ALTER SYSTEM SET spock.save_resolutions = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);
SELECT spock.repset_add_table('default', 't'), spock.repset_add_table('default', 'u');
\c :n3
ALTER SYSTEM SET spock.save_resolutions = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n3', :'n3') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE);
SELECT spock.repset_add_table('default', 't'), spock.repset_add_table('default', 'u');
SELECT spock.sub_create('sub_n3_n1', :'n1') > 0 AS sub_n3_n1, spock.sub_create('sub_n3_n2', :'n2') > 0 AS sub_n3_n2;
\c :n2
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS sub_n2_n1, spock.sub_create('sub_n2_n3', :'n3') > 0 AS sub_n2_n3;
\c :n1
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS sub_n1_n2, spock.sub_create('sub_n1_n3', :'n3') > 0 AS sub_n1_n3;
SELECT spock.sub_wait_for_sync('sub_n1_n2'), spock.sub_wait_for_sync('sub_n1_n3');
\c :n2
SELECT spock.sub_wait_for_sync('sub_n2_n1'), spock.sub_wait_for_sync('sub_n2_n3');
\c :n3
SELECT spock.sub_wait_for_sync('sub_n3_n1'), spock.sub_wait_for_sync('sub_n3_n2');
\c :n1
INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four'), (6, 'six'), (7, 'seven');
INSERT INTO u VALUES (10, 'x');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
-- Disconnect all six subscriptions.
SELECT spock.sub_disable('sub_n3_n1', immediate := true), spock.sub_disable('sub_n3_n2', immediate := true);
\c :n2
SELECT spock.sub_disable('sub_n2_n1', immediate := true), spock.sub_disable('sub_n2_n3', immediate := true);
\c :n1
SELECT spock.sub_disable('sub_n1_n2', immediate := true), spock.sub_disable('sub_n1_n3', immediate := true);
-- n1 writes first, n2 next, n3 last.
UPDATE t SET v = 'n1' WHERE id = 1;
INSERT INTO t VALUES (5, 'n1');
DELETE FROM t WHERE id = 3;
DELETE FROM t WHERE id = 7;
DELETE FROM t WHERE id = 6;
INSERT INTO u VALUES (11, 'y');
\c :n2
UPDATE t SET v = 'n2' WHERE id = 1;
INSERT INTO t VALUES (5, 'n2');
UPDATE t SET v = 'n2' WHERE id = 2;
DELETE FROM t WHERE id = 7;
UPDATE u SET email = 'y' WHERE id = 10;
\c :n3
UPDATE t SET v = 'n3' WHERE id = 1;
INSERT INTO t VALUES (5, 'n3');
DELETE FROM t WHERE id = 4;
UPDATE t SET v = 'n3' WHERE id = 6;
-- Reconnect n1's subscribers first.
\c :n2
SELECT spock.sub_enable('sub_n2_n1');
\c :n3
SELECT spock.sub_enable('sub_n3_n1');
\c :n1
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
-- Then n2's.
\c :n1
SELECT spock.sub_enable('sub_n1_n2');
\c :n3
SELECT spock.sub_enable('sub_n3_n2');
\c :n2
SELECT spock.sync_event() AS lsn \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn', 60);
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn', 60);
-- Then n3's.
\c :n1
SELECT spock.sub_enable('sub_n1_n3');
\c :n2
SELECT spock.sub_enable('sub_n2_n3');
\c :n3
SELECT spock.sync_event() AS lsn \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn', 60);
-- The same rows everywhere: n3's row 1 and 5, n2's row 2, rows 3, 4 and 7
-- deleted; except row 6, which n3 updated after n1 deleted it: n3 keeps
-- its later version (delete_exists), n1 and n2 cannot update a missing row
-- (update_missing). In u, n1's INSERT of email 'y' collided on n2 with n2's
-- own row 10 (a unique violation), and n2's UPDATE of row 10 to 'y'
-- collided on n1 and n3 with row 11 (update_exists).
\c :n1
SELECT * FROM t ORDER BY id;
SELECT * FROM u ORDER BY id;
\c :n2
SELECT * FROM t ORDER BY id;
SELECT * FROM u ORDER BY id;
\c :n3
SELECT * FROM t ORDER BY id;
SELECT * FROM u ORDER BY id;
-- The failed operations, in each node's exception_log.
\c :n1
SELECT table_name, operation, remote_new_tup, split_part(error_message, ':', 1) AS error
  FROM spock.exception_log ORDER BY remote_commit_ts, command_counter;
\c :n2
SELECT table_name, operation, remote_new_tup, split_part(error_message, ':', 1) AS error
  FROM spock.exception_log ORDER BY remote_commit_ts, command_counter;
\c :n3
SELECT table_name, operation, remote_new_tup, split_part(error_message, ':', 1) AS error
  FROM spock.exception_log ORDER BY remote_commit_ts, command_counter;
-- One server-log message per recorded conflict on each node
-- (conflict_log_level = log; overwritten versions of other origins are not
-- logged, log_origin_change being none).
--! log n1 spock conflict
--! log n2 spock conflict
--! log n3 spock conflict
-- What each node recorded. n1 met only later versions: its row 5 gave way
-- twice, and n2's DELETE of row 7 found nothing to delete.
\c :n1
SELECT r.conflict_type, r.conflict_resolution, o.node_name AS remote_node,
       CASE r.local_origin WHEN 0 THEN 'this node'
            ELSE (SELECT node_name FROM spock.node WHERE node_id = r.local_origin) END AS local_version_from,
       r.local_tuple::jsonb, r.remote_tuple::jsonb
  FROM spock.resolutions r JOIN spock.node o ON o.node_id = r.remote_origin ORDER BY r.id;
-- n2 kept its later versions against n1's, gave way to n3's row 5, and had
-- deleted row 7 already.
\c :n2
SELECT r.conflict_type, r.conflict_resolution, o.node_name AS remote_node,
       CASE r.local_origin WHEN 0 THEN 'this node'
            ELSE (SELECT node_name FROM spock.node WHERE node_id = r.local_origin) END AS local_version_from,
       r.local_tuple::jsonb, r.remote_tuple::jsonb
  FROM spock.resolutions r JOIN spock.node o ON o.node_id = r.remote_origin ORDER BY r.id;
-- n3 kept its own versions against both, and n2's DELETE of row 7 came
-- after n1's.
\c :n3
SELECT r.conflict_type, r.conflict_resolution, o.node_name AS remote_node,
       CASE r.local_origin WHEN 0 THEN 'this node'
            ELSE (SELECT node_name FROM spock.node WHERE node_id = r.local_origin) END AS local_version_from,
       r.local_tuple::jsonb, r.remote_tuple::jsonb
  FROM spock.resolutions r JOIN spock.node o ON o.node_id = r.remote_origin ORDER BY r.id;
SELECT subscription_name, status FROM spock.sub_show_status() ORDER BY 1;
\c :n1
SELECT subscription_name, status FROM spock.sub_show_status() ORDER BY 1;
\c :n2
SELECT subscription_name, status FROM spock.sub_show_status() ORDER BY 1;
