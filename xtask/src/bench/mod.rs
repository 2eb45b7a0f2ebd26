//! `cargo xtask bench`: benchmarks that print their figures. `apply`
//! measures catch-up apply throughput against PostgreSQL's built-in logical
//! replication; `sync` measures the initial copy of a large table against
//! `pg_dump | psql`; `init`, `run` and `check` are spockbench, the
//! multi-master benchmark (`spockbench/`).

mod apply;
pub mod spockbench;
mod sync;

use anyhow::Result;

use crate::account::RunAs;
use crate::cluster::Cluster;
use crate::flags::{BenchCmd, Profile, SpockbenchCmd};
use crate::versions::{Manifest, PgRequest};
use crate::{build, doctor, fsutil, ui};

/// Server settings of the benchmark clusters (on top of the mesh defaults).
const BENCH_CONF: &str = "\
shared_buffers = 1GB
synchronous_commit = off
max_wal_size = 8GB
checkpoint_timeout = 30min
wal_buffers = 64MB
log_min_messages = warning
# Nothing else competes for the measured paths' CPU.
autovacuum = off
";

/// Builds the requested server if needed (default 18) and starts a fresh
/// 2-node benchmark cluster in its scratch directory `name`, replacing one
/// an earlier run left there.
fn fresh_cluster(pg: Option<PgRequest>, profile: Profile, name: &str) -> Result<Cluster> {
    doctor::ensure(true)?;
    let resolved = Manifest::builtin().resolve(pg.unwrap_or(PgRequest::Major(18)));
    let installed = build::build_one(&resolved, None, profile, false, build::jobs(None))?;
    let dir = installed.dirs.scratch().join(name);
    if let Some(old) = Cluster::load(&dir)? {
        old.destroy()?;
    }
    fsutil::remove_dir_all_if_exists(&dir)?;
    let step = ui::Step::start("Starting a 2-node cluster for the benchmark");
    let cluster = Cluster::create(&dir, &installed, 2, &RunAs::detect()?, BENCH_CONF)?;
    cluster.start()?;
    step.done(&format!("in {}", dir.display()));
    Ok(cluster)
}

impl BenchCmd {
    pub fn run(self) -> Result<()> {
        match self {
            BenchCmd::Apply(flags) => flags.run(),
            BenchCmd::Sync(flags) => flags.run(),
            BenchCmd::Spockbench(cmd) => cmd.run(),
        }
    }
}

impl SpockbenchCmd {
    pub fn run(self) -> Result<()> {
        match self {
            SpockbenchCmd::Init(flags) => spockbench::main(spockbench::Action::Init, &flags),
            SpockbenchCmd::Run(flags) => spockbench::main(spockbench::Action::Run, &flags),
            SpockbenchCmd::Check(flags) => spockbench::main(spockbench::Action::Check, &flags),
            SpockbenchCmd::Sweep(flags) => spockbench::main(spockbench::Action::Sweep, &flags),
            SpockbenchCmd::Compare(flags) => spockbench::compare(&flags.results, flags.svg.as_deref()),
        }
    }
}
