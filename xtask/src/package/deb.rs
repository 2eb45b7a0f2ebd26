//! A small, deterministic .deb writer: an `ar` archive of `debian-binary`,
//! `control.tar.gz` and `data.tar.gz`, with every timestamp clamped to
//! `SOURCE_DATE_EPOCH`, owners root:root and entries in sorted order, so the
//! same files give the same bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};

use super::deps;
use super::spec::{Dep, Entry, Kind, MAINTAINER, Spec, parent_dirs};

/// The package's file name: `name_version-revision_arch.deb`.
pub fn file_name(spec: &Spec, arch: &str) -> String {
    format!("{}_{}_{arch}.deb", spec.name, spec.full_version())
}

/// Writes the package into `out` and returns its path.
pub fn write(spec: &Spec, epoch: u64, out: &Path) -> Result<PathBuf> {
    let (arch, _) = super::arch()?;
    let data = data_tar(&spec.entries, epoch)?;
    let mut depends: Vec<Dep> = spec.depends.clone();
    if spec.is_server() {
        // The cluster tools (pg_createcluster, pg_ctlcluster, pg_wrapper) and
        // the service units, at the version Debian's own server packages of
        // bookworm require.
        depends.push(Dep { name: "postgresql-common".into(), version: Some((">=", "241~".into())) });
    }
    let files: Vec<&Path> = spec.entries.iter().filter_map(Entry::source).collect();
    depends.extend(
        deps::deb_depends(&spec.libraries, &files)?
            .into_iter()
            .map(|(name, version)| Dep { name, version: version.map(|v| (">=", v)) }),
    );
    let control = control_text(spec, arch, &depends, installed_size_kib(&spec.entries));
    let mut control_files: Vec<(&str, Vec<u8>, u32)> =
        vec![("control", control.into_bytes(), 0o644), ("md5sums", data.md5sums.into_bytes(), 0o644)];
    if spec.is_server() {
        for (name, script) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
            control_files.push((
                name,
                script.replace("@MAJOR@", &spec.major.to_string()).into_bytes(),
                0o755,
            ));
        }
    }
    let control_tar = control_tar(&control_files, epoch)?;
    let deb = ar(
        &[("debian-binary", b"2.0\n"), ("control.tar.gz", &control_tar), ("data.tar.gz", &data.tar)],
        epoch,
    );
    let path = out.join(file_name(spec, arch));
    super::publish(&path, &deb)?;
    Ok(path)
}

/// The server's `postinst`: on `configure`, the `postgres` account if it
/// is missing (postgresql-common normally made it already); on a first
/// installation the cluster `<major>/main`, as Debian's server packages make
/// it, unless `create_main_cluster` is off in postgresql-common's
/// `createcluster.conf` or the major has a cluster already; apt's list of
/// packages not to auto-remove; then the major's clusters whose
/// `start.conf` says `auto` are started (after an upgrade, on the new
/// binaries). Nothing is done when dpkg installs into another root
/// (`DPKG_ROOT`), whose accounts and clusters are not this system's.
const POSTINST: &str = r#"#!/bin/sh
set -e
major=@MAJOR@
[ "$1" = configure ] || exit 0
[ -z "${DPKG_ROOT:-}" ] || exit 0
if ! getent passwd postgres >/dev/null; then
    getent group postgres >/dev/null || groupadd --system postgres
    useradd --system --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash \
        --comment "PostgreSQL administrator" postgres
fi
command -v pg_createcluster >/dev/null || exit 0
if [ -z "$2" ] && ! ls /etc/postgresql/$major/*/postgresql.conf >/dev/null 2>&1; then
    create=$(pg_conftool /etc/postgresql-common/createcluster.conf show -bs create_main_cluster 2>/dev/null || true)
    if [ "$create" != off ]; then
        pg_createcluster -u postgres $major main ||
            echo "spock-postgresql-$major: the cluster $major/main could not be created; make one with: pg_createcluster $major main --start" >&2
    fi
fi
if [ -x /usr/share/postgresql-common/pg_updateaptconfig ]; then
    /usr/share/postgresql-common/pg_updateaptconfig
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
for conf in /etc/postgresql/$major/*/start.conf; do
    [ -e "$conf" ] || continue
    cluster=$(basename "$(dirname "$conf")")
    if [ "$(sed -e 's/#.*//' "$conf" | tr -d '[:space:]')" = auto ]; then
        pg_ctlcluster $major "$cluster" status >/dev/null 2>&1 || pg_ctlcluster $major "$cluster" start
    fi
done
exit 0
"#;

/// The server's `prerm`: stops the major's running clusters before their
/// files are replaced (upgrade) or removed, as Debian's server packages do;
/// on `remove`, removes the dictionary links postgresql-common made in the
/// package's directory and updates apt's list of packages not to
/// auto-remove. A
/// cluster that does not stop fails the script, so its binaries are not
/// changed under it.
const PRERM: &str = r#"#!/bin/sh
set -e
major=@MAJOR@
[ -z "${DPKG_ROOT:-}" ] || exit 0
command -v pg_lsclusters >/dev/null || exit 0
for cluster in $(pg_lsclusters -h | awk -v major=$major '$1 == major && $4 ~ /^online/ { print $2 }'); do
    pg_ctlcluster $major "$cluster" stop
done
if [ "$1" = remove ]; then
    # The dictionary links postgresql-common's trigger put into the package's
    # tsearch_data directory go with it.
    if [ -d /usr/share/postgresql/$major/tsearch_data ]; then
        find /usr/share/postgresql/$major/tsearch_data -type l \( -name '*.dict' -o -name '*.affix' \) -delete
    fi
    if [ -x /usr/share/postgresql-common/pg_updateaptconfig ]; then
        /usr/share/postgresql-common/pg_updateaptconfig
    fi
fi
exit 0
"#;

/// The server's `postrm`: `remove` keeps the clusters (configuration, data
/// and logs); `purge` drops every cluster of the major with
/// `pg_dropcluster`, as Debian's server packages do when purged
/// non-interactively. Without postgresql-common it says what is left.
const POSTRM: &str = r#"#!/bin/sh
set -e
major=@MAJOR@
[ "$1" = purge ] || exit 0
[ -z "${DPKG_ROOT:-}" ] || exit 0
[ -d /etc/postgresql/$major ] || exit 0
for conf in /etc/postgresql/$major/*/postgresql.conf; do
    [ -e "$conf" ] || continue
    cluster=$(basename "$(dirname "$conf")")
    if command -v pg_dropcluster >/dev/null; then
        echo "Dropping the cluster $major/$cluster and its data..."
        pg_dropcluster --stop $major "$cluster"
    else
        echo "postgresql-common is gone, so the cluster $major/$cluster stays: remove /etc/postgresql/$major/$cluster and its data directory by hand" >&2
    fi
done
for dir in /etc/postgresql/$major /var/lib/postgresql/$major /var/log/postgresql/$major; do
    [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
done
exit 0
"#;

fn render_deps(deps: &[Dep]) -> String {
    deps.iter()
        .map(|d| match &d.version {
            Some((op, v)) => format!("{} ({op} {v})", d.name),
            None => d.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `control` file.
pub fn control_text(spec: &Spec, arch: &str, depends: &[Dep], installed_size: u64) -> String {
    let mut text = format!(
        "Package: {}\nVersion: {}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\nInstalled-Size: {installed_size}\n",
        spec.name,
        spec.full_version()
    );
    let relations = [
        ("Depends", render_deps(depends)),
        ("Provides", render_deps(&spec.provides)),
        ("Conflicts", spec.conflicts.join(", ")),
        ("Replaces", spec.replaces.join(", ")),
    ];
    for (field, value) in relations {
        if !value.is_empty() {
            text.push_str(&format!("{field}: {value}\n"));
        }
    }
    text.push_str(&format!("Section: database\nPriority: optional\nDescription: {}\n", spec.summary));
    for line in wrap(&spec.description, 72) {
        text.push_str(&format!(" {line}\n"));
    }
    text
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// dpkg's estimate: the sum of the files' sizes in KiB, rounded up per file.
fn installed_size_kib(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.kind {
            Kind::File { size, .. } => size.div_ceil(1024),
            Kind::Symlink { .. } => 1,
        })
        .sum()
}

struct DataTar {
    tar: Vec<u8>,
    md5sums: String,
}

fn header(kind: tar::EntryType, mode: u32, size: u64, epoch: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(epoch);
    h.set_uid(0);
    h.set_gid(0);
    h.set_username("root").expect("short name");
    h.set_groupname("root").expect("short name");
    h
}

fn gz_tar() -> tar::Builder<GzEncoder<Vec<u8>>> {
    // The gzip header carries no file name and a zero time.
    tar::Builder::new(GzEncoder::new(Vec::new(), Compression::new(6)))
}

fn data_tar(entries: &[Entry], epoch: u64) -> Result<DataTar> {
    let mut tar = gz_tar();
    let mut md5sums = String::new();
    tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0, epoch), "./", std::io::empty())?;
    for dir in parent_dirs(entries, None) {
        tar.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0, epoch),
            format!(".{dir}/"),
            std::io::empty(),
        )?;
    }
    for e in entries {
        let name = format!(".{}", e.path);
        match &e.kind {
            Kind::File { source, mode, size } => {
                let bytes =
                    std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
                anyhow::ensure!(
                    bytes.len() as u64 == *size,
                    "{} changed while being packaged",
                    source.display()
                );
                md5sums.push_str(&format!("{}  {}\n", hex::encode(Md5::digest(&bytes)), &e.path[1..]));
                tar.append_data(
                    &mut header(tar::EntryType::Regular, *mode, *size, epoch),
                    &name,
                    bytes.as_slice(),
                )?;
            }
            Kind::Symlink { target } => {
                tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0, epoch), &name, target)?;
            }
        }
    }
    Ok(DataTar { tar: tar.into_inner()?.finish()?, md5sums })
}

fn control_tar(files: &[(&str, Vec<u8>, u32)], epoch: u64) -> Result<Vec<u8>> {
    let mut tar = gz_tar();
    tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0, epoch), "./", std::io::empty())?;
    for (name, bytes, mode) in files {
        let mut h = header(tar::EntryType::Regular, *mode, bytes.len() as u64, epoch);
        tar.append_data(&mut h, format!("./{name}"), bytes.as_slice())?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// A System V `ar` archive as dpkg reads it: 60-byte member headers, members
/// padded to an even length.
pub fn ar(members: &[(&str, &[u8])], epoch: u64) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", name, epoch, 0, 0, "100644", data.len());
        debug_assert_eq!(header.len(), 60);
        out.write_all(header.as_bytes()).expect("writing to memory");
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "spock-postgresql-18".into(),
            version: "18.6".into(),
            revision: "1".into(),
            summary: "a summary".into(),
            description: "word ".repeat(40),
            depends: vec![Dep::any("libc6")],
            libraries: Vec::new(),
            provides: vec![Dep::eq("spock-patched-postgresql-18", "18.6-1")],
            conflicts: vec!["postgresql-18".into()],
            replaces: vec!["postgresql-18".into()],
            entries: Vec::new(),
            owns_below: None,
            role: crate::package::spec::Role::Server,
            major: 18,
        }
    }

    #[test]
    fn control_file_has_the_relations_and_a_folded_description() {
        let s = spec();
        let text = control_text(&s, "amd64", &s.depends, 7);
        assert!(text.starts_with("Package: spock-postgresql-18\nVersion: 18.6-1\nArchitecture: amd64\n"));
        assert!(text.contains("\nDepends: libc6\n"));
        assert!(text.contains("\nProvides: spock-patched-postgresql-18 (= 18.6-1)\n"));
        assert!(text.contains("\nConflicts: postgresql-18\nReplaces: postgresql-18\n"));
        assert!(text.contains("\nInstalled-Size: 7\n"));
        let desc: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("Description:")).skip(1).collect();
        assert!(desc.len() > 1 && desc.iter().all(|l| l.starts_with(' ') && l.len() <= 73));
        assert_eq!(file_name(&s, "amd64"), "spock-postgresql-18_18.6-1_amd64.deb");
    }

    #[test]
    fn ar_members_have_fixed_headers_and_even_padding() {
        let a = ar(&[("debian-binary", b"2.0\n"), ("x", b"abc")], 1_700_000_000);
        assert!(a.starts_with(b"!<arch>\n"));
        assert_eq!(&a[8..24], b"debian-binary   ");
        assert_eq!(&a[24..36], b"1700000000  ");
        assert_eq!(&a[66..68], b"`\n");
        // 8 + (60 + 4) + (60 + 3 + 1 padding)
        assert_eq!(a.len(), 8 + 64 + 64);
        assert_eq!(a, ar(&[("debian-binary", b"2.0\n"), ("x", b"abc")], 1_700_000_000));
    }

    #[test]
    fn data_tar_is_deterministic_and_clamps_times() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello")?;
        let entries = vec![
            Entry {
                path: "/usr/lib/x/f".into(),
                kind: Kind::File { source: f.clone(), mode: 0o644, size: 5 },
            },
            Entry { path: "/usr/lib/x/g".into(), kind: Kind::Symlink { target: "f".into() } },
        ];
        let one = data_tar(&entries, 1_000)?;
        std::thread::sleep(std::time::Duration::from_millis(10));
        let two = data_tar(&entries, 1_000)?;
        assert_eq!(one.tar, two.tar);
        assert_eq!(one.md5sums, "5d41402abc4b2a76b9719d911017c592  usr/lib/x/f\n");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(one.tar.as_slice()));
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            assert_eq!(entry.header().mtime()?, 1_000);
            assert_eq!(entry.header().uid()?, 0);
            seen.push(entry.path()?.display().to_string());
        }
        // The tar crate drops the `./` of member names below the root; dpkg
        // reads both spellings.
        assert_eq!(seen, ["./", "usr/", "usr/lib/", "usr/lib/x/", "usr/lib/x/f", "usr/lib/x/g"]);
        Ok(())
    }
}
