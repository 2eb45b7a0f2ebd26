-- cluster: nodes=2
-- Column lists and row filters (behaviour.md §15): a row filter decides on
-- the provider which changes (and which rows of the initial copy) a
-- subscriber gets; a column list sends only its columns, the subscriber's
-- others behave as extra columns. Bad filters and lists are refused with
-- the SQLSTATE the API names, and dropping a column keeps the catalog
-- consistent. Partitions join their parent's sets with
-- repset_add_partition (behaviour.md §16).
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
CREATE FUNCTION my_check(int) RETURNS boolean IMMUTABLE LANGUAGE sql AS 'SELECT $1 > 0';
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('ok', 'not ok');
CREATE TABLE f (id int PRIMARY KEY, v text);
CREATE TABLE c (id int PRIMARY KEY, a text, b text);
CREATE TABLE other (id int PRIMARY KEY);
CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);

-- Refused filters and lists, each with its SQLSTATE; nothing is added.
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'id >')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'true; DROP TABLE f')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'true FROM other')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'other.id > 1')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'id IN (SELECT id FROM other)')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'id + 1')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'nosuch > 1')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'random() > 0.5')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'my_check(id)')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'count(*) > 1')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'xmin::text <> ''1''')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'v > CURRENT_USER')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'id > 1/0')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'id::posint > 1')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'f', row_filter := 'v::mood = ''ok''')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'c', columns := '{a,b}')$$);
SELECT try($$SELECT spock.repset_add_table('default', 'c', columns := '{id,nosuch}')$$);
SELECT count(*) AS memberships FROM spock.replication_set_table;

-- Accepted: a filter on the key, a list without b, a partitioned table.
SELECT spock.repset_add_table('default', 'f', row_filter := 'id > 100');
SELECT spock.repset_add_table('default', 'c', columns := '{id,a}');
SELECT spock.repset_add_table('default', 'p');
SELECT relname, att_list, has_row_filter FROM spock.repset_show_table('f', '{default}');
SELECT relname, att_list, has_row_filter FROM spock.repset_show_table('c', '{default}');
-- Rows 1-50 and 101-150 exist before the subscriber copies.
INSERT INTO f SELECT g, 'before ' || g FROM generate_series(1, 50) g;
INSERT INTO f SELECT g, 'before ' || g FROM generate_series(101, 150) g;
INSERT INTO c VALUES (1, 'a1', 'b1');
SELECT count(*) AS passing, min(id), max(id)
  FROM spock.table_data_filtered(NULL::f, 'f', '{default}');
SELECT try($$SELECT count(*) FROM spock.table_data_filtered(NULL::c, 'f', '{default}')$$);

\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE f (id int PRIMARY KEY, v text);
CREATE TABLE c (id int PRIMARY KEY, a text, b text);
CREATE TABLE p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
CREATE TABLE p3 PARTITION OF p FOR VALUES FROM (200) TO (300);
SELECT spock.sub_create('sub_n2_n1', :'n1', synchronize_data := true) > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
-- The initial copy applied the filter and the column list.
SELECT count(*) AS copied, min(id), max(id) FROM f;
SELECT * FROM c;

\c :n1
-- Changes: rows 51-100 stay behind, 151-200 travel; an UPDATE or DELETE
-- of a row outside the filter is not sent, inside it is.
INSERT INTO f SELECT g, 'after ' || g FROM generate_series(51, 100) g;
INSERT INTO f SELECT g, 'after ' || g FROM generate_series(151, 200) g;
UPDATE f SET v = 'updated' WHERE id IN (10, 110);
DELETE FROM f WHERE id IN (20, 120);
-- b never travels, on INSERT or UPDATE.
INSERT INTO c VALUES (2, 'a2', 'b2');
UPDATE c SET a = 'a1!', b = 'b1!' WHERE id = 1;
INSERT INTO p VALUES (1, 'p1'), (150, 'p2');
-- A partition created later is not replicated until it joins the sets.
CREATE TABLE p3 PARTITION OF p FOR VALUES FROM (200) TO (300);
INSERT INTO p VALUES (201, 'p3 before');
SELECT spock.repset_add_partition('p', 'p3') AS added;
SELECT spock.repset_add_partition('p') AS added_again;
SELECT spock.repset_add_partition('f') AS not_partitioned;
INSERT INTO p VALUES (202, 'p3 after');
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT count(*) AS rows, count(*) FILTER (WHERE id <= 100) AS at_most_100, min(id), max(id) FROM f;
SELECT * FROM f WHERE id IN (10, 110, 120) ORDER BY id;
SELECT * FROM c ORDER BY id;
SELECT tableoid::regclass AS part, * FROM p ORDER BY id;
SELECT count(*) AS apply_errors FROM spock.exception_log;

\c :n1
-- Dropping a column: it leaves column lists; one a row filter reads cannot
-- go without CASCADE, and with CASCADE the membership goes too.
ALTER TABLE c DROP COLUMN a;
ALTER TABLE c ADD COLUMN a text;
SELECT att_list FROM spock.repset_show_table('c', '{default}');
SELECT try($$ALTER TABLE f DROP COLUMN id$$);
-- Changes that would leave a filter or a list wrong are refused.
SELECT try($$ALTER TABLE f ALTER COLUMN id TYPE bigint$$);
SELECT try($$ALTER TABLE c RENAME COLUMN id TO key$$);
ALTER TABLE f RENAME COLUMN v TO w;
SELECT pg_get_expr(set_row_filter, set_reloid) FROM spock.replication_set_table WHERE set_reloid = 'f'::regclass;
ALTER TABLE f ADD COLUMN k int;
SELECT spock.repset_create('by_k') > 0 AS created;
SELECT spock.repset_add_table('by_k', 'f', row_filter := 'k IS NOT NULL');
SELECT try($$ALTER TABLE f DROP COLUMN k$$);
ALTER TABLE f DROP COLUMN k CASCADE;
SELECT s.set_name, t.set_row_filter IS NOT NULL AS filtered
  FROM spock.replication_set_table t JOIN spock.replication_set s USING (set_id)
 WHERE t.set_reloid = 'f'::regclass ORDER BY 1;
SELECT spock.repset_remove_partition('p', 'p3') AS removed;
