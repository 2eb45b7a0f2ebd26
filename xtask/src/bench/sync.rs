//! `cargo xtask bench sync`: the initial copy of one large table by a
//! subscription (`sub_create(synchronize_data := true)`) against `pg_dump
//! --data-only | psql` of the same table between the same two servers, in
//! the same run, with the apply worker's memory sampled while it copies.
//!
//! The table has a primary key on both sides in both paths (the key's index
//! is built while rows arrive), and both targets start empty. The spock time
//! runs from `sub_create` until the subscription is ready, so it includes
//! the slot, the snapshot and the commit. Afterwards both copies must equal
//! the provider's table.

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::apply::results_dir;
use crate::cluster::{Cluster, sql_literal};
use crate::flags::BenchSync;
use crate::node::{Node, SUPERUSER};
use crate::{fsutil, ui};

const DB_SOURCE: &str = "bench_sync";
const DB_DUMP: &str = "bench_dump";

#[derive(Serialize)]
struct Report {
    postgresql: String,
    profile: String,
    rows: u64,
    table_mb: f64,
    dump_psql_seconds: f64,
    spock_seconds: f64,
    /// The apply worker's anonymous memory (RssAnon), sampled every 100 ms
    /// while it copied: the first and the largest sample, in MB.
    worker_first_mb: f64,
    worker_peak_mb: f64,
    samples: usize,
}

impl Report {
    fn ratio(&self) -> f64 {
        self.dump_psql_seconds / self.spock_seconds
    }
}

impl BenchSync {
    pub fn run(self) -> Result<()> {
        if self.rows == 0 {
            bail!("--rows must be at least 1");
        }
        let cluster = super::fresh_cluster(self.pg, self.profile, "bench-sync")?;
        let (dir, installed) = (cluster.dir.clone(), cluster.installed.clone());
        let report = self.measure(&cluster).with_context(|| {
            format!(
                "the sync benchmark failed; the cluster is kept in {} (logs: {}, {})",
                dir.display(),
                cluster.nodes[0].log_file().display(),
                cluster.nodes[1].log_file().display()
            )
        })?;
        let report = Report {
            postgresql: format!("{}{}", installed.core.postgresql_version, installed.core.extra_version),
            profile: format!("{:?}", self.profile).to_lowercase(),
            ..report
        };
        print_report(&report);
        let out = results_dir().join(format!("sync-{}.json", installed.core.postgresql_version));
        fsutil::write_json(&out, &report)?;
        println!("figures written to {}", out.display());
        if self.keep {
            println!("cluster kept in {}", dir.display());
        } else {
            cluster.destroy()?;
        }
        Ok(())
    }

    fn measure(&self, cluster: &Cluster) -> Result<Report> {
        let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
        const TABLE: &str = "CREATE TABLE big (id bigint PRIMARY KEY, account int NOT NULL, \
                             note text NOT NULL, amount numeric(12,2), created timestamptz NOT NULL)";
        let step = ui::Step::start(format!("Filling a table of {} rows on n1", self.rows));
        for (node, db) in [(n1, DB_SOURCE), (n2, DB_SOURCE), (n2, DB_DUMP)] {
            node.safe_psql("postgres", &format!("CREATE DATABASE {db}"))?;
            node.safe_psql(db, TABLE)?;
        }
        n1.safe_psql(
            DB_SOURCE,
            &format!(
                "INSERT INTO big SELECT g, g % 100000, repeat(md5(g::text), 3), g * 0.01, \
                 '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, {}) g;
                 VACUUM ANALYZE big; CHECKPOINT",
                self.rows
            ),
        )?;
        let table_mb: f64 =
            n1.safe_psql(DB_SOURCE, "SELECT pg_relation_size('big') / 1e6")?.parse().unwrap_or(0.0);
        step.done(&format!("{table_mb:.0} MB"));

        let step = ui::Step::start("pg_dump --data-only | psql from n1 to n2");
        let dump_psql_seconds = dump_into_psql(n1, n2)?;
        step.done(&format!("{dump_psql_seconds:.2} s"));

        let step = ui::Step::start("spock: sub_create(synchronize_data := true) on n2");
        for node in [n1, n2] {
            node.safe_psql(
                DB_SOURCE,
                &format!(
                    "CREATE EXTENSION spock; SELECT spock.node_create({}, {})",
                    sql_literal(&node.name),
                    sql_literal(&node.connstr(DB_SOURCE))
                ),
            )?;
        }
        n2.safe_psql("postgres", "CHECKPOINT")?;
        n1.safe_psql(DB_SOURCE, "SELECT spock.repset_add_table('default', 'big')")?;
        let started = Instant::now();
        n2.safe_psql(
            DB_SOURCE,
            &format!(
                "SELECT spock.sub_create('sub_n2_n1', {}, replication_sets := '{{default}}', \
                 synchronize_data := true)",
                sql_literal(&n1.connstr(DB_SOURCE))
            ),
        )?;
        let pid: u32 = {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let pid = n2.safe_psql(
                    DB_SOURCE,
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'spock apply' LIMIT 1",
                )?;
                if let Ok(pid) = pid.parse() {
                    break pid;
                }
                if Instant::now() > deadline {
                    bail!("no spock apply worker started on n2 within 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let done = AtomicBool::new(false);
        let (samples, waited) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut samples = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    if let Some(kb) = rss_anon_kb(pid) {
                        samples.push(kb);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            });
            let waited = n2.safe_psql(DB_SOURCE, "SELECT spock.sub_wait_for_sync('sub_n2_n1')");
            done.store(true, Ordering::Relaxed);
            (sampler.join().unwrap_or_default(), waited)
        });
        waited?;
        let spock_seconds = started.elapsed().as_secs_f64();
        step.done(&format!("{spock_seconds:.2} s"));

        let digest = "SELECT count(*) || ' ' || md5(string_agg(b::text, ',' ORDER BY id)) FROM big b";
        let expected = n1.safe_psql(DB_SOURCE, digest)?;
        for (db, what) in [(DB_SOURCE, "spock's copy"), (DB_DUMP, "pg_dump | psql's copy")] {
            if n2.safe_psql(db, digest)? != expected {
                bail!("{what} on n2 differs from n1's table");
            }
        }
        let mb = |kb: u64| kb as f64 / 1024.0;
        Ok(Report {
            postgresql: String::new(),
            profile: String::new(),
            rows: self.rows,
            table_mb,
            dump_psql_seconds,
            spock_seconds,
            worker_first_mb: samples.first().copied().map(mb).unwrap_or(0.0),
            worker_peak_mb: samples.iter().copied().max().map(mb).unwrap_or(0.0),
            samples: samples.len(),
        })
    }
}

/// `pg_dump --data-only --table=big` of n1 piped into psql on n2; seconds.
fn dump_into_psql(n1: &Node, n2: &Node) -> Result<f64> {
    let conn = |node: &Node| {
        vec![
            "-h".to_string(),
            node.socket_dir.display().to_string(),
            "-p".to_string(),
            node.port.to_string(),
            "-U".to_string(),
            SUPERUSER.to_string(),
        ]
    };
    let started = Instant::now();
    let mut dump = std::process::Command::new(n1.installed.bin("pg_dump"))
        .args(conn(n1))
        .args(["--data-only", "--table=public.big", DB_SOURCE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run pg_dump")?;
    let dump_out = dump.stdout.take().context("pg_dump has no stdout")?;
    let psql = std::process::Command::new(n2.installed.bin("psql"))
        .args(conn(n2))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB_DUMP])
        .stdin(dump_out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run psql")?;
    let status = dump.wait().context("pg_dump did not finish")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = dump.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("pg_dump failed ({status}): {}", err.trim());
    }
    if !psql.status.success() {
        bail!("psql failed ({}): {}", psql.status, String::from_utf8_lossy(&psql.stderr).trim());
    }
    Ok(seconds)
}

/// A process's anonymous resident memory in kB (`RssAnon` of
/// `/proc/<pid>/status`), `None` once it is gone.
fn rss_anon_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_anon(&status)
}

fn parse_rss_anon(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn print_report(r: &Report) {
    println!();
    println!(
        "initial copy of {} rows ({:.0} MB of heap), PostgreSQL {} ({})",
        r.rows, r.table_mb, r.postgresql, r.profile
    );
    println!(
        "  {:<44} {:>10.2} s {:>10.0} rows/s",
        "pg_dump --data-only | psql",
        r.dump_psql_seconds,
        r.rows as f64 / r.dump_psql_seconds
    );
    println!(
        "  {:<44} {:>10.2} s {:>10.0} rows/s",
        "spock sub_create(synchronize_data)",
        r.spock_seconds,
        r.rows as f64 / r.spock_seconds
    );
    println!("  spock's speed relative to pg_dump | psql: {:.2}x (target: at least 0.80x)", r.ratio());
    println!(
        "  apply worker memory while copying (RssAnon, {} samples every 100 ms): first {:.1} MB, peak {:.1} MB",
        r.samples, r.worker_first_mb, r.worker_peak_mb
    );
    println!("  both copies equal n1's table (count and ordered md5)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_anon_is_read_from_proc_status() {
        let status = "Name:\tpostgres\nVmRSS:\t  20000 kB\nRssAnon:\t    3456 kB\nRssFile:\t 100 kB\n";
        assert_eq!(parse_rss_anon(status), Some(3456));
        assert_eq!(parse_rss_anon("Name: x\n"), None);
    }
}
