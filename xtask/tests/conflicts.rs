//! Conflict and apply-error integration tests that SQL scenarios cannot
//! express: what the server log says about resolved conflicts under the
//! logging settings (behaviour.md §7.7), and a worker killed while it
//! handles a failed transaction in exception mode (§8). Driven through the toolkit's cluster library
//! against a server the toolkit built; `cargo xtask test-cluster` runs them
//! (a plain `cargo test` ignores them).

mod common;

use common::{barrier, cluster, make_node, sql};
use xtask::node::Node;

/// The server log of `node` written after `from` bytes.
fn log_since(node: &Node, from: usize) -> String {
    let text = std::fs::read_to_string(node.log_file()).expect("the node's log file is readable");
    text.get(from..).unwrap_or_default().to_string()
}

fn log_len(node: &Node) -> usize {
    std::fs::metadata(node.log_file()).map(|m| m.len() as usize).unwrap_or(0)
}

/// The conflict messages in a stretch of log: (message line, the DETAIL line after it).
fn conflict_messages(log: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("spock conflict ") {
            let detail = lines.get(i + 1).filter(|l| l.contains("DETAIL:")).copied().unwrap_or_default();
            out.push((line.to_string(), detail.to_string()));
        }
    }
    out
}

/// Subscribes n2 to n1 (`sub_n2_n1`) and n1 to n2 (`sub_n1_n2`), and waits
/// until both stream.
fn subscribe_both_ways(n1: &Node, n2: &Node) {
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(common::DB)));
    sql(n1, &format!("SELECT spock.sub_create('sub_n1_n2', '{}')", n2.connstr(common::DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    sql(n1, "SELECT spock.sub_wait_for_sync('sub_n1_n2')");
}

/// Disables both subscriptions, runs `on_n1` then `on_n2` (n2 commits
/// later), re-enables both and waits until each side has the other's changes.
fn while_disconnected(n1: &Node, n2: &Node, on_n1: &[&str], on_n2: &[&str]) {
    sql(n1, "SELECT spock.sub_disable('sub_n1_n2', immediate := true)");
    sql(n2, "SELECT spock.sub_disable('sub_n2_n1', immediate := true)");
    for s in on_n1 {
        sql(n1, s);
    }
    for s in on_n2 {
        sql(n2, s);
    }
    sql(n1, "SELECT spock.sub_enable('sub_n1_n2')");
    sql(n2, "SELECT spock.sub_enable('sub_n2_n1')");
    barrier(n1, n2, 60);
    barrier(n2, n1, 60);
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn conflicts_are_logged_as_the_settings_say() {
    // save_resolutions stays off: conflicts are logged all the same.
    let cluster = cluster("conflict-log", 2, "fsync = off\nspock.conflict_log_level = log\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(common::DB));
        sql(node, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        sql(node, "SELECT spock.repset_add_table('default', 't')");
        // Row 2 exists on both nodes before any subscription: "restored".
        sql(node, "INSERT INTO t VALUES (2, 'restored')");
    }
    sql(n1, "ALTER SYSTEM SET spock.log_origin_change = since_sub_creation");
    sql(n1, "SELECT pg_reload_conf()");
    subscribe_both_ways(n1, n2);
    sql(n1, "INSERT INTO t VALUES (1, 'a')");
    barrier(n1, n2, 60);

    // n1 writes 'x' into row 1, then n2 writes 'y' (later) and overwrites
    // the restored row 2; both insert row 5.
    let (from1, from2) = (log_len(n1), log_len(n2));
    while_disconnected(
        n1,
        n2,
        &["UPDATE t SET v = 'x' WHERE id = 1", "INSERT INTO t VALUES (5, 'p')"],
        &[
            "UPDATE t SET v = 'y' WHERE id = 1",
            "INSERT INTO t VALUES (5, 'q')",
            "UPDATE t SET v = 'two' WHERE id = 2",
        ],
    );
    for node in [n1, n2] {
        assert_eq!(sql(node, "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t"), "1=y,2=two,5=q");
        assert_eq!(sql(node, "SELECT count(*) FROM spock.resolutions"), "0", "save_resolutions is off");
    }

    // n1: the insert_exists it resolved, and, under since_sub_creation, the
    // overwrite of its own 'x' (committed after the subscription existed),
    // but not of the restored row 2.
    let on_n1 = conflict_messages(&log_since(n1, from1));
    let kinds: Vec<&str> =
        on_n1.iter().map(|(m, _)| m.split("spock conflict ").nth(1).unwrap_or("")).collect();
    assert_eq!(
        kinds,
        [
            "update_origin_differs on public.t (index t_pkey): apply_remote",
            "insert_exists on public.t (index t_pkey): apply_remote"
        ],
        "n1's conflict messages:\n{on_n1:#?}"
    );
    assert!(
        on_n1[0].1.contains(r#"{"id":1,"v":"x"}"#),
        "the detail shows the overwritten row: {}",
        on_n1[0].1
    );
    assert!(on_n1[0].1.contains(r#"{"id":1,"v":"y"}"#), "the detail shows the incoming row: {}", on_n1[0].1);
    assert!(on_n1[0].1.contains("commit LSN"), "the detail gives the commit LSN: {}", on_n1[0].1);
    // n2 (log_origin_change = none): the two versions it kept; overwriting
    // nothing of another origin is not logged.
    let on_n2 = conflict_messages(&log_since(n2, from2));
    let kinds: Vec<&str> =
        on_n2.iter().map(|(m, _)| m.split("spock conflict ").nth(1).unwrap_or("")).collect();
    assert_eq!(
        kinds,
        [
            "update_origin_differs on public.t (index t_pkey): keep_local",
            "insert_exists on public.t (index t_pkey): keep_local"
        ],
        "n2's conflict messages:\n{on_n2:#?}"
    );

    // The same overwrite under remote_only_differs (the overwritten version
    // was written on n1 itself) and none: no message on n1.
    for setting in ["remote_only_differs", "none"] {
        sql(n1, &format!("ALTER SYSTEM SET spock.log_origin_change = {setting}"));
        sql(n1, "SELECT pg_reload_conf()");
        let from1 = log_len(n1);
        while_disconnected(
            n1,
            n2,
            &["UPDATE t SET v = 'x2' WHERE id = 1"],
            &["UPDATE t SET v = 'y2' WHERE id = 1"],
        );
        assert_eq!(sql(n1, "SELECT v FROM t WHERE id = 1"), "y2");
        let on_n1 = conflict_messages(&log_since(n1, from1));
        assert!(on_n1.is_empty(), "{setting}: n1 logged {on_n1:#?}");
    }
    // Every subscription is still replicating.
    for node in [n1, n2] {
        assert_eq!(sql(node, "SELECT string_agg(status, ',') FROM spock.sub_show_status()"), "replicating");
    }
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_worker_killed_while_handling_a_failed_transaction_changes_nothing() {
    let cluster = cluster(
        "exception-kill",
        2,
        "fsync = off\nspock.restart_delay_default = 1000\nspock.exception_behaviour = discard\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(common::DB));
        sql(node, "CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t3 (id int PRIMARY KEY)");
    }
    sql(n1, "CREATE TABLE t2 (id int PRIMARY KEY)");
    sql(n1, "SELECT spock.repset_add_table('default', t) FROM unnest(ARRAY['t1', 't2', 't3']) t");
    // Each row of t1 takes 50 ms to apply on n2: the handling is slow
    // enough to be interrupted.
    sql(
        n2,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON t1 FOR EACH ROW EXECUTE FUNCTION slow();
         ALTER TABLE t1 ENABLE ALWAYS TRIGGER slow",
    );
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(common::DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");

    // One transaction: 40 rows into t1, one into t2 (missing on n2), 40 into t3.
    let from = log_len(n2);
    sql(
        n1,
        "BEGIN;
         INSERT INTO t1 SELECT generate_series(1, 40);
         INSERT INTO t2 VALUES (1);
         INSERT INTO t3 SELECT generate_series(1, 40);
         COMMIT",
    );
    // Kill the worker once it is handling the transaction in exception mode.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !log_since(n2, from).contains("in exception mode discard") {
        assert!(std::time::Instant::now() < deadline, "no exception handling began:\n{}", n2.log_tail(40));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = sql(
        n2,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE backend_type = 'spock apply') killed",
    );
    assert_eq!(killed, "1", "no apply worker to kill");

    barrier(n1, n2, 120);
    assert_eq!(sql(n2, "SELECT count(*) FROM t1"), "40");
    assert_eq!(sql(n2, "SELECT count(*) FROM t3"), "40");
    assert_eq!(
        sql(
            n2,
            "SELECT string_agg(command_counter || ' ' || table_name || ' ' || left(error_message, 7), ',') FROM spock.exception_log"
        ),
        "41 t2 [42P01]",
        "exactly the failing operation is logged, once"
    );
    assert_eq!(sql(n2, "SELECT status FROM spock.sub_show_status()"), "replicating");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn an_update_colliding_on_another_unique_index_is_update_exists() {
    let cluster = cluster(
        "update-exists",
        2,
        "fsync = off\nspock.conflict_log_level = log\nspock.exception_behaviour = discard\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(common::DB));
        sql(node, "CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE)");
        sql(node, "SELECT spock.repset_add_table('default', 'u')");
    }
    subscribe_both_ways(n1, n2);
    sql(n1, "INSERT INTO u VALUES (10, 'x')");
    barrier(n1, n2, 60);

    // n1 inserts a row with email 'y' while n2 gives row 10 that email.
    let from1 = log_len(n1);
    while_disconnected(
        n1,
        n2,
        &["INSERT INTO u VALUES (11, 'y')"],
        &["UPDATE u SET email = 'y' WHERE id = 10"],
    );
    // On n1 the UPDATE collides with row 11 on u_email_key: not resolvable,
    // an apply error handled by exception handling (discard), with its own
    // conflict message naming both rows.
    let on_n1 = conflict_messages(&log_since(n1, from1));
    let (message, detail) = on_n1
        .iter()
        .find(|(m, _)| m.contains("update_exists"))
        .unwrap_or_else(|| panic!("no update_exists message on n1:\n{on_n1:#?}"));
    assert!(
        message.contains("spock conflict update_exists on public.u (index u_email_key): error"),
        "{message}"
    );
    assert!(detail.contains(r#"{"id":11,"email":"y"}"#), "the detail shows the colliding row: {detail}");
    assert!(detail.contains(r#"{"id":10,"email":"y"}"#), "the detail shows the incoming row: {detail}");
    // The exception_log row shows the local row the UPDATE collided with:
    // written on n1 itself, with its commit timestamp.
    assert_eq!(
        sql(
            n1,
            "SELECT local_tup::text, local_origin = (SELECT node_id FROM spock.node WHERE node_name = 'n1'),
                    local_commit_ts IS NOT NULL
               FROM spock.exception_log WHERE error_message LIKE '[23505] update_exists:%u_email_key%'"
        ),
        r#"{"id": 11, "email": "y"}|t|t"#,
        "n1's exception_log"
    );
    assert_eq!(sql(n1, "SELECT string_agg(id || '=' || email, ',' ORDER BY id) FROM u"), "10=x,11=y");
    // Replication goes on.
    sql(n1, "INSERT INTO u VALUES (12, 'z')");
    barrier(n1, n2, 60);
    assert_eq!(sql(n2, "SELECT email FROM u WHERE id = 12"), "z");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn equal_commit_timestamps_are_settled_alike_on_every_node() {
    // The commit clock (core patch 030), moved ahead to the same value on
    // both nodes through the test-only probe extension, gives the next
    // commit on each the same timestamp: clock + 1 µs. Nothing else
    // commits meanwhile (autovacuum off, subscriptions disabled).
    xtask::extension::ensure_crate_installed(&common::installed(), &xtask::extension::patch_probe()).unwrap();
    let cluster = cluster(
        "tie",
        2,
        "fsync = off\nautovacuum = off\nspock.conflict_log_level = log\nspock.log_origin_change = since_sub_creation\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    // n2 has the lower tiebreaker, so n2's version wins a tie everywhere.
    for (node, tiebreaker) in [(n1, 2), (n2, 1)] {
        sql(node, "CREATE EXTENSION spock");
        sql(node, "CREATE EXTENSION spock_patch_probe");
        sql(
            node,
            &format!(
                "SELECT spock.node_create('{}', '{}', info := '{{\"tiebreaker\": {tiebreaker}}}')",
                node.name,
                node.connstr(common::DB)
            ),
        );
        sql(node, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        sql(node, "SELECT spock.repset_add_table('default', 't')");
    }
    subscribe_both_ways(n1, n2);
    sql(n1, "INSERT INTO t VALUES (1, 'start')");
    barrier(n1, n2, 60);

    let (from1, from2) = (log_len(n1), log_len(n2));
    let ahead = sql(n1, "SELECT now() + interval '20 seconds'");
    let commit_ts = |node: &Node| sql(node, "SELECT pg_xact_commit_timestamp(xmin) FROM t WHERE id = 1");
    sql(n1, "SELECT spock.sub_disable('sub_n1_n2', immediate := true)");
    sql(n2, "SELECT spock.sub_disable('sub_n2_n1', immediate := true)");
    for (node, value) in [(n1, "n1"), (n2, "n2")] {
        sql(node, &format!("SELECT probe_commit_clock_advance('{ahead}')"));
        sql(node, &format!("UPDATE t SET v = '{value}' WHERE id = 1"));
    }
    let (ts1, ts2) = (commit_ts(n1), commit_ts(n2));
    assert_eq!(ts1, ts2, "the two updates were to commit at the same time");
    sql(n1, "SELECT spock.sub_enable('sub_n1_n2')");
    sql(n2, "SELECT spock.sub_enable('sub_n2_n1')");
    barrier(n1, n2, 60);
    barrier(n2, n1, 60);

    // Both nodes hold n2's version: applied on n1, kept on n2.
    for node in [n1, n2] {
        assert_eq!(sql(node, "SELECT v FROM t WHERE id = 1"), "n2", "the row on {}", node.name);
    }
    let tie = "equal commit timestamps; the version of node \"n2\" (tiebreaker 1) wins over node \"n1\" (tiebreaker 2)";
    for (node, from, resolution) in [(n1, from1, "apply_remote"), (n2, from2, "keep_local")] {
        let log = log_since(node, from);
        assert!(log.contains(tie), "{} does not log the tie:\n{log}", node.name);
        let kinds: Vec<String> = conflict_messages(&log)
            .into_iter()
            .map(|(m, _)| m.split("spock conflict ").nth(1).unwrap_or("").to_string())
            .collect();
        assert_eq!(
            kinds,
            [format!("update_origin_differs on public.t (index t_pkey): {resolution}")],
            "conflict messages on {}",
            node.name
        );
    }
    cluster.destroy().unwrap();
}
