//! The envelope of PostgreSQL's streaming replication protocol that carries
//! the spock messages: `XLogData` and keepalive messages from the walsender,
//! standby status updates (feedback) to it.

/// A message from the walsender inside the COPY BOTH stream.
#[derive(Debug, PartialEq, Eq)]
pub enum FromProvider<'a> {
    /// `w`: WAL data; for logical replication, one output plugin message.
    XLogData { data_start: u64, wal_end: u64, send_time: i64, payload: &'a [u8] },
    /// `k`: keepalive.
    Keepalive { wal_end: u64, send_time: i64, reply_requested: bool },
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

/// Parses one CopyData message from the walsender.
pub fn parse(msg: &[u8]) -> Result<FromProvider<'_>, String> {
    match msg.first() {
        Some(b'w') => {
            let (Some(data_start), Some(wal_end), Some(send_time)) =
                (u64_at(msg, 1), u64_at(msg, 9), u64_at(msg, 17))
            else {
                return Err(format!("XLogData message too short ({} bytes)", msg.len()));
            };
            Ok(FromProvider::XLogData {
                data_start,
                wal_end,
                send_time: send_time as i64,
                payload: &msg[25..],
            })
        }
        Some(b'k') => {
            let (Some(wal_end), Some(send_time), Some(reply)) = (u64_at(msg, 1), u64_at(msg, 9), msg.get(17))
            else {
                return Err(format!("keepalive message too short ({} bytes)", msg.len()));
            };
            if msg.len() != 18 {
                return Err(format!("keepalive message has {} bytes, expected 18", msg.len()));
            }
            Ok(FromProvider::Keepalive { wal_end, send_time: send_time as i64, reply_requested: *reply != 0 })
        }
        Some(other) => Err(format!("unknown streaming message type {other:#04x}")),
        None => Err("empty streaming message".into()),
    }
}

/// A standby status update (`r`): written, flushed and applied positions.
pub fn feedback(write: u64, flush: u64, apply: u64, now: i64, reply_requested: bool) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[0] = b'r';
    out[1..9].copy_from_slice(&write.to_be_bytes());
    out[9..17].copy_from_slice(&flush.to_be_bytes());
    out[17..25].copy_from_slice(&apply.to_be_bytes());
    out[25..33].copy_from_slice(&now.to_be_bytes());
    out[33] = u8::from(reply_requested);
    out
}

/// Tracks which provider positions are durably applied: a remote
/// transaction counts as flushed once the local commit that applied it is
/// flushed to the local WAL.
#[derive(Debug, Default)]
pub struct FlushTracker {
    /// (remote end LSN, local commit end LSN), in commit order.
    pending: std::collections::VecDeque<(u64, u64)>,
    flushed: u64,
}

impl FlushTracker {
    /// A remote transaction ending at `remote_end` was committed locally, the
    /// local commit ending at `local_end`.
    pub fn committed(&mut self, remote_end: u64, local_end: u64) {
        self.pending.push_back((remote_end, local_end));
    }

    /// The highest remote position whose transactions are all locally
    /// flushed, given the local WAL flush position. When nothing is pending
    /// and no transaction is being applied, everything received (`received`)
    /// counts: the transactions up to there were applied or filtered out.
    pub fn flushed(&mut self, local_flush: u64, received: u64, in_transaction: bool) -> u64 {
        while let Some(&(remote, local)) = self.pending.front() {
            if local > local_flush {
                break;
            }
            self.flushed = self.flushed.max(remote);
            self.pending.pop_front();
        }
        if self.pending.is_empty() && !in_transaction {
            self.flushed = self.flushed.max(received);
        }
        self.flushed
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Formats an LSN the way PostgreSQL prints it (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_they_print() {
        for lsn in [0u64, 1, 0x16_B374_D848, u64::MAX] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        assert_eq!(parse_lsn("0/0"), Some(0));
        for bad in ["", "16", "x/1", "1/", "1/2/3", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xlogdata_and_keepalive_parse() {
        let mut w = vec![b'w'];
        w.extend_from_slice(&1u64.to_be_bytes());
        w.extend_from_slice(&2u64.to_be_bytes());
        w.extend_from_slice(&3i64.to_be_bytes());
        w.extend_from_slice(b"payload");
        assert_eq!(
            parse(&w),
            Ok(FromProvider::XLogData { data_start: 1, wal_end: 2, send_time: 3, payload: b"payload" })
        );
        let mut k = vec![b'k'];
        k.extend_from_slice(&9u64.to_be_bytes());
        k.extend_from_slice(&8i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse(&k),
            Ok(FromProvider::Keepalive { wal_end: 9, send_time: 8, reply_requested: true })
        );
        assert!(parse(&k[..10]).is_err());
        assert!(parse(&w[..20]).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"x123").unwrap_err().contains("0x78"));
    }

    #[test]
    fn feedback_layout() {
        let f = feedback(1, 2, 3, 4, false);
        assert_eq!(f[0], b'r');
        assert_eq!(u64::from_be_bytes(f[9..17].try_into().unwrap()), 2);
        assert_eq!(f[33], 0);
    }

    #[test]
    fn flushed_follows_local_flush() {
        let mut t = FlushTracker::default();
        t.committed(100, 1000);
        t.committed(200, 2000);
        assert_eq!(t.flushed(999, 300, false), 0, "nothing flushed locally yet");
        assert_eq!(t.flushed(1500, 300, false), 100);
        assert_eq!(t.flushed(2000, 300, true), 200, "in a transaction, received does not count");
        assert_eq!(t.flushed(2000, 300, false), 300, "idle and all flushed: everything received counts");
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn lsns_print_like_postgres() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
    }
}
