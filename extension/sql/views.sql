-- Views (sql-api.md §6).

CREATE VIEW spock.tables AS
    SELECT c.oid AS relid, n.nspname, c.relname, s.set_name
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN spock.replication_set_table t ON t.set_reloid = c.oid
      LEFT JOIN spock.replication_set s ON s.set_id = t.set_id
     WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
       AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'spock');

CREATE VIEW spock.core_patches AS
    SELECT patch, present, abi, features FROM spock.core_patches_status();
COMMENT ON VIEW spock.core_patches IS 'Core patches this server carries and what is unavailable without them';
