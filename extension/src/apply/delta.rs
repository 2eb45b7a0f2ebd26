//! Delta apply on the subscriber (behaviour.md §9): the value of each delta
//! column is `f(remote_old, remote_new, local_current)`, written with the
//! incoming row when it wins last-update-wins, and otherwise into the local
//! row by an update whose subtransaction keeps the local version's commit
//! timestamp and origin (core patch 040), so that an increment is never
//! lost and later conflicts still see the local version's age. Which
//! columns and what to do is `spock_core::delta`.

use pgrx::prelude::*;
use spock_core::delta::{self, Source};
use spock_core::protocol::{Tuple, Value};

use super::conflict::Found;
use super::relmap::{DeltaColumn, LocalMap, RemoteRel};
use super::subxact;
use crate::core_patches;
use crate::hooks::column_options;

unsafe extern "C-unwind" {
    /// PostgreSQL's `datumIsEqual` (utils/datum.h, which pgrx does not bind).
    #[link_name = "datumIsEqual"]
    fn datum_is_equal(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        typbyval: bool,
        typlen: std::ffi::c_int,
    ) -> bool;
}

/// The old values an incoming change brings for its delta columns.
#[derive(Clone, Copy)]
pub enum OldValues<'a> {
    /// An UPDATE: the old row the provider sent, if any (a provider column
    /// that is not `log_old_value` sends none).
    Sent(Option<&'a Tuple>),
    /// An INSERT that met a row: it adds its whole value (`f(0, new, local)`).
    Zero,
}

/// The computed values of the delta columns: (local attribute, value).
pub struct Computed(Vec<(usize, pg_sys::Datum)>);

/// A remote value as a datum, `None` when NULL or not sent.
///
/// # Safety
/// In the apply transaction; `col` belongs to `map`.
unsafe fn remote_value(map: &LocalMap, col: &DeltaColumn, tuple: Option<&Tuple>) -> Option<pg_sys::Datum> {
    match tuple.and_then(|t| t.0.get(col.remote)) {
        // SAFETY: per the contract.
        Some(Value::Text(text)) => Some(unsafe { map.input(col.local, text) }),
        _ => None,
    }
}

/// Computes the delta columns of `map` for an incoming change against the
/// local row in `local` (deformed). Columns whose source is the remote new
/// value are left out: the incoming row already carries it.
///
/// # Safety
/// In the apply transaction, with the table owner's rights; `local` holds
/// the locked local row, all attributes deformed.
pub unsafe fn compute(
    map: &LocalMap,
    rr: &RemoteRel,
    old: OldValues<'_>,
    new: &Tuple,
    local: *mut pg_sys::TupleTableSlot,
) -> Computed {
    let mut out = Vec::new();
    for col in &map.delta {
        let finfo = match &col.func {
            Ok(f) => f,
            Err(name) => column_options::raise_no_function(name, col.type_oid, &col.name, &rr.qualified()),
        };
        // SAFETY: per the contract; values are read into the current
        // (per-change) memory context.
        unsafe {
            let new_value = remote_value(map, col, Some(new));
            let old_value = match old {
                OldValues::Sent(tuple) => remote_value(map, col, tuple),
                OldValues::Zero => Some(map.input(col.local, b"0")),
            };
            let local_value =
                (!*(*local).tts_isnull.add(col.local)).then(|| *(*local).tts_values.add(col.local));
            let source = delta::source(old_value.is_some(), new_value.is_some(), local_value.is_some());
            if let (Source::Computed, Some(o), Some(n), Some(l)) = (source, old_value, new_value, local_value)
            {
                let finfo = &**finfo as *const pg_sys::FmgrInfo as *mut pg_sys::FmgrInfo;
                let value = pg_sys::FunctionCall3Coll(finfo, pg_sys::InvalidOid, o, n, l);
                out.push((col.local, value));
            }
        }
    }
    Computed(out)
}

impl Computed {
    /// Whether writing the computed values changes the local row.
    ///
    /// # Safety
    /// `local` is the deformed local row the values were computed against.
    pub unsafe fn changes(&self, map: &LocalMap, local: *mut pg_sys::TupleTableSlot) -> bool {
        self.0.iter().any(|(att, value)| {
            let col = map.delta.iter().find(|c| c.local == *att).expect("computed from these columns");
            // SAFETY: per the contract, a non-NULL local value (a computed
            // value needs one) of the column's type.
            unsafe {
                !datum_is_equal(*value, *(*local).tts_values.add(*att), col.typbyval, i32::from(col.typlen))
            }
        })
    }

    /// Puts the computed values into a virtual slot of the table.
    ///
    /// # Safety
    /// `slot` is a slot of the target table whose values may be set.
    pub unsafe fn write_into(&self, slot: *mut pg_sys::TupleTableSlot) {
        for (att, value) in &self.0 {
            // SAFETY: per the contract; attributes come from the table's map.
            unsafe {
                *(*slot).tts_values.add(*att) = *value;
                *(*slot).tts_isnull.add(*att) = false;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `update` (which changes the local row found) in a subtransaction
/// whose rows keep the found version's commit timestamp and origin.
///
/// # Safety
/// In the apply transaction; `update` changes rows of the target table only.
pub unsafe fn keeping_version(found: &Found, update: impl FnOnce()) {
    let Some(ts) = found.version.commit_ts else {
        // No commit-timestamp data to keep (the row predates
        // track_commit_timestamp): nothing is lost by a plain update.
        update();
        return;
    };
    let overridden = subxact::run(|| {
        update();
        // SAFETY: reads this backend's current (sub)transaction id.
        let subxid = unsafe { pg_sys::GetCurrentTransactionIdIfAny() };
        if subxid != pg_sys::InvalidTransactionId {
            core_patches::set_subxact_commit_ts(subxid, ts, found.roident);
        }
    });
    if let Err(error) = overridden {
        error.rethrow();
    }
}
