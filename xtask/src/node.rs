//! One PostgreSQL server of a toolkit build, driven the way PostgreSQL's own
//! test cluster API drives its nodes: `init`, `start`, `stop`, `restart`,
//! `kill9`, `safe_psql`, `poll_query_until`, `log_tail`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cmd::{self, tool};
use crate::pgbuild::Installed;

/// The database superuser of toolkit-made nodes.
pub const SUPERUSER: &str = "postgres";

/// How `stop` asks the server to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    Fast,
    Immediate,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub installed: Installed,
    /// Directory holding `data/` and `server.log`, owned by the server account.
    pub base: PathBuf,
    pub port: u16,
    /// Private directory of the Unix socket.
    pub socket_dir: PathBuf,
    pub run_as: RunAs,
}

/// A private directory for a node's Unix socket. Socket paths are limited to
/// about 100 bytes, so it lives in the system's temporary directory.
pub fn socket_dir(tag: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("spock-{tag}-"))
        .tempdir()
        .context("cannot create a socket directory")
}

/// Asks the kernel for a free TCP port on the loopback interface.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot probe for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something listens on (or holds) a loopback port.
pub fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_err()
}

impl Node {
    pub fn data(&self) -> PathBuf {
        self.base.join("data")
    }
    pub fn log_file(&self) -> PathBuf {
        self.base.join("server.log")
    }

    /// Runs initdb in `base/data` (as the server account) and writes the
    /// configuration: port, socket directory, and `conf` appended verbatim.
    pub fn init(
        name: &str,
        installed: &Installed,
        base: &Path,
        socket_dir: &Path,
        port: u16,
        run_as: &RunAs,
        conf: &str,
    ) -> Result<Node> {
        if base.join("data").exists() {
            bail!("{} already exists; remove it or pick another directory", base.join("data").display());
        }
        run_as.make_owned_dir(base)?;
        run_as.make_owned_dir(socket_dir)?;
        std::fs::set_permissions(socket_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        run_as.ensure_reachable(&installed.dirs.install())?;
        run_as.ensure_reachable(base)?;
        let node = Node {
            name: name.to_string(),
            installed: installed.clone(),
            base: base.to_path_buf(),
            port,
            socket_dir: socket_dir.to_path_buf(),
            run_as: run_as.clone(),
        };
        let data = node.data().display().to_string();
        let log = node.base.join("initdb.log");
        cmd::run_logged(
            run_as.cmd(
                installed.bin("initdb"),
                ["-D", &data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            ),
            &format!("initdb for node {name}"),
            &log,
        )?;
        node.append_conf(&node_conf(name, port, socket_dir, conf))?;
        Ok(node)
    }

    /// Makes a streaming standby of `primary` with `pg_basebackup -R` in
    /// `base/data` (as the server account), on its own port. Not started.
    pub fn init_standby(name: &str, primary: &Node, base: &Path, port: u16) -> Result<Node> {
        if base.join("data").exists() {
            bail!("{} already exists; remove it or pick another directory", base.join("data").display());
        }
        let run_as = &primary.run_as;
        run_as.make_owned_dir(base)?;
        let node = Node {
            name: name.to_string(),
            installed: primary.installed.clone(),
            base: base.to_path_buf(),
            port,
            socket_dir: primary.socket_dir.clone(),
            run_as: run_as.clone(),
        };
        let data = node.data().display().to_string();
        let source = primary.connstr("postgres");
        cmd::run_logged(
            run_as.cmd(
                primary.installed.bin("pg_basebackup"),
                ["-D", &data, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "-d", &source],
            ),
            &format!("pg_basebackup for standby {name}"),
            &base.join("basebackup.log"),
        )?;
        // The copied configuration names the primary's port; the last
        // setting in the file wins.
        node.append_conf(&node_conf(name, port, &primary.socket_dir, ""))?;
        Ok(node)
    }

    /// Appends settings to the node's postgresql.conf (they take effect at
    /// the next start or reload).
    pub fn append_conf(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let path = self.data().join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Promotes a standby and waits until it accepts writes.
    pub fn promote(&self) -> Result<()> {
        self.pg_ctl(&["-w", "-t", "120", "promote"], "promote")
    }

    fn pg_ctl(&self, args: &[&str], what: &str) -> Result<()> {
        let data = self.data().display().to_string();
        let mut full = vec!["-D", data.as_str()];
        full.extend_from_slice(args);
        // The server inherits pg_ctl's environment; a Rust backtrace setting
        // would make pgrx append backtraces to error details.
        let out = self
            .run_as
            .cmd(self.installed.bin("pg_ctl"), &full)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin_null()
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .with_context(|| format!("cannot run pg_ctl for node {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{what} of node {} failed: {}\n--- last lines of {} ---\n{}\n--- end ---",
                self.name,
                String::from_utf8_lossy(&out.stdout).trim(),
                self.log_file().display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        if port_in_use(self.port) {
            bail!(
                "port {} of node {} is already in use by another program; stop it, or recreate the node \
                 on another port",
                self.port,
                self.name
            );
        }
        self.remove_stale_pid_file()?;
        let log = self.log_file().display().to_string();
        self.pg_ctl(&["-l", &log, "-w", "-t", "120", "start"], "start")
    }

    pub fn stop(&self, mode: StopMode) -> Result<()> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.pg_ctl(&["-m", mode, "-w", "-t", "120", "stop"], "stop")
    }

    pub fn restart(&self) -> Result<()> {
        self.stop(StopMode::Fast)?;
        self.start()
    }

    /// Whether the postmaster of this node is running: its pid file names a
    /// live process that runs this build's `postgres`.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(|pid| self.is_our_postmaster(pid))
    }

    fn is_our_postmaster(&self, pid: nix::unistd::Pid) -> bool {
        if nix::sys::signal::kill(pid, None).is_err() {
            return false;
        }
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) => self.installed.bin("postgres").canonicalize().is_ok_and(|ours| ours == exe),
            // Not allowed to look (another user's process): trust the pid file.
            Err(_) => true,
        }
    }

    fn postmaster_pid(&self) -> Option<nix::unistd::Pid> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Some(nix::unistd::Pid::from_raw(pid))
    }

    /// A `postmaster.pid` left by a crash whose pid now belongs to another
    /// process would stop the server from starting; remove it, and say so.
    fn remove_stale_pid_file(&self) -> Result<()> {
        let Some(pid) = self.postmaster_pid() else { return Ok(()) };
        if self.is_our_postmaster(pid) {
            bail!("node {} is running already (postmaster pid {pid}); stop it first", self.name);
        }
        let file = self.data().join("postmaster.pid");
        let whose = if nix::sys::signal::kill(pid, None).is_ok() {
            "now belongs to another process"
        } else {
            "is no longer running"
        };
        crate::ui::note(format!("node {}: removing stale {} (pid {pid} {whose})", self.name, file.display()));
        std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))
    }

    /// Kills the postmaster with SIGKILL and waits until its children are gone,
    /// as a crash would leave the node.
    pub fn kill9(&self) -> Result<()> {
        let pid =
            self.postmaster_pid().with_context(|| format!("node {} has no postmaster.pid", self.name))?;
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
            .with_context(|| format!("cannot kill the postmaster of node {}", self.name))?;
        // Children exit once they notice the postmaster died; the socket and
        // port are free again when they are gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if nix::sys::signal::kill(pid, None).is_err() && !port_in_use(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("processes of node {} are still alive 30 s after kill -9", self.name)
    }

    /// A libpq connection string for a database of this node.
    pub fn connstr(&self, db: &str) -> String {
        format!("host={} port={} dbname={db} user={SUPERUSER}", self.socket_dir.display(), self.port)
    }

    /// Runs SQL with psql (unaligned, tuples only, stop on the first error)
    /// and returns its standard output without the final newline.
    pub fn safe_psql(&self, db: &str, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        let socket = self.socket_dir.display().to_string();
        let out = tool(
            self.installed.bin("psql"),
            [
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-f",
                "-",
            ],
        )
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin_bytes(sql.as_bytes().to_vec())
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .context("cannot run psql")?;
        if !out.status.success() {
            bail!(
                "SQL on node {} ({db}) failed:\n{}\n{}",
                self.name,
                sql.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// Runs `sql` until it returns `t`, or fails after `timeout`.
    pub fn poll_query_until(&self, db: &str, sql: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.safe_psql(db, sql) {
                Ok(out) if out.trim() == "t" => return Ok(()),
                Ok(out) => last = out,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "node {}: `{}` did not return true within {:?}; last result: {last}",
            self.name,
            sql.trim(),
            timeout
        )
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        cmd::tail_lines(&self.log_file(), n).unwrap_or_else(|e| format!("(no server log: {e})"))
    }
}

/// The lines that place a node: its port, loopback, and its socket directory,
/// then `conf`.
fn node_conf(name: &str, port: u16, socket_dir: &Path, conf: &str) -> String {
    format!(
        "\n# Written by cargo xtask for node {name}\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n{conf}",
        socket_dir.display()
    )
}

/// The configuration every toolkit-made node gets, sized for a mesh of
/// `nodes` nodes: logical WAL, the spock library preloaded, commit
/// timestamps, enough workers, slots and WAL senders, and
/// `output_plugin_libraries` only where the server has that setting (an
/// unknown setting would stop the server from starting).
pub fn base_conf(installed: &Installed, nodes: usize) -> String {
    let peers = nodes.max(2);
    let mut conf = format!(
        "wal_level = logical\n\
         shared_preload_libraries = 'spock'\n\
         track_commit_timestamp = on\n\
         max_worker_processes = {workers}\n\
         max_replication_slots = {slots}\n\
         max_wal_senders = {slots}\n\
         log_line_prefix = '%m [%p] %q%a '\n",
        workers = 16 + 2 * peers,
        slots = 4 + 2 * peers,
    );
    if installed.dirs.major >= 18 {
        conf.push_str(&format!("max_active_replication_origins = {}\n", 4 + 2 * peers));
    }
    if installed.core.output_plugin_libraries {
        conf.push_str("output_plugin_libraries = 'pgoutput, test_decoding, spock_output'\n");
    }
    conf
}
