//! `spockbench`: the benchmark of `cargo xtask bench init|run|check|sweep|compare`
//! as a program of its own, for a local cluster or, with `--node
//! name=DSN`, the servers of a cluster elsewhere (spockbench.md §2).

use std::process::ExitCode;

use clap::Parser;
use xtask::flags::SpockbenchProgram;
use xtask::ui;

/// spockbench.md §8: a usage error exits with 3 (clap's own code, 2, is
/// spockbench's INVALID).
const EXIT_USAGE: u8 = 3;

fn main() -> ExitCode {
    let program = match SpockbenchProgram::try_parse() {
        Ok(program) => program,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match program.cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            ui::error(&err);
            ExitCode::FAILURE
        }
    }
}
