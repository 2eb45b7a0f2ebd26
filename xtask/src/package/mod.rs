//! The `cargo xtask package` task: .deb and .rpm packages of the patched
//! server and of the extension, from release trees configured for each
//! package layout, written byte for byte reproducibly.
//!
//! The pieces: `spec` decides names, versions and relations and splits a
//! layout's file tree into the server's and the extension's files; `deps`
//! finds the shared libraries the files need; `deb` and `rpm` write the
//! archives; `verify` is what `cargo xtask test` checks of them.

mod deb;
mod deps;
mod rpm;
mod service;
mod spec;
mod staging;
pub mod verify;

use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail, ensure};

use crate::flags::{Package, PackageFormat};
use crate::layout::{self, PkgLayout};
use crate::pgbuild::Installed;
use crate::versions::{Manifest, Resolved};
use crate::{build, cmd, doctor, fsutil, ui};

pub use spec::{Dep, Entry, Kind, Spec};

/// The name of the checksum file written beside the packages.
pub const SUMS_FILE: &str = "SHA256SUMS";

impl PackageFormat {
    pub fn layout(self) -> PkgLayout {
        match self {
            PackageFormat::Deb => PkgLayout::Deb,
            PackageFormat::Rpm => PkgLayout::Rpm,
        }
    }
}

impl Package {
    pub fn run(self) -> Result<()> {
        doctor::ensure(true)?;
        doctor::ensure_packaging(true)?;
        let out = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => layout::target_dir().join("packages"),
        };
        ensure_writable(&out)?;
        if let Some(key) = &self.sign {
            // Before minutes of building: the key must be there to sign with.
            check_signing_key(key, None)?;
        }
        let epoch = source_date_epoch()?;
        let jobs = build::jobs(self.jobs);
        let manifest = Manifest::builtin();
        let mut written = Vec::new();
        for request in &self.pg {
            let resolved = manifest.resolve(*request);
            for format in dedup(&self.format) {
                written.extend(make_packages(&resolved, format.layout(), epoch, &out, jobs).with_context(
                    || {
                        format!(
                            "packaging PostgreSQL {} as {} failed",
                            resolved.version,
                            format.layout().name()
                        )
                    },
                )?);
            }
        }
        if let Some(key) = &self.sign {
            let rpms: Vec<PathBuf> =
                written.iter().filter(|p| p.extension().is_some_and(|x| x == "rpm")).cloned().collect();
            sign_rpms(&rpms, key, None)?;
        }
        let sums = write_sums(&out)?;
        println!("\nPackages (SOURCE_DATE_EPOCH={epoch}) in {}:", out.display());
        for path in &written {
            println!("  {}", path.file_name().unwrap_or_default().to_string_lossy());
        }
        println!("  {} ({} entries)", SUMS_FILE, sums);
        if let Some(key) = &self.sign {
            let signature = sign_sums(&out, key)?;
            println!("  {} (signed by {key})", signature.file_name().unwrap_or_default().to_string_lossy());
            let public = export_public_key(&out, key, None)?;
            println!(
                "  {} (the public key, to import)",
                public.file_name().unwrap_or_default().to_string_lossy()
            );
        }
        if self.verify {
            for request in &self.pg {
                verify::run_for(&manifest.resolve(*request), jobs)?;
            }
            println!("\nThe package checks passed.");
        }
        Ok(())
    }
}

fn dedup(formats: &[PackageFormat]) -> Vec<PackageFormat> {
    let mut out = Vec::new();
    for f in formats {
        if !out.contains(f) {
            out.push(*f);
        }
    }
    out
}

/// Builds (or reuses) the layout's release tree of a major and writes its
/// packages (`write_packages`) into `out`. Returns the files written.
pub fn make_packages(
    resolved: &Resolved,
    layout: PkgLayout,
    epoch: u64,
    out: &Path,
    jobs: usize,
) -> Result<Vec<PathBuf>> {
    let major = resolved.version.major;
    if !crate::build::is_built(resolved) {
        ui::note(format!(
            "PostgreSQL {major} has no build in this checkout yet (`cargo xtask build --pg {major}` makes one); \
             the package tree is built from the same verified source and patches (a tarball you downloaded \
             yourself goes into the cache with `cargo xtask fetch --pg {major} --source-tarball FILE`)"
        ));
    }
    let installed = build::build_package_tree(resolved, layout, jobs)?;
    write_packages(&installed, layout, epoch, out)
}

/// Writes the packages of an installed package tree, in the order of
/// [`spec::specs`]: the server's, the extension's, then (.rpm) the
/// libraries' and the development files'.
pub fn write_packages(
    installed: &Installed,
    layout: PkgLayout,
    epoch: u64,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let step = ui::Step::start(format!(
        "Writing the {} packages of PostgreSQL {} into {}",
        layout.name(),
        installed.core.postgresql_version,
        out.display()
    ));
    let mut specs = spec::specs(installed, layout, epoch)?;
    for spec in specs.iter_mut() {
        staging::stage(installed, layout, spec, epoch)?;
    }
    let mut written = Vec::new();
    for spec in &specs {
        let path = match layout {
            PkgLayout::Deb => deb::write(spec, epoch, out)?,
            PkgLayout::Rpm => rpm::write(spec, epoch, out)?,
        };
        written.push(path);
    }
    step.done(
        &written
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(written)
}

/// `SOURCE_DATE_EPOCH` from the environment, or the time of the checkout's
/// last commit: every timestamp inside the packages is clamped to it.
pub fn source_date_epoch() -> Result<u64> {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) {
        let text = value.to_string_lossy();
        return text.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970; unset it or give one such as 1767225600")
        });
    }
    let out = cmd::read(
        cmd::tool("git", ["log", "-1", "--format=%ct"]).dir(layout::project_root()),
        "git log -1 --format=%ct",
    )
    .context("cannot read the last commit's time for SOURCE_DATE_EPOCH; set SOURCE_DATE_EPOCH yourself")?;
    out.trim().parse().with_context(|| format!("git printed {out:?} for the last commit's time"))
}

/// Creates `dir` if needed and proves that a file can be written in it,
/// before any long build starts.
fn ensure_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!("cannot create the output directory {}; choose another with --out-dir", dir.display())
    })?;
    tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "the output directory {} is not writable; fix its permissions or choose another with --out-dir",
            dir.display()
        )
    })?;
    Ok(())
}

/// Rewrites `SHA256SUMS` in `dir` for every package file there (sorted by
/// name, in the format `sha256sum -c` reads). Returns the number of entries.
pub fn write_sums(dir: &Path) -> Result<usize> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb") || n.ends_with(".rpm"))
        .collect();
    names.sort();
    let mut text = String::new();
    for name in &names {
        text.push_str(&format!("{}  {name}\n", fsutil::sha256_file(&dir.join(name))?));
    }
    publish(&dir.join(SUMS_FILE), text.as_bytes())?;
    Ok(names.len())
}

/// Signs `SHA256SUMS` in `dir` with gpg key `key`: a detached, armoured
/// signature `SHA256SUMS.asc`, checked with gpg before it is kept. Checking
/// a download: `gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS`.
pub fn sign_sums(dir: &Path, key: &str) -> Result<PathBuf> {
    sign_sums_with(dir, key, None)
}

/// gpg with `args`, on the keyring of `gnupg_home` (or the user's).
fn gpg<I, A>(args: I, gnupg_home: Option<&Path>) -> duct::Expression
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString>,
{
    let e = cmd::tool("gpg", args);
    match gnupg_home {
        Some(home) => e.env("GNUPGHOME", home),
        None => e,
    }
}

/// `sign_sums` with the keyring of `gnupg_home` instead of the user's.
fn sign_sums_with(dir: &Path, key: &str, gnupg_home: Option<&Path>) -> Result<PathBuf> {
    let sums = dir.join(SUMS_FILE);
    let signature = dir.join(format!("{SUMS_FILE}.asc"));
    let out = gpg(
        vec![
            "--batch".into(),
            "--yes".into(),
            "--armor".into(),
            "--local-user".into(),
            key.into(),
            "--output".into(),
            signature.display().to_string(),
            "--detach-sign".into(),
            sums.display().to_string(),
        ],
        gnupg_home,
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .context("cannot run gpg; install it (Debian: apt-get install gnupg)")?;
    if !out.status.success() {
        bail!(
            "gpg could not sign {} with the key {key:?}: {}\n`gpg --list-secret-keys` lists the keys you can sign with \
             (the key needs no passphrase prompt in batch mode: use gpg-agent or a key without one)",
            sums.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    verify_signature_with(dir, gnupg_home)?;
    std::fs::set_permissions(&signature, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot make {} readable", signature.display()))?;
    Ok(signature)
}

/// Signs .rpm packages in place with gpg key `key` of the keyring of
/// `gnupg_home` (or the user's), as RPM repositories carry them
/// (`rpmsign --addsign`; dnf and `rpm -K` check the signature against the
/// public key they imported), then checks every signature with that key.
/// Signing changes the bytes of the packages, so it comes before
/// `SHA256SUMS` is written.
pub fn sign_rpms(rpms: &[PathBuf], key: &str, gnupg_home: Option<&Path>) -> Result<()> {
    if rpms.is_empty() {
        return Ok(());
    }
    // rpm's configured gpg program may not exist (Debian's rpm names gpg2).
    let gpg = cmd::on_path("gpg").context("cannot find gpg; install it (Debian: apt-get install gnupg)")?;
    let mut args = vec![
        "--define".to_string(),
        format!("_gpg_name {key}"),
        "--define".to_string(),
        format!("__gpg {}", gpg.display()),
    ];
    if let Some(home) = gnupg_home {
        args.extend(["--define".to_string(), format!("_gpg_path {}", home.display())]);
    }
    args.push("--addsign".into());
    args.extend(rpms.iter().map(|r| r.display().to_string()));
    let mut e = cmd::tool("rpmsign", &args);
    if let Some(home) = gnupg_home {
        e = e.env("GNUPGHOME", home);
    }
    let out = e
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run rpmsign; install it (Debian: apt-get install rpm)")?;
    if !out.status.success() {
        bail!(
            "rpmsign could not sign the .rpm packages with the key {key:?}: {}{}\n`gpg --list-secret-keys` lists \
             the keys you can sign with (the key needs no passphrase prompt in batch mode)",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let keys = tempfile::tempdir().context("cannot create a scratch RPM key database")?;
    let rpmdb = import_rpm_key(keys.path(), key, gnupg_home)?;
    for rpm in rpms {
        check_rpm_signature(rpm, &rpmdb)?;
    }
    Ok(())
}

/// An error unless gpg and rpmsign are installed and `key` names a secret
/// key of the keyring of `gnupg_home` (or the user's).
pub fn check_signing_key(key: &str, gnupg_home: Option<&Path>) -> Result<()> {
    for program in ["gpg", "rpmsign"] {
        ensure!(
            cmd::on_path(program).is_some(),
            "--sign needs {program}; install it (Debian: apt-get install {})",
            if program == "gpg" { "gnupg" } else { "rpm" }
        );
    }
    let out = gpg(["--batch", "--list-secret-keys", key], gnupg_home)
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .context("cannot run gpg")?;
    ensure!(
        out.status.success(),
        "--sign {key}: gpg has no secret key of that name; `gpg --list-secret-keys` lists the keys you can sign with"
    );
    Ok(())
}

/// Writes the public half of `key` into `dir` as `signing-key.asc`, for
/// whoever checks the signatures (`rpm --import`, `gpg --import`).
pub fn export_public_key(dir: &Path, key: &str, gnupg_home: Option<&Path>) -> Result<PathBuf> {
    let public = cmd::read(gpg(["--batch", "--armor", "--export", key], gnupg_home), "gpg --export")
        .with_context(|| format!("cannot export the public key {key:?}"))?;
    ensure!(public.contains("BEGIN PGP PUBLIC KEY BLOCK"), "gpg exported no public key for {key:?}");
    let path = dir.join("signing-key.asc");
    publish(&path, public.as_bytes())?;
    Ok(path)
}

/// Makes a signing key without a passphrase, for `user`, in the new
/// keyring `home` (the tests sign with it).
pub fn throwaway_key(home: &Path, user: &str) -> Result<()> {
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", home.display()))?;
    let out = cmd::tool(
        "gpg",
        ["--batch", "--passphrase", "", "--quick-gen-key", user, "ed25519", "sign", "never"],
    )
    .env("GNUPGHOME", home)
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .context("cannot run gpg; install it (Debian: apt-get install gnupg)")?;
    ensure!(
        out.status.success(),
        "gpg could not make a key: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Imports the public half of gpg key `key` into a new RPM database in
/// `dir`, as `rpm --import` does on a system that trusts it. Returns the
/// database's directory.
pub fn import_rpm_key(dir: &Path, key: &str, gnupg_home: Option<&Path>) -> Result<PathBuf> {
    let file = export_public_key(dir, key, gnupg_home)?;
    let rpmdb = dir.join("rpmdb");
    std::fs::create_dir_all(&rpmdb).with_context(|| format!("cannot create {}", rpmdb.display()))?;
    let (db, f) = (rpmdb.display().to_string(), file.display().to_string());
    cmd::read(cmd::tool("rpmkeys", ["--dbpath", db.as_str(), "--import", f.as_str()]), "rpmkeys --import")?;
    Ok(rpmdb)
}

/// `rpmkeys --checksig` of a package against the keys of `rpmdb` must find
/// a signature and verify it.
pub fn check_rpm_signature(rpm: &Path, rpmdb: &Path) -> Result<()> {
    let (db, file) = (rpmdb.display().to_string(), rpm.display().to_string());
    let out = cmd::tool("rpmkeys", ["--dbpath", db.as_str(), "--checksig", "-v", file.as_str()])
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run rpmkeys")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("Signature, key ID") && !text.contains("NOKEY"),
        "the signature of {file} does not verify with the signing key: {}",
        text.trim()
    );
    Ok(())
}

/// `gpg --verify SHA256SUMS.asc SHA256SUMS` in `dir` (with the keyring of
/// `gnupg_home`, or the user's).
fn verify_signature_with(dir: &Path, gnupg_home: Option<&Path>) -> Result<()> {
    let out = gpg(["--batch", "--verify", &format!("{SUMS_FILE}.asc"), SUMS_FILE], gnupg_home)
        .dir(dir)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run gpg")?;
    if !out.status.success() {
        bail!(
            "the signature of {} does not verify: {}",
            dir.join(SUMS_FILE).display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes a file of the output directory atomically, readable by everyone
/// (as a download or a repository needs it).
pub fn publish(path: &Path, bytes: &[u8]) -> Result<()> {
    fsutil::write_atomic(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot make {} readable", path.display()))
}

/// The architecture names of the machine: Debian's and RPM's.
pub fn arch() -> Result<(&'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("amd64", "x86_64")),
        "aarch64" => Ok(("arm64", "aarch64")),
        other => bail!("packages for the {other} architecture are not supported yet (amd64 and arm64 are)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signing with a throwaway key: the signature verifies, and no longer
    /// once SHA256SUMS changed. Skipped where gpg is not installed.
    #[test]
    fn sums_are_signed_and_verified() {
        if cmd::tool("gpg", ["--version"]).stdout_null().stderr_null().unchecked().run().is_err() {
            eprintln!("gpg is not installed: signing not checked");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        throwaway_key(home.path(), "spock test <test@packages.invalid>").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a_1.0_amd64.deb"), b"package").unwrap();
        write_sums(dir.path()).unwrap();
        check_signing_key("test@packages.invalid", Some(home.path())).unwrap();
        let err = check_signing_key("nobody@packages.invalid", Some(home.path())).unwrap_err();
        assert!(err.to_string().contains("no secret key"), "{err:#}");
        let sig = sign_sums_with(dir.path(), "test@packages.invalid", Some(home.path())).unwrap();
        assert!(std::fs::read_to_string(&sig).unwrap().contains("BEGIN PGP SIGNATURE"));
        std::fs::write(dir.path().join(SUMS_FILE), "0000  a_1.0_amd64.deb\n").unwrap();
        let err = verify_signature_with(dir.path(), Some(home.path())).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err:#}");
        let err = sign_sums_with(dir.path(), "nobody@packages.invalid", Some(home.path())).unwrap_err();
        assert!(err.to_string().contains("could not sign"), "{err:#}");
    }

    /// A small .rpm signed with a throwaway key verifies against that key;
    /// an unsigned one does not. Skipped where gpg or rpmsign is missing.
    #[test]
    fn rpms_are_signed_and_verified() {
        if cmd::on_path("gpg").is_none() || cmd::on_path("rpmsign").is_none() {
            eprintln!("gpg or rpmsign is not installed: RPM signing not checked");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        throwaway_key(home.path(), "spock test <rpm@packages.invalid>").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let pkg = ::rpm::PackageBuilder::new(name, "1.0", "PostgreSQL", "noarch", "a test package")
                .description("a test package")
                .build()
                .unwrap();
            let path = dir.path().join(format!("{name}-1.0-1.noarch.rpm"));
            pkg.write_file(&path).unwrap();
            path
        };
        let (signed, unsigned) = (make("signed"), make("unsigned"));
        sign_rpms(std::slice::from_ref(&signed), "rpm@packages.invalid", Some(home.path())).unwrap();
        let keys = tempfile::tempdir().unwrap();
        let rpmdb = import_rpm_key(keys.path(), "rpm@packages.invalid", Some(home.path())).unwrap();
        check_rpm_signature(&signed, &rpmdb).unwrap();
        let err = check_rpm_signature(&unsigned, &rpmdb).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err:#}");
        let err = sign_rpms(&[unsigned], "nobody@packages.invalid", Some(home.path())).unwrap_err();
        assert!(err.to_string().contains("could not sign"), "{err:#}");
    }
}
