//! The original product's quick start, done literally on a 2-node cluster of
//! our build (behaviour.md §10): with automatic DDL replication and
//! automatic set membership on both nodes, `pgbench -i -s 10` on n1 alone
//! creates the pgbench tables on n2 and fills them there; then pgbench runs
//! on both nodes at once, and the two nodes end with identical accounts,
//! branches and tellers. `cargo xtask test-cluster` runs it (a plain `cargo
//! test` ignores it).

mod common;

use common::{barrier, cluster, sql, table_digest, wait_for};

const TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "tid, bid, aid, delta, mtime"),
];

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn the_quick_start_replicates_pgbench_from_one_node() {
    let cluster = cluster(
        "quickstart",
        2,
        "fsync = off\nspock.enable_ddl_replication = on\nspock.include_ddl_repset = on\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    // node_create on each, sub_create both ways, wait until both replicate.
    for node in &cluster.nodes {
        sql(node, "CREATE EXTENSION spock");
    }
    cluster.wire_mesh(common::DB, std::time::Duration::from_secs(120)).unwrap();

    // pgbench -i on n1 only: its CREATE TABLEs (no keys yet: insert-only
    // set), TRUNCATE and COPY, then ALTER TABLE ... ADD PRIMARY KEY (moving
    // three tables to default) all replicate; its VACUUM stays local.
    let init = n1.pgbench(common::DB, &["-i", "-s", "10"]).unwrap();
    assert!(
        init.contains("not replicated (VACUUM"),
        "pgbench -i's VACUUM was not reported as local:\n{init}"
    );
    barrier(n1, n2, 300);
    for (table, order) in TABLES {
        assert_eq!(
            table_digest(n2, table, order),
            table_digest(n1, table, order),
            "{table} differs after pgbench -i"
        );
    }
    assert_eq!(sql(n2, "SELECT count(*) FROM pgbench_accounts"), "1000000");
    let sets = "SELECT string_agg(relname || ':' || set_name, ' ' ORDER BY relname) FROM spock.tables \
                WHERE relname LIKE 'pgbench%'";
    let expected = "pgbench_accounts:default pgbench_branches:default pgbench_history:default_insert_only \
                    pgbench_tellers:default";
    assert_eq!(sql(n1, sets), expected, "sets on n1");
    assert_eq!(sql(n2, sets), expected, "sets on n2");

    // The TPC-B-like load on both nodes at once. (pgbench truncates
    // pgbench_history on each node before it starts, and a TRUNCATE is not
    // conflict-checked, so only the three tables the load updates are
    // compared.)
    let reports: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = [n1, n2]
            .into_iter()
            .map(|node| scope.spawn(move || node.pgbench(common::DB, &["-c", "4", "-T", "30"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    for (node, report) in [n1, n2].iter().zip(&reports) {
        let tps = report.lines().find(|l| l.starts_with("tps = ")).unwrap_or("tps = ?");
        println!("    quick start load on {}: {tps}", node.name);
    }
    barrier(n1, n2, 300);
    barrier(n2, n1, 300);
    for (table, order) in &TABLES[..3] {
        assert_eq!(
            table_digest(n2, table, order),
            table_digest(n1, table, order),
            "{table} differs after the load"
        );
    }
    for node in [n1, n2] {
        assert_eq!(
            sql(node, "SELECT count(*) FROM spock.exception_log"),
            "0",
            "apply errors on {}",
            node.name
        );
        wait_for(node, "SELECT count(*) = 1 FROM spock.sub_show_status() WHERE status = 'replicating'", 60);
    }
    cluster.destroy().unwrap();
}

/// What `cargo xtask cluster up --pgbench` sets up: the pgbench tables
/// created on n1 and replicated, pgbench_history keyed by per-node
/// sequences. pgbench's own script on every node at once then inserts
/// history rows whose keys never collide: every node ends with all of them.
#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn per_node_sequences_key_pgbench_history_on_every_node() {
    let cluster = cluster("pgbench-keys", 3, "fsync = off\n");
    for node in &cluster.nodes {
        sql(node, "CREATE EXTENSION spock");
    }
    cluster.wire_mesh(common::DB, std::time::Duration::from_secs(120)).unwrap();
    cluster.init_pgbench(common::DB, 1).unwrap();
    let counts: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .nodes
            .iter()
            .map(|node| {
                scope.spawn(move || {
                    let report = node.pgbench(common::DB, &["-n", "-c", "2", "-T", "10"]).unwrap();
                    report
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("number of transactions actually processed: "))
                        .and_then(|v| v.split(['/', ' ']).next().map(str::to_string))
                        .unwrap_or_else(|| panic!("no transaction count in the report:\n{report}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected: u64 = counts.iter().map(|c| c.parse::<u64>().unwrap()).sum();
    for provider in &cluster.nodes {
        for subscriber in cluster.nodes.iter().filter(|s| s.name != provider.name) {
            barrier(provider, subscriber, 300);
        }
    }
    let first = table_digest(&cluster.nodes[0], "pgbench_history", "hid");
    for node in &cluster.nodes {
        assert_eq!(
            sql(node, "SELECT count(*) || ' ' || count(DISTINCT hid) FROM pgbench_history"),
            format!("{expected} {expected}"),
            "history rows on {}",
            node.name
        );
        assert_eq!(
            table_digest(node, "pgbench_history", "hid"),
            first,
            "pgbench_history differs on {}",
            node.name
        );
        assert_eq!(
            sql(node, "SELECT count(*) FROM spock.exception_log"),
            "0",
            "apply errors on {}",
            node.name
        );
    }
    cluster.destroy().unwrap();
}
