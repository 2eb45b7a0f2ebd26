//! The host's CPU and memory during a local run (spockbench.md §7, "for
//! local clusters, optionally host CPU and memory"): one thread reads
//! `/proc/stat` and `/proc/meminfo` every sample interval until it is told
//! to stop. The parsing and the summaries are pure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One reading: the share of CPU time not idle since the previous reading
/// (all CPUs together, 0-100), and the memory in use (total minus available).
#[derive(Clone, Debug, PartialEq)]
pub struct HostSample {
    pub t_s: f64,
    pub cpu_busy_pct: f64,
    pub mem_used_bytes: u64,
}

/// The aggregate `cpu` line of `/proc/stat`: (busy, total) jiffies. Idle
/// counts idle and iowait; steal and guest time are part of busy.
pub fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Memory in use from `/proc/meminfo`: `MemTotal - MemAvailable`, in bytes.
pub fn mem_used(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
}

/// Busy share between two readings of `cpu_times`, in percent.
pub fn busy_pct(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|t| *t > 0)?;
    let busy = after.0.saturating_sub(before.0);
    Some((busy as f64 * 100.0 / total as f64).min(100.0))
}

/// Reads the host every `every` until `stop` is set; `t0` is the run's
/// clock. A machine without `/proc` gives no samples.
pub fn sample_until(every: Duration, t0: Instant, stop: Arc<AtomicBool>) -> Vec<HostSample> {
    let read = || -> Option<((u64, u64), u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        Some((cpu_times(&stat)?, mem_used(&meminfo)?))
    };
    let mut out = Vec::new();
    let mut last = read().map(|r| r.0);
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            // Short naps, so that the end of the run is not held up.
            std::thread::sleep((next - now).min(Duration::from_millis(200)));
            continue;
        }
        next += every;
        let Some((cpu, mem)) = read() else { continue };
        if let Some(busy) = last.and_then(|before| busy_pct(before, cpu)) {
            out.push(HostSample { t_s: t0.elapsed().as_secs_f64(), cpu_busy_pct: busy, mem_used_bytes: mem });
        }
        last = Some(cpu);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(cpu_times(stat), Some((150, 1000)));
        let later = "cpu  250 0 100 1000 50 0 0 0 0 0\n";
        // 200 busy of 400 jiffies.
        assert_eq!(busy_pct(cpu_times(stat).unwrap(), cpu_times(later).unwrap()), Some(50.0));
        assert_eq!(busy_pct((10, 100), (10, 100)), None);
        assert_eq!(cpu_times("intr 1 2 3\n"), None);
        let meminfo = "MemTotal:       24576000 kB\nMemFree:  1000 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(mem_used(meminfo), Some((24_576_000 - 20_480_000) * 1024));
        assert_eq!(mem_used("MemTotal: 5 kB\n"), None);
    }
}
