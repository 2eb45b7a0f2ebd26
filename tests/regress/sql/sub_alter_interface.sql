-- cluster: nodes=2
-- sub_alter_interface points a subscription at another interface of its
-- provider: the worker reconnects through it (here TCP instead of the Unix
-- socket) and carries on from its position, losing and repeating nothing.
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
INSERT INTO t VALUES (1, 'through the socket');
SELECT client_addr IS NULL AS through_the_socket FROM pg_stat_replication WHERE application_name = 'sub_n2_n1';
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
-- Errors: an interface the provider does not have, a subscription that
-- does not exist.
SELECT try($$SELECT spock.sub_alter_interface('sub_n2_n1', 'nowhere')$$);
SELECT try($$SELECT spock.sub_alter_interface('no_such_sub', 'n1')$$);
-- The interface already in use: nothing changes.
SELECT i.if_name AS in_use FROM spock.subscription s JOIN spock.node_interface i ON i.if_id = s.sub_origin_if \gset
SELECT spock.sub_alter_interface('sub_n2_n1', :'in_use') AS changed;
SELECT spock.node_add_interface('n1', 'n1_tcp', regexp_replace(:'n1', 'host=\S+', 'host=127.0.0.1')) > 0 AS added;
\c :n1
INSERT INTO t VALUES (2, 'before the switch');
\c :n2
SELECT spock.sub_alter_interface('sub_n2_n1', 'n1_tcp') AS changed;
SELECT i.if_name FROM spock.subscription s JOIN spock.node_interface i ON i.if_id = s.sub_origin_if;
-- An interface in use cannot be dropped.
SELECT try($$SELECT spock.node_drop_interface('n1', 'n1_tcp')$$) LIKE '55000%' AS refused;
\c :n1
INSERT INTO t VALUES (3, 'during the switch');
UPDATE t SET v = 'updated during the switch' WHERE id = 1;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
SELECT subscription_name, status FROM spock.sub_show_status();
\c :n1
-- The walsender now serves a TCP connection.
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) = 1 AND bool_and(client_addr = '127.0.0.1')
                     FROM pg_stat_replication WHERE application_name = 'sub_n2_n1');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT host(client_addr) AS walsender_client FROM pg_stat_replication WHERE application_name = 'sub_n2_n1';

-- sub_alter_options changes several options at once (sql-api.md §4.7).
\c :n2
SELECT spock.sub_alter_options('sub_n2_n1', '{}') AS changed;
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '[1]')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_dalay": "1s"}')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_delay": 5}')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_delay": "soon"}')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"skip_schema": ["audit", 1]}')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_delay": "-5 minutes"}')$$);
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"forward_origins": ["all"]}')$$);
SELECT try($$SELECT spock.sub_alter_options('no_such_sub', '{}')$$);
SELECT sub_skip_schema FROM spock.subscription;
SELECT spock.sub_alter_options('sub_n2_n1',
    '{"skip_schema": ["audit"], "apply_delay": "0 seconds", "forward_origins": []}') AS changed;
SELECT sub_skip_schema FROM spock.subscription;
\c :n1
INSERT INTO t VALUES (4, 'after the options changed');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;

-- get_apply_worker_status: this database's worker streams, then is stopped.
SELECT worker_pid > 0 AS has_pid, worker_subid = (SELECT sub_id FROM spock.subscription) AS this_sub,
       worker_status
  FROM spock.get_apply_worker_status()
 WHERE worker_dboid = (SELECT oid FROM pg_database WHERE datname = current_database());
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
SELECT worker_pid, worker_status
  FROM spock.get_apply_worker_status()
 WHERE worker_dboid = (SELECT oid FROM pg_database WHERE datname = current_database());
