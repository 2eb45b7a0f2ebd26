//! Adding a node to a live cluster and removing it (issue "nodes that join
//! with their data", item 4): a 3-node mesh runs pgbench on every node;
//! meanwhile `Cluster::add_node` (what `cargo xtask cluster add-node` runs)
//! adds n4 with n1's structure and data. After the load, all four nodes
//! hold identical pgbench tables (ordered hashes), every subscription
//! replicates, and a write on n4 reaches the others. Removing n4 leaves no
//! subscription, slot or origin of it on the others. `cargo xtask
//! test-cluster` runs it (a plain `cargo test` ignores it).

mod common;

use std::time::Duration;

use common::{DB, cluster, sql, table_digest};
use xtask::node::Node;

const TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "hid"),
];

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_fourth_node_joins_a_cluster_under_load_and_leaves_again() {
    let mut cluster = cluster("addnode", 3, "fsync = off\n");
    for node in &cluster.nodes {
        sql(node, "CREATE EXTENSION spock");
    }
    cluster.wire_mesh(DB, Duration::from_secs(120)).unwrap();
    cluster.init_pgbench(DB, 1).unwrap();

    // pgbench on the three nodes; n4 joins during it.
    let loaders: Vec<Node> = cluster.nodes.clone();
    let added = std::thread::scope(|scope| {
        let loads: Vec<_> = loaders
            .iter()
            .map(|node| scope.spawn(move || node.pgbench(DB, &["-n", "-c", "2", "-T", "25"])))
            .collect();
        std::thread::sleep(Duration::from_secs(5));
        let added = cluster.add_node(DB, "n1", Duration::from_secs(300));
        for (node, load) in loaders.iter().zip(loads) {
            let report = load.join().unwrap().unwrap();
            let tx =
                report.lines().find(|l| l.contains("actually processed")).unwrap_or("?").trim().to_string();
            println!("    load on {} while n4 joined: {tx}", node.name);
        }
        added
    });
    let added =
        added.unwrap_or_else(|e| panic!("{e:#}\n--- log of n4 ---\n{}", cluster.nodes[3].log_tail(60)));
    assert_eq!(added, "n4");
    let n4 = &cluster.nodes[3];

    for node in &cluster.nodes {
        cluster.wait_applied(DB, node, Duration::from_secs(300)).unwrap();
    }
    for (table, order) in TABLES {
        let expected = table_digest(&cluster.nodes[0], table, order);
        for node in &cluster.nodes[1..] {
            assert_eq!(
                table_digest(node, table, order),
                expected,
                "{table} on {} differs from n1",
                node.name
            );
        }
    }
    let states = cluster.subscription_states(DB);
    assert_eq!(states.len(), 12, "{states:#?}");
    assert!(states.iter().all(|s| s.contains("|replicating|")), "{states:#?}");
    for node in &cluster.nodes {
        assert_eq!(sql(node, "SELECT count(*) FROM spock.exception_log"), "0", "exceptions on {}", node.name);
    }

    // n4 writes like any node.
    sql(n4, "UPDATE pgbench_branches SET filler = 'from n4' WHERE bid = 1");
    cluster.wait_applied(DB, n4, Duration::from_secs(60)).unwrap();
    for node in &cluster.nodes {
        assert_eq!(
            sql(node, "SELECT rtrim(filler) FROM pgbench_branches WHERE bid = 1"),
            "from n4",
            "{}",
            node.name
        );
    }

    // Removing n4 leaves nothing of it on the others.
    cluster.remove_node(DB, "n4").unwrap();
    assert_eq!(cluster.nodes.len(), 3);
    for node in &cluster.nodes {
        assert_eq!(
            sql(
                node,
                "SELECT (SELECT count(*) FROM spock.subscription) || ' ' ||
                        (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%n4%') || ' ' ||
                        (SELECT count(*) FROM pg_replication_origin WHERE roname LIKE '%n4%')"
            ),
            "2 0 0",
            "subscriptions, slots of n4, origins of n4 on {}",
            node.name
        );
    }
    sql(&cluster.nodes[0], "UPDATE pgbench_branches SET filler = 'after n4' WHERE bid = 1");
    cluster.wait_applied(DB, &cluster.nodes[0], Duration::from_secs(60)).unwrap();
    cluster.destroy().unwrap();
}
