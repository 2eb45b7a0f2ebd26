//! Running external tools: a clean environment, output kept in log files, and
//! failures that show the log's tail and path.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use duct::Expression;

use crate::ui;

/// Environment variables that cargo sets for the processes it runs and that
/// confuse make, configure or a nested cargo (jobserver flags, the package
/// and build-script variables of the xtask itself).
fn is_cargo_build_variable(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "CARGO_MAKEFLAGS",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CFG_", "CARGO_FEATURE_", "DEP_"];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Removes cargo's build variables from a command's environment.
pub fn clean_env(mut expr: Expression) -> Expression {
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && is_cargo_build_variable(name)
        {
            expr = expr.env_remove(name);
        }
    }
    expr
}

/// Builds a command from a program and its arguments (never a shell string),
/// with cargo's build variables removed.
pub fn tool<I, A>(program: impl AsRef<std::ffi::OsStr>, args: I) -> Expression
where
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    clean_env(duct::cmd(program.as_ref(), args))
}

/// Runs `expr`, writing its combined output to `log` (and to the terminal with
/// `--verbose`). On failure the error names `what`, shows the last lines of
/// the log and says where the full log is.
pub fn run_logged(expr: Expression, what: &str, log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    }
    let mut file = File::create(log).with_context(|| format!("cannot create log file {}", log.display()))?;
    let mut reader = expr
        .stderr_to_stdout()
        .stdin_null()
        .unchecked()
        .reader()
        .with_context(|| format!("cannot start {what}; is it installed? (see `cargo xtask doctor`)"))?;
    let verbose = ui::verbose();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("reading the output of {what}"))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).with_context(|| format!("writing {}", log.display()))?;
        if verbose {
            let _ = std::io::stderr().write_all(&buf[..n]);
        }
    }
    drop(file);
    let output = reader
        .try_wait()
        .with_context(|| format!("waiting for {what}"))?
        .context("the command's output ended before it exited")?;
    if !output.status.success() {
        bail!("{}", failure_message(what, &output.status.to_string(), log, 30));
    }
    Ok(())
}

/// Runs `expr` and returns its standard output; standard error is included in
/// the error on failure. For short commands whose output is the answer.
pub fn read(expr: Expression, what: &str) -> Result<String> {
    let output = expr
        .stdin_null()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run {what}; is it installed? (see `cargo xtask doctor`)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        bail!("{what} failed ({}):\n{}{}", output.status, stdout, stderr.trim_end());
    }
    String::from_utf8(output.stdout).with_context(|| format!("{what} printed invalid UTF-8"))
}

/// "`what` failed (`status`)", the first error lines of `log` (compilers and
/// make report the cause long before the end), its last `n` lines, and its path.
pub fn failure_message(what: &str, status: &str, log: &Path, n: usize) -> String {
    let tail = tail_lines(log, n).unwrap_or_else(|e| format!("(cannot read the log: {e})"));
    let errors = error_lines(log, 10);
    let errors = if errors.is_empty() {
        String::new()
    } else {
        format!("--- first errors in {} ---\n{}\n", log.display(), errors.join("\n"))
    };
    format!(
        "{what} failed ({status}).\n{errors}--- last lines of {log} ---\n{tail}\n--- end ---\nFull log: {log}",
        log = log.display()
    )
}

/// Up to `max` lines of a log that report an error (`error:` from compilers,
/// `ERROR:` from PostgreSQL tools, `FATAL:`).
fn error_lines(log: &Path, max: usize) -> Vec<String> {
    let Ok(file) = File::open(log) else { return Vec::new() };
    BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .filter(|l| l.contains("error:") || l.contains("ERROR:") || l.contains("FATAL:"))
        .take(max)
        .collect()
}

/// The last `n` lines of a text file.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<String> {
    let file = File::open(path)?;
    let mut ring = std::collections::VecDeque::with_capacity(n + 1);
    for line in BufReader::new(file).split(b'\n') {
        ring.push_back(String::from_utf8_lossy(&line?).into_owned());
        if ring.len() > n {
            ring.pop_front();
        }
    }
    Ok(ring.into_iter().collect::<Vec<_>>().join("\n"))
}

/// Whether `program` can be found on PATH.
pub fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        candidate.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_variables_are_recognised() {
        for name in ["MAKEFLAGS", "CARGO_PKG_NAME", "CARGO_MANIFEST_DIR", "OUT_DIR", "CARGO_TARGET_DIR"] {
            assert!(is_cargo_build_variable(name), "{name}");
        }
        for name in ["PATH", "HOME", "CARGO_HOME", "CARGO", "CC", "CFLAGS", "RUSTUP_TOOLCHAIN"] {
            assert!(!is_cargo_build_variable(name), "{name}");
        }
    }

    #[test]
    fn failing_command_reports_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let expr = tool("sh", ["-c", "for i in 1 2 3 4 5; do echo line$i; done; exit 3"]);
        let err = run_logged(expr, "the test script", &log).unwrap_err().to_string();
        assert!(err.contains("the test script failed"), "{err}");
        assert!(err.contains("line5") && err.contains(&log.display().to_string()), "{err}");
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 5);
    }

    #[test]
    fn environment_is_cleaned() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("MAKEFLAGS", "-j99 --jobserver-auth=3,4") };
        let out = read(tool("sh", ["-c", "echo \"[${MAKEFLAGS-unset}]\""]), "sh").unwrap();
        assert_eq!(out.trim(), "[unset]");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_lines(&p, 2).unwrap(), "c\nd");
    }
}
