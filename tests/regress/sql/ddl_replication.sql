-- cluster: nodes=3
-- DDL replication (behaviour.md §10, acceptance 1-8): replicate_ddl runs a
-- command here and on every subscriber at the same point of the stream;
-- automatic DDL queues each DDL statement of a session and, with
-- include_ddl_repset, puts new tables into sets on every node; statements
-- that cannot replicate stay local with a WARNING; DDL and data of one
-- transaction arrive together; a statement that fails on a subscriber is an
-- apply error in exception_log with its text; a member table cannot be
-- dropped by accident.
\c :n1
ALTER SYSTEM SET spock.include_ddl_repset = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE TABLE t (id int PRIMARY KEY);
\c :n2
ALTER SYSTEM SET spock.include_ddl_repset = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY);
\c :n3
ALTER SYSTEM SET spock.include_ddl_repset = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n3', :'n3') > 0 AS created;
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

-- 1. replicate_ddl: the table exists everywhere; a row inserted on n1 right
-- after the call is applied on n2 without error.
\c :n1
SELECT spock.replicate_ddl('CREATE TABLE public.r (id int PRIMARY KEY, v text)');
SELECT spock.repset_add_table('default', 'r');
INSERT INTO r VALUES (1, 'after the DDL');
-- The text[] form runs each command in order.
SELECT * FROM spock.replicate_ddl(ARRAY['CREATE TABLE a1 (i int)', 'ALTER TABLE a1 ADD COLUMN j int']);
-- 2. A rolled-back transaction queues nothing.
BEGIN;
SELECT spock.replicate_ddl('CREATE TABLE x1 (i int)');
ROLLBACK;
-- 3. Only DDL; every check happens before anything runs.
SELECT count(*) AS queued_before_errors FROM spock.queue \gset
SELECT try($$SELECT spock.replicate_ddl('INSERT INTO t VALUES (1)')$$);
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE e1 (i int); DELETE FROM t')$$);
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE e2 (i int)', '{nosuchset}')$$);
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE e3 (i int)', role := 'nosuchrole')$$);
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE e4 (i int)', search_path := 'a, "b')$$);
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE t (i int)')$$);
SELECT count(*) = :queued_before_errors AS nothing_queued_by_errors,
       to_regclass('e1') IS NULL AND to_regclass('e2') IS NULL AS nothing_created_by_errors FROM spock.queue;
SELECT message_type, role = current_user AS by_me, replication_sets, message
  FROM spock.queue ORDER BY queued_at;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM r;
SELECT to_regclass('a1') IS NOT NULL AS a1, (SELECT count(*) FROM pg_attribute WHERE attrelid = 'a1'::regclass AND attnum > 0) AS a1_columns,
       to_regclass('x1') IS NULL AS no_x1;
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM r;
SELECT to_regclass('x1') IS NULL AS no_x1;

-- 4. Automatic DDL with include_ddl_repset: a table with a key lands in
-- default, one without in default_insert_only, on every node; rows written
-- on any node reach the others.
\c :n1
SET spock.enable_ddl_replication = on;
CREATE TABLE k (id int PRIMARY KEY, v text);
CREATE TABLE nk (i int);
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'nk') ORDER BY 1, 2;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'nk') ORDER BY 1, 2;
INSERT INTO k VALUES (2, 'from n2');
INSERT INTO nk VALUES (2);
SELECT spock.sync_event() AS lsn2 \gset
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'nk') ORDER BY 1, 2;
INSERT INTO k VALUES (3, 'from n3');
SELECT spock.sync_event() AS lsn3 \gset
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
SELECT * FROM k ORDER BY id;
SELECT * FROM nk;
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
SELECT * FROM k ORDER BY id;
SELECT * FROM nk;

-- 5. Statements that stay local say so.
SET spock.enable_ddl_replication = on;
CREATE TEMP TABLE tt (i int);
VACUUM k;
CREATE INDEX CONCURRENTLY k_v ON k (v);
-- 6. DDL and data in one transaction arrive together, in order.
BEGIN;
CREATE TABLE t6 (id int PRIMARY KEY, v text);
INSERT INTO t6 VALUES (1, 'one'), (2, 'two');
ALTER TABLE t6 ADD COLUMN w int DEFAULT 7;
INSERT INTO t6 VALUES (3, 'three', 3);
COMMIT;
-- Dropping the key moves a table to default_insert_only, and out of a
-- custom set that replicates UPDATE or DELETE, with a WARNING.
CREATE TABLE k2 (id int PRIMARY KEY);
SELECT spock.repset_create('custom_ud') > 0 AS custom_set;
SELECT spock.repset_add_table('custom_ud', 'k2');
ALTER TABLE k DROP CONSTRAINT k_pkey;
ALTER TABLE k2 DROP CONSTRAINT k2_pkey;
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'k2', 't6') ORDER BY 1, 2;
-- Partitions, tables created by CREATE SCHEMA, unlogged tables, CREATE
-- TABLE AS (replicated with a WARNING), CREATE EXTENSION (one statement).
CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE SCHEMA s1 CREATE TABLE s1t (id int PRIMARY KEY);
CREATE UNLOGGED TABLE unlogged_t (id int PRIMARY KEY);
CREATE TABLE ctas AS SELECT 1 AS x;
CREATE EXTENSION pgcrypto;
-- DDL inside functions counts only with allow_ddl_from_functions.
SELECT try('CREATE TABLE fn_t1 (i int)');
SET spock.allow_ddl_from_functions = on;
SELECT try('CREATE TABLE fn_t2 (i int)');
RESET spock.allow_ddl_from_functions;
-- deny_all_ddl refuses DDL here.
SET spock.deny_all_ddl = on;
SELECT try('CREATE TABLE denied (i int)');
RESET spock.deny_all_ddl;
-- A role's DDL runs as that role everywhere.
CREATE ROLE ddl_replication_user;
GRANT CREATE ON SCHEMA public TO ddl_replication_user;
SET ROLE ddl_replication_user;
CREATE TABLE owned (id int PRIMARY KEY);
RESET ROLE;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT to_regclass('k_v') IS NULL AS no_concurrent_index, to_regclass('tt') IS NULL AS no_temp_table;
SELECT * FROM t6 ORDER BY id;
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'k2', 't6', 'owned') ORDER BY 1, 2;
SELECT tableowner FROM pg_tables WHERE tablename = 'owned';
SELECT relname, set_name FROM spock.tables
 WHERE relname IN ('parted', 'parted_1', 's1t', 'ctas', 'fn_t2') ORDER BY 1, 2;
SELECT to_regclass('unlogged_t') IS NOT NULL AS unlogged_created,
       (SELECT count(*) FROM spock.replication_set_table WHERE set_reloid = to_regclass('unlogged_t')) AS unlogged_in_sets,
       to_regclass('fn_t1') IS NULL AS no_fn_t1, to_regclass('denied') IS NULL AS no_denied,
       (SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto') AS pgcrypto;
-- 7. What n2's apply worker executed was stored, not queued again: n2
-- holds exactly n1's rows.
SELECT count(*) AS n2_queue_rows, count(*) FILTER (WHERE message_type = 'D') AS automatic FROM spock.queue;
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT relname, set_name FROM spock.tables WHERE relname IN ('k', 'k2', 't6', 'owned') ORDER BY 1, 2;
SELECT spock.sync_event() AS lsn3 \gset
\c :n2
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
SELECT count(*) AS n1_queue_rows FROM spock.queue;

-- A statement that fails on a subscriber is an apply error: handled by
-- exception handling (transdiscard), logged with its text and role.
\c :n2
CREATE TABLE clash (id int);
\c :n1
SET spock.enable_ddl_replication = on;
CREATE TABLE clash (id int PRIMARY KEY);
CREATE TABLE after_clash (id int PRIMARY KEY);
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 120);
SELECT operation, ddl_statement, ddl_user = current_user AS by_same_role,
       error_message LIKE '%already exists (in replicated DDL: %CREATE TABLE clash%' AS names_statement
  FROM spock.exception_log ORDER BY command_counter;
SELECT to_regclass('after_clash') IS NOT NULL AS replication_goes_on;

-- 8. With automatic DDL off, a member table cannot be dropped without
-- CASCADE; with CASCADE it goes, and its memberships with it.
\c :n1
RESET spock.enable_ddl_replication;
CREATE TABLE a (id int PRIMARY KEY);
SELECT spock.repset_add_table('default', 'a');
SELECT 'a'::regclass::oid AS a_oid \gset
SELECT try('DROP TABLE a');
DROP TABLE a CASCADE;
SELECT count(*) AS a_in_tables FROM spock.tables WHERE relname = 'a';
SELECT count(*) AS a_memberships FROM spock.replication_set_table WHERE set_reloid = :a_oid;
-- With automatic DDL on, the drop is allowed and replicated.
SET spock.enable_ddl_replication = on;
DROP TABLE k2;
SELECT spock.sync_event() AS lsn \gset
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT to_regclass('k2') IS NULL AS k2_dropped, count(*) AS k2_in_sets FROM spock.tables WHERE relname = 'k2';
-- Automatic DDL is a session setting; replicate_ddl needs a superuser.
\c :n1
CREATE ROLE ddl_replication_plain;
SET ROLE ddl_replication_plain;
SELECT try($$SELECT spock.replicate_ddl('CREATE TABLE p (i int)')$$);
RESET ROLE;
