-- cluster: nodes=2
-- Row values survive the trip: primary-key updates (single and composite),
-- NULLs, large TOASTed values (also when an UPDATE leaves them unchanged),
-- columns with local defaults, generated columns (computed on each node),
-- and a range of data types.
\c :n1
CREATE EXTENSION spock;
SELECT spock.node_create('n1', :'n1') > 0 AS created;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE pk1 (id int PRIMARY KEY, v text);
CREATE TABLE pk2 (a int, b text, v text, PRIMARY KEY (a, b));
CREATE TABLE docs (id int PRIMARY KEY, title text, body text, counter int);
CREATE TABLE typed (
    id bigint PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, num numeric(20, 6), f4 real, f8 double precision,
    b boolean, t text, vc varchar(10), ch char(3), by bytea,
    d date, ts timestamp, tstz timestamptz, iv interval, tm time,
    u uuid, j json, jb jsonb, arr int[], tarr text[], ip inet, cidr_ cidr, m mood,
    r int4range, pt point, bits bit varying(8), mac macaddr, ts_v tsvector
);
CREATE TABLE gen (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED);
SELECT spock.repset_add_table('default', t) FROM unnest('{pk1,pk2,docs,typed,gen}'::regclass[]) t;
\c :n2
CREATE EXTENSION spock;
SELECT spock.node_create('n2', :'n2') > 0 AS created;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE pk1 (id int PRIMARY KEY, v text);
CREATE TABLE pk2 (a int, b text, v text, PRIMARY KEY (a, b));
-- The subscriber's docs has an extra column with a default.
CREATE TABLE docs (id int PRIMARY KEY, title text, body text, counter int, received_at text DEFAULT 'filled here');
-- gen has one more generated column here, and a default after it.
CREATE TABLE gen (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED,
                  tripled int GENERATED ALWAYS AS (a * 3) STORED, note text DEFAULT 'local');
CREATE TABLE typed (
    id bigint PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, num numeric(20, 6), f4 real, f8 double precision,
    b boolean, t text, vc varchar(10), ch char(3), by bytea,
    d date, ts timestamp, tstz timestamptz, iv interval, tm time,
    u uuid, j json, jb jsonb, arr int[], tarr text[], ip inet, cidr_ cidr, m mood,
    r int4range, pt point, bits bit varying(8), mac macaddr, ts_v tsvector
);
SELECT spock.sub_create('sub_n2_n1', :'n1') > 0 AS subscribed;
SELECT spock.sub_wait_for_sync('sub_n2_n1');
\c :n1
-- Primary-key updates.
INSERT INTO pk1 VALUES (1, 'one'), (2, 'two');
INSERT INTO pk2 VALUES (1, 'x', 'first'), (2, 'y', 'second');
UPDATE pk1 SET id = 10 WHERE id = 1;
UPDATE pk1 SET id = id + 100, v = 'moved' WHERE id = 2;
UPDATE pk2 SET b = 'z' WHERE a = 1;
UPDATE pk2 SET a = 20, v = 'both' WHERE a = 2;
-- NULLs and TOAST: body is far larger than a page and does not compress.
INSERT INTO docs VALUES (1, NULL, NULL, NULL);
INSERT INTO docs SELECT 2, 'big', string_agg(md5(i::text), ''), 0 FROM generate_series(1, 4000) i;
UPDATE docs SET counter = counter + 1 WHERE id = 2;
UPDATE docs SET title = 'still big', counter = counter + 1 WHERE id = 2;
UPDATE docs SET title = 'now set', body = 'small' WHERE id = 1;
INSERT INTO docs SELECT 3, 'big then null', string_agg(md5(i::text), ''), 0 FROM generate_series(1, 3000) i;
UPDATE docs SET body = NULL WHERE id = 3;
-- Generated columns are not sent; each node computes its own.
INSERT INTO gen (id, a) VALUES (1, 21), (2, NULL);
UPDATE gen SET a = 5 WHERE id = 2;
-- Types.
INSERT INTO typed VALUES (
    1, -32768, 2147483647, -9223372036854775808, 12345678901234.123456, 3.5, -1.25e-300,
    true, E'tab\there ''quoted'' \\ backslash ünïcödé', 'varchar', 'ab', '\x00ff10',
    '2001-02-03', '2001-02-03 04:05:06.789', '2001-02-03 04:05:06+02', '1 year 2 days 00:00:03', '23:59:59',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": {"c": null}}', '{1,NULL,3}', '{"x y",NULL,"{}"}',
    '192.168.1.1/24', '10.0.0.0/8', 'happy', '[1,10)', '(1.5,-2)', B'1011', '08:00:2b:01:02:03', 'a fat cat');
INSERT INTO typed (id) VALUES (2);
INSERT INTO typed (id, num, f8, t, arr) VALUES (3, 'NaN', 'Infinity', '', '{}');
SELECT spock.sync_event() AS lsn \gset
SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS typed_digest FROM typed t \gset
SELECT md5(body) AS body_digest FROM docs WHERE id = 2 \gset
\c :n2
CALL spock.wait_for_sync_event(NULL, 'n1', :'lsn', 60);
SELECT * FROM pk1 ORDER BY id;
SELECT * FROM pk2 ORDER BY a, b;
SELECT id, title, length(body) AS body_length, CASE id WHEN 2 THEN md5(body) = :'body_digest' END AS same_big_body,
       counter, received_at
  FROM docs ORDER BY id;
SELECT * FROM gen ORDER BY id;
SELECT md5(string_agg(t::text, ',' ORDER BY id)) = :'typed_digest' AS typed_rows_identical FROM typed t;
SELECT id, t, by, tstz, arr, tarr, m, jb, ts_v FROM typed ORDER BY id;
