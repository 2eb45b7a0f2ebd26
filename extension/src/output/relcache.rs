//! The output plugin's relation cache: for each relation, which actions the
//! subscribed sets carry for it (read from spock's catalogs with the
//! decoding session's historic snapshot), the columns it sends and their
//! output functions, and whether its Relation message went out.
//!
//! A relation cache invalidation (which set membership changes and ALTER
//! TABLE issue, decoded in stream order) only marks entries stale; they are
//! dropped and rebuilt at their next use. Entries are handed out as `Rc`, so
//! an entry a callback is still using stays alive even when an invalidation
//! processed in the middle of that callback (by a catalog lookup or a type's
//! output function) makes the cache drop it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::{PgTupleDesc, pg_guard};
use spock_core::protocol::{Column, att_flags};

use super::rowfilter::RowFilter;
use crate::catalog::decoding;
use crate::filters::identity_columns;
use crate::hooks::column_options;

/// A column's output function.
pub struct OutputFn {
    finfo: Box<pg_sys::FmgrInfo>,
    pub is_varlena: bool,
}

impl OutputFn {
    pub fn as_ptr(&self) -> *mut pg_sys::FmgrInfo {
        &*self.finfo as *const pg_sys::FmgrInfo as *mut pg_sys::FmgrInfo
    }
}

/// What the plugin knows about one relation, built from one version of its
/// definition and of the sets.
pub struct Entry {
    pub relid: u32,
    /// Bit set of `decoding::ACTION_*` the subscribed sets carry for it
    /// (0: not sent).
    pub actions: u8,
    /// (attnum, column) of the columns sent.
    pub columns: Vec<(i16, Column)>,
    pub output: Vec<OutputFn>,
    /// The sets' row filters, if any set has one.
    pub filter: Option<RowFilter>,
    /// Where the output functions keep what they cache; freed with the entry.
    cxt: pg_sys::MemoryContext,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.cxt.is_null() {
            // SAFETY: the context belongs to this entry alone; the last `Rc`
            // of an entry goes away only outside output function calls.
            unsafe { pg_sys::MemoryContextDelete(self.cxt) };
        }
    }
}

struct Cached {
    entry: Rc<Entry>,
    /// Whether this version's Relation message went out in this session.
    schema_sent: bool,
}

/// Relations invalidated since the cache was last used.
#[derive(Default)]
struct Stale {
    all: bool,
    relids: Vec<u32>,
}

thread_local! {
    static CACHE: RefCell<HashMap<u32, Cached>> = RefCell::new(HashMap::new());
    static STALE: RefCell<Stale> = RefCell::new(Stale::default());
}

static mut CALLBACK_REGISTERED: bool = false;

/// The relcache invalidation callback: only notes what went stale (it may
/// run in the middle of any catalog access, while entries are in use).
#[pg_guard]
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    STALE.with(|s| {
        let mut stale = s.borrow_mut();
        if relid == pg_sys::InvalidOid {
            stale.all = true;
        } else {
            stale.relids.push(relid.to_u32());
        }
    });
}

/// Starts a decoding session: empty cache, invalidation callback registered
/// (once per process; it cannot be unregistered).
pub fn init_session() {
    CACHE.with(|c| c.borrow_mut().clear());
    STALE.with(|s| *s.borrow_mut() = Stale::default());
    // SAFETY: a process-local flag read and written only by this
    // single-threaded walsender; the callback is registered once.
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0usize));
            CALLBACK_REGISTERED = true;
        }
    }
}

/// Drops the entries that went stale.
fn forget_stale() {
    let stale = STALE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if !stale.all && stale.relids.is_empty() {
        return;
    }
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if stale.all {
            cache.clear();
        } else {
            for relid in stale.relids {
                cache.remove(&relid);
            }
        }
    });
}

/// The current entry of a relation, built on first use or after it went
/// stale, and whether its Relation message went out already.
pub fn entry(relation: pg_sys::Relation, replication_sets: &[String]) -> (Rc<Entry>, bool) {
    forget_stale();
    // SAFETY: the relation given to a decoding callback.
    let relid = unsafe { (*relation).rd_id.to_u32() };
    if let Some(found) = CACHE.with(|c| c.borrow().get(&relid).map(|e| (e.entry.clone(), e.schema_sent))) {
        return found;
    }
    // Built without holding the cache: the catalog reads below may process
    // invalidations.
    let entry = Rc::new(build(relation, relid, replication_sets));
    CACHE.with(|c| c.borrow_mut().insert(relid, Cached { entry: entry.clone(), schema_sent: false }));
    (entry, false)
}

/// Notes that the Relation message of this version of the entry went out.
pub fn mark_schema_sent(entry: &Rc<Entry>) {
    CACHE.with(|c| {
        if let Some(cached) = c.borrow_mut().get_mut(&entry.relid)
            && Rc::ptr_eq(&cached.entry, entry)
        {
            cached.schema_sent = true;
        }
    });
}

fn build(relation: pg_sys::Relation, relid: u32, replication_sets: &[String]) -> Entry {
    let membership = decoding::membership(relid, replication_sets);
    let actions = membership.actions;
    if actions == 0 {
        return Entry {
            relid,
            actions,
            columns: Vec::new(),
            output: Vec::new(),
            filter: None,
            cxt: std::ptr::null_mut(),
        };
    }
    // SAFETY: a new memory context under TopMemoryContext, deleted by the
    // entry's Drop.
    let cxt = unsafe {
        pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"spock_output relation".as_ptr(),
            0,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        )
    };
    let columns = columns_of(
        relation,
        &identity_columns(relation),
        &log_old_value_columns(relation),
        membership.columns.as_deref(),
    );
    let output = columns
        .iter()
        .map(|(_, c)| {
            let mut func = pg_sys::InvalidOid;
            let mut is_varlena = false;
            // SAFETY: looks up the type's output function; what it caches
            // goes into the entry's context.
            let finfo = unsafe {
                pg_sys::getTypeOutputInfo(pg_sys::Oid::from(c.type_oid), &mut func, &mut is_varlena);
                let mut finfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                pg_sys::fmgr_info_cxt(func, &mut *finfo, cxt);
                finfo
            };
            OutputFn { finfo, is_varlena }
        })
        .collect();
    // SAFETY: the relation being decoded is open; the filter lives in the
    // entry's context.
    let filter = unsafe { RowFilter::build(relation, &membership.filters, cxt) };
    Entry { relid, actions, columns, output, filter, cxt }
}

/// Attribute numbers of the columns flagged `log_old_value` (patch 020).
fn log_old_value_columns(relation: pg_sys::Relation) -> Vec<i16> {
    // SAFETY: the relation being decoded is open.
    let (relid, natts) = unsafe { ((*relation).rd_id, (*(*relation).rd_att).natts as i16) };
    (1..=natts).filter(|attnum| column_options::read(relid, *attnum).log_old_value).collect()
}

/// The columns sent for a relation: not dropped, not generated, in the
/// sets' column lists (`listed`; all when `None`) or part of the replica
/// identity key; flagged as key or `log_old_value`.
fn columns_of(
    relation: pg_sys::Relation,
    key: &[i16],
    logold: &[i16],
    listed: Option<&[String]>,
) -> Vec<(i16, Column)> {
    // SAFETY: the relation's descriptor, valid for the callback.
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*relation).rd_att) };
    let mut out = Vec::new();
    for (i, att) in desc.iter().enumerate() {
        if att.attisdropped || att.attgenerated != 0 {
            continue;
        }
        let attnum = (i + 1) as i16;
        let mut flags = 0;
        if key.contains(&attnum) {
            flags |= att_flags::KEY;
        }
        if logold.contains(&attnum) {
            flags |= att_flags::LOG_OLD_VALUE;
        }
        // SAFETY: attname is a NUL-terminated NameData.
        let name = unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_string_lossy().into_owned();
        if flags & att_flags::KEY == 0 && listed.is_some_and(|l| !l.contains(&name)) {
            continue;
        }
        out.push((attnum, Column { flags, name, type_oid: att.atttypid.to_u32(), typmod: att.atttypmod }));
    }
    out
}
