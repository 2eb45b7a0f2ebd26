-- cluster: nodes=3
-- A full mesh of three nodes: a row written on any node appears exactly once
-- on every other node and never comes back to its origin as a change. An
-- ALWAYS trigger on each node counts every row change applied there.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
\c :n3
CREATE EXTENSION spock;
SELECT spock.node_create('n3', :'n3') > 0 AS created;
-- The same table, trigger and membership on every node.
\c :n1
CREATE TABLE events (id int PRIMARY KEY, origin text NOT NULL, note text);
CREATE TABLE seen (op text, id int);
CREATE FUNCTION count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO seen VALUES (TG_OP, coalesce(NEW.id, OLD.id)); RETURN NULL; END $$;
CREATE TRIGGER counter AFTER INSERT OR UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION count_change();
ALTER TABLE events ENABLE ALWAYS TRIGGER counter;
SELECT spock.repset_add_table('default', 'events');
\c :n2
CREATE TABLE events (id int PRIMARY KEY, origin text NOT NULL, note text);
CREATE TABLE seen (op text, id int);
CREATE FUNCTION count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO seen VALUES (TG_OP, coalesce(NEW.id, OLD.id)); RETURN NULL; END $$;
CREATE TRIGGER counter AFTER INSERT OR UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION count_change();
ALTER TABLE events ENABLE ALWAYS TRIGGER counter;
SELECT spock.repset_add_table('default', 'events');
\c :n3
CREATE TABLE events (id int PRIMARY KEY, origin text NOT NULL, note text);
CREATE TABLE seen (op text, id int);
CREATE FUNCTION count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO seen VALUES (TG_OP, coalesce(NEW.id, OLD.id)); RETURN NULL; END $$;
CREATE TRIGGER counter AFTER INSERT OR UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION count_change();
ALTER TABLE events ENABLE ALWAYS TRIGGER counter;
SELECT spock.repset_add_table('default', 'events');
-- Six subscriptions: every node subscribes to both others.
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
-- Writes on every node.
\c :n1
INSERT INTO events VALUES (1, 'n1', NULL), (2, 'n1', NULL);
SELECT spock.sync_event() AS lsn1 \gset
\c :n2
INSERT INTO events VALUES (3, 'n2', NULL);
SELECT spock.sync_event() AS lsn2 \gset
\c :n3
INSERT INTO events VALUES (4, 'n3', NULL);
UPDATE events SET note = 'seen on n3' WHERE id = 4;
SELECT spock.sync_event() AS lsn3 \gset
-- Wait until every node has everything from every other node.
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
\c :n3
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
-- A second round of sync events proves the streams went past anything that
-- could have looped back.
\c :n1
SELECT spock.sync_event() AS lsn1 \gset
\c :n2
SELECT spock.sync_event() AS lsn2 \gset
\c :n3
SELECT spock.sync_event() AS lsn3 \gset
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
\c :n1
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
CALL spock.wait_for_sync_event(NULL, 'n3', :'lsn3', 60);
-- Each node: the same rows, and each change applied exactly once.
SELECT * FROM events ORDER BY id;
SELECT op, id, count(*) FROM seen GROUP BY op, id ORDER BY id, op;
\c :n2
SELECT * FROM events ORDER BY id;
SELECT op, id, count(*) FROM seen GROUP BY op, id ORDER BY id, op;
\c :n3
SELECT * FROM events ORDER BY id;
SELECT op, id, count(*) FROM seen GROUP BY op, id ORDER BY id, op;
-- Each row's origin on n3: local for its own, the writer's node id otherwise.
SELECT e.id, coalesce(n.node_name, 'local') AS origin
  FROM events e LEFT JOIN spock.node n ON n.node_id = (spock.xact_commit_timestamp_origin(e.xmin)).roident
 ORDER BY e.id;
SELECT subscription_name, status FROM spock.sub_show_status();
-- n3's channel statistics: n1's two rows came through the n1 subscription,
-- none through n2's (behaviour.md §5.3, acceptance 1).
SELECT sub_name, table_name, n_tup_ins, n_tup_upd, n_tup_del
  FROM spock.channel_table_stats WHERE table_name = 'public.events' ORDER BY sub_name;
