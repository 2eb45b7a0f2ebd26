//! What each package is: names, versions and relations, and which files of a
//! layout's installed tree belong to the server package and which to the
//! extension package. `packaging/README.md` documents the same choices.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::deps;
use crate::layout::{LayoutPaths, PkgLayout};
use crate::pgbuild::Installed;

/// Bumped when the packaging of the same upstream version changes.
pub const REVISION: &str = "1";

/// The package revision of a build: `REVISION`, a dot, and the UTC time of
/// `SOURCE_DATE_EPOCH` (the last commit's, by default) as `YYYYMMDDhhmmss`.
/// Every commit (a changed patch, a changed extension) gives a later time,
/// so a newer build of the same versions sorts after an older one in dpkg
/// and rpm alike; the same commit built twice gives the same version.
pub fn revision(epoch: u64) -> String {
    format!("{REVISION}.{}", crate::utc::Utc::from_unix(epoch).compact())
}

pub const LICENSE: &str = "PostgreSQL";
pub const VENDOR: &str = "the spock project";
pub const MAINTAINER: &str = "spock developers <spock@packages.invalid>";

/// One file or symbolic link of a package (directories are implied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path on the target system: `/usr/lib/postgresql/18/bin/postgres`.
    pub path: String,
    pub kind: Kind,
}

impl Entry {
    /// The file in the installed tree this entry is read from (none for a
    /// symbolic link).
    pub fn source(&self) -> Option<&Path> {
        match &self.kind {
            Kind::File { source, .. } => Some(source),
            Kind::Symlink { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file; its mode is normalised to 0755 (any execute bit) or
    /// 0644, so that the packages do not depend on the builder's umask.
    File {
        source: PathBuf,
        mode: u32,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

/// A relation to another package, with an optional version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    /// `=` or `>=` and the version.
    pub version: Option<(&'static str, String)>,
}

impl Dep {
    pub fn any(name: impl Into<String>) -> Dep {
        Dep { name: name.into(), version: None }
    }
    pub fn eq(name: impl Into<String>, version: impl Into<String>) -> Dep {
        Dep { name: name.into(), version: Some(("=", version.into())) }
    }
}

/// One package, independent of the archive format.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// The upstream version (PostgreSQL's, or the extension's).
    pub version: String,
    pub revision: String,
    pub summary: String,
    pub description: String,
    /// Packages this one needs (besides shared libraries).
    pub depends: Vec<Dep>,
    /// Shared libraries (sonames) needed from outside the package set.
    pub libraries: Vec<String>,
    pub provides: Vec<Dep>,
    pub conflicts: Vec<String>,
    /// Packages whose files this one may overwrite (.deb `Replaces`).
    pub replaces: Vec<String>,
    pub entries: Vec<Entry>,
    /// The directory whose subtree the package owns (RPM lists owned
    /// directories; .deb archives carry every parent directory anyway).
    pub owns_below: Option<String>,
    /// The server package: it creates the `postgres` service account on
    /// installation, and as a .deb depends on `postgresql-common` and
    /// manages the major's clusters in its maintainer scripts.
    pub is_server: bool,
    /// The PostgreSQL major the package is for.
    pub major: u32,
}

impl Spec {
    pub fn full_version(&self) -> String {
        format!("{}-{}", self.version, self.revision)
    }
}

/// Package names of one major in one layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub server: String,
    pub extension: String,
    /// Provided only by our patched server; what the extension depends on.
    pub patched: String,
    /// The distribution's (or PGDG's) packages of the same major that own
    /// the same paths.
    pub conflicts: Vec<String>,
    /// The distribution's (or PGDG's) package names the server package
    /// stands in for, so that their extension packages install on it.
    pub stands_in: Vec<String>,
}

pub fn names(layout: PkgLayout, major: u32) -> Names {
    match layout {
        PkgLayout::Deb => Names {
            server: format!("spock-postgresql-{major}"),
            extension: format!("postgresql-{major}-spock"),
            patched: format!("spock-patched-postgresql-{major}"),
            conflicts: vec![
                format!("postgresql-{major}"),
                format!("postgresql-client-{major}"),
                format!("postgresql-server-dev-{major}"),
            ],
            stands_in: vec![
                format!("postgresql-{major}"),
                format!("postgresql-client-{major}"),
                format!("postgresql-contrib-{major}"),
                format!("postgresql-server-dev-{major}"),
            ],
        },
        PkgLayout::Rpm => Names {
            server: format!("spock-postgresql{major}"),
            extension: format!("spock_{major}"),
            patched: format!("spock-patched-postgresql{major}"),
            conflicts: ["", "-server", "-libs", "-contrib", "-devel"]
                .iter()
                .map(|s| format!("postgresql{major}{s}"))
                .collect(),
            stands_in: ["", "-server", "-libs", "-contrib", "-devel"]
                .iter()
                .map(|s| format!("postgresql{major}{s}"))
                .collect(),
        },
    }
}

/// Whether a path of the layout belongs to the extension package: the
/// library (and its output-plugin alias) and the extension's control and
/// SQL script files.
pub fn is_extension_file(path: &str, paths: &LayoutPaths) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (dir == paths.libdir && (name == "spock.so" || name == "spock_output.so"))
        || (dir == format!("{}/extension", paths.sharedir)
            && (name == "spock.control" || (name.starts_with("spock--") && name.ends_with(".sql"))))
}

/// The server and extension packages of an installed package tree.
pub fn specs(installed: &Installed, layout: PkgLayout, epoch: u64) -> Result<(Spec, Spec)> {
    let major = installed.dirs.major;
    let paths = layout.paths(major);
    let names = names(layout, major);
    let entries = collect(&installed.dirs.sysroot())?;
    let (ext_entries, server_entries): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| is_extension_file(&e.path, &paths));
    for wanted in
        [format!("{}/spock.so", paths.libdir), format!("{}/extension/spock.control", paths.sharedir)]
    {
        if !ext_entries.iter().any(|e| e.path == wanted) {
            bail!(
                "{wanted} is missing from the package tree {}; rebuild it with `cargo xtask package` after `cargo xtask clean --pg {major}`",
                installed.dirs.sysroot().display()
            );
        }
    }
    let server_elf = deps::scan(server_entries.iter().filter_map(Entry::source))?;
    let ext_elf = deps::scan(ext_entries.iter().filter_map(Entry::source))?;
    let server_libs: Vec<String> = server_elf.needed.difference(&server_elf.sonames).cloned().collect();
    let provided: BTreeSet<String> = server_elf.sonames.union(&ext_elf.sonames).cloned().collect();
    let ext_libs: Vec<String> = ext_elf.needed.difference(&provided).cloned().collect();

    let pg_version = installed.core.postgresql_version.clone();
    let revision = revision(epoch);
    let server_full = format!("{pg_version}-{revision}");
    // Stand-ins at PostgreSQL's version, so that versioned dependencies
    // of the distribution's extension packages are met too.
    let mut provides = vec![Dep::eq(&names.patched, &server_full)];
    provides.extend(names.stands_in.iter().map(|n| Dep::eq(n, &pg_version)));
    if layout == PkgLayout::Deb
        && let Some(llvm) = deps::distribution_jit_llvm(major)
    {
        // Debian's extension packages need `postgresql-N-jit-llvm (>= L)`
        // so that their JIT bitcode matches the server's LLVM. This server
        // is built without JIT and never loads that bitcode; it provides
        // the name at the LLVM version of the distribution's own server.
        provides.push(Dep::eq(format!("postgresql-{major}-jit-llvm"), llvm));
    }
    let patch_list = installed.core.patches.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
    let server = Spec {
        name: names.server.clone(),
        version: pg_version.clone(),
        revision: revision.clone(),
        summary: format!("PostgreSQL {major} server with the spock core patches"),
        description: format!(
            "PostgreSQL {pg_version} (reporting itself as {pg_version}{extra}): the server, the client \
             programs, the contrib modules, the development headers and pg_config, built with the spock \
             core patches ({patch_list}) that the spock extension needs. Installed below {prefix}; it \
             replaces the distribution's PostgreSQL {major} packages.",
            extra = installed.core.extra_version,
            prefix = paths.prefix,
        ),
        depends: Vec::new(),
        libraries: server_libs,
        provides,
        conflicts: names.conflicts.clone(),
        replaces: names.conflicts.clone(),
        entries: server_entries,
        owns_below: Some(paths.prefix.clone()),
        is_server: true,
        major,
    };
    let ext_version = extension_version(installed)?;
    let extension = Spec {
        name: names.extension.clone(),
        version: ext_version,
        revision,
        summary: format!("spock multi-master logical replication for PostgreSQL {major}"),
        description: format!(
            "The spock extension: multi-master logical replication with automatic DDL replication and \
             conflict resolution, for the patched PostgreSQL {major} of package {}. Load it with \
             shared_preload_libraries = 'spock' and run CREATE EXTENSION spock.",
            names.server
        ),
        depends: vec![Dep::any(&names.patched)],
        libraries: ext_libs,
        provides: Vec::new(),
        conflicts: Vec::new(),
        replaces: Vec::new(),
        entries: ext_entries,
        owns_below: None,
        is_server: false,
        major,
    };
    Ok((server, extension))
}

/// The version of the spock extension installed in a tree: the
/// `default_version` of its control file (a release's tree holds an older
/// one than the checkout).
pub fn extension_version(installed: &Installed) -> Result<String> {
    let control = installed.sharedir()?.join("extension").join("spock.control");
    let text =
        std::fs::read_to_string(&control).with_context(|| format!("cannot read {}", control.display()))?;
    control_default_version(&text).with_context(|| format!("{} names no default_version", control.display()))
}

fn control_default_version(control: &str) -> Option<String> {
    control.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "default_version").then(|| value.trim().trim_matches('\'').to_string())
    })
}

/// Every file and symbolic link below `sysroot`, as target-system paths,
/// sorted by path.
pub fn collect(sysroot: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(sysroot, sysroot, &mut out)?;
    if out.is_empty() {
        bail!("{} holds no files; the package tree's install did not finish", sysroot.display());
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let source = entry.path();
        let meta = std::fs::symlink_metadata(&source)?;
        let rel = source.strip_prefix(root).expect("below the root");
        let path =
            format!("/{}", rel.to_str().with_context(|| format!("{} is not UTF-8", source.display()))?);
        if meta.is_dir() {
            walk(root, &source, out)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&source)?;
            out.push(Entry { path, kind: Kind::Symlink { target: target.to_string_lossy().into_owned() } });
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            out.push(Entry { path, kind: Kind::File { source, mode, size: meta.len() } });
        } else {
            bail!("{} is neither a file, a directory nor a symbolic link", source.display());
        }
    }
    Ok(())
}

/// Every directory above the entries' paths, up to and excluding `/`,
/// sorted; with `below`, only that directory and those inside it.
pub fn parent_dirs(entries: &[Entry], below: Option<&str>) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    for e in entries {
        let mut path = e.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            dirs.insert(parent.to_string());
            path = parent;
        }
    }
    dirs.into_iter().filter(|d| below.is_none_or(|b| d == b || d.starts_with(&format!("{b}/")))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry { path: path.into(), kind: Kind::Symlink { target: "x".into() } }
    }

    #[test]
    fn names_carry_a_prefix_and_conflict_with_the_distribution() {
        let deb = names(PkgLayout::Deb, 18);
        assert_eq!(deb.server, "spock-postgresql-18");
        assert_eq!(deb.extension, "postgresql-18-spock");
        assert!(deb.conflicts.contains(&"postgresql-18".to_string()));
        assert!(!deb.conflicts.contains(&deb.patched));
        let rpm = names(PkgLayout::Rpm, 15);
        assert_eq!(rpm.server, "spock-postgresql15");
        assert_eq!(rpm.extension, "spock_15");
        assert!(rpm.conflicts.contains(&"postgresql15-server".to_string()));
        assert!(rpm.patched.contains("15") && rpm.patched.starts_with("spock-"));
    }

    #[test]
    fn revisions_carry_the_commit_time() {
        assert_eq!(revision(0), "1.19700101000000");
        // 2026-12-03 01:15:07 UTC
        assert_eq!(revision(1_796_260_507), "1.20261203011507");
        // A leap day.
        assert_eq!(revision(951_782_400), "1.20000229000000");
    }

    /// dpkg sorts a later build of the same versions, a new minor and a new
    /// extension version after the older ones (where dpkg is installed).
    #[test]
    fn newer_builds_sort_after_older_ones() {
        let cmp = |a: &str, b: &str| {
            crate::cmd::tool("dpkg", ["--compare-versions", a, "lt", b])
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run()
                .map(|o| o.status.success())
        };
        let (older, newer) = (revision(1_796_260_507), revision(1_796_260_508));
        let pairs = [
            (format!("18.6-{older}"), format!("18.6-{newer}")),
            (format!("18.6-{newer}"), format!("18.7-{older}")),
            (format!("0.1.0-{newer}"), format!("0.2.0-{older}")),
            ("18.6-1".to_string(), format!("18.6-{older}")),
        ];
        for (a, b) in &pairs {
            match cmp(a, b) {
                Ok(lt) => assert!(lt, "dpkg does not sort {a} before {b}"),
                Err(_) => {
                    eprintln!("dpkg is not installed: version order not checked");
                    return;
                }
            }
        }
    }

    #[test]
    fn extension_files_are_told_apart_from_the_server() {
        let deb = PkgLayout::Deb.paths(18);
        assert!(is_extension_file("/usr/lib/postgresql/18/lib/spock.so", &deb));
        assert!(is_extension_file("/usr/lib/postgresql/18/lib/spock_output.so", &deb));
        assert!(is_extension_file("/usr/share/postgresql/18/extension/spock.control", &deb));
        assert!(is_extension_file("/usr/share/postgresql/18/extension/spock--0.1.0.sql", &deb));
        assert!(!is_extension_file("/usr/lib/postgresql/18/lib/pgoutput.so", &deb));
        assert!(!is_extension_file("/usr/share/postgresql/18/extension/plpgsql.control", &deb));
        assert!(!is_extension_file("/usr/share/postgresql/18/spock-core-patches.json", &deb));
        let rpm = PkgLayout::Rpm.paths(18);
        assert!(is_extension_file("/usr/pgsql-18/lib/spock.so", &rpm));
        assert!(!is_extension_file("/usr/lib/postgresql/18/lib/spock.so", &rpm));
    }

    #[test]
    fn parent_dirs_are_listed_once_and_can_be_limited() {
        let entries = [
            file("/usr/pgsql-18/bin/postgres"),
            file("/usr/pgsql-18/bin/psql"),
            file("/usr/pgsql-18/lib/x.so"),
        ];
        assert_eq!(
            parent_dirs(&entries, None),
            ["/usr", "/usr/pgsql-18", "/usr/pgsql-18/bin", "/usr/pgsql-18/lib"]
        );
        assert_eq!(
            parent_dirs(&entries, Some("/usr/pgsql-18")),
            ["/usr/pgsql-18", "/usr/pgsql-18/bin", "/usr/pgsql-18/lib"]
        );
    }

    #[test]
    fn the_extension_version_comes_from_the_control_file() {
        let control = "# spock\ncomment = 'x = y'\ndefault_version = '0.1.0'\nschema = spock\n";
        assert_eq!(control_default_version(control).as_deref(), Some("0.1.0"));
        assert_eq!(control_default_version("comment = 'none'\n"), None);
    }
}
