//! One PostgreSQL server of a toolkit build, driven the way PostgreSQL's own
//! test cluster API drives its nodes: `init`, `start`, `stop`, `restart`,
//! `kill9`, `safe_psql`, `poll_query_until`, `log_tail`.
//!
//! Authentication: connections through the Unix socket, whose directory is
//! private to the server account, are trusted; TCP connections (the server
//! listens on 127.0.0.1) need the superuser's password (`scram-sha-256`).
//! The password is generated at `init` and kept in the node's libpq
//! password file, `<base>/pgpass`, which the server gets as `PGPASSFILE` so
//! that its own processes can connect over TCP too.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::account::RunAs;
use crate::cmd::{self, tool};
use crate::pgbuild::Installed;

/// The database superuser of toolkit-made nodes.
pub const SUPERUSER: &str = "postgres";

/// The node's libpq password file, in its base directory.
const PGPASS_FILE: &str = "pgpass";

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
    /// Directory holding `data/`, `server.log` and `pgpass`, owned by the
    /// server account.
    pub base: PathBuf,
    pub port: u16,
    /// Private directory of the Unix socket.
    pub socket_dir: PathBuf,
    pub run_as: RunAs,
    /// The network namespace the server runs in (spockbench's partitions
    /// and simulated WAN), `None`: this host's.
    pub netns: Option<String>,
    /// `Some`: a server elsewhere, reached by this connection string
    /// (spockbench's `--node name=DSN`). SQL and pgbench go there; the
    /// methods that control a server (start, stop, kill -9, configuration)
    /// refuse, and `base`, `port` and `socket_dir` mean nothing.
    pub dsn: Option<Dsn>,
}

/// A libpq connection string that may hold a password: its `Debug` form
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn(pub String);

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dsn(..)")
    }
}

/// A private directory for a node's Unix socket. Socket paths are limited to
/// about 100 bytes, so it lives in the system's temporary directory.
pub fn socket_dir(tag: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("spock-{tag}-"))
        .tempdir()
        .context("cannot create a socket directory")
}

/// A new random superuser password: 24 bytes from the kernel's random
/// source, as 48 hexadecimal digits (nothing libpq's password file would
/// need to escape).
pub fn new_password() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a server password")?;
    Ok(hex::encode(bytes))
}

/// The lines of a libpq password file that give `password` for every
/// database and user on the loopback interface.
fn pgpass_text(password: &str) -> String {
    format!("127.0.0.1:*:*:*:{password}\nlocalhost:*:*:*:{password}\n")
}

/// The password of the first entry of a libpq password file (fields are
/// separated by `:`; `\` escapes `:` and `\`).
fn pgpass_password(text: &str) -> Option<String> {
    let line = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then(|| fields.pop()).flatten()
}

/// Percent-encodes a user or database name for a connection URI.
fn uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` (a connection string, SQL or a client's error that holds some)
/// as an error or a log may show it: the value of every `password` (and
/// `sslpassword`) key, spaces around `=` allowed, quoted or not, and the
/// password of every `scheme://user:password@` replaced by `***`.
pub fn redact_passwords(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let skip_spaces = |mut j: usize| {
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if lower[i..].starts_with(KEY) {
            let eq = skip_spaces(i + KEY.len());
            if bytes.get(eq) == Some(&b'=') {
                let start = skip_spaces(eq + 1);
                out.push_str(&text[i..start]);
                out.push_str("***");
                i = value_end(text, start);
                continue;
            }
        }
        let c = text[i..].chars().next().expect("i is on a character boundary");
        out.push(c);
        i += c.len_utf8();
    }
    let mut from = 0;
    while let Some(k) = out[from..].find("://") {
        let auth = from + k + 3;
        let end = out[auth..].find(['@', '/', ' ', '\'', '?']).map(|e| auth + e);
        if let Some(end) = end.filter(|e| out.as_bytes()[*e] == b'@')
            && let Some(colon) = out[auth..end].find(':')
        {
            out.replace_range(auth + colon + 1..end, "***");
        }
        from = auth;
    }
    out
}

/// Where a connection-string value that starts at `start` ends: after its
/// closing quote when quoted (`'...'` with `\` escapes, or `''...''` as it
/// reads inside an SQL literal), otherwise at the first space, quote or
/// `&` (the next parameter of a URI's query).
fn value_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    if let Some(inner) = rest.strip_prefix("''") {
        return inner.find("''").map_or(text.len(), |e| start + 2 + e + 2);
    }
    if let Some(inner) = rest.strip_prefix('\'') {
        let mut escaped = false;
        for (k, c) in inner.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return start + 1 + k + 1,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    rest.find(|c: char| c.is_ascii_whitespace() || c == '\'' || c == '"' || c == '&')
        .map_or(text.len(), |e| start + e)
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
    /// A server elsewhere, reached by `dsn` with the client programs of
    /// `installed` (see [`Node::dsn`]).
    pub fn remote(name: &str, dsn: &str, installed: &Installed) -> Node {
        Node {
            name: name.to_string(),
            installed: installed.clone(),
            base: PathBuf::new(),
            port: 0,
            socket_dir: PathBuf::new(),
            run_as: RunAs::Me,
            netns: None,
            dsn: Some(Dsn(dsn.to_string())),
        }
    }

    /// Fails for a node reached by a connection string, whose server this
    /// toolkit does not control.
    fn controlled(&self, what: &str) -> Result<()> {
        if self.dsn.is_some() {
            bail!(
                "node {} is a server reached by its connection string (--node {}=DSN): the toolkit cannot {what} it",
                self.name,
                self.name
            );
        }
        Ok(())
    }

    pub fn data(&self) -> PathBuf {
        self.base.join("data")
    }
    pub fn log_file(&self) -> PathBuf {
        self.base.join("server.log")
    }

    /// The node's libpq password file (`<base>/pgpass`): the superuser's
    /// password for TCP connections to 127.0.0.1 and localhost, owned by the
    /// server account, mode 0600. Nodes made by an older toolkit have none.
    pub fn pgpass_file(&self) -> PathBuf {
        self.base.join(PGPASS_FILE)
    }

    /// Runs initdb in `base/data` (as the server account) with a new random
    /// superuser password and writes the configuration: port, socket
    /// directory, and `conf` appended verbatim.
    pub fn init(
        name: &str,
        installed: &Installed,
        base: &Path,
        socket_dir: &Path,
        port: u16,
        run_as: &RunAs,
        conf: &str,
    ) -> Result<Node> {
        Node::init_with_password(name, installed, base, socket_dir, port, run_as, conf, &new_password()?)
    }

    /// [`Node::init`] with a given superuser password (the nodes of a
    /// cluster share one). Socket connections are trusted; TCP connections
    /// need the password (`scram-sha-256`), which is written to
    /// [`Node::pgpass_file`].
    #[allow(clippy::too_many_arguments)]
    pub fn init_with_password(
        name: &str,
        installed: &Installed,
        base: &Path,
        socket_dir: &Path,
        port: u16,
        run_as: &RunAs,
        conf: &str,
        password: &str,
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
            netns: None,
            dsn: None,
        };
        let data = node.data().display().to_string();
        let log = node.base.join("initdb.log");
        // initdb reads the password from a file: one only the account can
        // read, removed when initdb is done (`pwfile` is deleted on drop).
        let mut pwfile = tempfile::Builder::new()
            .prefix(".initdb-pwfile-")
            .tempfile_in(base)
            .with_context(|| format!("cannot create a password file for initdb in {}", base.display()))?;
        run_as.give_file(pwfile.as_file(), pwfile.path())?;
        {
            use std::io::Write;
            writeln!(pwfile, "{password}").context("cannot write the password file for initdb")?;
        }
        let pwfile_arg = format!("--pwfile={}", pwfile.path().display());
        cmd::run_logged(
            installed.lib_env(run_as.cmd(
                installed.bin("initdb"),
                [
                    "-D",
                    &data,
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    &pwfile_arg,
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
            )),
            &format!("initdb for node {name}"),
            &log,
        )?;
        drop(pwfile);
        run_as.write_private_file(&node.pgpass_file(), pgpass_text(password).as_bytes())?;
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
            netns: None,
            dsn: None,
        };
        let data = node.data().display().to_string();
        let source = primary.connstr("postgres");
        cmd::run_logged(
            primary.installed.lib_env(run_as.cmd(
                primary.installed.bin("pg_basebackup"),
                ["-D", &data, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "-d", &source],
            )),
            &format!("pg_basebackup for standby {name}"),
            &base.join("basebackup.log"),
        )?;
        // The copied configuration names the primary's port; the last
        // setting in the file wins.
        node.append_conf(&node_conf(name, port, &primary.socket_dir, ""))?;
        // The copy has the primary's roles and pg_hba.conf, so the same
        // password; the standby gets its own copy of the password file.
        if primary.pgpass_file().exists() {
            let text = read_no_follow(&primary.pgpass_file())?;
            run_as.write_private_file(&node.pgpass_file(), text.as_bytes())?;
        }
        Ok(node)
    }

    /// The superuser's password for TCP connections, read from
    /// [`Node::pgpass_file`].
    pub fn password(&self) -> Result<String> {
        let path = self.pgpass_file();
        let text = read_no_follow(&path).with_context(|| {
            format!(
                "node {} has no readable password file (made by an older toolkit, its TCP connections \
                 need no password; recreate the node to get one)",
                self.name
            )
        })?;
        pgpass_password(&text).with_context(|| format!("{} holds no password entry", path.display()))
    }

    /// A libpq connection string for a TCP connection to this node as
    /// `user`: `host=127.0.0.1 port=<port> dbname=<db> user=<user>`. It
    /// carries no password: libpq takes it from `PGPASSFILE` (set it to
    /// [`Node::pgpass_file`]; the node's own server processes have it set).
    pub fn tcp_connstr(&self, db: &str, user: &str) -> String {
        format!("host=127.0.0.1 port={} dbname={db} user={user}", self.port)
    }

    /// The same TCP connection as a URI,
    /// `postgresql://<user>@127.0.0.1:<port>/<db>` (names percent-encoded),
    /// also without the password.
    pub fn uri(&self, db: &str, user: &str) -> String {
        format!("postgresql://{}@127.0.0.1:{}/{}", uri_component(user), self.port, uri_component(db))
    }

    /// Appends settings to the node's postgresql.conf (they take effect at
    /// the next start or reload).
    pub fn append_conf(&self, text: &str) -> Result<()> {
        self.controlled("configure")?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.data().join("postgresql.conf");
        // The data directory is the server account's: never follow a link there.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Promotes a standby and waits until it accepts writes.
    pub fn promote(&self) -> Result<()> {
        self.pg_ctl(&["-w", "-t", "120", "promote"], "promote")
    }

    fn pg_ctl(&self, args: &[&str], what: &str) -> Result<()> {
        self.controlled(what)?;
        let data = self.data().display().to_string();
        let mut full = vec!["-D", data.as_str()];
        full.extend_from_slice(args);
        // The server inherits pg_ctl's environment; a Rust backtrace setting
        // would make pgrx append backtraces to error details.
        let mut expr = self
            .installed
            .lib_env(self.run_as.cmd_in(self.netns.as_deref(), self.installed.bin("pg_ctl"), &full))
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        // The server's own connections (apply workers, subscriptions) find
        // the password for TCP there. Nodes of an older toolkit have none.
        let pgpass = self.pgpass_file();
        if pgpass.exists() {
            expr = expr.env("PGPASSFILE", &pgpass);
        }
        let out = expr
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
        self.dsn.is_none() && self.postmaster_pid().is_some_and(|pid| self.is_our_postmaster(pid))
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
        self.controlled("kill")?;
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
        if let Some(Dsn(dsn)) = &self.dsn {
            return dsn.clone();
        }
        format!("host={} port={} dbname={db} user={SUPERUSER}", self.socket_dir.display(), self.port)
    }

    /// Runs the build's pgbench against `db` as the superuser, through the
    /// socket; its report (stdout and stderr), or an error that holds it.
    pub fn pgbench(&self, db: &str, args: &[&str]) -> Result<String> {
        let out = self
            .pgbench_cmd(db, args)
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("cannot run pgbench")?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!(
                "pgbench {} on node {} failed:\n{}",
                args.join(" "),
                self.name,
                redact_passwords(text.trim())
            );
        }
        Ok(text)
    }

    /// The build's pgbench against `db` as the superuser, through the socket,
    /// with `args` (not started).
    pub fn pgbench_cmd<A: AsRef<str>>(&self, db: &str, args: &[A]) -> duct::Expression {
        if let Some(Dsn(dsn)) = &self.dsn {
            // The database is the connection string's.
            let mut all: Vec<String> = args.iter().map(|s| s.as_ref().to_string()).collect();
            all.push(dsn.clone());
            return self.installed.lib_env(tool(self.installed.bin("pgbench"), &all));
        }
        let mut all: Vec<String> = vec![
            "-h".into(),
            self.socket_dir.display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            SUPERUSER.into(),
        ];
        all.extend(args.iter().map(|s| s.as_ref().to_string()));
        all.push(db.into());
        self.installed.lib_env(tool(self.installed.bin("pgbench"), &all))
    }

    /// Runs SQL with psql (unaligned, tuples only, stop on the first error)
    /// and returns its standard output without the final newline. A node
    /// reached by a connection string runs it in that string's database.
    pub fn safe_psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut args: Vec<String> =
            ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"].map(String::from).to_vec();
        match &self.dsn {
            Some(Dsn(dsn)) => args.extend(["-d".to_string(), dsn.clone()]),
            None => args.extend([
                "-h".to_string(),
                self.socket_dir.display().to_string(),
                "-p".to_string(),
                self.port.to_string(),
                "-U".to_string(),
                SUPERUSER.to_string(),
                "-d".to_string(),
                db.to_string(),
            ]),
        }
        args.extend(["-f".to_string(), "-".to_string()]);
        let out = self
            .installed
            .lib_env(tool(self.installed.bin("psql"), &args))
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin_bytes(sql.as_bytes().to_vec())
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .context("cannot run psql")?;
        if !out.status.success() {
            bail!(
                "SQL on node {} ({}) failed:\n{}\n{}",
                self.name,
                if self.dsn.is_some() { "the database of its connection string" } else { db },
                redact_passwords(sql.trim()),
                redact_passwords(String::from_utf8_lossy(&out.stderr).trim())
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
        if self.dsn.is_some() {
            return format!(
                "(node {} is reached by a connection string: its server log is on its own host)",
                self.name
            );
        }
        cmd::tail_lines(&self.log_file(), n).unwrap_or_else(|e| format!("(no server log: {e})"))
    }
}

/// Reads a small file without following a symbolic link at `path` (the
/// node's directories belong to the server account).
fn read_no_follow(path: &Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_in_connection_strings_and_sql() {
        assert_eq!(redact_passwords("host=a password=s3cret user=b"), "host=a password=*** user=b");
        assert_eq!(redact_passwords("host=a password=s3cret"), "host=a password=***");
        assert_eq!(
            redact_passwords("postgresql://bench:s3cret@db1:5432/x"),
            "postgresql://bench:***@db1:5432/x"
        );
        assert_eq!(redact_passwords("postgresql://bench@db1/x"), "postgresql://bench@db1/x");
        assert_eq!(
            redact_passwords("SELECT f(dsn := 'host=a password=s3cret'), g('postgres://u:p2@h/d')"),
            "SELECT f(dsn := 'host=a password=***'), g('postgres://u:***@h/d')"
        );
        // Quoted values, spaces around '=', other keys that hold secrets.
        assert_eq!(redact_passwords("host=a password = 'two words' user=b"), "host=a password = *** user=b");
        assert_eq!(redact_passwords(r"password='it\'s' port=5"), "password=*** port=5");
        assert_eq!(
            redact_passwords("SELECT f('host=a password=''two words'' user=b')"),
            "SELECT f('host=a password=*** user=b')"
        );
        assert_eq!(redact_passwords("sslpassword=k1 PASSWORD=k2"), "sslpassword=*** PASSWORD=***");
        assert_eq!(
            redact_passwords("postgresql://u:pw@h/db?sslmode=require&password=q2&x=1"),
            "postgresql://u:***@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(redact_passwords("passfile=/x/pgpass"), "passfile=/x/pgpass");
        assert_eq!(redact_passwords("the password is wrong"), "the password is wrong");
        assert_eq!(redact_passwords("é password=ü"), "é password=***");
    }

    #[test]
    fn passwords_are_random_hex() {
        let (a, b) = (new_password().unwrap(), new_password().unwrap());
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_password_file_round_trips() {
        let text = pgpass_text("0123abcd");
        assert_eq!(text, "127.0.0.1:*:*:*:0123abcd\nlocalhost:*:*:*:0123abcd\n");
        assert_eq!(pgpass_password(&text).as_deref(), Some("0123abcd"));
        assert_eq!(pgpass_password("# c\nh:5432:db:u:p\\:w\\\\d:x\n").as_deref(), Some("p:w\\d:x"));
        assert_eq!(pgpass_password("only:four:fields:here\n"), None);
        assert_eq!(pgpass_password(""), None);
    }

    #[test]
    fn uris_encode_names() {
        assert_eq!(uri_component("postgres"), "postgres");
        assert_eq!(uri_component("a b/ü"), "a%20b%2F%C3%BC");
    }
}
