-- cluster: nodes=2
-- sub_drop stops the worker, drops the provider's slot and the local
-- replication origin, and removes the subscription's catalog rows.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY);
SELECT spock.repset_add_table('default', 't');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY);
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
-- sub_drop drops the replication origin and the provider's slot only when
-- its transaction commits: a rollback of the transaction, of the statement
-- that called it, or of a savepoint leaves the subscription whole.
BEGIN;
SELECT spock.sub_drop('sub_n2_n1');
ROLLBACK;
DO $$ BEGIN PERFORM spock.sub_drop('sub_n2_n1'); RAISE EXCEPTION 'changed my mind'; END $$;
BEGIN;
SAVEPOINT before_drop;
SELECT spock.sub_drop('sub_n2_n1');
ROLLBACK TO SAVEPOINT before_drop;
COMMIT;
SELECT sub_name FROM spock.subscription;
\c :n1
INSERT INTO t VALUES (1);
SELECT spock.sync_event() AS lsn \gset
SELECT count(*) AS provider_slots FROM pg_replication_slots WHERE slot_name LIKE 'spk\_%';
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT subscription_name, status FROM spock.sub_show_status();
SELECT sub_slot_name AS slot FROM spock.subscription \gset
SELECT count(*) AS origins FROM pg_replication_origin WHERE roname = :'slot';
SELECT spock.sub_drop('sub_n2_n1');
SELECT count(*) AS origins FROM pg_replication_origin WHERE roname = :'slot';
SELECT (SELECT count(*) FROM spock.subscription) AS subscriptions,
       (SELECT count(*) FROM spock.local_sync_status) AS sync_rows,
       (SELECT count(*) FROM spock.node) AS nodes;
SELECT count(*) AS apply_workers FROM pg_stat_activity WHERE backend_type = 'spock apply';
\c :n1
SELECT count(*) AS provider_slots FROM pg_replication_slots WHERE slot_name LIKE 'spk\_%';
-- Changes after the drop stay on the provider: the new subscription below
-- starts from its creation, so row 2 never arrives.
INSERT INTO t VALUES (2);
\c :n2
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed_again;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
INSERT INTO t VALUES (3);
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t ORDER BY id;
-- node_drop drops the node's slots only when its transaction commits too
-- (here n1, whose slot for n2 is idle while n2's subscription is disabled).
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
\c :n1
BEGIN;
SELECT spock.node_drop('n1');
ROLLBACK;
SELECT count(*) AS provider_slots FROM pg_replication_slots WHERE slot_name LIKE 'spk\_%';
SELECT count(*) AS local_nodes FROM spock.local_node;
\c :n2
-- Inside a transaction block that commits, the drop happens at the commit.
BEGIN;
SELECT spock.sub_drop('sub_n2_n1');
COMMIT;
\c :n1
SELECT count(*) AS provider_slots FROM pg_replication_slots WHERE slot_name LIKE 'spk\_%';
