//! The `spockbench` program against servers it did not start (issue 14,
//! spockbench.md §2, `--node name=DSN`): three servers of a toolkit
//! cluster, each with a database of its own, are given to it only by
//! connection strings over TCP that carry the password. `init` prepares
//! and wires them under the names of the options, `run` ends PASS with
//! results under those names, `check` passes, `init` refuses to overwrite
//! without `--force` and starts over with it; faults are refused; the
//! password appears in no output and no file the program writes. `cargo
//! xtask test-cluster` runs it (a plain `cargo test` ignores it).

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{cluster, sql};
use xtask::node::Node;

const CONF: &str = "fsync = off\n\
    spock.conflict_resolution = last_update_wins\n\
    spock.save_resolutions = on\n\
    spock.exception_behaviour = sub_disable\n";

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

fn spockbench(args: &[String]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_spockbench"))
        .args(args)
        .output()
        .expect("cannot run the spockbench program")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
#[ignore = "needs a server built by cargo xtask; run by cargo xtask test-cluster"]
fn spockbench_runs_against_servers_given_by_connection_strings() {
    let cluster = cluster("spockbench-dsn", 3, CONF);
    let password = cluster.nodes[0].password().unwrap();
    for node in &cluster.nodes {
        sql(node, "CREATE DATABASE bench");
    }
    let dsn =
        |n: &Node| format!("host=127.0.0.1 port={} dbname=bench user=postgres password={password}", n.port);
    let major = std::env::var("SPOCK_TEST_PG_MAJOR").unwrap();
    let with = |sub: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            sub.into(),
            "--pg".into(),
            major.clone(),
            "--profile".into(),
            "dev".into(),
            "--quiet".into(),
            "--scale".into(),
            "1".into(),
        ];
        for (name, node) in NAMES.iter().zip(&cluster.nodes) {
            args.push("--node".into());
            args.push(format!("{name}={}", dsn(node)));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut said = String::new();

    let out = spockbench(&with("init", &[]));
    said.push_str(&text(&out));
    assert!(out.status.success(), "init failed:\n{}", text(&out));
    // Spock nodes named as the options say, each subscribed to the other two.
    for node in &cluster.nodes {
        let row = node
            .safe_psql("bench", "SELECT string_agg(node_name, ',' ORDER BY node_name) FROM spock.node")
            .unwrap();
        assert_eq!(row, "alpha,beta,gamma");
        let replicating = node
            .safe_psql("bench", "SELECT count(*) FROM spock.sub_show_status() WHERE status = 'replicating'")
            .unwrap();
        assert_eq!(replicating, "2", "the subscriptions of {}", node.name);
    }

    let out = spockbench(&with("run", &["--duration", "15", "--warmup", "0", "--label", "dsn-test"]));
    said.push_str(&text(&out));
    assert!(out.status.success(), "run did not end PASS:\n{}", text(&out));
    let run_dir = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("files: "))
            .expect("run names its directory")
            .trim(),
    );
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["consistency"]["verdict"], "PASS", "{result:#}");
    let names = |list: &serde_json::Value, key: &str| -> Vec<String> {
        list.as_array().unwrap().iter().map(|n| n[key].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&result["nodes"], "name"), NAMES);
    assert_eq!(names(&result["load"]["per_node"], "node"), NAMES);
    for n in result["nodes"].as_array().unwrap() {
        assert_eq!(n["host"], "127.0.0.1", "{result:#}");
        // Measured, as for servers elsewhere; here they share the runner's clock.
        let offset = n["clock_offset_s"].as_f64().unwrap_or_else(|| panic!("no clock offset: {result:#}"));
        assert!(offset.abs() < 0.5, "clock offset {offset} s on one host: {result:#}");
    }
    for n in result["load"]["per_node"].as_array().unwrap() {
        assert!(n["committed"].as_u64().unwrap() > 0, "{result:#}");
    }

    let out = spockbench(&with("check", &[]));
    said.push_str(&text(&out));
    assert!(out.status.success() && text(&out).contains("verdict: PASS"), "check:\n{}", text(&out));

    // Faults need servers the program controls.
    let out = spockbench(&with("run", &["--fault", "kill9:beta@5s"]));
    said.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("cannot stop, kill or cut servers elsewhere"), "{}", text(&out));

    // Another init keeps what is there unless told to start over.
    let out = spockbench(&with("init", &[]));
    said.push_str(&text(&out));
    assert!(!out.status.success(), "a second init without --force went ahead");
    assert!(text(&out).contains("init --force"), "{}", text(&out));
    let out = spockbench(&with("init", &["--force"]));
    said.push_str(&text(&out));
    assert!(out.status.success(), "init --force failed:\n{}", text(&out));
    let out = spockbench(&with("check", &[]));
    said.push_str(&text(&out));
    assert!(out.status.success(), "check after init --force:\n{}", text(&out));
    for node in &cluster.nodes {
        // One slot per peer: none left behind by the dropped subscriptions.
        let slots = node.safe_psql("bench", "SELECT count(*) FROM pg_replication_slots").unwrap();
        assert_eq!(slots, "2", "replication slots on {}", node.name);
    }

    // A role that is not a superuser, with a quoted password that has
    // spaces: init refuses (exit 3) naming the role on every node.
    const PLAIN: &str = "not a s3cret";
    let mut plain_args: Vec<String> =
        vec!["init".into(), "--pg".into(), major.clone(), "--profile".into(), "dev".into()];
    for (name, node) in NAMES.iter().zip(&cluster.nodes) {
        sql(node, &format!("CREATE ROLE plain LOGIN PASSWORD '{PLAIN}'"));
        plain_args.push("--node".into());
        plain_args.push(format!(
            "{name}=host=127.0.0.1 port={} dbname=bench user=plain password='{PLAIN}'",
            node.port
        ));
    }
    let out = spockbench(&plain_args);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(text(&out).matches("is not a superuser").count(), 3, "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "the password was printed:\n{}", text(&out));

    // The password is in no output, no file of the run and no state file.
    assert!(!said.contains(&password), "the password was printed:\n{said}");
    let assert_no_password_in = |dir: &std::path::Path| {
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let content = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&content).contains(&password),
                "{} holds the password",
                path.display()
            );
        }
    };
    let scratch = common::installed().dirs.scratch();
    for entry in std::fs::read_dir(&scratch).unwrap() {
        let dir = entry.unwrap().path();
        if dir.file_name().unwrap().to_string_lossy().starts_with("spockbench-dsn-") {
            assert_no_password_in(&dir);
        }
    }
    assert_no_password_in(&run_dir);
    cluster.destroy().unwrap();
}
