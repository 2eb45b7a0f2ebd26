//! spockbench's effective configuration (spockbench.md §1, §4, §10): the
//! presets, the options that override them, and the pure rules built on
//! them (home branches, the remote-branch draw, the profile mix). No server
//! is needed for any of it.

use clap::ValueEnum;
use serde::Serialize;

use crate::flags::Spockbench;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 2 cores, 24 GiB, one host: 3 nodes, scale 3, 60 s at 100 tps per node.
    Small,
    /// 32+ cores: 3 nodes, scale 120, 600 s at 3000 tps per node.
    Large,
    /// A 16-core CI machine: 3 nodes, scale 10, 120 s at 3000 tps per node.
    Ci,
    /// Nightly: the small preset for 30 minutes, with a fault every five
    /// minutes unless `--fault` names others (`soak_faults`).
    Soak,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteBranches {
    /// Uniform over all branches, the node's own included.
    Any,
    /// Uniform over the branches not homed on the node (TPC-B §5.3.5).
    Other,
}

/// How `init` gives the nodes their schema and data (spockbench.md §3).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitMode {
    /// Every node runs `pgbench -i` and the schema steps itself.
    #[default]
    Load,
    /// Node 1 alone; the others subscribe to it with the extension's
    /// structure and data sync, then restart their own history sequence.
    Sync,
}

/// What the load runs against (spockbench.md §9).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The N-node spock mesh.
    #[default]
    Spock,
    /// The ceiling: one server without replication or the extension, with
    /// the N nodes' drivers all pointed at it.
    Single,
    /// PostgreSQL's own logical replication (16+): each node publishes the
    /// four tables and subscribes to every other with `origin = none`.
    Native,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Spock => "spock",
            Mode::Single => "single",
            Mode::Native => "native",
        }
    }
}

/// The three transaction profiles, in the order of `--mix L,A,TA`.
pub const PROFILES: [&str; 3] = ["local", "remote-account", "remote-teller-account"];

/// Every effective parameter of a run (spockbench.md §10's table, plus the
/// remote-branch rule, delta apply and the driver).
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub mode: Mode,
    pub init_mode: InitMode,
    pub preset: Preset,
    pub nodes: usize,
    pub scale: u32,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub clients: u32,
    pub threads: u32,
    /// Per-node rate; `None`: unthrottled.
    pub rate: Option<u32>,
    /// Weights of `PROFILES`.
    pub mix: [u32; 3],
    pub remote_branches: RemoteBranches,
    pub protocol: &'static str,
    pub sampling_rate: f64,
    pub sample_s: u64,
    pub barrier_timeout_s: u64,
    pub shared_buffers: &'static str,
    pub max_wal_size: &'static str,
    pub checkpoint_timeout: &'static str,
    pub history_stride: u32,
    pub delta_apply: bool,
    /// `single` mode with `wal_level = replica` and no commit timestamps.
    pub stock_settings: bool,
    pub deep_check: bool,
    pub allow_exceptions: bool,
    pub driver: &'static str,
}

impl Config {
    /// The preset's values with the options given on the command line on
    /// top; an error names the option that is wrong and why.
    pub fn from_flags(f: &Spockbench) -> Result<Config, String> {
        let mut c = match f.preset {
            Preset::Small => {
                Config::preset(Preset::Small, 3, 3, 60, 10, 4, 1, Some(100), 1.0, 300, "1GB", "4GB", "15min")
            }
            Preset::Large => Config::preset(
                Preset::Large,
                3,
                120,
                600,
                60,
                32,
                8,
                Some(3000),
                0.1,
                1800,
                "16GB",
                "64GB",
                "30min",
            ),
            Preset::Soak => {
                Config::preset(Preset::Soak, 3, 3, 1800, 30, 4, 1, Some(100), 0.1, 600, "1GB", "4GB", "15min")
            }
            Preset::Ci => Config::preset(
                Preset::Ci,
                3,
                10,
                120,
                10,
                50,
                16,
                Some(3000),
                1.0,
                300,
                "1GB",
                "4GB",
                "15min",
            ),
        };
        if let Some(n) = f.nodes {
            c.nodes = n;
        }
        if let Some(s) = f.scale {
            c.scale = s;
        }
        if let Some(d) = f.duration {
            c.duration_s = d;
        }
        if let Some(w) = f.warmup {
            c.warmup_s = w;
        }
        if let Some(n) = f.clients {
            c.clients = n;
        }
        if let Some(n) = f.threads {
            c.threads = n;
        }
        if let Some(r) = f.rate {
            c.rate = (r > 0).then_some(r);
        }
        if let Some(r) = f.remote_branches {
            c.remote_branches = r;
        }
        if let Some(s) = f.sampling_rate {
            c.sampling_rate = s;
        }
        if let Some(t) = f.barrier_timeout {
            c.barrier_timeout_s = t;
        }
        c.mode = f.mode;
        c.init_mode = f.init_mode;
        // Delta apply is spock's: the other modes run without the options.
        c.delta_apply = !f.no_delta && c.mode == Mode::Spock;
        c.stock_settings = f.stock_settings;
        c.deep_check = !f.no_deep_check;
        c.allow_exceptions = f.allow_exceptions;
        if let Some(mix) = &f.mix {
            c.mix = parse_mix(mix, c.scale, c.remote_branches)?;
        }
        c.validate()?;
        Ok(c)
    }

    #[allow(clippy::too_many_arguments)]
    fn preset(
        preset: Preset,
        nodes: usize,
        scale: u32,
        duration_s: u64,
        warmup_s: u64,
        clients: u32,
        threads: u32,
        rate: Option<u32>,
        sampling_rate: f64,
        barrier_timeout_s: u64,
        shared_buffers: &'static str,
        max_wal_size: &'static str,
        checkpoint_timeout: &'static str,
    ) -> Config {
        Config {
            mode: Mode::Spock,
            init_mode: InitMode::Load,
            preset,
            nodes,
            scale,
            duration_s,
            warmup_s,
            clients,
            threads,
            rate,
            mix: [550, 225, 225],
            remote_branches: RemoteBranches::Any,
            protocol: "prepared",
            sampling_rate,
            sample_s: 1,
            barrier_timeout_s,
            shared_buffers,
            max_wal_size,
            checkpoint_timeout,
            history_stride: 100,
            delta_apply: true,
            stock_settings: false,
            deep_check: true,
            allow_exceptions: false,
            driver: "pgbench",
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.nodes < 2 {
            return Err(format!("--nodes {}: a mesh needs at least 2 nodes", self.nodes));
        }
        if self.nodes as u32 > self.history_stride {
            return Err(format!(
                "--nodes {}: at most {} nodes (the history key stride)",
                self.nodes, self.history_stride
            ));
        }
        if self.init_mode == InitMode::Sync && self.mode != Mode::Spock {
            return Err(format!(
                "--init-mode sync with --mode {}: the initial sync is the extension's; the other modes load \
                 every node (leave --init-mode out)",
                self.mode.name()
            ));
        }
        if self.stock_settings && self.mode != Mode::Single {
            return Err(format!(
                "--stock-settings with --mode {}: only the single mode can run without logical WAL and commit \
                 timestamps (replication and conflict resolution need both); add --mode single",
                self.mode.name()
            ));
        }
        if self.scale == 0 {
            return Err("--scale 0: there must be at least one branch".into());
        }
        if self.duration_s == 0 {
            return Err("--duration 0: the measured run needs at least a second".into());
        }
        if self.clients == 0 || self.threads == 0 || self.threads > self.clients {
            return Err(format!(
                "--clients {} --threads {}: both must be at least 1, and threads at most clients",
                self.clients, self.threads
            ));
        }
        if !(self.sampling_rate > 0.0 && self.sampling_rate <= 1.0) {
            return Err(format!("--sampling-rate {}: must be in (0, 1]", self.sampling_rate));
        }
        if self.remote_branches == RemoteBranches::Other && self.scale == 1 && self.mix[1] + self.mix[2] > 0 {
            return Err(
                "--remote-branches other with --scale 1: there is no other branch; use --remote-branches any or a \
                 larger scale"
                    .into(),
            );
        }
        Ok(())
    }

    /// A run's label when none is given: the mode, and what sets the run
    /// apart from the mode's usual one.
    pub fn default_label(&self) -> String {
        match self.mode {
            Mode::Spock if !self.delta_apply => "spock-no-delta".into(),
            Mode::Single if self.stock_settings => "single-stock".into(),
            mode => mode.name().into(),
        }
    }

    /// Node `k`'s (1-based) home set: `(first, step, count)`.
    pub fn home(&self, k: usize) -> (u32, u32, u32) {
        home_set(k as u32, self.nodes as u32, self.scale)
    }

    /// The branches a node's home set holds.
    pub fn home_branches(&self, k: usize) -> Vec<u32> {
        let (first, step, count) = self.home(k);
        (0..count).map(|i| first + i * step).collect()
    }

    /// The mix as text (`550,225,225`).
    pub fn mix_text(&self) -> String {
        self.mix.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    }
}

/// The home set of node `k` of `n` with `s` branches (spockbench.md §1):
/// with `s >= n`, branches `k, k+n, k+2n, ...`; with `s < n`, the single
/// branch `((k-1) mod s) + 1`. The step is `n` in both cases (the remote
/// draw of the scripts relies on it).
pub fn home_set(k: u32, n: u32, s: u32) -> (u32, u32, u32) {
    if s >= n {
        let count = (s - k) / n + 1;
        (k, n, count)
    } else {
        ((k - 1) % s + 1, n, 1)
    }
}

/// `--mix L,A,TA` or `--mix tpcb` (spockbench.md §4).
pub fn parse_mix(text: &str, scale: u32, remote: RemoteBranches) -> Result<[u32; 3], String> {
    if text == "tpcb" {
        return match remote {
            RemoteBranches::Other => Ok([850, 150, 0]),
            RemoteBranches::Any if scale < 2 => {
                Err("--mix tpcb with --remote-branches any is undefined for --scale 1".into())
            }
            RemoteBranches::Any => {
                let a = (150.0 * f64::from(scale) / f64::from(scale - 1)).round() as u32;
                Ok([1000 - a, a, 0])
            }
        };
    }
    let parts: Vec<&str> = text.split(',').collect();
    if parts.len() != 3 {
        return Err(format!("--mix {text}: give three weights L,A,TA (for example 550,225,225) or tpcb"));
    }
    let mut mix = [0u32; 3];
    for (slot, part) in mix.iter_mut().zip(&parts) {
        *slot = part
            .trim()
            .parse()
            .map_err(|_| format!("--mix {text}: {part:?} is not a non-negative integer weight"))?;
    }
    if mix.iter().sum::<u32>() == 0 {
        return Err(format!("--mix {text}: the weights add up to 0"));
    }
    Ok(mix)
}

/// A fault injected during the measured run (issue 14): `kill9:n2@30s`,
/// `restart:n3@40s`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub node: String,
    pub at_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// `kill -9` of the node's postmaster, then a restart.
    Kill9,
    /// A clean restart.
    Restart,
    /// The node's apply workers are terminated (`pg_terminate_backend`);
    /// the manager starts them again.
    KillApply,
    /// The link between the node and `other` is cut for `seconds`.
    Partition { other: String, seconds: u64 },
}

impl Fault {
    pub fn parse(text: &str) -> Result<Fault, String> {
        let usage = || {
            format!(
                "--fault {text}: expected kill9:NODE@Ts, restart:NODE@Ts, kill-apply:NODE@Ts or \
                 partition:NODE-NODE@Ts+Ds (for example kill9:n2@30s or partition:n1-n3@20s+15s)"
            )
        };
        let seconds = |t: &str| t.strip_suffix('s').unwrap_or(t).parse::<u64>().map_err(|_| usage());
        let (kind, rest) = text.split_once(':').ok_or_else(usage)?;
        let (node, at) = rest.split_once('@').ok_or_else(usage)?;
        let (node, at_s, kind) = match kind {
            "kill9" => (node.to_string(), seconds(at)?, FaultKind::Kill9),
            "restart" => (node.to_string(), seconds(at)?, FaultKind::Restart),
            "kill-apply" => (node.to_string(), seconds(at)?, FaultKind::KillApply),
            "partition" => {
                let (a, b) = node.split_once('-').ok_or_else(usage)?;
                let (at, span) = at.split_once('+').ok_or_else(usage)?;
                if a == b || b.is_empty() {
                    return Err(format!("--fault {text}: a partition is between two different nodes"));
                }
                (
                    a.to_string(),
                    seconds(at)?,
                    FaultKind::Partition { other: b.to_string(), seconds: seconds(span)? },
                )
            }
            _ => return Err(usage()),
        };
        if node.is_empty() {
            return Err(usage());
        }
        Ok(Fault { kind, node, at_s })
    }

    /// The nodes the fault names.
    pub fn nodes(&self) -> Vec<&str> {
        match &self.kind {
            FaultKind::Partition { other, .. } => vec![self.node.as_str(), other.as_str()],
            _ => vec![self.node.as_str()],
        }
    }

    /// When the fault is over, in seconds from the start of the run.
    pub fn until_s(&self) -> u64 {
        match &self.kind {
            FaultKind::Partition { seconds, .. } => self.at_s + seconds,
            _ => self.at_s,
        }
    }

    pub fn label(&self) -> String {
        match &self.kind {
            FaultKind::Kill9 => format!("kill9:{}@{}s", self.node, self.at_s),
            FaultKind::Restart => format!("restart:{}@{}s", self.node, self.at_s),
            FaultKind::KillApply => format!("kill-apply:{}@{}s", self.node, self.at_s),
            FaultKind::Partition { other, seconds } => {
                format!("partition:{}-{other}@{}s+{seconds}s", self.node, self.at_s)
            }
        }
    }
}

/// The soak preset's faults: every five minutes from the fifth, in turn a
/// `kill -9`, a 60 s partition (when namespaces can be made) and a clean
/// restart, each on the next node.
pub fn soak_faults(nodes: usize, duration_s: u64, partitions: bool) -> Vec<Fault> {
    let mut out = Vec::new();
    let mut at = 300;
    let mut i = 0usize;
    while at + 90 < duration_s {
        let node = format!("n{}", i % nodes + 1);
        let kind = match i % 3 {
            0 => FaultKind::Kill9,
            1 if partitions => {
                FaultKind::Partition { other: format!("n{}", (i + 1) % nodes + 1), seconds: 60 }
            }
            _ => FaultKind::Restart,
        };
        out.push(Fault { kind, node, at_s: at });
        at += 300;
        i += 1;
    }
    out
}

/// The `--node name=DSN` options, in order; an error says which one is
/// wrong and why. Names become spock node names and parts of subscription
/// names, so they are lower-case identifiers.
pub fn parse_node_options(options: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut nodes: Vec<(String, String)> = Vec::new();
    for (i, option) in options.iter().enumerate() {
        // Nothing of a malformed option is shown: it may hold a password.
        let which = format!("--node option {} of {}", i + 1, options.len());
        let Some((name, dsn)) = option.split_once('=') else {
            return Err(format!("{which}: expected NAME=DSN, for example --node n1='host=db1 dbname=bench'"));
        };
        let name = name.trim();
        let valid = name.len() <= 20
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(format!(
                "{which}: the text before the first '=' is not a node name: a node name is a lower-case letter \
                 then up to 19 lower-case letters, digits or underscores (n1, paris, dc2_a), as in \
                 --node n1='host=db1 dbname=bench'"
            ));
        }
        if dsn.trim().is_empty() {
            return Err(format!("--node {name}=: the connection string is empty"));
        }
        if nodes.iter().any(|(n, _)| n == name) {
            return Err(format!("--node {name} is given twice"));
        }
        if let Some((other, _)) = nodes.iter().find(|(_, d)| d == dsn.trim()) {
            return Err(format!(
                "--node {name} has the connection string of --node {other}: one server, two nodes"
            ));
        }
        nodes.push((name.to_string(), dsn.trim().to_string()));
    }
    Ok(nodes)
}

/// What keeps a server elsewhere from running spockbench (spockbench.md
/// §2), from its `pg_settings` rows: one sentence per problem, naming the
/// setting and the value it needs.
pub fn server_problems(settings: &[(String, String)], nodes: usize) -> Vec<String> {
    let get = |name: &str| settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut problems = Vec::new();
    let mut want = |name: &str, value: &str| match get(name) {
        Some(v) if v == value => {}
        Some(v) => problems.push(format!("{name} is '{v}'; it needs '{value}'")),
        None => problems.push(format!("{name} is not set; it needs '{value}'")),
    };
    want("wal_level", "logical");
    want("track_commit_timestamp", "on");
    if get("shared_preload_libraries")
        .is_none_or(|libs| !libs.split(',').any(|l| l.trim().trim_matches('"') == "spock"))
    {
        problems.push(
            "shared_preload_libraries does not name spock (the extension's workers start with the server)"
                .into(),
        );
    } else {
        want("spock.conflict_resolution", "last_update_wins");
        want("spock.save_resolutions", "on");
        want("spock.exception_behaviour", "sub_disable");
    }
    if let Some(libs) = get("output_plugin_libraries")
        && !libs.split(',').any(|l| l.trim() == "spock_output")
    {
        problems.push(format!("output_plugin_libraries is '{libs}'; it needs to name spock_output"));
    }
    if get("is_superuser") != Some("on") {
        problems.push(
            "the role of the connection string is not a superuser (CREATE EXTENSION spock and the extension's \
             functions need one)"
                .into(),
        );
    }
    let least = 2 * nodes + 4;
    for name in
        ["max_worker_processes", "max_replication_slots", "max_wal_senders", "max_active_replication_origins"]
    {
        if name == "max_active_replication_origins" && get(name).is_none() {
            continue; // before 18, max_replication_slots bounds the origins too
        }
        match get(name).and_then(|v| v.parse::<usize>().ok()) {
            Some(v) if v >= least => {}
            other => problems.push(format!(
                "{name} is {}; {nodes} nodes need at least {least}",
                other.map_or("unknown".to_string(), |v| v.to_string())
            )),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_options_are_names_and_connection_strings_in_order() {
        let opts = |v: &[&str]| parse_node_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            opts(&["n1=host=a dbname=b", "paris=postgresql://u@h/db"]).unwrap(),
            vec![
                ("n1".to_string(), "host=a dbname=b".to_string()),
                ("paris".to_string(), "postgresql://u@h/db".to_string())
            ]
        );
        assert!(opts(&["n1"]).unwrap_err().contains("NAME=DSN"));
        assert!(opts(&["N1=host=a"]).unwrap_err().contains("lower-case"));
        assert!(opts(&["n1="]).unwrap_err().contains("empty"));
        assert!(opts(&["n1=host=a", "n1=host=b"]).unwrap_err().contains("twice"));
        assert!(opts(&["n1=host=a", "n2=host=a"]).unwrap_err().contains("of --node n1"));
        // A malformed option with a password does not echo it.
        let err = opts(&["N1=host=a password=hunter2"]).unwrap_err();
        assert!(err.contains("lower-case") && !err.contains("hunter2"), "{err}");
        let err = opts(&["postgresql://u:hunter2@h/db"]).unwrap_err();
        assert!(err.contains("NAME=DSN") && !err.contains("hunter2"), "{err}");
        let err = opts(&["postgresql://u:hunter2@h/db?sslmode=require"]).unwrap_err();
        assert!(err.contains("option 1 of 1") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn server_problems_name_each_setting_and_what_it_needs() {
        let ready: Vec<(String, String)> = [
            ("wal_level", "logical"),
            ("track_commit_timestamp", "on"),
            ("is_superuser", "on"),
            ("shared_preload_libraries", "pg_stat_statements, spock"),
            ("spock.conflict_resolution", "last_update_wins"),
            ("spock.save_resolutions", "on"),
            ("spock.exception_behaviour", "sub_disable"),
            ("max_worker_processes", "16"),
            ("max_replication_slots", "10"),
            ("max_wal_senders", "10"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(server_problems(&ready, 3), Vec::<String>::new());
        let mut off = ready.clone();
        off[0].1 = "replica".into();
        off[8].1 = "8".into();
        off.push(("output_plugin_libraries".into(), "pgoutput".into()));
        let p = server_problems(&off, 3);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("wal_level is 'replica'; it needs 'logical'"));
        assert!(p.iter().any(|x| x.contains("output_plugin_libraries") && x.contains("spock_output")));
        assert!(p.iter().any(|x| x.contains("max_replication_slots is 8; 3 nodes need at least 10")));
        let without: Vec<(String, String)> = ready
            .iter()
            .filter(|(n, _)| !n.starts_with("spock.") && n != "shared_preload_libraries")
            .cloned()
            .collect();
        let p = server_problems(&without, 3);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("shared_preload_libraries does not name spock"));
    }

    #[test]
    fn the_soak_has_a_fault_every_five_minutes() {
        let f = soak_faults(3, 1800, true);
        let labels: Vec<String> = f.iter().map(Fault::label).collect();
        assert_eq!(
            labels,
            [
                "kill9:n1@300s",
                "partition:n2-n3@600s+60s",
                "restart:n3@900s",
                "kill9:n1@1200s",
                "partition:n2-n3@1500s+60s"
            ]
        );
        assert!(soak_faults(3, 1800, false).iter().all(|f| !matches!(f.kind, FaultKind::Partition { .. })));
    }

    #[test]
    fn home_sets_follow_the_spec() {
        // S >= N: b's home is ((b-1) mod N)+1.
        assert_eq!(home_set(1, 3, 3), (1, 3, 1));
        assert_eq!(home_set(2, 3, 10), (2, 3, 3)); // 2, 5, 8
        assert_eq!(home_set(1, 3, 10), (1, 3, 4)); // 1, 4, 7, 10
        // S < N: node k uses branch ((k-1) mod S)+1.
        assert_eq!(home_set(3, 3, 1), (1, 3, 1));
        assert_eq!(home_set(4, 5, 2), (2, 5, 1));
        for s in 1..12 {
            for n in 2..6 {
                let mut all: Vec<u32> = Vec::new();
                for k in 1..=n {
                    let (first, step, count) = home_set(k, n, s);
                    all.extend((0..count).map(|i| first + i * step));
                }
                all.sort();
                if s >= n {
                    assert_eq!(all, (1..=s).collect::<Vec<_>>(), "s={s} n={n}: every branch has one home");
                } else {
                    assert!(all.iter().all(|b| (1..=s).contains(b)));
                }
            }
        }
    }

    #[test]
    fn mixes_parse_and_tpcb_follows_the_scale() {
        assert_eq!(parse_mix("550,225,225", 3, RemoteBranches::Any), Ok([550, 225, 225]));
        assert_eq!(parse_mix("1000,0,0", 3, RemoteBranches::Any), Ok([1000, 0, 0]));
        assert_eq!(parse_mix("tpcb", 3, RemoteBranches::Any), Ok([775, 225, 0]));
        assert_eq!(parse_mix("tpcb", 3, RemoteBranches::Other), Ok([850, 150, 0]));
        assert!(parse_mix("tpcb", 1, RemoteBranches::Any).is_err());
        assert!(parse_mix("0,0,0", 3, RemoteBranches::Any).unwrap_err().contains("add up to 0"));
        assert!(parse_mix("1,2", 3, RemoteBranches::Any).is_err());
        assert!(parse_mix("1,-2,3", 3, RemoteBranches::Any).unwrap_err().contains("\"-2\""));
    }

    #[test]
    fn stock_settings_are_for_the_single_mode_only() {
        let mut f = crate::flags::Spockbench::ci_short();
        f.stock_settings = true;
        let err = Config::from_flags(&f).unwrap_err();
        assert!(err.contains("--stock-settings with --mode spock") && err.contains("--mode single"), "{err}");
        f.mode = Mode::Single;
        let c = Config::from_flags(&f).unwrap();
        assert!(c.stock_settings && !c.delta_apply);
        assert_eq!(c.default_label(), "single-stock");
        f.stock_settings = false;
        assert_eq!(Config::from_flags(&f).unwrap().default_label(), "single");
        f.mode = Mode::Spock;
        f.no_delta = true;
        assert_eq!(Config::from_flags(&f).unwrap().default_label(), "spock-no-delta");
        f.init_mode = InitMode::Sync;
        assert_eq!(Config::from_flags(&f).unwrap().init_mode, InitMode::Sync);
        f.mode = Mode::Native;
        assert!(Config::from_flags(&f).unwrap_err().contains("--init-mode sync with --mode native"));
    }

    #[test]
    fn faults_parse() {
        assert_eq!(
            Fault::parse("kill9:n2@30s"),
            Ok(Fault { kind: FaultKind::Kill9, node: "n2".into(), at_s: 30 })
        );
        assert_eq!(Fault::parse("restart:n3@40").unwrap().label(), "restart:n3@40s");
        let p = Fault::parse("partition:n1-n3@20s+15s").unwrap();
        assert_eq!(p.kind, FaultKind::Partition { other: "n3".into(), seconds: 15 });
        assert_eq!(
            (p.nodes(), p.until_s(), p.label()),
            (vec!["n1", "n3"], 35, "partition:n1-n3@20s+15s".to_string())
        );
        assert!(Fault::parse("partition:n1-n1@2s+3s").is_err());
        assert!(Fault::parse("partition:n1-n3@20s").is_err());
        assert_eq!(Fault::parse("kill-apply:n2@5s").unwrap().kind, FaultKind::KillApply);
        assert!(Fault::parse("kill9:n2").is_err());
        assert!(Fault::parse("boom:n2@3s").is_err());
    }
}
