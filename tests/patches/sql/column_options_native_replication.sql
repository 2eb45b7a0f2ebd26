-- cluster: nodes=2
-- Patch 020 (A8): PostgreSQL's own logical replication (pgoutput publication
-- and subscription) still applies UPDATEs of a table with flagged columns.
\c :n1
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);
ALTER TABLE acct ALTER COLUMN balance SET (log_old_value = true);
INSERT INTO acct VALUES (1, 100, 'a'), (2, 200, 'b');
CREATE PUBLICATION pub FOR TABLE acct;
\c :n2
CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL, note text);
-- Waits by polling the subscriber's table (there is no sync event in stock
-- logical replication).
CREATE FUNCTION wait_until(query text, seconds int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1 .. seconds * 10 LOOP
    EXECUTE query INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
SELECT format('CREATE SUBSCRIPTION sub CONNECTION %L PUBLICATION pub', :'n1') AS create_sub \gset
:create_sub;
SELECT wait_until('SELECT count(*) = 2 FROM acct', 60) AS copied;
\c :n1
UPDATE acct SET note = 'x' WHERE id = 1;
UPDATE acct SET balance = balance + 5 WHERE id = 2;
UPDATE acct SET id = 3 WHERE id = 1;
\c :n2
SELECT wait_until('SELECT count(*) = 1 FROM acct WHERE id = 3 AND note = ''x''', 60) AS applied;
SELECT * FROM acct ORDER BY id;
DROP SUBSCRIPTION sub;
