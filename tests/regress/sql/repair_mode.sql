-- cluster: nodes=2
-- Repair mode (sql-api.md §4.6): inside a transaction, after
-- spock.repair_mode(true), data changes and TRUNCATE are not sent to
-- subscribers, automatic DDL is not queued and tables join no set, until
-- repair_mode(false) or the end of the transaction.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');

\c :n1
INSERT INTO t VALUES (1, 'before');
-- A DO block is one transaction: the insert after the call stays here.
DO $$
BEGIN
    PERFORM spock.repair_mode(true);
    INSERT INTO t VALUES (6, 'repair in a DO block');
END $$;
BEGIN;
SHOW spock.replication_repair_mode;
SELECT spock.repair_mode(true) IS NOT NULL AS marker_written;
SHOW spock.replication_repair_mode;
INSERT INTO t VALUES (2, 'repair: n1 only');
UPDATE t SET v = 'repair: n1 only' WHERE id = 1;
SELECT spock.repair_mode(false) IS NOT NULL AS marker_written;
INSERT INTO t VALUES (3, 'after repair_mode(false)');
COMMIT;
SHOW spock.replication_repair_mode;
-- The mode ends with the transaction, also when it rolls back.
BEGIN;
SELECT spock.repair_mode(true) IS NOT NULL AS marker_written;
ROLLBACK;
INSERT INTO t VALUES (4, 'next transaction');
-- TRUNCATE in repair mode stays here too.
BEGIN;
SELECT spock.repair_mode(true) IS NOT NULL AS marker_written;
TRUNCATE t;
INSERT INTO t VALUES (5, 'repair: n1 only');
COMMIT;
-- Automatic DDL: nothing queued, no set for the new table.
SET spock.enable_ddl_replication = on;
SET spock.include_ddl_repset = on;
BEGIN;
SELECT spock.repair_mode(true) IS NOT NULL AS marker_written;
CREATE TABLE fixed_here (id int PRIMARY KEY);
COMMIT;
CREATE TABLE replicated (id int PRIMARY KEY);
RESET spock.enable_ddl_replication;
RESET spock.include_ddl_repset;
SELECT c.relname, array_agg(s.set_name ORDER BY s.set_name) AS sets
  FROM pg_class c
  LEFT JOIN spock.replication_set_table rt ON rt.set_reloid = c.oid
  LEFT JOIN spock.replication_set s ON s.set_id = rt.set_id
 WHERE c.relname IN ('fixed_here', 'replicated') GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE message::text LIKE '%fixed_here%') AS queued_fixed_here,
       count(*) FILTER (WHERE message::text LIKE '%replicated%') AS queued_replicated
  FROM spock.queue;
SELECT * FROM t ORDER BY id;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
SELECT to_regclass('fixed_here') AS fixed_here, to_regclass('replicated') AS replicated;
-- Superusers only.
\c :n1
CREATE ROLE fixer LOGIN;
SET ROLE fixer;
BEGIN;
SELECT spock.repair_mode(true);
ROLLBACK;
RESET ROLE;
