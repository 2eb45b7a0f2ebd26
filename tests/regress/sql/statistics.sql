-- cluster: nodes=2
-- Statistics (sql-api.md §4.8): channel counters of the rows each
-- subscription applied and each walsender sent, per table; conflict
-- counters per subscription, which survive a clean restart; resets.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('default', 't');
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n1_n2');

-- Three inserts, an update and a delete on n1.
INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
UPDATE t SET v = 'b!' WHERE id = 2;
DELETE FROM t WHERE id = 3;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT sub_name, table_name, n_tup_ins, n_tup_upd, n_tup_del, n_conflict, n_dca
  FROM spock.channel_table_stats ORDER BY sub_name;
\c :n1
-- What n1's walsender sent.
SELECT sub_name, table_name, n_tup_ins, n_tup_upd, n_tup_del FROM spock.channel_table_stats ORDER BY sub_name;

-- An insert_exists conflict on each node: both write key 10 while
-- disconnected, n2 later; n2 keeps its row, n1 takes it.
\c :n2
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
\c :n1
SELECT spock.sub_disable('sub_n1_n2', immediate := true);
INSERT INTO t VALUES (10, 'n1');
\c :n2
INSERT INTO t VALUES (10, 'n2');
SELECT spock.sub_enable('sub_n2_n1');
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
SELECT spock.sub_enable('sub_n1_n2');
SELECT spock.sync_event() AS lsn1 \gset
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
SELECT * FROM t WHERE id = 10;
SELECT confl_insert_exists, confl_update_origin_differs, confl_update_exists, confl_update_missing,
       confl_delete_origin_differs, confl_delete_missing, confl_delete_exists, stats_reset IS NULL AS never_reset
  FROM spock.get_subscription_stats((SELECT sub_id FROM spock.subscription WHERE sub_name = 'sub_n2_n1'));
SELECT sub_name, n_tup_ins, n_conflict FROM spock.channel_summary_stats ORDER BY sub_name;
\c :n1
SELECT confl_insert_exists FROM spock.get_subscription_stats((SELECT sub_id FROM spock.subscription));

-- A clean restart keeps the conflict counters, not the channel counters.
--! restart n2
\c :n2
SELECT confl_insert_exists, stats_reset IS NULL AS never_reset
  FROM spock.get_subscription_stats((SELECT sub_id FROM spock.subscription));
SELECT count(*) AS channel_rows FROM spock.get_channel_stats();

-- Resets, and their errors.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT try($$SELECT * FROM spock.get_subscription_stats(424242)$$);
SELECT try($$SELECT spock.reset_subscription_stats(424242)$$);
SELECT spock.reset_subscription_stats((SELECT sub_id FROM spock.subscription));
SELECT confl_insert_exists, stats_reset IS NOT NULL AS reset
  FROM spock.get_subscription_stats((SELECT sub_id FROM spock.subscription));
\c :n1
INSERT INTO t VALUES (20, 'counted');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT sub_name, n_tup_ins FROM spock.channel_table_stats;
SELECT spock.reset_channel_stats();
SELECT count(*) AS channel_rows FROM spock.get_channel_stats();
CREATE ROLE watcher LOGIN;
SET ROLE watcher;
SELECT try($$SELECT spock.reset_channel_stats()$$);
SELECT try($$SELECT * FROM spock.get_channel_stats()$$);
RESET ROLE;
