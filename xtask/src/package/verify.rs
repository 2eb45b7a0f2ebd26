//! What `cargo xtask test` checks of a major's packages: names, versions,
//! relations and file lists read back with dpkg's and rpm's own tools; the
//! .deb files installed with dpkg into a scratch root (and the extension
//! refused without the patched server); the .rpm files unpacked with rpm's
//! tools; a server started from each tree with `CREATE EXTENSION spock`;
//! where `postgresql-common` is installed, the .deb files installed on this
//! system and driven by its cluster tools; and byte-identical packages from
//! two runs with the same `SOURCE_DATE_EPOCH`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::spec::{Names, names, revision};
use crate::account::RunAs;
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
        // In the order of spec::specs: server, extension, then the .rpm's parts.
        let (server, extension, parts) = (&written[0][0], &written[0][1], &written[0][2..]);
        let check = Expect::new(&installed, layout, epoch)?;
        let step = ui::Step::start(format!("Checking the {} packages of PostgreSQL {major}", layout.name()));
        let root = base.join(format!("installed-{}", layout.name()));
        let mut extra = Vec::new();
        match layout {
            PkgLayout::Deb => {
                check.server(&inspect_deb(server)?)?;
                check.extension(&inspect_deb(extension)?)?;
                lintian(&base, &[server, extension])?;
                for deb in [server, extension] {
                    let path = deb.display().to_string();
                    let depends =
                        cmd::read(tool("dpkg-deb", ["-f", path.as_str(), "Depends"]), "dpkg-deb -f")?;
                    ensure!(
                        depends.contains("libc6 (>= "),
                        "{path}: the C library dependency carries no minimum version (dpkg-shlibdeps): {depends}"
                    );
                }
                ui::note("ok: library dependencies carry the minimum versions dpkg-shlibdeps derives");
                let names = &check.names;
                expect_refusal(&base.join("deb-alone"), extension, names, None, &names.patched)?;
                ui::note(format!("ok: dpkg refuses {} without {}", names.extension, names.patched));
                let distro = &names.conflicts[0];
                expect_replacement(&base.join("deb-beside"), server, names, distro)?;
                ui::note(format!(
                    "ok: dpkg installs {} in place of the distribution's {distro}",
                    names.server
                ));
                with_postgresql_common(&installed, &[server, extension], names, epoch, &base)?;
                install_debs(&root.join("sysroot"), &[server, extension], &check.names)?;
                extra = distribution_extension(&base, &root.join("sysroot"), major, names)?;
            }
            PkgLayout::Rpm => {
                check.server(&inspect_rpm(server)?)?;
                check.extension(&inspect_rpm(extension)?)?;
                ensure!(
                    parts.len() == 2,
                    "expected the -libs and -devel packages beside the server: {parts:?}"
                );
                check.part(&inspect_rpm(&parts[0])?, check.names.libs.as_ref(), &check.libs_files)?;
                check.part(&inspect_rpm(&parts[1])?, check.names.devel.as_ref(), &check.devel_files)?;
                let all: Vec<&PathBuf> = written[0].iter().collect();
                let rpmdb = sign_with_throwaway_key(&base, &written[0])?;
                rpmlint(&base, &all, &rpmdb)?;
                unpack_rpms(&root.join("sysroot"), &all)?;
                devel_headers_compile(&base, &root.join("sysroot"), major)?;
                rpm_service(&base, server, &root.join("sysroot"), major)?;
            }
        }
        let dirs = PgDirs::package_at(major, layout, root);
        let sharedir = dirs.sysroot().join(layout.paths(major).sharedir.trim_start_matches('/'));
        let core: CorePatches = fsutil::read_json(&sharedir.join(CORE_PATCHES_FILE)).with_context(|| {
            format!("the installed server package has no {CORE_PATCHES_FILE} in {}", sharedir.display())
        })?;
        crate::smoke::smoke_test_with(&Installed { dirs, core }, &extra)?;
        step.done("archives, installation and a server from the installed files are as expected");
    }
    Ok(())
}

/// What the packages of one layout must look like.
struct Expect {
    names: Names,
    revision: String,
    pg_version: String,
    ext_version: String,
    server_files: Vec<String>,
    extension_files: Vec<String>,
    /// .rpm only: what its `-libs` and `-devel` packages must hold.
    libs_files: Vec<String>,
    devel_files: Vec<String>,
}

impl Expect {
    fn new(installed: &Installed, layout: PkgLayout, epoch: u64) -> Result<Expect> {
        let major = installed.dirs.major;
        let p = layout.paths(major);
        let ext_version = crate::extension::version()?;
        let mut server_files = vec![
            format!("{}/postgres", p.bindir()),
            format!("{}/initdb", p.bindir()),
            format!("{}/psql", p.bindir()),
            format!("{}/pgoutput.so", p.libdir),
            format!("{}/extension/plpgsql.control", p.sharedir),
            format!("{}/{CORE_PATCHES_FILE}", p.sharedir),
        ];
        let mut libs_files = vec![format!("{}/libpq.so.5", p.libdir)];
        let mut devel_files = vec![
            format!("{}/pg_config", p.bindir()),
            format!("{}/server/postgres.h", p.includedir),
            format!("{}/libpq-fe.h", p.includedir),
        ];
        match layout {
            // One server package holds them all.
            PkgLayout::Deb => {
                server_files.append(&mut libs_files);
                server_files.append(&mut devel_files);
            }
            PkgLayout::Rpm => {
                libs_files.push(super::spec::ld_so_conf(major));
                devel_files.push(format!("{}/libpq.so", p.libdir));
            }
        }
        Ok(Expect {
            names: names(layout, major),
            revision: revision(epoch),
            pg_version: installed.core.postgresql_version.clone(),
            server_files,
            libs_files,
            devel_files,
            extension_files: [
                format!("{}/spock.so", p.libdir),
                format!("{}/spock_output.so", p.libdir),
                format!("{}/extension/spock--{ext_version}.sql", p.sharedir),
                format!("{}/extension/spock.control", p.sharedir),
            ]
            .into_iter()
            .chain(
                crate::releases::update_scripts()?
                    .into_iter()
                    .map(|script| format!("{}/extension/{script}", p.sharedir)),
            )
            .collect(),
            ext_version,
        })
    }

    fn server(&self, got: &Inspected) -> Result<()> {
        let what = format!("server package {}", got.name);
        ensure!(got.name == self.names.server, "{what}: expected the name {}", self.names.server);
        ensure!(
            got.version == format!("{}-{}", self.pg_version, self.revision),
            "{what}: version {}",
            got.version
        );
        for name in &self.names.stands_in {
            ensure!(
                got.provides.iter().any(|p| p.split_whitespace().next() == Some(name.as_str())),
                "{what} does not stand in for {name} (provides {:?})",
                got.provides
            );
        }
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
        let copyright = format!("/usr/share/doc/{}/copyright", got.name);
        ensure!(got.files.contains(&copyright), "{what} lacks {copyright}");
        for f in self.extension_files.iter().chain(&self.libs_files).chain(&self.devel_files) {
            ensure!(!got.files.contains(f), "{what} carries {f}, which belongs to another package");
        }
        if let Some(libs) = &self.names.libs {
            ensure!(
                got.depends.contains(&libs.name),
                "{what} does not depend on {}: {:?}",
                libs.name,
                got.depends
            );
        }
        Ok(())
    }

    /// A package of the .rpm split: its name and version, the PGDG package it
    /// stands in for and conflicts with, its files, and none of the others'.
    fn part(&self, got: &Inspected, part: Option<&super::spec::Part>, files: &[String]) -> Result<()> {
        let part = part.context("this layout has no such package")?;
        let what = format!("package {}", got.name);
        ensure!(got.name == part.name, "{what}: expected the name {}", part.name);
        ensure!(
            got.version == format!("{}-{}", self.pg_version, self.revision),
            "{what}: version {}",
            got.version
        );
        ensure!(
            got.provides.iter().any(|p| p.split_whitespace().next() == Some(part.pgdg.as_str())),
            "{what} does not stand in for {} (provides {:?})",
            part.pgdg,
            got.provides
        );
        ensure!(got.conflicts.contains(&part.pgdg), "{what} does not conflict with {}", part.pgdg);
        for f in files {
            ensure!(got.files.contains(f), "{what} lacks {f}");
        }
        for f in self.server_files.iter().chain(&self.extension_files) {
            ensure!(!got.files.contains(f), "{what} carries {f}, which belongs to another package");
        }
        Ok(())
    }

    fn extension(&self, got: &Inspected) -> Result<()> {
        let what = format!("extension package {}", got.name);
        ensure!(got.name == self.names.extension, "{what}: expected the name {}", self.names.extension);
        ensure!(
            got.version == format!("{}-{}", self.ext_version, self.revision),
            "{what}: version {}",
            got.version
        );
        ensure!(
            got.depends.iter().any(|d| d == &self.names.patched),
            "{what} does not depend on {}: {:?}",
            self.names.patched,
            got.depends
        );
        let mut want = self.extension_files.clone();
        want.sort();
        let doc = format!("/usr/share/doc/{}/", got.name);
        let copyright = format!("{doc}copyright");
        ensure!(got.files.contains(&copyright), "{what} lacks {copyright}");
        let files: Vec<&String> = got.files.iter().filter(|f| !f.starts_with(&doc)).collect();
        ensure!(
            files == want.iter().collect::<Vec<_>>(),
            "{what} holds {:?}, expected exactly {:?} and its documentation",
            got.files,
            want
        );
        Ok(())
    }
}

/// Runs a linter whatever its exit status (which only says it found
/// something) and keeps its whole report, standard output then standard
/// error, in `log`; returns the report.
fn report_into(linter: duct::Expression, name: &str, log: &Path) -> Result<String> {
    let out = linter
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run {name}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::write(log, &text).with_context(|| format!("cannot write {}", log.display()))?;
    Ok(text)
}

/// lintian on the .deb files must report no error (`E:`); its warnings are
/// kept in the log (packaging/README.md says which and why).
fn lintian(base: &Path, debs: &[&PathBuf]) -> Result<()> {
    let log = base.join("lintian.log");
    let mut args = vec!["--tag-display-limit".to_string(), "0".to_string()];
    args.extend(debs.iter().map(|d| d.display().to_string()));
    let text = report_into(tool("lintian", &args), "lintian", &log)?;
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
    let warnings = text.lines().filter(|l| l.starts_with("W: ")).count();
    if !errors.is_empty() {
        bail!(
            "lintian reports {} error(s) on the .deb packages, for example:\n{}\nthe whole report: {}",
            errors.len(),
            errors.iter().take(10).copied().collect::<Vec<_>>().join("\n"),
            log.display()
        );
    }
    ui::note(format!("ok: lintian reports no error ({warnings} warning(s), listed in {})", log.display()));
    Ok(())
}

/// Signs the .rpm files as `cargo xtask package --sign KEY` does, with a
/// key made for the test (after the byte comparison: signatures carry
/// their time), and returns an RPM database that trusts that key.
fn sign_with_throwaway_key(base: &Path, rpms: &[PathBuf]) -> Result<PathBuf> {
    /// Stops the gpg-agent the scratch keyring started, whatever happens.
    struct Agent(PathBuf);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = tool("gpgconf", ["--kill", "gpg-agent"])
                .env("GNUPGHOME", &self.0)
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
        }
    }
    let home = base.join("gnupg");
    fsutil::remove_dir_all_if_exists(&home)?;
    std::fs::create_dir_all(&home)?;
    let _agent = Agent(home.clone());
    let key = "spock package test <package-test@packages.invalid>";
    super::throwaway_key(&home, key)?;
    super::sign_rpms(rpms, "package-test@packages.invalid", Some(&home))?;
    let rpmdb = super::import_rpm_key(base, "package-test@packages.invalid", Some(&home))?;
    ui::note(format!(
        "ok: the .rpm packages are signed (rpmsign) and verify against the signing key ({key})"
    ));
    Ok(rpmdb)
}

/// rpmlint on the .rpm files must report no error; its warnings are kept
/// in the log (packaging/README.md says which and why). Its signature
/// check reads the keys of `rpmdb` (through a `~/.rpmmacros` of its own).
fn rpmlint(base: &Path, rpms: &[&PathBuf], rpmdb: &Path) -> Result<()> {
    let log = base.join("rpmlint.log");
    let home = base.join("rpmlint-home");
    std::fs::create_dir_all(&home)?;
    std::fs::write(home.join(".rpmmacros"), format!("%_dbpath {}\n", rpmdb.display()))?;
    let text = report_into(
        tool("rpmlint", rpms.iter().map(|r| r.display().to_string())).env("HOME", &home),
        "rpmlint",
        &log,
    )?;
    let tagged = |level: &str| {
        let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some(_), Some(l), Some(tag)) = (words.next(), words.next(), words.next())
                && l == level
            {
                *kinds.entry(tag).or_default() += 1;
            }
        }
        kinds
    };
    let summary = |kinds: &std::collections::BTreeMap<&str, usize>| {
        kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect::<Vec<_>>().join(", ")
    };
    // A crash or a package it could not read must not pass for a clean
    // report: rpmlint says how many packages it checked.
    let checked = format!("{} packages and 0 specfiles checked", rpms.len());
    ensure!(
        text.contains(&checked),
        "rpmlint did not check the {} .rpm packages (no `{checked}` in its report): {}",
        rpms.len(),
        log.display()
    );
    let errors = tagged("E:");
    if !errors.is_empty() {
        bail!(
            "rpmlint reports {} error(s) on the .rpm packages: {}\nthe whole report: {}",
            errors.values().sum::<usize>(),
            summary(&errors),
            log.display()
        );
    }
    let warnings = tagged("W:");
    ui::note(format!(
        "ok: rpmlint reports no error ({} warning(s): {}; listed in {})",
        warnings.values().sum::<usize>(),
        summary(&warnings),
        log.display()
    ));
    Ok(())
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
/// against what is really installed here. Our own packages, and those they
/// conflict with, are left out of the copy: neither is in the scratch root.
/// With `stand_in`, a package of that name is recorded as installed instead.
fn dpkg_root(root: &Path, names: &Names, stand_in: Option<&str>) -> Result<()> {
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir))
            .with_context(|| format!("cannot create {}", admin.display()))?;
    }
    let host = std::fs::read_to_string("/var/lib/dpkg/status").context("cannot read /var/lib/dpkg/status")?;
    let mut leave_out = vec![names.server.as_str(), names.extension.as_str()];
    leave_out.extend(names.conflicts.iter().map(String::as_str));
    let mut status = without_packages(&host, &leave_out);
    if let Some(name) = stand_in {
        let (arch, _) = super::arch()?;
        status.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: database\n\
             Maintainer: stand-in <nobody@packages.invalid>\nArchitecture: {arch}\nVersion: 0-0\n\
             Description: stand-in for the distribution's package\n\n"
        ));
    }
    std::fs::write(admin.join("status"), status)?;
    std::fs::write(admin.join("available"), "")?;
    Ok(())
}

/// A dpkg status file without the stanzas of the named packages.
fn without_packages(status: &str, names: &[&str]) -> String {
    let mut out = String::new();
    for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let name = stanza.lines().find_map(|l| l.strip_prefix("Package: ")).map(str::trim);
        if !name.is_some_and(|n| names.contains(&n)) {
            out.push_str(stanza.trim_matches('\n'));
            out.push_str("\n\n");
        }
    }
    out
}

fn dpkg(root: &Path, args: &[&str]) -> duct::Expression {
    let mut all = vec![
        format!("--root={}", root.display()),
        // Maintainer scripts see DPKG_ROOT and leave this system's accounts alone.
        "--force-script-chrootless".to_string(),
        "--log=/dev/null".to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    tool("dpkg", &all).env("PATH", SYSTEM_PATH)
}

/// dpkg must refuse `deb` in a scratch root set up with `stand_in`, saying
/// `because`.
fn expect_refusal(
    root: &Path,
    deb: &Path,
    names: &Names,
    stand_in: Option<&str>,
    because: &str,
) -> Result<()> {
    dpkg_root(root, names, stand_in)?;
    let out = dpkg(root, &["-i", &deb.display().to_string()])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() || !text.contains(because) {
        bail!("dpkg should refuse {} ({because}), but said:\n{text}", deb.display());
    }
    Ok(())
}

/// In a scratch root where the distribution's `distro` is installed, dpkg
/// must install our server package in its place (it conflicts with and
/// replaces it): afterwards ours is installed and `distro` is not.
fn expect_replacement(root: &Path, deb: &Path, names: &Names, distro: &str) -> Result<()> {
    dpkg_root(root, names, Some(distro))?;
    let log = root.with_extension("dpkg.log");
    cmd::run_logged(
        dpkg(root, &["-i", &deb.display().to_string()]),
        "dpkg -i (in place of the distribution's server)",
        &log,
    )?;
    let status = |name: &str| {
        cmd::read(dpkg(root, &["-s", name]).stderr_null().unchecked(), "dpkg -s").unwrap_or_default()
    };
    if !status(&names.server).contains("Status: install ok installed") {
        bail!("dpkg did not install {} in place of {distro}; see {}", names.server, log.display());
    }
    if status(distro).contains("Status: install ok installed") {
        bail!("{distro} is still installed beside {}; see {}", names.server, log.display());
    }
    Ok(())
}

fn install_debs(root: &Path, debs: &[&PathBuf], names: &Names) -> Result<()> {
    dpkg_root(root, names, None)?;
    let mut args = vec!["-i".to_string()];
    args.extend(debs.iter().map(|d| d.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = root.with_extension("dpkg.log");
    cmd::run_logged(dpkg(root, &args), "dpkg -i (into a scratch root)", &log)?;
    ui::note(format!("ok: dpkg installed both packages into {}", root.display()));
    Ok(())
}

/// Extension packages of the distribution tried, in order, for the check
/// that they install on our server package: small, and each served for
/// several majors.
const DISTRIBUTION_EXTENSIONS: [(&str, &str, &str, &str); 2] = [
    ("ip4r", "ip4r", "SELECT '192.168.1.5'::ip4 <<= '192.168.1.0/24'::ip4r", "t"),
    ("rational", "pg_rational", "SELECT '1/3'::rational + '1/6'::rational", "1/2"),
];

/// Downloads the first of `DISTRIBUTION_EXTENSIONS` that this machine's
/// package index has for `major` (`apt-get download`), installs it with
/// dpkg into the scratch root that holds our packages (dpkg checks its
/// dependencies on `postgresql-<major>` and `postgresql-<major>-jit-llvm`
/// against what our server package provides), and returns the smoke
/// test's checks that create and use it beside spock. None to try: a note
/// says so and nothing more is checked.
fn distribution_extension(
    base: &Path,
    root: &Path,
    major: u32,
    names: &Names,
) -> Result<Vec<crate::smoke::ExtraCheck>> {
    let Some((short, extname, sql, answer)) = DISTRIBUTION_EXTENSIONS.iter().find(|(short, ..)| {
        let package = format!("postgresql-{major}-{short}");
        cmd::read(tool("apt-cache", ["policy", package.as_str()]), "apt-cache policy")
            .is_ok_and(|t| t.lines().any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)")))
    }) else {
        ui::note(format!(
            "skipped: no extension package of the distribution for PostgreSQL {major} in this machine's package index \
             (tried {}), so installing one on {} was not checked",
            DISTRIBUTION_EXTENSIONS
                .iter()
                .map(|e| format!("postgresql-{major}-{}", e.0))
                .collect::<Vec<_>>()
                .join(", "),
            names.server
        ));
        return Ok(Vec::new());
    };
    let package = format!("postgresql-{major}-{short}");
    let dir = base.join("distribution");
    fsutil::remove_dir_all_if_exists(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let log = base.join("distribution-extension.log");
    cmd::run_logged(
        tool("apt-get", ["download", "-q", package.as_str()]).dir(&dir).env("PATH", SYSTEM_PATH),
        &format!("apt-get download {package}"),
        &log,
    )
    .with_context(|| format!("cannot download {package}, which this machine's package index lists"))?;
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb in {}", dir.display()))?;
    cmd::run_logged(
        dpkg(root, &["-i", &deb.display().to_string()]),
        &format!("dpkg -i {package} (into the scratch root with our packages)"),
        &log,
    )
    .with_context(|| format!("the distribution's {package} does not install on {}", names.server))?;
    ui::note(format!("ok: dpkg installed the distribution's {package} on {}", names.server));
    Ok(vec![
        (
            format!("CREATE EXTENSION {extname} beside spock"),
            format!("CREATE EXTENSION {extname}; SELECT 1"),
            "1".into(),
        ),
        (format!("{extname} works on our server"), sql.to_string(), answer.to_string()),
    ])
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
    ui::note(format!("ok: rpm2archive unpacked the {} packages into {}", rpms.len(), root.display()));
    Ok(())
}

/// The unpacked `-devel` package serves a compiler: a server module's and
/// a client's C file, which include headers PostgreSQL installs twice (and
/// the package carries once, with links), compile against the directories
/// its `pg_config` names.
fn devel_headers_compile(base: &Path, sysroot: &Path, major: u32) -> Result<()> {
    let pg_config =
        sysroot.join(PkgLayout::Rpm.paths(major).bindir().trim_start_matches('/')).join("pg_config");
    let dir = |flag: &str| -> Result<String> {
        Ok(cmd::read(tool(&pg_config, [flag]), &format!("pg_config {flag}"))?.trim().to_string())
    };
    let (server, include) = (dir("--includedir-server")?, dir("--includedir")?);
    let files = [
        (
            "devel-module.c",
            "#include \"postgres.h\"\n#include \"fmgr.h\"\n#include \"port.h\"\n#include \"utils/builtins.h\"\n\
             PG_MODULE_MAGIC;\nPG_FUNCTION_INFO_V1(f);\nDatum f(PG_FUNCTION_ARGS) { PG_RETURN_INT32(PG_VERSION_NUM); }\n",
            vec![format!("-I{server}")],
        ),
        (
            "devel-client.c",
            "#include \"postgres_fe.h\"\n#include \"libpq-fe.h\"\n#include \"libpq/pqcomm.h\"\n\
             int main(void) { return PQlibVersion() > 0 ? 0 : 1; }\n",
            // As PGXS compiles a client program.
            vec![format!("-I{include}"), format!("-I{server}"), format!("-I{include}/internal")],
        ),
    ];
    for (name, text, flags) in files {
        let file = base.join(name);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        let mut args = vec!["-fsyntax-only".to_string(), "-Wall".to_string(), "-Werror".to_string()];
        args.extend(flags);
        args.push(file.display().to_string());
        let out = tool("cc", &args)
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run cc, the C compiler")?;
        ensure!(
            out.status.success(),
            "{} does not compile against the headers of the unpacked -devel package:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    ui::note("ok: a server module and a client compile against the unpacked -devel package's headers");
    Ok(())
}

/// The cluster the `postgresql-common` check creates and drops.
const PGCOMMON_CLUSTER: &str = "spock_pkgtest";

/// What the system-install check may do, decided from the packages dpkg
/// knows on this system before the check touches anything.
#[derive(Debug, PartialEq, Eq)]
enum HostPlan {
    /// Neither of our packages nor any package ours conflicts with is on
    /// the system: install ours, and purge them again afterwards.
    Install,
    /// Leave the system alone; why, naming the package.
    Skip(String),
}

/// The plan for the system-install check. `present` lists the packages
/// among ours and those ours conflict with that dpkg has on this system
/// (installed, or removed with their configuration files left), each with
/// its dpkg status. The check never replaces or removes a package it did not
/// install itself: installing ours would replace a package of the same name,
/// and make dpkg remove one ours conflicts with.
/// `clusters` are the clusters of the major that postgresql-common has on
/// the system before the check: purging our server package drops every
/// cluster of its major, so the check runs only where there is none.
fn host_plan(names: &Names, present: &[(String, String)], clusters: &[String]) -> HostPlan {
    let ours = present.iter().find(|(name, _)| *name == names.server || *name == names.extension);
    if let Some((name, status)) = ours {
        return HostPlan::Skip(format!(
            "{name} was on this system before the test started (dpkg status `{status}`; installed by \
             someone else, or left by an interrupted run), and the test does not replace or remove \
             packages it did not install; `dpkg --purge {name}` lets the check run"
        ));
    }
    if let Some((name, status)) = present.iter().find(|(name, _)| names.conflicts.contains(name)) {
        return HostPlan::Skip(format!(
            "{name} is on this system (dpkg status `{status}`), and {} conflicts with it by design: \
             installing ours would remove it",
            names.server
        ));
    }
    if !clusters.is_empty() {
        return HostPlan::Skip(format!(
            "this system has clusters of that major already ({}), and purging {} (which the check does) \
             drops every cluster of its major",
            clusters.join(", "),
            names.server
        ));
    }
    HostPlan::Install
}

/// The clusters postgresql-common has for `major` (`/etc/postgresql/<major>/<name>`).
fn existing_clusters(major: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/etc/postgresql/{major}"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("postgresql.conf").exists())
                .map(|e| format!("{major}/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whether a `${Status}` line of dpkg-query means that dpkg has the package
/// on this system (anything but `not-installed`, which includes a removed
/// package whose configuration files are still there).
fn status_is_present(status: &str) -> bool {
    status.split_whitespace().nth(2).is_some_and(|state| state != "not-installed")
}

/// The dpkg status of a package that dpkg has on this system, or `None`.
fn dpkg_status(name: &str) -> Option<String> {
    let out = tool("dpkg-query", ["-W", "-f=${Status}\n", name])
        .env("PATH", SYSTEM_PATH)
        .stderr_null()
        .stdout_capture()
        .unchecked()
        .run()
        .ok()?;
    // A package of several architectures prints one line each.
    String::from_utf8_lossy(&out.stdout).lines().find(|l| status_is_present(l)).map(str::to_string)
}

/// The .rpm server package's service management (`service.rs`): its
/// scriptlets are the ones written, and from the unpacked tree the setup
/// helper creates a cluster that the unit's pre-start check accepts, while
/// the check refuses an empty directory and the helper a second run.
fn rpm_service(base: &Path, server: &Path, sysroot: &Path, major: u32) -> Result<()> {
    let path = server.display().to_string();
    let scripts = cmd::read(tool("rpm", ["-qp", "--scripts", path.as_str()]), "rpm -qp --scripts")?;
    for (what, script) in [
        ("postinstall", super::service::rpm_post(major)),
        ("preuninstall", super::service::rpm_preun(major)),
        ("postuninstall", super::service::rpm_postun(major)),
    ] {
        let line = script.lines().nth(1).unwrap_or_default().trim().to_string();
        ensure!(scripts.contains(&line), "{path}: no {what} scriptlet with `{line}`:\n{scripts}");
    }
    let bindir = sysroot.join(PkgLayout::Rpm.paths(major).bindir().trim_start_matches('/'));
    let unit = sysroot.join(format!("usr/lib/systemd/system/{}", super::service::unit_name(major)));
    ensure!(unit.exists(), "the server package has no unit {}", unit.display());
    let run_as = RunAs::detect()?;
    let dir = base.join("rpm-setup");
    fsutil::remove_dir_all_if_exists(&dir)?;
    run_as.make_owned_dir(&dir)?;
    run_as.make_owned_dir(&dir.join("empty"))?;
    run_as.ensure_reachable(&dir)?;
    run_as.ensure_reachable(&bindir)?;
    let pgdata = dir.join("data");
    let setup = bindir.join(format!("postgresql-{major}-setup"));
    let check = bindir.join(format!("postgresql-{major}-check-db-dir"));
    let as_account = |program: &Path, args: &[String]| {
        let mut argv = vec![format!("PGDATA={}", pgdata.display()), program.display().to_string()];
        argv.extend(args.iter().cloned());
        // The unpacked files carry no run path, and no ld.so.conf.d entry
        // of theirs is active here.
        let libdir = sysroot.join(PkgLayout::Rpm.paths(major).libdir.trim_start_matches('/'));
        run_as
            .cmd("env", argv)
            .env("LD_LIBRARY_PATH", libdir)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
    };
    let out = as_account(&setup, &["initdb".into()])?;
    ensure!(
        out.status.success()
            && std::fs::read_to_string(pgdata.join("PG_VERSION"))?.trim() == major.to_string(),
        "postgresql-{major}-setup initdb did not create a cluster in {}: {}",
        pgdata.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let again = as_account(&setup, &["initdb".into()])?;
    ensure!(!again.status.success(), "postgresql-{major}-setup initdb ran again over an existing cluster");
    let ok = as_account(&check, &[pgdata.display().to_string()])?;
    ensure!(ok.status.success(), "the unit's pre-start check refused the cluster the setup helper made");
    let empty = as_account(&check, &[dir.join("empty").display().to_string()])?;
    let said = String::from_utf8_lossy(&empty.stderr);
    ensure!(
        !empty.status.success() && said.contains(&format!("postgresql-{major}-setup initdb")),
        "the unit's pre-start check accepted an empty directory or did not say what to do: {said}"
    );
    ui::note(format!(
        "ok: the .rpm server package has its scriptlets and {}; from the unpacked files, \
         postgresql-{major}-setup initdb made a cluster that the unit's pre-start check accepts",
        super::service::unit_name(major)
    ));
    Ok(())
}

/// Where `postgresql-common` is installed, we are root, and neither our
/// packages nor any package ours conflicts with were on the system before
/// (see [`host_plan`]): installs the previous package set on this system
/// for real (the previous release's extension, the same server at an older
/// revision), creates a cluster with `pg_createcluster`, starts it with
/// `pg_ctlcluster` and writes data through `pg_wrapper`'s psql; then
/// upgrades to the new packages with `dpkg -i` while the cluster runs,
/// restarts it, and checks that the data survived, the server runs the new
/// library and the catalog was updated. Finally drops the cluster and
/// purges the packages it installed (also when a step fails). Otherwise
/// says why it was skipped.
fn with_postgresql_common(
    installed: &Installed,
    debs: &[&PathBuf],
    names: &Names,
    epoch: u64,
    base: &Path,
) -> Result<()> {
    let major = installed.dirs.major.to_string();
    let skip = |why: String| ui::note(format!("skipped: the postgresql-common check: {why}"));
    if !nix::unistd::geteuid().is_root() {
        skip("it installs packages on this system, which needs root".into());
        return Ok(());
    }
    if cmd::on_path("pg_createcluster").is_none() && !Path::new("/usr/bin/pg_createcluster").exists() {
        skip("postgresql-common is not installed here".into());
        return Ok(());
    }
    let present: Vec<(String, String)> = [&names.server, &names.extension]
        .into_iter()
        .chain(&names.conflicts)
        .filter_map(|name| dpkg_status(name).map(|status| (name.clone(), status)))
        .collect();
    if let HostPlan::Skip(why) = host_plan(names, &present, &existing_clusters(&major)) {
        skip(why);
        return Ok(());
    }
    // The previous package set: one day older, with the previous release's
    // extension built from its commit against this server.
    let previous = crate::releases::previous()?;
    let old_tree = crate::releases::server_with(installed, &previous)?;
    let old_dir = base.join("previous");
    std::fs::create_dir_all(&old_dir).with_context(|| format!("cannot create {}", old_dir.display()))?;
    let old_debs = super::write_packages(&old_tree, PkgLayout::Deb, epoch - 86_400, &old_dir)?;

    let logs = layout::target_dir().join("package-tests");
    let log = |step: &str| logs.join(format!("postgresql-common-{major}-{step}.log"));
    // From here on, whatever of ours is installed was installed by this check.
    let guard = HostInstall { major: major.clone(), names: names.clone() };
    guard.drop_cluster();
    let dpkg_install = |debs: &[PathBuf], step: &str| -> Result<()> {
        let mut args = vec!["-i".to_string()];
        args.extend(debs.iter().map(|d| d.display().to_string()));
        cmd::run_logged(tool("dpkg", &args).env("PATH", SYSTEM_PATH), "dpkg -i (on this system)", &log(step))
    };
    dpkg_install(&old_debs, "dpkg-previous")?;
    // The server package's postinst made the cluster <major>/main, as
    // Debian's do, unless postgresql-common is told not to.
    let no_main = cmd::read(
        tool(
            "pg_conftool",
            ["/etc/postgresql-common/createcluster.conf", "show", "-bs", "create_main_cluster"],
        )
        .env("PATH", SYSTEM_PATH)
        .unchecked(),
        "pg_conftool",
    )
    .is_ok_and(|v| v.trim() == "off");
    let lsclusters = || cmd::read(tool("pg_lsclusters", ["-h"]).env("PATH", SYSTEM_PATH), "pg_lsclusters");
    // pg_lsclusters -h: version, cluster, port, status, owner, data, log.
    let status_of = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find_map(|f| (f.len() > 3 && f[0] == major && f[1] == name).then(|| f[3].to_string()))
    };
    if !no_main {
        let main = status_of(&lsclusters()?, "main");
        ensure!(
            main.as_deref().is_some_and(|s| s.starts_with("online")),
            "the server package's postinst did not create and start the cluster {major}/main (status {main:?})"
        );
    }
    let port = crate::node::free_port()?.to_string();
    cmd::run_logged(
        tool("pg_createcluster", [major.as_str(), PGCOMMON_CLUSTER, "-p", port.as_str()])
            .env("PATH", SYSTEM_PATH),
        "pg_createcluster",
        &log("createcluster"),
    )?;
    let conf_dir = PathBuf::from(format!("/etc/postgresql/{major}/{PGCOMMON_CLUSTER}/conf.d"));
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::write(conf_dir.join("spock.conf"), crate::node::base_conf(installed, 1))
        .with_context(|| format!("cannot write {}", conf_dir.display()))?;
    let ctlcluster = |action: &str| {
        cmd::run_logged(
            tool("pg_ctlcluster", [major.as_str(), PGCOMMON_CLUSTER, action]).env("PATH", SYSTEM_PATH),
            &format!("pg_ctlcluster {action}"),
            &log(&format!("ctlcluster-{action}")),
        )
    };
    ctlcluster("start")?;
    let cluster = format!("{major}/{PGCOMMON_CLUSTER}");
    let psql = |sql: &str| -> Result<String> {
        cmd::read(
            tool(
                "runuser",
                ["-u", "postgres", "--", "psql", "--cluster", cluster.as_str(), "-XAtq", "-c", sql],
            )
            .env("PATH", SYSTEM_PATH),
            "psql through pg_wrapper",
        )
        .map(|out| out.trim_end().to_string())
    };
    psql("CREATE EXTENSION spock")?;
    psql("CREATE TABLE kept AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g")?;
    let digest = "SELECT count(*) || ' ' || md5(string_agg(v, ',' ORDER BY id)) FROM kept";
    let before = psql(digest)?;
    let started = psql("SELECT pg_postmaster_start_time()")?;
    let old_ext = psql("SELECT spock.spock_version()")?;
    ensure!(
        old_ext == previous.version,
        "the previous package set runs spock {old_ext}, not {}",
        previous.version
    );

    // The upgrade, with the cluster running, then a restart on the new files.
    dpkg_install(&debs.iter().map(|d| d.to_path_buf()).collect::<Vec<_>>(), "dpkg-upgrade")?;
    ctlcluster("restart")?;
    let ext = crate::extension::version()?;
    let updated = "SELECT extversion FROM pg_extension WHERE extname = 'spock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while psql(updated)? != ext {
        ensure!(
            std::time::Instant::now() < deadline,
            "after the upgrade the manager did not update the spock catalog to {ext} within 60 s (see the \
             cluster's log in /var/log/postgresql)"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = psql("SELECT version() || ' / spock ' || spock.spock_version()")?;
    let wanted = format!("PostgreSQL {}{}", installed.core.postgresql_version, installed.core.extra_version);
    ensure!(
        out.starts_with(&wanted) && out.ends_with(&format!("/ spock {ext}")),
        "the upgraded cluster answered {out:?}; expected {wanted} with spock {ext}"
    );
    ensure!(psql(digest)? == before, "the table written before the upgrade changed: {before} before");
    ensure!(
        psql("SELECT pg_postmaster_start_time()")? != started,
        "the server was not restarted by pg_ctlcluster restart"
    );
    // Removing keeps the clusters (stopped); purging drops them.
    let data = PathBuf::from(format!("/var/lib/postgresql/{major}/{PGCOMMON_CLUSTER}"));
    let dpkg_action = |action: &str| {
        cmd::run_logged(
            tool("dpkg", [action, names.extension.as_str(), names.server.as_str()]).env("PATH", SYSTEM_PATH),
            &format!("dpkg {action} (on this system)"),
            &log(&format!("dpkg{action}")),
        )
    };
    dpkg_action("--remove")?;
    ensure!(
        data.join("PG_VERSION").exists() && conf_dir.exists(),
        "dpkg --remove took the cluster {cluster} ({}) with it; remove must keep clusters",
        data.display()
    );
    let after_remove = lsclusters()?;
    ensure!(
        status_of(&after_remove, PGCOMMON_CLUSTER).is_some_and(|s| s.starts_with("down")),
        "the cluster {cluster} should be kept and stopped after the server package was removed:\n{after_remove}"
    );
    // pg_dropcluster leaves files it did not write: the check's own.
    std::fs::remove_file(conf_dir.join("spock.conf")).ok();
    dpkg_action("--purge")?;
    ensure!(
        !data.exists() && !Path::new(&format!("/etc/postgresql/{major}")).exists(),
        "dpkg --purge left the cluster {cluster} behind ({} or /etc/postgresql/{major})",
        data.display()
    );
    drop(guard);
    ui::note(format!(
        "ok: on this system, the previous packages (spock {old_ext}) made {} and ran cluster {cluster} from \
         pg_createcluster; dpkg -i upgraded them in place while it ran (stopped by prerm, started by postinst); \
         after pg_ctlcluster restart it runs spock {ext}, the manager updated the catalog and the data \
         survived; dpkg --remove kept the clusters, dpkg --purge dropped them",
        if no_main {
            "no main cluster (create_main_cluster = off)".to_string()
        } else {
            format!("{major}/main")
        }
    ));
    Ok(())
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Drops the test cluster and purges our packages from this system when
/// the check ends, whatever happened. It exists only once [`host_plan`] has
/// found none of our packages on the system, so what it purges is what the
/// check installed.
struct HostInstall {
    major: String,
    names: Names,
}

fn quiet(e: duct::Expression) {
    let _ = e.env("PATH", SYSTEM_PATH).stdout_null().stderr_null().unchecked().run();
}

impl HostInstall {
    /// Drops the check's cluster (also one left by an interrupted run).
    fn drop_cluster(&self) {
        let conf = PathBuf::from(format!("/etc/postgresql/{}/{PGCOMMON_CLUSTER}", self.major));
        if conf.exists() {
            quiet(tool("pg_dropcluster", ["--stop", self.major.as_str(), PGCOMMON_CLUSTER]));
            // pg_dropcluster leaves files it did not write (our conf.d file).
            let _ = fsutil::remove_dir_all_if_exists(&conf);
        }
        // The per-major directories, if nothing else lives there.
        for dir in [format!("/etc/postgresql/{}", self.major), format!("/var/lib/postgresql/{}", self.major)]
        {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for HostInstall {
    fn drop(&mut self) {
        self.drop_cluster();
        if dpkg_status(&self.names.extension).is_some() || dpkg_status(&self.names.server).is_some() {
            quiet(tool("dpkg", ["--purge", self.names.extension.as_str(), self.names.server.as_str()]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_install_leaves_packages_it_did_not_install_alone() {
        let names = names(PkgLayout::Deb, 18);
        let on = |name: &str, status: &str| (name.to_string(), status.to_string());
        assert_eq!(host_plan(&names, &[], &[]), HostPlan::Install);
        for (name, status) in [
            ("spock-postgresql-18", "install ok installed"),
            ("postgresql-18-spock", "install ok installed"),
            ("postgresql-18-spock", "deinstall ok config-files"),
            ("postgresql-18", "install ok installed"),
            ("postgresql-client-18", "install ok installed"),
        ] {
            let HostPlan::Skip(why) = host_plan(&names, &[on(name, status)], &[]) else {
                panic!("{name} ({status}) was on the system, and the check would install anyway");
            };
            assert!(why.contains(name) && why.contains(status), "{why}");
        }
        // Our own package is named first, wherever it is in the list.
        let HostPlan::Skip(why) = host_plan(
            &names,
            &[on("postgresql-18", "install ok installed"), on("spock-postgresql-18", "install ok installed")],
            &[],
        ) else {
            panic!("must skip");
        };
        assert!(why.starts_with("spock-postgresql-18 was on this system"), "{why}");
        // Packages of another major are no reason to skip.
        assert_eq!(host_plan(&names, &[on("postgresql-15", "install ok installed")], &[]), HostPlan::Install);
        // Clusters of the major that were there before would be dropped by the purge.
        let HostPlan::Skip(why) = host_plan(&names, &[], &["18/main".to_string()]) else {
            panic!("must skip");
        };
        assert!(why.contains("18/main"), "{why}");
    }

    #[test]
    fn dpkg_status_lines_are_read() {
        assert!(status_is_present("install ok installed"));
        assert!(status_is_present("deinstall ok config-files"));
        assert!(status_is_present("install ok half-configured"));
        assert!(!status_is_present("unknown ok not-installed"));
        assert!(!status_is_present("purge ok not-installed"));
        assert!(!status_is_present(""));
    }

    #[test]
    fn status_copy_leaves_out_our_packages() {
        let status = "Package: libc6\nStatus: install ok installed\n\nPackage: spock-postgresql-18\nStatus: install ok installed\nVersion: 18.6-1\n\nPackage: zlib1g\nStatus: install ok installed\n";
        assert_eq!(
            without_packages(status, &["spock-postgresql-18", "postgresql-18-spock"]),
            "Package: libc6\nStatus: install ok installed\n\nPackage: zlib1g\nStatus: install ok installed\n\n"
        );
    }
}
