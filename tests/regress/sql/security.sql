-- cluster: nodes=2
-- What roles without superuser may and may not do with the extension, and
-- replication set names that need quoting on their way to the provider.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE ROLE spock_alice LOGIN;
CREATE ROLE spock_replicator LOGIN REPLICATION;
SET ROLE spock_alice;
-- Public functions work; management functions, catalogs and the setting
-- that may hold credentials are for superusers; node_info needs REPLICATION.
SELECT spock.spock_version() = (SELECT extversion FROM pg_extension WHERE extname = 'spock') AS public_version;
SELECT count(*) > 0 AS core_patches_visible FROM spock.core_patches;
SELECT spock.sub_create('sub_x', 'host=nowhere.invalid');
SELECT spock.node_create('other', 'host=nowhere.invalid');
SELECT count(*) FROM spock.node_interface;
SHOW spock.extra_connection_options;
SELECT node_name FROM spock.node_info();
SET ROLE spock_replicator;
-- A provider's replication role can describe the node, with every set name quoted.
SELECT node_name, replication_sets FROM spock.node_info();
SELECT spock.spock_max_proto_version() >= spock.spock_min_proto_version() AS protocol_versions;
RESET ROLE;
DROP ROLE spock_alice;
DROP ROLE spock_replicator;
-- Set names with a comma and with quotes travel intact.
SELECT spock.repset_create('a,b') > 0 AS created;
SELECT spock.repset_create('say "hi"') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT spock.repset_add_table('a,b', 't');
SELECT spock.repset_add_table('say "hi"', 'u');
SELECT replication_sets FROM spock.node_info();
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, v text);
SELECT spock.sub_create('sub_n2_n1', :'n1', replication_sets := ARRAY['a,b', 'say "hi"']) > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
SELECT replication_sets FROM spock.sub_show_status();
\c :n1
INSERT INTO t VALUES (1, 'in a,b');
INSERT INTO u VALUES (1, 'in say "hi"');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM t;
SELECT * FROM u;
SELECT spock.sub_drop('sub_n2_n1');
