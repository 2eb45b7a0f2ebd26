//! `cargo xtask`: command-line entry point of the toolkit (see `lib.rs`).

use std::process::ExitCode;

use clap::Parser;
use xtask::{flags, ui};

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    ui::set_verbose(flags.verbose);
    match flags.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            ui::error(&err);
            ExitCode::FAILURE
        }
    }
}
