//! Apply work in an internal subtransaction of its own, as PostgreSQL's
//! exception blocks do it: committed into the surrounding transaction when
//! it succeeds, rolled back when it fails, with the caller's memory context
//! and resource owner restored either way. Used for a change applied on its
//! own in exception mode (`dispatch`) and for a delta-apply update whose
//! rows get another commit timestamp (`delta`).

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs `work` in a subtransaction; its error, after the rollback.
pub fn run<T>(work: impl FnOnce() -> T) -> Result<T, Box<CaughtError>> {
    // SAFETY: a subtransaction begun and ended here, inside the caller's
    // transaction; what `work` leaves open must not outlive it (the
    // callers close or forget it).
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(work())))
            .catch_others(|e| Err(Box::new(e)))
            .execute();
        pg_sys::MemoryContextSwitchTo(context);
        match result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        result
    }
}
