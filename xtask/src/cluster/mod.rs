//! Local multi-node clusters: N nodes of a toolkit build side by side, each
//! with its own data directory, port and log, sharing a private socket
//! directory and one superuser password for TCP connections (each node keeps
//! it in its own password file, so that any node's server processes can log
//! in to any other over TCP). The state is kept in `cluster.json` so that
//! later commands (`status`, `psql`, `down`) find the nodes again.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::account::RunAs;
use crate::flags::Profile;
use crate::fsutil;
use crate::layout::PgDirs;
use crate::node::{self, Node, StopMode};
use crate::pgbuild::Installed;
use crate::ui;

mod membership;
pub mod task;

const STATE_FILE: &str = "cluster.json";
/// How the name of a cluster's socket directory starts.
const SOCKET_DIR_PREFIX: &str = "spock-cluster-";

/// Memory a node is allowed for in the node limit (shared buffers, WAL
/// buffers, workers and a few backends).
const NODE_MEMORY_MB: u64 = 300;
/// Upper bound on the node count whatever the memory: every node runs a
/// mesh of walsenders and apply workers on the same CPUs.
const NODE_CAP: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    postgresql_version: String,
    major: u32,
    profile: Profile,
    socket_dir: PathBuf,
    nodes: Vec<NodeState>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeState {
    name: String,
    port: u16,
    base: PathBuf,
}

/// A cluster of nodes of one build.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub installed: Installed,
    pub socket_dir: PathBuf,
    pub nodes: Vec<Node>,
}

/// How many nodes this machine can run side by side, and why.
pub fn max_nodes() -> (usize, String) {
    let available_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024);
    match available_mb {
        Some(mb) if (mb / NODE_MEMORY_MB) < NODE_CAP as u64 => (
            (mb / NODE_MEMORY_MB) as usize,
            format!("{mb} MB of memory available, about {NODE_MEMORY_MB} MB per node"),
        ),
        _ => (NODE_CAP, format!("at most {NODE_CAP} nodes run side by side")),
    }
}

/// The paths in a cluster's state are what `create` makes: node `nK` in
/// `dir/nK`, the sockets in a `spock-cluster-*` directory. Anything else
/// (the state was edited, for instance by the server account, which owned
/// the cluster directory in earlier versions of the toolkit) is refused
/// before any of those paths is created, run or removed.
fn check_state(dir: &Path, state: &State) -> Result<()> {
    let refuse = |what: String| {
        anyhow::anyhow!(
            "{} {what}, which the toolkit never writes; it was changed by hand or by another account. \
             Stop the servers and remove {} by hand",
            dir.join(STATE_FILE).display(),
            dir.display()
        )
    };
    // The same directory, also when spelled through another link to it
    // (a checkout whose target/pg points at another one's).
    let same = |a: &Path, b: &Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
    };
    for n in &state.nodes {
        let numbered =
            n.name.strip_prefix('n').is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
        let in_dir = n.base.file_name() == Some(std::ffi::OsStr::new(&n.name))
            && n.base.parent().is_some_and(|parent| same(parent, dir));
        if !numbered || !in_dir {
            return Err(refuse(format!("places node {:?} in {}", n.name, n.base.display())));
        }
    }
    let socket_ok = state.socket_dir.is_absolute()
        && state
            .socket_dir
            .components()
            .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
        && state.socket_dir.file_name().is_some_and(|f| f.to_string_lossy().starts_with(SOCKET_DIR_PREFIX));
    if !socket_ok {
        return Err(refuse(format!("names the socket directory {}", state.socket_dir.display())));
    }
    Ok(())
}

/// Quotes a string as an SQL literal.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Cluster {
    /// Initialises `count` nodes `n1..nK` in `dir` (which must not hold a
    /// cluster yet) with the base configuration for a mesh of that size plus
    /// `extra_conf`, and one new superuser password for all of them. The
    /// nodes are not started.
    pub fn create(
        dir: &Path,
        installed: &Installed,
        count: usize,
        run_as: &RunAs,
        extra_conf: &str,
    ) -> Result<Cluster> {
        if count == 0 {
            bail!("a cluster needs at least one node");
        }
        let (limit, why) = max_nodes();
        if count > limit {
            bail!("{count} nodes are too many for this machine ({why}); use --nodes {limit} or fewer");
        }
        if dir.join(STATE_FILE).exists() {
            bail!("{} already holds a cluster", dir.display());
        }
        // The directory and `cluster.json` stay ours: the server account
        // gets the node directories inside it, never the state that names
        // what `load` and `destroy` work on.
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let socket_dir = tempfile::Builder::new()
            .prefix(SOCKET_DIR_PREFIX)
            .tempdir()
            .context("cannot create the socket directory")?
            .keep();
        let mut ports = Vec::new();
        while ports.len() < count {
            let port = node::free_port()?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut conf = node::base_conf(installed, count);
        conf.push_str(extra_conf);
        let password = node::new_password()?;
        let mut nodes = Vec::new();
        for (i, port) in ports.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node = Node::init_with_password(
                &name,
                installed,
                &dir.join(&name),
                &socket_dir,
                port,
                run_as,
                &conf,
                &password,
            )
            .with_context(|| format!("cannot initialise node {name}"))?;
            nodes.push(node);
        }
        let cluster = Cluster { dir: dir.to_path_buf(), installed: installed.clone(), socket_dir, nodes };
        cluster.save()?;
        Ok(cluster)
    }

    fn save(&self) -> Result<()> {
        let state = State {
            postgresql_version: self.installed.core.postgresql_version.clone(),
            major: self.installed.dirs.major,
            profile: self.installed.dirs.profile,
            socket_dir: self.socket_dir.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeState { name: n.name.clone(), port: n.port, base: n.base.clone() })
                .collect(),
        };
        fsutil::write_json(&self.dir.join(STATE_FILE), &state)
    }

    /// The cluster recorded in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Cluster>> {
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let state: State = fsutil::read_json(&path).with_context(|| {
            format!("{} is malformed; remove {} to start over", path.display(), dir.display())
        })?;
        check_state(dir, &state)?;
        let dirs = PgDirs::new(state.major, state.profile);
        let installed = Installed::load(&dirs).with_context(|| {
            format!(
                "the cluster in {} was made with PostgreSQL {}, which is no longer installed in {}; \
                 rebuild it (cargo xtask build --pg {}) or remove the cluster (cargo xtask cluster down --destroy)",
                dir.display(),
                state.postgresql_version,
                dirs.install().display(),
                state.major
            )
        })?;
        let run_as = RunAs::detect()?;
        if !state.socket_dir.exists() {
            // /tmp may have been cleaned since the cluster was made.
            run_as.make_owned_dir(&state.socket_dir)?;
            std::fs::set_permissions(&state.socket_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        let nodes = state
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                installed: installed.clone(),
                base: n.base.clone(),
                port: n.port,
                socket_dir: state.socket_dir.clone(),
                run_as: run_as.clone(),
                netns: None,
                dsn: None,
            })
            .collect();
        Ok(Some(Cluster { dir: dir.to_path_buf(), installed, socket_dir: state.socket_dir, nodes }))
    }

    /// The nodes made by an older toolkit, without a password file: their
    /// servers were initialised with `trust` for TCP connections too.
    pub fn nodes_without_password(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| !n.pgpass_file().exists()).collect()
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            format!(
                "no node {name:?} in the cluster; its nodes are {}",
                self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Starts every node that is not running.
    pub fn start(&self) -> Result<()> {
        for node in &self.nodes {
            if !node.is_running() {
                node.start()?;
            }
        }
        Ok(())
    }

    /// Stops every running node.
    pub fn stop(&self, mode: StopMode) -> Result<()> {
        let mut first_error = None;
        for node in &self.nodes {
            if node.is_running()
                && let Err(e) = node.stop(mode)
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The pgbench tables created once, on n1, with automatic DDL replication
    /// (on for every node), and a per-node key for pgbench_history.
    pub fn init_pgbench(&self, db: &str, scale: u32) -> Result<()> {
        let timeout = std::time::Duration::from_secs(600);
        let step = ui::Step::start("Turning on automatic DDL replication on every node");
        for node in &self.nodes {
            for sql in [
                "ALTER SYSTEM SET spock.enable_ddl_replication = on",
                "ALTER SYSTEM SET spock.include_ddl_repset = on",
                "SELECT pg_reload_conf()",
            ] {
                node.safe_psql(db, sql)?;
            }
        }
        step.done("spock.enable_ddl_replication and spock.include_ddl_repset");
        let n1 = &self.nodes[0];
        let step =
            ui::Step::start(format!("pgbench -i -s {scale} on {} (replicated to the others)", n1.name));
        n1.pgbench(db, &["-i", "-s", &scale.to_string()])?;
        n1.safe_psql(db, "ALTER TABLE pgbench_history ADD COLUMN hid bigint")?;
        self.wait_applied(db, n1, timeout)?;
        step.done("");
        let step = ui::Step::start("Per-node sequences for pgbench_history");
        let count = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            node.safe_psql(
                db,
                &format!(
                    "SET spock.enable_ddl_replication = off;
                     CREATE SEQUENCE pgbench_history_hid START {} INCREMENT {count};
                     ALTER TABLE pgbench_history ALTER COLUMN hid SET DEFAULT nextval('pgbench_history_hid');",
                    i + 1
                ),
            )?;
        }
        n1.safe_psql(db, "ALTER TABLE pgbench_history ADD PRIMARY KEY (hid)")?;
        self.wait_applied(db, n1, timeout)?;
        step.done(&format!("node k hands out k, k+{count}, k+{}, ...", 2 * count));
        Ok(())
    }

    /// Waits until every other node has applied what `provider` committed
    /// so far (a sync event on the provider, waited for on each).
    pub fn wait_applied(&self, db: &str, provider: &Node, timeout: std::time::Duration) -> Result<()> {
        let lsn = provider.safe_psql(db, "SELECT spock.sync_event()")?;
        for node in self.nodes.iter().filter(|n| n.name != provider.name) {
            let reached = node.safe_psql(
                db,
                &format!(
                    "CALL spock.wait_for_sync_event(NULL, {}, '{lsn}', {})",
                    sql_literal(&provider.name),
                    timeout.as_secs()
                ),
            )?;
            if reached != "t" {
                bail!(
                    "{} did not apply {}'s changes up to {lsn} within {} s; see its log in {}",
                    node.name,
                    provider.name,
                    timeout.as_secs(),
                    node.log_file().display()
                );
            }
        }
        Ok(())
    }

    /// Wires the nodes of database `db` into a full mesh: a spock node on
    /// each (named like the cluster node) and, on every node, a subscription
    /// to every other node (`sub_<subscriber>_<provider>`), then waits until
    /// every subscription replicates. Steps already done are skipped, so
    /// calling it again on a wired cluster only waits.
    pub fn wire_mesh(&self, db: &str, timeout: std::time::Duration) -> Result<()> {
        for node in &self.nodes {
            let exists = node.safe_psql(db, "SELECT count(*) FROM spock.local_node")?;
            if exists == "0" {
                node.safe_psql(
                    db,
                    &format!(
                        "SELECT spock.node_create(node_name := {}, dsn := {})",
                        sql_literal(&node.name),
                        sql_literal(&node.connstr(db))
                    ),
                )?;
            }
        }
        for sub in &self.nodes {
            for provider in self.nodes.iter().filter(|p| p.name != sub.name) {
                let name = format!("sub_{}_{}", sub.name, provider.name);
                let exists = sub.safe_psql(
                    db,
                    &format!(
                        "SELECT count(*) FROM spock.subscription WHERE sub_name = {}",
                        sql_literal(&name)
                    ),
                )?;
                if exists == "0" {
                    sub.safe_psql(
                        db,
                        &format!(
                            "SELECT spock.sub_create(subscription_name := {}, provider_dsn := {})",
                            sql_literal(&name),
                            sql_literal(&provider.connstr(db))
                        ),
                    )?;
                }
            }
        }
        for node in &self.nodes {
            node.poll_query_until(
                db,
                "SELECT count(*) FILTER (WHERE status <> 'replicating') = 0 FROM spock.sub_show_status()",
                timeout,
            )
            .with_context(|| {
                format!(
                    "the subscriptions of node {} do not replicate; its log:\n{}",
                    node.name,
                    node.log_tail(30)
                )
            })?;
        }
        Ok(())
    }

    /// One line per subscription of every running spock node:
    /// `node|subscription|provider|status|lag bytes|lag time`.
    pub fn subscription_states(&self, db: &str) -> Vec<String> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            // Only ask nodes that are spock nodes (no errors in their logs).
            let is_node = node
                .safe_psql(db, "SELECT to_regclass('spock.local_node') IS NOT NULL AND EXISTS (SELECT 1 FROM spock.local_node)")
                .is_ok_and(|v| v == "t");
            if !is_node {
                continue;
            }
            // The lag as spock.lag_tracker gives it (bytes of the provider's
            // WAL not yet applied, and how long after its commit the last
            // transaction was applied), '-' where unknown.
            if let Ok(rows) = node.safe_psql(
                db,
                "SELECT s.subscription_name || '|' || s.provider_node || '|' || s.status || '|' \
                     || coalesce(pg_size_pretty(l.replication_lag_bytes), '-') || '|' \
                     || coalesce(date_trunc('milliseconds', l.replication_lag)::text, '-') \
                   FROM spock.sub_show_status() s LEFT JOIN spock.lag_tracker l ON l.origin_name = s.provider_node",
            ) {
                out.extend(rows.lines().filter(|l| !l.is_empty()).map(|l| format!("{}|{l}", node.name)));
            }
        }
        out
    }

    pub fn any_running(&self) -> bool {
        self.nodes.iter().any(Node::is_running)
    }

    /// Stops every node (immediately if a fast stop fails) and removes the
    /// data directories and the socket directory.
    pub fn destroy(self) -> Result<()> {
        if self.stop(StopMode::Fast).is_err() {
            self.stop(StopMode::Immediate)?;
        }
        fsutil::remove_dir_all_if_exists(&self.dir)?;
        fsutil::remove_dir_all_if_exists(&self.socket_dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(socket_dir: &str, nodes: &[(&str, &str)]) -> State {
        State {
            postgresql_version: "18.6".into(),
            major: 18,
            profile: Profile::Dev,
            socket_dir: socket_dir.into(),
            nodes: nodes
                .iter()
                .map(|(name, base)| NodeState { name: name.to_string(), port: 5432, base: base.into() })
                .collect(),
        }
    }

    #[test]
    fn the_state_may_only_name_what_create_makes() {
        let dir = Path::new("/w/target/cluster");
        let good = state(
            "/tmp/spock-cluster-abc",
            &[("n1", "/w/target/cluster/n1"), ("n2", "/w/target/cluster/n2")],
        );
        check_state(dir, &good).unwrap();
        for bad in [
            state("/tmp/spock-cluster-abc", &[("n1", "/etc")]),
            state("/tmp/spock-cluster-abc", &[("n1", "/w/target/cluster/n2")]),
            state("/tmp/spock-cluster-abc", &[("../x", "/w/target/x")]),
            state("/etc", &[("n1", "/w/target/cluster/n1")]),
            state("/tmp/spock-cluster-abc/../../etc", &[]),
            state("spock-cluster-abc", &[]),
        ] {
            let err = check_state(dir, &bad).unwrap_err().to_string();
            assert!(err.contains("never writes") && err.contains("remove /w/target/cluster"), "{err}");
        }
        // Another spelling of the same directory is the same directory.
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("n1")).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let base = tmp.path().join("link/n1").display().to_string();
        check_state(&real, &state("/tmp/spock-cluster-abc", &[("n1", &base)])).unwrap();
    }
}
