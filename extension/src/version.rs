//! Version functions of the extension (`spock.spock_version()`, `spock.spock_version_num()`).

use pgrx::prelude::*;

/// The extension version, `major.minor.patch`, taken from the crate version so
/// that it always equals the `default_version` of the generated control file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `major * 10000 + minor * 100 + patch`, computed at compile time.
pub const VERSION_NUM: i32 = spock_core::version::version_num(VERSION);

/// The extension version string, `major.minor.patch`.
#[pg_extern(stable, parallel_safe)]
fn spock_version() -> &'static str {
    VERSION
}

/// The extension version as an integer: `major * 10000 + minor * 100 + patch`.
#[pg_extern(stable, parallel_safe)]
fn spock_version_num() -> i32 {
    VERSION_NUM
}
