-- cluster: nodes=1
-- Patch 030 (B2, B3): commit timestamps are a logical clock. A replicated
-- commit keeps its origin timestamp, even one in the future, and the next
-- local commit is stamped later than it; decoded commit times equal the
-- stored commit timestamps, bumped ones included.
CREATE EXTENSION spock_patch_probe;
SELECT probe_marker('spock_patch_commit_clock_abi') AS abi;
CREATE TABLE b2 (id int PRIMARY KEY);
CREATE TABLE future AS SELECT now() + interval '10 min' AS ts;
SELECT 'slot' FROM pg_create_logical_replication_slot('b3', 'test_decoding');
SELECT pg_replication_origin_create('b2') > 0 AS origin_created;
SELECT pg_replication_origin_session_setup('b2');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/1', (SELECT ts FROM future));
INSERT INTO b2 VALUES (1);
COMMIT;
SELECT pg_replication_origin_session_reset();
\c :n1
INSERT INTO b2 VALUES (2);
SELECT id,
       pg_xact_commit_timestamp(xmin) = (SELECT ts FROM future) AS at_origin_time,
       pg_xact_commit_timestamp(xmin) > (SELECT ts FROM future) AS after_origin_time
  FROM b2 ORDER BY id;
-- The clock is at least the last commit's timestamp.
SELECT probe_commit_clock_read() >= (SELECT max(pg_xact_commit_timestamp(xmin)) FROM b2) AS clock_covers_commits;
-- Every later local commit is later still.
INSERT INTO b2 VALUES (3);
INSERT INTO b2 VALUES (4);
SELECT bool_and(t.ts < n.ts) AS strictly_increasing
  FROM (SELECT id, pg_xact_commit_timestamp(xmin) AS ts FROM b2) t
  JOIN (SELECT id, pg_xact_commit_timestamp(xmin) AS ts FROM b2) n ON n.id = t.id + 1;
-- advance never lowers the clock and returns the new value.
SELECT probe_commit_clock_advance('2001-01-01') > now() - interval '1 hour' AS never_lowered;
SELECT probe_commit_clock_advance((SELECT ts FROM future) + interval '1 min') = (SELECT ts FROM future) + interval '1 min' AS advanced;
INSERT INTO b2 VALUES (5);
SELECT pg_xact_commit_timestamp(xmin) > (SELECT ts FROM future) + interval '1 min' AS after_advance FROM b2 WHERE id = 5;
-- B3: decoded commit times equal pg_xact_commit_timestamp for the same xids.
SELECT count(*) AS commits,
       bool_and(substring(data FROM '\(at (.*)\)')::timestamptz
                = pg_xact_commit_timestamp(substring(data FROM '^COMMIT (\d+)')::xid)) AS decoded_equals_stored
  FROM pg_logical_slot_get_changes('b3', NULL, NULL, 'include-timestamp', '1', 'include-xids', '1', 'skip-empty-xacts', '1')
 WHERE data LIKE 'COMMIT%';
SELECT pg_drop_replication_slot('b3');
SELECT pg_replication_origin_drop('b2');
