//! The convergence test of multi-master replication (behaviour.md §7, §9):
//! a 3-node mesh where every node runs pgbench at once against a small hot
//! set of accounts (random deltas on a delta-apply balance, a
//! last-update-wins note) and inserts a history row per transaction. After
//! the load every node must hold the same rows, every history row exactly
//! once, every balance equal to its starting value plus the sum of its
//! history, no apply error, and every subscription still replicating. The
//! second test kills one node with SIGKILL in the middle of the load. Each
//! prints its total TPS. `cargo xtask test-cluster` runs them (a plain
//! `cargo test` ignores them).

mod common;

use std::time::Duration;

use common::{barrier, cluster, make_node, sql, wait_for};
use xtask::cluster::Cluster;
use xtask::node::Node;

/// How long every node runs its load.
const LOAD_SECONDS: u64 = 30;
/// Accounts in the hot set, and what each starts with.
const ACCOUNTS: u32 = 10;
const START_BALANCE: i64 = 100_000;

const SCHEMA: &str = "
CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
ALTER TABLE acct ALTER COLUMN balance SET (log_old_value = true, delta_apply_function = spock.delta_apply);
CREATE TABLE history (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), node text NOT NULL,
                      aid int NOT NULL, delta bigint NOT NULL);
SELECT spock.repset_add_table('default', 'acct');
SELECT spock.repset_add_table('default', 'history');
";

/// A started 3-node mesh with the schema on every node and the accounts
/// replicated everywhere.
fn mesh(tag: &str) -> Cluster {
    let cluster = cluster(tag, 3, "fsync = off\n");
    for node in &cluster.nodes {
        make_node(node, &node.connstr(common::DB));
        sql(node, SCHEMA);
    }
    for node in &cluster.nodes {
        for provider in cluster.nodes.iter().filter(|p| p.name != node.name) {
            sql(
                node,
                &format!(
                    "SELECT spock.sub_create('sub_{}_{}', '{}')",
                    node.name,
                    provider.name,
                    provider.connstr(common::DB).replace('\'', "''")
                ),
            );
        }
        wait_for(node, "SELECT count(*) = 2 FROM spock.sub_show_status() WHERE status = 'replicating'", 60);
    }
    let n1 = &cluster.nodes[0];
    sql(n1, &format!("INSERT INTO acct SELECT g, {START_BALANCE} FROM generate_series(1, {ACCOUNTS}) g"));
    for other in &cluster.nodes[1..] {
        barrier(n1, other, 60);
    }
    cluster
}

/// The pgbench script of one node: one account's balance moved by a random
/// delta and its note set, and the history row of that move.
fn script(node: &Node) -> String {
    format!(
        "\\set aid random(1, {ACCOUNTS})\n\
         \\set delta random(-500, 500)\n\
         BEGIN;\n\
         UPDATE acct SET balance = balance + :delta, note = '{0}-' || :client_id WHERE id = :aid;\n\
         INSERT INTO history (node, aid, delta) VALUES ('{0}', :aid, :delta);\n\
         END;\n",
        node.name
    )
}

/// pgbench's count of committed transactions and its TPS.
fn processed(report: &str) -> (u64, f64) {
    let count = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split(['/', ' ']).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in the pgbench report:\n{report}"));
    let tps = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    (count, tps)
}

/// Runs the load on every node at once; `during` runs on the test's thread
/// meanwhile. Returns each node's pgbench report (an error for a node
/// whose load was cut short).
fn load(cluster: &Cluster, during: impl FnOnce()) -> Vec<Result<String, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .nodes
            .iter()
            .map(|node| {
                let file = cluster.nodes[0].base.parent().unwrap().join(format!("load-{}.sql", node.name));
                std::fs::write(&file, script(node)).unwrap();
                scope.spawn(move || {
                    node.pgbench(
                        common::DB,
                        &[
                            "-n",
                            "-c",
                            "2",
                            "-T",
                            &LOAD_SECONDS.to_string(),
                            "-f",
                            &file.display().to_string(),
                        ],
                    )
                    .map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        during();
        handles.into_iter().map(|h| h.join().expect("the load thread does not panic")).collect::<Vec<_>>()
    })
}

/// Waits until every node has applied everything every other node
/// committed, then checks that the mesh converged.
fn check_converged(cluster: &Cluster, committed: &[(String, u64)]) {
    for provider in &cluster.nodes {
        for subscriber in cluster.nodes.iter().filter(|s| s.name != provider.name) {
            barrier(provider, subscriber, 300);
        }
    }
    let digest = "SELECT (SELECT md5(string_agg(format('%s:%s:%s', id, balance, note), ',' ORDER BY id)) FROM acct) \
                  || ' ' || (SELECT md5(string_agg(format('%s:%s:%s:%s', id, node, aid, delta), ',' ORDER BY id)) FROM history)";
    let first = sql(&cluster.nodes[0], digest);
    for node in &cluster.nodes {
        assert_eq!(
            sql(node, digest),
            first,
            "node {} holds other rows than {}",
            node.name,
            cluster.nodes[0].name
        );
        // Every balance is its start plus the sum of its history.
        let wrong = sql(
            node,
            &format!(
                "SELECT count(*) FROM acct a WHERE balance <> {START_BALANCE} \
                 + coalesce((SELECT sum(delta) FROM history h WHERE h.aid = a.id), 0)"
            ),
        );
        assert_eq!(wrong, "0", "balances on {} are not the sums of their history", node.name);
        // No history row lost or doubled: each node's committed count.
        for (name, count) in committed {
            let rows = sql(node, &format!("SELECT count(*) FROM history WHERE node = '{name}'"));
            assert_eq!(rows, count.to_string(), "history rows of {name} on {}", node.name);
        }
        assert_eq!(
            sql(node, "SELECT count(*) FROM spock.exception_log"),
            "0",
            "apply errors on {}",
            node.name
        );
        wait_for(node, "SELECT count(*) = 2 FROM spock.sub_show_status() WHERE status = 'replicating'", 60);
    }
}

/// Each node's committed transaction count, from its pgbench report (the
/// load must have run to its end).
fn committed_per_node(nodes: &[Node], reports: &[Result<String, String>]) -> Vec<(String, u64)> {
    nodes
        .iter()
        .zip(reports)
        .map(|(node, r)| {
            let report = r.as_ref().unwrap_or_else(|e| panic!("the load on {} failed: {e}", node.name));
            (node.name.clone(), processed(report).0)
        })
        .collect()
}

/// Prints the figures of one run.
fn print_tps(what: &str, reports: &[Result<String, String>], cluster: &Cluster) {
    let mut total = 0.0;
    for (node, report) in cluster.nodes.iter().zip(reports) {
        match report {
            Ok(text) => {
                let (count, tps) = processed(text);
                total += tps;
                println!("    {what}: {} committed {count} transactions, {tps:.0} TPS", node.name);
            }
            Err(_) => println!("    {what}: {} was killed during its load", node.name),
        }
    }
    println!("    {what}: total {total:.0} TPS over {LOAD_SECONDS} s on 3 nodes");
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_three_node_mesh_under_concurrent_load_converges() {
    let cluster = mesh("converge");
    let reports = load(&cluster, || {});
    print_tps("convergence", &reports, &cluster);
    let committed = committed_per_node(&cluster.nodes, &reports);
    check_converged(&cluster, &committed);
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_mesh_converges_after_a_node_is_killed_under_load() {
    let cluster = mesh("converge-kill");
    let victim = &cluster.nodes[2];
    let reports = load(&cluster, || {
        std::thread::sleep(Duration::from_secs(LOAD_SECONDS / 2));
        victim.kill9().unwrap();
        assert!(!victim.is_running(), "{} still runs after SIGKILL", victim.name);
        std::thread::sleep(Duration::from_secs(2));
        victim.start().unwrap();
    });
    print_tps("convergence with kill -9", &reports, &cluster);
    assert!(reports[2].is_err(), "the load on the killed node {} went on", victim.name);
    // The survivors' counts are pgbench's; the killed node's are what it
    // committed before dying (recovered from its WAL), which every other
    // node must hold too.
    let mut committed = committed_per_node(&cluster.nodes[..2], &reports);
    let victim_rows: u64 =
        sql(victim, &format!("SELECT count(*) FROM history WHERE node = '{}'", victim.name)).parse().unwrap();
    assert!(victim_rows > 0, "{} committed nothing before it was killed", victim.name);
    committed.push((victim.name.clone(), victim_rows));
    check_converged(&cluster, &committed);
    cluster.destroy().unwrap();
}
