//! What each package is: names, versions and relations, and which files of a
//! layout's installed tree belong to which package (server and extension;
//! for .rpm also `-libs` and `-devel`). `packaging/README.md` documents the
//! same choices.

use std::collections::{BTreeMap, BTreeSet};
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

/// What a package holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The patched server; as a .deb also its client programs, shared
    /// libraries and development files (Debian's `postgresql-N` with its
    /// client and development packages stood in for).
    Server,
    /// The spock extension.
    Extension,
    /// .rpm only: the shared libraries (libpq, ECPG's), as PGDG's
    /// `postgresqlN-libs`.
    Libs,
    /// .rpm only: headers, static libraries, the unversioned library links,
    /// `pg_config`, `ecpg` and PGXS, as PGDG's `postgresqlN-devel`.
    Devel,
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
    /// What the package holds. The server package creates the `postgres`
    /// service account on installation, and as a .deb depends on
    /// `postgresql-common` and manages the major's clusters in its
    /// maintainer scripts.
    pub role: Role,
    /// The PostgreSQL major the package is for.
    pub major: u32,
}

impl Spec {
    pub fn full_version(&self) -> String {
        format!("{}-{}", self.version, self.revision)
    }

    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }
}

/// A package of the .rpm split beside the server (`-libs`, `-devel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    /// PGDG's package of the same files, stood in for and conflicted with.
    pub pgdg: String,
}

/// Package names of one major in one layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub server: String,
    pub extension: String,
    /// Provided only by our patched server; what the extension depends on.
    pub patched: String,
    /// The distribution's (or PGDG's) packages of the same major that own
    /// the same paths as the server package.
    pub conflicts: Vec<String>,
    /// The distribution's (or PGDG's) package names the server package
    /// stands in for, so that their extension packages install on it.
    pub stands_in: Vec<String>,
    /// .rpm only: the shared libraries' package.
    pub libs: Option<Part>,
    /// .rpm only: the development files' package.
    pub devel: Option<Part>,
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
            libs: None,
            devel: None,
        },
        PkgLayout::Rpm => {
            let pgdg = |suffix: &str| format!("postgresql{major}{suffix}");
            let server: Vec<String> = ["", "-server", "-contrib"].iter().map(|s| pgdg(s)).collect();
            let part =
                |suffix: &str| Part { name: format!("spock-postgresql{major}{suffix}"), pgdg: pgdg(suffix) };
            Names {
                server: format!("spock-postgresql{major}"),
                extension: format!("spock_{major}"),
                patched: format!("spock-patched-postgresql{major}"),
                conflicts: server.clone(),
                stands_in: server,
                libs: Some(part("-libs")),
                devel: Some(part("-devel")),
            }
        }
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

/// Which package of a layout an entry of the installed tree goes to. The
/// .deb has two packages; the .rpm splits the server's files as PGDG does:
/// the versioned shared libraries (`libpq.so.5.18` and its `libpq.so.5`
/// link) to `-libs`; headers, static libraries, the `lib*.so` links that
/// only the linker uses, PGXS, pkg-config files, `pg_config` and `ecpg` to
/// `-devel`.
pub fn role_of(entry: &Entry, layout: PkgLayout, paths: &LayoutPaths) -> Role {
    if is_extension_file(&entry.path, paths) {
        return Role::Extension;
    }
    if layout == PkgLayout::Deb {
        return Role::Server;
    }
    let path = entry.path.as_str();
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let below = |root: &str| path.starts_with(&format!("{root}/"));
    let is_link = matches!(entry.kind, Kind::Symlink { .. });
    if dir == paths.libdir && name.starts_with("lib") {
        if name.contains(".so.") {
            return Role::Libs;
        }
        // `libpqwalreceiver.so` is a server module, a file; `libpq.so` a link.
        if name.ends_with(".a") || (name.ends_with(".so") && is_link) {
            return Role::Devel;
        }
    }
    let bindir = paths.bindir();
    if below(&paths.includedir)
        || below(&format!("{}/pgxs", paths.libdir))
        || below(&format!("{}/pkgconfig", paths.libdir))
        || path == format!("{bindir}/pg_config")
        || path == format!("{bindir}/ecpg")
    {
        return Role::Devel;
    }
    Role::Server
}

/// The .rpm's `-libs` package's linker configuration, naming its library
/// directory (its programs carry no run path, as PGDG's). It is not put into
/// `/etc/ld.so.conf.d` itself: with several majors installed, the linker
/// would take `libpq.so.5` from whichever file sorts first. The package's
/// scriptlets make it one alternative of `LD_SO_CONF_LINK` instead, with
/// the major as priority, so the newest major's libpq serves every program
/// (libpq stays compatible within its soname), as PGDG's packages do.
pub fn ld_so_conf(major: u32) -> String {
    format!("{}/spock-postgresql{major}-libs.conf", PkgLayout::Rpm.paths(major).sharedir)
}

/// The link in `/etc/ld.so.conf.d` that `update-alternatives` manages.
pub const LD_SO_CONF_LINK: &str = "/etc/ld.so.conf.d/spock-libpq5.conf";

/// The name of that alternatives group: the link's own name, so that its
/// `/etc/alternatives` entry is `/etc/alternatives/spock-libpq5.conf`.
pub const LD_SO_CONF_GROUP: &str = "spock-libpq5.conf";

/// The packages of an installed package tree: the server and the extension
/// first, then (for .rpm) the libraries' and the development files'.
pub fn specs(installed: &Installed, layout: PkgLayout, epoch: u64) -> Result<Vec<Spec>> {
    let major = installed.dirs.major;
    let paths = layout.paths(major);
    let names = names(layout, major);
    let mut entries = collect(&installed.dirs.sysroot())?;
    if layout == PkgLayout::Rpm {
        link_identical_headers(&mut entries, &paths.includedir)?;
    }
    let mut parts: BTreeMap<Role, Vec<Entry>> = BTreeMap::new();
    for entry in entries {
        parts.entry(role_of(&entry, layout, &paths)).or_default().push(entry);
    }
    for wanted in
        [format!("{}/spock.so", paths.libdir), format!("{}/extension/spock.control", paths.sharedir)]
    {
        if !parts.get(&Role::Extension).is_some_and(|e| e.iter().any(|e| e.path == wanted)) {
            bail!(
                "{wanted} is missing from the package tree {}; rebuild it with `cargo xtask package` after `cargo xtask clean --pg {major}`",
                installed.dirs.sysroot().display()
            );
        }
    }
    let mut elf: BTreeMap<Role, deps::Elf> = BTreeMap::new();
    for (role, entries) in &parts {
        elf.insert(*role, deps::scan(entries.iter().filter_map(Entry::source))?);
    }
    // Libraries one package of the set carries are not asked of the system.
    let provided: BTreeSet<String> = elf.values().flat_map(|e| e.sonames.iter().cloned()).collect();
    let libraries = |role: Role| -> Vec<String> {
        elf.get(&role).map(|e| e.needed.difference(&provided).cloned().collect()).unwrap_or_default()
    };
    let mut take = |role: Role| parts.remove(&role).unwrap_or_default();

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
    let contents = match (&names.libs, &names.devel) {
        (Some(libs), Some(devel)) => format!(
            "the server, the client programs and the contrib modules (the shared libraries are in {}, the \
             development files in {})",
            libs.name, devel.name
        ),
        _ => "the server, the client programs, the contrib modules, the development headers and pg_config"
            .into(),
    };
    // The server's programs need the libraries of exactly this build.
    let libs_dep = names.libs.as_ref().map(|libs| Dep::eq(&libs.name, &server_full));
    let server = Spec {
        name: names.server.clone(),
        version: pg_version.clone(),
        revision: revision.clone(),
        summary: format!("PostgreSQL {major} server with the spock core patches"),
        description: format!(
            "PostgreSQL {pg_version} (reporting itself as {pg_version}{extra}): {contents}, built with the \
             spock core patches ({patch_list}) that the spock extension needs. Installed below {prefix}; it \
             replaces the distribution's PostgreSQL {major} packages.",
            extra = installed.core.extra_version,
            prefix = paths.prefix,
        ),
        depends: libs_dep.iter().cloned().collect(),
        libraries: libraries(Role::Server),
        provides,
        conflicts: names.conflicts.clone(),
        replaces: names.conflicts.clone(),
        entries: take(Role::Server),
        owns_below: Some(paths.prefix.clone()),
        role: Role::Server,
        major,
    };
    let ext_version = extension_version(installed)?;
    let extension = Spec {
        name: names.extension.clone(),
        version: ext_version,
        revision: revision.clone(),
        summary: format!("Multi-master logical replication for PostgreSQL {major} (the spock extension)"),
        description: format!(
            "The spock extension: multi-master logical replication with automatic DDL replication and \
             conflict resolution, for the patched PostgreSQL {major} of package {}. Load it with \
             shared_preload_libraries = 'spock' and run CREATE EXTENSION spock.",
            names.server
        ),
        depends: vec![Dep::any(&names.patched)],
        libraries: libraries(Role::Extension),
        provides: Vec::new(),
        conflicts: Vec::new(),
        replaces: Vec::new(),
        entries: take(Role::Extension),
        owns_below: None,
        role: Role::Extension,
        major,
    };
    let mut out = vec![server, extension];
    let part = |part: &Part, role: Role, summary: String, description: String, entries: Vec<Entry>| Spec {
        name: part.name.clone(),
        version: pg_version.clone(),
        revision: revision.clone(),
        summary,
        description,
        depends: if role == Role::Devel { libs_dep.iter().cloned().collect() } else { Vec::new() },
        libraries: libraries(role),
        provides: vec![Dep::eq(&part.pgdg, &pg_version)],
        conflicts: vec![part.pgdg.clone()],
        replaces: vec![part.pgdg.clone()],
        entries,
        owns_below: Some(paths.prefix.clone()),
        role,
        major,
    };
    if let Some(libs) = &names.libs {
        out.push(part(
            libs,
            Role::Libs,
            format!("PostgreSQL {major} shared libraries with the spock core patches"),
            format!(
                "libpq and the ECPG libraries of PostgreSQL {pg_version} with the spock core patches, in \
                 {libdir}, which {link} (an alternative managed by update-alternatives; the newest \
                 installed major's is used) adds to the dynamic linker's search path. The programs of \
                 {server} and client programs built against {devel} need them.",
                libdir = paths.libdir,
                link = LD_SO_CONF_LINK,
                server = names.server,
                devel = names.devel.as_ref().map_or("", |d| d.name.as_str()),
            ),
            take(Role::Libs),
        ));
    }
    if let Some(devel) = &names.devel {
        out.push(part(
            devel,
            Role::Devel,
            format!("PostgreSQL {major} development files with the spock core patches"),
            format!(
                "The headers, static libraries, pg_config, ecpg and the PGXS build files of PostgreSQL \
                 {pg_version} with the spock core patches, to build extensions for {} and client programs.",
                names.server
            ),
            take(Role::Devel),
        ));
    }
    if let Some((role, _)) = parts.iter().next() {
        bail!(
            "files of the package tree were given to the {role:?} package, which {} does not make",
            layout.name()
        );
    }
    Ok(out)
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
/// sorted by path. Files the install made as hard links of one another
/// (`zic`'s time zones: `US/Eastern` and `America/New_York`) become
/// relative symbolic links to the first of them by path, so a package
/// carries their contents once.
pub fn collect(sysroot: &Path) -> Result<Vec<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    walk(sysroot, sysroot, &mut out)?;
    if out.is_empty() {
        bail!("{} holds no files; the package tree's install did not finish", sysroot.display());
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    let mut first_of: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for entry in out.iter_mut() {
        let Kind::File { source, .. } = &entry.kind else { continue };
        let meta = std::fs::metadata(source).with_context(|| format!("cannot read {}", source.display()))?;
        if meta.nlink() < 2 {
            continue;
        }
        match first_of.get(&(meta.dev(), meta.ino())) {
            Some(first) => entry.kind = Kind::Symlink { target: relative_link(&entry.path, first) },
            None => {
                first_of.insert((meta.dev(), meta.ino()), entry.path.clone());
            }
        }
    }
    Ok(out)
}

/// Headers PostgreSQL installs twice with the same contents (`c.h`,
/// `port.h`, `pg_config.h`, ... in `include/`, `include/internal/` and
/// `include/server/`) become relative symbolic links to the first of them
/// by path, as rpmlint asks (the .rpm's `-devel` carries them once). A
/// compiler reads a header through a link as if it were there: quoted
/// includes are looked up beside the link.
fn link_identical_headers(entries: &mut [Entry], includedir: &str) -> Result<()> {
    let mut first_of: BTreeMap<String, String> = BTreeMap::new();
    for entry in entries.iter_mut() {
        let Kind::File { source, size, .. } = &entry.kind else { continue };
        if *size == 0 || !entry.path.starts_with(&format!("{includedir}/")) {
            continue;
        }
        let digest = crate::fsutil::sha256_file(source)?;
        match first_of.get(&digest) {
            Some(first) => entry.kind = Kind::Symlink { target: relative_link(&entry.path, first) },
            None => {
                first_of.insert(digest, entry.path.clone());
            }
        }
    }
    Ok(())
}

/// The relative target of a symbolic link at absolute path `link` that
/// points to absolute path `target`.
fn relative_link(link: &str, target: &str) -> String {
    let from: Vec<&str> = link.trim_start_matches('/').split('/').collect();
    let to: Vec<&str> = target.trim_start_matches('/').split('/').collect();
    let from_dir = &from[..from.len() - 1];
    let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from_dir.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
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
        assert!(deb.libs.is_none() && rpm.libs.is_some());
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
    fn hard_links_become_relative_links() {
        assert_eq!(
            relative_link("/usr/share/tz/US/Eastern", "/usr/share/tz/America/New_York"),
            "../America/New_York"
        );
        assert_eq!(
            relative_link("/usr/share/tz/EST5EDT", "/usr/share/tz/America/New_York"),
            "America/New_York"
        );
        assert_eq!(relative_link("/usr/share/tz/US/Eastern", "/usr/share/tz/US/Central"), "Central");
        let dir = tempfile::tempdir().unwrap();
        let tz = dir.path().join("usr/share/tz");
        std::fs::create_dir_all(tz.join("US")).unwrap();
        std::fs::create_dir_all(tz.join("America")).unwrap();
        std::fs::write(tz.join("America/New_York"), "zone").unwrap();
        std::fs::hard_link(tz.join("America/New_York"), tz.join("US/Eastern")).unwrap();
        std::fs::write(tz.join("UTC"), "utc").unwrap();
        let entries = collect(dir.path()).unwrap();
        let kinds: Vec<(&str, bool)> =
            entries.iter().map(|e| (e.path.as_str(), matches!(e.kind, Kind::File { .. }))).collect();
        assert_eq!(
            kinds,
            [
                ("/usr/share/tz/America/New_York", true),
                ("/usr/share/tz/US/Eastern", false),
                ("/usr/share/tz/UTC", true)
            ]
        );
        assert_eq!(entries[1].kind, Kind::Symlink { target: "../America/New_York".into() });
    }

    #[test]
    fn the_rpm_splits_the_server_as_pgdg_does() {
        let rpm = PkgLayout::Rpm.paths(18);
        let f = |path: &str| Entry {
            path: path.into(),
            kind: Kind::File { source: PathBuf::from("/x"), mode: 0o644, size: 0 },
        };
        let role = |e: Entry| role_of(&e, PkgLayout::Rpm, &rpm);
        assert_eq!(role(f("/usr/pgsql-18/lib/libpq.so.5.18")), Role::Libs);
        assert_eq!(role(file("/usr/pgsql-18/lib/libpq.so.5")), Role::Libs);
        assert_eq!(role(file("/usr/pgsql-18/lib/libpq.so")), Role::Devel);
        assert_eq!(role(f("/usr/pgsql-18/lib/libpqwalreceiver.so")), Role::Server);
        assert_eq!(role(f("/usr/pgsql-18/lib/libpgport.a")), Role::Devel);
        assert_eq!(role(f("/usr/pgsql-18/lib/pgxs/src/Makefile.global")), Role::Devel);
        assert_eq!(role(f("/usr/pgsql-18/include/server/postgres.h")), Role::Devel);
        assert_eq!(role(f("/usr/pgsql-18/bin/pg_config")), Role::Devel);
        assert_eq!(role(f("/usr/pgsql-18/bin/psql")), Role::Server);
        assert_eq!(role(f("/usr/pgsql-18/lib/spock.so")), Role::Extension);
        let deb = PkgLayout::Deb.paths(18);
        assert_eq!(
            role_of(&f("/usr/lib/postgresql/18/lib/libpq.so.5.18"), PkgLayout::Deb, &deb),
            Role::Server
        );
        let names = names(PkgLayout::Rpm, 18);
        assert_eq!(names.libs.unwrap().pgdg, "postgresql18-libs");
        assert_eq!(names.devel.unwrap().name, "spock-postgresql18-devel");
        assert!(!names.conflicts.contains(&"postgresql18-libs".to_string()));
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
