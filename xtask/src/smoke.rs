//! The server check every installed tree gets, a development build as well
//! as the files of an installed package: start a server (as the unprivileged
//! account when root) and check what a user would, including recovery after
//! `kill -9`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cmd::{self, tool};
use crate::layout::PgDirs;
use crate::node::{self, Node, StopMode};
use crate::pgbuild::{CORE_PATCHES_FILE, CorePatches, Installed};
use crate::{fsutil, ui};

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
pub fn smoke_test(installed: &Installed) -> Result<()> {
    smoke_test_with(installed, &[])
}

/// One more check of a smoke test: what it proves, the SQL, the answer.
pub type ExtraCheck = (String, String, String);

/// `smoke_test`, with `extra` checks run in database `postgres` once spock
/// is created there (another extension installed beside it, for example).
pub fn smoke_test_with(installed: &Installed, extra: &[ExtraCheck]) -> Result<()> {
    let step = ui::Step::start(format!(
        "Checking a server of PostgreSQL {}{}",
        installed.core.postgresql_version, installed.core.extra_version
    ));
    let dirs: &PgDirs = &installed.dirs;
    let run_as = RunAs::detect()?;
    let base = dirs.scratch().join("smoke");
    stop_leftover(installed, &base, &run_as);
    fsutil::remove_dir_all_if_exists(&base)?;
    let socket_dir = node::socket_dir("smoke")?;
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
    for (what, sql, expected) in extra {
        check(what, sql, expected)?;
    }
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

/// A server left running in `base` by an interrupted run is stopped first.
fn stop_leftover(installed: &Installed, base: &Path, run_as: &RunAs) {
    let data = base.join("data");
    if data.join("postmaster.pid").exists() {
        let data = data.display().to_string();
        let _ = installed
            .lib_env(
                run_as.cmd(installed.bin("pg_ctl"), ["-D", data.as_str(), "-m", "immediate", "-w", "stop"]),
            )
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run();
    }
}
