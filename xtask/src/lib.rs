//! The toolkit behind `cargo xtask`: turns a checkout into a patched
//! PostgreSQL with the `spock` extension, runs it as a multi-node cluster and
//! tests it.
//!
//! Each task lives in its own module as a method on its flags struct
//! (see `flags.rs`); shared machinery (paths, commands, progress output,
//! the server account, nodes and clusters) lives in the other modules. The
//! library is also what the integration tests in `xtask/tests/` drive.
//! `docs/ARCHITECTURE.md` has the code map.

pub mod abi;
pub mod account;
pub mod bench;
pub mod build;
pub mod cluster;
pub mod cmd;
pub mod debsrc;
pub mod doctor;
pub mod extension;
pub mod fetch;
pub mod flags;
pub mod fsutil;
pub mod layout;
pub mod node;
pub mod package;
pub mod patch_tests;
pub mod patches;
pub mod pgbuild;
pub mod regress;
pub mod releases;
pub mod smoke;
pub mod tarball;
pub mod test;
#[cfg(test)]
mod test_support;
pub mod tools;
pub mod ui;
pub mod utc;
pub mod versions;
