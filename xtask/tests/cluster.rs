//! Cluster integration tests: crash and restart cases that SQL scenarios
//! cannot express, driven through the toolkit's cluster library against a
//! server the toolkit built. `cargo xtask test-cluster` runs them (they are
//! ignored by a plain `cargo test`, which has no server).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use xtask::account::RunAs;
use xtask::cluster::Cluster;
use xtask::flags::Profile;
use xtask::layout::PgDirs;
use xtask::node::StopMode;
use xtask::pgbuild::Installed;

fn installed() -> Installed {
    let major: u32 = std::env::var("SPOCK_TEST_PG_MAJOR")
        .expect("SPOCK_TEST_PG_MAJOR names the major to test (set by cargo xtask test-cluster)")
        .parse()
        .expect("SPOCK_TEST_PG_MAJOR is a number");
    let dirs = PgDirs::new(major, Profile::Dev);
    Installed::load(&dirs).unwrap_or_else(|| panic!("no server installed in {}", dirs.install().display()))
}

/// A fresh cluster in the build's scratch space, destroyed when the test passes.
fn cluster(tag: &str, nodes: usize) -> Cluster {
    let installed = installed();
    let dir: PathBuf = installed.dirs.scratch().join(format!("it-{tag}"));
    if let Some(old) = Cluster::load(&dir).unwrap() {
        old.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cluster =
        Cluster::create(&dir, &installed, nodes, &RunAs::detect().unwrap(), "fsync = off\n").unwrap();
    cluster.start().unwrap();
    cluster
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn every_acknowledged_commit_survives_kill9() {
    let cluster = cluster("kill9", 1);
    let n1 = &cluster.nodes[0];
    n1.safe_psql("postgres", "CREATE TABLE acked (id int PRIMARY KEY)").unwrap();

    // Commit rows one by one from another thread until the server dies.
    let writer = {
        let n1 = n1.clone();
        std::thread::spawn(move || {
            let mut acked = 0;
            loop {
                match n1.safe_psql("postgres", &format!("INSERT INTO acked VALUES ({})", acked + 1)) {
                    Ok(_) => acked += 1,
                    Err(_) => return acked,
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    n1.kill9().unwrap();
    let acked = writer.join().unwrap();
    assert!(acked > 10, "the writer made too little progress before the crash: {acked}");

    n1.start().unwrap();
    n1.poll_query_until("postgres", "SELECT NOT pg_is_in_recovery()", Duration::from_secs(60)).unwrap();
    // Every acknowledged row is there; at most the one in flight may be too.
    let present: i64 = n1
        .safe_psql("postgres", &format!("SELECT count(*) FROM acked WHERE id <= {acked}"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(present, acked as i64, "acknowledged commits lost in the crash");
    let total: i64 = n1.safe_psql("postgres", "SELECT count(*) FROM acked").unwrap().parse().unwrap();
    assert!(total == acked as i64 || total == acked as i64 + 1, "{total} rows for {acked} acknowledged");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn stale_pid_file_is_cleared_and_busy_port_is_reported() {
    let cluster = cluster("stale", 1);
    let n1 = &cluster.nodes[0];
    n1.kill9().unwrap();

    // A crash leaves postmaster.pid behind; make its pid belong to another
    // live process (this test), as after pid reuse.
    let pid_file = n1.data().join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let rest: String = text.split_inclusive('\n').skip(1).collect();
    std::fs::write(&pid_file, format!("{}\n{rest}", std::process::id())).unwrap();
    assert!(!n1.is_running(), "a pid file naming another process is not a running node");
    n1.start().unwrap();
    assert_eq!(n1.safe_psql("postgres", "SELECT 1").unwrap(), "1");

    // A port taken by another program is reported, not waited on.
    n1.stop(StopMode::Fast).unwrap();
    let squatter = TcpListener::bind(("127.0.0.1", n1.port)).unwrap();
    let err = n1.start().unwrap_err().to_string();
    assert!(err.contains("already in use"), "{err}");
    drop(squatter);
    n1.start().unwrap();
    cluster.destroy().unwrap();
}
