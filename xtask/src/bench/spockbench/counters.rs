//! The extension's statistics as spockbench reads them (`spockbench.md` §7):
//! per node, the conflict counters of its subscriptions by type
//! (`spock.get_subscription_stats`) and, per provider it applies from, the
//! rows applied and the delta-apply overrides (`spock.get_channel_stats`).
//! In native mode (18+), the conflict counters and apply errors of
//! PostgreSQL's own subscriptions (`pg_stat_subscription_stats`) instead.
//! A run reports what changed between the baseline and the end; counters a
//! crash or restart of a node lost make that a lower bound.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::node::Node;

/// The conflict types, in the order of `get_subscription_stats`'s columns.
pub const CONFLICT_TYPES: [&str; 7] = [
    "insert_exists",
    "update_origin_differs",
    "update_exists",
    "update_missing",
    "delete_origin_differs",
    "delete_missing",
    "delete_exists",
];

/// One node's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Conflicts of all its subscriptions, by type (`CONFLICT_TYPES` order).
    pub conflicts: [u64; 7],
    /// Per provider node name: (rows applied, delta-apply overrides).
    pub applied: BTreeMap<String, (u64, u64)>,
    /// Native mode: conflicts of a type spock does not count
    /// (`multiple_unique_conflicts`), and the apply errors.
    pub multiple_unique: u64,
    pub apply_errors: u64,
}

/// The columns of `pg_stat_subscription_stats` (18+) in `CONFLICT_TYPES`
/// order (PostgreSQL counts no `delete_exists`), then the two it has beyond.
const NATIVE_COLUMNS: [&str; 9] = [
    "confl_insert_exists",
    "confl_update_origin_differs",
    "confl_update_exists",
    "confl_update_missing",
    "confl_delete_origin_differs",
    "confl_delete_missing",
    "0",
    "confl_multiple_unique_conflicts",
    "apply_error_count",
];

impl Snapshot {
    /// Reads a node's counters; `None` when its extension has no
    /// statistics (a release before 0.2.0).
    pub fn read(node: &Node, db: &str) -> Result<Option<Snapshot>> {
        let available = node.safe_psql(
            db,
            "SELECT to_regprocedure('spock.get_subscription_stats(oid)') IS NOT NULL
                AND to_regprocedure('spock.get_channel_stats()') IS NOT NULL",
        )?;
        if available.trim() != "t" {
            return Ok(None);
        }
        let conflicts = node.safe_psql(
            db,
            "SELECT coalesce(sum(confl_insert_exists), 0), coalesce(sum(confl_update_origin_differs), 0),
                    coalesce(sum(confl_update_exists), 0), coalesce(sum(confl_update_missing), 0),
                    coalesce(sum(confl_delete_origin_differs), 0), coalesce(sum(confl_delete_missing), 0),
                    coalesce(sum(confl_delete_exists), 0)
               FROM spock.subscription s, spock.get_subscription_stats(s.sub_id) c",
        )?;
        let applied = node.safe_psql(
            db,
            "SELECT o.node_name, sum(c.n_tup_ins + c.n_tup_upd + c.n_tup_del), sum(c.n_dca)
               FROM spock.get_channel_stats() c
               JOIN spock.subscription s ON s.sub_id = c.subid
               JOIN spock.node o ON o.node_id = s.sub_origin
              GROUP BY 1",
        )?;
        Ok(Some(Snapshot::parse(&conflicts, &applied)))
    }

    /// Reads the counters of a node's built-in subscriptions (native mode);
    /// `None` before PostgreSQL 18, whose statistics have no conflict counts.
    pub fn read_native(node: &Node, db: &str) -> Result<Option<Snapshot>> {
        let available = node.safe_psql(
            db,
            "SELECT count(*) FROM pg_attribute
              WHERE attrelid = 'pg_catalog.pg_stat_subscription_stats'::regclass
                AND attname = 'confl_multiple_unique_conflicts'",
        )?;
        if available.trim() != "1" {
            return Ok(None);
        }
        let sums: Vec<String> = NATIVE_COLUMNS.iter().map(|c| format!("coalesce(sum({c}), 0)")).collect();
        let line = node.safe_psql(
            db,
            &format!(
                "SELECT {} FROM pg_stat_subscription_stats s JOIN pg_subscription p ON p.oid = s.subid
                  WHERE p.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                sums.join(", ")
            ),
        )?;
        Ok(Some(Snapshot::parse_native(&line)))
    }

    fn parse_native(line: &str) -> Snapshot {
        let v: Vec<u64> = line.trim().split('|').map(|f| f.trim().parse().unwrap_or(0)).collect();
        let mut s = Snapshot::default();
        for (slot, n) in s.conflicts.iter_mut().zip(&v) {
            *slot = *n;
        }
        s.multiple_unique = v.get(7).copied().unwrap_or(0);
        s.apply_errors = v.get(8).copied().unwrap_or(0);
        s
    }

    /// Builds a snapshot from psql's unaligned output of the two queries.
    fn parse(conflicts: &str, applied: &str) -> Snapshot {
        let mut s = Snapshot::default();
        if let Some(line) = conflicts.lines().next() {
            for (slot, field) in s.conflicts.iter_mut().zip(line.split('|')) {
                *slot = field.trim().parse().unwrap_or(0);
            }
        }
        for line in applied.lines() {
            let f: Vec<&str> = line.split('|').collect();
            if let [name, rows, dca] = f.as_slice() {
                s.applied.insert(name.to_string(), (rows.parse().unwrap_or(0), dca.parse().unwrap_or(0)));
            }
        }
        s
    }

    /// What grew since `before` (a counter that went down, after a crash or
    /// restart, counts from zero).
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        let grown = |now: u64, then: u64| if now >= then { now - then } else { now };
        let mut out = Snapshot::default();
        for (i, c) in out.conflicts.iter_mut().enumerate() {
            *c = grown(self.conflicts[i], before.conflicts[i]);
        }
        for (name, (rows, dca)) in &self.applied {
            let (r0, d0) = before.applied.get(name).copied().unwrap_or((0, 0));
            out.applied.insert(name.clone(), (grown(*rows, r0), grown(*dca, d0)));
        }
        out.multiple_unique = grown(self.multiple_unique, before.multiple_unique);
        out.apply_errors = grown(self.apply_errors, before.apply_errors);
        out
    }

    /// The conflicts by type, leaving out the types that did not occur.
    pub fn by_type(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> =
            CONFLICT_TYPES.iter().zip(self.conflicts).filter(|(_, n)| *n > 0).map(|(t, n)| (*t, n)).collect();
        if self.multiple_unique > 0 {
            out.insert("multiple_unique_conflicts", self.multiple_unique);
        }
        out
    }

    /// Delta-apply overrides over all providers.
    pub fn delta_apply(&self) -> u64 {
        self.applied.values().map(|(_, d)| d).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_output_is_read_column_by_column() {
        let s = Snapshot::parse("3|40|0|1|0|2|5\n", "n1|1200|7\nn3|900|0\n");
        assert_eq!(s.conflicts, [3, 40, 0, 1, 0, 2, 5]);
        assert_eq!(s.applied.get("n1"), Some(&(1200, 7)));
        assert_eq!(s.applied.get("n3"), Some(&(900, 0)));
        assert_eq!(s.delta_apply(), 7);
        let types = s.by_type();
        assert_eq!(types.get("update_origin_differs"), Some(&40));
        assert!(!types.contains_key("update_exists"));
    }

    #[test]
    fn deltas_restart_from_zero_after_counters_were_lost() {
        let before = Snapshot::parse("3|40|0|0|0|0|0", "n1|1200|7");
        let after = Snapshot::parse("5|41|0|0|0|0|0", "n1|100|1\nn2|50|0");
        let d = after.since(&before);
        assert_eq!(d.conflicts[0], 2);
        assert_eq!(d.conflicts[1], 1);
        // n1's channel counters were lost (a restart): what is there counts.
        assert_eq!(d.applied.get("n1"), Some(&(100, 1)));
        assert_eq!(d.applied.get("n2"), Some(&(50, 0)));
    }

    #[test]
    fn native_counters_are_read_in_spock_order() {
        let s = Snapshot::parse_native("1|20|0|3|0|4|0|2|5\n");
        assert_eq!(s.conflicts, [1, 20, 0, 3, 0, 4, 0]);
        assert_eq!((s.multiple_unique, s.apply_errors), (2, 5));
        assert_eq!(s.by_type().get("multiple_unique_conflicts"), Some(&2));
        let later = Snapshot::parse_native("1|25|0|3|0|4|0|2|6");
        let d = later.since(&s);
        assert_eq!((d.conflicts[1], d.apply_errors, d.multiple_unique), (5, 1, 0));
    }

    #[test]
    fn empty_output_is_no_counters() {
        assert_eq!(Snapshot::parse("", ""), Snapshot::default());
    }
}
