-- cluster: nodes=2
-- The node and replication-set API: results, catalog rows, and the errors
-- the specification lists. A failed call changes no catalog row.
\c :n1
CREATE EXTENSION spock;
-- try(sql) runs a statement and shows "ok" or "SQLSTATE: message" (with the
-- session's temporary schema name made stable).
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'pg_temp_\d+', 'pg_temp');
END $$;
-- Not a node yet: functions that need one say so.
SELECT try($$SELECT spock.repset_create('s')$$);
SELECT try($$SELECT * FROM spock.node_info()$$);
-- Bad arguments to node_create.
SELECT try($$SELECT spock.node_create(NULL, 'dbname=x')$$);
SELECT try($$SELECT spock.node_create('n1', NULL)$$);
SELECT try($$SELECT spock.node_create('', 'dbname=x')$$);
SELECT try($$SELECT spock.node_create('n1', 'dbname=x nosuchkeyword=1')$$);
SELECT try($$SELECT spock.node_create('n1', 'dbname=x', info := '[1, 2]')$$);
SELECT try($$SELECT spock.node_create('n1', 'dbname=x', info := '{"tiebreaker": "high"}')$$);
SELECT count(*) AS nodes_after_errors FROM spock.node;
-- A node, with its built-in sets.
SELECT spock.node_create('n1', :'n1', location := 'here', info := '{"tiebreaker": 7}') AS n1_id \gset
SELECT node_id = :n1_id AS returns_node_id, node_name, location, info FROM spock.node;
SELECT set_name, replicate_insert, replicate_update, replicate_delete, replicate_truncate
  FROM spock.replication_set ORDER BY set_name;
SELECT node_name, dbname = current_database() AS this_db, replication_sets, location
  FROM spock.node_info();
SELECT try($$SELECT spock.node_create('n1b', 'dbname=x')$$);
-- Interfaces.
SELECT spock.node_add_interface('n1', 'n1_alt', 'host=localhost dbname=x') > 0 AS added;
SELECT try($$SELECT spock.node_add_interface('n1', 'n1_alt', 'dbname=y')$$);
SELECT try($$SELECT spock.node_add_interface('nosuch', 'i', 'dbname=y')$$);
SELECT try($$SELECT spock.node_add_interface('n1', 'i2', 'dbname=y nosuchkeyword=1')$$);
SELECT try($$SELECT spock.node_drop_interface('n1', 'n1')$$);
SELECT spock.node_drop_interface('n1', 'n1_alt') AS dropped;
SELECT try($$SELECT spock.node_drop_interface('n1', 'n1_alt')$$);
SELECT if_name FROM spock.node_interface ORDER BY if_name;
-- Replication sets.
SELECT spock.repset_create('s1', replicate_delete := false) > 0 AS created;
SELECT try($$SELECT spock.repset_create('s1')$$);
SELECT try($$SELECT spock.repset_create('')$$);
SELECT spock.repset_alter('s1', replicate_truncate := false) > 0 AS altered;
SELECT try($$SELECT spock.repset_alter(NULL)$$);
SELECT try($$SELECT spock.repset_alter('nosuch', replicate_insert := false)$$);
SELECT set_name, replicate_insert, replicate_update, replicate_delete, replicate_truncate
  FROM spock.replication_set WHERE set_name = 's1';
CREATE TABLE t_pk (id int PRIMARY KEY, v text);
CREATE TABLE t_nopk (id int, v text);
CREATE TEMP TABLE t_temp (id int PRIMARY KEY);
CREATE UNLOGGED TABLE t_unlogged (id int PRIMARY KEY);
CREATE VIEW v_pk AS SELECT * FROM t_pk;
SELECT spock.repset_add_table('default', 't_pk') AS added;
SELECT try($$SELECT spock.repset_add_table('default', 't_pk')$$);
SELECT try($$SELECT spock.repset_add_table('default', 't_nopk')$$);
SELECT try($$SELECT spock.repset_add_table('default', 't_temp')$$);
SELECT try($$SELECT spock.repset_add_table('default', 't_unlogged')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'v_pk')$$);
SELECT try($$SELECT spock.repset_add_table('nosuch', 't_pk')$$);
-- An insert-only set takes a table without a primary key.
SELECT spock.repset_add_table('default_insert_only', 't_nopk') AS added;
SELECT try($$SELECT spock.repset_alter('default_insert_only', replicate_update := true)$$);
SELECT set_name, relname FROM spock.tables ORDER BY set_name, relname;
-- Whole schemas: tables that do not qualify are skipped with a warning.
CREATE SCHEMA app;
CREATE TABLE app.a (id int PRIMARY KEY);
CREATE TABLE app.b (id int PRIMARY KEY);
CREATE TABLE app.c (x int);
SELECT spock.repset_add_all_tables('s1', '{app}') AS added;
SELECT try($$SELECT spock.repset_add_all_tables('s1', '{nosuchschema}')$$);
SELECT set_name, nspname, relname FROM spock.tables WHERE set_name = 's1' ORDER BY relname;
SELECT spock.repset_remove_table('s1', 'app.b') AS removed;
SELECT try($$SELECT spock.repset_remove_table('s1', 'app.b')$$);
SELECT relname FROM spock.tables WHERE set_name = 's1' ORDER BY relname;
SELECT spock.repset_drop('s1') AS dropped;
SELECT spock.repset_drop('s1', ifexists := true) AS dropped_again;
SELECT try($$SELECT spock.repset_drop('s1')$$);
SELECT count(*) AS memberships_left FROM spock.replication_set_table;
-- Subscriptions: argument errors are raised before anything is recorded.
SELECT try($$SELECT spock.sub_create('Bad-Name', 'dbname=x')$$);
SELECT try($$SELECT spock.sub_create('sub_self', (SELECT if_dsn FROM spock.node_interface WHERE if_name = 'n1'))$$);
SELECT try($$SELECT spock.sub_create('sub_x', 'host=/nonexistent port=1 dbname=x password=secret')$$);
SELECT try($$SELECT spock.sub_create('sub_x', 'dbname=x', skip_schema := '{""}')$$);
SELECT try($$SELECT spock.sub_create('sub_x', 'dbname=x', forward_origins := '{some}')$$);
SELECT try($$SELECT spock.sub_drop('nosuch')$$);
SELECT spock.sub_drop('nosuch', ifexists := true) AS dropped;
SELECT try($$SELECT spock.sub_enable('nosuch')$$);
SELECT count(*) AS subscriptions FROM spock.subscription;
\c :n2
CREATE EXTENSION spock;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
-- A set the provider does not have, and a provider that is not a node.
SELECT try(format('SELECT spock.sub_create(%L, %L, replication_sets := %L)', 'sub_n2_n1', :'n1', '{default,nosuch}'));
SELECT try(format('SELECT spock.sub_create(%L, %L)', 'sub_n2_pg', replace(:'n2', 'dbname=node_repset_api ', 'dbname=postgres ')));
SELECT count(*) AS subscriptions, (SELECT count(*) FROM spock.node) AS nodes FROM spock.subscription;
-- Dropping nodes: the local node goes last.
SELECT try($$SELECT spock.node_drop('nosuch')$$);
SELECT spock.node_drop('nosuch', ifexists := true) AS dropped;
SELECT spock.node_drop('n2') AS dropped;
SELECT count(*) AS nodes, (SELECT count(*) FROM spock.replication_set) AS sets FROM spock.node;
\c :n1
SELECT spock.node_drop('n1') AS dropped;
SELECT count(*) AS nodes, (SELECT count(*) FROM spock.replication_set) AS sets,
       (SELECT count(*) FROM spock.node_interface) AS interfaces FROM spock.node;
