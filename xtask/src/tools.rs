//! Tools the toolkit installs for itself: `cargo-pgrx` at the exact version
//! the extension's pgrx needs, in a tools directory shared by checkouts.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cmd::{self, tool};
use crate::{layout, ui};

/// Must equal the extension's `pgrx` version (`=0.18.1` in extension/Cargo.toml).
pub const CARGO_PGRX_VERSION: &str = "0.18.1";

fn reports_version(program: &std::path::Path) -> bool {
    cmd::read(tool(program, ["pgrx", "--version"]), "cargo-pgrx --version")
        .map(|out| out.split_whitespace().nth(1) == Some(CARGO_PGRX_VERSION))
        .unwrap_or(false)
}

/// The directory holding a `cargo-pgrx` of the right version, to be put first
/// on PATH for `cargo pgrx ...`. Installs it (about four minutes, once per
/// machine) when neither PATH nor the tools directory has it.
pub fn cargo_pgrx_dir() -> Result<PathBuf> {
    if let Some(found) = cmd::on_path("cargo-pgrx")
        && reports_version(&found)
    {
        return Ok(found.parent().expect("a file on PATH has a directory").to_path_buf());
    }
    let root = layout::tools_dir()?.join(format!("cargo-pgrx-{CARGO_PGRX_VERSION}"));
    let bin = root.join("bin");
    if reports_version(&bin.join("cargo-pgrx")) {
        return Ok(bin);
    }
    let logs = layout::tools_dir()?;
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let step = ui::Step::start(format!(
        "Installing cargo-pgrx {CARGO_PGRX_VERSION} into {} (once per machine; takes a few minutes)",
        root.display()
    ));
    let version = format!("={CARGO_PGRX_VERSION}");
    let root_arg = root.display().to_string();
    cmd::run_logged(
        tool("cargo", ["install", "--locked", "--root", &root_arg, "cargo-pgrx", "--version", &version]),
        "cargo install cargo-pgrx",
        &logs.join(format!("cargo-pgrx-{CARGO_PGRX_VERSION}-install.log")),
    )?;
    step.done("");
    Ok(bin)
}
