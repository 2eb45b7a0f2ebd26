//! The relation map of an apply worker: what the provider's Relation
//! messages said about its tables, and how each maps onto a local table
//! (found by schema and name, columns matched by name). A local mapping is
//! dropped when a relation cache invalidation says the local table changed,
//! and rebuilt on its next use.
//!
//! Only ordinary tables outside the system schemas and the `spock` schema
//! are ever mapped (behaviour.md §21): a provider cannot make a subscriber
//! write into a catalog, whatever it names. (A table that is partitioned on
//! this node is refused too, until changes are routed through partitioned
//! tables.) A map is used only under the lock its change needs, taken
//! before the map is trusted, so that a concurrent `ALTER TABLE` cannot
//! leave it stale.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use spock_core::protocol::Column;

use crate::core_patches;
use crate::errors::{raise, raise_hint};
use crate::hooks::column_options;

/// What a Relation message said about a provider table.
pub struct RemoteRel {
    pub nspname: String,
    pub relname: String,
    pub columns: Vec<Column>,
}

impl RemoteRel {
    /// `schema.table`, quoted where needed, for messages.
    pub fn qualified(&self) -> String {
        format!(
            "{}.{}",
            pgrx::spi::quote_identifier(&self.nspname),
            pgrx::spi::quote_identifier(&self.relname)
        )
    }
}

/// How a provider table maps onto the local one.
pub struct LocalMap {
    pub relid: pg_sys::Oid,
    /// The local table's owner: its changes are applied with this role's rights.
    pub owner: pg_sys::Oid,
    /// For each remote column, the local attribute index (0-based).
    pub local_att: Vec<usize>,
    /// Per local attribute: its input function, when a remote column maps to it.
    pub input: Vec<Option<InputFn>>,
    /// Local attributes no remote column fills (they get their defaults on INSERT).
    pub unmapped: Vec<usize>,
    /// The columns applied as deltas (behaviour.md §9); empty on a server
    /// that cannot.
    pub delta: Vec<DeltaColumn>,
    /// Where the input functions keep what they cache; freed with the map.
    cxt: pg_sys::MemoryContext,
}

impl LocalMap {
    /// A remote text value as a datum of local attribute `local`, through
    /// the column type's input function (in the current memory context).
    ///
    /// # Safety
    /// Called inside the apply transaction; `local` is a mapped attribute.
    pub unsafe fn input(&self, local: usize, text: &[u8]) -> pg_sys::Datum {
        let input = self.input[local].as_ref().expect("mapped columns have an input function");
        let cstr = CString::new(text).unwrap_or_else(|_| {
            raise(PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION, "a text value contains a NUL byte")
        });
        let finfo = &*input.finfo as *const pg_sys::FmgrInfo as *mut pg_sys::FmgrInfo;
        // SAFETY: the column type's input function, looked up for this map.
        unsafe {
            pg_sys::InputFunctionCall(
                finfo,
                cstr.as_ptr() as *mut std::ffi::c_char,
                input.ioparam,
                input.typmod,
            )
        }
    }
}

impl Drop for LocalMap {
    fn drop(&mut self) {
        // SAFETY: the context belongs to this map alone, and maps are dropped
        // only outside calls into the input functions that use it.
        unsafe { pg_sys::MemoryContextDelete(self.cxt) };
    }
}

/// A column type's input function, looked up once.
pub struct InputFn {
    pub finfo: Box<pg_sys::FmgrInfo>,
    pub ioparam: pg_sys::Oid,
    pub typmod: i32,
}

/// A column applied as a delta: its value is `f(remote_old, remote_new,
/// local_current)`.
pub struct DeltaColumn {
    /// Index of the remote column.
    pub remote: usize,
    /// The local attribute (0-based).
    pub local: usize,
    pub name: String,
    pub type_oid: pg_sys::Oid,
    pub typlen: i16,
    pub typbyval: bool,
    /// The function, or its name when no fitting function exists: applying
    /// an update to the column is then an error (42883).
    pub func: Result<Box<pg_sys::FmgrInfo>, String>,
}

thread_local! {
    /// Local tables already warned about delta columns this server cannot apply.
    static WARNED: RefCell<std::collections::HashSet<u32>> = RefCell::new(Default::default());
    /// Local tables invalidated since the map was last used (`None` inside:
    /// every table).
    static INVALID: RefCell<Vec<Option<u32>>> = const { RefCell::new(Vec::new()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn local_invalidated(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    INVALID.with(|i| i.borrow_mut().push((relid != pg_sys::InvalidOid).then(|| relid.to_u32())));
}

/// The map of one stream.
#[derive(Default)]
pub struct RelMap {
    remote: HashMap<u32, RemoteRel>,
    local: HashMap<u32, LocalMap>,
    /// The provider's name when its server lacks core patch 020 (its
    /// updates carry no old values); cleared once the WARNING is logged.
    old_values_missing: Option<String>,
}

static mut CALLBACK_REGISTERED: bool = false;

impl RelMap {
    pub fn new() -> RelMap {
        // SAFETY: a flag of this single-threaded worker; the relcache
        // callback is registered once per process.
        unsafe {
            if !CALLBACK_REGISTERED {
                pg_sys::CacheRegisterRelcacheCallback(Some(local_invalidated), pg_sys::Datum::from(0usize));
                CALLBACK_REGISTERED = true;
            }
        }
        RelMap::default()
    }

    /// Whether the provider's server sends old values of delta columns.
    pub fn provider_sends_old_values(&mut self, provider: &str, yes: bool) {
        self.old_values_missing = (!yes).then(|| provider.to_string());
    }

    /// A Relation message: remember the provider's description (a changed
    /// description replaces the mapping built from the old one).
    pub fn relation(&mut self, relid: u32, nspname: String, relname: String, columns: Vec<Column>) {
        self.local.remove(&relid);
        self.remote.insert(relid, RemoteRel { nspname, relname, columns });
    }

    /// Drops local mappings whose tables changed since they were built.
    fn forget_invalidated(&mut self) {
        let invalid = INVALID.with(|i| std::mem::take(&mut *i.borrow_mut()));
        if invalid.contains(&None) {
            self.local.clear();
        } else if !invalid.is_empty() {
            self.local.retain(|_, m| !invalid.contains(&Some(m.relid.to_u32())));
        }
    }

    /// The provider's description of a relation, if it sent one.
    pub fn described(&self, relid: u32) -> Option<&RemoteRel> {
        self.remote.get(&relid)
    }

    /// The provider's description of a relation.
    pub fn remote(&self, relid: u32) -> &RemoteRel {
        self.remote.get(&relid).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_PROTOCOL_VIOLATION,
                format!("the provider sent a change for relation {relid} without describing it first"),
            )
        })
    }

    /// The local mapping and the provider's description of a relation,
    /// built if needed, with the local table locked for writing (until the
    /// transaction ends). Taking the lock processes the invalidations that
    /// arrived meanwhile, so a map is checked again after it.
    pub fn resolve(&mut self, relid: u32) -> (&LocalMap, &RemoteRel) {
        self.forget_invalidated();
        if let Some(map) = self.local.get(&relid) {
            // Locks the relation id for this transaction (reading the
            // stream while a local session holds it); a table dropped
            // meanwhile is found missing below.
            super::wait::lock_table(map.relid);
            self.forget_invalidated();
        }
        if !self.local.contains_key(&relid) {
            let map = build_map(self.remote(relid));
            if !map.delta.is_empty()
                && let Some(provider) = self.old_values_missing.take()
            {
                pgrx::warning!(
                    "spock: provider \"{provider}\" lacks core patch {}, so its updates carry no old values: \
                     delta columns such as \"{}\" of {} take its new values as they are",
                    spock_core::core_patches::COLUMN_OPTIONS.label(),
                    map.delta[0].name,
                    self.remote(relid).qualified()
                );
            }
            self.local.insert(relid, map);
        }
        (&self.local[&relid], &self.remote[&relid])
    }
}

/// Refuses a local relation spock must never write into (behaviour.md §21).
///
/// # Safety
/// `relation` is open.
unsafe fn check_target(relation: pg_sys::Relation, rr: &RemoteRel) {
    // SAFETY: the caller keeps the relation open.
    let (relkind, namespace) =
        unsafe { ((*(*relation).rd_rel).relkind as u8, (*(*relation).rd_rel).relnamespace) };
    // SAFETY: catalog lookups of an existing namespace.
    let (system, nspname) = unsafe {
        let name = pg_sys::get_namespace_name(namespace);
        let nspname =
            if name.is_null() { String::new() } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
        (pg_sys::IsCatalogNamespace(namespace) || pg_sys::IsToastNamespace(namespace), nspname)
    };
    let reserved =
        system || nspname.starts_with("pg_") || nspname == "information_schema" || nspname == "spock";
    if reserved {
        raise_hint(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "the provider sent a change for {}, in schema {nspname}, which spock never writes into",
                rr.qualified()
            ),
            "Only tables outside pg_catalog, information_schema, pg_* schemas and spock are replicated; \
             remove the table from the provider's replication sets.",
        );
    }
    if relkind == pg_sys::RELKIND_PARTITIONED_TABLE {
        raise_hint(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "the provider sent a change for {}, which is a partitioned table on this node; changes are \
                 applied to tables and partitions of the same name only",
                rr.qualified()
            ),
            "Partition the table on this node the same way as on the provider, or not at all.",
        );
    }
    if relkind != pg_sys::RELKIND_RELATION {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "the provider sent a change for {}, which is not a table on this node; only tables receive \
                 replicated changes",
                rr.qualified()
            ),
        );
    }
}

/// Looks the provider table up locally by schema and name, checks that it
/// may receive changes, and maps its columns by name.
fn build_map(rr: &RemoteRel) -> LocalMap {
    let nsp = CString::new(rr.nspname.as_str()).expect("no NUL in names");
    let rel = CString::new(rr.relname.as_str()).expect("no NUL in names");
    // SAFETY: catalog lookups and a relation opened and closed inside the
    // apply transaction.
    unsafe {
        let nspoid = pg_sys::get_namespace_oid(nsp.as_ptr(), true);
        let relid = if nspoid == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(rel.as_ptr(), nspoid)
        };
        if relid == pg_sys::InvalidOid {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("table {} does not exist on this node; create it here too", rr.qualified()),
            );
        }
        // The lock the change needs, kept until the transaction ends.
        super::wait::lock_table(relid);
        let relation = pg_sys::relation_open(relid, pg_sys::RowExclusiveLock as i32);
        check_target(relation, rr);
        let owner = (*(*relation).rd_rel).relowner;
        let desc = pgrx::PgTupleDesc::from_pg_unchecked((*relation).rd_att);
        let natts = desc.len();
        let cxt = pg_sys::AllocSetContextCreateExtended(
            pg_sys::TopMemoryContext,
            c"spock apply relation".as_ptr(),
            0,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let mut local_att = Vec::with_capacity(rr.columns.len());
        let mut input: Vec<Option<InputFn>> = (0..natts).map(|_| None).collect();
        for col in &rr.columns {
            let found = desc.iter().position(|a| {
                !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == col.name.as_bytes()
            });
            let Some(i) = found else {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "column \"{}\" of table {} does not exist on this node",
                        col.name,
                        rr.qualified()
                    ),
                );
            };
            let att = desc.get(i).expect("index from position");
            if att.attgenerated != 0 {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "column \"{}\" of table {} is generated on this node but not on the provider",
                        col.name,
                        rr.qualified()
                    ),
                );
            }
            let mut func = pg_sys::InvalidOid;
            let mut ioparam = pg_sys::InvalidOid;
            pg_sys::getTypeInputInfo(att.atttypid, &mut func, &mut ioparam);
            let mut finfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info_cxt(func, &mut *finfo, cxt);
            input[i] = Some(InputFn { finfo, ioparam, typmod: att.atttypmod });
            local_att.push(i);
        }
        // Columns no remote column fills get their defaults on INSERT, but
        // not generated columns: the executor computes those itself.
        let unmapped = (0..natts)
            .filter(|i| {
                let att = desc.get(*i).expect("in range");
                input[*i].is_none() && !att.attisdropped && att.attgenerated == 0
            })
            .collect();
        let delta = delta_columns(relid, &desc, rr, &local_att, cxt);
        pg_sys::relation_close(relation, pg_sys::NoLock as i32);
        LocalMap { relid, owner, local_att, input, unmapped, delta, cxt }
    }
}

/// The mapped columns with a delta-apply function (column options read
/// now: a change of them invalidates the relation and so the map). On a
/// server without core patches 020 and 040 they apply as ordinary columns,
/// with one WARNING per table and worker.
///
/// # Safety
/// `desc` is the open relation's descriptor; `cxt` outlives the map.
unsafe fn delta_columns(
    relid: pg_sys::Oid,
    desc: &pgrx::PgTupleDesc,
    rr: &RemoteRel,
    local_att: &[usize],
    cxt: pg_sys::MemoryContext,
) -> Vec<DeltaColumn> {
    let mut out = Vec::new();
    for (remote, &local) in local_att.iter().enumerate() {
        let options = column_options::read(relid, (local + 1) as i16);
        let Some(function) = options.delta_function() else { continue };
        let att = desc.get(local).expect("mapped attributes exist");
        // SAFETY: a NUL-terminated NameData.
        let name = unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_string_lossy().into_owned();
        if !core_patches::delta_apply_available() {
            let first = WARNED.with(|w| w.borrow_mut().insert(relid.to_u32()));
            if first {
                pgrx::warning!(
                    "spock: column \"{name}\" of {} is applied as an ordinary column, not as a delta: this \
                     server lacks {}",
                    rr.qualified(),
                    core_patches::missing_summary()
                );
            }
            return Vec::new();
        }
        let func = match column_options::resolve_function(function, att.atttypid) {
            Some(oid) => {
                // SAFETY: an all-zero FmgrInfo filled by fmgr_info_cxt, which
                // keeps what it caches in the map's context.
                unsafe {
                    let mut finfo: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                    pg_sys::fmgr_info_cxt(oid, &mut *finfo, cxt);
                    Ok(finfo)
                }
            }
            None => Err(function.to_string()),
        };
        out.push(DeltaColumn {
            remote,
            local,
            name,
            type_oid: att.atttypid,
            typlen: att.attlen,
            typbyval: att.attbyval,
            func,
        });
    }
    out
}
