//! Adding a node to a cluster that keeps taking writes, and removing one
//! (`cargo xtask cluster add-node`, `remove-node`). Each step is plain SQL
//! on one node, the procedure `docs/replication.md` ("Adding a node")
//! writes out for DBAs; this module runs it on a local cluster.
//!
//! Adding `new` with its data from `source`, the other nodes being `peers`:
//! 1. on `new`: the extension, its node, and a disabled subscription to
//!    each peer (its replication origin exists, no slot yet);
//! 2. on each peer: the slot of that subscription, made now, at `C`;
//! 3. `source` applies each peer's changes up to past `C` (a sync event);
//! 4. on `source`: its apply workers pause between transactions, and the
//!    positions of its origins for the peers (`P`) are read;
//! 5. on `new`: the subscription to `source` with structure and data; once
//!    its slot (and snapshot) exists on `source`, `source`'s origins are
//!    read again (unchanged, or the procedure stops) and its workers resume;
//! 6. after the copy, `new`'s origin for each peer is moved to `P` and the
//!    subscription enabled: it streams the peer's changes after `P`, which
//!    the copy does not hold, from the slot made at `C <= P`;
//! 7. every old node subscribes to `new`.
//!
//! So every change of every node reaches `new` exactly once: the source's
//! own from its snapshot on, and a peer's through the source up to `P`,
//! directly after it, also for changes committed during the copy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Cluster, sql_literal};
use crate::account::RunAs;
use crate::node::{self, Node, StopMode};
use crate::ui;

/// What `source` had applied from one peer when `new`'s snapshot was taken.
struct PeerStart {
    peer: usize,
    /// `new`'s subscription to the peer.
    subscription: String,
    slot: String,
    /// Where `new`'s subscription to the peer starts.
    position: String,
}

fn one_row(node: &Node, db: &str, sql: &str, what: &str) -> Result<String> {
    let value = node.safe_psql(db, sql)?;
    if value.is_empty() {
        bail!("{what} on node {}: no answer to {sql}", node.name);
    }
    Ok(value)
}

impl Cluster {
    /// Initialises, starts and records a new node `n<k+1>` with the same
    /// password and base configuration as the others; spock settings that
    /// `source` has from its configuration (`ALTER SYSTEM`, postgresql.conf)
    /// are copied to it.
    pub fn new_node(&mut self, db: &str, source: &str) -> Result<usize> {
        let source = self.node(source)?.clone();
        let next = self
            .nodes
            .iter()
            .filter_map(|n| n.name.strip_prefix('n')?.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let name = format!("n{next}");
        let port = loop {
            let port = node::free_port()?;
            if self.nodes.iter().all(|n| n.port != port) {
                break port;
            }
        };
        let conf = node::base_conf(&self.installed, self.nodes.len() + 1);
        let password = source.password()?;
        let node = Node::init_with_password(
            &name,
            &self.installed,
            &self.dir.join(&name),
            &self.socket_dir,
            port,
            &RunAs::detect()?,
            &conf,
            &password,
        )
        .with_context(|| format!("cannot initialise node {name}"))?;
        node.start()?;
        let settings = source.safe_psql(
            db,
            "SELECT string_agg(format('ALTER SYSTEM SET %I = %L', name, setting), '; ')
               FROM pg_settings WHERE name LIKE 'spock.%' AND source = 'configuration file'",
        )?;
        if !settings.is_empty() {
            node.safe_psql(db, &format!("{settings}; SELECT pg_reload_conf()"))?;
        }
        self.nodes.push(node);
        self.save()?;
        Ok(self.nodes.len() - 1)
    }

    /// Adds a new node to the running cluster of database `db` with its
    /// structure and data from node `source`, while the others keep taking
    /// writes (the procedure at the top of this module). Returns the name.
    pub fn add_node(&mut self, db: &str, source: &str, timeout: Duration) -> Result<String> {
        let step = ui::Step::start("Starting a new node");
        let new_index = self.new_node(db, source)?;
        let (new, src) = (&self.nodes[new_index], self.node(source)?);
        step.done(&format!("{} on port {}", new.name, new.port));
        let peers: Vec<usize> = (0..new_index).filter(|&i| self.nodes[i].name != src.name).collect();

        // 1. The new node and its disabled subscriptions to the peers.
        new.safe_psql(
            db,
            &format!(
                "CREATE EXTENSION IF NOT EXISTS spock; SELECT spock.node_create({}, {})",
                sql_literal(&new.name),
                sql_literal(&new.connstr(db))
            ),
        )?;
        let step = ui::Step::start("Slots for the new node on the other peers");
        let mut starts = Vec::new();
        for &i in &peers {
            let peer = &self.nodes[i];
            let subscription = format!("sub_{}_{}", new.name, peer.name);
            new.safe_psql(
                db,
                &format!(
                    "SELECT spock.sub_create({}, {}, enabled := false)",
                    sql_literal(&subscription),
                    sql_literal(&peer.connstr(db))
                ),
            )?;
            let slot = one_row(
                new,
                db,
                &format!(
                    "SELECT sub_slot_name FROM spock.subscription WHERE sub_name = {}",
                    sql_literal(&subscription)
                ),
                "reading the slot name",
            )?;
            // 2. The slot, on the peer, now.
            peer.safe_psql(
                db,
                &format!(
                    "SELECT lsn FROM pg_create_logical_replication_slot({}, 'spock_output')",
                    sql_literal(&slot)
                ),
            )?;
            // 3. The source has applied the peer's changes past it.
            let event = one_row(peer, db, "SELECT spock.sync_event()", "a sync event")?;
            let reached = src.safe_psql(
                db,
                &format!(
                    "CALL spock.wait_for_sync_event(NULL, {}, '{event}', {})",
                    sql_literal(&peer.name),
                    timeout.as_secs()
                ),
            )?;
            if reached != "t" {
                bail!("{} did not apply {}'s changes up to {event} within {timeout:?}", src.name, peer.name);
            }
            starts.push(PeerStart { peer: i, subscription, slot, position: String::new() });
        }
        step.done(&format!("{} slot(s)", starts.len()));

        // 4. The source pauses its apply workers and tells where it stands.
        let step = ui::Step::start(format!("Copying {}'s structure and data to {}", src.name, new.name));
        let new_id = one_row(new, db, "SELECT node_id FROM spock.local_node", "reading the node id")?;
        let positions_sql = format!(
            "SELECT coalesce(string_agg(n.node_name || '=' || p.remote_commit_lsn, ' ' ORDER BY n.node_name), '')
               FROM spock.read_peer_progress(NULL, NULL, {new_id}) p
               JOIN spock.node n ON n.node_id = p.remote_node_id"
        );
        let sub_sql = format!(
            "SELECT spock.sub_create({}, {}, synchronize_structure := true, synchronize_data := true)",
            sql_literal(&format!("sub_{}_{}", new.name, src.name)),
            sql_literal(&src.connstr(db))
        );
        // The pause lasts until the slot exists; pause_apply_workers waits
        // for the workers, and a pause ends by itself after
        // spock.pause_timeout, which the check below would notice.
        src.safe_psql(db, "SET spock.pause_timeout = 60; SELECT spock.pause_apply_workers()")?;
        let copied = (|| -> Result<String> {
            let before = src.safe_psql(db, &positions_sql)?;
            new.safe_psql(db, &sub_sql)?;
            new.poll_query_until(
                db,
                &format!(
                    "SELECT l.sync_status IN ('s', 'd', 'c', 'r') FROM spock.local_sync_status l
                       JOIN spock.subscription s ON s.sub_id = l.sync_subid
                      WHERE s.sub_name = {} AND l.sync_relname IS NULL",
                    sql_literal(&format!("sub_{}_{}", new.name, src.name))
                ),
                Duration::from_secs(55),
            )?;
            let after = src.safe_psql(db, &positions_sql)?;
            if before != after {
                bail!(
                    "{}'s apply workers moved while the new node's snapshot was taken ({before} -> {after}); \
                     the pause ended too early",
                    src.name
                );
            }
            Ok(before)
        })();
        src.safe_psql(db, "SELECT spock.resume_apply_workers()")?;
        let positions = copied.context("taking the new node's snapshot on the source failed; remove the new node (cargo xtask cluster remove-node) and try again")?;
        new.safe_psql(
            db,
            &format!(
                "SELECT spock.sub_wait_for_sync({})",
                sql_literal(&format!("sub_{}_{}", new.name, src.name))
            ),
        )?;
        step.done("");

        // 6. The new node's subscriptions to the peers start where the copy ends.
        let step = ui::Step::start("Starting the new node's subscriptions to the other peers");
        for start in &mut starts {
            let peer = &self.nodes[start.peer];
            start.position = positions
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{}=", peer.name)))
                .map(str::to_string)
                .with_context(|| {
                    format!("{} reported no position for {} ({positions})", src.name, peer.name)
                })?;
            new.safe_psql(
                db,
                &format!(
                    "SELECT pg_replication_origin_advance({}, '{}'); SELECT spock.sub_enable({})",
                    sql_literal(&start.slot),
                    start.position,
                    sql_literal(&start.subscription)
                ),
            )?;
        }
        step.done(
            &starts
                .iter()
                .map(|s| format!("{} from {}", self.nodes[s.peer].name, s.position))
                .collect::<Vec<_>>()
                .join(", "),
        );

        // 7. Everyone subscribes to the new node.
        let step = ui::Step::start(format!("Subscribing the other nodes to {}", new.name));
        for old in &self.nodes[..new_index] {
            old.safe_psql(
                db,
                &format!(
                    "SELECT spock.sub_create({}, {})",
                    sql_literal(&format!("sub_{}_{}", old.name, new.name)),
                    sql_literal(&new.connstr(db))
                ),
            )?;
        }
        let deadline = Instant::now() + timeout;
        for node in &self.nodes {
            node.poll_query_until(
                db,
                "SELECT count(*) FILTER (WHERE status <> 'replicating') = 0 FROM spock.sub_show_status()",
                deadline.saturating_duration_since(Instant::now()),
            )
            .with_context(|| {
                format!(
                    "the subscriptions of {} do not replicate; see {}",
                    node.name,
                    node.log_file().display()
                )
            })?;
        }
        step.done("");
        Ok(new.name.clone())
    }

    /// Removes a node: every other node drops its subscription to it (and
    /// with it the slot on that node, if it runs, and the origin), the node
    /// drops its own subscriptions (their slots on the others) when it
    /// runs, or the others drop those slots themselves; then it is stopped
    /// and its directory removed.
    pub fn remove_node(&mut self, db: &str, name: &str) -> Result<()> {
        let index =
            self.nodes.iter().position(|n| n.name == name).with_context(|| format!("no node {name:?}"))?;
        let gone = self.nodes[index].clone();
        let running = gone.is_running();
        if running {
            let subs = gone
                .safe_psql(db, "SELECT string_agg(sub_name, ' ') FROM spock.subscription")
                .unwrap_or_default();
            for sub in subs.split_whitespace() {
                gone.safe_psql(db, &format!("SELECT spock.sub_drop({})", sql_literal(sub)))?;
            }
        }
        for (i, other) in self.nodes.iter().enumerate() {
            if i == index || !other.is_running() {
                continue;
            }
            other.safe_psql(
                db,
                &format!(
                    "SELECT spock.sub_drop(sub_name) FROM spock.subscription s JOIN spock.node n ON n.node_id = s.sub_origin
                      WHERE n.node_name = {}",
                    sql_literal(name)
                ),
            )?;
            // Slots the removed node's subscriptions left here when it could not drop them.
            other.safe_psql(
                db,
                &format!(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                      WHERE NOT active AND plugin = 'spock_output' AND slot_name LIKE {}",
                    sql_literal(&format!("spk\\_%\\_{}\\_sub\\_{}\\_%", other.name, name))
                ),
            )?;
        }
        if running {
            gone.stop(StopMode::Fast)?;
        }
        self.nodes.remove(index);
        self.save()?;
        let _ = std::fs::remove_dir_all(&gone.base);
        Ok(())
    }
}
