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
    /// Built for a package: configured with that layout's system paths and
    /// installed below `sysroot()` (`make install DESTDIR=...`).
    pub package: Option<PkgLayout>,
    pub root: PathBuf,
}

/// The file system layouts of the packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PkgLayout {
    /// Debian's PostgreSQL layout (`/usr/lib/postgresql/N`, `/usr/share/postgresql/N`).
    Deb,
    /// The PGDG layout of RPM-based systems (`/usr/pgsql-N`).
    Rpm,
}

impl PkgLayout {
    pub const ALL: [PkgLayout; 2] = [PkgLayout::Deb, PkgLayout::Rpm];

    pub fn name(self) -> &'static str {
        match self {
            PkgLayout::Deb => "deb",
            PkgLayout::Rpm => "rpm",
        }
    }

    /// Where the layout puts things on the target system.
    pub fn paths(self, major: u32) -> LayoutPaths {
        match self {
            PkgLayout::Deb => {
                let prefix = format!("/usr/lib/postgresql/{major}");
                LayoutPaths {
                    libdir: format!("{prefix}/lib"),
                    sharedir: format!("/usr/share/postgresql/{major}"),
                    includedir: format!("/usr/include/postgresql/{major}"),
                    sysconfdir: "/etc/postgresql-common".into(),
                    prefix,
                }
            }
            PkgLayout::Rpm => {
                let prefix = format!("/usr/pgsql-{major}");
                LayoutPaths {
                    libdir: format!("{prefix}/lib"),
                    sharedir: format!("{prefix}/share"),
                    includedir: format!("{prefix}/include"),
                    sysconfdir: "/etc/sysconfig/pgsql".into(),
                    prefix,
                }
            }
        }
    }

    /// configure's directory options for this layout.
    pub fn configure_dirs(self, major: u32) -> Vec<String> {
        let p = self.paths(major);
        vec![
            format!("--prefix={}", p.prefix),
            format!("--libdir={}", p.libdir),
            format!("--datadir={}", p.sharedir),
            format!("--includedir={}", p.includedir),
            format!("--sysconfdir={}", p.sysconfdir),
        ]
    }
}

/// The directories of a package layout for one major. Programs are in
/// `prefix/bin`; the server's modules share `libdir` with libpq; headers go
/// below a per-major `includedir` in both layouts, so that they never collide
/// with the distribution's libpq headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutPaths {
    pub prefix: String,
    pub libdir: String,
    pub sharedir: String,
    pub includedir: String,
    pub sysconfdir: String,
}

impl LayoutPaths {
    pub fn bindir(&self) -> String {
        format!("{}/bin", self.prefix)
    }
}

impl PgDirs {
    pub fn new(major: u32, profile: Profile) -> PgDirs {
        let name = match profile {
            Profile::Dev => major.to_string(),
            Profile::Release => format!("{major}-release"),
        };
        PgDirs { major, profile, stock: false, package: None, root: target_dir().join("pg").join(name) }
    }

    /// The release build of a major for a package layout:
    /// `target/pg/<major>-<deb|rpm>`.
    pub fn package(major: u32, layout: PkgLayout) -> PgDirs {
        PgDirs::package_at(major, layout, target_dir().join("pg").join(format!("{major}-{}", layout.name())))
    }

    /// A package layout's tree rooted anywhere: also how the package tests
    /// look at packages installed or unpacked below `root/sysroot`.
    pub fn package_at(major: u32, layout: PkgLayout, root: PathBuf) -> PgDirs {
        PgDirs { major, profile: Profile::Release, stock: false, package: Some(layout), root }
    }

    /// The unpatched (stock) build of a major, dev profile.
    pub fn stock(major: u32) -> PgDirs {
        PgDirs {
            major,
            profile: Profile::Dev,
            stock: true,
            package: None,
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
    /// The installed server (`--prefix`; for a package layout, the prefix
    /// below the sysroot).
    pub fn install(&self) -> PathBuf {
        match self.package {
            None => self.root.join("install"),
            Some(layout) => self.sysroot().join(layout.paths(self.major).prefix.trim_start_matches('/')),
        }
    }
    /// Where a package layout's files are installed (`DESTDIR`): the root of
    /// the packages' file trees.
    pub fn sysroot(&self) -> PathBuf {
        self.root.join("sysroot")
    }
    /// The record of a finished install: inside the install for the build
    /// trees, beside the sysroot for package trees (so it is not packaged).
    pub fn install_stamp(&self, name: &str) -> PathBuf {
        match self.package {
            None => self.install().join(name),
            Some(_) => self.root.join(name),
        }
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
