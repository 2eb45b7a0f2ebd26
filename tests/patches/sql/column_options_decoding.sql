-- cluster: nodes=1
-- Patch 020 (A2-A6): an UPDATE of a logically logged table carries the old
-- values of every log_old_value column (with the replica identity) in its
-- WAL record, whether or not they changed; other columns stay out; replica
-- identity FULL and NOTHING are unchanged.
CREATE TABLE t (id int PRIMARY KEY, c int NOT NULL, d text, n int);
INSERT INTO t VALUES (1, 10, 'a', NULL), (2, 20, 'b', 7);
SELECT 'slot' FROM pg_create_logical_replication_slot('a2', 'test_decoding');
-- Without a flag: no old-key for an update that keeps the key (as stock).
UPDATE t SET d = 'w' WHERE id = 1;
ALTER TABLE t ALTER COLUMN c SET (log_old_value = true);
-- A2: only d changes; old-key has id and the old c, not d.
UPDATE t SET d = 'x' WHERE id = 1;
-- An update of c shows the old and the new c.
UPDATE t SET c = c + 1 WHERE id = 2;
-- A4: a NULL in a nullable flagged column (no assertion failure).
ALTER TABLE t ALTER COLUMN n SET (log_old_value = true);
UPDATE t SET d = 'y' WHERE id = 1;
-- The key itself changes: old key and old flagged values.
UPDATE t SET id = 3 WHERE id = 2;
-- DELETE and INSERT are unchanged.
DELETE FROM t WHERE id = 3;
INSERT INTO t VALUES (4, 40, 'd', 4);
-- A3: REPLICA IDENTITY FULL and NOTHING log what they always did.
ALTER TABLE t REPLICA IDENTITY FULL;
UPDATE t SET d = 'full' WHERE id = 1;
ALTER TABLE t REPLICA IDENTITY NOTHING;
UPDATE t SET d = 'nothing' WHERE id = 1;
ALTER TABLE t REPLICA IDENTITY DEFAULT;
-- After RESET the flag no longer applies.
ALTER TABLE t ALTER COLUMN c RESET (log_old_value);
ALTER TABLE t ALTER COLUMN n RESET (log_old_value);
UPDATE t SET d = 'z' WHERE id = 1;
SELECT data FROM pg_logical_slot_get_changes('a2', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')
 WHERE data NOT LIKE 'BEGIN%' AND data NOT LIKE 'COMMIT%';
-- A5: a flagged TOASTed column (stored out of line) has its old value
-- inlined in the old-key tuple; the new tuple keeps the unchanged datum.
CREATE TABLE big (id int PRIMARY KEY, note text, body text);
ALTER TABLE big ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE big ALTER COLUMN body SET (log_old_value = true);
INSERT INTO big SELECT 1, 'n', string_agg(md5(g::text), '') FROM generate_series(1, 400) g;
SELECT pg_column_size(body) > 8000 AS out_of_line FROM big;
UPDATE big SET note = 'changed' WHERE id = 1;
SELECT data = 'table public.big: UPDATE: old-key: id[integer]:1 body[text]:' || quote_literal(b.v)
              || ' new-tuple: id[integer]:1 note[text]:''changed'' body[text]:unchanged-toast-datum'
       AS old_value_inlined
  FROM pg_logical_slot_get_changes('a2', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1'),
       (SELECT string_agg(md5(g::text), '') AS v FROM generate_series(1, 400) g) b
 WHERE data LIKE 'table public.big: UPDATE%';
-- A6: a partition of a flagged partitioned table carries the old value.
CREATE TABLE p (id int PRIMARY KEY, c int, d text) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
ALTER TABLE p ALTER COLUMN c SET (log_old_value = true);
INSERT INTO p VALUES (5, 50, 'p');
UPDATE p SET d = 'q' WHERE id = 5;
SELECT data FROM pg_logical_slot_get_changes('a2', NULL, NULL, 'include-xids', '0', 'skip-empty-xacts', '1')
 WHERE data LIKE 'table public.p1: UPDATE%';
SELECT pg_drop_replication_slot('a2');
