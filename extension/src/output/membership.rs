//! Which actions of which tables the output plugin sends: the replication
//! set membership of each relation, read from spock's catalogs with the
//! decoding session's historic snapshot and cached per relation until a
//! relation cache invalidation (which membership changes issue, so they take
//! effect in stream order).

use std::collections::HashMap;
use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::{FromDatum, pg_guard};
use spock_core::protocol::Column;

pub const ACTION_INSERT: u8 = 1;
pub const ACTION_UPDATE: u8 = 2;
pub const ACTION_DELETE: u8 = 4;
pub const ACTION_TRUNCATE: u8 = 8;

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

/// What the plugin knows about one relation in this session.
pub struct Entry {
    /// Bit set of ACTION_* the subscribed sets carry for it (0: not sent).
    pub actions: u8,
    /// Whether its Relation message was sent in this session.
    pub schema_sent: bool,
    /// (attnum, column) of the columns sent.
    pub columns: Vec<(i16, Column)>,
    pub output: Vec<OutputFn>,
}

static mut CACHE: Option<HashMap<u32, Entry>> = None;
static mut CALLBACK_REGISTERED: bool = false;

#[allow(static_mut_refs)]
fn cache() -> &'static mut HashMap<u32, Entry> {
    // SAFETY: a walsender decodes in one thread.
    unsafe { CACHE.get_or_insert_with(HashMap::new) }
}

#[pg_guard]
unsafe extern "C-unwind" fn invalidate(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid {
        cache().clear();
    } else {
        cache().remove(&relid.to_u32());
    }
}

/// Starts a decoding session: empty cache, invalidation callback registered
/// (once per process; it cannot be unregistered).
pub fn init_session() {
    cache().clear();
    // SAFETY: process-local flag; registration happens once.
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::CacheRegisterRelcacheCallback(Some(invalidate), pg_sys::Datum::from(0usize));
            CALLBACK_REGISTERED = true;
        }
    }
}

/// Scans one of spock's catalog tables with the current catalog snapshot
/// (historic while decoding), calling `f` with each row's values.
fn scan(relname: &str, mut f: impl FnMut(&[pg_sys::Datum], &[bool])) {
    let relname = CString::new(relname).expect("no NUL");
    // SAFETY: catalog access inside the decoding transaction.
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"spock".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return;
        }
        let relid = pg_sys::get_relname_relid(relname.as_ptr(), nsp);
        if relid == pg_sys::InvalidOid {
            return;
        }
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let desc = (*rel).rd_att;
        let natts = (*desc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![false; natts];
        let scan = pg_sys::systable_beginscan(
            rel,
            pg_sys::InvalidOid,
            false,
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        loop {
            let tup = pg_sys::systable_getnext(scan);
            if tup.is_null() {
                break;
            }
            pg_sys::heap_deform_tuple(tup, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            f(&values, &nulls);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    }
}

fn oid_at(values: &[pg_sys::Datum], nulls: &[bool], i: usize) -> u32 {
    if nulls[i] { 0 } else { values[i].value() as u32 }
}

fn bool_at(values: &[pg_sys::Datum], nulls: &[bool], i: usize) -> bool {
    !nulls[i] && values[i].value() != 0
}

fn name_at(values: &[pg_sys::Datum], nulls: &[bool], i: usize) -> String {
    if nulls[i] {
        return String::new();
    }
    // SAFETY: a `name` datum points to a NUL-terminated NameData.
    unsafe { CStr::from_ptr(values[i].cast_mut_ptr::<std::ffi::c_char>()) }.to_string_lossy().into_owned()
}

/// The actions the subscribed sets of the local node carry for `relid`.
fn actions_for(relid: u32, replication_sets: &[String]) -> u8 {
    let mut local_node = 0u32;
    scan("local_node", |v, n| local_node = oid_at(v, n, 0));
    if local_node == 0 {
        error!("this database is not a spock node; run spock.node_create() on the provider");
    }
    // spock.replication_set: set_id, set_nodeid, set_name, insert, update, delete, truncate
    let mut sets: Vec<(u32, u8)> = Vec::new();
    let mut found: Vec<String> = Vec::new();
    scan("replication_set", |v, n| {
        if oid_at(v, n, 1) != local_node {
            return;
        }
        let name = name_at(v, n, 2);
        if !replication_sets.contains(&name) {
            return;
        }
        let mut actions = 0;
        for (i, bit) in [(3, ACTION_INSERT), (4, ACTION_UPDATE), (5, ACTION_DELETE), (6, ACTION_TRUNCATE)] {
            if bool_at(v, n, i) {
                actions |= bit;
            }
        }
        sets.push((oid_at(v, n, 0), actions));
        found.push(name);
    });
    if let Some(missing) = replication_sets.iter().find(|s| !found.contains(s)) {
        error!(
            "replication set \"{missing}\" does not exist on this node; remove it from the subscription with spock.sub_remove_repset()"
        );
    }
    // spock.replication_set_table: set_id, set_reloid, ...
    let mut actions = 0;
    scan("replication_set_table", |v, n| {
        if oid_at(v, n, 1) != relid {
            return;
        }
        let set = oid_at(v, n, 0);
        if let Some((_, a)) = sets.iter().find(|(id, _)| *id == set) {
            actions |= a;
        }
    });
    actions
}

/// Attribute numbers of the replica identity key.
fn identity_columns(relation: pg_sys::Relation) -> Vec<i16> {
    let mut out = Vec::new();
    // SAFETY: reads the relcache's identity-key bitmap (a copy).
    unsafe {
        let bms = pg_sys::RelationGetIndexAttrBitmap(
            relation,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_IDENTITY_KEY,
        );
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(bms, member);
            if member < 0 {
                break;
            }
            out.push((member + pg_sys::FirstLowInvalidHeapAttributeNumber) as i16);
        }
        pg_sys::bms_free(bms);
    }
    out
}

/// Attribute numbers of the columns flagged `log_old_value` (patch 020),
/// read from the text of `pg_attribute.attoptions`, never from patched structs.
fn log_old_value_columns(relation: pg_sys::Relation) -> Vec<i16> {
    let mut out = Vec::new();
    // SAFETY: syscache lookups of the relation's attributes.
    unsafe {
        let relid = (*relation).rd_id;
        let natts = (*(*relation).rd_att).natts;
        for attnum in 1..=natts as i16 {
            let tup = pg_sys::SearchSysCache2(
                pg_sys::SysCacheIdentifier::ATTNUM as i32,
                pg_sys::Datum::from(relid),
                pg_sys::Datum::from(attnum),
            );
            if tup.is_null() {
                continue;
            }
            let mut isnull = false;
            let datum = pg_sys::SysCacheGetAttr(
                pg_sys::SysCacheIdentifier::ATTNUM as i32,
                tup,
                pg_sys::Anum_pg_attribute_attoptions as i16,
                &mut isnull,
            );
            if !isnull {
                let options = Vec::<String>::from_polymorphic_datum(datum, false, pg_sys::TEXTARRAYOID)
                    .unwrap_or_default();
                if options.iter().any(|o| {
                    o.split_once('=').is_some_and(|(k, v)| {
                        k == "log_old_value"
                            && matches!(
                                v.to_ascii_lowercase().as_str(),
                                "true" | "on" | "yes" | "1" | "t" | "y"
                            )
                    })
                }) {
                    out.push(attnum);
                }
            }
            pg_sys::ReleaseSysCache(tup);
        }
    }
    out
}

/// The cache entry of a relation, built on first use.
pub fn entry<'a>(
    relation: pg_sys::Relation,
    replication_sets: &[String],
    columns_of: fn(pg_sys::Relation, &[i16], &[i16]) -> Vec<(i16, Column)>,
) -> &'a mut Entry {
    // SAFETY: the relation given to a decoding callback.
    let relid = unsafe { (*relation).rd_id.to_u32() };
    let cache = cache();
    if !cache.contains_key(&relid) {
        let actions = actions_for(relid, replication_sets);
        let (columns, output) = if actions == 0 {
            (Vec::new(), Vec::new())
        } else {
            let columns = columns_of(relation, &identity_columns(relation), &log_old_value_columns(relation));
            let output = columns
                .iter()
                .map(|(_, c)| {
                    let mut func = pg_sys::InvalidOid;
                    let mut is_varlena = false;
                    // SAFETY: looks up and caches the type's output function in long-lived memory.
                    let finfo = unsafe {
                        pg_sys::getTypeOutputInfo(pg_sys::Oid::from(c.type_oid), &mut func, &mut is_varlena);
                        let mut finfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                        pg_sys::fmgr_info_cxt(func, &mut *finfo, pg_sys::TopMemoryContext);
                        finfo
                    };
                    OutputFn { finfo, is_varlena }
                })
                .collect();
            (columns, output)
        };
        cache.insert(relid, Entry { actions, schema_sent: false, columns, output });
    }
    cache.get_mut(&relid).expect("just inserted")
}
