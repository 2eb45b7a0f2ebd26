//! Cluster integration tests: crash and restart cases that SQL scenarios
//! cannot express, and the nodes' authentication, driven through the
//! toolkit's cluster library against a server the toolkit built. `cargo xtask test-cluster` runs them (they are
//! ignored by a plain `cargo test`, which has no server).

mod common;

use std::net::TcpListener;
use std::path::Path;
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

/// Runs `sql` on `node` in database `db`, panicking with the node's log tail.
fn sql(node: &xtask::node::Node, db: &str, sql: &str) -> String {
    node.safe_psql(db, sql)
        .unwrap_or_else(|e| panic!("{e:#}\n--- log of {} ---\n{}", node.name, node.log_tail(40)))
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn subscriber_killed_mid_stream_resumes_exactly_once() {
    let cluster = cluster("apply-kill9", 2, "fsync = off\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let db = "postgres";
    // No primary key, in an insert-only set: a change applied twice would
    // show up as a duplicate row instead of an error.
    for node in [n1, n2] {
        sql(node, db, "CREATE EXTENSION spock; CREATE TABLE feed (id bigint NOT NULL, payload text)");
        sql(node, db, &format!("SELECT spock.node_create('{}', '{}')", node.name, node.connstr(db)));
    }
    sql(n1, db, "SELECT spock.repset_add_table('default_insert_only', 'feed')");
    sql(n2, db, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(db)));
    sql(n2, db, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");

    // Batches of 200 rows, one transaction each, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (n1, stop) = (n1.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 1i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let last = next + 199;
                n1.safe_psql(
                    "postgres",
                    &format!(
                        "INSERT INTO feed SELECT i, repeat('x', 100) FROM generate_series({next}, {last}) i"
                    ),
                )
                .expect("the provider keeps accepting writes");
                next = last + 1;
            }
            next - 1
        })
    };
    // Let the subscriber apply for a while, kill it in the middle of the
    // stream, keep writing while it is down, then bring it back.
    n2.poll_query_until(db, "SELECT count(*) > 2000 FROM feed", Duration::from_secs(60)).unwrap();
    n2.kill9().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    n2.start().unwrap();
    n2.poll_query_until(
        db,
        "SELECT status = 'replicating' FROM spock.sub_show_status()",
        Duration::from_secs(60),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();

    let lsn = sql(n1, db, "SELECT spock.sync_event()");
    let reached = sql(n2, db, &format!("CALL spock.wait_for_sync_event(NULL, 'n1', '{lsn}', 120)"));
    assert_eq!(reached, "t", "the subscriber did not catch up after the restart");
    let provider = sql(n1, db, "SELECT count(*) FROM feed");
    let summary = sql(n2, db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM feed");
    assert_eq!(provider, written.to_string());
    assert_eq!(
        summary,
        format!("{written}|{written}|1|{written}"),
        "after kill -9 of the subscriber every row must be present exactly once (count|distinct|min|max)"
    );
    println!("R1: {written} rows written, all present exactly once after a subscriber kill -9");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn transient_apply_errors_and_lost_connections_are_retried() {
    // A short deadlock_timeout for the apply worker, so that it is the one
    // that finds the deadlock below.
    let cluster = cluster(
        "apply-retry",
        2,
        "fsync = off\nspock.restart_delay_default = 1000\ndeadlock_timeout = 200ms\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let db = "postgres";
    for node in [n1, n2] {
        sql(node, db, "CREATE EXTENSION spock; CREATE TABLE t (id int PRIMARY KEY, v text)");
        sql(node, db, &format!("SELECT spock.node_create('{}', '{}')", node.name, node.connstr(db)));
    }
    sql(n1, db, "SELECT spock.repset_add_table('default', 't')");
    sql(n1, db, "INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    sql(n2, db, "INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    // Applying row 2 takes two seconds on the subscriber: the window in
    // which a local session takes part in a deadlock with the worker.
    sql(
        n2,
        db,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.id = 2 THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION slow();
         ALTER TABLE t ENABLE ALWAYS TRIGGER slow",
    );
    sql(n2, db, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(db)));
    sql(n2, db, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");

    // The session locks row 1, the worker updates row 2 (and sleeps in the
    // trigger), the session waits for row 2, the worker for row 1: the
    // worker finds the deadlock and is rolled back. A deadlock is
    // transient: the worker applies the transaction again once the session
    // is gone, and nothing goes to exception_log.
    let session = {
        let n2 = n2.clone();
        std::thread::spawn(move || {
            n2.safe_psql(
                "postgres",
                "SET deadlock_timeout = '10s'; BEGIN; SELECT 1 FROM t WHERE id = 1 FOR UPDATE;
                 SELECT pg_sleep(1); SELECT 1 FROM t WHERE id = 2 FOR UPDATE; COMMIT",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    sql(
        n1,
        db,
        "BEGIN; UPDATE t SET v = 'two from n1' WHERE id = 2; UPDATE t SET v = 'one from n1' WHERE id = 1; COMMIT",
    );
    session.join().unwrap().expect("the local session commits (the worker is the deadlock's victim)");
    let lsn = sql(n1, db, "SELECT spock.sync_event()");
    assert_eq!(sql(n2, db, &format!("CALL spock.wait_for_sync_event(NULL, 'n1', '{lsn}', 60)")), "t");
    let log = std::fs::read_to_string(n2.log_file()).unwrap();
    let at = log
        .find("deadlock detected")
        .unwrap_or_else(|| panic!("no deadlock in the log:\n{}", n2.log_tail(60)));
    assert!(
        log[at..].contains("spock apply worker for subscription sub_n2_n1"),
        "the deadlock was not the worker's:\n{}",
        n2.log_tail(60)
    );
    assert_eq!(sql(n2, db, "SELECT string_agg(v, ',' ORDER BY id) FROM t"), "one from n1,two from n1");
    assert_eq!(sql(n2, db, "SELECT count(*) FROM spock.exception_log"), "0");
    assert_eq!(sql(n2, db, "SELECT status FROM spock.sub_show_status()"), "replicating");

    // A lost connection (the provider ends the walsender) is retried too.
    let ended = sql(
        n1,
        db,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_replication
          WHERE application_name = 'sub_n2_n1') ended",
    );
    assert_eq!(ended, "1", "no walsender of sub_n2_n1 to end");
    sql(n1, db, "INSERT INTO t VALUES (3, 'after reconnect')");
    let lsn = sql(n1, db, "SELECT spock.sync_event()");
    assert_eq!(sql(n2, db, &format!("CALL spock.wait_for_sync_event(NULL, 'n1', '{lsn}', 60)")), "t");
    assert_eq!(sql(n2, db, "SELECT v FROM t WHERE id = 3"), "after reconnect");
    assert_eq!(sql(n2, db, "SELECT count(*) FROM spock.exception_log"), "0");
    cluster.destroy().unwrap();
}

/// psql over `args` as the invoking user, with `PGPASSFILE` set to
/// `pgpassfile`, `PGPASSWORD` unset and never a password prompt (`-w`).
/// Returns what it printed on success, or its errors.
fn psql_as_client(node: &xtask::node::Node, args: &[&str], pgpassfile: &Path) -> Result<String, String> {
    let out = std::process::Command::new(node.installed.bin("psql"))
        .args(["-X", "-A", "-t", "-w"])
        .args(args)
        .args(["-c", "SELECT current_user || ' via ' || coalesce(host(inet_server_addr()), 'socket')"])
        .env("PGPASSFILE", pgpassfile)
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn tcp_connections_need_the_password_and_the_socket_does_not() {
    use std::os::unix::fs::MetadataExt;

    // Authentication is the server's and the toolkit's business alone: the
    // extension is not loaded, so this test needs only a built server.
    let cluster = cluster("tcp-auth", 2, "fsync = off\nshared_preload_libraries = ''\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let port = n1.port.to_string();
    let no_pgpass = Path::new("/dev/null");

    // Without a password, TCP is refused, for the superuser too.
    let refusal =
        psql_as_client(n1, &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres"], no_pgpass)
            .expect_err("a TCP connection as postgres without a password was accepted");
    assert!(
        refusal.contains("no password supplied") || refusal.contains("password authentication failed"),
        "the refusal does not say that a password is needed: {refusal}"
    );
    println!("TCP without a password: {refusal}");

    // With the node's password file, TCP works, as a connection string and as a URI.
    let pgpass = n1.pgpass_file();
    for target in [n1.tcp_connstr("postgres", "postgres"), n1.uri("postgres", "postgres")] {
        let answer = psql_as_client(n1, &["-d", &target], &pgpass)
            .unwrap_or_else(|e| panic!("{target} with PGPASSFILE={}: {e}", pgpass.display()));
        assert_eq!(answer, "postgres via 127.0.0.1", "{target}");
        println!("{target} with PGPASSFILE={}: {answer}", pgpass.display());
    }

    // The socket needs no password.
    let answer = psql_as_client(n1, &["-d", &n1.connstr("postgres")], no_pgpass)
        .unwrap_or_else(|e| panic!("socket connection: {e}"));
    assert_eq!(answer, "postgres via socket");
    println!("{} without a password: {answer}", n1.connstr("postgres"));

    // One password for the cluster, in files only the server account reads.
    let password = n1.password().unwrap();
    assert_eq!(password.len(), 48, "{password}");
    assert_eq!(n2.password().unwrap(), password, "the nodes of a cluster share one password");
    let meta = std::fs::metadata(&pgpass).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "{} must be private", pgpass.display());
    assert_eq!(meta.uid(), std::fs::metadata(n1.data()).unwrap().uid(), "owned by the server account");
    // The cluster's own directory and state stay the invoking user's.
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(std::fs::metadata(&cluster.dir).unwrap().uid(), me, "{}", cluster.dir.display());
    assert_eq!(std::fs::metadata(cluster.dir.join("cluster.json")).unwrap().uid(), me);
    let leftovers: Vec<_> = std::fs::read_dir(&n1.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("pwfile"))
        .collect();
    assert!(leftovers.is_empty(), "initdb's password file was left behind: {leftovers:?}");

    // A standby has its primary's roles, and gets a copy of its password file.
    let standby = xtask::node::Node::init_standby(
        "standby",
        n1,
        &cluster.dir.join("standby"),
        xtask::node::free_port().unwrap(),
    )
    .unwrap();
    standby.start().unwrap();
    assert_eq!(standby.password().unwrap(), password);
    let answer = psql_as_client(
        &standby,
        &["-d", &standby.tcp_connstr("postgres", "postgres")],
        &standby.pgpass_file(),
    )
    .unwrap_or_else(|e| panic!("TCP to the standby: {e}"));
    assert_eq!(answer, "postgres via 127.0.0.1");
    standby.stop(StopMode::Fast).unwrap();

    // The servers' own processes log in over TCP with the password from
    // PGPASSFILE: n2 subscribes to n1 with built-in logical replication.
    sql(n1, "postgres", "CREATE TABLE auth_probe (id int PRIMARY KEY); INSERT INTO auth_probe VALUES (1)");
    sql(n1, "postgres", "CREATE PUBLICATION auth_probe FOR TABLE auth_probe");
    sql(n2, "postgres", "CREATE TABLE auth_probe (id int PRIMARY KEY)");
    sql(
        n2,
        "postgres",
        &format!(
            "CREATE SUBSCRIPTION auth_probe CONNECTION '{}' PUBLICATION auth_probe",
            n1.tcp_connstr("postgres", "postgres")
        ),
    );
    n2.poll_query_until("postgres", "SELECT count(*) = 1 FROM auth_probe", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n--- log of n2 ---\n{}", n2.log_tail(30)));
    println!(
        "n2 subscribed to n1 over TCP ({}) with the password from PGPASSFILE",
        n1.tcp_connstr("postgres", "postgres")
    );
    sql(n2, "postgres", "DROP SUBSCRIPTION auth_probe");
    cluster.destroy().unwrap();
}
