-- cluster: nodes=2
-- Bidirectional replication between two nodes: changes made on either node
-- reach the other, and nothing is sent back to where it came from.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS n1_created;
CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL);
SELECT spock.repset_add_table('default', 'kv');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS n2_created;
CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL);
SELECT spock.repset_add_table('default', 'kv');
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n1_n2');
INSERT INTO kv VALUES ('a', 1), ('b', 2);
SELECT spock.sync_event() AS lsn1 \gset
\c :n2
INSERT INTO kv VALUES ('c', 3);
UPDATE kv SET v = 30 WHERE k = 'c';
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
UPDATE kv SET v = 20 WHERE k = 'b';
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
SELECT * FROM kv ORDER BY k;
DELETE FROM kv WHERE k = 'a';
SELECT spock.sync_event() AS lsn3 \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn3', 60);
SELECT * FROM kv ORDER BY k;
-- Rows show where each last change was made: 'b' was updated here, 'c' made here.
SELECT k, (spock.xact_commit_timestamp_origin(xmin)).roident = 0 AS changed_locally FROM kv ORDER BY k;
SELECT spock.sync_event() AS lsn4 \gset
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn4', 60);
SELECT k, (spock.xact_commit_timestamp_origin(xmin)).roident = 0 AS changed_locally FROM kv ORDER BY k;
SELECT subscription_name, status, provider_node FROM spock.sub_show_status();
