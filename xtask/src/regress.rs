//! The multi-node regression runner (`cargo xtask test-cluster`): pg_regress
//! style scenarios in `tests/regress/sql/<name>.sql`, run by psql with one
//! variable per node (`:n1`, `:n2`, ...) against a fresh cluster, their
//! output compared with `tests/regress/expected/<name>.out`.
//!
//! A scenario may start with a header line
//! `-- cluster: nodes=3 layout=instances|databases`; `layout=databases`
//! makes the nodes databases of one server. Lines starting with `--! ` are
//! directives the runner carries out between psql runs:
//! `kill9 nK`, `start nK`, `stop nK`, `restart nK`, and `log nK <text>`,
//! which puts into the output the messages of nK's server log (from the
//! level on, without the line prefix) that contain `<text>` and were written
//! since the scenario began or since the last `log nK`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cluster::Cluster;
use crate::cmd::{self, tool};
use crate::flags::{Profile, TestCluster};
use crate::layout;
use crate::node::{Node, StopMode};
use crate::pgbuild::Installed;
use crate::versions::{Manifest, PgRequest};
use crate::{build, doctor, fsutil, ui};

/// A suite of scenarios: a folder with `schedule`, `sql/` and `expected/`,
/// the integration-test target that goes with it, and what its cluster needs.
#[derive(Clone, Debug)]
pub struct Suite {
    /// How the suite is named in the output.
    pub title: &'static str,
    pub dir: PathBuf,
    /// Its integration test targets in `xtask/tests/`, run in this order
    /// after the scenarios when the whole suite runs.
    pub integration_tests: &'static [&'static str],
    /// Configuration added to every node of the suite's cluster.
    pub extra_conf: &'static str,
}

impl Suite {
    /// The multi-node regression suite, `tests/regress`.
    pub fn multi_node() -> Suite {
        Suite {
            title: "multi-node regression suite",
            dir: layout::project_root().join("tests").join("regress"),
            integration_tests: &[
                "cluster",
                "engine",
                "conflicts",
                "convergence",
                "ddl",
                "progress",
                "sync",
                "addnode",
                "upgrade",
                "spockbench_dsn",
            ],
            extra_conf: "fsync = off\n",
        }
    }

    /// The core patch acceptance suite, `tests/patches` (needs the
    /// `spock_patch_probe` extension installed in the server).
    pub fn patches() -> Suite {
        Suite {
            title: "core patch acceptance suite",
            dir: layout::project_root().join("tests").join("patches"),
            integration_tests: &["patches"],
            extra_conf: "fsync = off\nmax_prepared_transactions = 5\n",
        }
    }

    /// Every scenario of the schedule, in order.
    pub fn schedule(&self) -> Result<Vec<String>> {
        let schedule = self.dir.join("schedule");
        let text = std::fs::read_to_string(&schedule)
            .with_context(|| format!("cannot read {}", schedule.display()))?;
        parse_schedule(&text).map_err(|e| anyhow::anyhow!("{}: {e}", schedule.display()))
    }

    /// Expected-output files of a scenario: `<name>.out`, then alternatives
    /// `<name>_1.out`, `<name>_2.out`, ... (for output that differs by major).
    fn expected_files(&self, name: &str) -> Vec<PathBuf> {
        let dir = self.dir.join("expected");
        let mut files = vec![dir.join(format!("{name}.out"))];
        for i in 1..10 {
            files.push(dir.join(format!("{name}_{i}.out")));
        }
        files.into_iter().filter(|p| p.exists()).collect()
    }

    /// Where a run keeps its cluster and results: `target/pg/<major>/<folder>`.
    fn work_dir(&self, installed: &Installed) -> PathBuf {
        let folder = self.dir.file_name().expect("suite folder has a name");
        installed.dirs.root.join(folder)
    }
}

/// Whether a scenario's nodes are separate servers or databases of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Instances,
    Databases,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub nodes: usize,
    pub layout: Layout,
}

/// Parses the optional `-- cluster: ...` header of a scenario.
pub fn parse_header(sql: &str) -> Result<Header, String> {
    let mut header = Header { nodes: 2, layout: Layout::Instances };
    let Some(line) = sql.lines().find(|l| l.starts_with("-- cluster:")) else { return Ok(header) };
    for item in line["-- cluster:".len()..].split_whitespace() {
        match item.split_once('=') {
            Some(("nodes", n)) => {
                header.nodes = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=16).contains(n))
                    .ok_or_else(|| format!("nodes={n}: expected a number from 1 to 16"))?
            }
            Some(("layout", "instances")) => header.layout = Layout::Instances,
            Some(("layout", "databases")) => header.layout = Layout::Databases,
            _ => {
                return Err(format!(
                    "unknown item {item:?} in `{line}`; expected nodes=N and layout=instances|databases"
                ));
            }
        }
    }
    Ok(header)
}

/// A runner directive between psql runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Kill9(String),
    Start(String),
    Stop(String),
    Restart(String),
    /// The node's server-log messages containing the text, since the last look.
    Log(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Sql(String),
    Directive { line: String, action: Action },
}

/// Splits a scenario at its `--! ` directive lines.
pub fn split_segments(sql: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.split_inclusive('\n') {
        let Some(directive) = line.strip_prefix("--! ") else {
            current.push_str(line);
            continue;
        };
        let words: Vec<&str> = directive.split_whitespace().collect();
        let action = match words.as_slice() {
            ["kill9", node] => Action::Kill9(node.to_string()),
            ["start", node] => Action::Start(node.to_string()),
            ["stop", node] => Action::Stop(node.to_string()),
            ["restart", node] => Action::Restart(node.to_string()),
            ["log", node, text @ ..] if !text.is_empty() => Action::Log(node.to_string(), text.join(" ")),
            _ => {
                return Err(format!(
                    "unknown directive `{}`; known: kill9 nK, start nK, stop nK, restart nK, log nK <text>",
                    line.trim_end()
                ));
            }
        };
        if !current.trim().is_empty() {
            out.push(Segment::Sql(std::mem::take(&mut current)));
        }
        current.clear();
        out.push(Segment::Directive { line: line.to_string(), action });
    }
    if !current.trim().is_empty() {
        out.push(Segment::Sql(current));
    }
    Ok(out)
}

/// Reads a schedule: `test: name [name...]` lines, `#` comments.
pub fn parse_schedule(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some(rest) = line.strip_prefix("test:") else {
            return Err(format!("schedule line {}: expected `test: <scenario> ...`, found `{line}`", i + 1));
        };
        for name in rest.split_whitespace() {
            check_name(name)?;
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Scenario names double as database names.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(format!("scenario name {name:?} must be lower-case letters, digits and _ (at most 40)"))
    }
}

/// Replaces run-specific strings (connection strings, socket directory,
/// ports) with stable placeholders.
pub fn normalize(output: &str, replacements: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = replacements.iter().collect();
    sorted.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let mut out = output.to_string();
    for (from, to) in sorted {
        if !from.is_empty() {
            out = out.replace(from.as_str(), to);
        }
    }
    out
}

struct Outcome {
    name: String,
    passed: bool,
    seconds: f64,
}

/// Runs the selected scenarios against a fresh cluster of `installed` in
/// `work`. Returns whether all passed; on failure the cluster is kept.
pub fn run_scenarios(
    installed: &Installed,
    suite: &Suite,
    work: &Path,
    names: &[String],
    nodes: Option<usize>,
    accept: bool,
) -> Result<bool> {
    let mut scenarios = Vec::new();
    for name in names {
        check_name(name).map_err(anyhow::Error::msg)?;
        let path = suite.dir.join("sql").join(format!("{name}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("no scenario {name}: cannot read {}", path.display()))?;
        let header = parse_header(&sql).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let segments = split_segments(&sql).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        scenarios.push((name.clone(), header, segments));
    }
    let needed = scenarios
        .iter()
        .map(|(_, h, _)| if h.layout == Layout::Instances { h.nodes } else { 1 })
        .max()
        .unwrap_or(1);
    let count = nodes.unwrap_or(needed);
    if count < needed {
        bail!("the selected scenarios need {needed} nodes; --nodes {count} is too few");
    }

    // A fresh cluster for this run.
    let cluster_dir = work.join("cluster");
    if let Some(old) = Cluster::load(&cluster_dir).ok().flatten() {
        old.destroy()?;
    }
    fsutil::remove_dir_all_if_exists(&cluster_dir)?;
    let results = work.join("results");
    fsutil::remove_dir_all_if_exists(&results)?;
    std::fs::create_dir_all(&results)?;
    let step = ui::Step::start(format!(
        "Starting a {count}-node cluster of PostgreSQL {}",
        installed.core.postgresql_version
    ));
    let cluster = Cluster::create(&cluster_dir, installed, count, &RunAs::detect()?, suite.extra_conf)?;
    cluster.start()?;
    step.done("");

    let mut outcomes = Vec::new();
    for (name, header, segments) in &scenarios {
        let t0 = Instant::now();
        let result = run_one(&cluster, suite, name, header, segments, &results, accept);
        let passed = match result {
            Ok(passed) => passed,
            Err(e) => {
                ui::error(&e);
                false
            }
        };
        let seconds = t0.elapsed().as_secs_f64();
        println!("{} {name:<32} {seconds:>6.2}s", if passed { "ok    " } else { "FAILED" });
        outcomes.push(Outcome { name: name.clone(), passed, seconds });
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed).collect();
    let total: f64 = outcomes.iter().map(|o| o.seconds).sum();
    println!("{} of {} scenario(s) passed in {total:.1}s", outcomes.len() - failed.len(), outcomes.len());
    if failed.is_empty() {
        cluster.destroy()?;
        return Ok(true);
    }
    for node in &cluster.nodes {
        println!(
            "\n--- last lines of {} (node {}) ---\n{}",
            node.log_file().display(),
            node.name,
            node.log_tail(30)
        );
    }
    cluster.stop(StopMode::Immediate).ok();
    println!(
        "\nFailed: {}. Actual output is in {}; the data directories are kept in {}.",
        failed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", "),
        results.display(),
        cluster_dir.display()
    );
    Ok(false)
}

/// The nodes a scenario sees, as (variable name, node, database).
fn scenario_nodes<'a>(cluster: &'a Cluster, name: &str, header: &Header) -> Vec<(String, &'a Node, String)> {
    (1..=header.nodes)
        .map(|i| match header.layout {
            Layout::Instances => (format!("n{i}"), &cluster.nodes[i - 1], name.to_string()),
            Layout::Databases => (format!("n{i}"), &cluster.nodes[0], format!("{name}_{i}")),
        })
        .collect()
}

fn run_one(
    cluster: &Cluster,
    suite: &Suite,
    name: &str,
    header: &Header,
    segments: &[Segment],
    results: &Path,
    accept: bool,
) -> Result<bool> {
    let nodes = scenario_nodes(cluster, name, header);
    for (_, node, db) in &nodes {
        drop_database(node, db)?;
        node.safe_psql("postgres", &format!("CREATE DATABASE {db}"))?;
    }
    let mut replacements: Vec<(String, String)> = Vec::new();
    for (var, node, db) in &nodes {
        replacements.push((node.connstr(db), format!(":{var}")));
    }
    replacements.push((cluster.socket_dir.display().to_string(), "<socket dir>".into()));
    for node in &cluster.nodes {
        replacements.push((format!("port {}", node.port), format!("port <{}>", node.name)));
        replacements.push((format!("port={}", node.port), format!("port=<{}>", node.name)));
    }

    // Where each node's server log stood when the scenario began.
    let mut log_marks: Vec<(String, u64)> =
        nodes.iter().map(|(var, node, _)| (var.to_string(), log_len(node))).collect();
    let mut output = String::new();
    for segment in segments {
        match segment {
            Segment::Sql(sql) => output.push_str(&psql(&nodes, sql)?),
            Segment::Directive { line, action: Action::Log(var, text) } => {
                output.push_str(line);
                let node = nodes
                    .iter()
                    .find(|(v, _, _)| v == var)
                    .map(|(_, node, _)| *node)
                    .with_context(|| format!("`{}`: the scenario has no node {var}", line.trim_end()))?;
                let mark = log_marks.iter_mut().find(|(v, _)| v == var).expect("one mark per node");
                let log = read_log_from(node, mark.1)?;
                mark.1 += log.len() as u64;
                output.push_str(&log_messages(&log, text));
            }
            Segment::Directive { line, action } => {
                output.push_str(line);
                act(cluster, action)?;
            }
        }
    }
    // Subscriptions first, on every node, while their providers still exist
    // (this also drops their slots and origins), then the databases.
    for (_, node, db) in &nodes {
        if node.is_running() {
            drop_subscriptions(node, db)?;
        }
    }
    for (_, node, db) in &nodes {
        if node.is_running() {
            drop_database(node, db)?;
        }
    }
    let actual = normalize(&output, &replacements);
    let actual_path = results.join(format!("{name}.out"));
    std::fs::write(&actual_path, &actual)?;

    let expected = suite.expected_files(name);
    if accept {
        let target = expected
            .first()
            .cloned()
            .unwrap_or_else(|| suite.dir.join("expected").join(format!("{name}.out")));
        std::fs::create_dir_all(target.parent().unwrap())?;
        std::fs::write(&target, &actual)?;
        ui::note(format!("accepted: wrote {}", target.display()));
        return Ok(true);
    }
    if expected.is_empty() {
        ui::note(format!(
            "{name}: no expected output in {}; review {} and run with --accept",
            suite.dir.join("expected").display(),
            actual_path.display()
        ));
        return Ok(false);
    }
    for file in &expected {
        if std::fs::read_to_string(file).ok().as_deref() == Some(actual.as_str()) {
            return Ok(true);
        }
    }
    let diff = tool("diff", ["-u", &expected[0].display().to_string(), &actual_path.display().to_string()])
        .stdout_capture()
        .unchecked()
        .run()?;
    let text = String::from_utf8_lossy(&diff.stdout);
    let lines: Vec<&str> = text.lines().collect();
    println!("{}", lines[..lines.len().min(200)].join("\n"));
    if lines.len() > 200 {
        println!("... ({} more diff lines)", lines.len() - 200);
    }
    Ok(false)
}

/// Runs one psql over a scenario segment, output and errors together, the
/// way pg_regress does (`-a -q`: echo the input, no notices about `\c`).
fn psql(nodes: &[(String, &Node, String)], sql: &str) -> Result<String> {
    let (_, first, first_db) = &nodes[0];
    let mut args: Vec<String> =
        vec!["-X".into(), "-a".into(), "-q".into(), "-d".into(), first.connstr(first_db)];
    for (var, node, db) in nodes {
        args.push("-v".into());
        args.push(format!("{var}={}", node.connstr(db)));
    }
    args.push("-f".into());
    args.push("-".into());
    let out = tool(first.installed.bin("psql"), &args)
        .env("PGTZ", "UTC")
        .env("PGDATESTYLE", "ISO, MDY")
        .env("PGAPPNAME", "regress")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin_bytes(sql.as_bytes().to_vec())
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run psql")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn act(cluster: &Cluster, action: &Action) -> Result<()> {
    match action {
        Action::Kill9(n) => cluster.node(n)?.kill9(),
        Action::Start(n) => cluster.node(n)?.start(),
        Action::Stop(n) => cluster.node(n)?.stop(StopMode::Fast),
        Action::Restart(n) => cluster.node(n)?.restart(),
        Action::Log(..) => unreachable!("log directives are carried out by run_one"),
    }
}

fn log_len(node: &Node) -> u64 {
    std::fs::metadata(node.log_file()).map(|m| m.len()).unwrap_or(0)
}

/// A node's server log from byte `from` on.
fn read_log_from(node: &Node, from: u64) -> Result<String> {
    let bytes = std::fs::read(node.log_file())
        .with_context(|| format!("cannot read the server log {}", node.log_file().display()))?;
    Ok(String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default()).into_owned())
}

/// The messages of a stretch of server log that contain `text`, one per
/// line, from the level tag on (`LOG:  ...`): the line prefix (time, pid,
/// application) differs from run to run.
pub fn log_messages(log: &str, text: &str) -> String {
    const LEVELS: [&str; 9] = [
        "DEBUG",
        "INFO:  ",
        "NOTICE:  ",
        "WARNING:  ",
        "ERROR:  ",
        "LOG:  ",
        "FATAL:  ",
        "PANIC:  ",
        "DETAIL:  ",
    ];
    let mut out = String::new();
    for line in log.lines().filter(|l| l.contains(text)) {
        if let Some(start) = LEVELS.iter().filter_map(|level| line.find(level)).min() {
            out.push_str(&line[start..]);
            out.push('\n');
        }
    }
    out
}

/// Drops the spock subscriptions a scenario left in its database, if spock
/// is installed there.
fn drop_subscriptions(node: &Node, db: &str) -> Result<()> {
    let exists =
        node.safe_psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"))?;
    if exists != "1" {
        return Ok(());
    }
    node.safe_psql(
        db,
        "DO $$ BEGIN
             IF to_regclass('spock.subscription') IS NOT NULL THEN
                 PERFORM spock.sub_drop(sub_name) FROM spock.subscription;
             END IF;
         END $$;",
    )
    .map(|_| ())
}

/// Drops a scenario database and what it leaves outside itself: its
/// sessions and workers, replication slots of that database, and spock's
/// replication origins (which belong to no database; the scenarios run one
/// after another, so any left now are the dropped database's).
fn drop_database(node: &Node, db: &str) -> Result<()> {
    node.safe_psql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{db}' AND active_pid IS NOT NULL;\n\
             SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{db}' AND NOT active;\n\
             DROP DATABASE IF EXISTS {db} WITH (FORCE);\n\
             DO $$ DECLARE o text; BEGIN\n\
                 FOR o IN SELECT roname FROM pg_replication_origin WHERE roname LIKE 'spk\\_%' LOOP\n\
                     BEGIN PERFORM pg_replication_origin_drop(o); EXCEPTION WHEN OTHERS THEN NULL; END;\n\
                 END LOOP;\n\
             END $$;"
        ),
    )
    .map(|_| ())
}

impl TestCluster {
    pub fn run(self) -> Result<()> {
        doctor::ensure(true)?;
        let manifest = Manifest::builtin();
        let requests = if self.pg.is_empty() { vec![PgRequest::Major(18)] } else { self.pg.clone() };
        let suite = Suite::multi_node();
        let names = if self.scenarios.is_empty() { suite.schedule()? } else { self.scenarios.clone() };
        let mut failed = Vec::new();
        for request in requests {
            let resolved = manifest.resolve(request);
            let installed = build::build_one(&resolved, None, Profile::Dev, false, build::jobs(None))?;
            if !run_suite(&installed, &suite, &names, self.nodes, self.accept, self.scenarios.is_empty())? {
                failed.push(resolved.version.to_string());
            }
        }
        if !failed.is_empty() {
            bail!("the {} failed on PostgreSQL {}", suite.title, failed.join(", "));
        }
        Ok(())
    }
}

/// Scenarios, then (when the whole suite runs) the suite's integration tests
/// in `xtask/tests/`. Prints the suite's run time.
pub fn run_suite(
    installed: &Installed,
    suite: &Suite,
    names: &[String],
    nodes: Option<usize>,
    accept: bool,
    integration: bool,
) -> Result<bool> {
    let t0 = Instant::now();
    let work = suite.work_dir(installed);
    eprintln!("==> {} on PostgreSQL {}", suite.title, installed.core.postgresql_version);
    let mut ok = run_scenarios(installed, suite, &work, names, nodes, accept)?;
    if integration && ok {
        for target in suite.integration_tests {
            ok &= run_integration_tests(installed, &work, target);
        }
    }
    ui::note(format!(
        "{} on PostgreSQL {} took {}",
        suite.title,
        installed.core.postgresql_version,
        ui::human(t0.elapsed())
    ));
    Ok(ok)
}

/// One integration test target (`cargo test -p xtask --test <target>`),
/// its log in `work`. Returns whether it passed.
fn run_integration_tests(installed: &Installed, work: &Path, target: &str) -> bool {
    let step = ui::Step::start(format!("Integration tests (cargo test -p xtask --test {target})"));
    let log = work.join(format!("{target}.log"));
    let result = cmd::run_logged(
        tool(
            "cargo",
            ["test", "-p", "xtask", "--test", target, "--", "--ignored", "--test-threads=1", "--nocapture"],
        )
        .dir(layout::project_root())
        .env("SPOCK_TEST_PG_MAJOR", installed.dirs.major.to_string()),
        &format!("the {target} integration tests"),
        &log,
    );
    match result {
        Ok(()) => {
            step.done(&summarize_cargo_test(&log));
            for figure in reported_figures(&log) {
                ui::note(figure);
            }
            true
        }
        Err(e) => {
            drop(step);
            ui::error(&e);
            false
        }
    }
}

/// Figures the integration tests print for the record: lines such as
/// `B1: 20431 commits in WAL order, 0 not strictly increasing`.
fn reported_figures(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        // With --nocapture the harness prints "test name ... " first.
        .map(|l| l.rsplit_once(" ... ").map_or(l, |(_, rest)| rest))
        .filter(|l| {
            let mut chars = l.chars();
            matches!(chars.next(), Some('A'..='Z'))
                && l.split_once(": ").is_some_and(|(id, _)| {
                    (2..=3).contains(&id.len()) && id[1..].chars().all(|c| c.is_ascii_digit())
                })
        })
        .map(str::to_string)
        .collect()
}

/// "N passed, M ignored" summed over the `test result:` lines of a cargo test log.
pub fn summarize_cargo_test(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut passed, mut ignored) = (0u64, 0u64);
    for line in text.lines().filter(|l| l.starts_with("test result:")) {
        let num = |label: &str| {
            line.split(';').find_map(|part| {
                part.trim().strip_suffix(label).and_then(|n| n.split_whitespace().last()?.parse::<u64>().ok())
            })
        };
        passed += num("passed").unwrap_or(0);
        ignored += num("ignored").unwrap_or(0);
    }
    format!("{passed} passed, {ignored} ignored")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_defaults_and_parses() {
        assert_eq!(parse_header("SELECT 1;").unwrap(), Header { nodes: 2, layout: Layout::Instances });
        let h = parse_header("-- cluster: nodes=3 layout=databases\nSELECT 1;").unwrap();
        assert_eq!(h, Header { nodes: 3, layout: Layout::Databases });
        assert!(parse_header("-- cluster: nodes=0").is_err());
        assert!(parse_header("-- cluster: layout=cloud").is_err());
    }

    #[test]
    fn directives_split_the_scenario() {
        let sql = "\\c :n1\nSELECT 1;\n--! kill9 n2\n--! start n2\n\\c :n2\nSELECT 2;\n";
        let segs = split_segments(sql).unwrap();
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[0], Segment::Sql("\\c :n1\nSELECT 1;\n".into()));
        assert!(matches!(&segs[1], Segment::Directive { action: Action::Kill9(n), .. } if n == "n2"));
        assert!(matches!(&segs[2], Segment::Directive { action: Action::Start(n), .. } if n == "n2"));
        assert!(split_segments("--! reboot n1\n").unwrap_err().contains("unknown directive"));
    }

    #[test]
    fn log_directives_keep_only_matching_messages() {
        let segs = split_segments("--! log n2 spock conflict\n").unwrap();
        assert!(
            matches!(&segs[0], Segment::Directive { action: Action::Log(n, t), .. } if n == "n2" && t == "spock conflict")
        );
        assert!(split_segments("--! log n2\n").is_err());
        let log = "2026-12-02 08:00:00.1 UTC [12] spock apply sub_n1_n2 LOG:  spock conflict insert_exists on t: skip\n\
                   2026-12-02 08:00:00.2 UTC [12] spock apply sub_n1_n2 DETAIL:  local row {} committed 08:00\n\
                   2026-12-02 08:00:00.3 UTC [13] LOG:  checkpoint starting\n";
        assert_eq!(log_messages(log, "spock conflict"), "LOG:  spock conflict insert_exists on t: skip\n");
    }

    #[test]
    fn schedule_is_parsed_and_names_checked() {
        let names = parse_schedule("# first\ntest: a b\n\ntest: c_1\n").unwrap();
        assert_eq!(names, ["a", "b", "c_1"]);
        assert!(parse_schedule("tests: a").is_err());
        assert!(parse_schedule("test: Bad-Name").is_err());
    }

    #[test]
    fn normalize_prefers_longer_matches() {
        let r = vec![
            ("host=/tmp/x port=5 dbname=a".to_string(), ":n1".to_string()),
            ("/tmp/x".to_string(), "<socket dir>".into()),
        ];
        assert_eq!(normalize("c host=/tmp/x port=5 dbname=a in /tmp/x", &r), "c :n1 in <socket dir>");
    }

    #[test]
    fn the_real_schedules_name_existing_scenarios() {
        for suite in [Suite::multi_node(), Suite::patches()] {
            for name in suite.schedule().unwrap() {
                let sql = suite.dir.join("sql").join(format!("{name}.sql"));
                let text =
                    std::fs::read_to_string(&sql).unwrap_or_else(|_| panic!("{} missing", sql.display()));
                parse_header(&text).unwrap();
                split_segments(&text).unwrap();
                assert!(!suite.expected_files(&name).is_empty(), "{name} has no expected output");
            }
        }
    }

    #[test]
    fn figures_are_picked_from_test_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("it.log");
        std::fs::write(
            &log,
            "running 6 tests\ntest b1 ... B1: 100 commits\nBad: no\nC7: COMMIT took 5 ms\ntest x ... ok\n",
        )
        .unwrap();
        assert_eq!(reported_figures(&log), ["B1: 100 commits", "C7: COMMIT took 5 ms"]);
    }

    #[test]
    fn cargo_test_summary_is_summed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("unit.log");
        std::fs::write(
            &log,
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.5s\n\
             test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\n",
        )
        .unwrap();
        assert_eq!(summarize_cargo_test(&log), "15 passed, 1 ignored");
    }
}
