//! Shared-library dependencies of packaged files: the sonames ELF files need
//! and provide (read with `readelf -d`), and, for .deb, the Debian packages
//! of this machine that hold those libraries (`ldconfig -p`, `dpkg-query -S`).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cmd::{self, tool};

/// What a set of ELF files needs and provides.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Elf {
    pub needed: BTreeSet<String>,
    pub sonames: BTreeSet<String>,
}

pub(super) fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(file.read(&mut magic)? == 4 && magic == *b"\x7fELF")
}

/// Reads the dynamic sections of those `files` that are ELF files.
pub fn scan<'a>(files: impl IntoIterator<Item = &'a Path>) -> Result<Elf> {
    let mut elf_files = Vec::new();
    for file in files {
        if is_elf(file)? {
            elf_files.push(file.display().to_string());
        }
    }
    let mut elf = Elf::default();
    // One readelf per batch of files keeps this quick on a server tree.
    for chunk in elf_files.chunks(200) {
        let mut args = vec!["-d".to_string(), "-W".to_string()];
        args.extend(chunk.iter().cloned());
        let out = cmd::read(tool("readelf", &args), "readelf -d")?;
        let part = parse_dynamic(&out);
        elf.needed.extend(part.needed);
        elf.sonames.extend(part.sonames);
    }
    Ok(elf)
}

/// The `NEEDED` and `SONAME` entries of `readelf -d` output.
pub fn parse_dynamic(text: &str) -> Elf {
    let mut elf = Elf::default();
    for line in text.lines() {
        let bracketed =
            || line.split_once('[').and_then(|(_, r)| r.split_once(']')).map(|(v, _)| v.to_string());
        if line.contains("(NEEDED)") {
            elf.needed.extend(bracketed());
        } else if line.contains("(SONAME)") {
            elf.sonames.extend(bracketed());
        }
    }
    elf
}

/// RPM's names for needed sonames on 64-bit systems: `libssl.so.3()(64bit)`.
pub fn rpm_requires(sonames: &[String]) -> Vec<String> {
    sonames.iter().map(|s| format!("{s}()(64bit)")).collect()
}

/// The Debian packages of this machine that hold the sonames' libraries.
pub fn deb_packages(sonames: &[String]) -> Result<Vec<String>> {
    if sonames.is_empty() {
        return Ok(Vec::new());
    }
    let cache = cmd::read(tool("ldconfig", ["-p"]), "ldconfig -p")
        .or_else(|_| cmd::read(tool("/sbin/ldconfig", ["-p"]), "ldconfig -p"))?;
    let mut packages = BTreeSet::new();
    for soname in sonames {
        let Some(path) = ldconfig_path(&cache, soname) else {
            bail!("no library {soname} is known to ldconfig here, but the packaged files need it");
        };
        packages.insert(owning_package(&path).with_context(|| {
            format!("cannot tell which Debian package provides {path} (needed as {soname})")
        })?);
    }
    Ok(packages.into_iter().collect())
}

/// The .deb dependencies on the packages that hold the sonames, each with
/// the lowest version that has every symbol the files use, as
/// `dpkg-shlibdeps` (Debian's own tool, run on the package's ELF `files`)
/// derives it from the libraries' symbols and shlibs files. Packages
/// dpkg-shlibdeps finds for sonames the package set carries itself (our
/// libpq, for example, where the distribution's is also installed) are
/// left out: only the owners of `sonames` are dependencies.
pub fn deb_depends(sonames: &[String], files: &[&Path]) -> Result<Vec<(String, Option<String>)>> {
    let names = deb_packages(sonames)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let elf: Vec<&Path> = files.iter().copied().filter(|f| is_elf(f).unwrap_or(false)).collect();
    let versions = shlibdeps(&elf)?;
    Ok(names
        .into_iter()
        .map(|n| {
            let v = versions.iter().find(|(name, _)| *name == n).and_then(|(_, v)| v.clone());
            (n, v)
        })
        .collect())
}

/// `dpkg-shlibdeps -O` on `files`, in a scratch directory with the minimal
/// `debian/control` it wants: `(package, minimum version)` pairs.
fn shlibdeps(files: &[&Path]) -> Result<Vec<(String, Option<String>)>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::tempdir().context("cannot create a directory for dpkg-shlibdeps")?;
    std::fs::create_dir_all(dir.path().join("debian"))?;
    std::fs::write(
        dir.path().join("debian/control"),
        "Source: spock\n\nPackage: spock\nArchitecture: any\n",
    )?;
    let mut args = vec!["-O".to_string(), "--ignore-missing-info".to_string()];
    // The package's own libraries are found beside the files.
    let mut dirs: Vec<String> =
        files.iter().filter_map(|f| f.parent()).map(|d| format!("-l{}", d.display())).collect();
    dirs.sort();
    dirs.dedup();
    args.extend(dirs);
    args.extend(files.iter().map(|f| format!("-e{}", f.display())));
    let out = tool("dpkg-shlibdeps", &args)
        .dir(dir.path())
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run dpkg-shlibdeps; install dpkg-dev (`cargo xtask doctor --install`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")) else {
        bail!(
            "dpkg-shlibdeps gave no dependencies for the package's files: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| l.contains("error"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    };
    Ok(parse_depends(line))
}

/// `libc6 (>= 2.34), zlib1g (>= 1:1.1.4)` -> pairs; of alternatives
/// (`a | b`), the first.
pub fn parse_depends(line: &str) -> Vec<(String, Option<String>)> {
    line.split(',')
        .filter_map(|d| {
            let first = d.split('|').next()?.trim();
            let (name, rest) = first.split_once(' ').unwrap_or((first, ""));
            let version = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.trim().strip_prefix(">="))
                .map(|v| v.trim().to_string());
            (!name.is_empty()).then(|| (name.to_string(), version))
        })
        .collect()
}

/// The path `ldconfig -p` gives for a soname, preferring the machine's
/// native (64-bit) entry.
pub fn ldconfig_path(cache: &str, soname: &str) -> Option<String> {
    let native = match std::env::consts::ARCH {
        "aarch64" => "AArch64",
        _ => "x86-64",
    };
    let mut first = None;
    for line in cache.lines() {
        let line = line.trim();
        let Some((lhs, path)) = line.split_once(" => ") else { continue };
        let Some((name, flags)) = lhs.split_once(' ') else { continue };
        if name != soname {
            continue;
        }
        if flags.contains(native) {
            return Some(path.trim().to_string());
        }
        first.get_or_insert_with(|| path.trim().to_string());
    }
    first
}

/// The package `dpkg-query -S` names for a file, trying the path as given,
/// its other spelling on merged-/usr systems, and its resolved target.
fn owning_package(path: &str) -> Result<String> {
    let mut candidates = vec![path.to_string()];
    if let Some(rest) = path.strip_prefix("/usr") {
        candidates.push(rest.to_string());
    } else {
        candidates.push(format!("/usr{path}"));
    }
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real.display().to_string());
    }
    for candidate in &candidates {
        let out = tool("dpkg-query", ["-S", candidate.as_str()])
            .stderr_null()
            .stdout_capture()
            .unchecked()
            .run()?;
        if out.status.success()
            && let Some(pkg) = parse_dpkg_search(&String::from_utf8_lossy(&out.stdout))
        {
            return Ok(pkg);
        }
    }
    bail!("dpkg-query -S knows none of {}", candidates.join(", "))
}

/// The package name in `dpkg-query -S` output (`libssl3:amd64: /usr/lib/...`),
/// without the architecture qualifier; diversion lines are skipped.
pub fn parse_dpkg_search(text: &str) -> Option<String> {
    text.lines().filter(|l| !l.starts_with("diversion")).find_map(|line| {
        let (packages, _) = line.split_once(": ")?;
        let first = packages.split(", ").next()?;
        Some(first.split(':').next()?.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_output_gives_needed_and_sonames() {
        let text = "\nFile: a\n\nDynamic section at offset 0x1 contains 3 entries:\n  Tag        Type                         Name/Value\n \
                    0x0000000000000001 (NEEDED)             Shared library: [libpq.so.5]\n \
                    0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n\n\
                    File: b\n 0x000000000000000e (SONAME)             Library soname: [libpq.so.5]\n \
                    0x000000000000001d (RUNPATH)            Library runpath: [$ORIGIN/../lib]\n";
        let elf = parse_dynamic(text);
        assert_eq!(elf.needed.iter().cloned().collect::<Vec<_>>(), ["libc.so.6", "libpq.so.5"]);
        assert_eq!(elf.sonames.iter().cloned().collect::<Vec<_>>(), ["libpq.so.5"]);
    }

    #[test]
    fn ldconfig_prefers_the_native_entry() {
        let cache = "3 libs found in cache `/etc/ld.so.cache'\n\
                     \tlibssl.so.3 (libc6) => /usr/lib/i386-linux-gnu/libssl.so.3\n\
                     \tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3\n\
                     \tlibssl.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so\n";
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                ldconfig_path(cache, "libssl.so.3").as_deref(),
                Some("/lib/x86_64-linux-gnu/libssl.so.3")
            );
        }
        assert_eq!(ldconfig_path(cache, "libcrypto.so.3"), None);
    }

    #[test]
    fn dpkg_search_output_names_the_package() {
        assert_eq!(
            parse_dpkg_search("libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3\n").as_deref(),
            Some("libssl3")
        );
        assert_eq!(parse_dpkg_search("libc6:amd64, libc6:i386: /lib/x.so\n").as_deref(), Some("libc6"));
        assert_eq!(parse_dpkg_search("diversion by foo from: /x\nzlib1g: /x\n").as_deref(), Some("zlib1g"));
        assert_eq!(rpm_requires(&["libz.so.1".into()]), ["libz.so.1()(64bit)"]);
    }
}

/// The LLVM major the distribution's own `postgresql-<major>` package
/// provides `postgresql-<major>-jit-llvm` at (Debian: `(= 14)` on bookworm),
/// read from this machine's package index; None where there is no such
/// package or no apt.
pub fn distribution_jit_llvm(major: u32) -> Option<String> {
    let package = format!("postgresql-{major}");
    let out = tool("apt-cache", ["show", "--no-all-versions", package.as_str()])
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .ok()?;
    jit_llvm_from_control(&String::from_utf8_lossy(&out.stdout), major)
}

/// The version of `postgresql-<major>-jit-llvm` in a control stanza's `Provides`.
fn jit_llvm_from_control(text: &str, major: u32) -> Option<String> {
    let provides = text.lines().find_map(|l| l.strip_prefix("Provides:"))?;
    let wanted = format!("postgresql-{major}-jit-llvm");
    provides.split(',').map(str::trim).find_map(|p| {
        let (name, version) = p.split_once('(')?;
        (name.trim() == wanted)
            .then(|| version.trim_end_matches(')').trim().trim_start_matches('=').trim().to_string())
    })
}

#[cfg(test)]
mod jit_tests {
    use super::*;

    #[test]
    fn shlibdeps_output_is_read() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libicu72 (>= 72.1~rc-1~), zlib1g (>= 1:1.1.4), libfoo | libbar"),
            [
                ("libc6".to_string(), Some("2.34".to_string())),
                ("libicu72".to_string(), Some("72.1~rc-1~".to_string())),
                ("zlib1g".to_string(), Some("1:1.1.4".to_string())),
                ("libfoo".to_string(), None),
            ]
        );
    }

    #[test]
    fn the_distributions_llvm_is_read_from_provides() {
        let stanza = "Package: postgresql-15\nVersion: 15.18-0+deb12u1\n\
                      Provides: postgresql-15-jit-llvm (= 14), postgresql-contrib-15\nDepends: libc6\n";
        assert_eq!(jit_llvm_from_control(stanza, 15), Some("14".to_string()));
        assert_eq!(jit_llvm_from_control(stanza, 18), None);
        assert_eq!(jit_llvm_from_control("Package: x\n", 15), None);
    }
}
