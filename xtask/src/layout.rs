//! Where things live on disk: the checkout, build products under `target/`,
//! and the download and tools cache shared by checkouts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::flags::Profile;

/// The root of the checkout (the workspace directory).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `target/` of the checkout.
pub fn target_dir() -> PathBuf {
    project_root().join("target")
}

/// The cache shared by all checkouts of this user:
/// `$XDG_CACHE_HOME/spock-build` or `~/.cache/spock-build`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::home_dir()
            .context("cannot find the home directory for the download cache; set XDG_CACHE_HOME")?
            .join(".cache"),
    };
    Ok(base.join("spock-build"))
}

/// Verified source tarballs.
pub fn downloads_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("downloads"))
}

/// Tools the toolkit installs itself (cargo-pgrx).
pub fn tools_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("tools"))
}

/// The private apt state used to reach Debian's source archive.
pub fn apt_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("apt"))
}

/// The directories of one major's build: `target/pg/<major>` for the dev
/// profile, `target/pg/<major>-release` for the release profile, and
/// `target/pg/<major>-stock` for the unpatched build the negative controls
/// run on.
#[derive(Clone, Debug)]
pub struct PgDirs {
    pub major: u32,
    pub profile: Profile,
    /// Built without the core patch series.
    pub stock: bool,
    pub root: PathBuf,
}

impl PgDirs {
    pub fn new(major: u32, profile: Profile) -> PgDirs {
        let name = match profile {
            Profile::Dev => major.to_string(),
            Profile::Release => format!("{major}-release"),
        };
        PgDirs { major, profile, stock: false, root: target_dir().join("pg").join(name) }
    }

    /// The unpatched (stock) build of a major, dev profile.
    pub fn stock(major: u32) -> PgDirs {
        PgDirs {
            major,
            profile: Profile::Dev,
            stock: true,
            root: target_dir().join("pg").join(format!("{major}-stock")),
        }
    }

    /// The patched source tree.
    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }
    /// The out-of-tree (VPATH) build directory.
    pub fn build(&self) -> PathBuf {
        self.root.join("build")
    }
    /// The installed server (`--prefix`).
    pub fn install(&self) -> PathBuf {
        self.root.join("install")
    }
    pub fn bin(&self) -> PathBuf {
        self.install().join("bin")
    }
    pub fn pg_config(&self) -> PathBuf {
        self.bin().join("pg_config")
    }
    /// Logs of configure, make, cargo-pgrx and test servers.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Cargo's target directory for the extension built against this server.
    pub fn extension_target(&self) -> PathBuf {
        self.root.join("extension-target")
    }
    /// pgrx's own state (`PGRX_HOME`) for builds against this server: inside
    /// the checkout, so the toolkit never edits a user's `~/.pgrx`, and one per
    /// server, so that pgrx never looks at another major's half-built tree.
    pub fn pgrx_home(&self) -> PathBuf {
        self.root.join("pgrx-home")
    }
    /// Scratch space for test servers (owned by the server account when root).
    pub fn scratch(&self) -> PathBuf {
        self.root.join("tmp")
    }
}
