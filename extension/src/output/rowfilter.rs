//! Row filters in the output plugin (behaviour.md §15): the stored filter
//! trees of a relation's subscribed sets, prepared for execution once per
//! relation cache entry, and evaluated against each change's row.
//!
//! Everything lives in the entry's memory context and goes with it. A
//! filter is checked when it is added (`filters::row_filter`): only the
//! table's own columns and built-in immutable functions, so evaluating it
//! in the walsender, under the decoding snapshot, reads no other table.

use std::ffi::CString;

use pgrx::prelude::*;

/// The prepared filters of one relation.
pub struct RowFilter {
    econtext: *mut pg_sys::ExprContext,
    slot: *mut pg_sys::TupleTableSlot,
    states: Vec<*mut pg_sys::ExprState>,
    /// Varlena columns the filters read (attnum), checked for values
    /// stored out of line that the walsender cannot read.
    varlena_columns: Vec<i16>,
}

/// What a row filter says about a row.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Skip,
}

impl RowFilter {
    /// Prepares `trees` (none: no filter) for `relation` in `cxt`.
    ///
    /// # Safety
    /// `relation` is open; `cxt` outlives the returned filter.
    pub unsafe fn build(
        relation: pg_sys::Relation,
        trees: &[String],
        cxt: pg_sys::MemoryContext,
    ) -> Option<RowFilter> {
        if trees.is_empty() {
            return None;
        }
        // SAFETY: executor state, slot and expression states are made in
        // `cxt`, which the caller keeps as long as the filter.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(cxt);
            let estate = pg_sys::CreateExecutorState();
            let econtext = pg_sys::CreateExprContext(estate);
            let desc = pg_sys::CreateTupleDescCopy((*relation).rd_att);
            let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple);
            let mut states = Vec::with_capacity(trees.len());
            let mut read: *mut pg_sys::Bitmapset = std::ptr::null_mut();
            for tree in trees {
                let text = CString::new(tree.as_str()).expect("a stored expression tree has no NUL");
                let expr = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Expr;
                pg_sys::pull_varattnos(expr as *mut pg_sys::Node, 1, &mut read);
                states.push(pg_sys::ExecPrepareExpr(expr, estate));
            }
            let whole_row = pg_sys::bms_is_member(-pg_sys::FirstLowInvalidHeapAttributeNumber, read);
            let varlena_columns = pgrx::PgTupleDesc::from_pg_unchecked(desc)
                .iter()
                .enumerate()
                .map(|(i, att)| ((i + 1) as i16, att.attlen))
                .filter(|(attnum, attlen)| {
                    let offset = i32::from(*attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber;
                    *attlen == -1 && (whole_row || pg_sys::bms_is_member(offset, read))
                })
                .map(|(attnum, _)| attnum)
                .collect();
            pg_sys::MemoryContextSwitchTo(old);
            Some(RowFilter { econtext, slot, states, varlena_columns })
        }
    }

    /// Whether a change with this row is sent: every filter must be true
    /// (NULL is not). A row whose filtered columns are stored out of line
    /// and unchanged by an UPDATE (the walsender cannot read them) is sent.
    ///
    /// # Safety
    /// `tuple` is a decoded row of the relation the filter was built for.
    pub unsafe fn verdict(&self, tuple: pg_sys::HeapTuple) -> Verdict {
        // SAFETY: the slot's descriptor is a copy of the relation's; the
        // expression states belong to this filter; per-tuple memory is
        // reset after each row.
        unsafe {
            let desc = (*self.slot).tts_tupleDescriptor;
            for attnum in &self.varlena_columns {
                let mut isnull = false;
                let datum = pg_sys::heap_getattr(tuple, i32::from(*attnum), desc, &mut isnull);
                if !isnull {
                    let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
                    if pgrx::varlena::varatt_is_1b_e(ptr)
                        && pgrx::varlena::vartag_external(ptr) == pg_sys::vartag_external::VARTAG_ONDISK as u8
                    {
                        return Verdict::Send;
                    }
                }
            }
            pg_sys::ExecStoreHeapTuple(tuple, self.slot, false);
            (*self.econtext).ecxt_scantuple = self.slot;
            let mut verdict = Verdict::Send;
            for state in &self.states {
                let mut isnull = false;
                let value = pg_sys::ExecEvalExprSwitchContext(*state, self.econtext, &mut isnull);
                if isnull || !bool::from_datum(value, false).unwrap_or(false) {
                    verdict = Verdict::Skip;
                    break;
                }
            }
            pg_sys::ExecClearTuple(self.slot);
            pg_sys::MemoryContextReset((*self.econtext).ecxt_per_tuple_memory);
            verdict
        }
    }
}
