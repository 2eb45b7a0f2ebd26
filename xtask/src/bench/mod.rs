//! `cargo xtask bench`: benchmarks that print their figures. `apply`
//! measures catch-up apply throughput against PostgreSQL's built-in logical
//! replication; `sync` measures the initial copy of a large table against
//! `pg_dump | psql` (spockbench, the multi-master benchmark, comes later).

mod apply;
mod sync;

use anyhow::Result;

use crate::flags::BenchCmd;

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

impl BenchCmd {
    pub fn run(self) -> Result<()> {
        match self {
            BenchCmd::Apply(flags) => flags.run(),
            BenchCmd::Sync(flags) => flags.run(),
        }
    }
}
