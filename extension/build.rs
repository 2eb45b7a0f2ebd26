//! Links libpq from the PostgreSQL installation the extension is built
//! against, with that installation's library directory as run-time search
//! path, so apply workers use the libpq of our own build.
//!
//! `SPOCK_LIBPQ_RPATH`, when set, replaces that search path (packages use
//! `$ORIGIN`: libpq sits beside spock.so in the server's library directory).
//!
//! The `pg_config` is found, in order, from `SPOCK_PG_CONFIG` (set by
//! `cargo xtask build`), `PGRX_PG_CONFIG_PATH`, or the `pgNN` entry of
//! `$PGRX_HOME/config.toml` for the enabled `pgNN` feature.

use std::path::PathBuf;
use std::process::Command;

fn pg_config() -> Option<PathBuf> {
    for var in ["SPOCK_PG_CONFIG", "PGRX_PG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(p));
        }
    }
    println!("cargo:rerun-if-env-changed=PGRX_HOME");
    let major = ["15", "16", "17", "18"]
        .into_iter()
        .find(|m| std::env::var_os(format!("CARGO_FEATURE_PG{m}")).is_some())?;
    let home = std::env::var_os("PGRX_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgrx")))?;
    let config = std::fs::read_to_string(home.join("config.toml")).ok()?;
    let key = format!("pg{major}");
    config.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| PathBuf::from(v.trim().trim_matches('"')))
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let enabled =
        ["15", "16", "17", "18"].iter().any(|m| std::env::var_os(format!("CARGO_FEATURE_PG{m}")).is_some());
    if !enabled {
        // No server chosen (e.g. `cargo metadata`, docs): nothing to link.
        return;
    }
    let Some(pg_config) = pg_config() else {
        panic!(
            "cannot find pg_config to link libpq: build the extension with `cargo xtask build --pg N`, \
             or set SPOCK_PG_CONFIG to the pg_config of the server to build against"
        );
    };
    let out = Command::new(&pg_config)
        .arg("--libdir")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pg_config.display()));
    assert!(out.status.success(), "{} --libdir failed", pg_config.display());
    let libdir = String::from_utf8(out.stdout).expect("pg_config prints UTF-8").trim().to_string();
    println!("cargo:rustc-link-search=native={libdir}");
    println!("cargo:rustc-link-lib=dylib=pq");
    println!("cargo:rerun-if-env-changed=SPOCK_LIBPQ_RPATH");
    let rpath = std::env::var("SPOCK_LIBPQ_RPATH").ok().filter(|v| !v.is_empty()).unwrap_or(libdir);
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{rpath}");
    // Both symbol hash tables, as the servers of the .rpm layout are linked
    // (rpmlint requires the SysV one; the GNU one is what the loader uses).
    println!("cargo:rustc-cdylib-link-arg=-Wl,--hash-style=both");
}
