//! Transactions the provider forwards from other nodes (behaviour.md §5.3).
//!
//! A forwarded transaction is committed here under the local replication
//! origin that stands for the node it originated on (`catalog::origin::
//! for_forwarded`), with that node's commit time and its position there,
//! so that its rows carry the same metadata on every node and last-update-
//! wins sees the originating node. That origin's progress is a position on
//! the originating node: a forwarded transaction at or before it has been
//! applied here already (before a crash, or through a subscription from
//! that node) and is only passed over.
//!
//! The subscription's own origin is held by the worker the rest of the
//! time. It is let go for the commit of a forwarded transaction and then
//! moved past it in memory only: after a crash it may be behind, and the
//! provider sends those transactions again, which the rule above passes
//! over. No forwarded transaction is applied twice and none is lost.

use pgrx::prelude::*;

use crate::catalog::{self, origin};

/// A forwarded transaction being applied.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded {
    /// The local origin of the node it originated on.
    origin: pg_sys::RepOriginId,
    /// Its position on that node.
    origin_lsn: u64,
}

/// What to do with a remote transaction, as far as forwarding goes.
pub enum Arrival {
    /// The provider's own transaction, or one it forwards without a
    /// position on its originating node (written by the provider's
    /// table-sync worker, in another order than that node's): applied
    /// under the subscription's origin, which makes it count as the
    /// provider's, so that it is applied exactly once.
    Own,
    /// Forwarded, and new here.
    Forwarded(Forwarded),
    /// Forwarded, and applied here before.
    AlreadyApplied { node: u32, origin_lsn: u64 },
}

/// The forwarding origins one apply worker has looked up.
pub struct Forwarding {
    provider: u32,
    /// Originating node → the local origin its transactions are committed
    /// under, and every origin standing for it.
    origins: origin::ByOrigin<u32, (pg_sys::RepOriginId, Vec<pg_sys::RepOriginId>)>,
}

impl Forwarding {
    pub fn new(provider: u32) -> Forwarding {
        Forwarding { provider, origins: origin::ByOrigin::new() }
    }

    /// At Begin, inside the local transaction: how the remote transaction
    /// with this origin node and origin position is to be committed.
    pub fn arrival(&mut self, origin_node: u32, origin_lsn: u64) -> Arrival {
        if origin_node == 0 || origin_node == self.provider || origin_lsn == 0 {
            return Arrival::Own;
        }
        let (origin, all) = self.origins_of(origin_node);
        let applied = all.iter().map(|o| origin::progress(*o)).max().unwrap_or(0);
        if origin_lsn <= applied {
            return Arrival::AlreadyApplied { node: origin_node, origin_lsn };
        }
        Arrival::Forwarded(Forwarded { origin, origin_lsn })
    }

    fn origins_of(&mut self, node: u32) -> (pg_sys::RepOriginId, Vec<pg_sys::RepOriginId>) {
        self.origins.get_or_insert_with(node, || {
            catalog::with_catalog_owner_rights(|| Spi::connect(|client| origin::for_forwarded(client, node)))
        })
    }
}

/// Commits the open local transaction of a forwarded remote transaction
/// under its originating node's origin, then moves the subscription's own
/// origin (held again afterwards) to `end_lsn`, the transaction's end on
/// the provider. Returns the local commit's end.
pub fn commit(fwd: Forwarded, end_lsn: u64, commit_time: i64) -> u64 {
    // SAFETY: the worker's session origin is swapped around the commit of
    // the transaction it started at Begin (with its snapshot pushed); the
    // commit writes a record (an xid is assigned), so the originating
    // node's origin moves with it.
    unsafe {
        if !origin::hold(fwd.origin) {
            pgrx::error!(
                "spock: the replication origin {} was dropped while a transaction was applied under it; \
                 the transaction is received again",
                fwd.origin
            );
        }
        let own = pg_sys::replorigin_session_origin;
        origin::reset_session();
        origin::setup_session(fwd.origin);
        origin::stamp_commit(fwd.origin_lsn, commit_time);
        pg_sys::GetCurrentTransactionId();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        let local_end = pg_sys::XactLastCommitEnd;
        origin::reset_session();
        origin::advance(own, end_lsn, local_end);
        origin::setup_session(own);
        local_end
    }
}
