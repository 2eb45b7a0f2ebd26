//! Engine integration tests: how the replication engine behaves when
//! something around it goes wrong or is hostile (a slot lost on the
//! provider, tables changing while they are decoded, table owners' code
//! reached during apply, a provider naming spock's own catalogs, URI and
//! non-superuser connection strings, providers that never answer). Driven
//! through the toolkit's cluster library against a server the toolkit
//! built; `cargo xtask test-cluster` runs them (a plain `cargo test` ignores
//! them).

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{DB, barrier, cluster, make_node, sql, wait_for};
use xtask::node::Node;

/// A thread that commits batches of rows into `table (id, payload)` on
/// `node` until stopped; returns the highest id written.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
}

impl Writer {
    fn start(node: &Node, table: &str, batch: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (node, table, flag) = (node.clone(), table.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut next = 1i64;
            while !flag.load(Ordering::Relaxed) {
                let last = next + batch - 1;
                node.safe_psql(
                    DB,
                    &format!("INSERT INTO {table} (id, payload) SELECT i, 'row ' || i FROM generate_series({next}, {last}) i"),
                )
                .expect("the provider keeps accepting writes");
                next = last + 1;
            }
            next - 1
        });
        Writer { stop, handle }
    }

    fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the writer thread does not panic")
    }
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_lost_slot_is_reported_and_never_recreated() {
    let cluster = cluster("lost-slot", 2, "fsync = off\nspock.restart_delay_default = 1000\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
        sql(node, "CREATE TABLE feed (id bigint PRIMARY KEY, payload text)");
    }
    sql(n1, "SELECT spock.repset_add_table('default', 'feed')");
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    let slot = sql(n2, "SELECT slot_name FROM spock.sub_show_status()");

    let writer = Writer::start(n1, "feed", 50);
    wait_for(n2, "SELECT count(*) > 500 FROM feed", 60);
    // Drop the slot under the running subscription: end its walsender, then
    // drop the slot as soon as it is inactive (before the worker is back).
    let dropped = (0..200).any(|_| {
        sql(n1, &format!("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"));
        let done = sql(
            n1,
            &format!(
                "SELECT count(*) FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                  WHERE slot_name = '{slot}' AND NOT active) dropped"
            ),
        );
        done == "1" || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(dropped, "could not drop slot {slot} on n1");
    std::thread::sleep(Duration::from_secs(2));
    let written = writer.finish();

    // The subscriber says what happened, naming the subscription, the slot
    // and the provider, and keeps retrying without creating a new slot.
    wait_for(
        n2,
        "SELECT status = 'down' AND last_error LIKE '%does not exist on provider%' FROM spock.sub_show_status()",
        60,
    );
    let error = sql(n2, "SELECT last_error FROM spock.sub_show_status()");
    for part in [slot.as_str(), "sub_n2_n1", "\"n1\""] {
        assert!(error.contains(part), "the reported error does not name {part}: {error}");
    }
    // Logged again on every attempt.
    let logged = format!(
        "replication slot \"{slot}\" of subscription \"sub_n2_n1\" does not exist on provider \"n1\""
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(n2.log_file()).unwrap().matches(&logged).count() < 3 {
        assert!(Instant::now() < deadline, "the error is not logged on every attempt:\n{}", n2.log_tail(40));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        sql(n1, &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")),
        "0",
        "a new slot appeared on the provider"
    );
    // What arrived is a prefix of what was written: nothing was skipped.
    let (count, max): (i64, i64) = {
        let row = sql(n2, "SELECT count(*) || ' ' || coalesce(max(id), 0) FROM feed");
        let mut it = row.split(' ').map(|v| v.parse::<i64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    assert_eq!(count, max, "rows are missing in the middle on the subscriber");
    assert!(max < written, "every row arrived although the slot was dropped ({max} of {written})");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn decoding_survives_tables_changing_under_it() {
    let cluster = cluster("relcache", 2, "fsync = off\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    const EXTRA: usize = 12;
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
        sql(
            node,
            "CREATE TABLE feed (id bigint PRIMARY KEY, payload text); CREATE TABLE side (id int PRIMARY KEY)",
        );
    }
    // The subscriber has every column the provider will add for a while.
    for k in 1..=EXTRA {
        sql(n2, &format!("ALTER TABLE feed ADD COLUMN c{k} int"));
    }
    sql(
        n1,
        "SELECT spock.repset_add_table('default', 'feed'); SELECT spock.repset_add_table('default', 'side')",
    );
    // The walsender of this subscription drops every cache at every chance
    // (a cassert build's debug_discard_caches): an entry freed by an
    // invalidation while a change uses it cannot go unnoticed.
    let dsn = format!(
        "{} options='-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c debug_discard_caches=1'",
        n1.connstr(DB)
    );
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', $${dsn}$$)"));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");

    // Rounds of: a column added (and filled by its default), rows, a table
    // leaving and rejoining the set, the column dropped, rows. Decoding
    // interleaves the relation changes with the inserts.
    const ROUNDS: usize = 12;
    let mut written = 0;
    for round in 0..ROUNDS {
        let k = round % EXTRA + 1;
        let rows = |from: i64| {
            format!(
                "INSERT INTO feed (id, payload) SELECT i, 'row ' || i FROM generate_series({from}, {}) i",
                from + 4
            )
        };
        sql(n1, &format!("ALTER TABLE feed ADD COLUMN c{k} int DEFAULT {k}"));
        sql(n1, &rows(written + 1));
        sql(n1, &format!("INSERT INTO side VALUES ({round})"));
        sql(n1, "SELECT spock.repset_remove_table('default', 'side')");
        sql(n1, &format!("BEGIN; ALTER TABLE feed DROP COLUMN c{k}; {}; COMMIT", rows(written + 6)));
        sql(n1, "SELECT spock.repset_add_table('default', 'side')");
        written += 10;
    }
    let rounds = ROUNDS;
    barrier(n1, n2, 600);
    let summary = sql(n2, "SELECT count(*) || '|' || count(DISTINCT id) || '|' || max(id) FROM feed");
    assert_eq!(
        summary,
        format!("{written}|{written}|{written}"),
        "rows lost or duplicated while the table changed"
    );
    // Rows written while a column existed carry its default on the subscriber.
    let with_values: i64 = sql(
        n2,
        &format!(
            "SELECT count(*) FROM feed WHERE {}",
            (1..=EXTRA).map(|k| format!("c{k} = {k}")).collect::<Vec<_>>().join(" OR ")
        ),
    )
    .parse()
    .unwrap();
    assert!(with_values > 0, "no row carried a value of a column added while streaming");
    assert_eq!(
        sql(n2, "SELECT count(*) FROM side"),
        rounds.to_string(),
        "rows of the table moved in and out of the set"
    );
    println!("relcache churn: {rounds} rounds of ALTER TABLE and set changes, {written} rows, all arrived");
    assert!(n1.is_running() && n2.is_running());
    let crashes = std::fs::read_to_string(n1.log_file()).unwrap().matches("terminated by signal").count();
    assert_eq!(crashes, 0, "a walsender crashed:\n{}", n1.log_tail(40));
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn table_owner_code_runs_with_the_owners_rights() {
    // A failing transaction disables the subscription (instead of being
    // discarded), so that the test can fix the cause and see it applied.
    let cluster = cluster(
        "owner",
        2,
        "fsync = off\nspock.restart_delay_default = 1000\nspock.exception_behaviour = sub_disable\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
        sql(node, "CREATE ROLE app LOGIN NOSUPERUSER; GRANT CREATE ON SCHEMA public TO app");
        sql(
            node,
            "SET ROLE app; CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE audit (who text, id int)",
        );
    }
    // On the subscriber the owner's triggers log the applying user; for some
    // rows they try to make their owner a superuser. One trigger is a
    // deferred constraint trigger, which would fire at commit.
    sql(
        n2,
        "SET ROLE app;
         CREATE FUNCTION t_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO audit VALUES (current_user, NEW.id);
             IF NEW.v = 'escalate' THEN
                 ALTER ROLE app SUPERUSER;
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER t_trigger BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_trigger();
         ALTER TABLE t ENABLE ALWAYS TRIGGER t_trigger;
         CREATE FUNCTION t_deferred() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO audit VALUES (current_user || ' (deferred)', NEW.id);
             IF NEW.v = 'escalate later' THEN
                 ALTER ROLE app SUPERUSER;
             END IF;
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER t_deferred AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW EXECUTE FUNCTION t_deferred();
         ALTER TABLE t ENABLE ALWAYS TRIGGER t_deferred;",
    );
    sql(n1, "SELECT spock.repset_add_table('default', 't')");
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");

    sql(n1, "INSERT INTO t VALUES (1, 'plain')");
    barrier(n1, n2, 60);
    assert_eq!(
        sql(n2, "SELECT string_agg(who || ':' || id, ',' ORDER BY who) FROM audit"),
        "app:1,app (deferred):1",
        "the triggers did not run as the table owner"
    );

    // PostgreSQL 15 says "must be superuser to alter superuser roles ...",
    // later ones "permission denied to alter role".
    let refused = "SELECT status = 'disabled' AND (last_error LIKE '%permission denied%' OR last_error LIKE '%must be superuser%')
                     FROM spock.sub_show_status()";
    let fix = |function: &str, who: &str, returns: &str| {
        sql(
            n2,
            &format!(
                "SET ROLE app; CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO audit VALUES ({who}, NEW.id); RETURN {returns}; END $$"
            ),
        )
    };
    // The deferred trigger fires at the end of its change, still as the
    // owner, not at commit with the worker's rights.
    sql(n1, "INSERT INTO t VALUES (2, 'escalate later')");
    wait_for(n2, refused, 60);
    assert_eq!(
        sql(n2, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"),
        "f",
        "a deferred trigger made its owner superuser"
    );
    fix("t_deferred", "current_user || ' (deferred)'", "NULL");
    sql(n2, "SELECT spock.sub_enable('sub_n2_n1')");
    barrier(n1, n2, 60);

    sql(n1, "INSERT INTO t VALUES (3, 'escalate'); INSERT INTO t VALUES (4, 'after')");
    wait_for(n2, refused, 60);
    assert_eq!(
        sql(n2, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"),
        "f",
        "the table owner became superuser"
    );
    assert_eq!(
        sql(n2, "SELECT count(*) FROM t WHERE id >= 3"),
        "0",
        "the failing transaction or a later one was applied"
    );
    let log = std::fs::read_to_string(n2.log_file()).unwrap();
    assert!(log.contains("spock apply worker for subscription sub_n2_n1"), "{}", n2.log_tail(30));

    // The owner fixes the trigger; the same transactions then apply, in order.
    fix("t_trigger", "current_user", "NEW");
    sql(n2, "SELECT spock.sub_enable('sub_n2_n1')");
    barrier(n1, n2, 60);
    assert_eq!(
        sql(n2, "SELECT string_agg(id || v, ',' ORDER BY id) FROM t"),
        "1plain,2escalate later,3escalate,4after"
    );
    assert_eq!(sql(n2, "SELECT string_agg(DISTINCT who, ',' ORDER BY who) FROM audit"), "app,app (deferred)");
    wait_for(n2, "SELECT status = 'replicating' AND last_error IS NULL FROM spock.sub_show_status()", 30);

    // The compatibility setting applies as the worker's superuser again.
    sql(n2, "ALTER SYSTEM SET spock.apply_as_superuser = on; SELECT pg_reload_conf()");
    wait_for(n2, "SELECT current_setting('spock.apply_as_superuser') = 'on'", 10);
    std::thread::sleep(Duration::from_secs(1));
    sql(n1, "INSERT INTO t VALUES (5, 'as superuser')");
    barrier(n1, n2, 60);
    assert_eq!(
        sql(n2, "SELECT string_agg(who, ',' ORDER BY who) FROM audit WHERE id = 5"),
        "postgres,postgres (deferred)"
    );
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_provider_cannot_write_into_spock_catalogs() {
    let cluster = cluster(
        "catalogs",
        2,
        "fsync = off\nspock.restart_delay_default = 1000\nspock.exception_behaviour = sub_disable\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
    }
    // A provider whose set carries spock.node_interface (repset_add_table
    // refuses it; a superuser can still write the membership by hand).
    sql(
        n1,
        "INSERT INTO spock.replication_set_table (set_id, set_reloid)
         SELECT set_id, 'spock.node_interface'::regclass FROM spock.replication_set WHERE set_name = 'default'",
    );
    // An interface id the subscriber does not use yet, so that only spock's
    // refusal, not a duplicate key, keeps the row out.
    sql(n1, "SELECT spock.node_add_interface('n1', 'spare', 'host=spare.invalid')");
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    let before = sql(n2, "SELECT count(*) FROM spock.node_interface");
    sql(n1, "SELECT spock.node_add_interface('n1', 'evil', 'host=evil.invalid')");
    wait_for(
        n2,
        "SELECT status = 'disabled' AND last_error LIKE '%spock.node_interface%which spock never writes into%' FROM spock.sub_show_status()",
        60,
    );
    assert_eq!(
        sql(n2, "SELECT count(*) FROM spock.node_interface"),
        before,
        "the provider wrote into the subscriber's catalog"
    );
    assert_eq!(sql(n2, "SELECT count(*) FROM spock.node_interface WHERE if_name = 'evil'"), "0");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_table_partitioned_only_on_the_subscriber_is_an_apply_error() {
    let cluster = cluster(
        "parted",
        2,
        "fsync = off\nspock.restart_delay_default = 1000\nspock.exception_behaviour = sub_disable\n",
    );
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
    }
    sql(n1, "CREATE TABLE m (id int PRIMARY KEY, v text); SELECT spock.repset_add_table('default', 'm')");
    sql(
        n2,
        "CREATE TABLE m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE m_low PARTITION OF m FOR VALUES FROM (0) TO (100)",
    );
    let started = sql(n2, "SELECT pg_postmaster_start_time()");
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    sql(n1, "INSERT INTO m VALUES (1, 'one')");
    wait_for(
        n2,
        "SELECT status = 'disabled' AND last_error LIKE '%public.m, which is a partitioned table on this node%'
           FROM spock.sub_show_status()",
        60,
    );
    assert_eq!(sql(n2, "SELECT pg_postmaster_start_time()"), started, "the subscriber crashed and restarted");
    assert_eq!(sql(n2, "SELECT count(*) FROM m"), "0");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn a_mesh_with_uri_dsns_and_a_replication_role_replicates() {
    let cluster = cluster("dsn", 3, "fsync = off\n");
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let password = n1.password().expect("the cluster's password");
    // Every DSN uses a role that is not a superuser, only REPLICATION; n3's
    // DSN is a URI over TCP (password from the server's password file).
    for node in [n1, n2, n3] {
        sql(node, &format!("CREATE ROLE spock_repl LOGIN REPLICATION PASSWORD '{password}'"));
        sql(node, "CREATE TABLE t (id int PRIMARY KEY, origin text)");
    }
    let dsn = |node: &Node| {
        if node.name == "n3" {
            node.uri(DB, "spock_repl")
        } else {
            format!("{} user=spock_repl", node.connstr(DB))
        }
    };
    assert!(dsn(n3).starts_with("postgresql://"), "{}", dsn(n3));
    for node in [n1, n2, n3] {
        make_node(node, &dsn(node));
        sql(node, "SELECT spock.repset_add_table('default', 't')");
    }
    for sub in [n1, n2, n3] {
        for provider in [n1, n2, n3].into_iter().filter(|p| p.name != sub.name) {
            sql(
                sub,
                &format!(
                    "SELECT spock.sub_create('sub_{}_{}', '{}')",
                    sub.name,
                    provider.name,
                    dsn(provider)
                ),
            );
        }
    }
    for node in [n1, n2, n3] {
        wait_for(node, "SELECT bool_and(status = 'replicating') FROM spock.sub_show_status()", 60);
        sql(node, &format!("INSERT INTO t VALUES ({}, '{}')", &node.name[1..], node.name));
    }
    for provider in [n1, n2, n3] {
        for sub in [n1, n2, n3].into_iter().filter(|s| s.name != provider.name) {
            barrier(provider, sub, 60);
        }
    }
    for node in [n1, n2, n3] {
        assert_eq!(
            sql(node, "SELECT string_agg(id || origin, ',' ORDER BY id) FROM t"),
            "1n1,2n2,3n3",
            "on {}",
            node.name
        );
    }
    // The walsenders on n3 serve n1 and n2 through that role.
    assert_eq!(sql(n3, "SELECT count(*) FROM pg_stat_replication WHERE usename = 'spock_repl'"), "2");
    cluster.destroy().unwrap();
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn waits_for_a_provider_that_never_answers_are_interruptible() {
    let cluster = cluster("silent", 2, "fsync = off\nspock.restart_delay_default = 1000\n");
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    for node in [n1, n2] {
        make_node(node, &node.connstr(DB));
    }
    // A listening socket that never accepts: the kernel completes the TCP
    // handshake, and nobody ever answers the startup packet.
    let silent = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let silent_dsn = format!(
        "host=127.0.0.1 port={} dbname=postgres connect_timeout=120",
        silent.local_addr().unwrap().port()
    );

    // sub_create against it gives up at statement_timeout, not at connect_timeout.
    let t0 = Instant::now();
    let err = n2
        .safe_psql(
            DB,
            &format!("SET statement_timeout = '1s'; SELECT spock.sub_create('sub_silent', '{silent_dsn}')"),
        )
        .unwrap_err();
    let took = t0.elapsed();
    assert!(format!("{err:#}").contains("statement timeout"), "{err:#}");
    assert!(took < Duration::from_secs(15), "sub_create took {took:?} to notice its cancel");

    // An apply worker stuck connecting to it stops when asked.
    sql(n2, &format!("SELECT spock.sub_create('sub_n2_n1', '{}')", n1.connstr(DB)));
    sql(n2, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
    sql(
        n2,
        &format!(
            "UPDATE spock.node_interface SET if_dsn = '{silent_dsn}' WHERE if_nodeid = (SELECT node_id FROM spock.node WHERE node_name = 'n1')"
        ),
    );
    sql(n2, "SELECT spock.sub_disable('sub_n2_n1'); SELECT spock.sub_enable('sub_n2_n1')");
    // The worker is running and waiting on the silent socket.
    wait_for(n2, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'spock apply'", 30);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    sql(n2, "SELECT spock.sub_disable('sub_n2_n1', immediate := true)");
    let took = t0.elapsed();
    assert_eq!(
        sql(n2, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'spock apply'"),
        "0",
        "the worker is still there"
    );
    assert!(took < Duration::from_secs(15), "stopping the worker took {took:?}");
    drop(silent);
    cluster.destroy().unwrap();
}
