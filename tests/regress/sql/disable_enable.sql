-- cluster: nodes=2
-- sub_disable stops the apply worker and keeps the slot; changes made while
-- the subscription is disabled arrive after sub_enable, exactly once.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
INSERT INTO t VALUES (1, 'before disable');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
-- immediate = true is refused inside a transaction block.
BEGIN;
SELECT try($$SELECT spock.sub_disable('sub_n2_n1', immediate := true)$$);
ROLLBACK;
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
SELECT subscription_name, status FROM spock.sub_show_status();
SELECT count(*) AS apply_workers FROM pg_stat_activity WHERE backend_type = 'spock apply';
\c :n1
-- The slot stays while the subscription is disabled.
SELECT slot_name, active FROM pg_replication_slots;
INSERT INTO t VALUES (2, 'while disabled'), (3, 'while disabled');
UPDATE t SET v = 'updated while disabled' WHERE id = 1;
SELECT spock.sync_event() AS lsn \gset
\c :n2
SELECT * FROM t ORDER BY id;
-- Waiting on a disabled subscription is an error, unless asked to wait.
SELECT try(format('CALL spock.wait_for_sync_event(NULL, %L, %L, 1)', 'n1', :'lsn'));
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 1, wait_if_disabled := true);
SELECT spock.sub_enable('sub_n2_n1');
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
SELECT subscription_name, status FROM spock.sub_show_status();
-- A plain disable (not immediate) takes effect after commit too.
SELECT spock.sub_disable('sub_n2_n1');
SELECT subscription_name, status FROM spock.sub_show_status();
SELECT spock.sub_enable('sub_n2_n1');
\c :n1
INSERT INTO t VALUES (4, 'after re-enable');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
