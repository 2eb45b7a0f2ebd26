-- cluster: nodes=2
-- A remote transaction that fails to apply (its second table is missing on
-- the subscriber) is handled as spock.exception_behaviour says
-- (behaviour.md §8, acceptance 1-3): transdiscard applies none of it and
-- goes on, discard applies what it can, sub_disable disables the
-- subscription until the cause is fixed or the transaction is skipped.
-- Every handled operation is in spock.exception_log.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE TABLE t2 (id int PRIMARY KEY, v text);
CREATE TABLE t3 (id int PRIMARY KEY, v text);
CREATE TABLE t4 (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', t) FROM unnest(ARRAY['t1', 't2', 't3', 't4']) t;
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE TABLE t3 (id int PRIMARY KEY, v text);
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
SHOW spock.exception_behaviour;
-- transdiscard (the default): none of T's rows, three log rows, and the
-- next transaction is applied.
\c :n1
BEGIN;
INSERT INTO t1 VALUES (1, 'a');
INSERT INTO t2 VALUES (1, 'b');
INSERT INTO t3 VALUES (1, 'c');
COMMIT;
INSERT INTO t1 VALUES (2, 'after');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t1 ORDER BY id;
SELECT * FROM t3 ORDER BY id;
SELECT command_counter, table_schema, table_name, operation, remote_new_tup, error_message
  FROM spock.exception_log ORDER BY command_counter;
SELECT count(DISTINCT remote_xid) = 1 AS one_transaction,
       bool_and(remote_origin = (SELECT node_id FROM spock.node WHERE node_name = 'n1')) AS from_n1
  FROM spock.exception_log;
SELECT subscription_name, status FROM spock.sub_show_status();
TRUNCATE spock.exception_log;
-- discard: the rows that can be applied are, the failing one is logged.
ALTER SYSTEM SET spock.exception_behaviour = discard;
SELECT pg_reload_conf();
\c :n2
SHOW spock.exception_behaviour;
\c :n1
BEGIN;
INSERT INTO t1 VALUES (10, 'a');
INSERT INTO t2 VALUES (10, 'b');
INSERT INTO t3 VALUES (10, 'c');
COMMIT;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t1 WHERE id >= 10 ORDER BY id;
SELECT * FROM t3 WHERE id >= 10 ORDER BY id;
SELECT command_counter, table_name, operation, error_message FROM spock.exception_log ORDER BY command_counter;
TRUNCATE spock.exception_log;
-- sub_disable: nothing applied, the subscription disabled with the error
-- and the LSN to skip; creating the missing table and enabling applies T.
ALTER SYSTEM SET spock.exception_behaviour = sub_disable;
SELECT pg_reload_conf();
\c :n2
SHOW spock.exception_behaviour;
\c :n1
BEGIN;
INSERT INTO t1 VALUES (20, 'a');
INSERT INTO t2 VALUES (20, 'b');
INSERT INTO t3 VALUES (20, 'c');
COMMIT;
\c :n2
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT status FROM spock.sub_show_status('sub_n2_n1')) = 'disabled';
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT subscription_name, status, last_error LIKE '[42P01]%' AS shows_error FROM spock.sub_show_status();
SELECT count(*) AS t1_rows_20 FROM t1 WHERE id = 20;
SELECT command_counter, table_name, operation,
       regexp_replace(error_message, 'skip_lsn = [0-9A-F]+/[0-9A-F]+', 'skip_lsn = X/Y') AS error_message
  FROM spock.exception_log ORDER BY command_counter;
CREATE TABLE t2 (id int PRIMARY KEY, v text);
SELECT spock.sub_enable('sub_n2_n1');
\c :n1
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT (SELECT v FROM t1 WHERE id = 20) AS t1, (SELECT v FROM t2 WHERE id = 20) AS t2,
       (SELECT v FROM t3 WHERE id = 20) AS t3;
TRUNCATE spock.exception_log;
-- sub_disable again, then skip the failing transaction by its commit LSN:
-- it is not applied, later ones are, and the skip is cleared.
\c :n1
BEGIN;
INSERT INTO t1 VALUES (30, 'a');
INSERT INTO t4 VALUES (30, 'b');
COMMIT;
\c :n2
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT status FROM spock.sub_show_status('sub_n2_n1')) = 'disabled';
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT status FROM spock.sub_show_status();
SELECT substring(error_message FROM 'skip_lsn = (.*)$') AS skip FROM spock.exception_log
 WHERE operation = 'SUB_DISABLE' \gset
SELECT spock.sub_alter_skiplsn('sub_n2_n1', :'skip');
SELECT sub_skip_lsn = :'skip' AS armed FROM spock.subscription;
SELECT spock.sub_enable('sub_n2_n1');
\c :n1
INSERT INTO t1 VALUES (31, 'after the skip');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t1 WHERE id >= 30 ORDER BY id;
SELECT sub_skip_lsn, sub_enabled FROM spock.subscription;
SELECT subscription_name, status FROM spock.sub_show_status();
ALTER SYSTEM RESET spock.exception_behaviour;
SELECT pg_reload_conf();
