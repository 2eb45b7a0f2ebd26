//! Unpacking source tarballs (`.tar.bz2`) with one top-level directory.

use std::fs::File;
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use tar::EntryType;

/// Unpacks `tarball` into `dest` (which must not exist yet), dropping the
/// single top-level directory every member must share: the tree's files land
/// directly in `dest`. Returns the name of that top-level directory.
///
/// Refuses archives with several top-level entries, absolute paths or `..`,
/// and reports a corrupted or truncated archive as such. On error `dest` may
/// hold part of the tree; callers unpack into a temporary directory.
pub fn unpack_single_root(tarball: &Path, dest: &Path) -> Result<String> {
    let file = File::open(tarball).with_context(|| format!("cannot open {}", tarball.display()))?;
    let corrupted = || {
        format!(
            "{} is corrupted or truncated; delete it and fetch it again (or pass another --source-tarball)",
            tarball.display()
        )
    };
    let decoder = bzip2::read::BzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_mtime(true);
    archive.set_preserve_permissions(true);
    std::fs::create_dir(dest).with_context(|| format!("cannot create {}", dest.display()))?;

    let mut root: Option<String> = None;
    let mut members = 0usize;
    for entry in archive.entries().with_context(corrupted)? {
        let mut entry = entry.with_context(corrupted)?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let path = entry.path().with_context(corrupted)?.into_owned();
        let (top, rest) = split_root(&path).with_context(|| {
            format!("{} contains an unsafe path {:?}; refusing to unpack it", tarball.display(), path)
        })?;
        match &root {
            None => root = Some(top.clone()),
            Some(r) if *r != top => bail!(
                "{} has more than one top-level entry ({r:?} and {top:?}); a PostgreSQL source \
                 tarball has exactly one directory, postgresql-X.Y",
                tarball.display()
            ),
            Some(_) => {}
        }
        members += 1;
        if rest.as_os_str().is_empty() {
            if kind != EntryType::Directory {
                bail!("{}: top-level entry {top:?} is not a directory", tarball.display());
            }
            continue;
        }
        let target = dest.join(&rest);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if matches!(kind, EntryType::Link) {
            // Hard links name their target by archive path; map it the same way.
            let link = entry.link_name().with_context(corrupted)?.context("hard link without target")?;
            let (_, link_rest) = split_root(&link).context("hard link with an unsafe target")?;
            std::fs::hard_link(dest.join(link_rest), &target)
                .with_context(|| format!("cannot create hard link {}", target.display()))?;
            continue;
        }
        entry.unpack(&target).with_context(corrupted)?;
    }
    match root {
        Some(root) if members > 0 => Ok(root),
        _ => bail!("{} is empty", tarball.display()),
    }
}

/// Splits `top/rest...` into its first component and the rest, refusing
/// absolute paths and `..`.
fn split_root(path: &Path) -> Option<(String, PathBuf)> {
    let mut comps = path.components().filter(|c| !matches!(c, Component::CurDir));
    let top = match comps.next()? {
        Component::Normal(name) => name.to_str()?.to_string(),
        _ => return None,
    };
    let mut rest = PathBuf::new();
    for c in comps {
        match c {
            Component::Normal(part) => rest.push(part),
            _ => return None,
        }
    }
    Some((top, rest))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a `.tar.bz2` with the given (path, contents) files; a path
    /// ending in `/` is a directory.
    pub fn make_tarball(path: &Path, files: &[(&str, &str)]) {
        let file = File::create(path).unwrap();
        let enc = bzip2::write::BzEncoder::new(file, bzip2::Compression::fast());
        let mut builder = tar::Builder::new(enc);
        for (name, contents) in files {
            let mut header = tar::Header::new_gnu();
            if name.ends_with('/') {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                header.set_cksum();
                builder.append_data(&mut header, name, std::io::empty()).unwrap();
            } else {
                header.set_mode(0o644);
                header.set_size(contents.len() as u64);
                header.set_mtime(1_700_000_000);
                header.set_cksum();
                builder.append_data(&mut header, name, contents.as_bytes()).unwrap();
            }
        }
        builder.into_inner().unwrap().finish().unwrap().flush().unwrap();
    }

    #[test]
    fn unpacks_and_strips_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("t.tar.bz2");
        make_tarball(&tb, &[("mini-1.0/", ""), ("mini-1.0/a.txt", "A\n"), ("mini-1.0/sub/b.txt", "B\n")]);
        let dest = dir.path().join("out");
        assert_eq!(unpack_single_root(&tb, &dest).unwrap(), "mini-1.0");
        assert_eq!(std::fs::read_to_string(dest.join("sub/b.txt")).unwrap(), "B\n");
    }

    #[test]
    fn two_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("t.tar.bz2");
        make_tarball(&tb, &[("one/a", "1"), ("two/b", "2")]);
        let err = unpack_single_root(&tb, &dir.path().join("out")).unwrap_err().to_string();
        assert!(err.contains("more than one top-level entry"), "{err}");
    }

    #[test]
    fn truncated_archive_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("t.tar.bz2");
        let big: String = (0..20000).map(|i| format!("line {i} with some text\n")).collect();
        make_tarball(&tb, &[("mini/a", &big), ("mini/b", &big)]);
        let bytes = std::fs::read(&tb).unwrap();
        std::fs::write(&tb, &bytes[..bytes.len() / 2]).unwrap();
        let err = format!("{:#}", unpack_single_root(&tb, &dir.path().join("out")).unwrap_err());
        assert!(err.contains("corrupted or truncated"), "{err}");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(split_root(Path::new("/etc/passwd")).is_none());
        assert!(split_root(Path::new("a/../../x")).is_none());
        assert_eq!(split_root(Path::new("./a/b")).unwrap(), ("a".to_string(), PathBuf::from("b")));
    }
}
