-- cluster: nodes=2
-- Delta apply (behaviour.md §9, acceptance 1-6; sql-api.md §4.7, §5):
-- increments made on two disconnected nodes add up after reconnecting,
-- whichever version wins last-update-wins; a conflicting INSERT adds its
-- amount; the row that kept its local version keeps its commit timestamp
-- and origin; a missing function is an apply error 42883; a provider
-- column without log_old_value overwrites. The options are checked when
-- they are set.
\c :n1
ALTER SYSTEM SET spock.save_resolutions = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TABLE acct (id int8 PRIMARY KEY, balance int8 NOT NULL, note text);
-- A delta function must take and return the column's type.
ALTER TABLE acct ALTER COLUMN note SET (delta_apply_function = spock.delta_apply);
ALTER TABLE acct ALTER COLUMN balance SET (delta_apply_function = no_such_function);
ALTER TABLE acct ALTER COLUMN balance SET (log_old_value = true, delta_apply_function = spock.delta_apply);
SELECT attname, attoptions FROM pg_attribute WHERE attrelid = 'acct'::regclass AND attnum > 0 ORDER BY attnum;
SELECT spock.repset_add_table('default', 'acct');
-- The default functions: local + (new - old), overflow as the type says.
SELECT spock.delta_apply(10::int2, 15::int2, 100::int2), spock.delta_apply(1.5, 1.0, 10.25),
       spock.delta_apply(1::float8, 3, 0.5), spock.delta_apply('$1.00'::money, '$3.50', '$10.00');
SELECT spock.delta_apply(0::int4, 1, 2147483647);
\c :n2
ALTER SYSTEM SET spock.save_resolutions = on;
SELECT pg_reload_conf();
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TABLE acct (id int8 PRIMARY KEY, balance int8 NOT NULL, note text);
ALTER TABLE acct ALTER COLUMN balance SET (log_old_value = true, delta_apply_function = spock.delta_apply);
SELECT spock.repset_add_table('default', 'acct');
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
SELECT spock.sub_create('sub_n1_n2', :'n2') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n1_n2');
INSERT INTO acct VALUES (1, 1000), (2, 1000), (3, 1000), (4, 1000);
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM acct ORDER BY id;
-- Disconnect; n1 writes first, then n2 (whose versions are later).
SELECT spock.sub_disable('sub_n2_n1', immediate := true);
\c :n1
SELECT spock.sub_disable('sub_n1_n2', immediate := true);
UPDATE acct SET balance = balance - 100 WHERE id IN (1, 2);
INSERT INTO acct VALUES (9, 10);
\c :n2
UPDATE acct SET balance = balance - 300 WHERE id = 1;
UPDATE acct SET balance = balance - 300, note = 'n2' WHERE id = 2;
INSERT INTO acct VALUES (9, 20);
SELECT c.timestamp AS n2_ts FROM acct, spock.xact_commit_timestamp_origin(xmin) c WHERE id = 1 \gset
-- Reconnect, and wait for each side's changes on the other.
SELECT spock.sub_enable('sub_n2_n1');
SELECT spock.sync_event() AS lsn2 \gset
\c :n1
SELECT spock.sub_enable('sub_n1_n2');
SELECT spock.sync_event() AS lsn1 \gset
CALL spock.wait_for_sync_event(NULL, 'n2', :'lsn2', 60);
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn1', 60);
-- Both nodes: 1000 - 100 - 300 on rows 1 and 2, n2's later note on row 2,
-- and both inserted amounts on row 9.
SELECT * FROM acct ORDER BY id;
\c :n1
SELECT * FROM acct ORDER BY id;
\c :n2
-- On n2 its own later versions won, and n1's increments went into them:
-- the rows still carry n2's own commit timestamp and no origin.
SELECT id, c.timestamp = :'n2_ts' AS n2_commit_ts, c.roident AS origin
  FROM acct, spock.xact_commit_timestamp_origin(xmin) c WHERE id = 1;
SELECT r.conflict_type, r.conflict_resolution, r.local_tuple::jsonb, r.remote_tuple::jsonb
  FROM spock.resolutions r ORDER BY r.id;
-- A delta function that disappears makes the next replicated UPDATE of the
-- table an apply error (42883), handled as exceptions are.
CREATE FUNCTION my_delta(old int8, new int8, local int8) RETURNS int8
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT $3 + ($2 - $1) $$;
ALTER TABLE acct ALTER COLUMN balance SET (delta_apply_function = my_delta);
DROP FUNCTION my_delta;
\c :n1
UPDATE acct SET balance = balance + 1 WHERE id = 3;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT id, balance FROM acct WHERE id = 3;
SELECT operation, table_name, error_message
  FROM spock.exception_log ORDER BY command_counter;
ALTER TABLE acct ALTER COLUMN balance SET (delta_apply_function = spock.delta_apply);
-- With log_old_value off on the provider, its updates overwrite: n2 adds
-- 50 to row 4 while n1 cannot see it, then n1 (later) sets its own value.
\c :n1
SELECT spock.sub_disable('sub_n1_n2', immediate := true);
ALTER TABLE acct ALTER COLUMN balance SET (log_old_value = false);
\c :n2
UPDATE acct SET balance = balance + 50 WHERE id = 4;
\c :n1
UPDATE acct SET balance = balance + 100 WHERE id = 4;
SELECT spock.sync_event() AS lsn \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT id, balance FROM acct WHERE id = 4;
-- The rows whose local version won but took the incoming increments are
-- counted as delta-apply overrides (n_dca) of n2's subscription.
SELECT sub_name, table_name, n_dca FROM spock.channel_table_stats WHERE subid <> 0;
