//! The lag sampler (spockbench.md §7): one thread that, every `sample_s`,
//! reads each node's `spock.lag_tracker` (lag of every link into it) and
//! each node's slots (the backlog of every link out of it; in native mode
//! also the walsenders' replay lag), until it is told to stop; and the
//! summaries of the series it gathered (pure).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::node::Node;

/// One sample of one link `origin -> target`.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t_s: f64,
    pub origin: String,
    pub target: String,
    pub lag_bytes: Option<i64>,
    pub lag_s: Option<f64>,
    pub backlog_bytes: Option<i64>,
}

/// The target node of a spock slot on `origin`: slots are named
/// `spk_<db>_<origin>_<subscription>`, subscriptions `sub_<target>_<origin>`.
/// Native mode's slots are named as their subscriptions.
pub fn slot_target(slot: &str, origin: &str) -> Option<String> {
    let sub = slot.rsplit_once("_sub_").map(|(_, s)| s).or_else(|| slot.strip_prefix("sub_"))?;
    Some(sub.strip_suffix(&format!("_{origin}"))?.to_string())
}

/// Every spock slot of the mesh and the node it serves, from each
/// subscriber's `spock.subscription` (a slot's name holds its
/// subscription's only while the names are short; longer parts are
/// hashed). Empty without the extension (native mode: `slot_target`).
pub fn slot_targets(nodes: &[Node], db: &str) -> BTreeMap<String, String> {
    let mut slots = BTreeMap::new();
    for node in nodes {
        let Ok(text) = node.safe_psql(db, "SELECT sub_slot_name FROM spock.subscription") else {
            continue;
        };
        for slot in text.lines().filter(|l| !l.is_empty()) {
            slots.insert(slot.to_string(), node.name.clone());
        }
    }
    slots
}

/// What the sampler needs besides the nodes.
pub struct Sampling<'a> {
    pub db: &'a str,
    /// Time between samples.
    pub every: Duration,
    /// The run's clock.
    pub t0: Instant,
    /// How far each local transaction moves a node's history sequence.
    pub stride: u32,
    pub quiet: bool,
    /// `slot_targets`.
    pub slots: &'a BTreeMap<String, String>,
}

/// Samples until `stop` is set; `t0` is the run's clock. A node that does
/// not answer (being killed or restarted) gives no sample for that moment.
/// Unless `quiet`, prints a status line per sample: elapsed time, each
/// node's rate (from its history sequence, which each local transaction
/// moves by `stride`), the largest lag, and the faults so far.
pub fn sample_until(
    nodes: &[Node],
    sampling: &Sampling,
    stop: Arc<AtomicBool>,
    faults: &AtomicUsize,
) -> Vec<Sample> {
    let &Sampling { db, every, t0, stride, quiet, slots } = sampling;
    let mut out = Vec::new();
    let mut next = Instant::now();
    let mut last_seq: Vec<Option<(f64, i64)>> = vec![None; nodes.len()];
    while !stop.load(Ordering::Relaxed) {
        let mut rates = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let seq = node
                .safe_psql(
                    db,
                    // Single mode has a sequence per driver: their sum.
                    "SELECT sum(last_value) FROM pg_sequences WHERE sequencename LIKE 'pgbench\\_history\\_hid%'",
                )
                .ok()
                .and_then(|v| v.parse::<i64>().ok());
            let now = t0.elapsed().as_secs_f64();
            let rate = match (seq, last_seq[i]) {
                (Some(v), Some((t, before))) if now > t => {
                    Some((v - before) as f64 / f64::from(stride) / (now - t))
                }
                _ => None,
            };
            if let Some(v) = seq {
                last_seq[i] = Some((now, v));
            }
            rates.push(format!("{} {}", node.name, rate.map_or("-".to_string(), |r| format!("{r:.0}"))));
        }
        let t_s = t0.elapsed().as_secs_f64();
        let mut links: BTreeMap<(String, String), Sample> = BTreeMap::new();
        for node in nodes {
            if let Ok(text) = node.safe_psql(
                db,
                "SELECT origin_name, replication_lag_bytes, extract(epoch FROM replication_lag) FROM spock.lag_tracker",
            ) {
                for line in text.lines() {
                    let f: Vec<&str> = line.split('|').collect();
                    if f.len() < 3 {
                        continue;
                    }
                    let s = links.entry((f[0].to_string(), node.name.clone())).or_default();
                    // The provider's insert position can be read before
                    // the commit it reported: never below 0. Before the
                    // link's first applied commit (no lag in time) the
                    // commit position is 0/0 and the difference means
                    // nothing: left out.
                    s.lag_s = f[2].parse().ok();
                    s.lag_bytes =
                        f[1].parse::<f64>().ok().filter(|_| s.lag_s.is_some()).map(|b| (b as i64).max(0));
                }
            }
            if let Ok(text) = node.safe_psql(
                db,
                "SELECT slot_name, pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots
                  WHERE plugin IN ('spock_output', 'pgoutput') AND NOT temporary",
            ) {
                for line in text.lines() {
                    let Some((slot, backlog)) = line.split_once('|') else { continue };
                    let Some(target) = slots.get(slot).cloned().or_else(|| slot_target(slot, &node.name))
                    else {
                        continue;
                    };
                    let s = links.entry((node.name.clone(), target)).or_default();
                    s.backlog_bytes = backlog.parse::<f64>().ok().map(|b| b as i64);
                }
            }
            // Native mode has no lag view: the walsender's replay lag (its
            // subscriber's apply), where no lag view gave one.
            if let Ok(text) = node.safe_psql(
                db,
                "SELECT application_name, coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication
                  WHERE to_regnamespace('spock') IS NULL",
            ) {
                for line in text.lines() {
                    let Some((name, lag)) = line.split_once('|') else { continue };
                    let Some(target) = slot_target(name, &node.name) else { continue };
                    let s = links.entry((node.name.clone(), target)).or_default();
                    if s.lag_s.is_none() {
                        s.lag_s = lag.parse().ok();
                    }
                }
            }
        }
        let max_lag = links.values().filter_map(|s| s.lag_s).fold(0.0_f64, f64::max);
        for ((origin, target), mut s) in links {
            s.t_s = t_s;
            s.origin = origin;
            s.target = target;
            out.push(s);
        }
        if !quiet {
            eprintln!(
                "    spockbench: {t_s:6.1} s, tps {}, max lag {max_lag:.2} s, faults {}",
                rates.join(" "),
                faults.load(Ordering::Relaxed)
            );
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    out
}

/// Max, 95th percentile and last value.
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let idx = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    (*sorted.last().unwrap(), sorted[idx], *values.last().unwrap())
}

/// The least-squares slope of `(t, y)` points (y per second); 0 for fewer
/// than two distinct times.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_give_their_target() {
        assert_eq!(slot_target("spk_postgres_n1_sub_n2_n1", "n1").as_deref(), Some("n2"));
        assert_eq!(slot_target("spk_bench_n3_sub_n1_n3", "n3").as_deref(), Some("n1"));
        assert_eq!(slot_target("other_slot", "n1"), None);
    }

    #[test]
    fn summaries_and_slopes() {
        assert_eq!(summary(&[1.0, 5.0, 3.0]), (5.0, 5.0, 3.0));
        let pts: Vec<(f64, f64)> = (0..10).map(|t| (f64::from(t), 100.0 + 50.0 * f64::from(t))).collect();
        assert!((slope(&pts) - 50.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 3.0)]), 0.0);
    }
}
