//! The delaying relay behind `--latency` on kernels without netem (issue
//! 14): in each node's namespace a NAT rule sends the TCP connections that
//! other nodes open to its server through a relay thread of the runner,
//! which holds every chunk of bytes for the link's one-way delay (plus a
//! jitter drawn per chunk, order kept) before passing it on, in both
//! directions. Connections from the relay to the server go to the node's
//! own address inside its namespace, which the rule does not catch. A
//! partition still cuts the peer's packets before they reach the relay,
//! so it behaves as without latency. The relay lives as long as the run:
//! dropping it removes the rules and closes the relayed connections, and
//! the apply workers reconnect directly.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::netns::{self, Delays, Latency};

/// The relays of every node; dropping it stops them.
pub struct Relays {
    stop: Arc<AtomicBool>,
    listeners: Vec<JoinHandle<()>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// `(node, server port, relay port)` of each NAT rule.
    rules: Vec<(usize, u16, u16)>,
}

/// Puts a relay with `latency` in front of the server of node `k` (port
/// `ports[k-1]`) for connections from the other namespaces.
pub fn start(ports: &[u16], delays: &Delays) -> Result<Relays> {
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(Mutex::new(Vec::new()));
    let mut relays =
        Relays { stop: stop.clone(), listeners: Vec::new(), open: open.clone(), rules: Vec::new() };
    for (i, port) in ports.iter().copied().enumerate() {
        let k = i + 1;
        let (tx, rx) = mpsc::channel::<Result<u16>>();
        let (stop, open, delays) = (stop.clone(), open.clone(), delays.clone());
        relays.listeners.push(std::thread::spawn(move || {
            let listener = enter(k).and_then(|_| {
                let l = TcpListener::bind((netns::addr(k).as_str(), 0))
                    .with_context(|| format!("cannot listen in the namespace of n{k}"))?;
                l.set_nonblocking(true)?;
                Ok(l)
            });
            match listener {
                Ok(l) => {
                    let _ = tx.send(l.local_addr().map(|a| a.port()).map_err(Into::into));
                    accept_loop(&l, k, port, &delays, &stop, &open);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        }));
        let relay_port = rx.recv().context("a relay thread ended before it listened")??;
        netns::redirect(k, port, relay_port, true)?;
        relays.rules.push((k, port, relay_port));
    }
    Ok(relays)
}

impl Drop for Relays {
    fn drop(&mut self) {
        for (k, port, relay_port) in &self.rules {
            let _ = netns::redirect(*k, *port, *relay_port, false);
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(open) = self.open.lock() {
            for s in open.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        for l in self.listeners.drain(..) {
            let _ = l.join();
        }
    }
}

/// Moves this thread (and the threads it starts) into node `k`'s namespace.
pub fn enter(k: usize) -> Result<()> {
    let path = format!("/run/netns/{}", netns::ns(k));
    let f = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter the network namespace {path}"))
}

fn accept_loop(
    listener: &TcpListener,
    k: usize,
    port: u16,
    delays: &Delays,
    stop: &AtomicBool,
    open: &Mutex<Vec<TcpStream>>,
) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut seed = (now.as_nanos() as u64 ^ ((k as u64) << 32)) | 1;
    while !stop.load(Ordering::SeqCst) {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(_) => continue,
        };
        // Inherits this thread's namespace: the server's own address there.
        let Ok(server) = TcpStream::connect((netns::addr(k).as_str(), port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        // The link's delay: from the node the connection comes from (none
        // for a connection from outside the nodes' namespaces).
        let latency = netns::node_of(peer.ip())
            .and_then(|i| delays.between(i, k))
            .unwrap_or(Latency { delay_ms: 0, jitter_ms: 0 });
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
        }
        if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone())
            && let Ok(mut open) = open.lock()
        {
            open.push(c);
            open.push(s);
        }
        for (from, to) in [(client.try_clone(), server.try_clone()), (Ok(server), Ok(client))] {
            if let (Ok(from), Ok(to)) = (from, to) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                pump(from, to, latency, seed);
            }
        }
    }
}

/// Copies `from` to `to`, each chunk released `latency` after it arrived.
fn pump(mut from: TcpStream, mut to: TcpStream, latency: Latency, seed: u64) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut rng = seed | 1;
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let release = (Instant::now() + one_way(latency, &mut rng)).max(last);
                    last = release;
                    if tx.send((release, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // The end travels with the same delay as the data before it.
    });
    std::thread::spawn(move || {
        for (release, chunk) in rx {
            if let Some(wait) = release.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The delay of one chunk: the link's delay, give or take a uniform jitter.
fn one_way(latency: Latency, rng: &mut u64) -> Duration {
    let base = i64::from(latency.delay_ms) * 1000;
    let jitter = i64::from(latency.jitter_ms) * 1000;
    let offset = if jitter == 0 {
        0
    } else {
        // xorshift64
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng % (2 * jitter as u64 + 1)) as i64 - jitter
    };
    Duration::from_micros((base + offset).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_jitter() {
        let mut rng = 12345;
        let l = Latency { delay_ms: 40, jitter_ms: 5 };
        for _ in 0..1000 {
            let d = one_way(l, &mut rng);
            assert!(d >= Duration::from_millis(35) && d <= Duration::from_millis(45), "{d:?}");
        }
        assert_eq!(one_way(Latency { delay_ms: 3, jitter_ms: 0 }, &mut rng), Duration::from_millis(3));
    }
}
