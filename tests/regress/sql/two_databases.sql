-- cluster: nodes=2 layout=databases
-- Two nodes can be two databases of one server: each database takes the
-- extension on its own.
\c :n1
CREATE EXTENSION spock;
SELECT current_setting('port') AS port1, current_database() AS db1 \gset
\c :n2
SELECT count(*) AS installed_before FROM pg_extension WHERE extname = 'spock';
CREATE EXTENSION spock;
SELECT current_setting('port') = :'port1' AS same_server, current_database() <> :'db1' AS other_database;
SELECT spock.spock_version() = extversion AS version_matches FROM pg_extension WHERE extname = 'spock';
