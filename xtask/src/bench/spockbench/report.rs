//! What a run leaves (spockbench.md §8): `result.json` (checked against the
//! JSON Schema in `xtask/spockbench/result.schema.json` before it is
//! written), `summary.txt` (also printed), `lag.csv` and `progress.csv`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::host::HostSample;
use super::sampler::Sample;

/// The JSON Schema every `result.json` must satisfy.
pub const SCHEMA: &str = include_str!("../../../spockbench/result.schema.json");

/// Checks `result` against the schema; the error lists every violation.
pub fn validate(result: &Value) -> Result<()> {
    let schema: Value = serde_json::from_str(SCHEMA).context("the result schema is not JSON")?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| anyhow::anyhow!("the result schema is invalid: {e}"))?;
    let errors: Vec<String> =
        validator.iter_errors(result).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    if !errors.is_empty() {
        bail!("result.json does not match its schema:\n  {}", errors.join("\n  "));
    }
    Ok(())
}

/// Writes `host.csv` (`t_s, cpu_busy_pct, mem_used_bytes`).
pub fn write_host_csv(path: &Path, samples: &[HostSample]) -> Result<()> {
    let mut text = String::from("t_s,cpu_busy_pct,mem_used_bytes\n");
    for s in samples {
        let _ = writeln!(text, "{:.1},{:.1},{}", s.t_s, s.cpu_busy_pct, s.mem_used_bytes);
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `result.json`'s `host`: the machine's CPU busy share (all CPUs, percent)
/// and memory in use over the measured run and the barrier; null without
/// samples (no `/proc`).
pub fn host_summary(samples: &[HostSample]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_busy_pct).collect();
    let (max, p95, _) = super::sampler::summary(&cpu);
    json!({
        "cpu_busy_pct": {"avg": cpu.iter().sum::<f64>() / cpu.len() as f64, "p95": p95, "max": max},
        "mem_used_bytes": {
            "max": samples.iter().map(|s| s.mem_used_bytes).max().unwrap_or(0),
            "final": samples.last().map_or(0, |s| s.mem_used_bytes),
        },
        "samples": samples.len(),
        "series_file": "host.csv",
    })
}

/// Writes `lag.csv` (`t_s, origin, target, lag_bytes, lag_s, slot_backlog_bytes`).
pub fn write_lag_csv(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut text = String::from("t_s,origin,target,lag_bytes,lag_s,slot_backlog_bytes\n");
    let opt = |v: Option<String>| v.unwrap_or_default();
    for s in samples {
        let _ = writeln!(
            text,
            "{:.3},{},{},{},{},{}",
            s.t_s,
            s.origin,
            s.target,
            opt(s.lag_bytes.map(|v| v.to_string())),
            opt(s.lag_s.map(|v| format!("{v:.3}"))),
            opt(s.backlog_bytes.map(|v| v.to_string()))
        );
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `progress.csv` (`t_s, node, tps, latency_ms`).
pub fn write_progress_csv(path: &Path, rows: &[(f64, String, f64, f64)]) -> Result<()> {
    let mut text = String::from("t_s,node,tps,latency_ms\n");
    for (t, node, tps, lat) in rows {
        let _ = writeln!(text, "{t:.1},{node},{tps:.1},{lat:.3}");
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The text of `summary.txt`, from a `result.json` value.
pub fn summary_text(r: &Value) -> String {
    let mut s = String::new();
    let c = &r["config"];
    let env = &r["environment"];
    let _ = writeln!(
        s,
        "spockbench {}{} run {} ({}), preset {}",
        r["mode"].as_str().unwrap_or("?"),
        if c["stock_settings"] == true {
            " with stock settings (wal_level = replica, no commit timestamps)"
        } else {
            ""
        },
        r["run_id"].as_str().unwrap_or("?"),
        r["label"].as_str().unwrap_or(""),
        r["preset"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        s,
        "PostgreSQL {}, {}, patches: {}",
        env["postgresql"].as_str().unwrap_or("?"),
        env["extension"].as_str().map_or("extension not loaded".to_string(), |v| format!("spock {v}")),
        env["core_patches"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "nodes {}, scale {}, mix {}, rate {} per node, duration {} s (warm-up {} s), delta apply {}",
        c["nodes"],
        c["scale"],
        c["mix"]
            .as_array()
            .map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        if c["rate"].is_null() { "unthrottled".to_string() } else { format!("{} tps", c["rate"]) },
        c["duration_s"],
        c["warmup_s"],
        if c["delta_apply"] == json!(true) { "on" } else { "off" }
    );
    let faults = r["faults"].as_array().cloned().unwrap_or_default();
    if !faults.is_empty() {
        let list: Vec<String> = faults
            .iter()
            .map(|f| {
                format!(
                    "{} (at {:.1} s{})",
                    f["fault"].as_str().unwrap_or("?"),
                    f["at_s"].as_f64().unwrap_or(0.0),
                    if f["ok"] == json!(true) { "" } else { ", FAILED" }
                )
            })
            .collect();
        let _ = writeln!(s, "faults: {}", list.join(", "));
    }
    let _ = writeln!(
        s,
        "\n{:<6} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>10}",
        "node", "offered", "achieved", "p50 ms", "p99 ms", "failed", "conflicts", "exceptions"
    );
    let conflicts = r["conflicts"]["per_node"].as_array().cloned().unwrap_or_default();
    for n in r["load"]["per_node"].as_array().cloned().unwrap_or_default() {
        let name = n["node"].as_str().unwrap_or("?");
        let conf = conflicts.iter().find(|c| c["node"].as_str() == Some(name));
        let _ = writeln!(
            s,
            "{:<6} {:>9} {:>9.1} {:>8.2} {:>8.2} {:>7} {:>9} {:>10}",
            name,
            n["offered_tps"].as_f64().map_or("-".to_string(), |v| format!("{v:.0}")),
            n["achieved_tps"].as_f64().unwrap_or(0.0),
            n["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            n["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            n["failed"].to_string(),
            conf.map_or("0".to_string(), |c| c["total"].to_string()),
            conf.map_or("0".to_string(), |c| c["exceptions"].to_string()),
        );
    }
    let _ = writeln!(
        s,
        "\n{:<12} {:>10} {:>14} {:>11} {:>10} {:>13} {:>7}",
        "link", "max lag s", "max lag bytes", "catch-up s", "apply tps", "applied rows", "deltas"
    );
    let count = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    for l in r["replication"]["links"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            s,
            "{:<12} {:>10.2} {:>14} {:>11} {:>10} {:>13} {:>7}",
            format!("{}->{}", l["origin"].as_str().unwrap_or("?"), l["target"].as_str().unwrap_or("?")),
            l["lag_s"]["max"].as_f64().unwrap_or(0.0),
            l["lag_bytes"]["max"].to_string(),
            l["catch_up_s"].as_f64().map_or("-".to_string(), |v| format!("{v:.2}")),
            l["apply_tps"].as_f64().map_or("-".to_string(), |v| format!("{v:.1}")),
            count(&l["applied_rows"]),
            count(&l["delta_apply"]),
        );
    }
    let t = &r["throughput"];
    let _ = writeln!(
        s,
        "\nachieved {:.1} tps, sustainable (MST) {:.1} tps{}, efficiency {:.0} %, cluster catch-up {:.2} s",
        t["achieved_tps"].as_f64().unwrap_or(0.0),
        t["sustainable_tps"].as_f64().unwrap_or(0.0),
        if t["upper_bound"] == json!(true) { " (upper bound: the barrier timed out)" } else { "" },
        t["efficiency"].as_f64().unwrap_or(0.0) * 100.0,
        r["replication"]["catch_up_s"].as_f64().unwrap_or(0.0)
    );
    if let Some(cpu) = r["host"]["cpu_busy_pct"].as_object() {
        let _ = writeln!(
            s,
            "host: CPU busy {:.0} % on average, {:.0} % at most; memory in use at most {} MiB",
            cpu["avg"].as_f64().unwrap_or(0.0),
            cpu["max"].as_f64().unwrap_or(0.0),
            r["host"]["mem_used_bytes"]["max"].as_u64().unwrap_or(0) / (1024 * 1024)
        );
    }
    let verdict = r["consistency"]["verdict"].as_str().unwrap_or("?");
    let failed: Vec<String> = r["consistency"]["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|c| c["status"] != json!("PASS"))
        .map(|c| {
            let details: Vec<String> = c["details"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect();
            format!(
                "{} {}: {}",
                c["id"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                details.join("\n    ")
            )
        })
        .collect();
    let _ = writeln!(s, "\nverdict: {verdict}");
    for f in failed {
        let _ = writeln!(s, "  {f}");
    }
    if let Some(why) = r["consistency"]["invalid_reason"].as_str() {
        let _ = writeln!(s, "  invalid: {why}");
    }
    s
}

/// `YYYY-MM-DDTHH:MM:SSZ` and `YYYYMMDDTHHMMSSZ` of a Unix time.
pub fn utc(unix: u64) -> (String, String) {
    let t = crate::utc::Utc::from_unix(unix);
    let (y, m, d, h, mi, s) = (t.year, t.month, t.day, t.hour, t.minute, t.second);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_169_600).0, "2026-12-02T00:00:00Z");
        assert_eq!(utc(951_782_400 + 3661).1, "20000229T010101Z");
    }

    #[test]
    fn the_schema_rejects_a_result_without_a_verdict() {
        let bad = json!({"schema_version": 1});
        assert!(validate(&bad).is_err());
    }
}
