-- cluster: nodes=1
-- Patch 020 (A1): the column options log_old_value and delta_apply_function
-- are accepted by ALTER TABLE ... ALTER COLUMN ... SET / RESET and stored in
-- pg_attribute.attoptions; bad values and unknown names are still refused.
CREATE EXTENSION spock_patch_probe;
SELECT probe_marker('spock_patch_column_options_abi') AS abi;
CREATE TABLE t (id int PRIMARY KEY, c int NOT NULL, d text);
ALTER TABLE t ALTER COLUMN c SET (log_old_value = true, delta_apply_function = spock.delta_apply);
SELECT attname, attoptions FROM pg_attribute
 WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum;
-- A quoted qualified name is stored verbatim too.
ALTER TABLE t ALTER COLUMN d SET (delta_apply_function = 'public."My Delta"');
SELECT attoptions FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'd';
-- RESET removes one entry and keeps the other.
ALTER TABLE t ALTER COLUMN c RESET (log_old_value);
SELECT attoptions FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'c';
-- Still refused: a bad boolean, an unknown name, and the options on a table.
ALTER TABLE t ALTER COLUMN c SET (log_old_value = maybe);
ALTER TABLE t ALTER COLUMN c SET (log_new_value = true);
ALTER TABLE t SET (log_old_value = true);
-- The existing attribute options still work alongside.
ALTER TABLE t ALTER COLUMN d SET (n_distinct = 5, log_old_value = on);
SELECT attoptions FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'd';
-- A6: on a partitioned table the options reach every partition.
CREATE TABLE p (id int PRIMARY KEY, c int) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
ALTER TABLE p ALTER COLUMN c SET (log_old_value = true);
SELECT attrelid::regclass AS rel, attoptions FROM pg_attribute
 WHERE attrelid IN ('p'::regclass, 'p1'::regclass, 'p2'::regclass) AND attname = 'c' ORDER BY 1;
-- Catalogs cannot take the options (A3: catalog updates never carry them).
ALTER TABLE pg_class ALTER COLUMN relname SET (log_old_value = true);
