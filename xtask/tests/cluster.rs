//! Cluster integration tests: crash and restart cases that SQL scenarios
//! cannot express, driven through the toolkit's cluster library against a
//! server the toolkit built. `cargo xtask test-cluster` runs them (they are
//! ignored by a plain `cargo test`, which has no server).

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::cluster;
use xtask::node::StopMode;

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn every_acknowledged_commit_survives_kill9() {
    let cluster = cluster("kill9", 1, "fsync = off\n");
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
    let cluster = cluster("stale", 1, "fsync = off\n");
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
