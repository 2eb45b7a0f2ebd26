//! `cargo xtask`: the toolkit that turns a checkout into a patched PostgreSQL
//! with the `spock` extension, and tests it.
//!
//! Each task lives in its own module as a method on its flags struct
//! (see `flags.rs`); shared machinery (paths, commands, progress output,
//! the server account) lives in the other modules. `docs/ARCHITECTURE.md`
//! has the code map.

mod account;
mod build;
mod cmd;
mod debsrc;
mod doctor;
mod extension;
mod fetch;
mod flags;
mod fsutil;
mod layout;
mod node;
mod patches;
mod pgbuild;
mod tarball;
mod test;
#[cfg(test)]
mod test_support;
mod tools;
mod ui;
mod versions;

use std::process::ExitCode;

use clap::Parser;

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
