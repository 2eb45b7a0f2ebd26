//! The `cargo xtask test` task: unit tests, then for every major whose source
//! can be had here, build the server and extension and prove that they work
//! on a real server; majors whose source cannot be had are reported, with
//! what was checked instead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cmd::{self, tool};
use crate::flags::{Profile, Test};
use crate::layout::{self, PgDirs};
use crate::node::{self, Node, StopMode};
use crate::pgbuild::{CORE_PATCHES_FILE, CorePatches, Installed};
use crate::versions::{Manifest, PgRequest, SUPPORTED_MAJORS};
use crate::{build, doctor, fetch, fsutil, patch_tests, patches, regress, ui};

/// The major whose stock build `cargo xtask test` also checks.
const NEGATIVE_CONTROL_MAJOR: u32 = 18;

enum Outcome {
    Passed(Duration),
    NotAvailable(String),
    Failed(anyhow::Error),
}

impl Test {
    pub fn run(self) -> Result<()> {
        let start = Instant::now();
        doctor::ensure(true)?;
        doctor::ensure_packaging(true)?;
        let mut failures = 0;

        let unit = if self.no_unit {
            None
        } else {
            let step = ui::Step::start(
                "Unit tests (cargo test: the workspace's default members, xtask and spock-core)",
            );
            let log = layout::target_dir().join("test-logs").join("unit.log");
            cmd::run_logged(tool("cargo", ["test"]).dir(layout::project_root()), "cargo test", &log)?;
            let summary = regress::summarize_cargo_test(&log);
            Some((step.done(&summary), summary))
        };

        let manifest = Manifest::builtin();
        let requests: Vec<PgRequest> = if self.pg.is_empty() {
            SUPPORTED_MAJORS.iter().map(|&m| PgRequest::Major(m)).collect()
        } else {
            self.pg.clone()
        };
        let jobs = build::jobs(self.jobs);
        let mut results = Vec::new();
        for request in requests {
            let resolved = manifest.resolve(request);
            let version = resolved.version;
            let major = version.major;
            let t0 = Instant::now();
            eprintln!("\n=== PostgreSQL {version} ===");
            let outcome = (|| -> Result<Outcome> {
                let series = patches::discover(&patches::series_dir(major), major, false)?;
                ui::note(format!("patch series: {} patch(es) in patches/{major}, names and order valid", series.patches.len()));
                match fetch::obtain(&resolved, None) {
                    Ok(_) => {}
                    Err(e) if e.downcast_ref::<fetch::NotAvailable>().is_some() => {
                        let na = e.downcast_ref::<fetch::NotAvailable>().unwrap();
                        return Ok(Outcome::NotAvailable(format!(
                            "source not available on this machine ({}).\n\
                             Checked instead: the patch series in patches/{major} ({} patch(es); names, numbering and the OPTIONAL list are valid).\n\
                             Not checked: whether the patches apply, the server build, and the extension: even `cargo check` \
                             of the extension for pg{major} needs that major's server headers, which only its source provides.",
                            na.attempts.join("; "),
                            series.patches.len()
                        )));
                    }
                    Err(e) => return Err(e),
                };
                let installed = build::build_one(&resolved, None, Profile::Dev, false, jobs)?;
                smoke_test(&installed)?;
                if !patch_tests::run_for(&installed, true, &[], false)? {
                    bail!("the core patch tests failed on PostgreSQL {version}");
                }
                // One major also gets the negative control on a stock build
                // (one more server build); `test-patches --negative-control`
                // runs it for any major.
                if major == NEGATIVE_CONTROL_MAJOR {
                    patch_tests::negative_control(&build::build_stock(&resolved, jobs)?)?;
                }
                let suite = regress::Suite::multi_node();
                if !regress::run_suite(&installed, &suite, &suite.schedule()?, None, false, true)? {
                    bail!("the multi-node regression suite failed on PostgreSQL {version}");
                }
                // The packages: built from their own release trees, read back,
                // installed or unpacked, and started.
                crate::package::verify::run_for(&resolved, jobs)?;
                Ok(Outcome::Passed(t0.elapsed()))
            })()
            .unwrap_or_else(Outcome::Failed);
            match &outcome {
                Outcome::Passed(_) => {}
                Outcome::NotAvailable(why) => ui::note(format!("PostgreSQL {version}: {why}")),
                Outcome::Failed(e) => {
                    failures += 1;
                    ui::error(e);
                }
            }
            results.push((version, outcome));
        }

        println!("\nSummary of cargo xtask test");
        if let Some((elapsed, summary)) = unit {
            println!("  unit tests            passed   {:>8}  {summary}", ui::human(elapsed));
        }
        for (version, outcome) in &results {
            match outcome {
                Outcome::Passed(d) => println!(
                    "  PostgreSQL {:<10} passed   {:>8}  built; server checks, PostgreSQL suites, patch and multi-node tests, .deb and .rpm packages passed{}",
                    version.to_string(),
                    ui::human(*d),
                    if version.major == NEGATIVE_CONTROL_MAJOR {
                        "; negative control on a stock build passed"
                    } else {
                        ""
                    }
                ),
                Outcome::NotAvailable(_) => println!(
                    "  PostgreSQL {:<10} skipped            source not available on this machine (see above)",
                    version.to_string()
                ),
                Outcome::Failed(_) => println!("  PostgreSQL {:<10} FAILED", version.to_string()),
            }
        }
        println!("  total                          {:>8}", ui::human(start.elapsed()));
        if results.iter().all(|(_, o)| matches!(o, Outcome::NotAvailable(_))) {
            bail!("no PostgreSQL major could be built here, so the server side is untested");
        }
        if failures > 0 {
            bail!("{failures} major(s) failed; see the errors above");
        }
        Ok(())
    }
}

/// Stops the node when the test ends, whatever happened.
struct StopOnDrop<'a>(&'a Node);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.is_running() {
            let _ = self.0.stop(StopMode::Immediate);
        }
    }
}

/// Starts a server from the installed tree (as the unprivileged account when
/// root) and checks what a user would: the patched version string, the
/// preloaded library, `CREATE EXTENSION spock` and its schema and functions.
pub(crate) fn smoke_test(installed: &Installed) -> Result<()> {
    let step = ui::Step::start(format!(
        "Checking a server of PostgreSQL {}{}",
        installed.core.postgresql_version, installed.core.extra_version
    ));
    let dirs: &PgDirs = &installed.dirs;
    let run_as = RunAs::detect()?;
    let base = dirs.scratch().join("smoke");
    stop_leftover(installed, &base, &run_as);
    fsutil::remove_dir_all_if_exists(&base)?;
    let socket_dir = socket_dir("smoke")?;
    let port = node::free_port()?;
    let mut conf = node::base_conf(installed, 1);
    conf.push_str("fsync = off\n");
    let node = Node::init("smoke", installed, &base, socket_dir.path(), port, &run_as, &conf)?;
    node.start()?;
    let _guard = StopOnDrop(&node);

    let check = |what: &str, sql: &str, expected: &str| -> Result<()> {
        let got = node.safe_psql("postgres", sql)?;
        if got != expected {
            bail!(
                "{what}: `{sql}` returned {got:?}, expected {expected:?}\n--- server log ---\n{}",
                node.log_tail(20)
            );
        }
        ui::note(format!("ok: {what}"));
        Ok(())
    };

    let version = node.safe_psql("postgres", "SELECT version()")?;
    let wanted = format!("PostgreSQL {}{}", installed.core.postgresql_version, installed.core.extra_version);
    if !version.starts_with(&wanted) {
        bail!("SELECT version() returned {version:?}; expected it to start with {wanted:?}");
    }
    ui::note(format!("ok: {version}"));
    check(
        "spock is preloaded",
        "SELECT 'spock' = ANY(string_to_array(current_setting('shared_preload_libraries'), ','))",
        "t",
    )?;
    let log = std::fs::read_to_string(node.log_file()).unwrap_or_default();
    if !log.contains("spock ") || !log.contains(" loaded") {
        bail!("the server log has no line from spock's _PG_init:\n{}", node.log_tail(20));
    }
    check(
        "output_plugin_libraries present only where the server knows it",
        "SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'",
        if installed.core.output_plugin_libraries { "1" } else { "0" },
    )?;
    node.safe_psql("postgres", "CREATE EXTENSION spock")?;
    let ext_version = crate::extension::version()?;
    check(
        "extension installed in schema spock",
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'spock'",
        "spock",
    )?;
    check(
        "pg_extension.extversion",
        "SELECT extversion FROM pg_extension WHERE extname = 'spock'",
        &ext_version,
    )?;
    check("spock.spock_version()", "SELECT spock.spock_version()", &ext_version)?;
    let expected_patches: Vec<String> =
        installed.core.patches.iter().map(|p| format!("{} {}=true/1", p.number, p.name)).collect();
    check(
        "spock.core_patches shows every patch of the build as present",
        "SELECT string_agg(patch || '=' || present || '/' || coalesce(abi::text, 'null'), ',' ORDER BY patch) \
         FROM spock.core_patches WHERE present",
        &expected_patches.join(","),
    )?;
    let summary = log.lines().find(|l| l.contains("spock: core patches:")).unwrap_or("").to_string();
    if installed.core.patches.iter().any(|p| !summary.contains(&format!("{} {} present", p.number, p.name))) {
        bail!("the startup LOG line about core patches is missing or incomplete: {summary:?}");
    }
    ui::note("ok: startup log reports the core patches");
    let num: Vec<i32> = ext_version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let expected_num = (num[0] * 10000 + num[1] * 100 + num[2]).to_string();
    check("spock.spock_version_num()", "SELECT spock.spock_version_num()", &expected_num)?;
    // The schema is fixed: installing elsewhere must fail.
    node.safe_psql("postgres", "CREATE DATABASE other")?;
    match node.safe_psql("other", "CREATE EXTENSION spock SCHEMA public") {
        Ok(_) => bail!(
            "CREATE EXTENSION spock SCHEMA public succeeded; the extension must only install into schema spock"
        ),
        Err(e) if e.to_string().contains("must be installed in schema") => {
            ui::note("ok: the extension refuses other schemas")
        }
        Err(e) => return Err(e.context("CREATE EXTENSION spock SCHEMA public failed in an unexpected way")),
    }

    let sharedir =
        PathBuf::from(cmd::read(tool(dirs.pg_config(), ["--sharedir"]), "pg_config --sharedir")?.trim());
    let recorded: CorePatches = fsutil::read_json(&sharedir.join(CORE_PATCHES_FILE))
        .with_context(|| format!("{} is missing or malformed", sharedir.join(CORE_PATCHES_FILE).display()))?;
    if recorded.series_hash != installed.core.series_hash {
        bail!(
            "{CORE_PATCHES_FILE} records series {}, but the build has {}",
            recorded.series_hash,
            installed.core.series_hash
        );
    }
    ui::note(format!("ok: {CORE_PATCHES_FILE} records {} patch(es)", recorded.patches.len()));

    // A crash (kill -9 of the postmaster) and restart: recovery works on the
    // patched build and the extension is still there.
    node.safe_psql(
        "postgres",
        "CREATE TABLE crash_probe AS SELECT 42 AS answer; CHECKPOINT; INSERT INTO crash_probe VALUES (43)",
    )?;
    node.kill9()?;
    node.start()?;
    node.poll_query_until("postgres", "SELECT NOT pg_is_in_recovery()", std::time::Duration::from_secs(60))?;
    check(
        "committed rows survive kill -9 and restart",
        "SELECT string_agg(answer::text, ',' ORDER BY answer) FROM crash_probe",
        "42,43",
    )?;
    check("the extension after restart", "SELECT spock.spock_version()", &ext_version)?;
    node.restart()?;
    check("the extension after a clean restart", "SELECT spock.spock_version_num()", &expected_num)?;

    node.stop(StopMode::Fast)?;
    step.done("all checks passed");
    Ok(())
}

/// A private directory for a node's Unix socket. Socket paths are limited to
/// about 100 bytes, so it lives in the system's temporary directory.
pub fn socket_dir(tag: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("spock-{tag}-"))
        .tempdir()
        .context("cannot create a socket directory")
}

/// A server left running in `base` by an interrupted run is stopped first.
fn stop_leftover(installed: &Installed, base: &std::path::Path, run_as: &RunAs) {
    let data = base.join("data");
    if data.join("postmaster.pid").exists() {
        let data = data.display().to_string();
        let _ = run_as
            .cmd(installed.bin("pg_ctl"), ["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}
