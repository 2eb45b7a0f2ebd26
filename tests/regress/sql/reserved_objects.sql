-- cluster: nodes=2
-- Reserved schemas and extensions (sql-api.md §4.3, §6.15): built-in rows
-- for spock, reserved_object_add/remove and their errors, the guard on
-- built-in rows, tables of reserved objects kept out of replication sets
-- (by hand, by repset_add_all_tables and by automatic membership), and a
-- structure copy that leaves out what the subscriber reserved.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT * FROM spock.reserved_object ORDER BY kind, name;
-- Errors: a kind that is neither schema nor extension, built-in rows, NULLs,
-- and a caller who is not a superuser.
SELECT try($$SELECT spock.reserved_object_add('audit', 'table')$$);
SELECT try($$SELECT spock.reserved_object_add('spock', 'schema', p_block_in_repset := false)$$);
SELECT try($$SELECT spock.reserved_object_remove('spock', 'extension')$$);
SELECT try($$SELECT spock.reserved_object_remove(NULL, 'schema')$$);
SELECT try($$UPDATE spock.reserved_object SET block_in_repset = false WHERE name = 'spock'$$);
SELECT try($$DELETE FROM spock.reserved_object WHERE builtin$$);
SELECT try($$TRUNCATE spock.reserved_object$$);
SET session_replication_role = replica;
SELECT try($$DELETE FROM spock.reserved_object WHERE builtin$$);
RESET session_replication_role;
CREATE ROLE app LOGIN;
GRANT EXECUTE ON FUNCTION try(text) TO app;
SET ROLE app;
SELECT try($$SELECT spock.reserved_object_add('audit', 'schema')$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION try(text) FROM app;
DROP ROLE app;
-- A reserved schema and a reserved extension.
CREATE SCHEMA audit;
CREATE TABLE audit.log (id int PRIMARY KEY, what text);
CREATE EXTENSION hstore;
CREATE TABLE hstore_data (id int PRIMARY KEY, h hstore);
ALTER EXTENSION hstore ADD TABLE hstore_data;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5) g;
SELECT spock.reserved_object_add('audit', 'schema');
SELECT spock.reserved_object_add('hstore', 'extension', p_replicate_ddl := false);
-- Adding again updates the row.
SELECT spock.reserved_object_add('audit', 'schema', p_exclude_from_dump := false, p_replicate_ddl := false);
SELECT * FROM spock.reserved_object WHERE NOT builtin ORDER BY kind, name;
SELECT spock.reserved_object_add('audit', 'schema');
-- Their tables cannot join sets.
SELECT try($$SELECT spock.repset_add_table('default', 'audit.log')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'hstore_data')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'spock.queue')$$);
SELECT spock.repset_add_all_tables('default', '{audit,public}');
SELECT set_name, relname FROM spock.tables WHERE set_name IS NOT NULL ORDER BY 2;
-- Automatic membership leaves a new table of a reserved schema alone.
SET spock.enable_ddl_replication = on;
SET spock.include_ddl_repset = on;
CREATE TABLE audit.more (id int PRIMARY KEY);
CREATE TABLE public.more (id int PRIMARY KEY);
RESET spock.enable_ddl_replication;
RESET spock.include_ddl_repset;
SELECT nspname, relname, set_name FROM spock.tables WHERE relname = 'more' ORDER BY 1;
-- DDL on objects of a schema reserved with replicate_ddl = false stays local.
-- The schema itself counts as in itself; a statement kept local places no
-- table in a set.
SELECT spock.reserved_object_add('scratch', 'schema', p_block_in_repset := false, p_replicate_ddl := false);
SET spock.enable_ddl_replication = on;
SET spock.include_ddl_repset = on;
CREATE SCHEMA scratch;
CREATE TABLE scratch.tmp (id int PRIMARY KEY);
SELECT count(*) AS tmp_in_sets FROM spock.tables WHERE nspname = 'scratch' AND set_name IS NOT NULL;
ALTER TABLE scratch.tmp ADD COLUMN note text;
DROP TABLE scratch.tmp;
CREATE TABLE public.kept (id int PRIMARY KEY);
RESET spock.enable_ddl_replication;
RESET spock.include_ddl_repset;
SELECT message_type, message::text LIKE '%scratch%' AS about_scratch, message::text LIKE '%kept%' AS about_kept
  FROM spock.queue ORDER BY queued_at DESC LIMIT 1;
SELECT count(*) AS queued_about_scratch FROM spock.queue WHERE message::text LIKE '%scratch.tmp%';
-- Once removed, a schema's tables may join again.
SELECT spock.reserved_object_remove('audit', 'schema');
SELECT spock.repset_add_table('default', 'audit.log');
SELECT spock.repset_remove_table('default', 'audit.log');
SELECT spock.reserved_object_add('audit', 'schema');
-- The subscriber reserves the same objects: its structure copy leaves them
-- out, and copies the rest.
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
SELECT spock.reserved_object_add('audit', 'schema');
SELECT spock.reserved_object_add('hstore', 'extension');
SELECT spock.sub_create('sub_n2_n1', :'n1', synchronize_structure := true, synchronize_data := true) > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
SELECT nspname FROM pg_namespace WHERE nspname = 'audit';
SELECT extname FROM pg_extension WHERE extname IN ('hstore', 'spock') ORDER BY 1;
SELECT count(*) AS rows_of_t FROM t;
SELECT relname FROM pg_class WHERE relname IN ('t', 'more', 'hstore_data', 'log') AND relkind = 'r' ORDER BY 1;
SELECT spock.sub_drop('sub_n2_n1');
