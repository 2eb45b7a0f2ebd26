-- cluster: nodes=3
-- Sequences (behaviour.md §11): values replicate only when pushed
-- (sync_seq, repset_add_seq/repset_add_all_seqs with synchronize_data); a
-- push carries last_value plus the cache margin, and a subscriber only ever
-- moves its sequence forward. For keys written on several nodes, the
-- recommended setup is a sequence per node with its own START and a common
-- INCREMENT, so keys never collide and rows never conflict.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'pg_temp_\d+', 'pg_temp');
END $$;
CREATE SEQUENCE s;
CREATE SEQUENCE s2;
CREATE TABLE t (id int PRIMARY KEY);
-- Per-node sequences (in their own schema: they are never pushed): n1
-- hands out 1, 4, 7, ...
CREATE SCHEMA keys;
CREATE SEQUENCE keys.order_ids START 1 INCREMENT 3;
CREATE TABLE keys.orders (id bigint PRIMARY KEY DEFAULT nextval('keys.order_ids'), node text);
SELECT spock.repset_add_table('default', 'keys.orders');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE SEQUENCE s;
CREATE SEQUENCE s2;
SELECT setval('s2', 5000);
CREATE SCHEMA keys;
CREATE SEQUENCE keys.order_ids START 2 INCREMENT 3;
CREATE TABLE keys.orders (id bigint PRIMARY KEY DEFAULT nextval('keys.order_ids'), node text);
SELECT spock.repset_add_table('default', 'keys.orders');
\c :n3
CREATE EXTENSION spock;
SELECT spock.node_create('n3', :'n3') > 0 AS created;
CREATE SEQUENCE s;
CREATE SEQUENCE s2;
CREATE SCHEMA keys;
CREATE SEQUENCE keys.order_ids START 3 INCREMENT 3;
CREATE TABLE keys.orders (id bigint PRIMARY KEY DEFAULT nextval('keys.order_ids'), node text);
SELECT spock.repset_add_table('default', 'keys.orders');
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

-- 3. A sequence in no set cannot be pushed; the other errors of the API.
\c :n1
SELECT try($$SELECT spock.sync_seq('s')$$);
SELECT spock.repset_add_seq('default', 's');
SELECT try($$SELECT spock.repset_add_seq('default', 's')$$);
SELECT try($$SELECT spock.repset_add_seq('default', 't')$$);
CREATE TEMP SEQUENCE ts;
SELECT try($$SELECT spock.repset_add_seq('default', 'ts')$$);
SELECT try($$SELECT spock.repset_add_seq('nosuchset', 's')$$);
SELECT try($$SELECT spock.repset_add_all_seqs('default', '{nosuchschema}')$$);
SELECT try($$SELECT spock.repset_remove_seq('default', 's2')$$);
-- 1. 50 values used on n1, then a push: subscribers get 50 + 1000.
SELECT count(nextval('s')) AS used FROM generate_series(1, 50);
SELECT spock.sync_seq('s');
-- 2. s2 joins with its value (1 + 1000): n2, already at 5000, keeps 5000.
SELECT spock.repset_add_all_seqs('default', '{public}', synchronize_data := true);
SELECT c.relname, s.cache_size, s.last_value
  FROM spock.sequence_state s JOIN pg_class c ON c.oid = s.seqoid ORDER BY 1;
SELECT c.relname, r.set_name FROM spock.replication_set_seq q
  JOIN spock.replication_set r USING (set_id) JOIN pg_class c ON c.oid = q.set_seqoid ORDER BY 1;
-- A rolled-back push sends nothing.
BEGIN;
SELECT setval('s', 90000);
SELECT spock.sync_seq('s');
ROLLBACK;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT last_value AS s_on_n2 FROM s;
SELECT last_value AS s2_on_n2 FROM s2;
SELECT count(*) FILTER (WHERE message_type = 'S') AS pushes_received FROM spock.queue;
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT last_value AS s_on_n3 FROM s;
SELECT last_value AS s2_on_n3 FROM s2;
-- Removing it stops nothing already sent; dropping it removes its rows.
\c :n1
SELECT spock.repset_remove_seq('default', 's');
DROP SEQUENCE s2;
SELECT count(*) AS seq_memberships FROM spock.replication_set_seq;
SELECT count(*) AS seq_states FROM spock.sequence_state;

-- Per-node sequences: every node inserts at once, no key collides, every
-- node ends with every row, and nothing failed to apply.
INSERT INTO keys.orders (node) SELECT 'n1' FROM generate_series(1, 5);
SELECT spock.sync_event() AS lsn1 \gset
\c :n2
INSERT INTO keys.orders (node) SELECT 'n2' FROM generate_series(1, 5);
SELECT spock.sync_event() AS lsn2 \gset
\c :n3
INSERT INTO keys.orders (node) SELECT 'n3' FROM generate_series(1, 5);
SELECT spock.sync_event() AS lsn3 \gset
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
SELECT node, string_agg(id::text, ',' ORDER BY id) AS ids FROM keys.orders GROUP BY node ORDER BY node;
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
SELECT count(*) AS rows_on_n1, count(DISTINCT id) AS distinct_ids FROM keys.orders;
SELECT count(*) AS exceptions FROM spock.exception_log;
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
SELECT count(*) AS rows_on_n2, count(DISTINCT id) AS distinct_ids FROM keys.orders;
