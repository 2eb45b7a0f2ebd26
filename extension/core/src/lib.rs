//! Server-independent logic of the `spock` extension.
//!
//! Everything here is plain Rust with no PostgreSQL headers behind it, so
//! `cargo test` at the top of the workspace exercises it without a server.
//! The pgrx glue in `extension/src` calls into this crate.

pub mod conflict;
pub mod core_patches;
pub mod ddl;
pub mod delta;
pub mod dsn;
pub mod exception;
pub mod filters;
pub mod naming;
pub mod options;
pub mod progress;
pub mod protocol;
pub mod stats;
pub mod stream;
pub mod sync;
pub mod version;
