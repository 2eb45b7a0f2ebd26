//! Progress of a subscription across restarts (behaviour.md §13.3): what an
//! apply worker saves when it exits, and whether a saved record still
//! describes the replication origin's position when the next worker starts.

/// What an exiting worker saves. Timestamps are PostgreSQL's
/// (microseconds since 2000-01-01 UTC), 0 unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The replication origin's progress when the record was written.
    pub origin_lsn: u64,
    pub commit_ts: i64,
    pub updated_ts: i64,
}

impl Saved {
    /// One line of text: `<origin_lsn> <commit_ts> <updated_ts>`.
    pub fn encode(&self) -> String {
        format!("{} {} {}\n", self.origin_lsn, self.commit_ts, self.updated_ts)
    }

    pub fn parse(text: &str) -> Option<Saved> {
        let mut it = text.split_whitespace();
        let saved = Saved {
            origin_lsn: it.next()?.parse().ok()?,
            commit_ts: it.next()?.parse().ok()?,
            updated_ts: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(saved)
    }

    /// The record, if it still describes an origin now at `origin_lsn`:
    /// nothing was applied since it was written (a crash after later
    /// transactions leaves an older record, which must not be used).
    pub fn if_current(self, origin_lsn: u64) -> Option<Saved> {
        (self.origin_lsn == origin_lsn).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let s = Saved { origin_lsn: 0x1_0000_0000, commit_ts: 812_345_678_901, updated_ts: -5 };
        assert_eq!(Saved::parse(&s.encode()), Some(s));
        assert_eq!(Saved::parse(""), None);
        assert_eq!(Saved::parse("1 2"), None);
        assert_eq!(Saved::parse("1 2 3 4"), None);
        assert_eq!(Saved::parse("x 2 3"), None);
    }

    #[test]
    fn a_record_behind_the_origin_is_not_used() {
        let s = Saved { origin_lsn: 100, commit_ts: 1, updated_ts: 2 };
        assert_eq!(s.if_current(100), Some(s));
        assert_eq!(s.if_current(200), None);
    }
}
