//! `spockbench`: the benchmark of `cargo xtask bench init|run|check|sweep|compare`
//! as a program of its own, for a local cluster or, with `--node
//! name=DSN`, the servers of a cluster elsewhere (spockbench.md §2).

use std::process::ExitCode;

use clap::Parser;
use xtask::flags::SpockbenchProgram;
use xtask::ui;

fn main() -> ExitCode {
    match SpockbenchProgram::parse().cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            ui::error(&err);
            ExitCode::FAILURE
        }
    }
}
