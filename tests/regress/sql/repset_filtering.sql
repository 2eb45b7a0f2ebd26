-- cluster: nodes=2
-- What replication sets let through: a table in no set is not replicated, a
-- set with replicate_delete = false sends no DELETE, an insert-only set sends
-- only INSERT, and a set the subscription does not name sends nothing.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE in_default (id int PRIMARY KEY, v text);
CREATE TABLE in_no_set (id int PRIMARY KEY, v text);
CREATE TABLE no_deletes (id int PRIMARY KEY, v text);
CREATE TABLE inserts_only (id int PRIMARY KEY, v text);
CREATE TABLE in_other_set (id int PRIMARY KEY, v text);
SELECT spock.repset_create('keep_deleted', replicate_delete := false) > 0 AS created;
SELECT spock.repset_create('unsubscribed') > 0 AS created;
SELECT spock.repset_add_table('default', 'in_default'),
       spock.repset_add_table('keep_deleted', 'no_deletes'),
       spock.repset_add_table('default_insert_only', 'inserts_only'),
       spock.repset_add_table('unsubscribed', 'in_other_set');
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE in_default (id int PRIMARY KEY, v text);
CREATE TABLE in_no_set (id int PRIMARY KEY, v text);
CREATE TABLE no_deletes (id int PRIMARY KEY, v text);
CREATE TABLE inserts_only (id int PRIMARY KEY, v text);
CREATE TABLE in_other_set (id int PRIMARY KEY, v text);
SELECT spock.sub_create('sub_n2_n1', :'n1',
       replication_sets := '{default,default_insert_only,keep_deleted}') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
INSERT INTO in_default VALUES (1, 'a'), (2, 'b');
INSERT INTO in_no_set VALUES (1, 'a'), (2, 'b');
INSERT INTO no_deletes VALUES (1, 'a'), (2, 'b');
INSERT INTO inserts_only VALUES (1, 'a'), (2, 'b');
INSERT INTO in_other_set VALUES (1, 'a'), (2, 'b');
UPDATE in_default SET v = v || '!' WHERE id = 1;
UPDATE no_deletes SET v = v || '!' WHERE id = 1;
UPDATE inserts_only SET v = v || '!' WHERE id = 1;
DELETE FROM in_default WHERE id = 2;
DELETE FROM no_deletes WHERE id = 2;
DELETE FROM inserts_only WHERE id = 2;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT 'in_default' AS t, * FROM in_default
UNION ALL SELECT 'in_no_set', * FROM in_no_set
UNION ALL SELECT 'no_deletes', * FROM no_deletes
UNION ALL SELECT 'inserts_only', * FROM inserts_only
UNION ALL SELECT 'in_other_set', * FROM in_other_set
ORDER BY 1, 2;
-- Membership changes take effect at their commit, in stream order.
\c :n1
SELECT spock.repset_add_table('default', 'in_no_set');
INSERT INTO in_no_set VALUES (3, 'after add');
SELECT spock.repset_remove_table('default', 'in_default');
INSERT INTO in_default VALUES (3, 'after remove');
SELECT spock.repset_alter('keep_deleted', replicate_delete := true) > 0 AS altered;
DELETE FROM no_deletes WHERE id = 1;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT 'in_default' AS t, * FROM in_default
UNION ALL SELECT 'in_no_set', * FROM in_no_set
UNION ALL SELECT 'no_deletes', * FROM no_deletes
ORDER BY 1, 2;
