-- cluster: nodes=3
-- Every node of a fresh cluster runs our patched build and takes the
-- extension, and the version functions agree across nodes.
\c :n1
CREATE EXTENSION spock;
SELECT version() ~ '-spock\.[0-9a-f]{8} ' AS patched_build;
SELECT current_setting('wal_level') AS wal_level,
       current_setting('track_commit_timestamp') AS track_commit_timestamp,
       'spock' = ANY (string_to_array(current_setting('shared_preload_libraries'), ',')) AS preloaded;
SELECT n.nspname, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'spock';
SELECT spock.spock_version() = extversion AS version_matches_catalog
  FROM pg_extension WHERE extname = 'spock';
-- spock.country, for everyone to read.
CREATE ROLE reader;
SET ROLE reader;
SELECT spock.get_country() AS country_seen_by_a_plain_role;
RESET ROLE;
DROP ROLE reader;
-- The build carries the core patches, and the extension found them.
SELECT patch, present, abi FROM spock.core_patches ORDER BY patch;
SELECT spock.spock_version() AS v1, spock.spock_version_num() AS num1 \gset
SELECT system_identifier AS sys1 FROM pg_control_system() \gset
SELECT :'v1' ~ '^\d+\.\d+\.\d+$' AS three_part_version,
       :num1 = split_part(:'v1', '.', 1)::int * 10000
             + split_part(:'v1', '.', 2)::int * 100
             + split_part(:'v1', '.', 3)::int AS num_matches_version;
\c :n2
CREATE EXTENSION spock;
SELECT spock.spock_version() = :'v1' AS same_version, spock.spock_version_num() = :num1 AS same_num;
SELECT system_identifier AS sys2 FROM pg_control_system() \gset
\c :n3
CREATE EXTENSION spock;
SELECT spock.spock_version() = :'v1' AS same_version, spock.spock_version_num() = :num1 AS same_num;
SELECT system_identifier AS sys3 FROM pg_control_system() \gset
-- The three nodes are separate servers (initdb gave each its own identifier).
SELECT :'sys1' <> :'sys2' AND :'sys2' <> :'sys3' AND :'sys1' <> :'sys3' AS three_separate_servers;
