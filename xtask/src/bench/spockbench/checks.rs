//! The consistency checks (spockbench.md §6): C1 row counts, C2 chunk
//! checksums across nodes (with the differing keys and each node's rows),
//! C3 balance invariants, C4 history integrity against the runner's
//! ledger, C5 replication health. Each returns what failed in words that
//! name the node, the table and the keys.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::config::{Config, Mode};
use crate::node::Node;

/// Canonical row text for every check connection.
const CANONICAL: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; \
                         SET extra_float_digits = 3;\n";

/// Keys per chunk of C2.
const CHUNK: u64 = 100_000;

/// The four tables and their keys.
const TABLES: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_branches", "bid"),
    ("pgbench_history", "hid"),
];

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub name: &'static str,
    /// `PASS` or `FAIL`.
    pub status: &'static str,
    pub details: Vec<String>,
}

impl Check {
    fn new(id: &'static str, name: &'static str, details: Vec<String>) -> Check {
        Check { id, name, status: if details.is_empty() { "PASS" } else { "FAIL" }, details }
    }

    pub fn passed(&self) -> bool {
        self.status == "PASS"
    }
}

fn query(node: &Node, db: &str, sql: &str) -> Result<String> {
    node.safe_psql(db, &format!("{CANONICAL}{sql}"))
}

/// What the runner knows: committed transactions per node since init
/// (warm-ups included), and commits whose outcome is unknown.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Ledger {
    pub committed: Vec<u64>,
    pub unknown: Vec<u64>,
}

/// Baseline of C5: exception-log rows per node before the measured run.
pub type ExceptionBaseline = Vec<u64>;

pub fn exception_rows(node: &Node, db: &str, mode: Mode) -> Result<u64> {
    if mode != Mode::Spock {
        return Ok(0);
    }
    Ok(query(node, db, "SELECT count(*) FROM spock.exception_log")?.parse().unwrap_or(0))
}

/// Runs C1-C5 on every node.
pub fn run_all(
    nodes: &[Node],
    db: &str,
    config: &Config,
    ledger: &Ledger,
    baseline: Option<&ExceptionBaseline>,
) -> Result<Vec<Check>> {
    Ok(vec![
        c1_counts(nodes, db, config)?,
        c2_convergence(nodes, db)?,
        c3_balances(nodes, db, config)?,
        c4_history(nodes, db, config, ledger)?,
        c5_health(nodes, db, config, baseline)?,
    ])
}

fn c1_counts(nodes: &[Node], db: &str, config: &Config) -> Result<Check> {
    let s = u64::from(config.scale);
    let want = [("pgbench_accounts", 100_000 * s), ("pgbench_tellers", 10 * s), ("pgbench_branches", s)];
    let mut details = Vec::new();
    for node in nodes {
        for (table, expected) in want {
            let n: u64 = query(node, db, &format!("SELECT count(*) FROM {table}"))?.parse().unwrap_or(0);
            if n != expected {
                details.push(format!("{}: {table} has {n} rows, expected {expected}", node.name));
            }
        }
    }
    Ok(Check::new("C1", "row counts", details))
}

/// `chunk -> md5` of a table on a node.
fn chunk_sums(node: &Node, db: &str, table: &str, key: &str) -> Result<BTreeMap<u64, String>> {
    let out = query(
        node,
        db,
        &format!(
            "SELECT ({key} - 1) / {CHUNK}, md5(string_agg(t::text, E'\\n' ORDER BY {key})) FROM {table} t \
             GROUP BY 1 ORDER BY 1"
        ),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (c, sum) = l.split_once('|')?;
            Some((c.parse().ok()?, sum.to_string()))
        })
        .collect())
}

/// `key -> row text` of one chunk of a table on a node.
fn chunk_rows(node: &Node, db: &str, table: &str, key: &str, chunk: u64) -> Result<BTreeMap<i64, String>> {
    let out = query(
        node,
        db,
        &format!("SELECT {key}, t::text FROM {table} t WHERE ({key} - 1) / {CHUNK} = {chunk} ORDER BY 1"),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (k, row) = l.split_once('|')?;
            Some((k.parse().ok()?, row.to_string()))
        })
        .collect())
}

/// The chunks whose checksums differ between nodes.
pub fn differing_chunks(sums: &[BTreeMap<u64, String>]) -> Vec<u64> {
    let mut chunks: Vec<u64> = sums.iter().flat_map(|s| s.keys().copied()).collect();
    chunks.sort();
    chunks.dedup();
    chunks.into_iter().filter(|c| sums.iter().any(|s| s.get(c) != sums[0].get(c))).collect()
}

/// Up to `limit` keys whose row differs (or is missing) between nodes.
pub fn differing_keys(rows: &[BTreeMap<i64, String>], limit: usize) -> Vec<i64> {
    let mut keys: Vec<i64> = rows.iter().flat_map(|r| r.keys().copied()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| rows.iter().any(|r| r.get(k) != rows[0].get(k))).take(limit).collect()
}

fn c2_convergence(nodes: &[Node], db: &str) -> Result<Check> {
    let mut details = Vec::new();
    for (table, key) in TABLES {
        let sums: Vec<_> = nodes.iter().map(|n| chunk_sums(n, db, table, key)).collect::<Result<_>>()?;
        let chunks = differing_chunks(&sums);
        if chunks.is_empty() {
            continue;
        }
        details.push(format!(
            "{table}: chunk(s) {} differ ({key} ranges of {CHUNK})",
            chunks
                .iter()
                .map(|c| format!("{} ({}..{})", c, c * CHUNK + 1, (c + 1) * CHUNK))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut shown = 0;
        for chunk in chunks {
            if shown >= 20 {
                break;
            }
            let rows: Vec<_> =
                nodes.iter().map(|n| chunk_rows(n, db, table, key, chunk)).collect::<Result<_>>()?;
            for k in differing_keys(&rows, 20 - shown) {
                let per_node: Vec<String> = nodes
                    .iter()
                    .zip(&rows)
                    .map(|(n, r)| format!("{}: {}", n.name, r.get(&k).map_or("(missing)", String::as_str)))
                    .collect();
                details.push(format!("  {table} {key} = {k}: {}", per_node.join("; ")));
                shown += 1;
            }
        }
    }
    Ok(Check::new("C2", "convergence", details))
}

fn c3_balances(nodes: &[Node], db: &str, config: &Config) -> Result<Check> {
    let mut details = Vec::new();
    for node in nodes {
        let sums = query(
            node,
            db,
            "SELECT (SELECT coalesce(sum(abalance), 0)::numeric FROM pgbench_accounts),
                    (SELECT coalesce(sum(tbalance), 0)::numeric FROM pgbench_tellers),
                    (SELECT coalesce(sum(bbalance), 0)::numeric FROM pgbench_branches),
                    (SELECT coalesce(sum(delta), 0)::numeric FROM pgbench_history)",
        )?;
        let parts: Vec<&str> = sums.split('|').collect();
        if parts.windows(2).any(|w| w[0] != w[1]) {
            details.push(format!(
                "{}: sum(abalance) = {}, sum(tbalance) = {}, sum(bbalance) = {}, sum(history.delta) = {}",
                node.name,
                parts.first().unwrap_or(&"?"),
                parts.get(1).unwrap_or(&"?"),
                parts.get(2).unwrap_or(&"?"),
                parts.get(3).unwrap_or(&"?")
            ));
        }
        if !config.deep_check {
            continue;
        }
        for (table, key, balance) in [
            ("pgbench_branches", "bid", "bbalance"),
            ("pgbench_tellers", "tid", "tbalance"),
            ("pgbench_accounts", "aid", "abalance"),
        ] {
            let out = query(
                node,
                db,
                &format!(
                    "SELECT x.{key}, x.{balance}, coalesce(h.s, 0) FROM {table} x
                       LEFT JOIN (SELECT {key}, sum(delta) AS s FROM pgbench_history GROUP BY {key}) h USING ({key})
                      WHERE x.{balance} <> coalesce(h.s, 0) ORDER BY 1 LIMIT 21"
                ),
            )?;
            let bad: Vec<&str> = out.lines().collect();
            if bad.is_empty() {
                continue;
            }
            let shown: Vec<String> = bad
                .iter()
                .take(20)
                .map(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    format!(
                        "{key} {} has {balance} {} but its history sums to {}",
                        f[0],
                        f[1],
                        f.get(2).unwrap_or(&"?")
                    )
                })
                .collect();
            details.push(format!(
                "{}: {table}: {}{}",
                node.name,
                shown.join("; "),
                if bad.len() > 20 { "; ..." } else { "" }
            ));
        }
    }
    Ok(Check::new("C3", "balance invariants", details))
}

fn c4_history(nodes: &[Node], db: &str, config: &Config, ledger: &Ledger) -> Result<Check> {
    let mut details = Vec::new();
    let h = config.history_stride;
    for node in nodes {
        let pk = query(
            node,
            db,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'pgbench_history'::regclass AND contype = 'p'",
        )?;
        if pk != "1" {
            details.push(format!("{}: pgbench_history has no primary key", node.name));
        }
        let out = query(
            node,
            db,
            &format!("SELECT (hid - 1) % {h} + 1, count(*) FROM pgbench_history GROUP BY 1 ORDER BY 1"),
        )?;
        let mut counts: BTreeMap<u64, u64> = out
            .lines()
            .filter_map(|l| {
                let (o, n) = l.split_once('|')?;
                Some((o.parse().ok()?, n.parse().ok()?))
            })
            .collect();
        for (i, expected) in ledger.committed.iter().enumerate() {
            let origin = i as u64 + 1;
            let found = counts.remove(&origin).unwrap_or(0);
            let unknown = ledger.unknown.get(i).copied().unwrap_or(0);
            if found.abs_diff(*expected) > unknown {
                let missing = if found < *expected {
                    format!("{} missing", expected - found)
                } else {
                    format!("{} more than committed", found - expected)
                };
                details.push(format!(
                    "{}: {found} history rows of origin n{origin}, n{origin}'s driver committed {expected} ({missing}{})",
                    node.name,
                    if unknown > 0 { format!(", unverifiable ±{unknown}") } else { String::new() }
                ));
            }
        }
        for (origin, n) in counts {
            details.push(format!(
                "{}: {n} history rows of origin {origin}, which is not a node (1..{})",
                node.name, config.nodes
            ));
        }
    }
    Ok(Check::new("C4", "history integrity", details))
}

fn c5_health(
    nodes: &[Node],
    db: &str,
    config: &Config,
    baseline: Option<&ExceptionBaseline>,
) -> Result<Check> {
    let mut details = Vec::new();
    match config.mode {
        Mode::Spock => {}
        // One server: nothing replicates, nothing to be unhealthy.
        Mode::Single => return Ok(Check::new("C5", "replication health", details)),
        Mode::Native => {
            for node in nodes {
                let out = query(
                    node,
                    db,
                    "SELECT s.subname || ' is ' || CASE WHEN NOT s.subenabled THEN 'disabled' ELSE 'not running' END
                       FROM pg_subscription s
                      WHERE NOT s.subenabled OR NOT EXISTS (SELECT FROM pg_stat_subscription w
                                                             WHERE w.subid = s.oid AND w.pid IS NOT NULL)",
                )?;
                details.extend(out.lines().map(|l| format!("{}: {l}", node.name)));
                let subs: u64 = query(node, db, "SELECT count(*) FROM pg_subscription")?.parse().unwrap_or(0);
                if subs != config.nodes as u64 - 1 {
                    details.push(format!(
                        "{}: {subs} subscription(s), expected {}",
                        node.name,
                        config.nodes - 1
                    ));
                }
            }
            return Ok(Check::new("C5", "replication health", details));
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let out = query(
            node,
            db,
            "SELECT subscription_name || ' is ' || status FROM spock.sub_show_status() WHERE status <> 'replicating'",
        )?;
        details.extend(out.lines().map(|l| format!("{}: {l}", node.name)));
        let subs: u64 = query(node, db, "SELECT count(*) FROM spock.subscription WHERE sub_enabled")?
            .parse()
            .unwrap_or(0);
        if subs != config.nodes as u64 - 1 {
            details.push(format!(
                "{}: {subs} enabled subscription(s), expected {}",
                node.name,
                config.nodes - 1
            ));
        }
        if let Some(base) = baseline
            && !config.allow_exceptions
        {
            let now = exception_rows(node, db, config.mode)?;
            let before = base.get(i).copied().unwrap_or(0);
            if now > before {
                details.push(format!(
                    "{}: {} new spock.exception_log row(s) during the run",
                    node.name,
                    now - before
                ));
            }
        }
    }
    Ok(Check::new("C5", "replication health", details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_chunks_and_keys_are_found() {
        let a: BTreeMap<u64, String> = [(0, "x".to_string()), (1, "y".to_string())].into();
        let b: BTreeMap<u64, String> =
            [(0, "x".to_string()), (1, "z".to_string()), (2, "w".to_string())].into();
        assert_eq!(differing_chunks(&[a.clone(), a.clone()]), Vec::<u64>::new());
        assert_eq!(differing_chunks(&[a, b]), vec![1, 2]);
        let r1: BTreeMap<i64, String> = [(1, "(1,a)".to_string()), (2, "(2,b)".to_string())].into();
        let r2: BTreeMap<i64, String> =
            [(1, "(1,a)".to_string()), (2, "(2,c)".to_string()), (3, "(3,d)".to_string())].into();
        assert_eq!(differing_keys(&[r1.clone(), r2.clone()], 20), vec![2, 3]);
        assert_eq!(differing_keys(&[r1, r2], 1), vec![2]);
    }
}
