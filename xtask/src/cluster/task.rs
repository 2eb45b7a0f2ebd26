//! The `cargo xtask cluster up/down/status/psql/env/add-node/remove-node`
//! task: a local cluster for people, kept in `target/cluster`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::Cluster;
use crate::account::RunAs;
use crate::flags::{
    ClusterAddNode, ClusterCmd, ClusterDown, ClusterEnv, ClusterPsql, ClusterRemoveNode, ClusterUp, Profile,
};
use crate::node::{SUPERUSER, StopMode};
use crate::versions::{Manifest, PgRequest};
use crate::{build, doctor, layout, ui};

/// The database every cluster node uses for spock.
pub const DATABASE: &str = "postgres";

/// Where `cargo xtask cluster` keeps its cluster.
pub fn cluster_dir() -> PathBuf {
    layout::target_dir().join("cluster")
}

impl ClusterCmd {
    pub fn run(self) -> Result<()> {
        match self {
            ClusterCmd::Up(flags) => flags.run(),
            ClusterCmd::Down(flags) => flags.run(),
            ClusterCmd::Status => status(),
            ClusterCmd::Psql(flags) => flags.run(),
            ClusterCmd::Env(flags) => flags.run(),
            ClusterCmd::AddNode(flags) => flags.run(),
            ClusterCmd::RemoveNode(flags) => flags.run(),
        }
    }
}

impl ClusterUp {
    pub fn run(self) -> Result<()> {
        let dir = cluster_dir();
        let cluster = match Cluster::load(&dir)? {
            Some(cluster) => {
                let existing_major = cluster.installed.dirs.major;
                let (count, requested) = (cluster.nodes.len(), self.pg.map(|r| r.major()));
                if cluster.any_running() {
                    ui::note(format!(
                        "a cluster of {count} node(s) of PostgreSQL {} already runs in {}; nothing done \
                         (`cargo xtask cluster down` stops it)",
                        cluster.installed.core.postgresql_version,
                        dir.display()
                    ));
                    return print_status(&cluster);
                }
                if requested.is_some_and(|m| m != existing_major) || self.nodes.is_some_and(|n| n != count) {
                    bail!(
                        "a stopped cluster of {count} node(s) of PostgreSQL {existing_major} exists in {}; \
                         start it with `cargo xtask cluster up`, or remove it first with \
                         `cargo xtask cluster down --destroy`",
                        dir.display()
                    );
                }
                let step = ui::Step::start(format!("Starting the {count} node(s) in {}", dir.display()));
                cluster.start()?;
                step.done("");
                cluster
            }
            None => {
                doctor::ensure(true)?;
                let manifest = Manifest::builtin();
                let resolved = manifest.resolve(self.pg.unwrap_or(PgRequest::Major(18)));
                let installed = build::build_one(&resolved, None, self.profile, false, build::jobs(None))?;
                let count = self.nodes.unwrap_or(3);
                let step = ui::Step::start(format!("Creating {count} node(s) in {}", dir.display()));
                let cluster = Cluster::create(&dir, &installed, count, &RunAs::detect()?, "")?;
                step.done("");
                let step = ui::Step::start("Starting the nodes");
                cluster.start()?;
                for node in &cluster.nodes {
                    node.safe_psql(DATABASE, "CREATE EXTENSION IF NOT EXISTS spock")?;
                }
                step.done("extension spock created on every node");
                cluster
            }
        };
        if self.no_mesh {
            ui::note("not wiring the nodes (--no-mesh): run spock.node_create and spock.sub_create yourself");
        } else if cluster.nodes.len() > 1 {
            let step = ui::Step::start(format!(
                "Wiring the {} nodes into a full mesh (node_create on each, sub_create to every other)",
                cluster.nodes.len()
            ));
            cluster.wire_mesh(DATABASE, std::time::Duration::from_secs(120))?;
            step.done("every subscription replicates");
        }
        if let Some(scale) = self.pgbench {
            cluster.init_pgbench(DATABASE, scale)?;
        }
        print_status(&cluster)
    }
}

fn status() -> Result<()> {
    match Cluster::load(&cluster_dir())? {
        Some(cluster) => print_status(&cluster),
        None => {
            println!("no cluster in {} (`cargo xtask cluster up` makes one)", cluster_dir().display());
            Ok(())
        }
    }
}

fn print_status(cluster: &Cluster) -> Result<()> {
    println!(
        "cluster in {}: PostgreSQL {}{} ({}), {} node(s), sockets in {}, database {DATABASE}",
        cluster.dir.display(),
        cluster.installed.core.postgresql_version,
        cluster.installed.core.extra_version,
        match cluster.installed.dirs.profile {
            Profile::Dev => "dev",
            Profile::Release => "release",
        },
        cluster.nodes.len(),
        cluster.socket_dir.display()
    );
    println!("{:<5} {:<6} {:<8} data directory", "node", "port", "state");
    for node in &cluster.nodes {
        println!(
            "{:<5} {:<6} {:<8} {}",
            node.name,
            node.port,
            if node.is_running() { "running" } else { "stopped" },
            node.data().display()
        );
    }
    println!("connection strings (also psql variables :'n1', ... in `cluster psql`):");
    for node in &cluster.nodes {
        println!("  {}: {}", node.name, node.connstr(DATABASE));
    }
    let old = cluster.nodes_without_password();
    if !old.is_empty() {
        ui::warn(format!(
            "node(s) {} were made by an older toolkit and accept TCP connections as superuser without a \
             password; `cargo xtask cluster down --destroy` and `cargo xtask cluster up` make a cluster \
             that needs one",
            old.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(node) = cluster.nodes.iter().find(|n| n.pgpass_file().exists()) {
        println!(
            "over TCP (host=127.0.0.1 and the node's port) the nodes need the cluster's password, which \
             PGPASSFILE={} holds (`cargo xtask cluster env NODE` exports it)",
            node.pgpass_file().display()
        );
    }
    let subs = cluster.subscription_states(DATABASE);
    if subs.is_empty() {
        println!("subscriptions: none");
    } else {
        println!(
            "{:<5} {:<14} {:<9} {:<14} {:<10} lag (time)",
            "node", "subscription", "provider", "status", "lag (WAL)"
        );
        for line in subs {
            let f: Vec<&str> = line.split('|').collect();
            if let [node, sub, provider, status, bytes, time] = f[..] {
                println!("{node:<5} {sub:<14} {provider:<9} {status:<14} {bytes:<10} {time}");
            }
        }
    }
    println!("connect with: cargo xtask cluster psql n1");
    Ok(())
}

impl ClusterDown {
    pub fn run(self) -> Result<()> {
        let dir = cluster_dir();
        let Some(cluster) = Cluster::load(&dir)? else {
            println!("no cluster in {}; nothing to stop", dir.display());
            return Ok(());
        };
        if self.destroy {
            let step = ui::Step::start(format!("Stopping the cluster and removing {}", dir.display()));
            cluster.destroy()?;
            step.done("");
        } else {
            let step = ui::Step::start("Stopping the cluster");
            cluster.stop(StopMode::Fast)?;
            step.done(&format!("data kept in {}; `cluster up` starts it again", dir.display()));
        }
        Ok(())
    }
}

impl ClusterPsql {
    pub fn run(self) -> Result<()> {
        let cluster = Cluster::load(&cluster_dir())?
            .context("there is no cluster; start one with `cargo xtask cluster up`")?;
        let node = cluster.node(&self.node)?;
        if !node.is_running() {
            bail!("node {} is not running; start the cluster with `cargo xtask cluster up`", node.name);
        }
        let mut vars = Vec::new();
        for n in &cluster.nodes {
            vars.push("-v".to_string());
            vars.push(format!("{}={}", n.name, n.connstr(DATABASE)));
        }
        let mut psql = std::process::Command::new(node.installed.bin("psql"));
        psql.args(["-h", &node.socket_dir.display().to_string(), "-p", &node.port.to_string()])
            .args(["-U", SUPERUSER, "-d", DATABASE])
            .args(&vars)
            .args(&self.args)
            .env("PSQL_HISTORY", cluster.dir.join(format!(".psql_history-{}", node.name)));
        // So that `\c` over TCP finds the password.
        if node.pgpass_file().exists() {
            psql.env("PGPASSFILE", node.pgpass_file());
        }
        let err = psql.exec();
        Err(err).context("cannot start psql")
    }
}

impl ClusterEnv {
    pub fn run(self) -> Result<()> {
        let cluster = Cluster::load(&cluster_dir())?
            .context("there is no cluster; start one with `cargo xtask cluster up`")?;
        let node = cluster.node(&self.node)?;
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        println!(
            "export PATH={}:\"$PATH\"",
            quote(&node.installed.bin("psql").parent().unwrap().display().to_string())
        );
        println!("export PGHOST={}", quote(&node.socket_dir.display().to_string()));
        println!("export PGPORT={}", node.port);
        println!("export PGUSER={SUPERUSER}");
        println!("export PGDATABASE={DATABASE}");
        // TCP connections (`-h 127.0.0.1`) need the password.
        if node.pgpass_file().exists() {
            println!("export PGPASSFILE={}", quote(&node.pgpass_file().display().to_string()));
        }
        Ok(())
    }
}

/// The running cluster of `cargo xtask cluster`, or an error that says how to start one.
fn running_cluster() -> Result<Cluster> {
    let cluster = Cluster::load(&cluster_dir())?
        .context("there is no cluster; start one with `cargo xtask cluster up`")?;
    if let Some(down) = cluster.nodes.iter().find(|n| !n.is_running()) {
        bail!("node {} is not running; start the cluster with `cargo xtask cluster up`", down.name);
    }
    Ok(cluster)
}

impl ClusterAddNode {
    pub fn run(self) -> Result<()> {
        let mut cluster = running_cluster()?;
        let (limit, why) = super::max_nodes();
        if cluster.nodes.len() + 1 > limit {
            bail!("a node more is too many for this machine ({why})");
        }
        let name = cluster.add_node(DATABASE, &self.source, std::time::Duration::from_secs(self.timeout))?;
        ui::note(format!("{name} joined with {}'s data and replicates with every node", self.source));
        print_status(&cluster)
    }
}

impl ClusterRemoveNode {
    pub fn run(self) -> Result<()> {
        let mut cluster = Cluster::load(&cluster_dir())?
            .context("there is no cluster; start one with `cargo xtask cluster up`")?;
        let step = ui::Step::start(format!("Removing node {}", self.node));
        cluster.remove_node(DATABASE, &self.node)?;
        step.done("its subscriptions, slots and origins are gone from every node");
        print_status(&cluster)
    }
}
