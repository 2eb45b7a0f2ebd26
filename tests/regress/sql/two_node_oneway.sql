-- cluster: nodes=2
-- One-way replication n1 -> n2: INSERT, UPDATE and DELETE arrive, applied
-- rows carry the provider's origin and commit time, changes made on the
-- subscriber stay there, and replicated rows fire only ALWAYS/REPLICA triggers.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS n1_created;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int DEFAULT 0);
SELECT spock.repset_add_table('default', 'items');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS n2_created;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int DEFAULT 0);
-- Triggers on the subscriber: an ordinary one (must not fire for replicated
-- rows) and an ALWAYS one (must).
CREATE TABLE trigger_log (trg text, op text, id int);
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trigger_log VALUES (TG_NAME, TG_OP, coalesce(NEW.id, OLD.id));
    RETURN coalesce(NEW, OLD);
END $$;
CREATE TRIGGER ordinary AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION log_row();
CREATE TRIGGER always AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION log_row();
ALTER TABLE items ENABLE ALWAYS TRIGGER always;
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
SELECT subscription_name, status, provider_node, slot_name, replication_sets, forward_origins
  FROM spock.sub_show_status();
\c :n1
-- The provider has the slot, made with our output plugin.
SELECT slot_name, plugin, slot_type FROM pg_replication_slots;
INSERT INTO items (id, name, qty) VALUES (1, 'apple', 5), (2, 'pear', 7), (3, 'plum', 1);
BEGIN;
UPDATE items SET qty = qty + 10 WHERE id = 1;
DELETE FROM items WHERE id = 3;
INSERT INTO items (id, name) VALUES (4, 'fig');
COMMIT;
-- A rolled-back transaction sends nothing.
BEGIN;
INSERT INTO items VALUES (99, 'ghost', 0);
ROLLBACK;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM items ORDER BY id;
-- Every applied row carries the provider's node id as origin.
SELECT count(*) AS rows,
       count(*) FILTER (WHERE (spock.xact_commit_timestamp_origin(items.xmin)).roident = n.node_id) AS from_n1
  FROM items, spock.node n WHERE n.node_name = 'n1';
SELECT trg, op, id FROM trigger_log ORDER BY trg, op, id;
-- A change made on the subscriber is not sent back (one-way).
INSERT INTO items VALUES (50, 'local only', 0);
\c :n1
SELECT count(*) AS provider_rows, bool_and(id <> 50) AS no_local_row_from_n2 FROM items;
