//! `cargo xtask bench apply`: catch-up apply throughput of spock against
//! PostgreSQL's built-in logical replication, on the same build, in the same
//! run, with the same backlog.
//!
//! Two nodes, one way. For each path a backlog is built on the provider while
//! the subscription is disabled: pgbench's TPC-B-like transactions from a few
//! clients, then (separately) one large transaction. The subscription is
//! enabled and the time until the backlog's last change is visible on the
//! subscriber is measured on the subscriber's own clock: a marker row
//! committed after the backlog lands in a table whose subscriber-only column
//! defaults to `clock_timestamp()`. Afterwards both nodes must hold the same
//! data.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cluster::{Cluster, sql_literal};
use crate::flags::BenchApply;
use crate::node::Node;
use crate::{fsutil, layout, ui};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Path {
    Spock,
    Builtin,
}

impl Path {
    fn db(self) -> &'static str {
        match self {
            Path::Spock => "bench_spock",
            Path::Builtin => "bench_builtin",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Path::Spock => "spock",
            Path::Builtin => "built-in",
        }
    }
}

/// One catch-up measurement.
#[derive(Clone, Debug, Serialize)]
struct CatchUp {
    transactions: u64,
    rows: u64,
    seconds: f64,
}

impl CatchUp {
    fn tps(&self) -> f64 {
        self.transactions as f64 / self.seconds
    }
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

#[derive(Clone, Debug, Serialize)]
struct PathResult {
    path: Path,
    /// Rate at which pgbench built the backlog on the provider.
    provider_tps: f64,
    tpcb: CatchUp,
    large: CatchUp,
}

#[derive(Serialize)]
struct Report {
    postgresql: String,
    profile: String,
    transactions: u64,
    clients: u32,
    scale: u32,
    large_rows: u64,
    /// The `--set` settings, as given.
    settings: Vec<String>,
    results: Vec<PathResult>,
}

/// `--set NAME=VALUE` values: a setting name (letters, digits, `_`, `.`)
/// and any value.
fn parse_settings(given: &[String]) -> Result<Vec<(String, String)>> {
    given
        .iter()
        .map(|s| {
            let (name, value) =
                s.split_once('=').with_context(|| format!("--set {s}: expected NAME=VALUE"))?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                bail!("--set {s}: \"{name}\" is not a setting name");
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

impl BenchApply {
    pub fn run(self) -> Result<()> {
        if self.clients == 0 || self.transactions < u64::from(self.clients) {
            bail!("--transactions must be at least --clients, and --clients at least 1");
        }
        let settings = parse_settings(&self.settings)?;
        let cluster = super::fresh_cluster(self.pg, self.profile, "bench-apply")?;
        let (dir, installed) = (cluster.dir.clone(), cluster.installed.clone());
        for node in &cluster.nodes {
            for (name, value) in &settings {
                node.safe_psql("postgres", &format!("ALTER SYSTEM SET {name} = {}", sql_literal(value)))
                    .with_context(|| format!("--set {name}={value} was refused by the server"))?;
            }
            if !settings.is_empty() {
                node.safe_psql("postgres", "SELECT pg_reload_conf()")?;
            }
        }

        let mut results = Vec::new();
        for path in [Path::Spock, Path::Builtin] {
            results.push(self.measure(&cluster, path).with_context(|| {
                format!(
                    "the {} benchmark failed; the cluster is kept in {} (logs: {}, {})",
                    path.label(),
                    dir.display(),
                    cluster.nodes[0].log_file().display(),
                    cluster.nodes[1].log_file().display()
                )
            })?);
        }
        let report = Report {
            postgresql: format!("{}{}", installed.core.postgresql_version, installed.core.extra_version),
            profile: format!("{:?}", self.profile).to_lowercase(),
            transactions: self.transactions,
            clients: self.clients,
            scale: self.scale,
            large_rows: self.large_rows,
            settings: self.settings.clone(),
            results,
        };
        print_report(&report);
        let out = results_dir().join(format!("apply-{}.json", installed.core.postgresql_version));
        fsutil::write_json(&out, &report)?;
        println!("figures written to {}", out.display());
        if self.keep {
            println!(
                "cluster kept in {}, with databases bench_spock and bench_builtin; its nodes:",
                dir.display()
            );
            for node in &cluster.nodes {
                println!("  {}: {}", node.name, node.connstr("postgres"));
            }
        } else {
            cluster.destroy()?;
        }
        Ok(())
    }

    fn measure(&self, cluster: &Cluster, path: Path) -> Result<PathResult> {
        let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
        let db = path.db();
        let step = ui::Step::start(format!(
            "{}: preparing pgbench tables (scale {}) on both nodes",
            path.label(),
            self.scale
        ));
        for node in [n1, n2] {
            node.safe_psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db}"),
            )?;
            pgbench(node, db, &["-i", "-q", "-s", &self.scale.to_string()])?;
            node.safe_psql(db, "CREATE TABLE bench_large (id bigint PRIMARY KEY, payload text)")?;
        }
        n1.safe_psql(db, "CREATE TABLE bench_marker (id int PRIMARY KEY)")?;
        // The subscriber's copy records when each marker was applied.
        n2.safe_psql(db, "CREATE TABLE bench_marker (id int PRIMARY KEY, applied_at timestamptz DEFAULT clock_timestamp())")?;
        step.done("");

        let step = ui::Step::start(format!("{}: subscribing n2 to n1", path.label()));
        match path {
            Path::Spock => {
                for node in [n1, n2] {
                    node.safe_psql(
                        db,
                        &format!(
                            "CREATE EXTENSION spock; SELECT spock.node_create({}, {})",
                            sql_literal(&node.name),
                            sql_literal(&node.connstr(db))
                        ),
                    )?;
                }
                n1.safe_psql(
                    db,
                    "SET client_min_messages = error;
                     SELECT spock.repset_add_all_tables('default', '{public}');
                     SELECT spock.repset_add_table('default_insert_only', 'pgbench_history');",
                )?;
                n2.safe_psql(
                    db,
                    &format!("SELECT spock.sub_create('sub_n2_n1', {})", sql_literal(&n1.connstr(db))),
                )?;
                n2.safe_psql(db, "SELECT spock.sub_wait_for_sync('sub_n2_n1')")?;
            }
            Path::Builtin => {
                n1.safe_psql(db, "CREATE PUBLICATION bench FOR ALL TABLES")?;
                n2.safe_psql(
                    db,
                    &format!(
                        "CREATE SUBSCRIPTION bench CONNECTION {} PUBLICATION bench WITH (copy_data = false)",
                        sql_literal(&n1.connstr(db))
                    ),
                )?;
                n2.poll_query_until(
                    db,
                    "SELECT count(*) > 0 FROM pg_stat_subscription WHERE subname = 'bench' AND pid IS NOT NULL",
                    Duration::from_secs(60),
                )?;
            }
        }
        step.done("");

        // TPC-B backlog.
        self.disable(n2, db, path)?;
        let per_client = self.transactions / u64::from(self.clients);
        let transactions = per_client * u64::from(self.clients);
        let step = ui::Step::start(format!(
            "{}: building a backlog of {transactions} TPC-B transactions ({} clients)",
            path.label(),
            self.clients
        ));
        let out = pgbench(
            n1,
            db,
            &[
                "-n",
                "-c",
                &self.clients.to_string(),
                "-j",
                &self.clients.min(2).to_string(),
                "-t",
                &per_client.to_string(),
            ],
        )?;
        let provider_tps = parse_tps(&out).unwrap_or(0.0);
        n1.safe_psql(db, "INSERT INTO bench_marker VALUES (1)")?;
        step.done(&format!("{provider_tps:.0} tps on the provider"));
        let step = ui::Step::start(format!("{}: catching up", path.label()));
        let seconds = self.catch_up(n1, n2, db, path, 1)?;
        step.done(&format!("{:.0} transactions/s", transactions as f64 / seconds));
        let tpcb = CatchUp { transactions, rows: transactions * 4, seconds };

        // One large transaction.
        self.disable(n2, db, path)?;
        let step = ui::Step::start(format!("{}: one transaction of {} rows", path.label(), self.large_rows));
        n1.safe_psql(
            db,
            &format!(
                "INSERT INTO bench_large SELECT g, md5(g::text) FROM generate_series(1, {}) g",
                self.large_rows
            ),
        )?;
        n1.safe_psql(db, "INSERT INTO bench_marker VALUES (2)")?;
        step.done("");
        let step = ui::Step::start(format!("{}: catching up", path.label()));
        let seconds = self.catch_up(n1, n2, db, path, 2)?;
        step.done(&format!("{:.0} rows/s", self.large_rows as f64 / seconds));
        let large = CatchUp { transactions: 1, rows: self.large_rows, seconds };

        converged(n1, n2, db)?;
        if self.keep {
            return Ok(PathResult { path, provider_tps, tpcb, large });
        }
        // Leave nothing running that would compete with the next path.
        match path {
            Path::Spock => {
                n2.safe_psql(db, "SELECT spock.sub_drop('sub_n2_n1')")?;
            }
            Path::Builtin => {
                n2.safe_psql(db, "DROP SUBSCRIPTION bench")?;
            }
        }
        for node in [n1, n2] {
            node.safe_psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"))?;
        }
        Ok(PathResult { path, provider_tps, tpcb, large })
    }

    /// Disables the subscription and waits until its worker is gone.
    fn disable(&self, n2: &Node, db: &str, path: Path) -> Result<()> {
        match path {
            Path::Spock => {
                n2.safe_psql(db, "SELECT spock.sub_disable('sub_n2_n1', immediate := true)")?;
            }
            Path::Builtin => {
                n2.safe_psql(db, "ALTER SUBSCRIPTION bench DISABLE")?;
                n2.poll_query_until(
                    db,
                    "SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'bench' AND pid IS NOT NULL",
                    Duration::from_secs(60),
                )?;
            }
        }
        Ok(())
    }

    /// Enables the subscription and returns the seconds until marker `id`
    /// is applied, on the subscriber's clock.
    fn catch_up(&self, n1: &Node, n2: &Node, db: &str, path: Path, id: i32) -> Result<f64> {
        // Start from clean buffers on both nodes, so that no checkpoint of
        // the backlog runs during the measurement.
        n1.safe_psql(db, "CHECKPOINT")?;
        n2.safe_psql(db, "CHECKPOINT")?;
        let start = n2.safe_psql(db, "SELECT clock_timestamp()")?;
        match path {
            Path::Spock => n2.safe_psql(db, "SELECT spock.sub_enable('sub_n2_n1')")?,
            Path::Builtin => n2.safe_psql(db, "ALTER SUBSCRIPTION bench ENABLE")?,
        };
        n2.poll_query_until(
            db,
            &format!("SELECT count(*) = 1 FROM bench_marker WHERE id = {id}"),
            Duration::from_secs(self.timeout),
        )
        .with_context(|| format!("the subscriber did not catch up within {} s", self.timeout))?;
        let seconds = n2.safe_psql(
            db,
            &format!(
                "SELECT extract(epoch FROM applied_at - {}::timestamptz) FROM bench_marker WHERE id = {id}",
                sql_literal(&start)
            ),
        )?;
        seconds.trim().parse::<f64>().with_context(|| format!("unexpected elapsed time {seconds:?}"))
    }
}

/// Checks that both nodes hold the same replicated data.
fn converged(n1: &Node, n2: &Node, db: &str) -> Result<()> {
    let digest = "SELECT (SELECT md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) FROM pgbench_accounts)
                      || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers)
                      || ' ' || (SELECT sum(bbalance) FROM pgbench_branches)
                      || ' ' || (SELECT count(*) || '/' || coalesce(sum(delta), 0) FROM pgbench_history)
                      || ' ' || (SELECT count(*) || '/' || coalesce(md5(string_agg(payload, '' ORDER BY id)), '') FROM bench_large)";
    let (a, b) = (n1.safe_psql(db, digest)?, n2.safe_psql(db, digest)?);
    if a != b {
        bail!("the nodes did not converge: provider {a}, subscriber {b}");
    }
    Ok(())
}

fn pgbench(node: &Node, db: &str, args: &[&str]) -> Result<String> {
    node.pgbench(db, args)
}

/// The `tps = N` figure of pgbench's report.
fn parse_tps(out: &str) -> Option<f64> {
    out.lines().find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

fn print_report(r: &Report) {
    let spock = r.results.iter().find(|p| p.path == Path::Spock);
    let builtin = r.results.iter().find(|p| p.path == Path::Builtin);
    println!();
    println!(
        "apply catch-up on PostgreSQL {} ({} build): 2 nodes, one way, synchronous_commit = off",
        r.postgresql, r.profile
    );
    println!(
        "backlog: {} TPC-B transactions from {} clients (scale {}), then one transaction of {} rows",
        r.transactions, r.clients, r.scale, r.large_rows
    );
    if !r.settings.is_empty() {
        println!("settings: {}", r.settings.join(", "));
    }
    println!("{:<34} {:>12} {:>12} {:>8}", "", "spock", "built-in", "ratio");
    let row = |label: &str, f: &dyn Fn(&PathResult) -> f64, digits: usize| {
        let (a, b) = (spock.map(f), builtin.map(f));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
        println!("{label:<34} {:>12} {:>12} {ratio:>8}", fmt(a), fmt(b));
    };
    row("TPC-B catch-up, seconds", &|p| p.tpcb.seconds, 2);
    row("TPC-B catch-up, transactions/s", &|p| p.tpcb.tps(), 0);
    row("TPC-B catch-up, rows/s", &|p| p.tpcb.rows_per_second(), 0);
    row("large transaction, seconds", &|p| p.large.seconds, 2);
    row("large transaction, rows/s", &|p| p.large.rows_per_second(), 0);
    row("provider pgbench rate, tps", &|p| p.provider_tps, 0);
    println!(
        "converged: yes (accounts, tellers, branches, history and the large table are identical on both nodes)"
    );
}

/// Where `cargo xtask bench` writes its results.
pub fn results_dir() -> PathBuf {
    layout::target_dir().join("bench")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_read_from_pgbench_output() {
        let out = "latency average = 1.2 ms\ntps = 31234.567890 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(31234.56789));
        assert_eq!(parse_tps("nothing here"), None);
    }

    #[test]
    fn settings_are_name_value_pairs() {
        let ok = parse_settings(&["spock.channel_counters=off".into(), "work_mem=64MB".into()]).unwrap();
        assert_eq!(ok[0], ("spock.channel_counters".to_string(), "off".to_string()));
        assert_eq!(ok[1].1, "64MB");
        assert!(parse_settings(&["no_equals_sign".into()]).is_err());
        assert!(parse_settings(&["bad name;=1".into()]).is_err());
        assert!(parse_settings(&["=1".into()]).is_err());
    }
}
