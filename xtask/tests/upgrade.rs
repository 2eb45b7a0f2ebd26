//! Extension upgrades (issue "packages a DBA installs", the upgrade path):
//! a database created with each earlier release's install script and
//! updated by `ALTER EXTENSION spock UPDATE` has exactly the objects of a
//! fresh `CREATE EXTENSION`; the manager updates an old catalog by itself
//! when the server starts on the new library, and refuses, once and with
//! both versions named, a catalog it cannot update; and a two-node cluster
//! replicating both ways on the previous release is upgraded node by node
//! while the other node takes writes. `cargo xtask test-cluster` runs these
//! (a plain `cargo test` ignores them).

mod common;

use std::time::Duration;

use common::{DB, barrier, cluster, installed, sql, table_digest, wait_for};
use xtask::account::RunAs;
use xtask::cluster::Cluster;
use xtask::node::Node;
use xtask::releases;

/// The spock objects of a database, one line each (tests/sql/extension_objects.sql).
fn objects(node: &Node, db: &str) -> Vec<String> {
    node.safe_psql(db, include_str!("sql/extension_objects.sql"))
        .unwrap_or_else(|e| panic!("{e:#}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `sql` expecting an error and returns psql's message with its SQLSTATE.
fn error_of(node: &Node, db: &str, sql: &str) -> String {
    match node.safe_psql(db, &format!("\\set VERBOSITY verbose\n{sql}")) {
        Ok(out) => panic!("`{sql}` succeeded ({out}) but should have failed"),
        Err(e) => format!("{e:#}"),
    }
}

/// The lines only one of two object lists has, for a readable failure.
fn difference(left: &[String], right: &[String]) -> String {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|l| !b.contains(l)).map(|l| format!("  {l}")).collect()
    };
    format!(
        "only after the update:\n{}\nonly in a fresh install:\n{}",
        only(left, right).join("\n"),
        only(right, left).join("\n")
    )
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn updates_lead_to_the_objects_of_a_fresh_install_and_the_manager_runs_them() {
    let installed = installed();
    let releases = releases::install_release_scripts(&installed).unwrap();
    let current = xtask::extension::version().unwrap();
    let cluster = cluster("upgrade-catalog", 1, "fsync = off\n");
    let n1 = &cluster.nodes[0];

    sql(n1, "CREATE DATABASE fresh");
    sql(n1, "CREATE EXTENSION spock");
    n1.safe_psql("fresh", "CREATE EXTENSION spock").unwrap();
    let fresh = objects(n1, "fresh");
    assert!(fresh.len() > 100, "the object list is too short to mean anything: {fresh:?}");
    assert!(fresh.iter().any(|l| l.contains("function spock.sub_alter_interface(name,name)")), "{fresh:?}");

    for release in releases.iter().filter(|r| r.version != current) {
        let db = format!("from_{}", release.version.replace('.', "_"));
        sql(n1, &format!("CREATE DATABASE {db}"));
        // Created and updated in one transaction, so that the manager (which
        // would update it by itself) cannot come first.
        let version = n1
            .safe_psql(
                &db,
                &format!(
                    "BEGIN;
                     CREATE EXTENSION spock VERSION '{}';
                     ALTER EXTENSION spock UPDATE;
                     SELECT extversion FROM pg_extension WHERE extname = 'spock';
                     COMMIT;",
                    release.version
                ),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(version, current, "ALTER EXTENSION spock UPDATE from {} stopped early", release.version);
        let updated = objects(n1, &db);
        assert!(
            updated == fresh,
            "spock {} updated to {current} differs from a fresh {current}:\n{}",
            release.version,
            difference(&updated, &fresh)
        );
        println!(
            "    spock {} -> {current}: {} objects, same as a fresh install",
            release.version,
            fresh.len()
        );
    }

    // A catalog of the previous release under today's library: the
    // functions refuse it, naming both versions...
    let previous = releases::previous().unwrap();
    sql(n1, "CREATE DATABASE old_catalog");
    let refused = error_of(
        n1,
        "old_catalog",
        &format!(
            "BEGIN; CREATE EXTENSION spock VERSION '{}';
             SELECT spock.node_create('n1', 'dbname=old_catalog');",
            previous.version
        ),
    );
    assert!(
        refused.contains("55000")
            && refused.contains(&format!("catalog of this database is version {}", previous.version))
            && refused.contains(&format!("the loaded library is {current}")),
        "{refused}"
    );
    // ... and the manager updates it when the server starts.
    n1.safe_psql("old_catalog", &format!("CREATE EXTENSION spock VERSION '{}'", previous.version)).unwrap();
    n1.restart().unwrap();
    wait_for_version(n1, "old_catalog", &current);
    let log = std::fs::read_to_string(n1.log_file()).unwrap();
    assert!(
        log.contains(&format!(
            "updated the spock catalog of database \"old_catalog\" from version {} to {current}",
            previous.version
        )),
        "no update logged:\n{}",
        n1.log_tail(40)
    );
    n1.safe_psql("old_catalog", "SELECT spock.node_create('n1', 'dbname=old_catalog')").unwrap();

    // A catalog newer than the library (a downgraded package) cannot be
    // updated: the manager says so once and waits, without restarting.
    sql(n1, "UPDATE pg_extension SET extversion = '99.0.0' WHERE extname = 'spock'");
    n1.restart().unwrap();
    let warning = format!(
        "no replication workers start in database \"{DB}\": the spock catalog of this database is version 99.0.0, \
         newer than the loaded library {current}"
    );
    // The manager started by this restart (its pid is in every log line's
    // prefix; the manager before the restart may have logged the same).
    let manager = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'spock manager' AND datname = current_database()";
    wait_for(n1, &format!("SELECT count(*) = 1 FROM ({manager}) m"), 60);
    let pid = sql(n1, manager);
    let logged_by_it = || {
        std::fs::read_to_string(n1.log_file())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("[{pid}]")) && l.contains(&warning))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while logged_by_it() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the manager did not log: {warning}\n{}",
            n1.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(sql(n1, manager), pid, "the manager should keep waiting in the same process");
    assert_eq!(logged_by_it(), 1, "the refusal should be logged once:\n{}", n1.log_tail(30));
    let refused = error_of(n1, DB, "SELECT spock.sub_create('s', 'dbname=x')");
    assert!(refused.contains("55000") && refused.contains("newer than the loaded library"), "{refused}");
    sql(n1, &format!("UPDATE pg_extension SET extversion = '{current}' WHERE extname = 'spock'"));
    cluster.destroy().unwrap();
}

/// Waits until spock's catalog in `db` is at `version`.
fn wait_for_version(node: &Node, db: &str, version: &str) {
    node.poll_query_until(
        db,
        &format!("SELECT extversion = '{version}' FROM pg_extension WHERE extname = 'spock'"),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n--- log of {} ---\n{}", node.name, node.log_tail(40)));
}

const TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_branches", "bid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_history", "hid"),
];

/// Stops `node`, starts it on `new`'s binaries and library, and waits
/// until its catalog is updated and its subscription replicates again,
/// while `other` runs pgbench.
fn upgrade_node_under_load(
    cluster: &mut Cluster,
    index: usize,
    new: &xtask::pgbuild::Installed,
    version: &str,
) {
    let other = cluster.nodes[1 - index].clone();
    std::thread::scope(|scope| {
        let load = scope.spawn(|| other.pgbench(DB, &["-n", "-c", "2", "-R", "50", "-T", "20"]));
        std::thread::sleep(Duration::from_secs(3));
        let node = &mut cluster.nodes[index];
        node.stop(xtask::node::StopMode::Fast).unwrap();
        node.installed = new.clone();
        node.start().unwrap();
        wait_for_version(node, DB, version);
        // What the DBA runs: a no-op now, and never replicated.
        let out = node.safe_psql(DB, "ALTER EXTENSION spock UPDATE").unwrap();
        assert!(out.is_empty(), "{out}");
        wait_for(node, "SELECT bool_and(status = 'replicating') FROM spock.sub_show_status()", 120);
        let report = load.join().unwrap().unwrap();
        let tx = report.lines().find(|l| l.contains("actually processed")).unwrap_or("?").trim().to_string();
        println!("    {} upgraded while {} ran pgbench: {tx}", node.name, other.name);
    });
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_two_node_cluster_is_upgraded_node_by_node_under_writes() {
    let installed = installed();
    let current = xtask::extension::version().unwrap();
    let previous = releases::previous().unwrap();
    let old = releases::server_with(&installed, &previous).unwrap();
    // The release's library really is the release's: it reports its version,
    // and its generated install script is the frozen one.
    let frozen = std::fs::read_to_string(releases::install_script(&previous.version)).unwrap();
    let built = std::fs::read_to_string(
        old.sharedir().unwrap().join("extension").join(format!("spock--{}.sql", previous.version)),
    )
    .unwrap();
    assert!(
        built == frozen,
        "release {}'s build does not generate its frozen install script",
        previous.version
    );

    let dir = installed.dirs.scratch().join("it-upgrade-rolling");
    if let Some(stale) = Cluster::load(&dir).unwrap() {
        stale.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut cluster = Cluster::create(&dir, &old, 2, &RunAs::detect().unwrap(), "fsync = off\n").unwrap();
    cluster.start().unwrap();
    for node in &cluster.nodes {
        sql(node, "CREATE EXTENSION spock");
        assert_eq!(sql(node, "SELECT spock.spock_version()"), previous.version);
    }
    cluster.wire_mesh(DB, Duration::from_secs(120)).unwrap();
    cluster.init_pgbench(DB, 1).unwrap();

    upgrade_node_under_load(&mut cluster, 0, &installed, &current);
    let (n1, n2) = (cluster.nodes[0].clone(), cluster.nodes[1].clone());
    // n1 runs the new library, n2 the old one: they replicate both ways.
    // The marker deltas lie outside pgbench's -5000..5000, so rows written
    // by the load can never be counted as ours.
    assert_eq!(sql(&n1, "SELECT spock.spock_version()"), current);
    assert_eq!(sql(&n2, "SELECT spock.spock_version()"), previous.version);
    sql(&n1, "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 900011, now())");
    barrier(&n1, &n2, 120);
    sql(&n2, "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 900022, now())");
    barrier(&n2, &n1, 120);
    assert_eq!(sql(&n1, "SELECT count(*) FROM pgbench_history WHERE delta IN (900011, 900022)"), "2");
    assert_eq!(sql(&n2, "SELECT count(*) FROM pgbench_history WHERE delta IN (900011, 900022)"), "2");

    upgrade_node_under_load(&mut cluster, 1, &installed, &current);
    let (n1, n2) = (cluster.nodes[0].clone(), cluster.nodes[1].clone());
    for node in [&n1, &n2] {
        assert_eq!(sql(node, "SELECT spock.spock_version()"), current);
        // DDL replication is on (init_pgbench), yet the DBA's ALTER
        // EXTENSION spock UPDATE was not queued for the other node.
        assert_eq!(
            sql(node, "SELECT count(*) FROM spock.queue WHERE message::text ILIKE '%ALTER EXTENSION%'"),
            "0",
            "{}: ALTER EXTENSION spock UPDATE must stay local",
            node.name
        );
        assert!(
            sql(node, "SELECT count(*) > 0 FROM spock.queue") == "t",
            "{}: no DDL was queued at all",
            node.name
        );
    }
    barrier(&n1, &n2, 120);
    barrier(&n2, &n1, 120);
    for (table, order) in TABLES {
        let expected = table_digest(&n1, table, order);
        assert_eq!(table_digest(&n2, table, order), expected, "{table} differs after the rolling upgrade");
    }
    let rows = sql(&n1, "SELECT count(*) FROM pgbench_history");
    println!("    both nodes on {current}: identical pgbench tables ({rows} history rows)");
    cluster.destroy().unwrap();
}
