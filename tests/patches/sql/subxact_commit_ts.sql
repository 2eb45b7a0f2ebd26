-- cluster: nodes=1
-- Patch 040 (C1, C2, C6): a subtransaction can commit with its own commit
-- timestamp and origin; the override is void when it rolls back; misuse is
-- refused. (The timestamp 2000-01-01 00:00:00 UTC is avoided: it is 0, which
-- pg_commit_ts reads as "no commit timestamp".)
CREATE EXTENSION spock_patch_probe;
SELECT probe_marker('spock_patch_subxact_commit_ts_abi') AS abi;
CREATE TABLE c (v text PRIMARY KEY);
-- C1
BEGIN;
INSERT INTO c VALUES ('a');
SAVEPOINT s;
INSERT INTO c VALUES ('b');
SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'b'), '2001-02-03 04:05:06+00', 42);
RELEASE s;
COMMIT;
SELECT v, o.timestamp = '2001-02-03 04:05:06+00' AS overridden, o.timestamp > now() - interval '1 hour' AS real_time, o.roident
  FROM c, pg_xact_commit_timestamp_origin(c.xmin) o ORDER BY v;
-- C2: ROLLBACK TO voids the override; later transactions are unaffected.
BEGIN;
INSERT INTO c VALUES ('c');
SAVEPOINT s;
INSERT INTO c VALUES ('d');
SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'd'), '2001-02-03 04:05:06+00', 42);
ROLLBACK TO s;
INSERT INTO c VALUES ('e');
COMMIT;
-- A parent that rolls back voids its committed child's override.
BEGIN;
SAVEPOINT outer_sp;
SAVEPOINT inner_sp;
INSERT INTO c VALUES ('f');
SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'f'), '2001-02-03 04:05:06+00', 42);
RELEASE inner_sp;
ROLLBACK TO outer_sp;
INSERT INTO c VALUES ('g');
COMMIT;
-- A full rollback voids it too.
BEGIN;
SAVEPOINT s;
INSERT INTO c VALUES ('h');
SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'h'), '2001-02-03 04:05:06+00', 42);
ROLLBACK;
BEGIN;
SAVEPOINT s;
INSERT INTO c VALUES ('i');
RELEASE s;
COMMIT;
SELECT v, o.timestamp = '2001-02-03 04:05:06+00' AS overridden, o.roident
  FROM c, pg_xact_commit_timestamp_origin(c.xmin) o ORDER BY v;
-- C6: the top-level xid and a foreign xid are refused (the SQLSTATE only for
-- the first: its message names an xid that varies from run to run).
BEGIN;
INSERT INTO c VALUES ('j');
\set VERBOSITY sqlstate
SELECT probe_set_subxact_commit_ts(pg_current_xact_id()::xid, now(), 1);
\set VERBOSITY default
ROLLBACK;
SELECT probe_set_subxact_commit_ts('3'::xid, now(), 1);
-- PREPARE TRANSACTION with a pending override is refused.
BEGIN;
SAVEPOINT s;
INSERT INTO c VALUES ('k');
SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'k'), '2001-02-03 04:05:06+00', 42);
RELEASE s;
PREPARE TRANSACTION 'with_override';
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT count(*) AS k_rows FROM c WHERE v = 'k';
