//! The account servers run as. PostgreSQL refuses to run as root, so when the
//! toolkit runs as root it runs initdb, pg_ctl and the servers as an
//! unprivileged account (created if missing) that owns the data directories.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use duct::Expression;
use nix::unistd::{Gid, Uid, User};

use crate::cmd::{self, tool};
use crate::ui;

/// Default name of the server account; `SPOCK_SERVER_USER` overrides it.
pub const DEFAULT_ACCOUNT: &str = "spock";

#[derive(Clone, Debug)]
pub enum RunAs {
    /// Not root: run everything as ourselves.
    Me,
    /// Root: run servers as this account.
    Account { name: String, uid: Uid, gid: Gid },
}

impl RunAs {
    /// `Me` when not root; otherwise the server account, created if missing.
    pub fn detect() -> Result<RunAs> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs::Me);
        }
        let name = std::env::var("SPOCK_SERVER_USER").unwrap_or_else(|_| DEFAULT_ACCOUNT.to_string());
        if name == "root" || name.is_empty() {
            bail!("SPOCK_SERVER_USER must name an unprivileged account; PostgreSQL refuses to run as root");
        }
        let user = match User::from_name(&name).context("cannot read the account database")? {
            Some(user) => user,
            None => {
                ui::note(format!(
                    "running as root: creating the unprivileged account `{name}` to run PostgreSQL \
                     (the server refuses to run as root)"
                ));
                cmd::read(
                    tool(
                        "useradd",
                        [
                            "--system",
                            "--user-group",
                            "--no-create-home",
                            "--home-dir",
                            "/nonexistent",
                            "--shell",
                            "/usr/sbin/nologin",
                            &name,
                        ],
                    ),
                    "useradd",
                )
                .with_context(|| {
                    format!("cannot create the account `{name}`; create it by hand or set SPOCK_SERVER_USER")
                })?;
                User::from_name(&name)?
                    .with_context(|| format!("account `{name}` missing right after useradd"))?
            }
        };
        if user.uid.is_root() {
            bail!("account `{name}` has uid 0; set SPOCK_SERVER_USER to an unprivileged account");
        }
        Ok(RunAs::Account { name, uid: user.uid, gid: user.gid })
    }

    /// A command that runs `program` as this account, environment kept.
    pub fn cmd<I, A>(&self, program: impl Into<OsString>, args: I) -> Expression
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.cmd_in(None, program, args)
    }

    /// The same, inside network namespace `netns` when given (`ip netns
    /// exec`, which needs root).
    pub fn cmd_in<I, A>(&self, netns: Option<&str>, program: impl Into<OsString>, args: I) -> Expression
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(ns) = netns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), ns.into()]);
        }
        if let RunAs::Account { uid, gid, .. } = self {
            argv.extend([
                "setpriv".into(),
                format!("--reuid={uid}").into(),
                format!("--regid={gid}").into(),
                "--init-groups".into(),
                "--".into(),
            ]);
        }
        argv.push(program.into());
        argv.extend(args.into_iter().map(Into::into));
        let program = argv.remove(0);
        tool(program, argv)
    }

    /// Creates `dir` (and parents) and gives it to the account.
    pub fn make_owned_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if let RunAs::Account { uid, gid, .. } = self {
            nix::unistd::chown(dir, Some(*uid), Some(*gid))
                .with_context(|| format!("cannot give {} to the server account", dir.display()))?;
        }
        Ok(())
    }

    /// Creates `path` as a new file with `contents`, readable and writable
    /// by the account alone (mode 0600, owned by it; by us when not root).
    /// An existing file or link at `path` is replaced, never followed, so a
    /// directory the account can write cannot redirect the write.
    pub fn write_private_file(&self, path: &Path, contents: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot replace {}", path.display()));
            }
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        self.give_file(&file, path)?;
        file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Gives an open file (`path` names it in errors) to the account.
    pub fn give_file(&self, file: &std::fs::File, path: &Path) -> Result<()> {
        if let RunAs::Account { uid, gid, .. } = self {
            nix::unistd::fchown(file, Some(*uid), Some(*gid))
                .with_context(|| format!("cannot give {} to the server account", path.display()))?;
        }
        Ok(())
    }

    /// Makes sure the account can reach `path` (search permission on every
    /// ancestor). When it cannot, grants search permission to others on the
    /// blocking directories, and says so: that permission only lets the
    /// account walk through by name, not list them.
    pub fn ensure_reachable(&self, path: &Path) -> Result<()> {
        let RunAs::Account { name, uid, gid } = self else { return Ok(()) };
        let path = path.canonicalize().with_context(|| format!("cannot resolve {}", path.display()))?;
        for dir in path.ancestors().collect::<Vec<_>>().into_iter().rev() {
            let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
            if !meta.is_dir() {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let mode = meta.mode();
            let can = (meta.uid() == uid.as_raw() && mode & 0o100 != 0)
                || (meta.gid() == gid.as_raw() && mode & 0o010 != 0)
                || mode & 0o001 != 0;
            if !can {
                ui::note(format!(
                    "granting search permission (o+x) on {} so that the server account `{name}` can reach {}",
                    dir.display(),
                    path.display()
                ));
                let mut perms = meta.permissions();
                perms.set_mode(mode | 0o001);
                std::fs::set_permissions(dir, perms)
                    .with_context(|| format!("cannot change the permissions of {}", dir.display()))?;
            }
        }
        Ok(())
    }
}
