//! `cargo xtask bench`: benchmarks that print their figures. `apply`
//! measures catch-up apply throughput against PostgreSQL's built-in logical
//! replication (spockbench, the multi-master benchmark, comes later).

mod apply;

use anyhow::Result;

use crate::flags::BenchCmd;

impl BenchCmd {
    pub fn run(self) -> Result<()> {
        match self {
            BenchCmd::Apply(flags) => flags.run(),
        }
    }
}
