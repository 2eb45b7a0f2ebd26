//! The load driver (spockbench.md §4): one pgbench per node, from the same
//! build as the servers, connected only to that node, with the profiles'
//! scripts and the node's variables; and what its report and per-transaction
//! log say (the parsing is pure and tested here).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::config::{Config, PROFILES, RemoteBranches};
use super::scripts;
use crate::node::Node;

/// What one pgbench run of one node did.
#[derive(Clone, Debug, Default)]
pub struct DriverRun {
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
    pub committed: u64,
    pub failed: u64,
    pub retried: u64,
    /// pgbench ended with an error (a client aborted): the run is INVALID.
    pub aborted: bool,
    pub output: String,
    /// The per-transaction log files pgbench wrote.
    pub logs: Vec<PathBuf>,
    /// `(seconds since start, tps, latency ms)` from the `-P 1` lines.
    pub progress: Vec<(f64, f64, f64)>,
}

/// The pgbench arguments of node `k` (1-based) for `seconds`.
pub fn args(config: &Config, k: usize, seconds: u64, dir: &Path, log_prefix: &str) -> Vec<String> {
    let (first, step, count) = config.home(k);
    let mut a: Vec<String> = vec![
        "-n".into(),
        "-c".into(),
        config.clients.to_string(),
        "-j".into(),
        config.threads.to_string(),
        "-T".into(),
        seconds.to_string(),
        "-M".into(),
        config.protocol.into(),
    ];
    if let Some(rate) = config.rate {
        a.extend(["-R".into(), rate.to_string()]);
    }
    a.extend([
        "--max-tries".into(),
        "10".into(),
        "--failures-detailed".into(),
        "-P".into(),
        "1".into(),
        "--log".into(),
        format!("--log-prefix={}", dir.join(log_prefix).display()),
        format!("--sampling-rate={}", config.sampling_rate),
        "-s".into(),
        config.scale.to_string(),
    ]);
    let remote_mode = u32::from(config.remote_branches == RemoteBranches::Other);
    for (name, value) in [
        ("node", k as u32),
        ("nodes", config.nodes as u32),
        ("nbranches", config.scale),
        ("home_first", first),
        ("home_step", step),
        ("home_count", count),
        ("remote_mode", remote_mode),
    ] {
        a.extend(["-D".into(), format!("{name}={value}")]);
    }
    for (i, weight) in config.mix.iter().enumerate() {
        if *weight > 0 {
            a.extend(["-f".into(), format!("{}@{weight}", dir.join(scripts::file_name(i)).display())]);
        }
    }
    a
}

/// Writes the profiles' scripts into `dir`.
pub fn write_scripts(dir: &Path) -> Result<()> {
    for i in 0..PROFILES.len() {
        let path = dir.join(scripts::file_name(i));
        std::fs::write(&path, scripts::script(i))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs node `k`'s pgbench for `seconds` (blocking); its output goes to
/// `<dir>/<log_prefix>.out`.
pub fn run(
    node: &Node,
    db: &str,
    config: &Config,
    k: usize,
    seconds: u64,
    dir: &Path,
    log_prefix: &str,
) -> DriverRun {
    let args = args(config, k, seconds, dir, log_prefix);
    let started = Instant::now();
    let result =
        // The node id travels as a setting too: in single mode every
        // driver shares one server, and the history key's default picks the
        // driver's own sequence with it.
        node.pgbench_cmd(db, &args)
            .env("PGOPTIONS", format!("-c spockbench.node={k}"))
            .dir(dir)
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run();
    let ended = Instant::now();
    let (ok, output) = match result {
        Ok(out) => (
            out.status.success(),
            // A client error may quote the connection string.
            crate::node::redact_passwords(&format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        ),
        Err(e) => (false, format!("cannot run pgbench: {e}")),
    };
    let _ = std::fs::write(dir.join(format!("{log_prefix}.out")), &output);
    let summary = parse_summary(&output);
    let logs = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{log_prefix}.")) && !n.ends_with(".out"))
                })
                .collect()
        })
        .unwrap_or_default();
    DriverRun {
        started: Some(started),
        ended: Some(ended),
        committed: summary.committed,
        failed: summary.failed,
        retried: summary.retried,
        aborted: !ok || summary.aborted,
        progress: parse_progress(&output),
        output,
        logs,
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub committed: u64,
    pub failed: u64,
    pub retried: u64,
    pub aborted: bool,
}

fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The counts of pgbench's final report.
pub fn parse_summary(output: &str) -> Summary {
    let mut s = Summary::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            s.committed = leading_number(rest).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            s.failed = leading_number(rest).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("number of transactions retried:") {
            s.retried = leading_number(rest).unwrap_or(0);
        } else if line.contains("Run was aborted") || line.contains("aborted in command") {
            s.aborted = true;
        }
    }
    s
}

/// The `-P 1` lines: `progress: 5.0 s, 99.8 tps, lat 2.134 ms stddev ...`.
pub fn parse_progress(output: &str) -> Vec<(f64, f64, f64)> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("progress: ")?;
            let mut parts = rest.split(", ");
            let t = parts.next()?.strip_suffix(" s")?.parse().ok()?;
            let tps = parts.next()?.strip_suffix(" tps")?.parse().ok()?;
            let lat = parts.next()?.strip_prefix("lat ")?.split(' ').next()?.parse().ok().unwrap_or(f64::NAN);
            Some((t, tps, lat))
        })
        .collect()
}

/// Latency and schedule lag of committed transactions, in ms.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub avg: f64,
    pub stddev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Reads pgbench's per-transaction log lines (`client_id transaction_no
/// time script_no time_epoch time_us [schedule_lag] [retries]`): latencies
/// and schedule lags in microseconds of the transactions that committed
/// (failed ones say `failed`, `serialization` or `deadlock` instead of a time).
pub fn parse_log(text: &str, rate_limited: bool) -> (Vec<f64>, Vec<f64>) {
    let mut latencies = Vec::new();
    let mut lags = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let Ok(latency) = fields[2].parse::<f64>() else { continue };
        latencies.push(latency);
        if rate_limited && let Some(lag) = fields.get(6).and_then(|f| f.parse::<f64>().ok()) {
            lags.push(lag);
        }
    }
    (latencies, lags)
}

/// Summary statistics of microsecond samples, in ms.
pub fn latency_stats(samples_us: &mut [f64]) -> Latency {
    if samples_us.is_empty() {
        return Latency::default();
    }
    samples_us.sort_by(f64::total_cmp);
    let n = samples_us.len() as f64;
    let mean = samples_us.iter().sum::<f64>() / n;
    let var = samples_us.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let pct = |p: f64| {
        let idx = ((p / 100.0) * n).ceil() as usize;
        samples_us[idx.clamp(1, samples_us.len()) - 1]
    };
    let ms = |us: f64| (us / 1000.0 * 1000.0).round() / 1000.0;
    Latency {
        avg: ms(mean),
        stddev: ms(var.sqrt()),
        p50: ms(pct(50.0)),
        p90: ms(pct(90.0)),
        p99: ms(pct(99.0)),
        max: ms(*samples_us.last().unwrap()),
    }
}

/// Latency and schedule lag of a run, from its log files.
pub fn latencies(run: &DriverRun, rate_limited: bool) -> (Latency, Latency) {
    let mut all = Vec::new();
    let mut lags = Vec::new();
    for path in &run.logs {
        if let Ok(text) = std::fs::read_to_string(path) {
            let (l, g) = parse_log(&text, rate_limited);
            all.extend(l);
            lags.extend(g);
        }
    }
    (latency_stats(&mut all), latency_stats(&mut lags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
pgbench (18.6)
progress: 1.0 s, 99.0 tps, lat 3.210 ms stddev 1.000, 0 failed, lag 0.120 ms
progress: 2.0 s, 101.0 tps, lat 2.900 ms stddev 0.900, 1 failed, lag 0.100 ms
transaction type: multiple scripts
number of transactions actually processed: 5990
number of failed transactions: 2 (0.033%)
number of serialization failures: 0 (0.000%)
number of deadlock failures: 2 (0.033%)
number of transactions retried: 7 (0.117%)
total number of retries: 9
latency average = 3.1 ms
tps = 99.8 (without initial connection time)
";

    #[test]
    fn the_report_gives_counts_and_progress() {
        assert_eq!(parse_summary(REPORT), Summary { committed: 5990, failed: 2, retried: 7, aborted: false });
        assert_eq!(parse_progress(REPORT), vec![(1.0, 99.0, 3.21), (2.0, 101.0, 2.9)]);
        let aborted = "pgbench: error: client 0 script 1 aborted in command 3 query 0: ERROR: x\n";
        assert!(parse_summary(aborted).aborted);
    }

    #[test]
    fn log_lines_give_latencies_of_committed_transactions() {
        let log =
            "0 1 1200 0 1700000000 1 150 0\n0 2 failed 1 1700000000 2 100 9\n1 1 3400 2 1700000000 3 50 1\n";
        let (lat, lag) = parse_log(log, true);
        assert_eq!(lat, vec![1200.0, 3400.0]);
        assert_eq!(lag, vec![150.0, 50.0]);
        let mut samples: Vec<f64> = (1..=100).map(|i| f64::from(i) * 1000.0).collect();
        let s = latency_stats(&mut samples);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(s.avg, 50.5);
    }
}
