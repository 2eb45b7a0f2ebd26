//! The network between spockbench's nodes (issue 14): each node's server
//! runs in its own network namespace, `spkb-n<k>`, with the address
//! `10.77.0.<k>` on its loopback device, and every pair of nodes is joined
//! by a veth pair of its own (`spkb<i>x<j>` in node i's namespace). The
//! nodes reach each other only through those links. A partition drops
//! every packet between two nodes with `iptables` rules in both namespaces
//! (packets vanish, nothing answers, no RST: TCP keepalive, the walsender's
//! timeout and `spock.apply_idle_timeout` are what notice), and `--latency`
//! is a `netem delay` on every link end, so one way between two nodes takes
//! that long; where the kernel has no netem, `relay` delays the nodes'
//! connections to each other in user space instead. The runner itself talks to
//! the servers through their Unix sockets, which no namespace or partition
//! affects. Namespaces need root; without it spockbench runs on loopback
//! and refuses partitions and latency.

use anyhow::{Context, Result, bail};

use crate::cmd::tool;

/// A link delay with optional jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    pub delay_ms: u32,
    pub jitter_ms: u32,
}

impl Latency {
    /// `40ms` or `40ms~5ms` (delay, jitter).
    pub fn parse(text: &str) -> Result<Latency, String> {
        let ms = |t: &str| -> Result<u32, String> {
            t.strip_suffix("ms").unwrap_or(t).parse().map_err(|_| {
                format!("--latency {text}: expected DELAYms or DELAYms~JITTERms, for example 40ms~5ms")
            })
        };
        let (delay, jitter) = match text.split_once('~') {
            Some((d, j)) => (ms(d)?, ms(j)?),
            None => (ms(text)?, 0),
        };
        Ok(Latency { delay_ms: delay, jitter_ms: jitter })
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms})
    }

    fn netem(&self) -> Vec<String> {
        let mut v = vec!["delay".to_string(), format!("{}ms", self.delay_ms)];
        if self.jitter_ms > 0 {
            v.extend([format!("{}ms", self.jitter_ms), "distribution".into(), "normal".into()]);
        }
        v
    }
}

/// The one-way delay of every link between two nodes (`--latency`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delays {
    /// Links without a delay of their own.
    pub all: Option<Latency>,
    /// Delays of single links, keyed by their nodes (smaller first).
    pub links: std::collections::BTreeMap<(usize, usize), Latency>,
}

impl Delays {
    /// Comma-separated items, each `DELAY[~JITTER]` (every link without an
    /// item of its own) or `nI-nJ=DELAY[~JITTER]` (the link between nodes I
    /// and J, both ways): `40ms`, `n1-n3=80ms~5ms,n2-n3=20ms`,
    /// `10ms,n1-n3=80ms`.
    pub fn parse(text: &str) -> Result<Delays, String> {
        let mut d = Delays::default();
        for item in text.split(',').map(str::trim) {
            match item.split_once('=') {
                None => {
                    if d.all.replace(Latency::parse(item)?).is_some() {
                        return Err(format!("--latency {text}: more than one delay for all links"));
                    }
                }
                Some((link, delay)) => {
                    let node =
                        |n: &str| -> Option<usize> { n.strip_prefix('n')?.parse().ok().filter(|k| *k > 0) };
                    let (i, j) = link
                        .split_once('-')
                        .and_then(|(a, b)| Some((node(a)?, node(b)?)))
                        .filter(|(i, j)| i != j)
                        .ok_or_else(|| {
                            format!(
                                "--latency {text}: {link:?} is not a link between two nodes, such as n1-n3"
                            )
                        })?;
                    if d.links.insert((i.min(j), i.max(j)), Latency::parse(delay)?).is_some() {
                        return Err(format!("--latency {text}: the link {link} is named twice"));
                    }
                }
            }
        }
        Ok(d)
    }

    /// An error naming a link to a node the cluster does not have.
    pub fn check(&self, nodes: usize) -> Result<(), String> {
        match self.links.keys().find(|(_, j)| *j > nodes) {
            Some((i, j)) => {
                Err(format!("--latency: there is no link n{i}-n{j} (the nodes are n1..n{nodes})"))
            }
            None => Ok(()),
        }
    }

    /// The delay between nodes `i` and `j`, if any.
    pub fn between(&self, i: usize, j: usize) -> Option<Latency> {
        self.links.get(&(i.min(j), i.max(j))).copied().or(self.all)
    }

    /// As `result.json` and `config.json` record it.
    pub fn to_json(&self) -> serde_json::Value {
        let links: serde_json::Map<String, serde_json::Value> =
            self.links.iter().map(|((i, j), l)| (format!("n{i}-n{j}"), l.to_json())).collect();
        serde_json::json!({"all": self.all.map(Latency::to_json), "links": links})
    }
}

/// The namespace of node `k` (1-based).
pub fn ns(k: usize) -> String {
    format!("spkb-n{k}")
}

/// The address of node `k`.
pub fn addr(k: usize) -> String {
    format!("10.77.0.{k}")
}

fn dev(i: usize, j: usize) -> String {
    format!("spkb{i}x{j}")
}

fn ip(args: &[&str]) -> Result<()> {
    let out =
        tool("ip", args).stderr_capture().stdout_capture().unchecked().run().context("cannot run ip")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn in_ns(k: usize, args: &[&str]) -> Result<()> {
    let ns = ns(k);
    let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
    full.extend_from_slice(args);
    ip(&full)
}

fn tc_in_ns(k: usize, args: &[String]) -> Result<()> {
    let ns = ns(k);
    let out = tool(
        "ip",
        ["netns", "exec", ns.as_str(), "tc"].iter().map(|s| s.to_string()).chain(args.iter().cloned()),
    )
    .stderr_capture()
    .stdout_capture()
    .unchecked()
    .run()
    .context("cannot run tc")?;
    if !out.status.success() {
        bail!("tc {} in {ns} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether namespaces can be made here (root, with `ip` and `tc`).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && tool("ip", ["netns", "list"])
            .stdout_null()
            .stderr_null()
            .unchecked()
            .run()
            .is_ok_and(|o| o.status.success())
        && tool("tc", ["-V"]).stdout_null().stderr_null().unchecked().run().is_ok_and(|o| o.status.success())
}

/// Removes the namespaces of an earlier run (their links go with them).
pub fn destroy(nodes: usize) {
    for k in 1..=nodes.max(16) {
        let _ = tool("ip", ["netns", "del", ns(k).as_str()]).stdout_null().stderr_null().unchecked().run();
    }
}

/// Whether node `k`'s namespace exists.
pub fn exists(k: usize) -> bool {
    tool("ip", ["netns", "list"])
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().any(|w| w == ns(k)))
}

/// Makes the namespaces and links of `nodes` nodes (no delay, nothing cut).
pub fn create(nodes: usize) -> Result<()> {
    destroy(nodes);
    for k in 1..=nodes {
        ip(&["netns", "add", &ns(k)])?;
        in_ns(k, &["link", "set", "lo", "up"])?;
        in_ns(k, &["addr", "add", &format!("{}/32", addr(k)), "dev", "lo"])?;
    }
    for i in 1..=nodes {
        for j in i + 1..=nodes {
            let (a, b) = (dev(i, j), dev(j, i));
            ip(&["link", "add", &a, "netns", &ns(i), "type", "veth", "peer", "name", &b, "netns", &ns(j)])
                .with_context(|| format!("cannot join the namespaces of n{i} and n{j}"))?;
            for (k, d, other) in [(i, &a, j), (j, &b, i)] {
                in_ns(k, &["link", "set", d, "up"])?;
                in_ns(k, &["route", "add", &format!("{}/32", addr(other)), "dev", d, "src", &addr(k)])?;
            }
        }
    }
    Ok(())
}

/// The delay of one link end (none: the default queue).
fn set_link(k: usize, dev: &str, latency: Option<Latency>) -> Result<()> {
    match latency {
        Some(l) => {
            let mut args: Vec<String> =
                ["qdisc", "replace", "dev", dev, "root", "netem"].iter().map(|s| s.to_string()).collect();
            args.extend(l.netem());
            tc_in_ns(k, &args)
        }
        None => {
            // Nothing to remove when no delay was ever set.
            let _ = tc_in_ns(k, &["qdisc".into(), "del".into(), "dev".into(), dev.into(), "root".into()]);
            Ok(())
        }
    }
}

/// Whether this kernel has the netem queueing discipline (`--latency`).
pub fn netem_available() -> bool {
    let probe = tc_in_ns(
        1,
        &[
            "qdisc".into(),
            "add".into(),
            "dev".into(),
            "lo".into(),
            "root".into(),
            "netem".into(),
            "delay".into(),
            "1ms".into(),
        ],
    );
    let _ = tc_in_ns(1, &["qdisc".into(), "del".into(), "dev".into(), "lo".into(), "root".into()]);
    probe.is_ok()
}

/// Puts each link's delay (or none) on the links of `nodes` nodes with
/// netem, on both ends' outgoing side.
pub fn set_latency(nodes: usize, delays: Option<&Delays>) -> Result<()> {
    for i in 1..=nodes {
        for j in (1..=nodes).filter(|j| *j != i) {
            set_link(i, &dev(i, j), delays.and_then(|d| d.between(i, j)))?;
        }
    }
    Ok(())
}

/// The node whose address `ip` is, if any.
pub fn node_of(ip: std::net::IpAddr) -> Option<usize> {
    (1..=254).find(|k| addr(*k) == ip.to_string())
}

fn iptables(k: usize, args: &[&str]) -> Result<()> {
    let ns = ns(k);
    let out =
        tool("ip", ["netns", "exec", ns.as_str(), "iptables", "-w"].into_iter().chain(args.iter().copied()))
            .stderr_capture()
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run iptables")?;
    if !out.status.success() {
        bail!("iptables {} in {ns} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether a TCP connection from node `from`'s namespace to node `to`'s
/// address and `port` is accepted within `timeout`: before a partition it
/// proves that the servers listen in the namespaces the harness controls,
/// after the cut that the cut holds (a dropped SYN goes unanswered).
pub fn reachable(from: usize, to: usize, port: u16, timeout: std::time::Duration) -> Result<bool> {
    let target: std::net::SocketAddr = format!("{}:{port}", addr(to)).parse().context("a node address")?;
    std::thread::spawn(move || -> Result<bool> {
        super::relay::enter(from)?;
        Ok(std::net::TcpStream::connect_timeout(&target, timeout).is_ok())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))?
}

/// Cuts (`true`) or restores the link between nodes `i` and `j`: every
/// packet between their addresses is dropped in both namespaces.
pub fn partition(i: usize, j: usize, cut: bool) -> Result<()> {
    let op = if cut { "-A" } else { "-D" };
    for (k, other) in [(i, j), (j, i)] {
        let peer = addr(other);
        iptables(k, &[op, "INPUT", "-s", &peer, "-j", "DROP"])?;
        iptables(k, &[op, "OUTPUT", "-d", &peer, "-j", "DROP"])?;
    }
    Ok(())
}

/// Sends (`true`) or stops sending the TCP connections that reach node
/// `k`'s server port from other namespaces to `relay_port` on the same
/// address (the delaying relay); connections made before keep their path.
pub fn redirect(k: usize, port: u16, relay_port: u16, on: bool) -> Result<()> {
    let (dst, port, to) = (addr(k), port.to_string(), format!("{}:{relay_port}", addr(k)));
    let op = if on { "-A" } else { "-D" };
    iptables(
        k,
        &[
            "-t",
            "nat",
            op,
            "PREROUTING",
            "-p",
            "tcp",
            "-d",
            &dst,
            "--dport",
            &port,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ],
    )
}

/// Server settings for nodes in namespaces: a peer behind a cut link is
/// noticed by TCP keepalive on idle connections and by the walsender's
/// timeout, within seconds rather than PostgreSQL's defaults.
pub const SERVER_CONF: &str = "tcp_keepalives_idle = 5\ntcp_keepalives_interval = 2\ntcp_keepalives_count = 3\n\
wal_sender_timeout = 20s\nspock.apply_idle_timeout = 20\n\
spock.extra_connection_options = 'keepalives_idle=5 keepalives_interval=2 keepalives_count=3 connect_timeout=5'\n";

/// What `pg_hba.conf` lets in from the other namespaces.
pub const HBA: &str =
    "host all all 10.77.0.0/24 scram-sha-256\nhost replication all 10.77.0.0/24 scram-sha-256\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_parse() {
        assert_eq!(Latency::parse("40ms"), Ok(Latency { delay_ms: 40, jitter_ms: 0 }));
        assert_eq!(Latency::parse("40ms~5ms"), Ok(Latency { delay_ms: 40, jitter_ms: 5 }));
        assert_eq!(Latency::parse("7"), Ok(Latency { delay_ms: 7, jitter_ms: 0 }));
        assert!(Latency::parse("fast").is_err());
        let d = Delays::parse("10ms, n3-n1=80ms~5ms,n2-n3=20ms").unwrap();
        assert_eq!(d.between(1, 3), Some(Latency { delay_ms: 80, jitter_ms: 5 }));
        assert_eq!(d.between(3, 1), d.between(1, 3));
        assert_eq!(d.between(3, 2), Some(Latency { delay_ms: 20, jitter_ms: 0 }));
        assert_eq!(d.between(1, 2), Some(Latency { delay_ms: 10, jitter_ms: 0 }));
        assert_eq!(d.to_json()["links"]["n1-n3"]["delay_ms"], 80);
        assert!(d.check(3).is_ok());
        assert!(d.check(2).unwrap_err().contains("n1-n3"));
        let only = Delays::parse("n1-n2=40ms").unwrap();
        assert_eq!((only.between(1, 2).map(|l| l.delay_ms), only.between(2, 3)), (Some(40), None));
        assert!(Delays::parse("n1-n1=4ms").unwrap_err().contains("n1-n1"));
        assert!(Delays::parse("n1-n2=4ms,n2-n1=5ms").unwrap_err().contains("twice"));
        assert!(Delays::parse("4ms,5ms").unwrap_err().contains("more than one"));
        assert!(Delays::parse("x-n2=4ms").is_err());
        assert_eq!(node_of("10.77.0.3".parse().unwrap()), Some(3));
        assert_eq!(node_of("127.0.0.1".parse().unwrap()), None);
        assert_eq!(
            Latency { delay_ms: 40, jitter_ms: 5 }.netem(),
            ["delay", "40ms", "5ms", "distribution", "normal"]
        );
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        // Interface names have at most 15 bytes.
        assert!(dev(16, 15).len() <= 15);
        assert_eq!(addr(3), "10.77.0.3");
    }
}
