//! Building pgrx extensions of this workspace (`spock`, and the test-only
//! `spock_patch_probe`) with cargo-pgrx against a server the toolkit built,
//! and installing them into that server's tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::cmd::{self, tool};
use crate::flags::Profile;
use crate::pgbuild::Installed;
use crate::{fsutil, layout, tools, ui};

/// A pgrx crate of the workspace: its directory and the library (and
/// extension) name it installs.
#[derive(Clone, Debug)]
pub struct PgrxCrate {
    pub dir: PathBuf,
    pub name: &'static str,
    /// Other library names under which the same shared object is loaded
    /// (`spock_output`, the output plugin walsenders load by name).
    pub aliases: &'static [&'static str],
}

/// The spock extension.
pub fn spock() -> PgrxCrate {
    PgrxCrate { dir: layout::project_root().join("extension"), name: "spock", aliases: &["spock_output"] }
}

/// The test-only probe of the core patches' exported functions (never shipped).
pub fn patch_probe() -> PgrxCrate {
    PgrxCrate {
        dir: layout::project_root().join("tests").join("patch-probe"),
        name: "spock_patch_probe",
        aliases: &[],
    }
}

/// The extension crate.
pub fn crate_dir() -> PathBuf {
    spock().dir
}

/// The extension's version, from its Cargo.toml.
pub fn version() -> Result<String> {
    let path = crate_dir().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml::Table = text.parse().context("extension/Cargo.toml is malformed")?;
    doc.get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("extension/Cargo.toml has no package.version")
}

/// Hash of everything an installed extension depends on: its sources, the
/// workspace manifest and lock file, the server build it is compiled against,
/// and the cargo-pgrx version. A changed hash means rebuild.
fn fingerprint(installed: &Installed, krate: &PgrxCrate) -> Result<String> {
    let mut files = Vec::new();
    collect_files(&krate.dir, &mut files)?;
    let root = layout::project_root();
    files.push(root.join("Cargo.toml"));
    files.push(root.join("Cargo.lock"));
    files.sort();
    let mut h = Sha256::new();
    h.update(format!(
        "server {} {} {}\ncargo-pgrx {}\n",
        installed.core.postgresql_version,
        installed.core.series_hash,
        installed.core.profile,
        tools::CARGO_PGRX_VERSION
    ));
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?);
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect_files(&entry.path(), out)?;
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Writes the server's `PGRX_HOME/config.toml`, naming its `pg_config`, so
/// that plain `cargo pgrx` commands with that `PGRX_HOME` find it too.
fn write_pgrx_config(installed: &Installed) -> Result<()> {
    let home = installed.dirs.pgrx_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let path = home.join("config.toml");
    let mut configs = toml::Table::new();
    configs.insert(
        format!("pg{}", installed.dirs.major),
        toml::Value::String(installed.dirs.pg_config().display().to_string()),
    );
    let mut doc = toml::Table::new();
    doc.insert("configs".into(), toml::Value::Table(configs));
    fsutil::write_atomic(&path, toml::to_string(&doc).expect("serialisable").as_bytes())
}

/// Builds and installs the spock extension into `installed` unless the same
/// sources are already installed there.
pub fn ensure_installed(installed: &Installed) -> Result<()> {
    ensure_crate_installed(installed, &spock())
}

/// Builds and installs a pgrx crate into `installed` unless the same sources
/// are already installed there.
pub fn ensure_crate_installed(installed: &Installed, krate: &PgrxCrate) -> Result<()> {
    let dirs = &installed.dirs;
    let name = krate.name;
    let stamp = dirs.root.join(format!("{name}.stamp"));
    let fingerprint = fingerprint(installed, krate)?;
    let lib = installed.pkglibdir()?.join(format!("{name}.so"));
    let control = installed.sharedir()?.join("extension").join(format!("{name}.control"));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str())
        && lib.exists()
        && control.exists()
        && krate.aliases.iter().all(|a| lib.with_file_name(format!("{a}.so")).exists())
    {
        ui::note(format!("extension {name} is up to date in {}", dirs.install().display()));
        return Ok(());
    }
    let mut args: Vec<String> = vec!["install".into()];
    if dirs.profile == Profile::Release {
        args.push("--release".into());
    }
    let step = ui::Step::start(format!(
        "Building the {name} extension for PostgreSQL {}",
        installed.core.postgresql_version
    ));
    std::fs::remove_file(&stamp).ok();
    remove_scripts(&installed.sharedir()?.join("extension"), name)?;
    cmd::run_logged(
        cargo_pgrx(installed, &krate.dir, &args)?,
        "cargo pgrx install",
        &dirs.logs().join(format!("{name}-install.log")),
    )?;
    for alias in krate.aliases {
        link_alias(&lib, alias)?;
    }
    std::fs::write(&stamp, &fingerprint).with_context(|| format!("cannot write {}", stamp.display()))?;
    step.done(&format!("installed {}", lib.display()));
    Ok(())
}

/// `cargo pgrx <subcommand...>` for the crate in `crate_dir`, built against
/// `installed` with the pgrx state and target directory of that server (so
/// that another checkout of the crate, such as a release's, reuses the
/// compiled dependencies).
pub fn cargo_pgrx(
    installed: &Installed,
    crate_dir: &Path,
    subcommand: &[String],
) -> Result<duct::Expression> {
    let dirs = &installed.dirs;
    let pgrx_dir = tools::cargo_pgrx_dir()?;
    write_pgrx_config(installed)?;
    let path = std::env::join_paths(
        std::iter::once(pgrx_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .context("PATH contains an invalid entry")?;
    let mut args: Vec<String> = vec!["pgrx".into()];
    args.extend(subcommand.iter().cloned());
    args.extend([
        "--manifest-path".into(),
        crate_dir.join("Cargo.toml").display().to_string(),
        "--pg-config".into(),
        dirs.pg_config().display().to_string(),
        "--no-default-features".into(),
        "--features".into(),
        format!("pg{}", dirs.major),
    ]);
    // A packaged spock.so finds libpq beside itself, wherever the package
    // tree is installed; a build tree's finds its server's libdir.
    let rpath = if dirs.package.is_some() { "$ORIGIN".to_string() } else { String::new() };
    Ok(tool("cargo", &args)
        .env("SPOCK_LIBPQ_RPATH", rpath)
        .env("PATH", path)
        .env("PGRX_HOME", dirs.pgrx_home())
        // extension/build.rs links libpq from this server's libdir.
        .env("SPOCK_PG_CONFIG", dirs.pg_config())
        .env("CARGO_TARGET_DIR", dirs.extension_target())
        .env("NO_COLOR", "1")
        .env("CARGO_TERM_COLOR", "never"))
}

/// Installs the spock extension into a package tree by copying it from
/// `donor`, the other layout's package tree of the same server build, when
/// that tree holds the build of exactly these sources (the fingerprint
/// covers the sources, the server version and patch series, the profile and
/// cargo-pgrx, not the layout). A package tree's library finds libpq through
/// `$ORIGIN`, so the files are the same for every layout and are built once
/// per major. Otherwise it builds as [`ensure_installed`] does.
pub fn ensure_installed_from(installed: &Installed, donor: &Installed) -> Result<()> {
    let krate = spock();
    let name = krate.name;
    let stamp = installed.dirs.root.join(format!("{name}.stamp"));
    let fingerprint = fingerprint(installed, &krate)?;
    let donor_stamp = donor.dirs.root.join(format!("{name}.stamp"));
    let reusable = installed.dirs.package.is_some()
        && donor.dirs.package.is_some()
        && donor.dirs.profile == installed.dirs.profile
        && std::fs::read_to_string(&donor_stamp).ok().as_deref() == Some(fingerprint.as_str());
    if !reusable || std::fs::read_to_string(&stamp).ok().as_deref() == Some(fingerprint.as_str()) {
        return ensure_crate_installed(installed, &krate);
    }
    let step = ui::Step::start(format!(
        "Installing the {name} extension built for {} into {}",
        donor.dirs.install().display(),
        installed.dirs.install().display()
    ));
    std::fs::remove_file(&stamp).ok();
    let lib_name = format!("{name}.so");
    let lib = installed.pkglibdir()?.join(&lib_name);
    fsutil::copy_file(&donor.pkglibdir()?.join(&lib_name), &lib)?;
    for alias in krate.aliases {
        link_alias(&lib, alias)?;
    }
    let (from, to) = (donor.sharedir()?.join("extension"), installed.sharedir()?.join("extension"));
    remove_scripts(&to, name)?;
    for entry in std::fs::read_dir(&from).with_context(|| format!("cannot list {}", from.display()))? {
        let file = entry?.file_name();
        let file_name = file.to_string_lossy();
        if file_name == format!("{name}.control") || file_name.starts_with(&format!("{name}--")) {
            fsutil::copy_file(&from.join(&file), &to.join(&file))?;
        }
    }
    std::fs::write(&stamp, &fingerprint).with_context(|| format!("cannot write {}", stamp.display()))?;
    step.done(&format!("installed {}", lib.display()));
    Ok(())
}

/// Removes the SQL scripts of extension `name` from `ext_dir`: those of an
/// earlier build (another version) must not stay behind and end up in a
/// package.
fn remove_scripts(ext_dir: &Path, name: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(ext_dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&format!("{name}--")) && file.ends_with(".sql") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Makes `<alias>.so` a symbolic link to `lib` in the same directory. The
/// server loads a library once per file, so the link and the original share
/// one copy in a process that loads both.
fn link_alias(lib: &Path, alias: &str) -> Result<()> {
    let link = lib.with_file_name(format!("{alias}.so"));
    let target = lib.file_name().expect("a library file name");
    let tmp = lib.with_file_name(format!(".{alias}.so.tmp"));
    std::fs::remove_file(&tmp).ok();
    std::os::unix::fs::symlink(target, &tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    std::fs::rename(&tmp, &link).with_context(|| format!("cannot create {}", link.display()))
}

impl Installed {
    fn pg_config_dir(&self, flag: &str) -> Result<PathBuf> {
        let out = cmd::read(tool(self.dirs.pg_config(), [flag]), &format!("pg_config {flag}"))?;
        Ok(PathBuf::from(out.trim()))
    }
    pub fn pkglibdir(&self) -> Result<PathBuf> {
        self.pg_config_dir("--pkglibdir")
    }
    pub fn sharedir(&self) -> Result<PathBuf> {
        self.pg_config_dir("--sharedir")
    }
}
