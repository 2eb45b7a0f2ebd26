//! Core patch acceptance tests that need more than one psql session, a
//! restart, a crash, a streaming standby, pgbench or pg_waldump
//! (patches.md §3-§5). `cargo xtask test-patches` runs them on the patched
//! build with the test-only `spock_patch_probe` extension installed; a plain
//! `cargo test` ignores them (it has no server).

mod common;

use std::time::{Duration, Instant};

use common::cluster;
use xtask::cmd::{self, tool};
use xtask::node::{self, Node, StopMode};

const PATCH_CONF: &str = "fsync = off\nmax_prepared_transactions = 5\n";

fn sql(node: &Node, query: &str) -> String {
    node.safe_psql("postgres", query).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Waits until `standby` has replayed everything `primary` has written.
fn wait_for_replay(primary: &Node, standby: &Node) {
    let lsn = sql(primary, "SELECT pg_current_wal_insert_lsn()");
    standby
        .poll_query_until(
            "postgres",
            &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'"),
            Duration::from_secs(60),
        )
        .unwrap();
}

/// `pg_waldump -r <rmgr>` over the node's WAL between two LSNs.
fn waldump(node: &Node, rmgr: &str, start: &str, end: &str) -> String {
    let wal = node.data().join("pg_wal");
    cmd::read(
        tool(
            node.installed.bin("pg_waldump"),
            ["-p", &wal.display().to_string(), "-s", start, "-e", end, "-r", rmgr],
        ),
        "pg_waldump",
    )
    .unwrap()
}

/// Commits a transaction as if applied from another node whose origin
/// timestamp is ten minutes ahead; returns that timestamp (as text).
fn commit_from_the_future(node: &Node, table: &str) -> String {
    sql(
        node,
        &format!(
            "SELECT pg_replication_origin_create('future_{table}');
             SELECT pg_replication_origin_session_setup('future_{table}');
             BEGIN;
             SELECT pg_replication_origin_xact_setup('0/1', now() + interval '10 min');
             INSERT INTO {table} VALUES (-1);
             COMMIT;
             SELECT pg_replication_origin_session_reset();"
        ),
    );
    sql(node, &format!("SELECT pg_xact_commit_timestamp(xmin) FROM {table} WHERE id = -1"))
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn b1_commit_timestamps_strictly_increase_in_wal_order() {
    let cluster = cluster("b1", 1, PATCH_CONF);
    let n1 = &cluster.nodes[0];
    let socket = n1.socket_dir.display().to_string();
    let port = n1.port.to_string();
    let conn = ["-h", socket.as_str(), "-p", port.as_str(), "-U", node::SUPERUSER];
    let pgbench = n1.installed.bin("pgbench");
    cmd::read(tool(&pgbench, conn.iter().copied().chain(["-i", "-s", "2", "-q", "postgres"])), "pgbench -i")
        .unwrap();
    let start = sql(n1, "SELECT pg_current_wal_insert_lsn()");
    // 4 clients on the 2-core reference machine (patches.md B1).
    let out = cmd::read(
        tool(&pgbench, conn.iter().copied().chain(["-n", "-c", "4", "-j", "2", "-T", "10", "postgres"])),
        "pgbench",
    )
    .unwrap();
    let end = sql(n1, "SELECT pg_current_wal_insert_lsn()");
    let dump = waldump(n1, "Transaction", &start, &end);
    let stamps: Vec<&str> = dump
        .lines()
        .filter_map(|l| l.split("desc: COMMIT ").nth(1))
        .map(|rest| rest.split(';').next().unwrap().trim())
        .collect();
    assert!(stamps.len() > 500, "too few commits decoded from WAL ({}); pgbench said:\n{out}", stamps.len());
    // Same zone and fixed width (microseconds always printed): text order is time order.
    let inversions = stamps.windows(2).filter(|w| w[0] >= w[1]).count();
    println!("B1: {} commits in WAL order, {inversions} not strictly increasing", stamps.len());
    assert_eq!(inversions, 0, "commit timestamps must strictly increase in WAL order");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn b6_the_clock_survives_crash_and_clean_restarts() {
    let cluster = cluster("b6", 1, PATCH_CONF);
    let n1 = &cluster.nodes[0];
    sql(n1, "CREATE EXTENSION spock_patch_probe; CREATE TABLE t (id int PRIMARY KEY)");
    let future = commit_from_the_future(n1, "t");
    // A checkpoint after the future commit: recovery will not replay it, so
    // the clock must come back from what the checkpoint kept.
    sql(n1, "CHECKPOINT");

    n1.stop(StopMode::Immediate).unwrap();
    n1.start().unwrap();
    sql(n1, "INSERT INTO t VALUES (1)");
    assert_eq!(
        sql(n1, &format!("SELECT pg_xact_commit_timestamp(xmin) > '{future}' FROM t WHERE id = 1")),
        "t",
        "after a crash, a local commit must be later than the future commit"
    );

    n1.stop(StopMode::Fast).unwrap();
    n1.start().unwrap();
    sql(n1, "INSERT INTO t VALUES (2)");
    assert_eq!(
        sql(n1, &format!("SELECT pg_xact_commit_timestamp(xmin) > '{future}' FROM t WHERE id = 2")),
        "t",
        "after a clean restart, a local commit must be later than the future commit"
    );

    // Without commit timestamp tracking the clock still orders the commit
    // records; read the commit time through logical decoding.
    n1.append_conf("track_commit_timestamp = off\n").unwrap();
    n1.restart().unwrap();
    sql(n1, "SELECT 'slot' FROM pg_create_logical_replication_slot('b6', 'test_decoding')");
    let later = sql(n1, "SELECT probe_commit_clock_advance(now() + interval '20 min')");
    sql(n1, "INSERT INTO t VALUES (3)");
    let decoded = sql(
        n1,
        &format!(
            "SELECT bool_and(substring(data FROM '\\(at (.*)\\)')::timestamptz > '{later}')
               FROM pg_logical_slot_get_changes('b6', NULL, NULL, 'include-timestamp', '1', 'skip-empty-xacts', '1')
              WHERE data LIKE 'COMMIT%'"
        ),
    );
    assert_eq!(decoded, "t", "with tracking off the decoded commit time must follow the advanced clock");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn standby_agrees_on_commit_timestamps_overrides_and_the_clock() {
    let cluster = cluster("standby", 1, PATCH_CONF);
    let primary = &cluster.nodes[0];
    sql(
        primary,
        "CREATE EXTENSION spock_patch_probe; CREATE EXTENSION dblink;
         CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE c (v text PRIMARY KEY)",
    );
    let standby =
        Node::init_standby("standby", primary, &cluster.dir.join("standby"), node::free_port().unwrap())
            .unwrap();
    standby.start().unwrap();
    assert_eq!(sql(&standby, "SELECT pg_is_in_recovery()"), "t");

    // B4: after a future-dated replicated commit, COMMIT PREPARED is stamped
    // later, identically on the primary, the standby and in decoding.
    sql(primary, "SELECT 'slot' FROM pg_create_logical_replication_slot('b4', 'test_decoding')");
    let future = commit_from_the_future(primary, "t");
    sql(primary, "BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'b4'; COMMIT PREPARED 'b4'");
    let prepared = sql(primary, "SELECT xmin || ' ' || pg_xact_commit_timestamp(xmin) FROM t WHERE id = 1");
    let (xid, ts) = prepared.split_once(' ').unwrap();
    assert_eq!(
        sql(primary, &format!("SELECT '{ts}'::timestamptz > '{future}'")),
        "t",
        "COMMIT PREPARED stamped late"
    );
    let decoded = sql(
        primary,
        &format!(
            "SELECT substring(data FROM '\\(at (.*)\\)')::timestamptz = '{ts}'
               FROM pg_logical_slot_get_changes('b4', NULL, NULL, 'include-timestamp', '1', 'include-xids', '1')
              WHERE data LIKE 'COMMIT PREPARED%' OR data LIKE 'COMMIT {xid}%'"
        ),
    );
    assert!(
        decoded.lines().count() >= 1 && decoded.lines().all(|l| l == "t"),
        "decoding disagrees: {decoded}"
    );

    // C3: an override set in T1 survives T2 (with subtransactions)
    // committing in between, on the standby too.
    let conn = primary.connstr("postgres");
    sql(
        primary,
        &format!(
            "BEGIN;
             INSERT INTO c VALUES ('t1a');
             SAVEPOINT s; INSERT INTO c VALUES ('t1b');
             SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 't1b'), '2001-01-01 00:00:00+00', 7);
             RELEASE s;
             SELECT dblink_exec('{conn}', 'BEGIN; INSERT INTO c VALUES (''t2a''); SAVEPOINT s; INSERT INTO c VALUES (''t2b''); RELEASE s; COMMIT');
             COMMIT;"
        ),
    );
    wait_for_replay(primary, &standby);
    let view = "SELECT string_agg(v || ':' || (o.timestamp = '2001-01-01 00:00:00+00') || ':' || o.roident, ',' ORDER BY v)
                  FROM c, pg_xact_commit_timestamp_origin(c.xmin) o";
    let expected = "t1a:false:0,t1b:true:7,t2a:false:0,t2b:false:0";
    assert_eq!(sql(primary, view), expected, "override on the primary");
    assert_eq!(sql(&standby, view), expected, "override on the standby");

    // B5: the same commit timestamps on both.
    let stamps = "SELECT string_agg(xmin || '=' || pg_xact_commit_timestamp(xmin), ',' ORDER BY id) FROM t";
    assert_eq!(sql(primary, stamps), sql(&standby, stamps), "commit timestamps differ on the standby");
    assert_eq!(sql(&standby, &format!("SELECT pg_xact_commit_timestamp('{xid}'::xid) = '{ts}'")), "t");

    // B7: after promotion the first local commit is later than the
    // future-dated commit the standby replayed.
    sql(primary, "SELECT pg_drop_replication_slot('b4')");
    standby.promote().unwrap();
    standby.poll_query_until("postgres", "SELECT NOT pg_is_in_recovery()", Duration::from_secs(60)).unwrap();
    sql(&standby, "INSERT INTO t VALUES (2)");
    assert_eq!(
        sql(&standby, &format!("SELECT pg_xact_commit_timestamp(xmin) > '{future}' FROM t WHERE id = 2")),
        "t",
        "the promoted standby's first commit must follow the replayed clock"
    );
    standby.stop(StopMode::Fast).unwrap();
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn overrides_survive_a_crash_show_in_waldump_and_need_tracking() {
    let cluster = cluster("c4", 1, PATCH_CONF);
    let n1 = &cluster.nodes[0];
    sql(n1, "CREATE EXTENSION spock_patch_probe; CREATE TABLE c (v text PRIMARY KEY); CHECKPOINT");
    let start = sql(n1, "SELECT pg_current_wal_insert_lsn()");
    sql(
        n1,
        "BEGIN; INSERT INTO c VALUES ('a'); SAVEPOINT s; INSERT INTO c VALUES ('b');
         SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'b'), '2001-02-03 04:05:06+00', 42);
         RELEASE s; COMMIT;",
    );
    let end = sql(n1, "SELECT pg_current_wal_insert_lsn()");

    // C5: pg_waldump describes the new record.
    let dump = waldump(n1, "CommitTs", &start, &end);
    let b = sql(n1, "SELECT xmin FROM c WHERE v = 'b'");
    let line = dump
        .lines()
        .find(|l| l.contains("SUBXACT_OVERRIDE"))
        .unwrap_or_else(|| panic!("no override in:\n{dump}"));
    assert!(
        line.contains(&format!("subxid {b} of "))
            && line.contains("2001-02-03 04:05:06")
            && line.contains("origin 42"),
        "{line}"
    );

    // C4: a crash before any checkpoint; recovery replays the override.
    n1.stop(StopMode::Immediate).unwrap();
    n1.start().unwrap();
    let view = "SELECT string_agg(v || ':' || (o.timestamp = '2001-02-03 04:05:06+00') || ':' || o.roident, ',' ORDER BY v)
                  FROM c, pg_xact_commit_timestamp_origin(c.xmin) o";
    assert_eq!(sql(n1, view), "a:false:0,b:true:42");

    // C6: without commit timestamp tracking the call returns false and
    // writes no record.
    n1.append_conf("track_commit_timestamp = off\n").unwrap();
    n1.restart().unwrap();
    let start = sql(n1, "SELECT pg_current_wal_insert_lsn()");
    let answer = sql(
        n1,
        "BEGIN; SAVEPOINT s; INSERT INTO c VALUES ('x');
         SELECT probe_set_subxact_commit_ts((SELECT xmin FROM c WHERE v = 'x'), now(), 1);
         RELEASE s; COMMIT;",
    );
    assert_eq!(answer, "f");
    let end = sql(n1, "SELECT pg_current_wal_insert_lsn()");
    assert!(!waldump(n1, "CommitTs", &start, &end).contains("SUBXACT_OVERRIDE"));
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn ten_thousand_overrides_in_one_transaction() {
    let cluster = cluster("c7", 1, PATCH_CONF);
    let n1 = &cluster.nodes[0];
    sql(n1, "CREATE EXTENSION spock_patch_probe; CREATE TABLE c7 (id int PRIMARY KEY)");
    let script = "BEGIN;
        DO $$ DECLARE x xid; BEGIN
          FOR i IN 1 .. 10000 LOOP
            BEGIN
              INSERT INTO c7 VALUES (i) RETURNING xmin INTO x;
              PERFORM probe_set_subxact_commit_ts(x, '2001-02-03 04:05:06+00', 9);
            EXCEPTION WHEN others THEN RAISE;
            END;
          END LOOP;
        END $$;
        \\timing on
        COMMIT;";
    let t0 = Instant::now();
    let out = sql(n1, script);
    let total = t0.elapsed();
    let commit_ms = out.lines().find_map(|l| l.strip_prefix("Time: ")).unwrap_or("?").to_string();
    // C7 asks for under a second on the reference machine; the figure is
    // printed here and recorded in patches/README.md, not asserted.
    println!("C7: COMMIT of 10000 overrides took {commit_ms} (whole transaction {total:?})");
    assert_eq!(
        sql(
            n1,
            "SELECT count(*) FROM c7, pg_xact_commit_timestamp_origin(c7.xmin) o
              WHERE o.timestamp = '2001-02-03 04:05:06+00' AND o.roident = 9"
        ),
        "10000"
    );
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-patches"]
fn a7_column_options_survive_dump_and_restore() {
    let cluster = cluster("a7", 1, PATCH_CONF);
    let n1 = &cluster.nodes[0];
    sql(
        n1,
        "CREATE DATABASE copy;
         CREATE TABLE t (id int PRIMARY KEY, c int, d text);
         ALTER TABLE t ALTER COLUMN c SET (log_old_value = true, delta_apply_function = spock.delta_apply);",
    );
    let socket = n1.socket_dir.display().to_string();
    let port = n1.port.to_string();
    let dump = cmd::read(
        tool(
            n1.installed.bin("pg_dump"),
            ["-h", socket.as_str(), "-p", port.as_str(), "-U", node::SUPERUSER, "-t", "t", "postgres"],
        ),
        "pg_dump",
    )
    .unwrap();
    assert!(dump.contains("log_old_value"), "pg_dump lost the option:\n{dump}");
    n1.safe_psql("copy", &dump).unwrap();
    let options =
        "SELECT attoptions::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'c'";
    assert_eq!(n1.safe_psql("copy", options).unwrap(), sql(n1, options));
    cluster.destroy().unwrap();
}
