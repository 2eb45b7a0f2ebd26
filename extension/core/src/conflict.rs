//! The conflict rule (behaviour.md §7): which conflict an incoming change
//! meets, who wins under last-update-wins with the tiebreaker rule, and
//! which outcomes are recorded in `spock.resolutions` and logged.
//!
//! Everything here depends only on the metadata of the two row versions
//! (commit timestamp and originating node), never on arrival order, so every
//! node that sees the same two versions reaches the same outcome.

/// A PostgreSQL `timestamptz`: microseconds since 2000-01-01 UTC.
pub type Timestamp = i64;

/// Microseconds in a minute: how far ahead of the local clock an incoming
/// commit timestamp may be before it is reported.
pub const FAR_AHEAD: Timestamp = 60 * 1_000_000;

/// The kind of incoming change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Insert,
    Update,
    Delete,
}

/// The conflict types of behaviour.md §7.5, named as PostgreSQL 18 names
/// them (plus `delete_exists`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictType {
    InsertExists,
    UpdateOriginDiffers,
    UpdateExists,
    UpdateMissing,
    DeleteOriginDiffers,
    DeleteExists,
    DeleteMissing,
}

impl ConflictType {
    pub fn name(self) -> &'static str {
        match self {
            ConflictType::InsertExists => "insert_exists",
            ConflictType::UpdateOriginDiffers => "update_origin_differs",
            ConflictType::UpdateExists => "update_exists",
            ConflictType::UpdateMissing => "update_missing",
            ConflictType::DeleteOriginDiffers => "delete_origin_differs",
            ConflictType::DeleteExists => "delete_exists",
            ConflictType::DeleteMissing => "delete_missing",
        }
    }
}

/// What happens to the incoming change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The incoming change is applied (an INSERT that met a row becomes an
    /// UPDATE of the columns it sent).
    ApplyRemote,
    /// The local row version stays as it is.
    KeepLocal,
    /// Nothing to do (the row to delete is missing, or a later local version
    /// wins against the DELETE).
    Skip,
    /// Not resolvable: an apply error (behaviour.md §8).
    Fail,
}

impl Resolution {
    /// The value of `spock.resolutions.conflict_resolution`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::ApplyRemote => "apply_remote",
            Resolution::KeepLocal => "keep_local",
            Resolution::Skip => "skip",
            Resolution::Fail => "error",
        }
    }

    /// Whether the incoming change is carried out.
    pub fn applies(self) -> bool {
        self == Resolution::ApplyRemote
    }
}

/// The node that originated a local row version, as its replication
/// origin says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalOrigin {
    /// Written by a local session (replication origin 0).
    ThisNode,
    /// Applied from this node (a spock node id).
    Node(u32),
    /// Applied under a replication origin that belongs to no spock
    /// subscription (dropped, or another replication tool).
    Unknown,
}

/// The metadata of the local row version that an incoming change meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalVersion {
    /// Its commit timestamp; `None` when the commit-timestamp data is gone
    /// (frozen or too old a row, or written while tracking was off). Such a
    /// version is older than any incoming change.
    pub commit_ts: Option<Timestamp>,
    pub origin: LocalOrigin,
}

/// The metadata of the incoming change: its transaction's origin commit
/// timestamp and the node that originated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteVersion {
    pub commit_ts: Timestamp,
    pub origin: u32,
}

impl LocalVersion {
    /// A row version written earlier in the transaction that applies the
    /// incoming change counts as having that change's metadata.
    pub fn same_transaction(remote: &RemoteVersion) -> LocalVersion {
        LocalVersion { commit_ts: Some(remote.commit_ts), origin: LocalOrigin::Node(remote.origin) }
    }

    /// Whether the local version came from the node the change comes from.
    pub fn same_origin(&self, remote: &RemoteVersion) -> bool {
        self.origin == LocalOrigin::Node(remote.origin)
    }
}

/// The nodes a tie is broken between: the local node's id, and the
/// tiebreaker of any node (its `info.tiebreaker`, or its id).
pub struct Tiebreakers<'a> {
    pub local_node: u32,
    pub of: &'a dyn Fn(u32) -> i64,
}

/// Why last-update-wins decided as it did (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not a conflict: the local version came from the same origin.
    SameOrigin,
    /// The local version's commit timestamp is unknown (older than any change).
    LocalUnknown,
    /// The incoming change committed later.
    RemoteLater,
    /// The local version committed later.
    LocalLater,
    /// Equal timestamps, the same origin: the incoming change is the later one.
    TieSameOrigin,
    /// Equal timestamps: the version of the node with the lower tiebreaker wins.
    Tiebreaker { local_node: u32, local: i64, remote_node: u32, remote: i64 },
    /// Equal timestamps and equal tiebreakers (a misconfiguration): the
    /// incoming change wins, and a WARNING asks for distinct values.
    EqualTiebreakers { local_node: u32, remote_node: u32 },
    /// Equal timestamps, and the local version's node is not known here.
    TieUnknownOrigin,
}

/// Last-update-wins between a local row version and an incoming change
/// (behaviour.md §7.3-7.4): true when the incoming change wins.
pub fn last_update_wins(
    local: &LocalVersion,
    remote: &RemoteVersion,
    nodes: &Tiebreakers<'_>,
) -> (bool, Reason) {
    let Some(local_ts) = local.commit_ts else {
        return (true, Reason::LocalUnknown);
    };
    if remote.commit_ts > local_ts {
        return (true, Reason::RemoteLater);
    }
    if remote.commit_ts < local_ts {
        return (false, Reason::LocalLater);
    }
    if local.same_origin(remote) {
        return (true, Reason::TieSameOrigin);
    }
    let local_node = match local.origin {
        LocalOrigin::ThisNode => nodes.local_node,
        LocalOrigin::Node(id) => id,
        LocalOrigin::Unknown => return (true, Reason::TieUnknownOrigin),
    };
    let (l, r) = ((nodes.of)(local_node), (nodes.of)(remote.origin));
    if l == r {
        return (true, Reason::EqualTiebreakers { local_node, remote_node: remote.origin });
    }
    (r < l, Reason::Tiebreaker { local_node, local: l, remote_node: remote.origin, remote: r })
}

/// The outcome for one incoming change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `None` for ordinary replication (no local row for an INSERT, or a
    /// local version of the same origin for an UPDATE or DELETE).
    pub conflict: Option<ConflictType>,
    pub resolution: Resolution,
    /// Why last-update-wins decided; `None` when it was not asked.
    pub reason: Option<Reason>,
}

impl Outcome {
    fn plain() -> Outcome {
        Outcome { conflict: None, resolution: Resolution::ApplyRemote, reason: None }
    }

    /// An incoming UPDATE whose new row collides with another row on a
    /// unique index other than the key: not resolvable, an apply error
    /// (behaviour.md §7.5), whatever the two versions' ages.
    pub fn update_exists() -> Outcome {
        Outcome { conflict: Some(ConflictType::UpdateExists), resolution: Resolution::Fail, reason: None }
    }
}

/// Classifies an incoming change against the local row version found by
/// its key (`None`: no row) and resolves it (behaviour.md §7.5).
pub fn resolve(
    change: Change,
    local: Option<&LocalVersion>,
    remote: &RemoteVersion,
    nodes: &Tiebreakers<'_>,
) -> Outcome {
    let Some(local) = local else {
        return match change {
            Change::Insert => Outcome::plain(),
            Change::Update => Outcome {
                conflict: Some(ConflictType::UpdateMissing),
                resolution: Resolution::Fail,
                reason: None,
            },
            Change::Delete => Outcome {
                conflict: Some(ConflictType::DeleteMissing),
                resolution: Resolution::Skip,
                reason: None,
            },
        };
    };
    if change != Change::Insert && local.same_origin(remote) {
        return Outcome { reason: Some(Reason::SameOrigin), ..Outcome::plain() };
    }
    let (remote_wins, reason) = last_update_wins(local, remote, nodes);
    let (conflict, resolution) = match (change, remote_wins) {
        (Change::Insert, true) => (ConflictType::InsertExists, Resolution::ApplyRemote),
        (Change::Insert, false) => (ConflictType::InsertExists, Resolution::KeepLocal),
        (Change::Update, true) => (ConflictType::UpdateOriginDiffers, Resolution::ApplyRemote),
        (Change::Update, false) => (ConflictType::UpdateOriginDiffers, Resolution::KeepLocal),
        (Change::Delete, true) => (ConflictType::DeleteOriginDiffers, Resolution::ApplyRemote),
        (Change::Delete, false) => (ConflictType::DeleteExists, Resolution::Skip),
    };
    Outcome { conflict: Some(conflict), resolution, reason: Some(reason) }
}

/// Whether an outcome is a row of `spock.resolutions` under
/// `save_resolutions` (behaviour.md §7.6).
pub fn recorded(conflict: ConflictType, resolution: Resolution) -> bool {
    match conflict {
        ConflictType::InsertExists | ConflictType::DeleteExists | ConflictType::DeleteMissing => true,
        ConflictType::UpdateOriginDiffers => resolution == Resolution::KeepLocal,
        ConflictType::UpdateExists | ConflictType::UpdateMissing | ConflictType::DeleteOriginDiffers => false,
    }
}

/// `spock.log_origin_change`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOriginChange {
    None,
    RemoteOnlyDiffers,
    SinceSubCreation,
}

/// Whether an outcome gets a server-log message (behaviour.md §7.7):
/// recorded types and unresolvable ones always (at
/// `spock.conflict_log_level`); remote-wins origin changes as
/// `log_origin_change` says, given when the subscription was created.
pub fn logged(
    outcome: &Outcome,
    local: Option<&LocalVersion>,
    setting: LogOriginChange,
    sub_created_at: Timestamp,
) -> bool {
    let Some(conflict) = outcome.conflict else { return false };
    if recorded(conflict, outcome.resolution)
        || matches!(conflict, ConflictType::UpdateExists | ConflictType::UpdateMissing)
    {
        return true;
    }
    match setting {
        LogOriginChange::None => false,
        LogOriginChange::RemoteOnlyDiffers => {
            local.is_some_and(|l| matches!(l.origin, LocalOrigin::Node(_) | LocalOrigin::Unknown))
        }
        LogOriginChange::SinceSubCreation => {
            local.and_then(|l| l.commit_ts).is_some_and(|ts| ts > sub_created_at)
        }
    }
}

/// Whether an incoming commit timestamp is more than a minute ahead of the
/// local clock (applied, but reported: it pushes the commit clock forward).
pub fn far_ahead(remote_ts: Timestamp, now: Timestamp) -> bool {
    remote_ts.saturating_sub(now) > FAR_AHEAD
}

/// The node id that `spock.resolutions.local_origin` shows for a local
/// origin: 0 for a local write, `None` when unknown.
pub fn recorded_origin(origin: LocalOrigin) -> Option<u32> {
    match origin {
        LocalOrigin::ThisNode => Some(0),
        LocalOrigin::Node(id) => Some(id),
        LocalOrigin::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: u32 = 101;
    const N2: u32 = 202;
    const N3: u32 = 303;

    fn by_id(id: u32) -> i64 {
        i64::from(id)
    }

    fn nodes(local: u32) -> Tiebreakers<'static> {
        Tiebreakers { local_node: local, of: &by_id }
    }

    fn local(ts: Option<i64>, origin: LocalOrigin) -> LocalVersion {
        LocalVersion { commit_ts: ts, origin }
    }

    fn remote(ts: i64, origin: u32) -> RemoteVersion {
        RemoteVersion { commit_ts: ts, origin }
    }

    #[test]
    fn later_commit_wins_either_way() {
        let n = nodes(N2);
        let l = local(Some(100), LocalOrigin::ThisNode);
        assert_eq!(last_update_wins(&l, &remote(101, N1), &n), (true, Reason::RemoteLater));
        assert_eq!(last_update_wins(&l, &remote(99, N1), &n), (false, Reason::LocalLater));
    }

    #[test]
    fn unknown_local_version_is_older_than_anything() {
        let l = local(None, LocalOrigin::ThisNode);
        assert_eq!(last_update_wins(&l, &remote(i64::MIN, N1), &nodes(N2)), (true, Reason::LocalUnknown));
    }

    #[test]
    fn tie_with_same_origin_applies_remote() {
        let l = local(Some(5), LocalOrigin::Node(N1));
        assert_eq!(last_update_wins(&l, &remote(5, N1), &nodes(N2)), (true, Reason::TieSameOrigin));
    }

    #[test]
    fn tie_goes_to_the_lower_tiebreaker() {
        // On n2: its own version (tiebreaker 202) against n1's (101): n1 wins.
        let on_n2 = last_update_wins(&local(Some(5), LocalOrigin::ThisNode), &remote(5, N1), &nodes(N2));
        assert_eq!(
            on_n2,
            (true, Reason::Tiebreaker { local_node: N2, local: 202, remote_node: N1, remote: 101 })
        );
        // On n1: its own version against n2's: n1 keeps its own.
        let on_n1 = last_update_wins(&local(Some(5), LocalOrigin::ThisNode), &remote(5, N2), &nodes(N1));
        assert!(!on_n1.0);
    }

    #[test]
    fn tiebreaker_setting_reverses_the_winner() {
        let lowered = |id: u32| if id == N2 { 1 } else { i64::from(id) };
        let n = Tiebreakers { local_node: N2, of: &lowered };
        let (remote_wins, _) = last_update_wins(&local(Some(5), LocalOrigin::ThisNode), &remote(5, N1), &n);
        assert!(!remote_wins, "n2 has the lower tiebreaker now and keeps its version");
    }

    #[test]
    fn equal_tiebreakers_apply_remote_and_say_so() {
        let same = |_: u32| 7;
        let n = Tiebreakers { local_node: N2, of: &same };
        assert_eq!(
            last_update_wins(&local(Some(5), LocalOrigin::ThisNode), &remote(5, N1), &n),
            (true, Reason::EqualTiebreakers { local_node: N2, remote_node: N1 })
        );
    }

    #[test]
    fn tie_against_an_unknown_origin_applies_remote() {
        let l = local(Some(5), LocalOrigin::Unknown);
        assert_eq!(last_update_wins(&l, &remote(5, N1), &nodes(N2)), (true, Reason::TieUnknownOrigin));
    }

    /// Three nodes: n1 and n2 write versions with the same timestamp; n3
    /// (and n1, n2) end with the same winner whatever the arrival order.
    #[test]
    fn every_arrival_order_converges() {
        let v1 = remote(42, N1);
        let v2 = remote(42, N2);
        // The surviving version after applying `first` then `second` on a
        // node that had neither (the first is applied as a plain insert).
        let survivor = |first: RemoteVersion, second: RemoteVersion, at: u32| {
            let held = local(Some(first.commit_ts), LocalOrigin::Node(first.origin));
            let out = resolve(Change::Update, Some(&held), &second, &nodes(at));
            if out.resolution.applies() { second.origin } else { first.origin }
        };
        assert_eq!(survivor(v1, v2, N3), N1);
        assert_eq!(survivor(v2, v1, N3), N1);
        // n1 held its own version and receives n2's, and the other way round.
        let on_n1 = resolve(Change::Update, Some(&local(Some(42), LocalOrigin::ThisNode)), &v2, &nodes(N1));
        assert_eq!(on_n1.resolution, Resolution::KeepLocal);
        let on_n2 = resolve(Change::Update, Some(&local(Some(42), LocalOrigin::ThisNode)), &v1, &nodes(N2));
        assert_eq!(on_n2.resolution, Resolution::ApplyRemote);
    }

    #[test]
    fn insert_without_a_row_is_not_a_conflict() {
        assert_eq!(resolve(Change::Insert, None, &remote(1, N1), &nodes(N2)), Outcome::plain());
    }

    #[test]
    fn insert_exists_either_way() {
        let l = local(Some(10), LocalOrigin::ThisNode);
        let win = resolve(Change::Insert, Some(&l), &remote(11, N1), &nodes(N2));
        assert_eq!(
            (win.conflict, win.resolution),
            (Some(ConflictType::InsertExists), Resolution::ApplyRemote)
        );
        let lose = resolve(Change::Insert, Some(&l), &remote(9, N1), &nodes(N2));
        assert_eq!(
            (lose.conflict, lose.resolution),
            (Some(ConflictType::InsertExists), Resolution::KeepLocal)
        );
        // Even a row of the same origin is a conflict for an INSERT.
        let same = resolve(
            Change::Insert,
            Some(&local(Some(10), LocalOrigin::Node(N1))),
            &remote(10, N1),
            &nodes(N2),
        );
        assert_eq!(same.conflict, Some(ConflictType::InsertExists));
        assert_eq!(same.resolution, Resolution::ApplyRemote);
    }

    #[test]
    fn update_and_delete_of_the_same_origin_are_plain_replication() {
        // Even when the local version looks later (it cannot be, but the
        // rule must not depend on it).
        let l = local(Some(50), LocalOrigin::Node(N1));
        for change in [Change::Update, Change::Delete] {
            let out = resolve(change, Some(&l), &remote(10, N1), &nodes(N2));
            assert_eq!(out.conflict, None);
            assert_eq!(out.resolution, Resolution::ApplyRemote);
        }
    }

    #[test]
    fn update_origin_differs_either_way() {
        let l = local(Some(10), LocalOrigin::ThisNode);
        let win = resolve(Change::Update, Some(&l), &remote(11, N1), &nodes(N2));
        assert_eq!(
            (win.conflict, win.resolution),
            (Some(ConflictType::UpdateOriginDiffers), Resolution::ApplyRemote)
        );
        let lose = resolve(Change::Update, Some(&l), &remote(9, N1), &nodes(N2));
        assert_eq!(
            (lose.conflict, lose.resolution),
            (Some(ConflictType::UpdateOriginDiffers), Resolution::KeepLocal)
        );
        // A version from a third node also differs.
        let third =
            resolve(Change::Update, Some(&local(Some(1), LocalOrigin::Node(N3))), &remote(2, N1), &nodes(N2));
        assert_eq!(third.conflict, Some(ConflictType::UpdateOriginDiffers));
    }

    #[test]
    fn missing_rows() {
        let up = resolve(Change::Update, None, &remote(1, N1), &nodes(N2));
        assert_eq!((up.conflict, up.resolution), (Some(ConflictType::UpdateMissing), Resolution::Fail));
        let del = resolve(Change::Delete, None, &remote(1, N1), &nodes(N2));
        assert_eq!((del.conflict, del.resolution), (Some(ConflictType::DeleteMissing), Resolution::Skip));
    }

    #[test]
    fn delete_against_another_origin() {
        let l = local(Some(10), LocalOrigin::ThisNode);
        let win = resolve(Change::Delete, Some(&l), &remote(11, N1), &nodes(N2));
        assert_eq!(
            (win.conflict, win.resolution),
            (Some(ConflictType::DeleteOriginDiffers), Resolution::ApplyRemote)
        );
        let lose = resolve(Change::Delete, Some(&l), &remote(9, N1), &nodes(N2));
        assert_eq!((lose.conflict, lose.resolution), (Some(ConflictType::DeleteExists), Resolution::Skip));
    }

    #[test]
    fn what_is_recorded() {
        use ConflictType::*;
        use Resolution::*;
        assert!(recorded(InsertExists, ApplyRemote));
        assert!(recorded(InsertExists, KeepLocal));
        assert!(recorded(UpdateOriginDiffers, KeepLocal));
        assert!(!recorded(UpdateOriginDiffers, ApplyRemote));
        assert!(!recorded(DeleteOriginDiffers, ApplyRemote));
        assert!(recorded(DeleteExists, Skip));
        assert!(recorded(DeleteMissing, Skip));
        assert!(!recorded(UpdateMissing, Fail));
        assert!(!recorded(UpdateExists, Fail));
        // Never recorded, always logged, never applied.
        let o = Outcome::update_exists();
        assert_eq!(o.conflict, Some(UpdateExists));
        assert!(!o.resolution.applies());
        assert!(logged(&o, None, LogOriginChange::None, 0));
    }

    #[test]
    fn what_is_logged() {
        let created = 1_000;
        let outcome = |change, l: Option<&LocalVersion>, ts| resolve(change, l, &remote(ts, N1), &nodes(N2));
        // Recorded and unresolvable outcomes are logged under every setting.
        for setting in
            [LogOriginChange::None, LogOriginChange::RemoteOnlyDiffers, LogOriginChange::SinceSubCreation]
        {
            let l = local(Some(5_000), LocalOrigin::ThisNode);
            assert!(logged(&outcome(Change::Insert, Some(&l), 1), Some(&l), setting, created));
            assert!(logged(&outcome(Change::Update, None, 1), None, setting, created));
            assert!(logged(&outcome(Change::Delete, None, 1), None, setting, created));
            // Ordinary replication never is.
            let same = local(Some(5), LocalOrigin::Node(N1));
            assert!(!logged(&outcome(Change::Update, Some(&same), 9), Some(&same), setting, created));
        }
        // A remote win over a locally written version written after the
        // subscription was created.
        let mine = local(Some(5_000), LocalOrigin::ThisNode);
        let over_mine = outcome(Change::Update, Some(&mine), 9_000);
        assert!(!logged(&over_mine, Some(&mine), LogOriginChange::None, created));
        assert!(!logged(&over_mine, Some(&mine), LogOriginChange::RemoteOnlyDiffers, created));
        assert!(logged(&over_mine, Some(&mine), LogOriginChange::SinceSubCreation, created));
        // A row restored before the subscription existed.
        let old = local(Some(500), LocalOrigin::ThisNode);
        assert!(!logged(
            &outcome(Change::Update, Some(&old), 9_000),
            Some(&old),
            LogOriginChange::SinceSubCreation,
            created
        ));
        // A version from a third node.
        let third = local(Some(5_000), LocalOrigin::Node(N3));
        let over_third = outcome(Change::Delete, Some(&third), 9_000);
        assert_eq!(over_third.conflict, Some(ConflictType::DeleteOriginDiffers));
        assert!(logged(&over_third, Some(&third), LogOriginChange::RemoteOnlyDiffers, created));
        assert!(!logged(&over_third, Some(&third), LogOriginChange::None, created));
    }

    #[test]
    fn same_transaction_versions_are_the_incoming_change() {
        let r = remote(77, N1);
        let l = LocalVersion::same_transaction(&r);
        assert_eq!(resolve(Change::Update, Some(&l), &r, &nodes(N2)).conflict, None);
    }

    #[test]
    fn far_ahead_is_more_than_a_minute() {
        assert!(!far_ahead(FAR_AHEAD, 0));
        assert!(far_ahead(FAR_AHEAD + 1, 0));
        assert!(!far_ahead(i64::MIN, i64::MAX));
        assert!(far_ahead(i64::MAX, i64::MIN));
    }

    #[test]
    fn recorded_origins() {
        assert_eq!(recorded_origin(LocalOrigin::ThisNode), Some(0));
        assert_eq!(recorded_origin(LocalOrigin::Node(N1)), Some(N1));
        assert_eq!(recorded_origin(LocalOrigin::Unknown), None);
    }
}
