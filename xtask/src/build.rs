//! The `cargo xtask build` and `cargo xtask clean` tasks: source, patches,
//! server and extension, each step skipped when its inputs are unchanged.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::flags::{Build, Clean, Profile};
use crate::layout::{self, PgDirs, PkgLayout};
use crate::pgbuild::{self, Installed};
use crate::versions::{Manifest, Resolved};
use crate::{doctor, extension, fetch, fsutil, patches, ui};

/// Parallel make jobs: the flag, or the number of CPUs.
pub fn jobs(flag: Option<usize>) -> usize {
    flag.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
}

/// Everything `build` does for one version: fetch and verify the source,
/// prepare the patched tree, build and install the server, then the extension.
pub fn build_one(
    resolved: &Resolved,
    tarball: Option<&Path>,
    profile: Profile,
    with_optional: bool,
    jobs: usize,
) -> Result<Installed> {
    let major = resolved.version.major;
    let series = patches::discover(&patches::series_dir(major), major, with_optional)?;
    build_in(&PgDirs::new(major, profile), resolved, tarball, &series, jobs)
}

/// Whether the checkout has a finished build (either profile) of this major.
pub fn is_built(resolved: &Resolved) -> bool {
    let major = resolved.version.major;
    [Profile::Dev, Profile::Release].into_iter().any(|p| Installed::load(&PgDirs::new(major, p)).is_some())
}

/// The release build of a major for a package layout, with the extension
/// (copied from the other layout's tree when that holds the same build).
pub fn build_package_tree(resolved: &Resolved, layout: PkgLayout, jobs: usize) -> Result<Installed> {
    let major = resolved.version.major;
    let series = patches::discover(&patches::series_dir(major), major, false)?;
    let dirs = PgDirs::package(major, layout);
    let source = fetch::obtain(resolved, None)?;
    let (record, fresh) = patches::ensure_tree(&dirs, &source, &series)?;
    let installed = pgbuild::ensure_built(&dirs, &record, fresh, jobs)?;
    let donor = PkgLayout::ALL
        .into_iter()
        .filter(|other| *other != layout)
        .find_map(|other| Installed::load(&PgDirs::package(major, other)))
        .filter(|donor| donor.core.postgresql_version == installed.core.postgresql_version);
    match donor {
        Some(donor) => extension::ensure_installed_from(&installed, &donor)?,
        None => extension::ensure_installed(&installed)?,
    }
    Ok(installed)
}

/// Fetch, patched tree, server and extension in `dirs`, each step skipped
/// when its inputs are unchanged.
fn build_in(
    dirs: &PgDirs,
    resolved: &Resolved,
    tarball: Option<&Path>,
    series: &patches::Series,
    jobs: usize,
) -> Result<Installed> {
    let source = fetch::obtain(resolved, tarball)?;
    let (record, fresh) = patches::ensure_tree(dirs, &source, series)?;
    let installed = pgbuild::ensure_built(dirs, &record, fresh, jobs)?;
    extension::ensure_installed(&installed)?;
    Ok(installed)
}

/// The unpatched build of a major (dev profile) with the extension: what the
/// negative controls run on. It reports the plain version, as stock does.
pub fn build_stock(resolved: &Resolved, jobs: usize) -> Result<Installed> {
    let major = resolved.version.major;
    let series = patches::Series { major, patches: Vec::new(), skipped_optional: Vec::new() };
    build_in(&PgDirs::stock(major), resolved, None, &series, jobs)
}

impl Build {
    pub fn run(self) -> Result<()> {
        if self.source_tarball.is_some() && self.pg.len() != 1 {
            bail!("--source-tarball names one file; give exactly one --pg with it");
        }
        doctor::ensure(true)?;
        let manifest = Manifest::builtin();
        let jobs = jobs(self.jobs);
        for request in &self.pg {
            let resolved = manifest.resolve(*request);
            let installed =
                build_one(&resolved, self.source_tarball.as_deref(), self.profile, self.with_optional, jobs)
                    .with_context(|| format!("building PostgreSQL {} with spock failed", resolved.version))?;
            print_summary(&installed);
        }
        Ok(())
    }
}

fn print_summary(installed: &Installed) {
    let core = &installed.core;
    let bin = installed.dirs.bin();
    let patches = if core.patches.is_empty() {
        "none (the series for this major is empty)".to_string()
    } else {
        core.patches.iter().map(|p| format!("{} {}", p.number, p.name)).collect::<Vec<_>>().join(", ")
    };
    println!(
        "\nPostgreSQL {}{} ({} profile) with the spock extension is installed in {}\n\
         \x20 pg_config:  {}\n\
         \x20 patches:    {patches}\n\
         \x20 output_plugin_libraries setting: {}\n\n\
         To start a server by hand{}:\n\
         \x20 {bin}/initdb -D DATADIR -U postgres --auth=trust\n\
         \x20 printf \"%s\\n\" \"shared_preload_libraries = 'spock'\" \"wal_level = logical\" \"track_commit_timestamp = on\"{} >> DATADIR/postgresql.conf\n\
         \x20 {bin}/pg_ctl -D DATADIR -l DATADIR/server.log start\n\
         \x20 {bin}/psql -U postgres -c 'CREATE EXTENSION spock' postgres",
        core.postgresql_version,
        core.extra_version,
        core.profile,
        installed.dirs.install().display(),
        installed.dirs.pg_config().display(),
        if core.output_plugin_libraries {
            "present (list spock_output in it)"
        } else {
            "absent in this minor (never set it)"
        },
        if nix::unistd::geteuid().is_root() {
            " (as an unprivileged user: PostgreSQL refuses to run as root)"
        } else {
            ""
        },
        if core.output_plugin_libraries {
            " \"output_plugin_libraries = 'pgoutput, test_decoding, spock_output'\""
        } else {
            ""
        },
        bin = bin.display(),
    );
}

impl Clean {
    pub fn run(self) -> Result<()> {
        let target = layout::target_dir();
        if self.pg.is_empty() {
            let dir = target.join("pg");
            ui::note(format!("removing {}", dir.display()));
            fsutil::remove_dir_all_if_exists(&dir)?;
        } else {
            for request in &self.pg {
                let major = request.major();
                let roots = [
                    PgDirs::new(major, Profile::Dev).root,
                    PgDirs::new(major, Profile::Release).root,
                    PgDirs::stock(major).root,
                    PgDirs::package(major, PkgLayout::Deb).root,
                    PgDirs::package(major, PkgLayout::Rpm).root,
                ];
                for dir in roots {
                    if dir.exists() {
                        ui::note(format!("removing {}", dir.display()));
                        fsutil::remove_dir_all_if_exists(&dir)?;
                    }
                }
            }
        }
        if self.cache {
            let cache = layout::cache_dir()?;
            ui::note(format!("removing the download and tools cache {}", cache.display()));
            fsutil::remove_dir_all_if_exists(&cache)?;
        }
        Ok(())
    }
}
