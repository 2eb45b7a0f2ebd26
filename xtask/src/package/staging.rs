//! What a package carries beyond the installed tree, prepared in a staging
//! directory so the tree itself stays as the build left it: stripped copies
//! of the ELF files (the trees are built with debug information; no
//! debug-symbol packages are made; the .deb's static libraries lose theirs
//! too, the .rpm's keep it, and the .rpm's ELF files lose their run path),
//! and the documentation and metadata a distribution expects
//! (`/usr/share/doc/<package>/copyright`, for .deb also `changelog.Debian.gz`
//! and lintian overrides with reasons, for the .rpm's `-libs` its linker
//! configuration).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::spec::{Entry, Kind, MAINTAINER, Role, Spec};
use crate::cmd::tool;
use crate::fsutil;
use crate::layout::PkgLayout;
use crate::pgbuild::Installed;

/// Strips the package's binaries and adds its documentation, in
/// `installed`'s scratch directory; `spec.entries` then point there.
pub fn stage(installed: &Installed, layout: PkgLayout, spec: &mut Spec, epoch: u64) -> Result<()> {
    let dir = installed.dirs.scratch().join("package-staging").join(&spec.name);
    fsutil::remove_dir_all_if_exists(&dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in spec.entries.iter_mut() {
        if let Kind::Symlink { target } = &entry.kind {
            // Mirrored beside the stripped copies, so that tools reading
            // them (dpkg-shlibdeps) find the libraries by their sonames.
            let link = dir.join(entry.path.trim_start_matches('/'));
            std::fs::create_dir_all(link.parent().expect("a link has a parent"))?;
            std::os::unix::fs::symlink(target, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
            continue;
        }
        let Kind::File { source, mode, size } = &mut entry.kind else { continue };
        let how = strip_kind(source, &entry.path, layout)?;
        if let Some(args) = how {
            let copy = dir.join(entry.path.trim_start_matches('/'));
            std::fs::create_dir_all(copy.parent().expect("a file has a parent"))?;
            std::fs::copy(&*source, &copy)
                .with_context(|| format!("cannot copy {} for stripping", source.display()))?;
            let out = tool("strip", args.iter().copied().chain([copy.to_str().unwrap_or_default()]))
                .stdout_capture()
                .stderr_capture()
                .unchecked()
                .run()
                .context("cannot run strip (binutils)")?;
            if !out.status.success() {
                bail!("strip {} failed: {}", copy.display(), String::from_utf8_lossy(&out.stderr).trim());
            }
            if layout == PkgLayout::Rpm && !entry.path.ends_with(".a") {
                remove_run_path(&copy)?;
            }
            *size = std::fs::metadata(&copy)?.len();
            *source = copy;
        }
        // Debian wants shared libraries without the execute bit.
        if layout == PkgLayout::Deb && is_shared_library(&entry.path) {
            *mode = 0o644;
        }
    }
    let doc = format!("/usr/share/doc/{}", spec.name);
    let mut files = vec![(format!("{doc}/copyright"), copyright(installed, spec)?.into_bytes(), 0o644)];
    if layout == PkgLayout::Deb {
        files.push((format!("{doc}/changelog.Debian.gz"), gzip(changelog(spec, epoch).as_bytes())?, 0o644));
        let overrides = lintian_overrides(installed, spec);
        if !overrides.is_empty() {
            files.push((
                format!("/usr/share/lintian/overrides/{}", spec.name),
                overrides.into_bytes(),
                0o644,
            ));
        }
    }
    if layout == PkgLayout::Rpm && spec.is_server() {
        files.extend(super::service::rpm_files(spec.major, &layout.paths(spec.major)));
    }
    if spec.role == Role::Libs {
        let libdir = layout.paths(spec.major).libdir;
        files.push((super::spec::ld_so_conf(spec.major), format!("{libdir}\n").into_bytes(), 0o644));
    }
    for (path, bytes, mode) in files {
        let file = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().expect("a file has a parent"))?;
        std::fs::write(&file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
        spec.entries.push(Entry { path, kind: Kind::File { source: file, mode, size: bytes.len() as u64 } });
    }
    spec.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// `strip`'s arguments for a file of the package, or None to keep it as it
/// is: executables and shared objects lose their symbol tables and debug
/// information, as Debian's and Fedora's packaging tools do. Static
/// libraries lose their debug information in the .deb (deterministic
/// archive headers); the .rpm keeps it, as Fedora's tools do for static
/// libraries (rpmlint asks for it; its tree is built with `-g` for that).
fn strip_kind(source: &Path, path: &str, layout: PkgLayout) -> Result<Option<&'static [&'static str]>> {
    if path.ends_with(".a") {
        return Ok(match layout {
            PkgLayout::Deb => Some(&["--strip-debug", "--enable-deterministic-archives"]),
            PkgLayout::Rpm => None,
        });
    }
    if super::deps::is_elf(source)? {
        return Ok(Some(&["--strip-unneeded", "--remove-section=.comment", "--remove-section=.note"]));
    }
    Ok(None)
}

/// Deletes the run path of an ELF file of the .rpm (`chrpath --delete`):
/// the trees are linked with `$ORIGIN/../lib` so that they run wherever
/// they are unpacked, while PGDG's programs carry no run path and find
/// libpq through `/etc/ld.so.conf.d` (the `-libs` package's file).
fn remove_run_path(file: &Path) -> Result<()> {
    let out = tool("chrpath", [std::ffi::OsStr::new("--delete"), file.as_os_str()])
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run chrpath; install it (Debian: apt-get install chrpath)")?;
    if !out.status.success() {
        bail!(
            "chrpath --delete {} failed: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `libpq.so.5.18`, `spock.so`: a shared object by its name.
pub fn is_shared_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.find(".so") {
        Some(i) => {
            let rest = &name[i + 3..];
            rest.is_empty()
                || (rest.starts_with('.') && rest[1..].split('.').all(|p| p.parse::<u32>().is_ok()))
        }
        None => false,
    }
}

/// The copyright file: PostgreSQL's own for the server (from its source
/// tree), the project's notice under the same licence for the extension.
fn copyright(installed: &Installed, spec: &Spec) -> Result<String> {
    let postgresql = installed.dirs.src().join("COPYRIGHT");
    let text = std::fs::read_to_string(&postgresql)
        .with_context(|| format!("cannot read PostgreSQL's {}", postgresql.display()))?;
    Ok(if spec.role != Role::Extension {
        format!(
            "{}\n\nPostgreSQL {} with the spock core patches (patches/ of the spock project),\n\
             which are distributed under the same licence.\n\nPostgreSQL's copyright notice and licence:\n\n{text}",
            spec.name, spec.version
        )
    } else {
        let licence = text.split_once("\n\n").map_or(text.as_str(), |(_, rest)| rest);
        format!(
            "{}: the spock extension for PostgreSQL.\n\nCopyright (c) 2026, the spock project\n\n\
             It is distributed under the PostgreSQL Licence, whose terms, as PostgreSQL states them\n\
             for its own code, follow (with \"the spock project\" for the copyright holder):\n\n{licence}",
            spec.name
        )
    })
}

/// A one-entry Debian changelog for this build, dated `epoch`.
fn changelog(spec: &Spec, epoch: u64) -> String {
    let date = crate::utc::Utc::from_unix(epoch).rfc2822();
    format!(
        "{} ({}) unstable; urgency=medium\n\n  * {}.\n\n -- {MAINTAINER}  {date}\n",
        spec.name,
        spec.full_version(),
        spec.summary
    )
}

/// gzip without a file name or time in the header, at the highest level
/// (`gzip -9n`), so the same text gives the same bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}

/// Lintian tags kept on purpose, each with its reason (packaging/README.md
/// lists them too).
fn lintian_overrides(installed: &Installed, spec: &Spec) -> String {
    if !spec.is_server() {
        return String::new();
    }
    let libdir = installed.dirs.package.map(|l| l.paths(installed.dirs.major).libdir).unwrap_or_default();
    let mut text = String::from(
        "# These contrib modules call no C library function, so the linker records no\n\
         # dependency on libc; they are loaded into the server, which has it.\n",
    );
    for module in ["earthdistance.so", "sslinfo.so"] {
        let path = format!("{libdir}/{module}");
        if spec.entries.iter().any(|e| e.path == path) {
            text.push_str(&format!("{}: library-not-linked-against-libc [{}]\n", spec.name, &path[1..]));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_libraries_are_known_by_name() {
        assert!(is_shared_library("/usr/lib/postgresql/18/lib/libpq.so.5.18"));
        assert!(is_shared_library("/usr/lib/postgresql/18/lib/spock.so"));
        assert!(is_shared_library("/usr/lib/x86_64-linux-gnu/libpq.so.5"));
        assert!(!is_shared_library("/usr/lib/postgresql/18/bin/postgres"));
        assert!(!is_shared_library("/usr/share/doc/x/some.source"));
        assert!(!is_shared_library("/usr/lib/postgresql/18/lib/libpq.a"));
    }
}
