-- Mistakes a user can make with the extension itself fail clearly and
-- change nothing.
\c :n1
-- The schema is fixed by the control file.
CREATE EXTENSION spock SCHEMA public;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'spock';
CREATE EXTENSION spock;
CREATE EXTENSION spock;
-- Not relocatable.
ALTER EXTENSION spock SET SCHEMA public;
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'spock';
-- DROP EXTENSION keeps schema spock: CREATE EXTENSION made it because the
-- control file names it, so it is not a member of the extension
-- (PostgreSQL's rule). A second CREATE EXTENSION reuses it.
DROP EXTENSION spock;
SELECT count(*) AS spock_schemas FROM pg_namespace WHERE nspname = 'spock';
CREATE EXTENSION spock;
DROP EXTENSION spock;
DROP SCHEMA spock;
SELECT count(*) AS spock_schemas FROM pg_namespace WHERE nspname = 'spock';
