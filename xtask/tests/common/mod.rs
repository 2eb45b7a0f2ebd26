//! Helpers shared by the integration tests: the server built for the major
//! under test, and fresh clusters in that build's scratch space.

#![allow(dead_code)]

use std::path::PathBuf;

use xtask::account::RunAs;
use xtask::cluster::Cluster;
use xtask::flags::Profile;
use xtask::layout::PgDirs;
use xtask::pgbuild::Installed;

/// The server `cargo xtask` built for `SPOCK_TEST_PG_MAJOR`.
pub fn installed() -> Installed {
    let major: u32 = std::env::var("SPOCK_TEST_PG_MAJOR")
        .expect(
            "SPOCK_TEST_PG_MAJOR names the major to test (set by cargo xtask test-cluster / test-patches)",
        )
        .parse()
        .expect("SPOCK_TEST_PG_MAJOR is a number");
    let dirs = PgDirs::new(major, Profile::Dev);
    Installed::load(&dirs).unwrap_or_else(|| panic!("no server installed in {}", dirs.install().display()))
}

/// A fresh, started cluster in the build's scratch space. Call `destroy` at
/// the end of a passing test; a failing test leaves it for inspection.
pub fn cluster(tag: &str, nodes: usize, conf: &str) -> Cluster {
    let installed = installed();
    let dir: PathBuf = installed.dirs.scratch().join(format!("it-{tag}"));
    if let Some(old) = Cluster::load(&dir).unwrap() {
        old.destroy().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::create(&dir, &installed, nodes, &RunAs::detect().unwrap(), conf).unwrap();
    cluster.start().unwrap();
    cluster
}
