//! Helpers shared by the integration tests: the server built for the major
//! under test, and fresh clusters in that build's scratch space.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use xtask::account::RunAs;
use xtask::cluster::Cluster;
use xtask::flags::Profile;
use xtask::layout::PgDirs;
use xtask::node::Node;
use xtask::pgbuild::Installed;

/// The server `cargo xtask` built for `SPOCK_TEST_PG_MAJOR`.
pub fn installed() -> Installed {
    let major: u32 = std::env::var("SPOCK_TEST_PG_MAJOR")
        .expect(
            "SPOCK_TEST_PG_MAJOR names the major to test (set by cargo xtask test-cluster / test-patches)",
        )
        .parse()
        .expect("SPOCK_TEST_PG_MAJOR is a number");
    let dirs = PgDirs::new(major, Profile::Dev);
    Installed::load(&dirs).unwrap_or_else(|| panic!("no server installed in {}", dirs.install().display()))
}

/// A fresh, started cluster in the build's scratch space. Call `destroy` at
/// the end of a passing test; a failing test leaves it for inspection.
pub fn cluster(tag: &str, nodes: usize, conf: &str) -> Cluster {
    let installed = installed();
    let dir: PathBuf = installed.dirs.scratch().join(format!("it-{tag}"));
    if let Some(old) = Cluster::load(&dir).unwrap() {
        old.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::create(&dir, &installed, nodes, &RunAs::detect().unwrap(), conf).unwrap();
    cluster.start().unwrap();
    cluster
}

/// The database the integration tests use.
pub const DB: &str = "postgres";

/// Runs `sql` on `node`, panicking with the node's log tail.
pub fn sql(node: &Node, sql: &str) -> String {
    node.safe_psql(DB, sql)
        .unwrap_or_else(|e| panic!("{e:#}\n--- log of {} ---\n{}", node.name, node.log_tail(40)))
}

/// Waits until `query` returns `t` on `node`, panicking with its log.
pub fn wait_for(node: &Node, query: &str, seconds: u64) {
    node.poll_query_until(DB, query, Duration::from_secs(seconds))
        .unwrap_or_else(|e| panic!("{e:#}\n--- log of {} ---\n{}", node.name, node.log_tail(60)));
}

/// The extension and a spock node named like the cluster node, with `dsn`
/// as its own connection string.
pub fn make_node(node: &Node, dsn: &str) {
    sql(node, "CREATE EXTENSION IF NOT EXISTS spock");
    sql(node, &format!("SELECT spock.node_create('{}', '{}')", node.name, dsn.replace('\'', "''")));
}

/// Waits until everything `provider` committed so far has been applied on `subscriber`.
pub fn barrier(provider: &Node, subscriber: &Node, seconds: u64) {
    let lsn = sql(provider, "SELECT spock.sync_event()");
    let reached = sql(
        subscriber,
        &format!("CALL spock.wait_for_sync_event(NULL, '{}', '{lsn}', {seconds})", provider.name),
    );
    assert_eq!(
        reached, "t",
        "{} did not apply {}'s changes up to {lsn} within {seconds} s",
        subscriber.name, provider.name
    );
}

/// An ordered hash of a whole table: its row count and the md5 of its rows
/// in `order`.
pub fn table_digest(node: &Node, table: &str, order: &str) -> String {
    sql(
        node,
        &format!("SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY {order})) FROM {table} t"),
    )
}
