//! Subscription statistics (sql-api.md §4.8): the order of the conflict
//! counters of `spock.get_subscription_stats`, and the record an apply
//! worker saves when it exits so that the counters survive a clean restart.

use crate::conflict::ConflictType;

/// The conflict counters, in the order of `get_subscription_stats`'s
/// columns.
pub const CONFLICT_COLUMNS: [ConflictType; 7] = [
    ConflictType::InsertExists,
    ConflictType::UpdateOriginDiffers,
    ConflictType::UpdateExists,
    ConflictType::UpdateMissing,
    ConflictType::DeleteOriginDiffers,
    ConflictType::DeleteMissing,
    ConflictType::DeleteExists,
];

/// The counter of a conflict type.
pub fn column_of(kind: ConflictType) -> usize {
    CONFLICT_COLUMNS.iter().position(|k| *k == kind).expect("every conflict type has a column")
}

/// What is saved of a subscription's counters. Timestamps are PostgreSQL's
/// (microseconds since 2000), 0 unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SavedStats {
    /// When the subscription was created: a record of an older
    /// subscription that had the same id is not used.
    pub created_at: i64,
    /// When the counters were last reset (0: never).
    pub reset_at: i64,
    pub conflicts: [u64; 7],
}

impl SavedStats {
    /// One line: `stats1 <created_at> <reset_at> <7 counters>`.
    pub fn encode(&self) -> String {
        let counts: Vec<String> = self.conflicts.iter().map(u64::to_string).collect();
        format!("stats1 {} {} {}\n", self.created_at, self.reset_at, counts.join(" "))
    }

    pub fn parse(text: &str) -> Option<SavedStats> {
        let mut it = text.split_whitespace();
        if it.next()? != "stats1" {
            return None;
        }
        let mut s = SavedStats {
            created_at: it.next()?.parse().ok()?,
            reset_at: it.next()?.parse().ok()?,
            ..Default::default()
        };
        for c in s.conflicts.iter_mut() {
            *c = it.next()?.parse().ok()?;
        }
        it.next().is_none().then_some(s)
    }

    /// The record, if it belongs to the subscription created at `created_at`.
    pub fn of_subscription(self, created_at: i64) -> Option<SavedStats> {
        (self.created_at == created_at).then_some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_conflict_type_has_its_own_column() {
        let mut seen: Vec<usize> = CONFLICT_COLUMNS.iter().map(|k| column_of(*k)).collect();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert_eq!(column_of(ConflictType::DeleteMissing), 5);
        assert_eq!(column_of(ConflictType::DeleteExists), 6);
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let s = SavedStats { created_at: 123, reset_at: -4, conflicts: [1, 2, 3, 4, 5, 6, u64::MAX] };
        assert_eq!(SavedStats::parse(&s.encode()), Some(s));
        assert_eq!(SavedStats::parse(""), None);
        assert_eq!(SavedStats::parse("stats1 1 2 3 4 5 6 7 8"), None);
        assert_eq!(SavedStats::parse("stats1 1 2 3 4 5 6 7 8 9 10"), None);
        assert_eq!(SavedStats::parse("stats2 1 2 3 4 5 6 7 8 9"), None);
        assert_eq!(SavedStats::parse("stats1 1 2 3 4 5 6 7 8 x"), None);
    }

    #[test]
    fn a_record_of_another_subscription_is_not_used() {
        let s = SavedStats { created_at: 10, ..Default::default() };
        assert_eq!(s.of_subscription(10), Some(s));
        assert_eq!(s.of_subscription(11), None);
    }
}
