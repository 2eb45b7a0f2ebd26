-- cluster: nodes=2
-- Apply delay (behaviour.md §18): a transaction committed on n1 is applied
-- on n2 no earlier than its commit timestamp plus the subscription's
-- apply_delay; sub_alter_options changes the delay; negative delays are
-- refused.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
-- arrived: filled by the subscriber when the row is applied.
CREATE TABLE t (id int PRIMARY KEY, v text, arrived timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT try($$SELECT spock.sub_create('bad', 'dbname=x', apply_delay := '-1 second')$$);
SELECT spock.sub_create('sub_n2_n1', :'n1', apply_delay := '3 seconds') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
SELECT sub_apply_delay FROM spock.subscription;

\c :n1
INSERT INTO t VALUES (1, 'delayed');
SELECT pg_xact_commit_timestamp(xmin) AS committed FROM t WHERE id = 1 \gset
SELECT spock.sync_event() AS lsn \gset
\c :n2
-- Not there yet, a moment after the commit.
SELECT count(*) AS arrived_early FROM t;
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT id, v, arrived - :'committed'::timestamptz >= interval '3 seconds' AS waited_the_delay
  FROM t ORDER BY id;

-- Back to no delay: the worker restarts and applies at once again.
SELECT try($$SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_delay": "-1 minute"}')$$);
SELECT spock.sub_alter_options('sub_n2_n1', '{"apply_delay": "0"}') AS changed;
SELECT sub_apply_delay FROM spock.subscription;
\c :n1
INSERT INTO t VALUES (2, 'immediate');
SELECT pg_xact_commit_timestamp(xmin) AS committed FROM t WHERE id = 2 \gset
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT id, v FROM t ORDER BY id;
