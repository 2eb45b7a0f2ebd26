//! Catalog reads for the output plugin. A walsender decodes with a historic
//! snapshot (the catalogs as they were when the change was made), in which
//! SPI cannot run, so these read the user catalog tables with plain system
//! table scans.

use std::ffi::{CStr, CString};

use pgrx::prelude::*;

/// Bits of the actions a relation's sets carry.
pub const ACTION_INSERT: u8 = 1;
pub const ACTION_UPDATE: u8 = 2;
pub const ACTION_DELETE: u8 = 4;
pub const ACTION_TRUNCATE: u8 = 8;

/// Scans one of spock's catalog tables with the current catalog snapshot
/// (historic while decoding), calling `f` with each row's values.
fn scan(relname: &str, mut f: impl FnMut(&[pg_sys::Datum], &[bool])) {
    let relname = CString::new(relname).expect("no NUL");
    // SAFETY: catalog access inside the decoding transaction; the tuple
    // descriptor and the values live until the scan ends.
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

/// What the subscribed sets of the local node send of one relation.
#[derive(Default)]
pub struct Membership {
    /// Bit set of `ACTION_*` (0: the relation is not sent).
    pub actions: u8,
    /// The union of the sets' column lists; `None` when a set sends every
    /// column.
    pub columns: Option<Vec<String>>,
    /// The row filters (expression trees) of the sets that have one; a
    /// change is sent only if it passes all of them.
    pub filters: Vec<String>,
}

/// What the subscribed sets of the local node send of `relid`. Errors when
/// the database is not a node or a subscribed set does not exist.
pub fn membership(relid: u32, replication_sets: &[String]) -> Membership {
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
    // spock.replication_set_table: set_id, set_reloid, set_att_list, set_row_filter
    let mut out = Membership::default();
    let mut lists = Vec::new();
    scan("replication_set_table", |v, n| {
        if oid_at(v, n, 1) != relid {
            return;
        }
        let set = oid_at(v, n, 0);
        let Some((_, a)) = sets.iter().find(|(id, _)| *id == set) else { return };
        out.actions |= a;
        // SAFETY: a text[] datum of the row being scanned.
        lists.push(unsafe { Vec::<String>::from_datum(v[2], n[2]) });
        // SAFETY: a pg_node_tree datum (text's representation) of the row.
        if let Some(tree) = unsafe { String::from_datum(v[3], n[3]) } {
            out.filters.push(tree);
        }
    });
    if out.actions == 0 {
        return Membership::default();
    }
    out.columns = spock_core::filters::union_of_lists(lists);
    out
}

/// The node a replication origin of this database stands for, and whether
/// its progress is a position on that node that grows in this node's
/// commit order (a forwarding origin, or the origin of this node's only
/// subscription from that node; not a table-sync worker's, nor one of
/// several subscriptions from the same node, whose commits interleave):
/// for a provider forwarding transactions it applied (behaviour.md §5.3).
/// `None` for an origin that is not spock's.
pub fn origin_node(roident: pg_sys::RepOriginId) -> Option<(u32, bool)> {
    let name = super::origin::name_of(roident)?;
    if let Some(node) = spock_core::naming::node_of_forward_origin(&name) {
        return Some((node, true));
    }
    let [own, of_sync] = super::origin::slot_of_origin(&name);
    // spock.subscription: sub_id, sub_name, sub_origin, ..., sub_slot_name (8th)
    let (mut subscription, mut sync_worker) = (None, None);
    let mut per_node: Vec<u32> = Vec::new();
    scan("subscription", |v, n| {
        let slot = name_at(v, n, 7);
        let node = oid_at(v, n, 2);
        per_node.push(node);
        if slot == own {
            subscription = Some(node);
        } else if slot == of_sync {
            sync_worker = Some(node);
        }
    });
    let only_one = |node: u32| per_node.iter().filter(|n| **n == node).count() == 1;
    subscription.map(|node| (node, only_one(node))).or(sync_worker.map(|node| (node, false)))
}
