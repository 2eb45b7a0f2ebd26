//! The `cargo xtask test-patches` task: PostgreSQL's own regression suites
//! (`make check`, `contrib/test_decoding`, `src/test/modules/commit_ts`) on
//! the patched build, then the core patch acceptance tests (`tests/patches`
//! scenarios and `xtask/tests/patches.rs`) with the test-only probe
//! extension installed, and with `--negative-control` the checks on a stock
//! build of the same minor that prove the tests and the extension notice a
//! missing patch.

use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cmd::{self, tool};
use crate::flags::{Profile, TestPatches};
use crate::fsutil;
use crate::layout::PgDirs;
use crate::node::{self, Node, StopMode};
use crate::pgbuild::Installed;
use crate::regress::{self, Suite};
use crate::versions::{Manifest, PgRequest};
use crate::{build, doctor, extension, ui};

/// One of PostgreSQL's own suites the patched build must pass.
struct CoreSuite {
    /// Where `make check` runs, relative to the build tree.
    make_dir: &'static str,
    /// Where that `make check` runs `checkprep` (the suite's extra modules
    /// for the temporary installation), relative to the build tree.
    prep_dir: &'static str,
    /// The suite's directory in the scratch space: pg_regress's output
    /// (`regression.diffs`, `results/`, `log/`) and temporary instance.
    name: &'static str,
    log: &'static str,
    what: &'static str,
}

const CORE_SUITES: [CoreSuite; 3] = [
    CoreSuite {
        make_dir: ".",
        prep_dir: "src/test/regress",
        name: "main",
        log: "check-main.log",
        what: "the main regression suite (make check)",
    },
    CoreSuite {
        make_dir: "contrib/test_decoding",
        prep_dir: "contrib/test_decoding",
        name: "test_decoding",
        log: "check-test_decoding.log",
        what: "contrib/test_decoding (make check)",
    },
    CoreSuite {
        make_dir: "src/test/modules/commit_ts",
        prep_dir: "src/test/modules/commit_ts",
        name: "commit_ts",
        log: "check-commit_ts.log",
        what: "src/test/modules/commit_ts (make check)",
    },
];

impl TestPatches {
    pub fn run(self) -> Result<()> {
        doctor::ensure(true)?;
        let manifest = Manifest::builtin();
        let requests = if self.pg.is_empty() {
            vec![PgRequest::Major(15), PgRequest::Major(18)]
        } else {
            self.pg.clone()
        };
        let mut failed = Vec::new();
        for request in requests {
            let resolved = manifest.resolve(request);
            let installed = build::build_one(&resolved, None, Profile::Dev, false, build::jobs(None))?;
            let mut ok = run_for(&installed, !self.no_core_suites, &self.scenarios, self.accept)?;
            if self.negative_control {
                let stock = build::build_stock(&resolved, build::jobs(None))?;
                ok &= negative_control(&stock).map(|()| true).unwrap_or_else(|e| {
                    ui::error(&e);
                    false
                });
            }
            if !ok {
                failed.push(resolved.version.to_string());
            }
        }
        if !failed.is_empty() {
            bail!("the patch tests failed on PostgreSQL {}", failed.join(", "));
        }
        Ok(())
    }
}

/// Core suites (when `core_suites`), then the acceptance scenarios and
/// integration tests. Returns whether everything passed.
pub fn run_for(installed: &Installed, core_suites: bool, scenarios: &[String], accept: bool) -> Result<bool> {
    let t0 = Instant::now();
    let version = &installed.core.postgresql_version;
    if installed.core.patches.is_empty() {
        bail!("PostgreSQL {version} in {} carries no core patches", installed.dirs.install().display());
    }
    let mut ok = true;
    if core_suites {
        ok &= run_core_suites(installed)?;
    }
    extension::ensure_crate_installed(installed, &extension::patch_probe())?;
    let suite = Suite::patches();
    let names = if scenarios.is_empty() { suite.schedule()? } else { scenarios.to_vec() };
    ok &= regress::run_suite(installed, &suite, &names, None, accept, scenarios.is_empty())?;
    ui::note(format!("patch tests on PostgreSQL {version} took {}", ui::human(t0.elapsed())));
    Ok(ok)
}

/// Runs PostgreSQL's own suites from the build tree, which stays ours: we
/// make the temporary installation the suites run from in it
/// ([`temp_install`]), then `make check` runs (as the server account when
/// root, since the suites run initdb and servers) with `NO_TEMP_INSTALL=1`
/// and pg_regress's `--outputdir` and `--temp-instance` pointing into a
/// scratch directory of its own. The account only reads the build tree.
fn run_core_suites(installed: &Installed) -> Result<bool> {
    let dirs = &installed.dirs;
    let version = &installed.core.postgresql_version;
    let run_as = RunAs::detect()?;
    run_as.ensure_reachable(&dirs.build())?;
    let step = ui::Step::start(format!(
        "PostgreSQL {version}: temporary installation for its suites ({})",
        dirs.build().join("tmp_install").display()
    ));
    temp_install(dirs)?;
    step.done("");
    let scratch = dirs.scratch().join("core-suites");
    fsutil::remove_dir_all_if_exists(&scratch)?;
    let mut ok = true;
    for suite in &CORE_SUITES {
        let step = ui::Step::start(format!("PostgreSQL {version}: {}", suite.what));
        let make_dir = dirs.build().join(suite.make_dir);
        let out = scratch.join(suite.name);
        run_as.make_owned_dir(&out)?;
        // pg_regress reads its options in order, so these override the
        // Makefile's own `--outputdir` and `--temp-instance`.
        let regress_opts = format!(
            "EXTRA_REGRESS_OPTS=--outputdir={} --temp-instance={}",
            out.display(),
            out.join("tmp_check").display()
        );
        let log = dirs.logs().join(suite.log);
        let result = cmd::run_logged(
            run_as
                .cmd(
                    "make",
                    ["-C", &make_dir.display().to_string(), "check", "NO_TEMP_INSTALL=1", &regress_opts],
                )
                .env_remove("PGPORT")
                // From 17 on, the suites copy an initdb template from
                // tmp_install that temp-install makes with initdb, which
                // refuses to run as root; any value here makes them run
                // initdb themselves instead.
                .env("PG_TEST_INITDB_EXTRA_OPTS", "--no-instructions"),
            suite.what,
            &log,
        );
        match result {
            Ok(()) => {
                step.done(&passed_summary(&log));
            }
            Err(e) => {
                drop(step);
                let diffs = out.join("regression.diffs");
                ui::error(&e.context(format!("the regression differences are in {}", diffs.display())));
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// What `make check`'s `temp-install` step does, run as ourselves in our
/// build tree: a fresh `tmp_install` with the server (`make install
/// DESTDIR=...`) and each suite's extra modules (`checkprep`). The initdb
/// template that step also makes from 17 on is left out (initdb refuses to
/// run as root); the suites run initdb instead.
fn temp_install(dirs: &PgDirs) -> Result<()> {
    let build = dirs.build();
    let tmp_install = build.join("tmp_install");
    fsutil::remove_dir_all_if_exists(&tmp_install)?;
    std::fs::create_dir_all(tmp_install.join("log"))
        .with_context(|| format!("cannot create {}", tmp_install.display()))?;
    let destdir = format!("DESTDIR={}", tmp_install.display());
    cmd::run_logged(
        tool("make", ["-C", &build.display().to_string(), &destdir, "install"]),
        "make install into tmp_install",
        &dirs.logs().join("check-temp-install.log"),
    )?;
    for suite in &CORE_SUITES {
        // checkprep installs into tmp_install itself.
        cmd::run_logged(
            tool("make", ["-j1", "-C", &build.join(suite.prep_dir).display().to_string(), "checkprep"]),
            &format!("make checkprep for {}", suite.what),
            &dirs.logs().join(format!("check-prep-{}.log", suite.name)),
        )?;
    }
    Ok(())
}

/// Negative control on a stock build of the same minor: the extension loads,
/// reports every patch absent (log and `spock.core_patches`), refuses the
/// patched column options with a message naming the patch file, and the
/// commit-clock acceptance check (B2) fails as it must without patch 030.
pub fn negative_control(stock: &Installed) -> Result<()> {
    let version = &stock.core.postgresql_version;
    let step = ui::Step::start(format!("Negative control on stock PostgreSQL {version} (no core patches)"));
    let run_as = RunAs::detect()?;
    let base = stock.dirs.scratch().join("negative-control");
    fsutil::remove_dir_all_if_exists(&base)?;
    let sockets = tempfile::Builder::new().prefix("spock-stock-").tempdir()?;
    let node = Node::init(
        "stock",
        stock,
        &base,
        sockets.path(),
        node::free_port()?,
        &run_as,
        &(node::base_conf(stock, 1) + "fsync = off\n"),
    )?;
    node.start()?;
    let result = (|| -> Result<()> {
        let sql = |q: &str| node.safe_psql("postgres", q);
        let major = stock.dirs.major;
        let version_string = sql("SELECT version()")?;
        if version_string.contains("-spock.") {
            bail!("the stock build reports a patched version: {version_string}");
        }
        let log = std::fs::read_to_string(node.log_file()).unwrap_or_default();
        for (number, name) in
            [("020", "column-options"), ("030", "commit-clock"), ("040", "subxact-commit-ts")]
        {
            let file = format!("built without pg{major}-{number}-{name}.diff");
            if !log.lines().any(|l| l.contains("WARNING") && l.contains(&file)) {
                bail!(
                    "no startup WARNING naming pg{major}-{number}-{name}.diff in {}",
                    node.log_file().display()
                );
            }
        }
        sql("CREATE EXTENSION spock")?;
        let view = sql(
            "SELECT string_agg(patch || '=' || present || '/' || coalesce(abi::text, 'null'), ',' ORDER BY patch) FROM spock.core_patches",
        )?;
        let want =
            "020 column-options=false/null,030 commit-clock=false/null,040 subxact-commit-ts=false/null";
        if view != want {
            bail!("spock.core_patches on a stock server shows {view:?}, expected {want:?}");
        }
        sql("CREATE TABLE t (id int PRIMARY KEY, c int); ALTER TABLE t ALTER COLUMN c SET (n_distinct = 5)")
            .context("stock column options must keep working")?;
        match sql("ALTER TABLE t ALTER COLUMN c SET (log_old_value = true)") {
            Ok(_) => bail!("log_old_value was accepted by a stock server"),
            Err(e) => {
                let text = format!("{e:#}");
                if !text.contains("needs core patch 020 column-options")
                    || !text.contains(&format!("pg{major}-020-column-options.diff"))
                {
                    bail!("the error for log_old_value on a stock server does not name the patch: {text}");
                }
            }
        }
        // B2 negative control: without the commit clock, a local commit
        // after a future-dated replicated commit is stamped earlier.
        sql("CREATE TABLE b2 (id int PRIMARY KEY);
             SELECT pg_replication_origin_create('b2');
             SELECT pg_replication_origin_session_setup('b2');
             BEGIN;
             SELECT pg_replication_origin_xact_setup('0/1', now() + interval '10 min');
             INSERT INTO b2 VALUES (1);
             COMMIT;
             SELECT pg_replication_origin_session_reset();")?;
        sql("INSERT INTO b2 VALUES (2)")?;
        let later = sql(
            "SELECT (SELECT pg_xact_commit_timestamp(xmin) FROM b2 WHERE id = 2) > (SELECT pg_xact_commit_timestamp(xmin) FROM b2 WHERE id = 1)",
        )?;
        if later != "f" {
            bail!(
                "on a stock server the local commit came out later than the future-dated one; B2 would not detect a missing patch 030"
            );
        }
        Ok(())
    })();
    node.stop(StopMode::Immediate).ok();
    result?;
    step.done("every check noticed the missing patches");
    Ok(())
}

/// pg_regress's closing line ("All 220 tests passed." or, from 16 on,
/// "# All 220 tests passed.").
fn passed_summary(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("tests passed"))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .next_back()
        .unwrap_or_else(|| "passed".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pg_regress_summary_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("check.log");
        std::fs::write(&log, "ok 1 - x\n# All 220 tests passed.\nmake: Leaving directory\n").unwrap();
        assert_eq!(super::passed_summary(&log), "All 220 tests passed.");
    }
}
