//! Applying a table's changes with the rights of the table's owner
//! (behaviour.md §4.4, §21): trigger functions, column defaults, index
//! expressions, check constraints and type input functions reached while a
//! change is applied run as that owner, inside a security-restricted
//! operation, with their setting changes rolled back afterwards, as
//! PostgreSQL 16+ does for its own subscriptions. The apply worker itself
//! runs as the bootstrap superuser, so without this a table owner's code
//! would run as superuser on every subscriber.
//!
//! The switch is kept from one change to the next while the owner stays the
//! same (most transactions touch tables of one owner), and undone before
//! the transaction commits or the owner changes. `spock.apply_as_superuser
//! = on` restores the old behaviour.

use pgrx::prelude::*;

use crate::guc;

/// The user and settings to go back to.
struct Saved {
    user: pg_sys::Oid,
    context: i32,
    guc_level: i32,
}

/// Whose rights the current transaction's changes are applied with.
#[derive(Default)]
pub struct OwnerContext {
    current: Option<(pg_sys::Oid, Saved)>,
}

impl OwnerContext {
    /// From now on, run as `owner` (unless `spock.apply_as_superuser` is on).
    pub fn enter(&mut self, owner: pg_sys::Oid) {
        if guc::APPLY_AS_SUPERUSER.get() {
            self.leave();
            return;
        }
        if self.current.as_ref().is_some_and(|(o, _)| *o == owner) {
            return;
        }
        self.leave();
        let mut user = pg_sys::InvalidOid;
        let mut context = 0;
        // SAFETY: saves the current user and security context, opens a GUC
        // nest level (so that the owner's `SET`s are undone) and switches
        // user; `leave` undoes all three, and so does transaction abort.
        let guc_level = unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            let guc_level = pg_sys::NewGUCNestLevel();
            pg_sys::SetUserIdAndSecContext(
                owner,
                context
                    | (pg_sys::SECURITY_RESTRICTED_OPERATION | pg_sys::SECURITY_LOCAL_USERID_CHANGE) as i32,
            );
            guc_level
        };
        self.current = Some((owner, Saved { user, context, guc_level }));
    }

    /// Forgets the switch after a (sub)transaction abort undid it.
    pub fn forget(&mut self) {
        self.current = None;
    }

    /// Goes back to the worker's own user and settings.
    pub fn leave(&mut self) {
        if let Some((_, saved)) = self.current.take() {
            // SAFETY: undoes exactly what `enter` did, in reverse order.
            unsafe {
                pg_sys::AtEOXact_GUC(false, saved.guc_level);
                pg_sys::SetUserIdAndSecContext(saved.user, saved.context);
            }
        }
    }
}
