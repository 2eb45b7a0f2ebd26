-- A node killed with kill -9 (a crash of its postmaster) comes back after a
-- restart with its committed data and the extension intact; the other node
-- is not affected.
\c :n1
CREATE TABLE started AS SELECT pg_postmaster_start_time() AS t;
\c :n2
CREATE EXTENSION spock;
CREATE TABLE started AS SELECT pg_postmaster_start_time() AS t;
CREATE TABLE survivor (id int PRIMARY KEY, note text);
INSERT INTO survivor SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
--! kill9 n2
--! start n2
\c :n2
SELECT t < pg_postmaster_start_time() AS n2_was_restarted FROM started;
SELECT count(*) AS rows, sum(id) AS id_sum FROM survivor;
SELECT spock.spock_version() = extversion AS extension_intact FROM pg_extension WHERE extname = 'spock';
\c :n1
SELECT t = pg_postmaster_start_time() AS n1_kept_running FROM started;
