//! spockbench (`spockbench.md`): conflicting pgbench load on every node of
//! a local N-node mesh, with faults injected on request, then a barrier
//! through sync events, the consistency checks C1-C5, and a report of
//! throughput, latency, lag, catch-up and conflicts. `init` prepares the
//! schema and wires the mesh, `run` measures (initialising first when no
//! cluster exists), `check` runs only the checks.
//!
//! The cluster lives in the build's scratch directory (`spockbench/`),
//! with the runner's ledger of committed transactions next to it
//! (`spockbench-state.json`); each run writes its files into
//! `target/bench/<UTC time>-<label>/`. With `--node name=DSN` the nodes are
//! servers elsewhere (`Target`), prepared by `init_remote` and never
//! started, stopped or reconfigured; their ledger lives in
//! `spockbench-dsn-<digest>/`.

mod checks;
mod config;
mod counters;
mod driver;
mod host;
mod netns;
mod plots;
mod relay;
mod report;
mod sampler;
mod scripts;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use config::{InitMode, Mode, Preset, RemoteBranches};

use checks::{Check, Ledger};
use config::{Config, Fault, FaultKind};
use driver::DriverRun;
use sampler::Sample;

use crate::account::RunAs;
use crate::cluster::{Cluster, sql_literal};
use crate::flags::Spockbench;
use crate::node::Node;
use crate::pgbuild::Installed;
use crate::versions::{Manifest, PgRequest};
use crate::{build, doctor, fsutil, layout, ui};

/// The benchmark's database on every node.
const DB: &str = "spockbench";
const STATE_FILE: &str = "spockbench-state.json";

/// What `init` recorded, and the ledger the runs keep adding to.
#[derive(Serialize, Deserialize)]
struct State {
    nodes: usize,
    scale: u32,
    delta_apply: bool,
    ledger: Ledger,
    /// The servers run in network namespaces (`netns`).
    #[serde(default)]
    namespaces: bool,
    #[serde(default)]
    mode: Mode,
    /// `single` mode's server runs with `--stock-settings`.
    #[serde(default)]
    stock_settings: bool,
    /// How `init` gave the nodes their data (what results record, whatever
    /// a later command's flags say).
    #[serde(default)]
    init_mode: InitMode,
}

/// The three subcommands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Init,
    Run,
    Check,
    Sweep,
}

/// Exit codes (spockbench.md §8).
const EXIT_FAIL: i32 = 1;
const EXIT_INVALID: i32 = 2;
const EXIT_USAGE: i32 = 3;

/// A usage or configuration error found after the options were read (a
/// server not set up for spockbench, a database in use): exit code 3.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(EXIT_USAGE)
}

pub fn main(action: Action, flags: &Spockbench) -> Result<()> {
    let outcome = main_inner(action, flags);
    if let Some(e) = outcome.as_ref().err().and_then(|e| e.downcast_ref::<UsageError>()) {
        usage_error(e);
    }
    outcome
}

fn main_inner(action: Action, flags: &Spockbench) -> Result<()> {
    let mut config = Config::from_flags(flags).unwrap_or_else(|e| usage_error(e));
    let remote = config::parse_node_options(&flags.node).unwrap_or_else(|e| usage_error(e));
    if !remote.is_empty() {
        if flags.nodes.is_some_and(|n| n != remote.len()) {
            usage_error(format!(
                "--nodes {} disagrees with the {} --node options; leave --nodes out",
                flags.nodes.unwrap_or(0),
                remote.len()
            ));
        }
        if remote.len() < 2 || remote.len() > config.history_stride as usize {
            usage_error(format!(
                "--node: a spockbench mesh has 2 to {} nodes (the history stride); {} given",
                config.history_stride,
                remote.len()
            ));
        }
        config.nodes = remote.len();
        if config.mode != Mode::Spock {
            usage_error(format!(
                "--node targets a cluster of the spock extension; --mode {} runs only on the servers spockbench \
                 starts itself",
                config.mode.name()
            ));
        }
        if !flags.faults.is_empty() || flags.latency.is_some() || config.preset == Preset::Soak {
            usage_error(
                "--fault, --latency and the soak preset's faults need servers spockbench starts and network \
                 namespaces it owns; with --node it cannot stop, kill or cut servers elsewhere",
            );
        }
    }
    let mut faults: Vec<Fault> =
        flags.faults.iter().map(|f| Fault::parse(f).unwrap_or_else(|e| usage_error(e))).collect();
    if config.preset == Preset::Soak && faults.is_empty() {
        faults = config::soak_faults(config.nodes, config.duration_s, netns::available());
    }
    let latency =
        flags.latency.as_deref().map(|l| netns::Delays::parse(l).unwrap_or_else(|e| usage_error(e)));
    if let Err(e) = latency.as_ref().map_or(Ok(()), |d| d.check(config.nodes)) {
        usage_error(e);
    }
    for f in &faults {
        for node in f.nodes() {
            if !(1..=config.nodes).any(|k| node == format!("n{k}")) {
                usage_error(format!(
                    "--fault {}: there is no node {node} (the nodes are n1..n{})",
                    f.label(),
                    config.nodes
                ));
            }
        }
        if f.until_s() >= config.duration_s {
            usage_error(format!(
                "--fault {}: it ends at {} s, but the measured run lasts {} s",
                f.label(),
                f.until_s(),
                config.duration_s
            ));
        }
    }
    let needs_network =
        latency.is_some() || faults.iter().any(|f| matches!(f.kind, FaultKind::Partition { .. }));
    if needs_network && !netns::available() {
        usage_error(
            "partitions and --latency run each node in its own network namespace, which needs root with `ip` and \
             `tc` (iproute2); run as root, or leave them out",
        );
    }
    if config.mode != Mode::Spock && (latency.is_some() || !faults.is_empty()) {
        usage_error(format!(
            "--fault and --latency are for the spock mode; --mode {} runs without them",
            config.mode.name()
        ));
    }
    doctor::ensure(true)?;
    let resolved = Manifest::builtin().resolve(flags.pg.unwrap_or(PgRequest::Major(18)));
    if config.mode == Mode::Native && resolved.version.major < 16 && action != Action::Check {
        // spockbench.md §9: without origin filtering, changes would loop.
        println!(
            "native mode: N/A on PostgreSQL {} (its logical replication has no origin filtering before 16, so \
             changes would loop between the nodes)",
            resolved.version.major
        );
        return Ok(());
    }
    let installed = build::build_one(&resolved, None, flags.profile, false, build::jobs(None))?;
    let target = if remote.is_empty() {
        Target::local(&installed, config.mode)
    } else {
        Target::remote(&installed, remote)
    };
    match action {
        Action::Init => {
            init(&target, &config, flags.force)?;
            Ok(())
        }
        Action::Run => {
            let (code, _) =
                run(&target, &config, &faults, latency.as_ref(), flags.label.clone(), flags.quiet)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Action::Sweep => {
            if flags.rates.is_empty() {
                usage_error("sweep needs --rates r1,r2,... (per-node rates, for example 50,100,200,400)");
            }
            let mut results = Vec::new();
            let mut worst = 0;
            for rate in &flags.rates {
                let mut c = config.clone();
                c.rate = (*rate > 0).then_some(*rate);
                let label = format!(
                    "{}sweep-{rate}",
                    flags.label.as_deref().map(|l| format!("{l}-")).unwrap_or_default()
                );
                let (code, run_dir) = run(&target, &c, &faults, latency.as_ref(), Some(label), flags.quiet)?;
                worst = worst.max(code);
                let result: Value =
                    serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json"))?)?;
                results.push((*rate, result));
            }
            println!("{}", sweep_report(&results, config.duration_s));
            if worst != 0 {
                std::process::exit(worst);
            }
            Ok(())
        }
        Action::Check => {
            let (cluster, state) = load(&target, &config)?;
            let checks = checks::run_all(&cluster.nodes, DB, &config, &state.ledger, None)?;
            let verdict = if checks.iter().all(Check::passed) { "PASS" } else { "FAIL" };
            for c in &checks {
                println!("{} {:<20} {}", c.id, c.name, c.status);
                for d in &c.details {
                    println!("    {d}");
                }
            }
            println!("verdict: {verdict}");
            if verdict != "PASS" {
                std::process::exit(EXIT_FAIL);
            }
            Ok(())
        }
    }
}

/// The nodes a command works on, and where their state lives.
struct Target<'a> {
    /// The build whose servers run the local cluster, and whose psql and
    /// pgbench reach the nodes either way.
    installed: &'a Installed,
    /// The local cluster with its state file, or (`--node`) the state file
    /// of the servers elsewhere.
    dir: PathBuf,
    /// `--node name=DSN`, in order: servers elsewhere, node k being the
    /// k-th. Empty: the local cluster in `dir`.
    remote: Vec<(String, String)>,
}

impl<'a> Target<'a> {
    /// The local cluster of a mode, which lives apart from the others' so
    /// that one mode's run leaves the others alone.
    fn local(installed: &'a Installed, mode: Mode) -> Target<'a> {
        let dir = installed.dirs.scratch().join(match mode {
            Mode::Spock => "spockbench".to_string(),
            other => format!("spockbench-{}", other.name()),
        });
        Target { installed, dir, remote: Vec::new() }
    }

    /// Servers elsewhere. Their state (the ledger of committed
    /// transactions) is kept per set of nodes, under a digest of the names
    /// and connection strings, so no password lands in a file name.
    fn remote(installed: &'a Installed, remote: Vec<(String, String)>) -> Target<'a> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for (name, dsn) in &remote {
            // Without the password: the state stays when it changes, and
            // the directory name says nothing about it.
            digest.update(format!("{name}={}\n", crate::node::redact_passwords(dsn)));
        }
        let tag = hex::encode(digest.finalize());
        let dir = installed.dirs.scratch().join(format!("spockbench-dsn-{}", &tag[..16]));
        Target { installed, dir, remote }
    }

    fn is_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// Whether `init` has run for these nodes.
    fn initialised(&self) -> Result<bool> {
        Ok(if self.is_remote() {
            state_path(&self.dir).exists()
        } else {
            Cluster::load(&self.dir)?.is_some()
        })
    }

    /// The servers elsewhere as a cluster value (nothing of it is started
    /// or stopped).
    fn remote_cluster(&self) -> Cluster {
        Cluster {
            dir: self.dir.clone(),
            installed: self.installed.clone(),
            socket_dir: PathBuf::new(),
            nodes: self.remote.iter().map(|(name, dsn)| Node::remote(name, dsn, self.installed)).collect(),
        }
    }
}

/// The node settings of local mode (spockbench.md §2, §9, §10): the
/// comparison modes keep `wal_level = logical` and commit timestamps but
/// do not load the extension.
fn server_conf(config: &Config) -> String {
    let mut conf = format!(
        "shared_buffers = {}\nmax_wal_size = {}\ncheckpoint_timeout = {}\n",
        config.shared_buffers, config.max_wal_size, config.checkpoint_timeout
    );
    conf.push_str(match config.mode {
        Mode::Spock => {
            "spock.conflict_resolution = last_update_wins\nspock.save_resolutions = on\n\
             spock.exception_behaviour = sub_disable\n"
        }
        Mode::Single => "shared_preload_libraries = ''\n",
        Mode::Native => "shared_preload_libraries = ''\nwal_receiver_status_interval = 1s\n",
    });
    if config.stock_settings {
        // What a server without logical replication runs with (§9); the
        // last setting in the file wins over the node defaults above it.
        conf.push_str("wal_level = replica\ntrack_commit_timestamp = off\n");
    }
    conf
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

fn save_state(dir: &Path, state: &State) -> Result<()> {
    let path = state_path(dir);
    std::fs::write(&path, serde_json::to_string_pretty(state)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The initialised cluster, started, and its state; an error says how to
/// make one when there is none or it was made with other values.
fn load(target: &Target, config: &Config) -> Result<(Cluster, State)> {
    let dir = &target.dir;
    let cluster = if target.is_remote() {
        if !state_path(dir).exists() {
            bail!("spockbench has not initialised these --node servers; `spockbench init --node ...` does");
        }
        target.remote_cluster()
    } else {
        Cluster::load(dir)?.with_context(|| {
            format!("no spockbench cluster in {}; `cargo xtask bench init` makes one", dir.display())
        })?
    };
    let path = state_path(dir);
    let state: State =
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}; run `cargo xtask bench init --force`", path.display())
        })?)
        .with_context(|| format!("{} is damaged; run `cargo xtask bench init --force`", path.display()))?;
    let mut cluster = cluster;
    if state.namespaces {
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            node.netns = Some(netns::ns(i + 1));
        }
        // Namespaces do not outlive a reboot: made again when missing.
        if !netns::exists(1) && !cluster.any_running() {
            netns::create(state.nodes)?;
        }
    }
    if (state.nodes, state.scale, state.delta_apply) != (config.nodes, config.scale, config.delta_apply) {
        usage_error(format!(
            "the spockbench cluster in {} was initialised with {} nodes, scale {}, delta apply {}; this run asks for {} \
             nodes, scale {}, delta apply {}: run `init --force` (`cargo xtask bench` or `spockbench`) with the new values",
            dir.display(),
            state.nodes,
            state.scale,
            if state.delta_apply { "on" } else { "off" },
            config.nodes,
            config.scale,
            if config.delta_apply { "on" } else { "off" }
        ));
    }
    if state.stock_settings != config.stock_settings {
        usage_error(format!(
            "the single-mode server in {} was initialised {} --stock-settings; this run asks {} them: run \
             `cargo xtask bench init --force --mode single` with the same option",
            dir.display(),
            if state.stock_settings { "with" } else { "without" },
            if config.stock_settings { "for" } else { "not for" },
        ));
    }
    if !target.is_remote() {
        cluster.start()?;
        restart_if_library_replaced(&cluster)?;
    }
    Ok((cluster, state))
}

/// Schema preparation and wiring (spockbench.md §3).
fn init(target: &Target, config: &Config, force: bool) -> Result<Cluster> {
    let dir = &target.dir;
    let installed = target.installed;
    if target.is_remote() {
        return init_remote(target, config, force);
    }
    if let Some(old) = Cluster::load(dir)? {
        if !force {
            bail!(
                "a spockbench cluster is already initialised in {}; `cargo xtask bench init --force` starts over",
                dir.display()
            );
        }
        old.destroy()?;
    }
    // The namespaces are the spock mesh's: the comparison modes, which
    // take no faults or latency, run on loopback and leave them alone.
    if config.mode == Mode::Spock {
        netns::destroy(config.nodes);
    }
    fsutil::remove_dir_all_if_exists(dir)?;
    let namespaces = config.mode == Mode::Spock && netns::available();
    if namespaces {
        doctor::ensure_network(true)?;
    }
    let servers = if config.mode == Mode::Single { 1 } else { config.nodes };
    let step = ui::Step::start(if config.mode == Mode::Single {
        format!("Starting one server for spockbench's single mode ({} drivers)", config.nodes)
    } else {
        format!(
            "Starting {} nodes for spockbench{}{}",
            config.nodes,
            if config.mode == Mode::Native { " (native logical replication)" } else { "" },
            if namespaces { ", each in its own network namespace" } else { " on loopback" }
        )
    });
    let mut conf = server_conf(config);
    if namespaces {
        netns::create(config.nodes)?;
        conf.push_str(netns::SERVER_CONF);
    }
    let mut cluster = Cluster::create(dir, installed, servers, &RunAs::detect()?, &conf)?;
    if namespaces {
        let password = cluster.nodes[0].password()?;
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            node.netns = Some(netns::ns(i + 1));
            node.append_conf(&format!("listen_addresses = '127.0.0.1, {}'\n", netns::addr(i + 1)))?;
            append(&node.data().join("pg_hba.conf"), netns::HBA)?;
            let pgpass: String =
                (1..=config.nodes).map(|k| format!("{}:*:*:*:{password}\n", netns::addr(k))).collect();
            append(&node.pgpass_file(), &pgpass)?;
        }
    }
    cluster.start()?;
    step.done(&format!("in {}", dir.display()));
    prepare(&cluster, dir, config, namespaces)?;
    Ok(cluster)
}

/// `init` against the servers of `--node name=DSN`: checks their settings,
/// clears what an earlier init left (only with `--force`), then prepares
/// them like a local cluster. The database of each connection string must
/// exist; spockbench's tables are made in it.
fn init_remote(target: &Target, config: &Config, force: bool) -> Result<Cluster> {
    let cluster = target.remote_cluster();
    let step =
        ui::Step::start(format!("Checking the settings of the {} servers given by --node", config.nodes));
    let mut used = Vec::new();
    let mut unready = Vec::new();
    for node in &cluster.nodes {
        let settings: Vec<(String, String)> = node
            .safe_psql(
                DB,
                "SELECT name, setting FROM pg_settings
                  WHERE name IN ('wal_level', 'track_commit_timestamp', 'shared_preload_libraries',
                                 'output_plugin_libraries', 'max_worker_processes', 'max_replication_slots',
                                 'max_wal_senders', 'max_active_replication_origins',
                                 'spock.conflict_resolution', 'spock.save_resolutions',
                                 'spock.exception_behaviour')
                 UNION ALL SELECT 'is_superuser', current_setting('is_superuser')",
            )
            .with_context(|| format!("cannot reach node {} through its connection string", node.name))?
            .lines()
            .filter_map(|l| l.split_once('|').map(|(n, v)| (n.to_string(), v.to_string())))
            .collect();
        let problems = config::server_problems(&settings, config.nodes);
        if !problems.is_empty() {
            unready.push(format!("node {}:\n    {}", node.name, problems.join("\n    ")));
        }
        let leftovers = node.safe_psql(
            DB,
            "SELECT concat_ws(', ',
                    CASE WHEN EXISTS (SELECT FROM pg_extension WHERE extname = 'spock') THEN 'the spock extension' END,
                    CASE WHEN to_regclass('pgbench_accounts') IS NOT NULL THEN 'pgbench tables' END)",
        )?;
        if !leftovers.is_empty() {
            used.push(format!("{} has {leftovers}", node.name));
        }
    }
    if !unready.is_empty() {
        return Err(UsageError(format!(
            "the servers are not ready for spockbench (spockbench.md §2):\n  {}\nchange what is named (settings \
             in their configuration, then a restart), then run init again",
            unready.join("\n  ")
        ))
        .into());
    }
    if !used.is_empty() && !force {
        return Err(UsageError(format!(
            "{} in the database of its connection string; `init --force` drops them (every spock subscription and \
             node of that database, and the four pgbench tables) and starts over",
            used.join("; ")
        ))
        .into());
    }
    step.done("");
    if !used.is_empty() {
        let step = ui::Step::start("Dropping what an earlier init left (--force)");
        // Subscriptions first, everywhere, so that each drops its slot on
        // a provider that still has the extension.
        for node in &cluster.nodes {
            node.safe_psql(
                DB,
                "DO $$ BEGIN
                   IF EXISTS (SELECT FROM pg_extension WHERE extname = 'spock') THEN
                     PERFORM spock.sub_drop(sub_name) FROM spock.subscription;
                   END IF;
                 END $$",
            )?;
        }
        for node in &cluster.nodes {
            node.safe_psql(
                DB,
                &format!("DROP EXTENSION IF EXISTS spock CASCADE; DROP TABLE IF EXISTS {TABLES} CASCADE"),
            )?;
        }
        step.done("");
    }
    fsutil::remove_dir_all_if_exists(&target.dir)?;
    std::fs::create_dir_all(&target.dir)
        .with_context(|| format!("cannot create {}", target.dir.display()))?;
    prepare(&cluster, &target.dir, config, false)?;
    Ok(cluster)
}

/// Steps 1-5 of spockbench.md §3 on started nodes: the schema on every
/// node (or on n1 and the initial sync), the mesh, the check that the nodes
/// start identical, and the state file in `dir`.
fn prepare(cluster: &Cluster, dir: &Path, config: &Config, namespaces: bool) -> Result<()> {
    // The databases of servers elsewhere are their connection strings'.
    let create_db = |node: &Node| -> Result<()> {
        if node.dsn.is_none() {
            node.safe_psql("postgres", &format!("CREATE DATABASE {DB}"))?;
        }
        Ok(())
    };
    let synced = |k: usize| config.init_mode == InitMode::Sync && k > 1;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let k = i + 1;
        if synced(k) {
            // Steps 1-4 happen on n1 only; this node gets them through
            // the initial sync below.
            let step = ui::Step::start(format!(
                "{}: an empty database, filled from n1 by the initial sync",
                node.name
            ));
            create_db(node)?;
            node.safe_psql(
                DB,
                &format!(
                    "CREATE EXTENSION spock; SELECT spock.node_create(node_name := {}, dsn := {});",
                    sql_literal(&node.name),
                    sql_literal(&dsn(node, k, namespaces))
                ),
            )?;
            step.done("");
            continue;
        }
        let step = ui::Step::start(format!(
            "{}: pgbench -i -s {} and the spockbench columns",
            node.name, config.scale
        ));
        create_db(node)?;
        node.pgbench(DB, &["-i", "-s", &config.scale.to_string(), "-I", "dtgvp"])?;
        node.safe_psql(DB, &schema_sql(config, k))?;
        if config.delta_apply {
            for (table, column) in [
                ("pgbench_accounts", "abalance"),
                ("pgbench_tellers", "tbalance"),
                ("pgbench_branches", "bbalance"),
            ] {
                node.safe_psql(
                    DB,
                    &format!(
                        "SET spock.enable_ddl_replication = off;
                         ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL,
                             ALTER COLUMN {column} SET (log_old_value = true, delta_apply_function = spock.delta_apply)"
                    ),
                )
                .context(
                    "the delta-apply column options need core patches 020 and 040 in this server; \
                     `--no-delta` runs without them (balances then lose concurrent deltas)",
                )?;
            }
        }
        match config.mode {
            Mode::Spock => node.safe_psql(
                DB,
                &format!(
                    "SELECT spock.node_create(node_name := {}, dsn := {});
                     SELECT spock.repset_add_table('default', t)
                       FROM unnest('{{{TABLES}}}'::regclass[]) t;",
                    sql_literal(&node.name),
                    sql_literal(&dsn(node, k, namespaces))
                ),
            )?,
            Mode::Native => {
                node.safe_psql(DB, &format!("CREATE PUBLICATION spockbench FOR TABLE {TABLES}"))?
            }
            Mode::Single => String::new(),
        };
        step.done("");
    }
    if config.init_mode == InitMode::Sync {
        let step = ui::Step::start(format!(
            "n2..n{}: the structure and rows of n1 through the extension's initial sync",
            config.nodes
        ));
        initial_sync(cluster, config, namespaces)?;
        step.done("");
    }
    if config.mode != Mode::Single {
        let step = ui::Step::start(format!(
            "Wiring the full mesh ({} subscriptions)",
            config.nodes * (config.nodes - 1)
        ));
        wire(cluster, config.mode, namespaces)?;
        step.done("all replicating");
    }
    let step = ui::Step::start(if config.delta_apply {
        "Checking that the nodes start identical (C1, C2) with the delta options"
    } else {
        "Checking that the nodes start identical (C1, C2)"
    });
    let ledger = Ledger { committed: vec![0; config.nodes], unknown: vec![0; config.nodes] };
    let checks = checks::run_all(&cluster.nodes, DB, config, &ledger, None)?;
    if let Some(bad) = checks.iter().find(|c| (c.id == "C1" || c.id == "C2") && !c.passed()) {
        bail!("the nodes differ right after init ({} {}): {}", bad.id, bad.name, bad.details.join("; "));
    }
    if config.delta_apply {
        for node in &cluster.nodes {
            delta_options_present(node)?;
        }
    }
    step.done("");
    save_state(
        dir,
        &State {
            nodes: config.nodes,
            scale: config.scale,
            delta_apply: config.delta_apply,
            ledger,
            namespaces,
            mode: config.mode,
            stock_settings: config.stock_settings,
            init_mode: config.init_mode,
        },
    )
}

/// The four tables, in the order of a publication or a replication set.
const TABLES: &str = "pgbench_accounts,pgbench_tellers,pgbench_branches,pgbench_history";

/// spockbench's columns on top of `pgbench -i` (spockbench.md §3) on node
/// `k`: the history key from a node-local sequence (`k`, `k + H`, ...) and
/// the LWW columns. In single mode the one server holds a sequence per
/// driver, and the key's default picks the one of the session's
/// `spockbench.node` (set by each driver).
fn schema_sql(config: &Config, k: usize) -> String {
    let h = config.history_stride;
    let mut sql = String::new();
    let default = if config.mode == Mode::Single {
        for d in 1..=config.nodes {
            sql.push_str(&format!("CREATE SEQUENCE pgbench_history_hid_{d} START {d} INCREMENT {h};\n"));
        }
        "nextval(('pgbench_history_hid_' || current_setting('spockbench.node'))::regclass)"
    } else {
        sql.push_str(&format!("CREATE SEQUENCE pgbench_history_hid START {k} INCREMENT {h};\n"));
        "nextval('pgbench_history_hid')"
    };
    if config.mode == Mode::Spock {
        sql.insert_str(0, "CREATE EXTENSION spock;\nSET spock.enable_ddl_replication = off;\n");
    }
    sql.push_str(&format!(
        "ALTER TABLE pgbench_history ADD COLUMN hid bigint NOT NULL DEFAULT {default};
         ALTER TABLE pgbench_history ADD PRIMARY KEY (hid);
         ALTER TABLE pgbench_tellers ADD COLUMN trandom integer DEFAULT 0,
             ADD COLUMN tlastts timestamptz DEFAULT 'epoch';
         ALTER TABLE pgbench_accounts ADD COLUMN arandom integer DEFAULT 0,
             ADD COLUMN alastts timestamptz DEFAULT 'epoch';"
    ));
    if config.mode != Mode::Single {
        sql.push_str("\nALTER SEQUENCE pgbench_history_hid OWNED BY pgbench_history.hid;");
    }
    sql
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// The DSN other nodes reach node `k` by: its namespace address over TCP,
/// or its Unix socket when the nodes share this host's network.
fn dsn(node: &Node, k: usize, namespaces: bool) -> String {
    if namespaces {
        format!("host={} port={} dbname={DB} user={}", netns::addr(k), node.port, crate::node::SUPERUSER)
    } else {
        node.connstr(DB)
    }
}

/// The full mesh: on every node a subscription `sub_<node>_<provider>` to
/// every other node, without data sync (the data is identical), then a
/// wait until all replicate.
fn wire(cluster: &Cluster, mode: Mode, namespaces: bool) -> Result<()> {
    for sub in &cluster.nodes {
        for (k, provider) in cluster.nodes.iter().enumerate().filter(|(_, p)| p.name != sub.name) {
            let name = sql_literal(&format!("sub_{}_{}", sub.name, provider.name));
            let dsn = sql_literal(&dsn(provider, k + 1, namespaces));
            sub.safe_psql(
                DB,
                &if mode == Mode::Native {
                    // spockbench.md §9: no copy, no changes of other origins.
                    format!(
                        "CREATE SUBSCRIPTION {} CONNECTION {dsn} PUBLICATION spockbench \
                         WITH (origin = none, copy_data = false)",
                        name.trim_matches('\'')
                    )
                } else {
                    // Those of the initial sync exist already.
                    format!(
                        "SELECT spock.sub_create(subscription_name := {name}, provider_dsn := {dsn})
                          WHERE NOT EXISTS (SELECT FROM spock.subscription WHERE sub_name = {name})"
                    )
                },
            )?;
        }
    }
    wait_replicating(cluster, mode)
}

/// `--init-mode sync` (spockbench.md §3): every node but n1 subscribes to
/// n1 with `synchronize_structure` and `synchronize_data`, waits for the
/// copy, then restarts its own history sequence (copied with n1's start) at
/// its node number, with automatic DDL replication off so that nothing of
/// it leaves the node.
fn initial_sync(cluster: &Cluster, config: &Config, namespaces: bool) -> Result<()> {
    let provider = &cluster.nodes[0];
    let provider_dsn = sql_literal(&dsn(provider, 1, namespaces));
    let name = |node: &Node| format!("sub_{}_{}", node.name, provider.name);
    for node in &cluster.nodes[1..] {
        node.safe_psql(
            DB,
            &format!(
                "SELECT spock.sub_create(subscription_name := {}, provider_dsn := {provider_dsn},
                     synchronize_structure := true, synchronize_data := true)",
                sql_literal(&name(node))
            ),
        )?;
    }
    for (i, node) in cluster.nodes.iter().enumerate().skip(1) {
        node.safe_psql(
            DB,
            &format!(
                "SET statement_timeout = '{}s'; SELECT spock.sub_wait_for_sync({})",
                config.barrier_timeout_s,
                sql_literal(&name(node))
            ),
        )
        .with_context(|| {
            format!(
                "the initial sync of {} from n1 did not finish; its log:\n{}",
                node.name,
                node.log_tail(30)
            )
        })?;
        node.safe_psql(
            DB,
            &format!(
                "SET spock.enable_ddl_replication = off;
                 ALTER SEQUENCE pgbench_history_hid INCREMENT {} RESTART {}",
                config.history_stride,
                i + 1
            ),
        )?;
    }
    Ok(())
}

/// Waits until every subscription of every node replicates (spock's, or in
/// native mode PostgreSQL's, each with its apply worker running).
fn wait_replicating(cluster: &Cluster, mode: Mode) -> Result<()> {
    let replicating = if mode == Mode::Native {
        "SELECT count(*) = (SELECT count(*) FROM pg_subscription) FROM pg_stat_subscription
          WHERE pid IS NOT NULL AND relid IS NULL"
    } else {
        "SELECT count(*) FILTER (WHERE status <> 'replicating') = 0 FROM spock.sub_show_status()"
    };
    for node in &cluster.nodes {
        node.poll_query_until(DB, replicating, Duration::from_secs(120)).with_context(|| {
            format!("the subscriptions of {} do not replicate; its log:\n{}", node.name, node.log_tail(30))
        })?;
    }
    Ok(())
}

fn delta_options_present(node: &Node) -> Result<()> {
    let n = node.safe_psql(
        DB,
        "SELECT count(*) FROM pg_attribute
          WHERE attrelid IN ('pgbench_accounts'::regclass, 'pgbench_tellers'::regclass, 'pgbench_branches'::regclass)
            AND attname IN ('abalance', 'tbalance', 'bbalance')
            AND array_to_string(attoptions, ',') LIKE '%delta_apply_function%'",
    )?;
    if n != "3" {
        bail!(
            "node {}: the balance columns lack their delta options ({n} of 3 have them); run `cargo xtask bench init \
             --force`, or pass --no-delta to both init and run",
            node.name
        );
    }
    Ok(())
}

/// Restarts the nodes started before the extension's library was
/// installed again (a rebuild since): their walsenders would otherwise load
/// the new file beside the old one for the output plugin and fail.
fn restart_if_library_replaced(cluster: &Cluster) -> Result<()> {
    let lib = cluster.installed.pkglibdir()?.join("spock.so");
    let installed_at = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    for node in &cluster.nodes {
        let started: f64 = node
            .safe_psql(DB, "SELECT extract(epoch FROM pg_postmaster_start_time())")?
            .parse()
            .unwrap_or(f64::MAX);
        if started < installed_at {
            ui::note(format!("{}: restarting, its server predates {}", node.name, lib.display()));
            node.restart()?;
        }
    }
    Ok(())
}

/// Ends every walsender of every node, so that the apply workers connect
/// again (through the relay once its rules are in), and waits until all
/// subscriptions replicate again.
fn reconnect_subscriptions(cluster: &Cluster) -> Result<()> {
    for node in &cluster.nodes {
        let n = node.safe_psql(
            DB,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'walsender'",
        )?;
        if n == "0" {
            bail!("{} had no walsender to end, so its peers would not pass through the relay", node.name);
        }
    }
    wait_for_peers(cluster, true)
}

/// Waits until every node's walsenders serve all its peers, each through
/// the relay (whose connections come from the node's own address) or each
/// directly (from the peer's address).
fn wait_for_peers(cluster: &Cluster, relayed: bool) -> Result<()> {
    let peers = cluster.nodes.len() - 1;
    for (i, node) in cluster.nodes.iter().enumerate() {
        let own = netns::addr(i + 1);
        let filter =
            if relayed { format!("client_addr = '{own}'") } else { format!("client_addr <> '{own}'") };
        node.poll_query_until(
            DB,
            &format!(
                "SELECT count(*) FILTER (WHERE {filter}) = {peers} AND count(*) = {peers} FROM pg_stat_replication"
            ),
            Duration::from_secs(120),
        )
        .with_context(|| {
            format!(
                "the {peers} peers of {} did not connect again {}; its log:\n{}",
                node.name,
                if relayed { "through the relay" } else { "directly after the relay closed" },
                node.log_tail(30)
            )
        })?;
    }
    Ok(())
}

/// The node's WAL insert position, in bytes.
fn wal_position(node: &Node) -> Result<u64> {
    Ok(node.safe_psql(DB, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")?.parse().unwrap_or(0))
}

/// Per-node conflict counters: resolutions by type and by outcome.
type Resolutions = Vec<(String, String, u64)>;

/// What the nodes' counters said before the measured run, per node.
struct Baseline {
    exceptions: Vec<u64>,
    resolutions: Vec<Resolutions>,
    wal: Vec<u64>,
    /// The extension's statistics (spock mode only).
    counters: Vec<Option<counters::Snapshot>>,
    /// Each node's clock against the runner's, in seconds (servers elsewhere
    /// only: the local ones share the runner's clock).
    clock_offsets: Vec<Option<f64>>,
}

impl Baseline {
    fn take(cluster: &Cluster, mode: Mode) -> Result<Baseline> {
        let nodes = &cluster.nodes;
        Ok(Baseline {
            exceptions: nodes.iter().map(|n| checks::exception_rows(n, DB, mode)).collect::<Result<_>>()?,
            resolutions: nodes.iter().map(|n| resolutions(n, mode)).collect::<Result<_>>()?,
            wal: nodes.iter().map(wal_position).collect::<Result<_>>()?,
            counters: settled_statistics(cluster, mode)?,
            clock_offsets: nodes.iter().map(clock_offset).collect::<Result<_>>()?,
        })
    }
}

/// How far a server elsewhere's clock is ahead of the runner's (spockbench.md
/// §7): in one psql session, the runner's time, the server's, the runner's
/// again; the server's against the middle of the two (an RTT/2
/// correction). `None` for a local node.
fn clock_offset(node: &Node) -> Result<Option<f64>> {
    if node.dsn.is_none() {
        return Ok(None);
    }
    let out = node.safe_psql(
        DB,
        "\\! date +R%s.%N\nSELECT 'S' || extract(epoch FROM clock_timestamp());\n\\! date +R%s.%N\n",
    )?;
    // The shell's lines and psql's may reach the pipe in either order:
    // each says whose it is.
    let mut runner: Vec<f64> = out.lines().filter_map(|l| l.strip_prefix('R')?.trim().parse().ok()).collect();
    let server: Option<f64> = out.lines().find_map(|l| l.strip_prefix('S')?.trim().parse().ok());
    runner.sort_by(f64::total_cmp);
    Ok(match (runner.as_slice(), server) {
        ([before, after], Some(server)) => Some(server - (before + after) / 2.0),
        _ => None,
    })
}

/// The replication statistics of a node: the extension's in spock mode,
/// PostgreSQL's subscription statistics in native mode (18+).
fn statistics(node: &Node, mode: Mode) -> Result<Option<counters::Snapshot>> {
    match mode {
        Mode::Spock => counters::Snapshot::read(node, DB),
        Mode::Native => counters::Snapshot::read_native(node, DB),
        Mode::Single => Ok(None),
    }
}

/// Readings of `statistics` on every node, at the baseline and at the end.
/// PostgreSQL's apply workers send their counters at most once a second
/// (and when idle), so in native mode the nodes are read until two readings
/// a second apart agree (10 s at most).
fn settled_statistics(cluster: &Cluster, mode: Mode) -> Result<Vec<Option<counters::Snapshot>>> {
    let read = || cluster.nodes.iter().map(|n| statistics(n, mode)).collect::<Result<Vec<_>>>();
    let mut now = read()?;
    if mode == Mode::Native {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let again = read()?;
            let settled = again == now;
            now = again;
            if settled {
                break;
            }
        }
    }
    Ok(now)
}

fn resolutions(node: &Node, mode: Mode) -> Result<Resolutions> {
    if mode != Mode::Spock {
        return Ok(Vec::new());
    }
    let out = node.safe_psql(
        DB,
        "SELECT coalesce(conflict_type, '?'), coalesce(conflict_resolution, '?'), count(*) FROM spock.resolutions GROUP BY 1, 2",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect())
}

/// One node's load: pgbench for `seconds`, started again after a fault of
/// this node broke its connections, for what is left of the window.
fn drive(
    node: &Node,
    config: &Config,
    k: usize,
    seconds: u64,
    dir: &Path,
    phase: &str,
    hit: &AtomicBool,
) -> (Vec<DriverRun>, u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut runs = Vec::new();
    let mut unknown = 0;
    let mut segment = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now()).as_secs();
        if left < 2 {
            break;
        }
        hit.store(false, Ordering::SeqCst);
        let prefix = format!("{phase}_n{k}_{segment}");
        let run = driver::run(node, DB, config, k, left, dir, &prefix);
        let broken = run.aborted && hit.load(Ordering::SeqCst);
        runs.push(run);
        if !broken {
            break;
        }
        // Connections lost by our own fault: each client may have had a
        // commit in flight whose outcome is unknown.
        unknown += u64::from(config.clients);
        if let Some(last) = runs.last_mut() {
            last.aborted = false;
        }
        // Back when the node accepts connections again.
        let _ = node.poll_query_until(DB, "SELECT true", Duration::from_secs(120));
        segment += 1;
    }
    (runs, unknown)
}

/// `SELECT spock.sync_event()` on a node, retried while it restarts.
fn sync_event(node: &Node) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match node.safe_psql(DB, "SELECT spock.sync_event()") {
            Ok(lsn) => return Ok(lsn),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The barrier of native mode (spockbench.md §5.6) for node `k` (0-based),
/// right after its driver ended: its WAL position then, and for every
/// other node the moment that node's slot on `k` has confirmed it (None:
/// timed out). Subscribers report every second, the resolution recorded.
fn native_barrier(cluster: &Cluster, k: usize, timeout: u64) -> Vec<Option<Instant>> {
    let node = &cluster.nodes[k];
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let lsn = loop {
        match node.safe_psql(DB, "SELECT pg_current_wal_lsn()") {
            Ok(l) => break Some(l),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(_) => break None,
        }
    };
    let mut applied: Vec<Option<Instant>> = vec![None; cluster.nodes.len()];
    applied[k] = Some(Instant::now());
    let Some(lsn) = lsn else { return applied };
    let mut waiting: Vec<usize> = (0..cluster.nodes.len()).filter(|j| *j != k).collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        let sql = format!(
            "SELECT slot_name FROM pg_replication_slots WHERE confirmed_flush_lsn >= '{lsn}' AND NOT temporary"
        );
        if let Ok(done) = node.safe_psql(DB, &sql) {
            let now = Instant::now();
            waiting.retain(|j| {
                let slot = format!("sub_{}_{}", cluster.nodes[*j].name, node.name);
                let reached = done.lines().any(|l| l == slot);
                if reached {
                    applied[*j] = Some(now);
                }
                !reached
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    applied
}

/// A partition between nodes `k` and `j` (0-based) for `seconds`, proved:
/// before the cut, `k`'s namespace reaches `j`'s server; after it, no more.
fn partition(cluster: &Cluster, k: usize, j: usize, seconds: u64) -> Result<()> {
    let (name_k, name_j, port) = (&cluster.nodes[k].name, &cluster.nodes[j].name, cluster.nodes[j].port);
    let probe = Duration::from_secs(2);
    if !netns::reachable(k + 1, j + 1, port, probe)? {
        bail!(
            "before the partition, {name_k}'s namespace cannot reach the server of {name_j}: the servers do not run in \
             the namespaces this run controls (`cargo xtask bench init --force` starts them there again)"
        );
    }
    netns::partition(k + 1, j + 1, true)?;
    let started = Instant::now();
    let cut = netns::reachable(k + 1, j + 1, port, probe).map(|r| !r);
    if !matches!(cut, Ok(true)) {
        let _ = netns::partition(k + 1, j + 1, false);
        bail!(
            "after the cut, {name_k}'s namespace still reaches the server of {name_j}: the partition did not hold"
        );
    }
    std::thread::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed()));
    netns::partition(k + 1, j + 1, false)
}

/// The result of one load phase on every node, with the barrier.
struct Phase {
    runs: Vec<Vec<DriverRun>>,
    unknown: Vec<u64>,
    /// `t_end(k)` and, per other node `j`, `t_applied(k -> j)` (None: timed out).
    ends: Vec<Option<Instant>>,
    applied: Vec<Vec<Option<Instant>>>,
    faults: Vec<Value>,
}

/// Load on every node for `seconds`, each node's end followed at once by a
/// sync event waited for on every other node (spockbench.md §5); faults are
/// injected at their times.
#[allow(clippy::too_many_arguments)]
fn phase(
    cluster: &Cluster,
    config: &Config,
    seconds: u64,
    dir: &Path,
    name: &str,
    faults: &[Fault],
    fault_count: &AtomicUsize,
    t0: Instant,
) -> Phase {
    let n = cluster.nodes.len();
    let hits: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let timeout = config.barrier_timeout_s;
    std::thread::scope(|scope| {
        // One thread per fault, each at its own time (a partition lasts).
        let fault_threads: Vec<_> = faults
            .iter()
            .map(|f| {
                let hits = &hits;
                scope.spawn(move || {
                    let at = t0 + Duration::from_secs(f.at_s);
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let index =
                        |name: &str| cluster.nodes.iter().position(|x| x.name == name).expect("checked");
                    let k = index(&f.node);
                    let node = &cluster.nodes[k];
                    let at_s = t0.elapsed().as_secs_f64();
                    let result = match &f.kind {
                        FaultKind::Kill9 => {
                            hits[k].store(true, Ordering::SeqCst);
                            node.kill9().and_then(|_| node.start())
                        }
                        FaultKind::KillApply => node
                            .safe_psql(
                                DB,
                                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                                  WHERE backend_type = 'spock apply'",
                            )
                            .and_then(|n| {
                                if n == "0" {
                                    bail!("{} had no apply worker to terminate", node.name)
                                } else {
                                    Ok(())
                                }
                            }),
                        FaultKind::Restart => {
                            hits[k].store(true, Ordering::SeqCst);
                            node.restart()
                        }
                        FaultKind::Partition { other, seconds } => {
                            let j = index(other);
                            partition(cluster, k, j, *seconds)
                        }
                    };
                    fault_count.fetch_add(1, Ordering::Relaxed);
                    ui::note(format!(
                        "spockbench: fault {} at {at_s:.1} s: {}",
                        f.label(),
                        if result.is_ok() { "done" } else { "FAILED" }
                    ));
                    json!({"fault": f.label(), "at_s": at_s, "ok": result.is_ok(),
                           "error": result.err().map(|e| format!("{e:#}"))})
                })
            })
            .collect();
        // Single mode: every driver on the one server.
        let targets: Vec<&Node> = (0..config.nodes)
            .map(|i| if config.mode == Mode::Single { &cluster.nodes[0] } else { &cluster.nodes[i] })
            .collect();
        let handles: Vec<_> = targets
            .iter()
            .copied()
            .enumerate()
            .map(|(i, node)| {
                let hit = &hits[i.min(n - 1)];
                scope.spawn(move || {
                    let (runs, unknown) = drive(node, config, i + 1, seconds, dir, name, hit);
                    let ended = runs.last().and_then(|r| r.ended);
                    match config.mode {
                        Mode::Single => return (runs, unknown, ended, vec![ended; config.nodes]),
                        Mode::Native => {
                            let applied = native_barrier(cluster, i, timeout);
                            return (runs, unknown, ended, applied);
                        }
                        Mode::Spock => {}
                    }
                    let lsn = sync_event(node);
                    // Waits of the other nodes for this node's event.
                    let applied: Vec<Option<Instant>> = std::thread::scope(|inner| {
                        let waits: Vec<_> = cluster
                            .nodes
                            .iter()
                            .map(|other| {
                                let lsn = lsn.as_ref().ok().cloned();
                                inner.spawn(move || {
                                    if other.name == node.name {
                                        return ended;
                                    }
                                    let lsn = lsn?;
                                    let sql = format!(
                                        "CALL spock.wait_for_sync_event(NULL, {}, '{lsn}', {timeout})",
                                        sql_literal(&node.name)
                                    );
                                    let deadline = Instant::now() + Duration::from_secs(timeout);
                                    // Retried while the waiting node restarts.
                                    while Instant::now() < deadline {
                                        match other.safe_psql(DB, &sql) {
                                            Ok(r) if r == "t" => return Some(Instant::now()),
                                            Ok(_) => return None,
                                            Err(_) => std::thread::sleep(Duration::from_millis(500)),
                                        }
                                    }
                                    None
                                })
                            })
                            .collect();
                        waits.into_iter().map(|w| w.join().unwrap_or(None)).collect()
                    });
                    (runs, unknown, ended, applied)
                })
            })
            .collect();
        let mut p = Phase {
            runs: Vec::new(),
            unknown: Vec::new(),
            ends: Vec::new(),
            applied: Vec::new(),
            faults: Vec::new(),
        };
        for h in handles {
            let (runs, unknown, ended, applied) = h.join().expect("a driver thread panicked");
            p.runs.push(runs);
            p.unknown.push(unknown);
            p.ends.push(ended);
            p.applied.push(applied);
        }
        p.faults = fault_threads.into_iter().filter_map(|t| t.join().ok()).collect();
        p
    })
}

fn committed(runs: &[DriverRun]) -> u64 {
    runs.iter().map(|r| r.committed).sum()
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(layout::project_root())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn environment(node: &Node) -> Result<Value> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    });
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))?
                .split_once('=')
                .map(|(_, v)| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let mut patches = serde_json::Map::new();
    let spock = node.safe_psql(DB, "SELECT count(*) FROM pg_extension WHERE extname = 'spock'")? == "1";
    if spock {
        for line in node.safe_psql(DB, "SELECT patch, abi FROM spock.core_patches WHERE present")?.lines() {
            if let Some((name, abi)) = line.split_once('|') {
                patches.insert(name.to_string(), abi.parse::<i64>().map_or(Value::Null, Value::from));
            }
        }
    }
    Ok(json!({
        "host": host,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_bytes": memory,
        "os": os,
        "postgresql": node.safe_psql(DB, "SHOW server_version")?,
        "extension": if spock { json!(node.safe_psql(DB, "SELECT spock.spock_version()")?) } else { Value::Null },
        "core_patches": patches,
        "output_plugin_libraries": node.safe_psql(
            DB,
            "SELECT count(*) = 1 FROM pg_settings WHERE name = 'output_plugin_libraries'"
        )? == "t",
    }))
}

/// Pre-flight checks (spockbench.md §2): converged, replicating, the
/// output plugin allowed, the delta options present.
fn preflight(cluster: &Cluster, config: &Config, ledger: &Ledger) -> Result<()> {
    let checks = checks::run_all(&cluster.nodes, DB, config, ledger, None)?;
    if let Some(c) = checks.iter().find(|c| (c.id == "C2" || c.id == "C5") && !c.passed()) {
        bail!(
            "pre-flight: {} {} fails, so a run would measure nothing meaningful: {}; `cargo xtask bench check` shows \
             it, `cargo xtask bench init --force` starts over",
            c.id,
            c.name,
            c.details.join("; ")
        );
    }
    for node in &cluster.nodes {
        if config.mode == Mode::Spock {
            let libs = node.safe_psql(
                DB,
                "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'), 'spock_output')",
            )?;
            if !libs.contains("spock_output") {
                bail!(
                    "pre-flight: node {}: output_plugin_libraries = '{libs}' omits spock_output",
                    node.name
                );
            }
        }
        if config.delta_apply {
            delta_options_present(node)?;
        }
    }
    Ok(())
}

/// A measured run; returns its exit code and its run directory.
fn run(
    target: &Target,
    config: &Config,
    faults: &[Fault],
    latency: Option<&netns::Delays>,
    label: Option<String>,
    quiet: bool,
) -> Result<(i32, PathBuf)> {
    let dir = &target.dir;
    if !target.initialised()? {
        init(target, config, false)?;
    }
    let (cluster, mut state) = load(target, config)?;
    preflight(&cluster, config, &state.ledger)?;
    // The links' delay is this run's (none unless --latency): netem on the
    // links, or the relay where the kernel has no netem.
    let mut delay_method = Value::Null;
    let mut relays = None;
    if state.namespaces {
        if let Some(l) = latency.filter(|_| !netns::netem_available()) {
            let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
            relays = Some(relay::start(&ports, l)?);
            reconnect_subscriptions(&cluster)?;
            delay_method = json!("relay");
        } else {
            netns::set_latency(config.nodes, latency)?;
            if latency.is_some() {
                delay_method = json!("netem");
            }
        }
    }
    let started_wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (started_at, stamp) = report::utc(started_wall);
    let label = label.unwrap_or_else(|| config.default_label());
    let run_id = format!("{stamp}-{label}");
    let run_dir = layout::target_dir().join("bench").join(&run_id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    driver::write_scripts(&run_dir)?;
    let mut effective = serde_json::to_value(config)?;
    effective["faults"] = json!(faults.iter().map(Fault::label).collect::<Vec<_>>());
    effective["latency"] = latency.map_or(Value::Null, netns::Delays::to_json);
    effective["init_mode"] = json!(state.init_mode);
    effective["network"] = json!(if target.is_remote() {
        "remote"
    } else if state.namespaces {
        "namespaces"
    } else {
        "loopback"
    });
    effective["latency_method"] = delay_method;
    std::fs::write(run_dir.join("config.json"), serde_json::to_string_pretty(&effective)?)?;
    ui::note(format!("spockbench run {run_id}: files in {}", run_dir.display()));

    if config.warmup_s > 0 {
        let step = ui::Step::start(format!("Warm-up: {} s on {} nodes", config.warmup_s, config.nodes));
        let p = phase(
            &cluster,
            config,
            config.warmup_s,
            &run_dir,
            "warmup",
            &[],
            &AtomicUsize::new(0),
            Instant::now(),
        );
        add_to_ledger(&mut state.ledger, &p);
        save_state(dir, &state)?;
        if p.runs.iter().flatten().any(|r| r.aborted) {
            let why =
                p.runs.iter().flatten().find(|r| r.aborted).map(|r| r.output.clone()).unwrap_or_default();
            bail!("a driver failed during the warm-up; its report:\n{why}");
        }
        step.done("");
    }
    let baseline = Baseline::take(&cluster, config.mode)?;

    let step = ui::Step::start(format!(
        "Measured run: {} s on {} nodes, mix {}, {}{}",
        config.duration_s,
        config.nodes,
        config.mix_text(),
        config.rate.map_or("unthrottled".to_string(), |r| format!("{r} tps per node")),
        if faults.is_empty() {
            String::new()
        } else {
            format!(", faults {}", faults.iter().map(Fault::label).collect::<Vec<_>>().join(" "))
        }
    ));
    // Which link each slot serves, from the subscribers' catalogs (long
    // node names make hashed slot names).
    let slots = sampler::slot_targets(&cluster.nodes, DB);
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let fault_count = AtomicUsize::new(0);
    let (p, samples, host_samples) = std::thread::scope(|scope| {
        let host = {
            let stop = stop.clone();
            scope.spawn(move || host::sample_until(Duration::from_secs(config.sample_s), t0, stop))
        };
        let sampler = {
            let stop = stop.clone();
            let nodes = cluster.nodes.clone();
            let fault_count = &fault_count;
            let slots = &slots;
            scope.spawn(move || {
                let every = Duration::from_secs(config.sample_s);
                let sampling =
                    sampler::Sampling { db: DB, every, t0, stride: config.history_stride, quiet, slots };
                sampler::sample_until(&nodes, &sampling, stop, fault_count)
            })
        };
        let p = phase(&cluster, config, config.duration_s, &run_dir, "run", faults, &fault_count, t0);
        stop.store(true, Ordering::Relaxed);
        (p, sampler.join().unwrap_or_default(), host.join().unwrap_or_default())
    });
    add_to_ledger(&mut state.ledger, &p);
    save_state(dir, &state)?;
    // Back to direct links once the barrier has passed: the relayed
    // connections close, and the checks wait for the subscribers to be back.
    if relays.take().is_some() {
        wait_for_peers(&cluster, false)?;
        wait_replicating(&cluster, config.mode)?;
    }
    step.done("");

    let step = ui::Step::start("Consistency checks C1-C5");
    let checks = checks::run_all(&cluster.nodes, DB, config, &state.ledger, Some(&baseline.exceptions))?;
    step.done("");
    let ended_wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());

    let result = assemble(
        &cluster,
        config,
        &p,
        &samples,
        &checks,
        &baseline,
        t0,
        (&run_id, &label, &started_at, &report::utc(ended_wall).0, started_wall),
    )?;
    let mut result = result;
    result["config"]["latency"] = effective["latency"].clone();
    result["config"]["network"] = effective["network"].clone();
    result["config"]["latency_method"] = effective["latency_method"].clone();
    result["config"]["init_mode"] = effective["init_mode"].clone();
    result["host"] = report::host_summary(&host_samples);
    result["artifacts"]["host_csv"] = json!("host.csv");
    report::validate(&result)?;
    std::fs::write(run_dir.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    report::write_lag_csv(&run_dir.join("lag.csv"), &samples)?;
    report::write_host_csv(&run_dir.join("host.csv"), &host_samples)?;
    let mut progress = Vec::new();
    for (k, runs) in p.runs.iter().enumerate() {
        for r in runs {
            let offset = r.started.map_or(0.0, |s| s.saturating_duration_since(t0).as_secs_f64());
            for (t, tps, lat) in &r.progress {
                progress.push((offset + t, driver_name(&cluster, config, k), *tps, *lat));
            }
        }
    }
    progress.sort_by(|a, b| a.0.total_cmp(&b.0));
    report::write_progress_csv(&run_dir.join("progress.csv"), &progress)?;
    let markers: Vec<plots::Marker> = faults
        .iter()
        .map(|f| {
            let at = p.faults.iter().find(|x| x["fault"].as_str() == Some(f.label().as_str()));
            let from_s = at.and_then(|x| x["at_s"].as_f64()).unwrap_or(f.at_s as f64);
            plots::Marker { label: f.label(), from_s, to_s: from_s + (f.until_s() - f.at_s) as f64 }
        })
        .collect();
    plots::lag(&run_dir.join("lag.svg"), &samples, &markers)?;
    let tps_points: Vec<(f64, String, f64)> =
        progress.iter().map(|(t, n, tps, _)| (*t, n.clone(), *tps)).collect();
    plots::tps(&run_dir.join("tps.svg"), &tps_points, &markers)?;
    let summary = report::summary_text(&result);
    std::fs::write(run_dir.join("summary.txt"), &summary)?;
    let verdict = result["consistency"]["verdict"].as_str().unwrap_or("INVALID").to_string();
    if verdict != "PASS" {
        // Server-log excerpts for a failed run.
        for node in &cluster.nodes {
            let _ = std::fs::write(run_dir.join(format!("{}.log-tail.txt", node.name)), node.log_tail(200));
        }
    }
    println!("\n{summary}");
    println!("files: {}", run_dir.display());
    let code = match verdict.as_str() {
        "PASS" => 0,
        "FAIL" => EXIT_FAIL,
        _ => EXIT_INVALID,
    };
    Ok((code, run_dir))
}

/// The short spockbench of `cargo xtask test` (issue 14): 3 nodes under the
/// conflicting mix with a `kill -9` of one node and a clean restart of
/// another must end PASS; the `--no-delta` negative control at scale 1 must
/// end FAIL with C3 naming keys while C2 (convergence) passes.
pub fn ci_check(installed: &Installed) -> Result<String> {
    let target = Target::local(installed, Mode::Spock);
    let dir = target.dir.clone();
    let mut flags = Spockbench::ci_short();
    let config = Config::from_flags(&flags).map_err(anyhow::Error::msg)?;
    let mut wanted = vec!["kill9:n2@10s", "kill-apply:n1@22s", "restart:n3@30s"];
    if netns::available() {
        wanted.push("partition:n1-n3@16s+10s");
    }
    let faults: Vec<Fault> =
        wanted.iter().map(|f| Fault::parse(f).map_err(anyhow::Error::msg)).collect::<Result<_>>()?;
    init(&target, &config, true)?;
    let (code, run_dir) = run(&target, &config, &faults, None, Some("ci".into()), true)?;
    if code != 0 {
        bail!(
            "the short spockbench run did not end PASS (exit {code}); see {}",
            run_dir.join("summary.txt").display()
        );
    }
    self_test(&target, &config)?;
    flags.no_delta = true;
    flags.scale = Some(1);
    flags.duration = Some(15);
    let config = Config::from_flags(&flags).map_err(anyhow::Error::msg)?;
    init(&target, &config, true)?;
    let (code, control_dir) = run(&target, &config, &[], None, Some("ci-no-delta".into()), true)?;
    let result: Value = serde_json::from_str(&std::fs::read_to_string(control_dir.join("result.json"))?)?;
    let status = |id: &str| {
        result["consistency"]["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .map(|c| (c["status"].as_str().unwrap_or("").to_string(), c["details"].to_string()))
            .unwrap_or_default()
    };
    let (c3, c3_details) = status("C3");
    let (c2, _) = status("C2");
    if code != EXIT_FAIL || c3 != "FAIL" || c2 != "PASS" || !c3_details.contains(" has ") {
        bail!(
            "the --no-delta negative control should FAIL on C3 with the keys named while C2 passes; it gave exit \
             {code}, C2 {c2}, C3 {c3}; see {}",
            control_dir.join("summary.txt").display()
        );
    }
    if let Some(cluster) = Cluster::load(&dir)? {
        cluster.destroy()?;
    }
    netns::destroy(config.nodes);
    Ok(format!(
        "PASS with {} ({}); --no-delta control FAIL on C3 as expected",
        wanted.join(", "),
        run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ))
}

/// Where results say a node is: its socket directory and port, or for a
/// server elsewhere the address and port the connection reached (from the
/// server, so that nothing of the connection string, which may hold a
/// password, is written).
fn address(node: &Node) -> Result<(String, u16)> {
    if node.dsn.is_none() {
        return Ok((node.socket_dir.display().to_string(), node.port));
    }
    let row = node.safe_psql(
        DB,
        "SELECT coalesce(host(inet_server_addr()), 'unix socket') || '|' || current_setting('port')",
    )?;
    let (host, port) = row.split_once('|').unwrap_or((&row, "0"));
    Ok((host.to_string(), port.parse().unwrap_or(0)))
}

/// spockbench.md §11.6 on a stock build (`cargo xtask test`, after the
/// negative control): two stock servers with the extension, given as
/// `--node` servers; `init` must stop with an error naming patch 020, and
/// `init --no-delta --force` must then prepare and wire them.
pub fn unpatched_check(stock: &Installed) -> Result<String> {
    let dir = stock.dirs.scratch().join("spockbench-unpatched");
    if let Some(old) = Cluster::load(&dir)? {
        old.destroy()?;
    }
    fsutil::remove_dir_all_if_exists(&dir)?;
    let conf = format!(
        "fsync = off\n{}",
        server_conf(&Config::from_flags(&Spockbench::ci_short()).map_err(anyhow::Error::msg)?)
    );
    let cluster = Cluster::create(&dir, stock, 2, &RunAs::detect()?, &conf)?;
    cluster.start()?;
    let outcome = (|| -> Result<String> {
        let mut remote = Vec::new();
        for node in &cluster.nodes {
            node.safe_psql("postgres", &format!("CREATE DATABASE {DB}"))?;
            remote.push((format!("s{}", remote.len() + 1), node.connstr(DB)));
        }
        let target = Target::remote(stock, remote);
        let _state = scopeguard_dir(&target.dir);
        let mut flags = Spockbench::ci_short();
        flags.nodes = Some(2);
        flags.scale = Some(1);
        let config = Config::from_flags(&flags).map_err(anyhow::Error::msg)?;
        let refused = match init(&target, &config, false) {
            Ok(_) => bail!("spockbench init with the delta options went ahead on a stock server"),
            Err(e) => format!("{e:#}"),
        };
        let patch = format!("pg{}-020-column-options.diff", stock.dirs.major);
        if !refused.contains(&patch) || !refused.contains("--no-delta") {
            bail!("spockbench init on a stock server did not name patch 020 and --no-delta: {refused}");
        }
        flags.no_delta = true;
        let config = Config::from_flags(&flags).map_err(anyhow::Error::msg)?;
        init(&target, &config, true).context("spockbench init --no-delta on stock servers")?;
        Ok("init named patch 020; --no-delta prepared and wired the nodes".to_string())
    })();
    // The servers go either way: the error says what failed.
    cluster.destroy()?;
    outcome
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scopeguard_dir(dir: &Path) -> RemoveOnDrop {
    RemoveOnDrop(dir.to_path_buf())
}

/// The name results give driver `k` (0-based): its node's, or `n<k+1>`
/// for the drivers that share single mode's one server.
fn driver_name(cluster: &Cluster, config: &Config, k: usize) -> String {
    if cluster.nodes.len() == config.nodes { cluster.nodes[k].name.clone() } else { format!("n{}", k + 1) }
}

fn add_to_ledger(ledger: &mut Ledger, p: &Phase) {
    for (k, runs) in p.runs.iter().enumerate() {
        ledger.committed[k] += committed(runs);
        ledger.unknown[k] += p.unknown[k];
    }
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    cluster: &Cluster,
    config: &Config,
    p: &Phase,
    samples: &[Sample],
    checks: &[Check],
    baseline: &Baseline,
    t0: Instant,
    (run_id, label, started_at, ended_at, started_wall): (&str, &str, &str, &str, u64),
) -> Result<Value> {
    let n = config.nodes;
    // The server of driver k: in single mode all drivers share one.
    let server = |k: usize| &cluster.nodes[k.min(cluster.nodes.len() - 1)];
    let name = |k: usize| driver_name(cluster, config, k);
    let secs = |i: Instant| i.saturating_duration_since(t0).as_secs_f64();
    let starts: Vec<f64> =
        p.runs.iter().map(|r| r.first().and_then(|x| x.started).map_or(0.0, secs)).collect();
    let ends: Vec<f64> = p.ends.iter().map(|e| e.map_or(0.0, secs)).collect();
    let t_run = ends.iter().cloned().fold(0.0, f64::max) - starts.iter().cloned().fold(f64::MAX, f64::min);
    let mut per_node = Vec::new();
    let mut total = 0;
    let mut invalid = None;
    for (k, runs) in p.runs.iter().enumerate() {
        let node = server(k);
        let c = committed(runs);
        total += c;
        let span = (ends[k] - starts[k]).max(1e-9);
        let achieved = c as f64 / span;
        let merged =
            DriverRun { logs: runs.iter().flat_map(|r| r.logs.clone()).collect(), ..DriverRun::default() };
        let (latency, lag) = driver::latencies(&merged, config.rate.is_some());
        if let Some(r) = runs.iter().find(|r| r.aborted) {
            invalid.get_or_insert(format!(
                "the driver of {} failed: {}",
                name(k),
                r.output
                    .lines()
                    .filter(|l| l.contains("error") || l.contains("abort"))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        let offered = config.rate.map(f64::from);
        let saturated = offered.is_some_and(|o| achieved < 0.95 * o)
            || (config.rate.is_some() && lag.avg > 0.1 * latency.avg);
        per_node.push(json!({
            "node": name(k),
            "offered_tps": offered,
            "committed": c,
            "failed": runs.iter().map(|r| r.failed).sum::<u64>(),
            "retried": runs.iter().map(|r| r.retried).sum::<u64>(),
            "achieved_tps": achieved,
            "latency_ms": latency,
            "schedule_lag_ms": config.rate.map(|_| json!({"avg": lag.avg, "max": lag.max})),
            "saturated": saturated,
            "wal_bytes": if cluster.nodes.len() == n || k == 0 {
                json!(wal_position(node)?.saturating_sub(baseline.wal[k]))
            } else {
                // Single mode: the one server's WAL is reported under n1.
                Value::Null
            },
        }));
    }
    // What the extension counted during the run, per node.
    let grown: Vec<Option<counters::Snapshot>> = settled_statistics(cluster, config.mode)?
        .into_iter()
        .zip(&baseline.counters)
        .map(|(now, before)| Some(now?.since(before.as_ref()?)))
        .collect();
    // Links and catch-up.
    let mut links = Vec::new();
    let mut timed_out = false;
    let mut max_applied: f64 = 0.0;
    let mut node_catch_up = vec![0.0_f64; n];
    // Single mode has no links.
    for k in (0..n).filter(|_| config.mode != Mode::Single) {
        for j in (0..n).filter(|j| *j != k) {
            // When node j applied node k's end-of-run sync event.
            let reached = p.applied[k].get(j).copied().flatten();
            if reached.is_none() {
                timed_out = true;
            }
            let catch_up = reached.map(|a| (secs(a) - ends[k]).max(0.0));
            if let Some(a) = reached {
                max_applied = max_applied.max(secs(a));
            }
            // The link's mean apply rate: every transaction k committed in
            // the run was applied on j between k's start (j had applied all
            // before it, at the warm-up's barrier) and that moment.
            let apply_tps = reached.map(|a| committed(&p.runs[k]) as f64 / (secs(a) - starts[k]).max(1e-9));
            node_catch_up[k] = node_catch_up[k].max(catch_up.unwrap_or(config.barrier_timeout_s as f64));
            let (origin, target) = (&name(k), &name(j));
            let series: Vec<&Sample> =
                samples.iter().filter(|s| &s.origin == origin && &s.target == target).collect();
            let lag_s: Vec<f64> = series.iter().filter_map(|s| s.lag_s).collect();
            let lag_b: Vec<f64> = series.iter().filter_map(|s| s.lag_bytes.map(|b| b as f64)).collect();
            let half = t_run / 2.0;
            let backlog: Vec<(f64, f64)> = series
                .iter()
                .filter(|s| s.t_s >= half && s.t_s <= t_run)
                .filter_map(|s| s.backlog_bytes.map(|b| (s.t_s, b as f64)))
                .collect();
            let (smax, sp95, sfin) = sampler::summary(&lag_s);
            let (bmax, bp95, bfin) = sampler::summary(&lag_b);
            // Rows node j applied from node k, and delta-apply overrides.
            let applied = grown
                .get(j)
                .and_then(Option::as_ref)
                .filter(|_| config.mode == Mode::Spock)
                .map(|g| g.applied.get(origin).copied().unwrap_or((0, 0)));
            links.push(json!({
                "origin": origin,
                "target": target,
                "lag_s": {"max": smax, "p95": sp95, "final": sfin},
                "lag_bytes": {"max": bmax as i64, "p95": bp95 as i64, "final": bfin as i64},
                "backlog_slope_bytes_per_s": sampler::slope(&backlog),
                "catch_up_s": catch_up,
                "apply_tps": apply_tps,
                "applied_rows": applied.map(|a| a.0),
                "delta_apply": applied.map(|a| a.1),
            }));
        }
    }
    let max_end = ends.iter().cloned().fold(0.0, f64::max);
    let cluster_catch_up =
        if timed_out { config.barrier_timeout_s as f64 } else { (max_applied - max_end).max(0.0) };
    let achieved_total = total as f64 / t_run.max(1e-9);
    let mst = total as f64 / (t_run + cluster_catch_up).max(1e-9);
    let per_node_mst: Vec<Value> = (0..n)
        .map(|k| {
            json!({"node": name(k), "sustainable_tps": committed(&p.runs[k]) as f64 / (t_run + node_catch_up[k]).max(1e-9)})
        })
        .collect();
    // Conflicts since the baseline.
    let mut conflicts = Vec::new();
    let mut conflicts_total = 0;
    for (k, node) in cluster.nodes.iter().enumerate() {
        let now = resolutions(node, config.mode)?;
        // By type: every conflict the subscriptions counted (also the
        // ordinary update_origin_differs of a remote win); by outcome: the
        // recorded ones (spock.resolutions), which make the total.
        let mut by_type = serde_json::Map::new();
        let mut by_resolution = serde_json::Map::new();
        let mut node_total = 0;
        for (ty, res, count) in &now {
            let before =
                baseline.resolutions[k].iter().find(|(t, r, _)| t == ty && r == res).map_or(0, |x| x.2);
            let d = count.saturating_sub(before);
            if d == 0 {
                continue;
            }
            node_total += d;
            *by_resolution.entry(res.clone()).or_insert(json!(0)) =
                json!(by_resolution.get(res).and_then(Value::as_u64).unwrap_or(0) + d);
        }
        if let Some(g) = &grown[k] {
            for (ty, n) in g.by_type() {
                by_type.insert(ty.to_string(), json!(n));
            }
        }
        let delta_apply =
            grown[k].as_ref().filter(|_| config.mode == Mode::Spock).map(counters::Snapshot::delta_apply);
        let exceptions = match (config.mode, &grown[k]) {
            // PostgreSQL's apply errors stand for spock's exception rows,
            // its conflicts counted for the resolutions it does not record.
            (Mode::Native, Some(g)) => {
                node_total = g.by_type().values().sum();
                g.apply_errors
            }
            _ => checks::exception_rows(node, DB, config.mode)?.saturating_sub(baseline.exceptions[k]),
        };
        conflicts_total += node_total;
        conflicts.push(json!({
            "node": node.name, "by_type": by_type, "by_resolution": by_resolution,
            "delta_apply": delta_apply, "exceptions": exceptions, "total": node_total,
        }));
    }
    if let Some(f) = p.faults.iter().find(|f| f["ok"] == false) {
        invalid.get_or_insert(format!(
            "the fault {} failed: {}",
            f["fault"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        ));
    }
    let all_passed = checks.iter().all(Check::passed);
    let verdict = if invalid.is_some() {
        "INVALID"
    } else if all_passed {
        "PASS"
    } else {
        "FAIL"
    };
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let node = server(i);
            let (host, port) = address(node)?;
            Ok(json!({"name": name(i), "host": host, "port": port,
                   "home_branches": config.home_branches(i + 1),
                   "clock_offset_s": baseline.clock_offsets.get(i).copied().flatten()}))
        })
        .collect::<Result<_>>()?;
    let mut cfg = serde_json::to_value(config)?;
    cfg["faults"] =
        json!(p.faults.iter().filter_map(|f| f["fault"].as_str().map(str::to_string)).collect::<Vec<_>>());
    let driver_logs: Vec<String> = p
        .runs
        .iter()
        .flatten()
        .flat_map(|r| r.logs.iter().filter_map(|l| l.file_name().map(|n| n.to_string_lossy().into_owned())))
        .collect();
    let window_end = report::utc(started_wall + t_run.max(0.0).ceil() as u64).0;
    Ok(json!({
        "schema_version": 1,
        "tool": {"name": "spockbench", "version": env!("CARGO_PKG_VERSION"), "git_revision": git_revision()},
        "run_id": run_id,
        "label": label,
        "mode": config.mode.name(),
        "preset": config.preset,
        "started_at": started_at,
        "ended_at": ended_at,
        "environment": environment(&cluster.nodes[0])?,
        "config": cfg,
        "nodes": nodes,
        "load": {
            "window": {"start": started_at, "end": window_end},
            "per_node": per_node,
            "total": {"committed": total, "achieved_tps": achieved_total},
        },
        "replication": {
            "links": links,
            "catch_up_s": cluster_catch_up,
            "barrier": {"method": "sync_event", "resolution_s": 0.2, "timed_out": timed_out},
            "series_file": "lag.csv",
        },
        "throughput": {
            "achieved_tps": achieved_total,
            "sustainable_tps": mst,
            "efficiency": if achieved_total > 0.0 { mst / achieved_total } else { 0.0 },
            "per_node": per_node_mst,
            "upper_bound": timed_out,
        },
        "conflicts": {"per_node": conflicts, "total": conflicts_total},
        "faults": p.faults,
        "consistency": {"verdict": verdict, "invalid_reason": invalid, "checks": checks},
        "artifacts": {
            "summary": "summary.txt",
            "lag_csv": "lag.csv",
            "progress_csv": "progress.csv",
            "scripts": (0..3).map(scripts::file_name).collect::<Vec<_>>(),
            "driver_logs": driver_logs,
            "config": "config.json",
            "lag_svg": "lag.svg",
            "tps_svg": "tps.svg",
        },
    }))
}

/// spockbench.md §11.3: the checks find what one node changed on its own.
/// On n2, with a replication origin set up so that nothing is sent on, one
/// account is changed and one history row of n1 is deleted; C2 must name
/// that account and the history table, C4 the missing row of origin n1.
fn self_test(target: &Target, config: &Config) -> Result<()> {
    let (cluster, state) = load(target, config)?;
    let n2 = &cluster.nodes[1];
    n2.safe_psql(
        DB,
        "SELECT pg_replication_origin_create('spockbench_selftest');
         SELECT pg_replication_origin_session_setup('spockbench_selftest');
         UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 12345;
         DELETE FROM pgbench_history WHERE hid = (SELECT min(hid) FROM pgbench_history WHERE (hid - 1) % 100 = 0);",
    )?;
    let checks = checks::run_all(&cluster.nodes, DB, config, &state.ledger, None)?;
    let details =
        |id: &str| checks.iter().find(|c| c.id == id).map(|c| c.details.join("\n")).unwrap_or_default();
    let (c2, c4) = (details("C2"), details("C4"));
    if !c2.contains("pgbench_accounts aid = 12345") || !c2.contains("pgbench_history") {
        bail!("C2 did not name the account and the history row changed on n2 alone:\n{c2}");
    }
    if !c4.contains("n2: ") || !c4.contains("of origin n1") || !c4.contains("(1 missing") {
        bail!("C4 did not report the history row of n1 deleted on n2:\n{c4}");
    }
    Ok(())
}

/// A slot backlog growing faster than this share of its origin's WAL
/// rate (least squares over the second half of a run) counts as clearly
/// positive. The backlog is a sawtooth (the confirmed position moves once a
/// feedback interval), so on short runs its fitted slope wanders by about a
/// tenth of the WAL rate; a rate that is really not sustained grows it by a
/// large share of the WAL rate.
const BACKLOG_SLOPE_SHARE: f64 = 0.25;

/// Whether a run at its offered rate was sustainable (spockbench.md §9):
/// achieved at least 95 % of offered on every node, catch-up at most 10 %
/// of the duration, no clearly growing backlog, verdict PASS. The reasons
/// it was not, otherwise.
pub fn sustainable(result: &Value, duration_s: u64) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    for n in result["load"]["per_node"].as_array().into_iter().flatten() {
        if let (Some(offered), Some(achieved)) = (n["offered_tps"].as_f64(), n["achieved_tps"].as_f64())
            && achieved < 0.95 * offered
        {
            why.push(format!(
                "{} achieved {achieved:.1} of {offered:.0} tps",
                n["node"].as_str().unwrap_or("?")
            ));
        }
    }
    let catch_up = result["replication"]["catch_up_s"].as_f64().unwrap_or(f64::INFINITY);
    if catch_up > 0.1 * duration_s as f64 {
        why.push(format!("catch-up {catch_up:.1} s is more than 10 % of the run"));
    }
    let wal_rate = |node: &str| -> f64 {
        result["load"]["per_node"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node"].as_str() == Some(node))
            .and_then(|n| {
                let span = n["committed"].as_f64()? / n["achieved_tps"].as_f64().filter(|a| *a > 0.0)?;
                Some(n["wal_bytes"].as_f64()? / span)
            })
            .unwrap_or(0.0)
    };
    for l in result["replication"]["links"].as_array().into_iter().flatten() {
        let slope = l["backlog_slope_bytes_per_s"].as_f64().unwrap_or(0.0);
        if slope > 0.0 && slope > BACKLOG_SLOPE_SHARE * wal_rate(l["origin"].as_str().unwrap_or("")) {
            why.push(format!(
                "the backlog of {}->{} grows by {:.0} B/s",
                l["origin"].as_str().unwrap_or("?"),
                l["target"].as_str().unwrap_or("?"),
                slope
            ));
        }
    }
    let verdict = result["consistency"]["verdict"].as_str().unwrap_or("?");
    if verdict != "PASS" {
        why.push(format!("verdict {verdict}"));
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

fn sweep_report(results: &[(u32, Value)], duration_s: u64) -> String {
    let mut out = String::from("\nsweep\n  rate/node  achieved      MST  sustainable\n");
    let mut best_rate = None;
    let mut best_mst: f64 = 0.0;
    for (rate, r) in results {
        let ok = sustainable(r, duration_s);
        let mst = r["throughput"]["sustainable_tps"].as_f64().unwrap_or(0.0);
        best_mst = best_mst.max(mst);
        if ok.is_ok() {
            best_rate = Some(*rate);
        }
        out.push_str(&format!(
            "  {:>9} {:>9.1} {:>8.1}  {}\n",
            rate,
            r["throughput"]["achieved_tps"].as_f64().unwrap_or(0.0),
            mst,
            match &ok {
                Ok(()) => "yes".to_string(),
                Err(why) => format!("no: {}", why.join("; ")),
            }
        ));
    }
    out.push_str(&format!(
        "maximum sustainable rate: {}; highest MST seen: {best_mst:.1} tps\n",
        best_rate.map_or("none of the rates was sustained".to_string(), |r| format!("{r} tps per node"))
    ));
    out
}

/// `compare`: one row per result (spockbench.md §9), and optionally a bar
/// chart of the sustainable throughputs.
pub fn compare(files: &[PathBuf], svg: Option<&Path>) -> Result<()> {
    let mut rows = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let r: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", f.display()))?;
        report::validate(&r).with_context(|| format!("{} is not a spockbench result", f.display()))?;
        rows.push(r);
    }
    let ceiling = rows
        .iter()
        .filter(|r| r["mode"] == "single")
        .filter_map(|r| r["throughput"]["achieved_tps"].as_f64())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    println!(
        "{:<32} {:<6} {:>2} {:>8} {:>9} {:>8} {:>6} {:>9} {:>8} {:>9} {:<8} {:>8}",
        "run",
        "mode",
        "N",
        "offered",
        "achieved",
        "MST",
        "eff %",
        "catch-up",
        "p99 ms",
        "conflicts",
        "verdict",
        "% ceil"
    );
    let mut bars = Vec::new();
    for r in &rows {
        let per_node = r["load"]["per_node"].as_array().cloned().unwrap_or_default();
        let offered: Option<f64> = per_node.iter().map(|n| n["offered_tps"].as_f64()).sum();
        let p99 = per_node.iter().filter_map(|n| n["latency_ms"]["p99"].as_f64()).fold(0.0, f64::max);
        let achieved = r["throughput"]["achieved_tps"].as_f64().unwrap_or(0.0);
        let mst = r["throughput"]["sustainable_tps"].as_f64().unwrap_or(0.0);
        let run_id = r["run_id"].as_str().unwrap_or("?").to_string();
        println!(
            "{:<32} {:<6} {:>2} {:>8} {:>9.1} {:>8.1} {:>6.0} {:>9.2} {:>8.2} {:>9} {:<8} {:>8}",
            run_id,
            r["mode"].as_str().unwrap_or("?"),
            per_node.len(),
            offered.map_or("max".to_string(), |o| format!("{o:.0}")),
            achieved,
            mst,
            r["throughput"]["efficiency"].as_f64().unwrap_or(0.0) * 100.0,
            r["replication"]["catch_up_s"].as_f64().unwrap_or(0.0),
            p99,
            r["conflicts"]["total"],
            r["consistency"]["verdict"].as_str().unwrap_or("?"),
            ceiling.map_or("-".to_string(), |c| format!("{:.0}", 100.0 * achieved / c)),
        );
        bars.push((r["label"].as_str().unwrap_or(&run_id).to_string(), mst));
    }
    if let Some(svg) = svg {
        plots::bars(svg, "sustainable throughput (MST, tps)", &bars)?;
        println!("bar chart: {}", svg.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(achieved: f64, catch_up: f64, slope: f64, verdict: &str) -> Value {
        json!({
            "load": {"per_node": [{"node": "n1", "offered_tps": 100.0, "achieved_tps": achieved,
                                   "committed": achieved * 60.0, "wal_bytes": 60.0 * 100_000.0}]},
            "replication": {"catch_up_s": catch_up, "links": [{"origin": "n1", "target": "n2", "backlog_slope_bytes_per_s": slope}]},
            "throughput": {"achieved_tps": achieved, "sustainable_tps": achieved},
            "consistency": {"verdict": verdict},
        })
    }

    #[test]
    fn stock_settings_turn_logical_wal_and_commit_timestamps_off() {
        let mut f = crate::flags::Spockbench::ci_short();
        f.mode = Mode::Single;
        let plain = server_conf(&Config::from_flags(&f).unwrap());
        assert!(!plain.contains("wal_level") && !plain.contains("track_commit_timestamp"), "{plain}");
        f.stock_settings = true;
        let stock = server_conf(&Config::from_flags(&f).unwrap());
        // Written last, so they win over the node defaults before them.
        assert!(stock.ends_with("wal_level = replica\ntrack_commit_timestamp = off\n"), "{stock}");
    }

    #[test]
    fn sustainability_follows_the_four_rules() {
        assert!(sustainable(&result(99.0, 1.0, 0.0, "PASS"), 60).is_ok());
        assert!(sustainable(&result(90.0, 1.0, 0.0, "PASS"), 60).unwrap_err()[0].contains("achieved 90.0"));
        assert!(sustainable(&result(99.0, 7.0, 0.0, "PASS"), 60).unwrap_err()[0].contains("catch-up"));
        assert!(sustainable(&result(99.0, 1.0, 1e6, "PASS"), 60).unwrap_err()[0].contains("grows"));
        assert!(sustainable(&result(99.0, 1.0, 0.0, "FAIL"), 60).unwrap_err()[0].contains("FAIL"));
        let report = sweep_report(
            &[(50, result(99.0, 0.1, 0.0, "PASS")), (400, result(200.0, 30.0, 0.0, "PASS"))],
            60,
        );
        assert!(report.contains("maximum sustainable rate: 50 tps per node"), "{report}");
    }
}
