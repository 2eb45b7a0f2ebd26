//! Released versions of the extension (`extension/releases/`): the commit
//! each was built from and its frozen install script, and a server tree
//! with an earlier release's extension for the upgrade tests.
//!
//! A release's install script is kept as it was generated, so that the tests
//! can create a database "as the release did" with today's library and check
//! that `ALTER EXTENSION spock UPDATE` leads to exactly the objects of a fresh
//! `CREATE EXTENSION`. The rolling-upgrade test needs the release's library
//! too; it is built from the release's commit (`git archive`, so a full
//! clone is needed) against the same server, in a hard-linked copy of that
//! server's install tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cmd::{self, tool};
use crate::extension;
use crate::flags::Profile;
use crate::fsutil;
use crate::layout::{self, PgDirs};
use crate::pgbuild::{INSTALL_STAMP, Installed};
use crate::ui;

/// One released version.
#[derive(Clone, Debug, Deserialize)]
pub struct Release {
    pub version: String,
    /// The commit the release was built from.
    pub commit: String,
}

#[derive(Deserialize)]
struct ReleaseFile {
    release: Vec<Release>,
}

/// `extension/releases/`.
pub fn dir() -> PathBuf {
    layout::project_root().join("extension").join("releases")
}

/// The released versions, oldest first (`extension/releases/releases.toml`).
pub fn list() -> Result<Vec<Release>> {
    let path = dir().join("releases.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is malformed", path.display()))
}

fn parse(text: &str) -> Result<Vec<Release>> {
    let file: ReleaseFile = toml::from_str(text)?;
    for r in &file.release {
        if r.commit.len() != 40 || !r.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("release {}: commit must be a full 40-digit hash, not {:?}", r.version, r.commit);
        }
    }
    Ok(file.release)
}

/// The update scripts of the checkout (`extension/sql/spock--<from>--<to>.sql`),
/// by file name, sorted: what `cargo pgrx install` installs beside the
/// install script and the packages ship.
pub fn update_scripts() -> Result<Vec<String>> {
    let dir = layout::project_root().join("extension").join("sql");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("spock--") && name.ends_with(".sql") && name.matches("--").count() == 2 {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The frozen install script of a release.
pub fn install_script(version: &str) -> PathBuf {
    dir().join(format!("spock--{version}.sql"))
}

/// Copies every release's frozen install script into the server's extension
/// directory, so that `CREATE EXTENSION spock VERSION '<release>'` works
/// there. Returns the releases.
pub fn install_release_scripts(installed: &Installed) -> Result<Vec<Release>> {
    let target = installed.sharedir()?.join("extension");
    let releases = list()?;
    for r in &releases {
        let script = install_script(&r.version);
        let file = script.file_name().expect("a file name");
        fsutil::copy_file(&script, &target.join(file))
            .with_context(|| format!("release {} has no frozen install script", r.version))?;
    }
    Ok(releases)
}

/// The latest release before the checkout's version.
pub fn previous() -> Result<Release> {
    let current = extension::version()?;
    let releases = list()?;
    releases
        .into_iter()
        .rev()
        .find(|r| r.version != current)
        .context("extension/releases/releases.toml lists no release before this version")
}

/// A copy of `installed`'s server whose spock extension is `release`'s,
/// built from its commit, in `<installed root>/release-<version>`: a build
/// tree or, for a package tree, a package tree (whose packages are then
/// the release's). The server files are hard links to `installed`'s
/// (nothing in them is written in place); the extension's files are the
/// release's own.
pub fn server_with(installed: &Installed, release: &Release) -> Result<Installed> {
    let root = installed.dirs.root.join(format!("release-{}", release.version));
    let dirs = PgDirs { root: root.clone(), ..installed.dirs.clone() };
    let pkg = build_release(installed, release, &root)?;

    let step = ui::Step::start(format!(
        "Preparing a server tree with spock {} in {}",
        release.version,
        dirs.install().display()
    ));
    // A build tree is its install directory; a package tree is its sysroot
    // and the install record beside it.
    let (from, to) = match installed.dirs.package {
        None => (installed.dirs.install(), dirs.install()),
        Some(_) => (installed.dirs.sysroot(), dirs.sysroot()),
    };
    if to.exists() {
        std::fs::remove_dir_all(&to).with_context(|| format!("cannot remove {}", to.display()))?;
    }
    cmd::read(
        tool("cp", ["-al".into(), from.into_os_string(), to.clone().into_os_string()]),
        "cp -al (a hard-linked copy of the server tree)",
    )?;
    if installed.dirs.package.is_some() {
        fsutil::copy_file(&installed.dirs.install_stamp(INSTALL_STAMP), &dirs.install_stamp(INSTALL_STAMP))?;
    }
    // The server's source, which the packages take their copyright from.
    let src_link = dirs.src();
    if std::fs::symlink_metadata(&src_link).is_err() {
        std::os::unix::fs::symlink(installed.dirs.src(), &src_link)
            .with_context(|| format!("cannot link {}", src_link.display()))?;
    }
    let install = dirs.install();
    let copy = Installed { dirs: dirs.clone(), core: installed.core.clone() };
    // The release's library and scripts replace the current ones: the old
    // names are removed first (they are links into the current tree).
    let (lib_from, lib_to) = (in_package(&pkg, &installed.pkglibdir()?), copy.pkglibdir()?);
    let (ext_from, ext_to) =
        (in_package(&pkg, &installed.sharedir()?.join("extension")), copy.sharedir()?.join("extension"));
    for entry in std::fs::read_dir(&ext_to).with_context(|| format!("cannot list {}", ext_to.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name == "spock.control" || name.starts_with("spock--") {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for (from, to) in [(&lib_from, &lib_to), (&ext_from, &ext_to)] {
        for entry in std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
            let path = entry?.path();
            let name = path.file_name().expect("a file name");
            let dest = to.join(name);
            std::fs::remove_file(&dest).ok();
            fsutil::copy_file(&path, &dest)?;
        }
    }
    step.done(&format!("spock {} in {}", release.version, install.display()));
    Ok(copy)
}

/// Where a file installed at `path` lies in a `cargo pgrx package` output.
fn in_package(pkg: &Path, path: &Path) -> PathBuf {
    pkg.join(path.strip_prefix("/").unwrap_or(path))
}

/// Builds `release`'s extension from its commit with `cargo pgrx package`
/// into `root/package` (once per commit and server), and returns that
/// directory.
fn build_release(installed: &Installed, release: &Release, root: &Path) -> Result<PathBuf> {
    let pkg = root.join("package");
    let stamp = root.join("package.stamp");
    let key = format!(
        "{} {} {} {}",
        release.commit, installed.core.postgresql_version, installed.core.series_hash, installed.core.profile
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) && pkg.exists() {
        return Ok(pkg);
    }
    let step = ui::Step::start(format!(
        "Building spock {} from commit {} for PostgreSQL {}",
        release.version,
        &release.commit[..12],
        installed.core.postgresql_version
    ));
    std::fs::remove_file(&stamp).ok();
    // Not `root/src`: in the copied tree that names the server's source
    // (a link to `installed`'s, which the packages' copyright comes from).
    let src = root.join("release-src");
    for dir in [&src, &pkg] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(&src).with_context(|| format!("cannot create {}", src.display()))?;
    let logs = installed.dirs.logs();
    cmd::run_logged(
        tool(
            "git",
            [
                "-C".into(),
                layout::project_root().into_os_string(),
                "archive".into(),
                release.commit.clone().into(),
            ],
        )
        .pipe(tool("tar", ["-x".into(), "-C".into(), src.clone().into_os_string()])),
        &format!(
            "extracting release {} (commit {}) with git archive; a shallow clone lacks old commits: \
             fetch the full history (git fetch --unshallow)",
            release.version, release.commit
        ),
        &logs.join(format!("release-{}-extract.log", release.version)),
    )?;
    let mut args: Vec<String> = vec!["package".into(), "--out-dir".into(), pkg.display().to_string()];
    if installed.dirs.profile == Profile::Dev {
        args.push("--debug".into());
    }
    cmd::run_logged(
        extension::cargo_pgrx(installed, &src.join("extension"), &args)?,
        &format!("cargo pgrx package (spock {})", release.version),
        &logs.join(format!("release-{}-build.log", release.version)),
    )?;
    std::fs::write(&stamp, &key).with_context(|| format!("cannot write {}", stamp.display()))?;
    step.done(&format!("built in {}", pkg.display()));
    Ok(pkg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_list_in_the_repository_parses_and_has_frozen_scripts() {
        let releases = list().unwrap();
        assert!(!releases.is_empty());
        for r in &releases {
            assert!(install_script(&r.version).exists(), "no frozen script for {}", r.version);
        }
        let current = extension::version().unwrap();
        assert!(
            releases.iter().all(|r| r.version != current) || releases.last().unwrap().version == current,
            "the checkout's version {current} is a release, so it must be the last one"
        );
        // Every release has an update script to a later version.
        let scripts = update_scripts().unwrap();
        for r in releases.iter().filter(|r| r.version != current) {
            assert!(
                scripts.iter().any(|s| s.starts_with(&format!("spock--{}--", r.version))),
                "no update script from {} in extension/sql: {scripts:?}",
                r.version
            );
        }
    }

    #[test]
    fn short_or_odd_commits_are_refused() {
        let bad = parse("[[release]]\nversion = \"0.1.0\"\ncommit = \"f37b560\"\n").unwrap_err();
        assert!(format!("{bad:#}").contains("40-digit"), "{bad:#}");
        let good = format!("[[release]]\nversion = \"0.1.0\"\ncommit = \"{}\"\n", "a".repeat(40));
        assert_eq!(parse(&good).unwrap()[0].version, "0.1.0");
    }
}
