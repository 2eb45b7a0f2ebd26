//! Conflict integration tests: what the server log says about resolved
//! conflicts under the logging settings (behaviour.md §7.7), which SQL
//! scenarios cannot read. Driven through the toolkit's cluster library
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
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(common::DB)));
    sql(n1, &format!("SELECT spock.sub_create('sub_n1_n2', '{}')", n2.connstr(common::DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    sql(n1, "SELECT spock.sub_wait_for_sync('sub_n1_n2')");
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
