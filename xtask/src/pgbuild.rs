//! Building and installing PostgreSQL from the patched tree: configure in an
//! out-of-tree build directory, `make world-bin`, `make install-world-bin`,
//! with stamps so that an unchanged tree is not rebuilt.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd::{self, tool};
use crate::flags::Profile;
use crate::fsutil;
use crate::layout::{PgDirs, PkgLayout};
use crate::patches::SeriesRecord;
use crate::ui;

/// Written in `build/` after a successful configure.
const CONFIGURE_STAMP: &str = ".spock-configure.json";
/// Written in `install/` after a successful install.
pub const INSTALL_STAMP: &str = ".spock-install.json";
/// Name of the manifest of applied patches in the server's share directory.
pub const CORE_PATCHES_FILE: &str = "spock-core-patches.json";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ConfigureStamp {
    series: SeriesRecord,
    args: Vec<String>,
}

/// What `$(pg_config --sharedir)/spock-core-patches.json` says about a build.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CorePatches {
    pub postgresql_version: String,
    pub tarball_sha256: String,
    pub extra_version: String,
    pub series_hash: String,
    pub patches: Vec<crate::patches::RecordedPatch>,
    pub skipped_optional: Vec<crate::patches::RecordedPatch>,
    /// Whether the server knows the `output_plugin_libraries` setting.
    pub output_plugin_libraries: bool,
    pub profile: String,
}

/// An installed server built by the toolkit.
#[derive(Clone, Debug)]
pub struct Installed {
    pub dirs: PgDirs,
    pub core: CorePatches,
}

impl Installed {
    pub fn bin(&self, program: &str) -> PathBuf {
        self.dirs.bin().join(program)
    }

    /// `expr`, a command that runs one of this tree's programs (or a
    /// server, which loads libpq with spock.so), told where the tree's
    /// libraries are when its files carry no run path: the files of the
    /// .rpm packages, unpacked (on a system, their `/etc/ld.so.conf.d`
    /// entry does that).
    pub fn lib_env(&self, expr: duct::Expression) -> duct::Expression {
        match self.dirs.package {
            Some(layout @ PkgLayout::Rpm) => {
                let libdir =
                    self.dirs.sysroot().join(layout.paths(self.dirs.major).libdir.trim_start_matches('/'));
                let inherited = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
                // An empty entry would mean the current directory.
                let paths = std::iter::once(libdir)
                    .chain(std::env::split_paths(&inherited).filter(|p| !p.as_os_str().is_empty()));
                match std::env::join_paths(paths) {
                    Ok(value) => expr.env("LD_LIBRARY_PATH", value),
                    Err(_) => expr,
                }
            }
            _ => expr,
        }
    }

    /// Reads the installed server's record, if a completed install exists.
    pub fn load(dirs: &PgDirs) -> Option<Installed> {
        let stamp: CorePatches = fsutil::read_json(&dirs.install_stamp(INSTALL_STAMP))?;
        Some(Installed { dirs: dirs.clone(), core: stamp })
    }
}

/// The configure arguments for a profile and series.
pub fn configure_args(dirs: &PgDirs, record: &SeriesRecord) -> Vec<String> {
    let mut args = match dirs.package {
        None => vec![format!("--prefix={}", dirs.install().display())],
        Some(layout) => layout.configure_dirs(dirs.major),
    };
    // A stock build must report the plain version, as a stock server does.
    if !dirs.stock {
        args.push(format!("--with-extra-version={}", record.extra_version()));
    }
    args.extend(["--with-openssl".into(), "--with-icu".into()]);
    // Every tree is compiled with debug information (`-O2 -g` for the
    // package trees, as Debian's, Fedora's and PGDG's builds are): the build
    // trees keep it for backtraces and perf, the .rpm's static libraries in
    // the package (rpmlint asks for it). Packages strip it from programs and
    // shared objects (`package/staging.rs`). The same flags let the two
    // package trees share their compiled objects through the compiler cache.
    args.push("--enable-debug".into());
    if dirs.profile == Profile::Dev {
        args.push("--enable-cassert".into());
    }
    // RPM-based distributions (and rpmlint) want the SysV symbol hash table
    // beside the GNU one, and every shared object to name the libraries it
    // needs, libc included (the toolchain here links with --as-needed, which
    // leaves libc out of modules that call none of it).
    if dirs.package == Some(PkgLayout::Rpm) {
        args.push("LDFLAGS=-Wl,--hash-style=both".into());
        args.push("LDFLAGS_SL=-Wl,--no-as-needed".into());
    }
    args
}

/// Configures, builds and installs the server unless an install of exactly
/// this tree and these flags exists. `fresh_tree` says the source tree was just
/// replaced, which invalidates any earlier build.
pub fn ensure_built(
    dirs: &PgDirs,
    record: &SeriesRecord,
    fresh_tree: bool,
    jobs: usize,
) -> Result<Installed> {
    let fresh_tree = fresh_tree | !build_tree_is_ours(dirs)?;
    let args = configure_args(dirs, record);
    let stamp = ConfigureStamp { series: record.clone(), args: args.clone() };
    let profile = match dirs.profile {
        Profile::Dev => "dev",
        Profile::Release => "release",
    };
    let configured: Option<ConfigureStamp> = fsutil::read_json(&dirs.build().join(CONFIGURE_STAMP));
    if !fresh_tree
        && configured.as_ref() == Some(&stamp)
        && let Some(installed) = Installed::load(dirs)
        && installed.core.series_hash == record.series_hash
        && installed.core.profile == profile
    {
        ui::note(format!(
            "PostgreSQL {} ({profile}) is built and installed in {}; nothing to do",
            record.postgresql_version,
            dirs.install().display()
        ));
        return Ok(installed);
    }

    let logs = dirs.logs();
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    if fresh_tree || configured.as_ref() != Some(&stamp) {
        // A new tree or new flags: start the build directory and install over.
        fsutil::remove_dir_all_if_exists(&dirs.build())?;
        fsutil::remove_dir_all_if_exists(&dirs.install())?;
        fsutil::remove_dir_all_if_exists(&dirs.sysroot())?;
        // A package tree keeps its install stamp beside the sysroot, so it
        // does not go with the directories: drop it, or a build that fails
        // after this point would leave an empty tree that looks installed.
        std::fs::remove_file(dirs.install_stamp(INSTALL_STAMP)).ok();
        std::fs::create_dir_all(dirs.build())?;
        let step = ui::Step::start(format!(
            "Configuring PostgreSQL {}{}",
            record.postgresql_version,
            if dirs.stock {
                " (stock, without the core patches)".to_string()
            } else {
                record.extra_version()
            }
        ));
        let configure = dirs.src().join("configure");
        cmd::run_logged(tool(&configure, &args).dir(dirs.build()), "configure", &logs.join("configure.log"))
            .context("configure failed; `cargo xtask doctor` checks the prerequisites")?;
        fsutil::write_json(&dirs.build().join(CONFIGURE_STAMP), &stamp)?;
        step.done("");
    }

    // The stock build serves the negative control only (a server and the
    // extension), so it leaves contrib and the other extras out.
    let (build_target, install_target) =
        if dirs.stock { ("all", "install") } else { ("world-bin", "install-world-bin") };
    let mut make_args = vec![format!("-j{jobs}"), build_target.to_string()];
    if dirs.package.is_some() {
        // Packaged programs and libraries find libpq relative to their own
        // location, so the packages are relocatable (and testable in a
        // scratch root). make turns `$$` into `$`; the rule quotes it for
        // the shell.
        make_args.push("rpathdir=$$ORIGIN/../lib".into());
    }
    let cache = compiler_cache(dirs)?;
    if let Some(cache) = &cache {
        make_args.push(cache.make_arg.clone());
    }
    let step = ui::Step::start(format!(
        "Building PostgreSQL {} (make {}{})",
        record.postgresql_version,
        make_args[..2].join(" "),
        if cache.is_some() { ", through ccache" } else { "" }
    ));
    let mut make = tool("make", &make_args).dir(dirs.build());
    if let Some(cache) = &cache {
        for (key, value) in &cache.env {
            make = make.env(key, value);
        }
    }
    cmd::run_logged(make, &format!("make {build_target}"), &logs.join("make.log"))?;
    step.done("");

    let step = ui::Step::start(format!("Installing into {}", dirs.install().display()));
    // A partial install must not be mistaken for a finished one.
    std::fs::remove_file(dirs.install_stamp(INSTALL_STAMP)).ok();
    let mut install_args = vec![install_target.to_string()];
    if dirs.package.is_some() {
        // A package's file tree starts empty: nothing stale gets packaged.
        fsutil::remove_dir_all_if_exists(&dirs.sysroot())?;
        install_args.push(format!("DESTDIR={}", dirs.sysroot().display()));
    }
    cmd::run_logged(
        tool("make", &install_args).dir(dirs.build()),
        &format!("make {install_target}"),
        &logs.join("install.log"),
    )?;
    let core = CorePatches {
        postgresql_version: record.postgresql_version.clone(),
        tarball_sha256: record.tarball_sha256.clone(),
        extra_version: if dirs.stock { String::new() } else { record.extra_version() },
        series_hash: record.series_hash.clone(),
        patches: record.patches.clone(),
        skipped_optional: record.skipped_optional.clone(),
        output_plugin_libraries: knows_setting(&dirs.bin().join("postgres"), "output_plugin_libraries")?,
        profile: profile.into(),
    };
    let sharedir = cmd::read(tool(dirs.pg_config(), ["--sharedir"]), "pg_config --sharedir")?;
    fsutil::write_json(&Path::new(sharedir.trim()).join(CORE_PATCHES_FILE), &core)?;
    fsutil::write_json(&dirs.install_stamp(INSTALL_STAMP), &core)?;
    step.done(if core.output_plugin_libraries {
        "server has output_plugin_libraries"
    } else {
        "server has no output_plugin_libraries setting"
    });
    Ok(Installed { dirs: dirs.clone(), core })
}

/// How a build goes through ccache: the `CC=` override for make (the
/// configured compiler, prefixed) and ccache's environment.
struct CompilerCache {
    make_arg: String,
    env: Vec<(&'static str, String)>,
}

/// ccache for the server's C files, when it is installed (`cargo xtask
/// doctor` installs it). The cache lives in the user cache, so trees that
/// compile the same sources with the same flags share their objects: the
/// .rpm tree reuses the .deb tree's, the stock tree most of the patched
/// one's, and a later checkout all of them. Paths below `target/pg` are
/// made relative (`CCACHE_BASEDIR`) so that trees in different directories
/// hash alike; an object whose preprocessed source differs (a patched file,
/// the configured paths, the version string) is compiled again. configure
/// never sees ccache: the installed `pg_config --cc` and `Makefile.global`
/// name the plain compiler, as a package needs.
fn compiler_cache(dirs: &PgDirs) -> Result<Option<CompilerCache>> {
    if std::env::var_os("SPOCK_NO_CCACHE").is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let Some(ccache) = cmd::on_path("ccache") else {
        ui::note(
            "ccache is not installed: PostgreSQL is compiled from scratch (`cargo xtask doctor` installs it)",
        );
        return Ok(None);
    };
    let global = dirs.build().join("src/Makefile.global");
    let text = std::fs::read_to_string(&global)
        .with_context(|| format!("cannot read {} (written by configure)", global.display()))?;
    let Some(cc) = text.lines().find_map(|l| l.strip_prefix("CC = ")).map(str::trim) else {
        bail!(
            "{} has no `CC = ...` line; configure did not finish, remove {} and build again",
            global.display(),
            dirs.build().display()
        );
    };
    let base = dirs.root.parent().unwrap_or(&dirs.root);
    let cache_dir = crate::layout::cache_dir()?.join("ccache");
    Ok(Some(CompilerCache {
        make_arg: format!("CC={} {cc}", ccache.display()),
        env: vec![
            ("CCACHE_DIR", cache_dir.display().to_string()),
            ("CCACHE_BASEDIR", base.display().to_string()),
            // Debug builds embed the compile directory; hashing it would keep
            // two checkouts from sharing anything.
            ("CCACHE_NOHASHDIR", "true".into()),
            ("CCACHE_MAXSIZE", "6G".into()),
        ],
    }))
}

/// Whether everything in the build directory belongs to us. As root, a
/// build tree with an entry of another owner is not built in again (an
/// earlier toolkit gave the whole tree to the server account for `make
/// check`, and that account could have planted files there for root to
/// build or run): it is said so, and the build starts over.
fn build_tree_is_ours(dirs: &PgDirs) -> Result<bool> {
    let me = nix::unistd::geteuid();
    if !me.is_root() {
        return Ok(true);
    }
    match fsutil::first_not_owned_by(&dirs.build(), me.as_raw())? {
        None => Ok(true),
        Some((path, owner)) => {
            ui::warn(format!(
                "{} belongs to uid {owner}, not root: root does not build in a tree another account can \
                 write, so {} is built again from scratch",
                path.display(),
                dirs.build().display()
            ));
            Ok(false)
        }
    }
}

/// Whether `postgres --describe-config` lists a setting. (The server answers
/// this without starting, and also when run as root.)
pub fn knows_setting(postgres: &Path, name: &str) -> Result<bool> {
    let out = cmd::read(tool(postgres, ["--describe-config"]), "postgres --describe-config")?;
    let known = out.lines().any(|l| l.split('\t').next() == Some(name));
    if !known && !out.lines().any(|l| l.starts_with("shared_buffers\t")) {
        bail!("postgres --describe-config printed no settings; the installed server looks broken");
    }
    Ok(known)
}
