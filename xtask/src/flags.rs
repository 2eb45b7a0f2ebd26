//! Command-line flags of `cargo xtask`, one struct per task.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::versions::PgRequest;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, test and run the patched PostgreSQL with the spock extension",
    after_help = "Supported PostgreSQL majors: 15, 16, 17, 18. `--pg` takes a major (18), an exact \
                  version (18.6) or a comma-separated list (15,18)."
)]
pub struct Xtask {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Stream the output of configure, make, cargo-pgrx and the servers to
    /// the terminal as well as to the log files.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Fetch, verify, patch, build and install PostgreSQL and the extension.
    Build(Build),
    /// Download and verify the source tarball into the cache only.
    Fetch(Fetch),
    /// Unpack a fresh tree and apply the patch series (or check / refresh it).
    Patch(Patch),
    /// The whole test suite: unit tests, then build and check every major
    /// whose source can be had on this machine.
    Test(Test),
    /// List missing prerequisites and install them (as root on Debian) or
    /// print the command that does.
    Doctor(Doctor),
    /// Remove build products under target/ (the download cache is kept
    /// unless --cache is given).
    Clean(Clean),
    /// A local cluster of nodes for people: up, down, status, psql.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Start a fresh cluster and run the multi-node regression scenarios
    /// (tests/regress) and the cluster integration tests against it.
    TestCluster(TestCluster),
    /// PostgreSQL's own regression suites and the core patch acceptance
    /// tests (tests/patches, xtask/tests/patches.rs) on the patched build.
    TestPatches(TestPatches),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Build .deb and .rpm packages of the patched server and the extension
    /// into target/packages, with a SHA256SUMS file.
    Package(Package),
}

#[derive(Args, Debug)]
pub struct Package {
    /// PostgreSQL major(s) or exact version(s): 18, 15,18.
    #[arg(long, value_delimiter = ',', required = true, value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Package formats to write.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [PackageFormat::Deb, PackageFormat::Rpm])]
    pub format: Vec<PackageFormat>,
    /// Where the packages and SHA256SUMS go (default: target/packages).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Sign SHA256SUMS with this gpg key (a key id, fingerprint or user id
    /// in your keyring), writing the detached armoured signature SHA256SUMS.asc (default:
    /// not signed).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<String>,
    /// Afterwards, run the package checks of `cargo xtask test` (both
    /// formats): read back, install into a scratch root, start a server,
    /// byte-identical on a second run.
    #[arg(long)]
    pub verify: bool,
    /// Parallel make jobs (default: the number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageFormat {
    /// Debian packages in Debian's PostgreSQL layout.
    Deb,
    /// RPM packages in the PGDG layout.
    Rpm,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Catch-up apply throughput on 2 nodes, one way: spock against
    /// PostgreSQL's built-in publication/subscription on the same build.
    Apply(BenchApply),
    /// Initial copy of one large table by a subscription, against
    /// `pg_dump --data-only | psql` between the same two servers.
    Sync(BenchSync),
    #[command(flatten)]
    Spockbench(Box<SpockbenchCmd>),
}

/// The `spockbench` program (`xtask/src/bin/spockbench.rs`): the same
/// subcommands as `cargo xtask bench`'s, for a local cluster or, with
/// `--node name=DSN`, servers elsewhere.
#[derive(Parser, Debug)]
#[command(
    name = "spockbench",
    version,
    about = "Conflicting pgbench load on a spock mesh, with faults, checks C1-C5 and a report"
)]
pub struct SpockbenchProgram {
    #[command(subcommand)]
    pub cmd: SpockbenchCmd,
}

#[derive(Subcommand, Debug)]
pub enum SpockbenchCmd {
    /// spockbench: a fresh local N-node mesh (or the servers of --node) with
    /// the pgbench schema, history keys, last-update-wins and delta columns
    /// (spockbench.md §3).
    Init(Spockbench),
    /// spockbench: warm-up, measured conflicting load with optional faults,
    /// barrier, checks C1-C5 and the report in target/bench/ (exit 0 PASS,
    /// 1 FAIL, 2 INVALID, 3 usage).
    Run(Spockbench),
    /// spockbench: the consistency checks C1-C5 only.
    Check(Spockbench),
    /// spockbench: consecutive measured runs at the per-node rates of
    /// `--rates`, without re-initialising; reports the maximum sustainable rate.
    Sweep(Spockbench),
    /// spockbench: a table comparing result.json files (and a bar chart with --svg).
    Compare(SpockbenchCompare),
}

#[derive(Args, Debug, Clone)]
pub struct SpockbenchCompare {
    /// result.json files of earlier runs.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Also draw the sustainable throughput of each run as a bar chart into this SVG file
    /// (default: no chart).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct Spockbench {
    /// PostgreSQL major or exact version (default 18).
    #[arg(long, value_parser = PgRequest::parse)]
    pub pg: Option<PgRequest>,
    /// Build profile (release: no assertions, optimised extension).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// Preset the other options start from.
    #[arg(long, value_enum, default_value_t = crate::bench::spockbench::Preset::Small)]
    pub preset: crate::bench::spockbench::Preset,
    /// What the load runs against: the spock mesh, one server without
    /// replication (the ceiling), or PostgreSQL's native logical replication (16+).
    #[arg(long, value_enum, default_value_t = crate::bench::spockbench::Mode::Spock)]
    pub mode: crate::bench::spockbench::Mode,
    /// How the nodes get the schema and data at `init`: each loads its own
    /// copy, or node 1 alone and the others through the extension's initial
    /// sync (spock mode only).
    #[arg(long, value_enum, default_value_t = crate::bench::spockbench::InitMode::Load)]
    pub init_mode: crate::bench::spockbench::InitMode,
    /// Nodes of the mesh (default: the preset's; small: 3).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// A server of a cluster elsewhere, repeatable, in node order:
    /// `--node n1='host=db1 dbname=bench user=bench'` (spock mode; no faults
    /// or latency). Without it: a local cluster of --nodes servers.
    #[arg(long = "node", value_name = "NAME=DSN")]
    pub node: Vec<String>,
    /// Branches, the pgbench scale (default: the preset's; small: 3).
    #[arg(long)]
    pub scale: Option<u32>,
    /// Seconds of measured load (default: the preset's; small: 60).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Seconds of warm-up load, 0 for none (default: the preset's; small: 10).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Transactions per second per node, 0 for unthrottled (default: the preset's; small: 100).
    #[arg(long)]
    pub rate: Option<u32>,
    /// pgbench clients per node (default: the preset's; small: 4).
    #[arg(long)]
    pub clients: Option<u32>,
    /// pgbench threads per node (default: the preset's; small: 1).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Profile weights L,A,TA (local, remote-account, remote-teller-account) or `tpcb`
    /// (default: 550,225,225).
    #[arg(long)]
    pub mix: Option<String>,
    /// Where remote branches are drawn from (default: any).
    #[arg(long, value_enum)]
    pub remote_branches: Option<crate::bench::spockbench::RemoteBranches>,
    /// Without the delta-apply column options (the negative control: C3 fails under conflicts).
    #[arg(long)]
    pub no_delta: bool,
    /// `--mode single` only: the server with `wal_level = replica` and
    /// `track_commit_timestamp = off`, to measure what logical WAL and commit
    /// timestamps cost (default: the mesh's settings, logical and on).
    #[arg(long)]
    pub stock_settings: bool,
    /// Fraction of transactions written to pgbench's per-transaction log (default: the
    /// preset's; small: 1.0).
    #[arg(long)]
    pub sampling_rate: Option<f64>,
    /// Seconds the end-of-run barrier waits at most (default: the preset's; small: 300).
    #[arg(long)]
    pub barrier_timeout: Option<u64>,
    /// Only the balance sums in C3, not every branch, teller and account.
    #[arg(long)]
    pub no_deep_check: bool,
    /// New spock.exception_log rows do not fail C5.
    #[arg(long)]
    pub allow_exceptions: bool,
    /// A fault during the measured run, repeatable: `kill9:n2@30s` (kill -9
    /// of the node's postmaster, then a restart) or `restart:n3@40s`.
    #[arg(long = "fault", value_name = "KIND:NODE@Ts")]
    pub faults: Vec<String>,
    /// One-way delay between nodes, with optional jitter: `40ms` or `40ms~5ms`
    /// for every link, `n1-n3=80ms` for one link (both ways), comma-separated:
    /// `10ms,n1-n3=80ms` (needs the network namespaces, so root; default: no delay).
    #[arg(long)]
    pub latency: Option<String>,
    /// A label for the run directory and the result (default: the mode, as spock-no-delta
    /// with --no-delta and single-stock with --stock-settings).
    #[arg(long)]
    pub label: Option<String>,
    /// `sweep`: the per-node rates to run at, in order (for example 50,100,200,400; no
    /// default: sweep needs them).
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u32>,
    /// `init`: start over when a spockbench cluster exists.
    #[arg(long)]
    pub force: bool,
    /// No per-second status line.
    #[arg(long)]
    pub quiet: bool,
}

impl Spockbench {
    /// The short run of `cargo xtask test`: the small preset, 40 s of load
    /// without warm-up.
    pub fn ci_short() -> Spockbench {
        Spockbench {
            pg: None,
            profile: Profile::Dev,
            preset: crate::bench::spockbench::Preset::Small,
            mode: crate::bench::spockbench::Mode::Spock,
            init_mode: crate::bench::spockbench::InitMode::Load,
            nodes: None,
            node: Vec::new(),
            scale: None,
            duration: Some(40),
            warmup: Some(0),
            rate: None,
            clients: None,
            threads: None,
            mix: None,
            remote_branches: None,
            no_delta: false,
            stock_settings: false,
            sampling_rate: None,
            barrier_timeout: Some(120),
            no_deep_check: false,
            allow_exceptions: false,
            faults: Vec::new(),
            latency: None,
            label: None,
            rates: Vec::new(),
            force: true,
            quiet: true,
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchSync {
    /// PostgreSQL major or exact version (default 18).
    #[arg(long, value_parser = PgRequest::parse)]
    pub pg: Option<PgRequest>,
    /// Build profile (release: no assertions, optimised extension).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// Rows of the table (about 150 bytes each).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Keep the benchmark cluster afterwards (for a closer look).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct BenchApply {
    /// PostgreSQL major or exact version (default 18).
    #[arg(long, value_parser = PgRequest::parse)]
    pub pg: Option<PgRequest>,
    /// Build profile (release: no assertions, optimised extension).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// TPC-B transactions in the backlog.
    #[arg(long, default_value_t = 100_000)]
    pub transactions: u64,
    /// pgbench clients building the backlog.
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// pgbench scale factor.
    #[arg(long, default_value_t = 10)]
    pub scale: u32,
    /// Rows of the single large transaction.
    #[arg(long, default_value_t = 1_000_000)]
    pub large_rows: u64,
    /// Seconds to wait for a catch-up before giving up.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Keep the benchmark cluster and its databases afterwards (for a closer look).
    #[arg(long)]
    pub keep: bool,
    /// A server setting for both nodes, NAME=VALUE (repeatable; none by
    /// default), e.g. `--set spock.channel_counters=off` for a comparison.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TestPatches {
    /// PostgreSQL major(s) or exact version(s) (default: 15 and 18, the
    /// majors whose source can be had on the development machine).
    #[arg(long, value_delimiter = ',', value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Skip PostgreSQL's own suites (make check, test_decoding, commit_ts).
    #[arg(long)]
    pub no_core_suites: bool,
    /// Also build the stock (unpatched) server of the same minor and check
    /// that the extension and the tests notice the missing patches.
    #[arg(long)]
    pub negative_control: bool,
    /// Write the actual output of the selected scenarios as their expected output.
    #[arg(long)]
    pub accept: bool,
    /// Acceptance scenarios to run (default: the whole schedule, then the
    /// integration tests).
    pub scenarios: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Build if needed, start the nodes, create the extension on each and
    /// wire them as a full mesh (a spock node on each, subscriptions both ways).
    Up(ClusterUp),
    /// Stop the nodes (and with --destroy remove their data).
    Down(ClusterDown),
    /// Show each node's port, data directory and state.
    Status,
    /// Open psql on a node: `cargo xtask cluster psql n2 [-- PSQL ARGS]`.
    /// Every node's connection string is set as a psql variable (`:'n1'`).
    Psql(ClusterPsql),
    /// Print shell exports (PATH, PGHOST, PGPORT, PGUSER, PGDATABASE) for a
    /// node: `eval "$(cargo xtask cluster env n1)"`, then psql, pgbench, ...
    Env(ClusterEnv),
    /// Add a node to the running cluster, with its structure and data from
    /// one node, while every node keeps taking writes.
    AddNode(ClusterAddNode),
    /// Remove a node: every subscription to and from it, its slots and
    /// origins on the others; then stop it and delete its data.
    RemoveNode(ClusterRemoveNode),
}

#[derive(Args, Debug)]
pub struct ClusterAddNode {
    /// The node the new one copies its structure and data from.
    #[arg(long, default_value = "n1")]
    pub source: String,
    /// Seconds each wait may take (copy, catch-up) before giving up.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ClusterRemoveNode {
    /// Node name: n1, n2, ...
    pub node: String,
}

#[derive(Args, Debug)]
pub struct ClusterEnv {
    /// Node name: n1, n2, ...
    pub node: String,
}

#[derive(Args, Debug)]
pub struct ClusterUp {
    /// PostgreSQL major or exact version (default 18).
    #[arg(long, value_parser = PgRequest::parse)]
    pub pg: Option<PgRequest>,
    /// Number of nodes (default 3).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Build profile of the server the nodes run.
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
    /// Start the nodes with the extension created, but leave the wiring
    /// (node_create, sub_create) to you.
    #[arg(long)]
    pub no_mesh: bool,
    /// Turn on automatic DDL replication on every node, run `pgbench -i -s
    /// SCALE` on n1 alone (the tables and rows reach every node), and give
    /// pgbench_history a key from a per-node sequence (START k, INCREMENT
    /// number of nodes) so that its rows never collide.
    #[arg(long, value_name = "SCALE", conflicts_with = "no_mesh")]
    pub pgbench: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ClusterDown {
    /// Also remove the data directories.
    #[arg(long)]
    pub destroy: bool,
}

#[derive(Args, Debug)]
pub struct ClusterPsql {
    /// Node name: n1, n2, ...
    pub node: String,
    /// Further arguments for psql (after --).
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TestCluster {
    /// PostgreSQL major(s) or exact version(s) (default 18).
    #[arg(long, value_delimiter = ',', value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Nodes to start (default: as many as the selected scenarios need).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Write the actual output of the selected scenarios as their expected
    /// output (review the diff before committing).
    #[arg(long)]
    pub accept: bool,
    /// Scenarios to run (default: the whole schedule, then the integration tests).
    pub scenarios: Vec<String>,
}

/// How PostgreSQL is configured.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// `--enable-debug --enable-cassert`, extension built without optimisation.
    #[default]
    Dev,
    /// `--enable-debug` only, extension built with `--release`.
    Release,
}

#[derive(Args, Debug)]
pub struct Build {
    /// PostgreSQL major(s) or exact version(s): 18, 17.12, 15,18.
    #[arg(long, value_delimiter = ',', required = true, value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Use this source tarball instead of the cache or a download. It is
    /// still verified when its version is pinned. Only with a single --pg.
    #[arg(long, value_name = "FILE")]
    pub source_tarball: Option<PathBuf>,
    /// Build profile.
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
    /// Also apply the patches listed in the major's OPTIONAL file.
    #[arg(long)]
    pub with_optional: bool,
    /// Parallel make jobs (default: the number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct Fetch {
    /// PostgreSQL major(s) or exact version(s).
    #[arg(long, value_delimiter = ',', required = true, value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Verify this tarball and put it into the cache. Only with a single --pg.
    #[arg(long, value_name = "FILE")]
    pub source_tarball: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct Patch {
    /// PostgreSQL major(s) or exact version(s).
    #[arg(long, value_delimiter = ',', required = true, value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Only report whether every patch applies cleanly; change nothing.
    #[arg(long, conflicts_with = "refresh")]
    pub check: bool,
    /// Apply with patch's own fuzz and rewrite each patch file so that it
    /// applies with none (for rebasing onto another minor release).
    #[arg(long)]
    pub refresh: bool,
    /// Use this source tarball instead of the cache or a download.
    #[arg(long, value_name = "FILE")]
    pub source_tarball: Option<PathBuf>,
    /// Also apply the patches listed in the major's OPTIONAL file.
    #[arg(long)]
    pub with_optional: bool,
    /// Build profile whose source tree is prepared.
    #[arg(long, value_enum, default_value_t = Profile::Dev)]
    pub profile: Profile,
}

#[derive(Args, Debug)]
pub struct Test {
    /// Majors to build and check (default: all supported majors; those whose
    /// source cannot be had here are reported and skipped).
    #[arg(long, value_delimiter = ',', value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Skip the unit tests (`cargo test`).
    #[arg(long)]
    pub no_unit: bool,
    /// Parallel make jobs (default: the number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct Doctor {
    /// Only report; never install anything.
    #[arg(long)]
    pub check_only: bool,
}

#[derive(Args, Debug)]
pub struct Clean {
    /// Only these majors (default: all build products).
    #[arg(long, value_delimiter = ',', value_parser = PgRequest::parse)]
    pub pg: Vec<PgRequest>,
    /// Also remove the download and tools cache shared by checkouts.
    #[arg(long)]
    pub cache: bool,
}

impl Xtask {
    pub fn run(self) -> anyhow::Result<()> {
        match self.cmd {
            Cmd::Build(flags) => flags.run(),
            Cmd::Fetch(flags) => flags.run(),
            Cmd::Patch(flags) => flags.run(),
            Cmd::Test(flags) => flags.run(),
            Cmd::Doctor(flags) => flags.run(),
            Cmd::Clean(flags) => flags.run(),
            Cmd::Cluster(flags) => flags.run(),
            Cmd::TestCluster(flags) => flags.run(),
            Cmd::TestPatches(flags) => flags.run(),
            Cmd::Bench(flags) => flags.run(),
            Cmd::Package(flags) => flags.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Xtask, clap::Error> {
        Xtask::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
    }

    #[test]
    fn pg_accepts_majors_versions_and_lists() {
        let Cmd::Build(b) = parse(&["build", "--pg", "15,18.6"]).unwrap().cmd else { panic!("not a build") };
        assert_eq!(b.pg.len(), 2);
        assert_eq!(b.pg[0].to_string(), "15");
        assert_eq!(b.pg[1].to_string(), "18.6");
    }

    #[test]
    fn unsupported_major_lists_the_supported_ones() {
        let err = parse(&["build", "--pg", "14"]).unwrap_err().to_string();
        assert!(err.contains("15, 16, 17, 18"), "{err}");
    }

    #[test]
    fn malformed_version_is_rejected() {
        let err = parse(&["build", "--pg", "17.x"]).unwrap_err().to_string();
        assert!(err.contains("17.x"), "{err}");
    }

    /// Every option of every subcommand that takes a value and is not
    /// required either has a default clap shows, or says in its help what
    /// happens without it ("default", "none", "all", "every", "off").
    #[test]
    fn every_help_shows_the_defaults() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>, seen: &mut usize) {
            for arg in cmd.get_arguments() {
                let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
                if !takes_value
                    || arg.is_required_set()
                    || arg.is_positional()
                    || !arg.get_default_values().is_empty()
                {
                    continue;
                }
                *seen += 1;
                let help = format!(
                    "{} {}",
                    arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
                    arg.get_long_help().map(|h| h.to_string()).unwrap_or_default()
                )
                .to_lowercase();
                if ![
                    "default",
                    "none",
                    "without",
                    "unless",
                    "all ",
                    "every",
                    "off",
                    "only with",
                    "repeatable",
                ]
                .iter()
                .any(|w| help.contains(w))
                {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or("?")));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing, seen);
            }
        }
        let mut cmd = Xtask::command();
        cmd.build();
        let (mut missing, mut seen) = (Vec::new(), 0);
        walk(&cmd, "cargo xtask", &mut missing, &mut seen);
        assert!(seen > 20, "only {seen} options looked at: the walk misses the subcommands");
        assert!(missing.is_empty(), "options whose --help does not say their default: {missing:#?}");
    }
}
