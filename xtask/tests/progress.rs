//! Progress and lag tracking (behaviour.md §13): after a transaction from
//! n1 is applied on n2, n2's `spock.lag_tracker` row names its commit LSN
//! (the replication origin's progress) and its commit time on n1; the row
//! keeps both across a clean restart of n2, and recovers them after an
//! immediate stop (a crash) from n2's commit timestamps. `cargo xtask
//! test-cluster` runs it (a plain `cargo test` ignores it).

mod common;

use common::{barrier, cluster, make_node, sql, wait_for};
use xtask::node::{Node, StopMode};

/// The lag_tracker row of the subscription from n1, as text.
fn row(n2: &Node) -> String {
    sql(n2, "SELECT commit_lsn || ' ' || commit_timestamp FROM spock.lag_tracker WHERE origin_name = 'n1'")
}

/// What the row must say: the origin's progress, and the commit time on n1
/// of the last row n2 applied (read from n2's own commit timestamps).
fn expected(n2: &Node, id: i32) -> String {
    sql(
        n2,
        &format!(
            "SELECT (SELECT remote_lsn FROM pg_replication_origin_status o JOIN spock.subscription s \
                       ON o.external_id = s.sub_slot_name) \
                    || ' ' || (SELECT c.timestamp FROM t, spock.xact_commit_timestamp_origin(t.xmin) c \
                                WHERE t.id = {id})"
        ),
    )
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn lag_tracker_shows_the_last_applied_transaction_across_restarts_and_crashes() {
    let cluster = cluster("progress", 2, "");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(common::DB));
        sql(node, "CREATE TABLE t (id int PRIMARY KEY)");
    }
    sql(n1, "SELECT spock.repset_add_table('default', 't')");
    sql(
        n2,
        &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(common::DB).replace('\'', "''")),
    );
    wait_for(n2, "SELECT count(*) = 1 FROM spock.sub_show_status() WHERE status = 'replicating'", 60);

    // 1. A transaction applied: its commit LSN and time, a lag >= 0, and
    // the provider's positions filled in by the keepalive asked for at
    // connection.
    sql(n1, "INSERT INTO t VALUES (1)");
    let n1_commit_ts = sql(n1, "SELECT pg_xact_commit_timestamp(xmin) FROM t WHERE id = 1");
    barrier(n1, n2, 60);
    wait_for(n2, "SELECT commit_timestamp IS NOT NULL FROM spock.lag_tracker", 30);
    assert_eq!(row(n2), expected(n2, 1), "lag_tracker after the first transaction");
    assert!(row(n2).ends_with(&n1_commit_ts), "commit_timestamp is not n1's: {} vs {n1_commit_ts}", row(n2));
    wait_for(
        n2,
        "SELECT replication_lag >= interval '0' AND received_lsn IS NOT NULL AND remote_insert_lsn IS NOT NULL \
           AND replication_lag_bytes IS NOT NULL FROM spock.lag_tracker",
        30,
    );
    assert_eq!(
        sql(
            n2,
            "SELECT count(*) FROM spock.progress WHERE remote_commit_lsn = (SELECT commit_lsn FROM spock.lag_tracker)"
        ),
        "1"
    );

    // 2. While a local session holds a lock the next change needs, the
    // worker keeps reading: received and insert positions move on, the
    // commit position does not, the lag in bytes grows; it falls back once
    // the lock goes.
    let lock = std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            n2.safe_psql(
                common::DB,
                "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(10); COMMIT;",
            )
        });
        wait_for(
            n2,
            "SELECT count(*) = 1 FROM pg_locks WHERE relation = 't'::regclass AND mode = 'AccessExclusiveLock' AND granted",
            30,
        );
        sql(n1, "INSERT INTO t VALUES (10)");
        // The apply worker now waits for the lock.
        wait_for(
            n2,
            "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type LIKE 'spock apply%' AND wait_event_type = 'Lock'",
            30,
        );
        let before = sql(
            n2,
            "SELECT commit_lsn || ' ' || received_lsn || ' ' || remote_insert_lsn FROM spock.lag_tracker",
        );
        let parts: Vec<&str> = before.split(' ').collect();
        for i in 11..14 {
            sql(n1, &format!("INSERT INTO t VALUES ({i})"));
        }
        wait_for(
            n2,
            &format!(
                "SELECT commit_lsn = '{}' AND received_lsn > '{}' AND remote_insert_lsn > '{}' \
                   AND replication_lag_bytes > 0 FROM spock.lag_tracker",
                parts[0], parts[1], parts[2]
            ),
            30,
        );
        holder.join().unwrap()
    });
    lock.unwrap();
    barrier(n1, n2, 60);
    assert_eq!(sql(n2, "SELECT count(*) FROM t WHERE id >= 10"), "4", "rows applied after the lock went");
    wait_for(n2, "SELECT abs(replication_lag_bytes) < 1000000 FROM spock.lag_tracker", 30);

    // 3. A clean restart: the same row before n1 writes anything.
    let before = row(n2);
    n2.restart().unwrap();
    wait_for(n2, "SELECT commit_timestamp IS NOT NULL FROM spock.lag_tracker", 60);
    assert_eq!(row(n2), before, "lag_tracker after a clean restart");

    // 4. More applied, then a crash (immediate stop: nothing is saved on
    // the way down): the origin's progress and the last applied commit time.
    sql(n1, "INSERT INTO t VALUES (2)");
    sql(n1, "INSERT INTO t VALUES (3)");
    barrier(n1, n2, 60);
    let applied = expected(n2, 3);
    // Apply transactions commit asynchronously: a crash could lose them
    // (they would be streamed again). Make them durable first.
    sql(n2, "CHECKPOINT");
    n2.stop(StopMode::Immediate).unwrap();
    n2.start().unwrap();
    wait_for(n2, "SELECT commit_timestamp IS NOT NULL FROM spock.lag_tracker", 60);
    assert_eq!(row(n2), applied, "lag_tracker after a crash");
    assert!(
        n2.log_tail(200).contains("recovered from the commit timestamps: the last applied transaction"),
        "the crash was not recovered from the commit timestamps:\n{}",
        n2.log_tail(60)
    );
    assert_ne!(applied, before, "the crash case must not reuse the clean restart's record");
    cluster.destroy().unwrap();
}
