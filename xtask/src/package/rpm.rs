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

/// `%post` of the libraries' package: its linker configuration becomes
/// an alternative (priority: the major) and the linker cache learns of it.
fn libs_post(major: u32) -> String {
    format!(
        "/usr/sbin/update-alternatives --install {link} {group} {conf} {major}00\n/sbin/ldconfig\n",
        link = super::spec::LD_SO_CONF_LINK,
        group = super::spec::LD_SO_CONF_GROUP,
        conf = super::spec::ld_so_conf(major),
    )
}

/// `%postun` of the libraries' package: on erase (not upgrade) the
/// alternative goes; the linker cache forgets the libraries either way.
fn libs_postun(major: u32) -> String {
    format!(
        "if [ \"$1\" -eq 0 ]; then\n    /usr/sbin/update-alternatives --remove {group} {conf}\nfi\n/sbin/ldconfig\n",
        group = super::spec::LD_SO_CONF_GROUP,
        conf = super::spec::ld_so_conf(major),
    )
}

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
        Role::Libs => {
            // The package owns the generic link (the same in every major's
            // -libs) and, as a ghost, the alternatives entry it points to.
            let entry = format!("/etc/alternatives/{}", super::spec::LD_SO_CONF_GROUP);
            b.with_symlink(
                rpm::FileOptions::symlink(super::spec::LD_SO_CONF_LINK, &entry).user("root").group("root"),
            )
            .with_context(what)?;
            b.with_ghost(rpm::FileOptions::ghost(&entry).permissions(0o644).user("root").group("root"))
                .with_context(what)?;
            b.requires(rpm::Dependency::script_post("/usr/sbin/update-alternatives"));
            b.requires(rpm::Dependency::script_postun("/usr/sbin/update-alternatives"));
            b.post_install_script(libs_post(spec.major));
            b.post_uninstall_script(libs_postun(spec.major));
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
    fn the_linker_configuration_is_an_alternative_per_major() {
        let post = super::libs_post(18);
        assert!(post.contains(
            "update-alternatives --install /etc/ld.so.conf.d/spock-libpq5.conf spock-libpq5.conf \
             /usr/pgsql-18/share/spock-postgresql18-libs.conf 1800"
        ));
        assert!(post.ends_with("/sbin/ldconfig\n"));
        let postun = super::libs_postun(15);
        assert!(
            postun.contains("--remove spock-libpq5.conf /usr/pgsql-15/share/spock-postgresql15-libs.conf")
        );
        assert!(postun.starts_with("if [ \"$1\" -eq 0 ]"));
    }

    #[test]
    fn descriptions_are_wrapped_for_rpmlint() {
        let text = "word ".repeat(50);
        let wrapped = wrap(&text, 76);
        assert!(wrapped.lines().all(|l| l.len() <= 76), "{wrapped}");
        assert_eq!(wrapped.split_whitespace().count(), 50);
    }
}
