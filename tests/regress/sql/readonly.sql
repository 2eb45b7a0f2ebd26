-- cluster: nodes=2
-- Read-only mode (behaviour.md §14): `local` makes non-superuser sessions
-- read-only while apply goes on; `all` also stops applying until the mode
-- is relaxed, then everything arrives; the node's own changes keep flowing
-- out; resyncs are refused; terminate_active_transactions ends transactions
-- that started before the mode was set.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
CREATE EXTENSION dblink;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
CREATE ROLE app LOGIN;
GRANT SELECT, INSERT ON t TO app;
CREATE SEQUENCE app_seq;
GRANT USAGE ON SEQUENCE app_seq TO app;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION try(text) TO app;
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n1_n2');

-- local: non-superuser sessions are read-only, superusers are not, and rows
-- from n1 keep arriving.
\c :n2
ALTER SYSTEM SET spock.readonly = 'local';
SELECT pg_reload_conf();
SELECT pg_sleep(1);
\c :n2
SHOW spock.readonly;
SET ROLE app;
SELECT try($$INSERT INTO t VALUES (100, 'app on n2')$$);
SELECT try($$SELECT nextval('app_seq')$$);
SELECT count(*) AS readable FROM t;
-- Switching the transaction back to read-write does not help.
BEGIN;
SET TRANSACTION READ WRITE;
SELECT try($$INSERT INTO t VALUES (101, 'app on n2')$$);
COMMIT;
RESET ROLE;
INSERT INTO t VALUES (1, 'superuser on n2');
SELECT try($$SELECT spock.sub_resync_table('sub_n2_n1', 't')$$);
\c :n1
INSERT INTO t VALUES (2, 'n1 while n2 is local');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;

-- terminate_active_transactions ends a transaction opened before.
SELECT dblink_connect('other', :'n2');
SELECT dblink_exec('other', 'BEGIN');
SELECT spock.terminate_active_transactions();
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) = 0 FROM pg_stat_activity
                    WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid());
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS other_open_transactions FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_backend_pid();
SELECT dblink_disconnect('other');

-- all: apply stops; n2's own writes still reach n1.
ALTER SYSTEM SET spock.readonly = 'all';
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'spock apply');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS apply_workers FROM pg_stat_activity WHERE backend_type = 'spock apply';
INSERT INTO t VALUES (3, 'superuser on n2 in all');
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
INSERT INTO t VALUES (4, 'n1 while n2 is all');
UPDATE t SET v = 'n1 updated while n2 is all' WHERE id = 2;
SELECT spock.sync_event() AS lsn \gset
\c :n2
SELECT pg_sleep(2);
SELECT * FROM t ORDER BY id;
-- off: apply resumes where it stopped, nothing lost.
ALTER SYSTEM RESET spock.readonly;
SELECT pg_reload_conf();
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
\c :n1
SELECT * FROM t ORDER BY id;
