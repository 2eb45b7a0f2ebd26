//! What `cargo xtask test` checks of a major's packages: names, versions,
//! relations and file lists read back with dpkg's and rpm's own tools; the
//! .deb files installed with dpkg into a scratch root (and the extension
//! refused without the patched server); the .rpm files unpacked with rpm's
//! tools; a server started from each tree with `CREATE EXTENSION spock`; and
//! byte-identical packages from two runs with the same `SOURCE_DATE_EPOCH`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::spec::{Names, REVISION, names};
use crate::cmd::{self, tool};
use crate::layout::{self, PgDirs, PkgLayout};
use crate::pgbuild::{CORE_PATCHES_FILE, CorePatches, Installed};
use crate::versions::Resolved;
use crate::{build, fsutil, ui};

/// A package as its format's own tools describe it.
#[derive(Debug)]
struct Inspected {
    name: String,
    version: String,
    depends: Vec<String>,
    provides: Vec<String>,
    conflicts: Vec<String>,
    /// Absolute paths of files and symbolic links (not directories).
    files: Vec<String>,
}

/// Builds both layouts' packages of a major twice and checks them.
pub fn run_for(resolved: &Resolved, jobs: usize) -> Result<()> {
    let major = resolved.version.major;
    let base = layout::target_dir().join("package-tests").join(major.to_string());
    fsutil::remove_dir_all_if_exists(&base)?;
    let epoch = super::source_date_epoch()?;
    for layout in PkgLayout::ALL {
        let installed = build::build_package_tree(resolved, layout, jobs)?;
        let runs = [base.join("run1"), base.join("run2")];
        let mut written = Vec::new();
        for dir in &runs {
            std::fs::create_dir_all(dir)?;
            written.push(super::write_packages(&installed, layout, epoch, dir)?);
        }
        for (a, b) in written[0].iter().zip(&written[1]) {
            if std::fs::read(a)? != std::fs::read(b)? {
                bail!(
                    "two runs with SOURCE_DATE_EPOCH={epoch} wrote different bytes: {} and {}",
                    a.display(),
                    b.display()
                );
            }
        }
        ui::note(format!("ok: {} packages are byte-identical across two runs", layout.name()));
        let (server, extension) = (&written[0][0], &written[0][1]);
        let check = Expect::new(&installed, layout)?;
        let step = ui::Step::start(format!("Checking the {} packages of PostgreSQL {major}", layout.name()));
        let root = base.join(format!("installed-{}", layout.name()));
        match layout {
            PkgLayout::Deb => {
                check.server(&inspect_deb(server)?)?;
                check.extension(&inspect_deb(extension)?)?;
                refuse_extension_alone(&base.join("deb-alone"), extension, &check.names)?;
                install_debs(&root.join("sysroot"), &[server, extension])?;
            }
            PkgLayout::Rpm => {
                check.server(&inspect_rpm(server)?)?;
                check.extension(&inspect_rpm(extension)?)?;
                unpack_rpms(&root.join("sysroot"), &[server, extension])?;
            }
        }
        let dirs = PgDirs::package_at(major, layout, root);
        let sharedir = dirs.sysroot().join(layout.paths(major).sharedir.trim_start_matches('/'));
        let core: CorePatches = fsutil::read_json(&sharedir.join(CORE_PATCHES_FILE)).with_context(|| {
            format!("the installed server package has no {CORE_PATCHES_FILE} in {}", sharedir.display())
        })?;
        crate::test::smoke_test(&Installed { dirs, core })?;
        step.done("archives, installation and a server from the installed files are as expected");
    }
    Ok(())
}

/// What the packages of one layout must look like.
struct Expect {
    names: Names,
    pg_version: String,
    ext_version: String,
    server_files: Vec<String>,
    extension_files: Vec<String>,
}

impl Expect {
    fn new(installed: &Installed, layout: PkgLayout) -> Result<Expect> {
        let major = installed.dirs.major;
        let p = layout.paths(major);
        let ext_version = crate::extension::version()?;
        Ok(Expect {
            names: names(layout, major),
            pg_version: installed.core.postgresql_version.clone(),
            server_files: vec![
                format!("{}/postgres", p.bindir()),
                format!("{}/pg_config", p.bindir()),
                format!("{}/initdb", p.bindir()),
                format!("{}/psql", p.bindir()),
                format!("{}/libpq.so.5", p.libdir),
                format!("{}/pgoutput.so", p.libdir),
                format!("{}/server/postgres.h", p.includedir),
                format!("{}/libpq-fe.h", p.includedir),
                format!("{}/extension/plpgsql.control", p.sharedir),
                format!("{}/{CORE_PATCHES_FILE}", p.sharedir),
            ],
            extension_files: vec![
                format!("{}/spock.so", p.libdir),
                format!("{}/spock_output.so", p.libdir),
                format!("{}/extension/spock--{ext_version}.sql", p.sharedir),
                format!("{}/extension/spock.control", p.sharedir),
            ],
            ext_version,
        })
    }

    fn server(&self, got: &Inspected) -> Result<()> {
        let what = format!("server package {}", got.name);
        ensure!(got.name == self.names.server, "{what}: expected the name {}", self.names.server);
        ensure!(got.version == format!("{}-{REVISION}", self.pg_version), "{what}: version {}", got.version);
        ensure!(
            got.provides.iter().any(|p| p.starts_with(&self.names.patched)),
            "{what} does not provide {}: {:?}",
            self.names.patched,
            got.provides
        );
        for c in &self.names.conflicts {
            ensure!(got.conflicts.contains(c), "{what} does not conflict with {c}: {:?}", got.conflicts);
        }
        ensure!(
            got.depends.iter().any(|d| d.starts_with("libc")),
            "{what} declares no dependency on the C library: {:?}",
            got.depends
        );
        for f in &self.server_files {
            ensure!(got.files.contains(f), "{what} lacks {f}");
        }
        for f in &self.extension_files {
            ensure!(!got.files.contains(f), "{what} carries the extension's file {f}");
        }
        Ok(())
    }

    fn extension(&self, got: &Inspected) -> Result<()> {
        let what = format!("extension package {}", got.name);
        ensure!(got.name == self.names.extension, "{what}: expected the name {}", self.names.extension);
        ensure!(got.version == format!("{}-{REVISION}", self.ext_version), "{what}: version {}", got.version);
        ensure!(
            got.depends.iter().any(|d| d == &self.names.patched),
            "{what} does not depend on {}: {:?}",
            self.names.patched,
            got.depends
        );
        let mut want = self.extension_files.clone();
        want.sort();
        ensure!(got.files == want, "{what} holds {:?}, expected exactly {:?}", got.files, want);
        Ok(())
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn inspect_deb(deb: &Path) -> Result<Inspected> {
    let path = deb.display().to_string();
    let field = |name: &str| cmd::read(tool("dpkg-deb", ["-f", path.as_str(), name]), "dpkg-deb -f");
    let listing = cmd::read(tool("dpkg-deb", ["-c", path.as_str()]), "dpkg-deb -c")?;
    let mut files: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| format!("/{}", p.trim_start_matches("./")))
        .collect();
    files.sort();
    Ok(Inspected {
        name: field("Package")?.trim().to_string(),
        version: field("Version")?.trim().to_string(),
        // Only the names: `libc6 (>= 2.36)` -> `libc6`.
        depends: split_list(&field("Depends")?)
            .into_iter()
            .map(|d| d.split_whitespace().next().unwrap_or_default().to_string())
            .collect(),
        provides: split_list(&field("Provides")?),
        conflicts: split_list(&field("Conflicts")?),
        files,
    })
}

fn inspect_rpm(rpm: &Path) -> Result<Inspected> {
    let path = rpm.display().to_string();
    let query = |args: &[&str]| {
        let mut all = vec!["-qp"];
        all.extend(args);
        all.push(path.as_str());
        cmd::read(tool("rpm", &all), "rpm -qp")
    };
    let lines = |text: String| -> Vec<String> {
        text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let head = query(&["--qf", "%{NAME}\\n%{VERSION}-%{RELEASE}\\n"])?;
    let mut head = head.lines();
    let name = head.next().unwrap_or_default().to_string();
    let version = head.next().unwrap_or_default().to_string();
    // Directories are listed too; keep what the payload has as files or links.
    let mut files = lines(query(&["--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]"])?)
        .into_iter()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
        .collect::<Vec<_>>();
    files.sort();
    Ok(Inspected {
        name,
        version,
        depends: lines(query(&["--requires"])?)
            .into_iter()
            .map(|d| d.split_whitespace().next().unwrap_or_default().to_string())
            .collect(),
        provides: lines(query(&["--provides"])?),
        conflicts: lines(query(&["--conflicts"])?),
        files,
    })
}

/// A scratch dpkg root whose package database is a copy of this system's,
/// so that the packages' dependencies on system libraries are checked
/// against what is really installed here.
fn dpkg_root(root: &Path) -> Result<()> {
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir))
            .with_context(|| format!("cannot create {}", admin.display()))?;
    }
    std::fs::copy("/var/lib/dpkg/status", admin.join("status"))
        .context("cannot copy /var/lib/dpkg/status")?;
    std::fs::write(admin.join("available"), "")?;
    Ok(())
}

fn dpkg(root: &Path, args: &[&str]) -> duct::Expression {
    let mut all = vec![
        format!("--root={}", root.display()),
        // Maintainer scripts see DPKG_ROOT and leave this system's accounts alone.
        "--force-script-chrootless".to_string(),
        "--log=/dev/null".to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tool("dpkg", &all).env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

/// dpkg must refuse the extension without the patched server.
fn refuse_extension_alone(root: &Path, extension: &Path, names: &Names) -> Result<()> {
    dpkg_root(root)?;
    let out = dpkg(root, &["-i", &extension.display().to_string()])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() || !text.contains(&names.patched) {
        bail!(
            "dpkg should refuse {} without the patched server ({} missing), but said:\n{text}",
            extension.display(),
            names.patched
        );
    }
    ui::note(format!("ok: dpkg refuses {} without {}", names.extension, names.patched));
    Ok(())
}

fn install_debs(root: &Path, debs: &[&PathBuf]) -> Result<()> {
    dpkg_root(root)?;
    let mut args = vec!["-i".to_string()];
    args.extend(debs.iter().map(|d| d.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = root.with_extension("dpkg.log");
    cmd::run_logged(dpkg(root, &args), "dpkg -i (into a scratch root)", &log)?;
    ui::note(format!("ok: dpkg installed both packages into {}", root.display()));
    Ok(())
}

fn unpack_rpms(root: &Path, rpms: &[&PathBuf]) -> Result<()> {
    std::fs::create_dir_all(root)?;
    for rpm in rpms {
        let tgz =
            root.with_extension(format!("{}.tgz", rpm.file_name().unwrap_or_default().to_string_lossy()));
        let archive =
            std::fs::File::create(&tgz).with_context(|| format!("cannot create {}", tgz.display()))?;
        tool("rpm2archive", ["-"])
            .stdin_path(rpm.as_path())
            .stdout_file(archive)
            .run()
            .with_context(|| format!("rpm2archive could not unpack {}", rpm.display()))?;
        let tgz_arg = tgz.display().to_string();
        let root_arg = root.display().to_string();
        cmd::read(tool("tar", ["-xzf", tgz_arg.as_str(), "-C", root_arg.as_str()]), "tar -xzf")?;
    }
    ui::note(format!("ok: rpm2archive unpacked both packages into {}", root.display()));
    Ok(())
}
