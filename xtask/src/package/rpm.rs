//! .rpm packages written with the `rpm` crate: gzip payload, files owned by
//! root, times clamped to `SOURCE_DATE_EPOCH` (build time included), a fixed
//! build host, so the same files give the same bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::deps;
use super::spec::{Dep, Kind, LICENSE, MAINTAINER, Role, Spec, VENDOR, parent_dirs};

/// The package's file name: `name-version-release.arch.rpm`.
pub fn file_name(spec: &Spec, arch: &str) -> String {
    format!("{}-{}-{}.{arch}.rpm", spec.name, spec.version, spec.revision)
}

/// Creates the `postgres` account before the files are installed, as the
/// PGDG server packages do, unless it exists.
const PRE_INSTALL: &str = r#"getent group postgres >/dev/null || groupadd -r postgres
getent passwd postgres >/dev/null || useradd -r -g postgres -d /var/lib/pgsql -s /bin/bash -c "PostgreSQL Server" postgres
exit 0
"#;

/// `%post` and `%postun` of the libraries' package.
const LDCONFIG: &str = "/sbin/ldconfig\n";

/// `text` as lines of at most `width` characters (words are not split).
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines.join("\n")
}

fn dependency(dep: &Dep) -> rpm::Dependency {
    match &dep.version {
        Some(("=", v)) => rpm::Dependency::eq(&dep.name, v),
        Some((_, v)) => rpm::Dependency::greater_eq(&dep.name, v),
        None => rpm::Dependency::any(&dep.name),
    }
}

/// Writes the package into `out` and returns its path.
pub fn write(spec: &Spec, epoch: u64, out: &Path) -> Result<PathBuf> {
    let (_, arch) = super::arch()?;
    let what = || format!("building the RPM package {}", spec.name);
    let config = rpm::BuildConfig::default()
        .compression(rpm::CompressionWithLevel::Gzip(6))
        .source_date(u32::try_from(epoch).context("SOURCE_DATE_EPOCH is past 2106")?);
    let mut b = rpm::PackageBuilder::new(&spec.name, &spec.version, LICENSE, arch, &spec.summary);
    let stamp = u32::try_from(epoch).context("SOURCE_DATE_EPOCH is past 2106")?;
    b.using_config(config)
        .release(&spec.revision)
        // rpmlint wants description lines of at most 79 characters.
        .description(wrap(&spec.description, 76))
        // One entry for this build, as the .deb's changelog.Debian.gz has.
        .add_changelog_entry(
            format!("{MAINTAINER} - {}-{}", spec.version, spec.revision),
            format!("- {}.", spec.summary),
            stamp,
        )
        .vendor(VENDOR)
        .packager(MAINTAINER)
        .group(if spec.role == Role::Devel { "Development/Libraries" } else { "Applications/Databases" })
        .build_host("localhost");
    if let Some(root) = &spec.owns_below {
        for dir in parent_dirs(&spec.entries, Some(root)) {
            b.with_dir_entry(rpm::FileOptions::dir(&dir).permissions(0o755).user("root").group("root"))
                .with_context(what)?;
        }
    }
    for e in &spec.entries {
        match &e.kind {
            Kind::File { source, mode, .. } => {
                let options =
                    rpm::FileOptions::new(&e.path).permissions(*mode as u16).user("root").group("root");
                // Files under /usr/share/doc are marked as documentation (%doc).
                let options = if e.path.starts_with("/usr/share/doc/") { options.doc() } else { options };
                b.with_file(source, options).with_context(what)?;
            }
            Kind::Symlink { target } => {
                b.with_symlink(rpm::FileOptions::symlink(&e.path, target).user("root").group("root"))
                    .with_context(what)?;
            }
        }
    }
    for dep in &spec.depends {
        b.requires(dependency(dep));
    }
    for soname in deps::rpm_requires(&spec.libraries) {
        b.requires(rpm::Dependency::any(soname));
    }
    for dep in &spec.provides {
        b.provides(dependency(dep));
    }
    for name in &spec.conflicts {
        b.conflicts(rpm::Dependency::any(name));
    }
    match spec.role {
        Role::Server => {
            b.pre_install_script(PRE_INSTALL);
            b.post_install_script(super::service::rpm_post(spec.major));
            b.pre_uninstall_script(super::service::rpm_preun(spec.major));
            b.post_uninstall_script(super::service::rpm_postun(spec.major));
        }
        // The linker cache learns of the libraries (and forgets them).
        Role::Libs => {
            b.post_install_script(LDCONFIG);
            b.post_uninstall_script(LDCONFIG);
        }
        Role::Devel | Role::Extension => {}
    }
    let package = b.build().with_context(what)?;
    let mut bytes = Vec::new();
    package.write(&mut bytes).with_context(what)?;
    let path = out.join(file_name(spec, arch));
    super::publish(&path, &bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn descriptions_are_wrapped_for_rpmlint() {
        let text = "word ".repeat(50);
        let wrapped = wrap(&text, 76);
        assert!(wrapped.lines().all(|l| l.len() <= 76), "{wrapped}");
        assert_eq!(wrapped.split_whitespace().count(), 50);
    }
}
