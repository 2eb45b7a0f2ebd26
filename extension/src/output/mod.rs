//! The `spock_output` logical decoding output plugin (sql-api.md §3).
//!
//! It is loaded by walsenders as library `spock_output`, a link to this
//! library installed next to it, so the callbacks below are found by the
//! name `_PG_output_plugin_init`. It sends only committed transactions,
//! only the tables and actions of the subscribed replication sets, and only
//! changes that originated on this node (unless the subscriber forwards
//! origins), in the protocol of `spock_core::protocol` (docs/protocol.md).

mod relcache;
mod rowfilter;

use std::ffi::{CStr, c_char};
use std::rc::Rc;

use pgrx::pg_guard;
use pgrx::prelude::*;
use spock_core::protocol::{self, Encode, Message, OldRow, Tuple, Value};

use crate::catalog::decoding::{ACTION_DELETE, ACTION_INSERT, ACTION_TRUNCATE, ACTION_UPDATE};
use crate::stats::{self, Counter};

/// Per-decoding-session state, owned by the logical decoding context.
struct State {
    /// Shared so that a callback can hold the list while writing.
    replication_sets: std::rc::Rc<[String]>,
    /// Transactions applied from other nodes are sent too (behaviour.md §5.3).
    forward_all: bool,
    /// The subscriber's node id, when it forwards: its own transactions
    /// are never sent back to it.
    subscriber_node: u32,
    /// Replication origin → the node it stands for and whether its
    /// progress is a position on that node; `None`: not spock's.
    origins: crate::catalog::origin::ByOrigin<pg_sys::RepOriginId, Option<(u32, bool)>>,
    /// The current transaction's origin node and position there, when it
    /// is forwarded (0, 0 for this node's own).
    origin_node: u32,
    origin_lsn: u64,
    /// The current transaction came from the subscriber: nothing of it is sent.
    loops_back: bool,
    /// Whether the current transaction's Begin has been written.
    begin_sent: bool,
    /// Whether the current transaction turned repair mode on: its data
    /// changes from the marker on are not sent.
    repair: bool,
    /// Whether a CopyData message is being filled (prepared, not yet sent).
    write_open: bool,
    /// Reused encoding buffer.
    encoded: Vec<u8>,
    /// Scratch memory for one change, reset after each.
    scratch: pg_sys::MemoryContext,
    /// The oid of schema `spock` once seen (0: not looked up or absent).
    spock_nsp: u32,
}

fn state<'a>(ctx: *mut pg_sys::LogicalDecodingContext) -> &'a mut State {
    // SAFETY: set by the startup callback to a leaked Box, freed at shutdown.
    unsafe { &mut *((*ctx).output_plugin_private as *mut State) }
}

/// The entry point PostgreSQL looks up in an output plugin library.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _PG_output_plugin_init(cb: *mut pg_sys::OutputPluginCallbacks) {
    // SAFETY: PostgreSQL passes the callback table to fill in.
    unsafe {
        (*cb).startup_cb = Some(startup);
        (*cb).begin_cb = Some(begin);
        (*cb).change_cb = Some(change);
        (*cb).truncate_cb = Some(truncate);
        (*cb).commit_cb = Some(commit);
        (*cb).message_cb = Some(message);
        (*cb).filter_by_origin_cb = Some(filter_by_origin);
        (*cb).shutdown_cb = Some(shutdown);
    }
}

fn option_value(def: *mut pg_sys::DefElem) -> String {
    // SAFETY: a DefElem from the START_REPLICATION option list.
    unsafe {
        if (*def).arg.is_null() {
            return String::new();
        }
        let s = pg_sys::defGetString(def);
        CStr::from_ptr(s).to_string_lossy().into_owned()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup(
    ctx: *mut pg_sys::LogicalDecodingContext,
    options: *mut pg_sys::OutputPluginOptions,
    is_init: bool,
) {
    // SAFETY: the decoding context and options of this startup call; the
    // option list holds DefElems.
    unsafe {
        (*options).output_type = pg_sys::OutputPluginOutputType::OUTPUT_PLUGIN_BINARY_OUTPUT;
        (*options).receive_rewrites = false;
        let scratch = pg_sys::AllocSetContextCreateExtended(
            (*ctx).context,
            c"spock_output change".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let mut state = State {
            replication_sets: std::rc::Rc::from(Vec::new()),
            forward_all: false,
            subscriber_node: 0,
            origins: crate::catalog::origin::ByOrigin::new(),
            origin_node: 0,
            origin_lsn: 0,
            loops_back: false,
            begin_sent: false,
            repair: false,
            write_open: false,
            encoded: Vec::with_capacity(256),
            scratch,
            spock_nsp: 0,
        };
        if !is_init {
            let mut proto_version: Option<u32> = None;
            let list = (*ctx).output_plugin_options;
            let n = if list.is_null() { 0 } else { (*list).length as usize };
            for i in 0..n {
                let def = (*(*list).elements.add(i)).ptr_value as *mut pg_sys::DefElem;
                let name = CStr::from_ptr((*def).defname).to_string_lossy().into_owned();
                let value = option_value(def);
                match name.as_str() {
                    "proto_version" => proto_version = value.parse().ok(),
                    "replication_sets" => {
                        let sets = protocol::decode_name_list(&value).unwrap_or_else(|e| {
                            error!("spock_output: the option replication_sets is malformed: {e}")
                        });
                        state.replication_sets = sets.into();
                    }
                    "forward_origins" => {
                        let origins = protocol::decode_name_list(&value).unwrap_or_else(|e| {
                            error!("spock_output: the option forward_origins is malformed: {e}")
                        });
                        state.forward_all = origins.iter().any(|o| o == "all");
                    }
                    "subscriber_node" => {
                        state.subscriber_node = value.parse().unwrap_or_else(|_| {
                            error!("spock_output: the option subscriber_node is not a node id: \"{value}\"")
                        })
                    }
                    "binary" => {}
                    other => error!("spock_output does not know the option \"{other}\""),
                }
            }
            let version =
                proto_version.unwrap_or_else(|| error!("spock_output needs the option proto_version"));
            if !(protocol::MIN_PROTO_VERSION..=protocol::MAX_PROTO_VERSION).contains(&version) {
                error!(
                    "spock_output speaks protocol versions {}..{}, the subscriber asked for {version}",
                    protocol::MIN_PROTO_VERSION,
                    protocol::MAX_PROTO_VERSION
                );
            }
            relcache::init_session();
        }
        (*ctx).output_plugin_private = Box::into_raw(Box::new(state)) as *mut std::ffi::c_void;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shutdown(ctx: *mut pg_sys::LogicalDecodingContext) {
    // SAFETY: `output_plugin_private` is the Box leaked by `startup`, freed once here.
    unsafe {
        let p = (*ctx).output_plugin_private as *mut State;
        if !p.is_null() {
            drop(Box::from_raw(p));
            (*ctx).output_plugin_private = std::ptr::null_mut();
        }
    }
}

/// How many bytes of messages are gathered into one CopyData message before
/// it is sent. Batching the messages of a transaction saves the provider a
/// write and the subscriber a read for every row.
const BATCH_BYTES: i32 = 64 * 1024;

/// Appends one message to the CopyData message being filled (starting one
/// if needed), and sends it when `flush` is set or it has grown large. Every
/// transaction ends with a flush (its Commit), so nothing waits in the
/// buffer between transactions.
fn write(ctx: *mut pg_sys::LogicalDecodingContext, msg: &Message, flush: bool) {
    let st = state(ctx);
    // SAFETY: the decoding context's output buffer, within a callback.
    unsafe {
        if !st.write_open {
            pg_sys::OutputPluginPrepareWrite(ctx, true);
            st.write_open = true;
        }
        st.encoded.clear();
        msg.encode(&mut st.encoded);
        pg_sys::appendBinaryStringInfo((*ctx).out, st.encoded.as_ptr().cast(), st.encoded.len() as i32);
        if flush || (*(*ctx).out).len >= BATCH_BYTES {
            pg_sys::OutputPluginWrite(ctx, true);
            st.write_open = false;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
) {
    // Begin is written lazily, with the first change that is sent.
    let st = state(ctx);
    st.begin_sent = false;
    st.repair = false;
    st.origin_node = 0;
    st.origin_lsn = 0;
    st.loops_back = false;
    // SAFETY: the transaction being decoded.
    let (origin_id, origin_lsn) = unsafe { ((*txn).origin_id, (*txn).origin_lsn) };
    if origin_id == pg_sys::InvalidRepOriginId as pg_sys::RepOriginId {
        return;
    }
    // Only a forwarding subscriber gets here (`filter_by_origin`). An origin
    // that is not spock's, or one without a position on its node (a
    // table-sync worker's), is sent as this node's own: the subscriber
    // then applies it under its subscription's origin, exactly once.
    if let Some((node, positioned)) = forwarded_origin(st, origin_id) {
        if node == st.subscriber_node {
            st.loops_back = true;
        } else if positioned {
            st.origin_node = node;
            st.origin_lsn = origin_lsn;
        }
    }
}

/// The node behind a replication origin, cached for the session.
fn forwarded_origin(st: &mut State, origin_id: pg_sys::RepOriginId) -> Option<(u32, bool)> {
    st.origins.get_or_insert_with(origin_id, || crate::catalog::decoding::origin_node(origin_id))
}

unsafe fn commit_time(txn: *mut pg_sys::ReorderBufferTXN) -> i64 {
    // SAFETY: the transaction being decoded.
    unsafe { (*txn).xact_time.commit_time }
}

/// Writes the transaction's Begin if it has not been written yet.
fn ensure_begin(ctx: *mut pg_sys::LogicalDecodingContext, txn: *mut pg_sys::ReorderBufferTXN) {
    let st = state(ctx);
    if st.begin_sent {
        return;
    }
    st.begin_sent = true;
    // SAFETY: the transaction being decoded.
    let msg = unsafe {
        Message::Begin {
            final_lsn: (*txn).final_lsn,
            commit_time: commit_time(txn),
            xid: (*txn).xid.into_inner(),
            origin_node: st.origin_node,
            origin_lsn: st.origin_lsn,
        }
    };
    write(ctx, &msg, false);
}

#[pg_guard]
unsafe extern "C-unwind" fn commit(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    commit_lsn: pg_sys::XLogRecPtr,
) {
    let st = state(ctx);
    if !st.begin_sent {
        return;
    }
    st.begin_sent = false;
    // SAFETY: the transaction being decoded.
    let msg =
        unsafe { Message::Commit { commit_lsn, end_lsn: (*txn).end_lsn, commit_time: commit_time(txn) } };
    write(ctx, &msg, true);
    // Rows sent, under subscription 0 (sql-api.md §4.8).
    stats::flush();
}

#[pg_guard]
unsafe extern "C-unwind" fn filter_by_origin(
    ctx: *mut pg_sys::LogicalDecodingContext,
    origin_id: pg_sys::RepOriginId,
) -> bool {
    // Only changes made on this node are sent, unless the subscriber forwards.
    origin_id != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId && !state(ctx).forward_all
}

#[pg_guard]
unsafe extern "C-unwind" fn message(
    ctx: *mut pg_sys::LogicalDecodingContext,
    _txn: *mut pg_sys::ReorderBufferTXN,
    _message_lsn: pg_sys::XLogRecPtr,
    transactional: bool,
    prefix: *const c_char,
    message_size: pg_sys::Size,
    message_body: *const c_char,
) {
    // SAFETY: the prefix of a decoded logical message.
    let prefix = unsafe { CStr::from_ptr(prefix) };
    if prefix.to_bytes() == protocol::REPAIR_MODE_PREFIX.as_bytes() {
        // Decoded in order with the transaction's changes.
        if transactional {
            // SAFETY: the message's bytes.
            let body = unsafe { std::slice::from_raw_parts(message_body as *const u8, message_size) };
            state(ctx).repair = body == b"on";
        }
        return;
    }
    // A transactional event goes with its transaction; a non-transactional
    // one is always this node's own.
    if prefix.to_bytes() != protocol::SYNC_EVENT_PREFIX.as_bytes() || (transactional && state(ctx).loops_back)
    {
        return;
    }
    // The event's position is the end of its record (what sync_event()
    // returned); for a transactional one, the end of the transaction.
    // SAFETY: the decoding context's reader is positioned on this record.
    let lsn = unsafe {
        if transactional && !_txn.is_null() { (*_txn).end_lsn } else { (*(*ctx).reader).EndRecPtr }
    };
    if transactional {
        ensure_begin(ctx, _txn);
    }
    // A non-transactional event stands alone and goes out at once.
    write(ctx, &Message::SyncEvent { lsn }, !transactional);
}

/// The heap tuple of a decoded change's old or new row.
#[cfg(any(feature = "pg15", feature = "pg16"))]
unsafe fn tuple_of(buf: *mut pg_sys::ReorderBufferTupleBuf) -> pg_sys::HeapTuple {
    // SAFETY: a non-NULL tuple buffer of the change being decoded.
    if buf.is_null() { std::ptr::null_mut() } else { unsafe { &mut (*buf).tuple } }
}
#[cfg(any(feature = "pg17", feature = "pg18"))]
unsafe fn tuple_of(tuple: pg_sys::HeapTuple) -> pg_sys::HeapTuple {
    tuple
}

/// The values of the sent columns of a tuple, as text.
fn values_of(relation: pg_sys::Relation, tuple: pg_sys::HeapTuple, entry: &relcache::Entry) -> Tuple {
    let mut values = Vec::with_capacity(entry.columns.len());
    for (col, out) in entry.columns.iter().zip(entry.output.iter()) {
        let mut isnull = false;
        // SAFETY: reads an attribute of a decoded tuple of this relation.
        let datum = unsafe { pg_sys::heap_getattr(tuple, i32::from(col.0), (*relation).rd_att, &mut isnull) };
        if isnull {
            values.push(Value::Null);
            continue;
        }
        if out.is_varlena {
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            // SAFETY: a varlena datum of the tuple.
            let ondisk = unsafe {
                pgrx::varlena::varatt_is_1b_e(ptr)
                    && pgrx::varlena::vartag_external(ptr) == pg_sys::vartag_external::VARTAG_ONDISK as u8
            };
            if ondisk {
                values.push(Value::Unchanged);
                continue;
            }
        }
        // SAFETY: calls the type's output function, cached for the relation.
        let text = unsafe {
            let s = pg_sys::OutputFunctionCall(out.as_ptr(), datum);
            CStr::from_ptr(s).to_bytes().to_vec()
        };
        values.push(Value::Text(text));
    }
    Tuple(values)
}

#[pg_guard]
unsafe extern "C-unwind" fn change(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    relation: pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    // SAFETY: the change, relation and transaction of this callback; the
    // scratch context belongs to the decoding session.
    unsafe {
        let action = (*change).action;
        let wanted = match action {
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_INSERT => ACTION_INSERT,
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_UPDATE => ACTION_UPDATE,
            pg_sys::ReorderBufferChangeType::REORDER_BUFFER_CHANGE_DELETE => ACTION_DELETE,
            _ => return,
        };
        let (scratch, replication_sets) = {
            let st = state(ctx);
            (st.scratch, st.replication_sets.clone())
        };
        if state(ctx).loops_back {
            return;
        }
        let old_cxt = pg_sys::MemoryContextSwitchTo(scratch);
        if wanted == ACTION_INSERT && is_queue(ctx, relation) {
            queue_row(ctx, txn, relation, tuple_of((*change).data.tp.newtuple), &replication_sets);
            pg_sys::MemoryContextSwitchTo(old_cxt);
            pg_sys::MemoryContextReset(scratch);
            return;
        }
        if state(ctx).repair {
            // Repair mode: the node's own fix, not for the subscribers.
            pg_sys::MemoryContextSwitchTo(old_cxt);
            return;
        }
        // The entry is ours (an Rc) for the whole change, whatever the
        // calls below do to the cache.
        let (entry, schema_sent) = relcache::entry(relation, &replication_sets);
        let tp = (*change).data.tp;
        let old = tuple_of(tp.oldtuple);
        let new = tuple_of(tp.newtuple);
        // Row filters (behaviour.md §15): the new row of an INSERT or
        // UPDATE, the old key row of a DELETE.
        let passes = || match &entry.filter {
            None => true,
            Some(filter) => {
                let row = if wanted == ACTION_DELETE { old } else { new };
                row.is_null() || filter.verdict(row) == rowfilter::Verdict::Send
            }
        };
        if entry.actions & wanted != 0 && passes() {
            ensure_begin(ctx, txn);
            if !schema_sent {
                send_relation(ctx, relation, &entry);
            }
            let relid = (*relation).rd_id.to_u32();
            let full = (*(*relation).rd_rel).relreplident as u8 == pg_sys::REPLICA_IDENTITY_FULL;
            let msg = match wanted {
                ACTION_INSERT => Some(Message::Insert { relid, new: values_of(relation, new, &entry) }),
                ACTION_UPDATE => {
                    let old = (!old.is_null()).then(|| {
                        let t = values_of(relation, old, &entry);
                        if full { OldRow::Full(t) } else { OldRow::Key(t) }
                    });
                    Some(Message::Update { relid, old, new: values_of(relation, new, &entry) })
                }
                _ if old.is_null() => None, // a DELETE without a replica identity: nothing to send
                _ => {
                    let t = values_of(relation, old, &entry);
                    Some(Message::Delete { relid, old: if full { OldRow::Full(t) } else { OldRow::Key(t) } })
                }
            };
            if let Some(msg) = msg {
                write(ctx, &msg, false);
                let counter = match wanted {
                    ACTION_INSERT => Counter::Insert,
                    ACTION_UPDATE => Counter::Update,
                    _ => Counter::Delete,
                };
                stats::count((*relation).rd_id, counter);
            }
        }
        pg_sys::MemoryContextSwitchTo(old_cxt);
        pg_sys::MemoryContextReset(scratch);
    }
}

/// Whether `relation` is `spock.queue`, whose rows are messages for the
/// subscribers rather than replicated data.
fn is_queue(ctx: *mut pg_sys::LogicalDecodingContext, relation: pg_sys::Relation) -> bool {
    let st = state(ctx);
    // SAFETY: the relation being decoded; a syscache lookup of a schema name
    // with the historic snapshot.
    unsafe {
        let form = (*relation).rd_rel;
        if st.spock_nsp == 0 {
            st.spock_nsp = pg_sys::get_namespace_oid(c"spock".as_ptr(), true).to_u32();
        }
        (*form).relnamespace.to_u32() == st.spock_nsp
            && CStr::from_ptr((*form).relname.data.as_ptr()).to_bytes() == b"queue"
    }
}

/// Sends a `spock.queue` row to a subscriber whose sets intersect the row's
/// (or to every subscriber when the row names none).
fn queue_row(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    relation: pg_sys::Relation,
    tuple: pg_sys::HeapTuple,
    replication_sets: &[String],
) {
    if tuple.is_null() {
        return;
    }
    // SAFETY: reads the attributes of a decoded tuple of spock.queue
    // (queued_at, role, replication_sets, message_type, message); the
    // values are copied out before the scratch context is reset.
    let row = unsafe {
        let desc = (*relation).rd_att;
        let attr = |n: i32| {
            let mut isnull = false;
            let d = pg_sys::heap_getattr(tuple, n, desc, &mut isnull);
            (d, isnull)
        };
        let (queued_at, _) = attr(1);
        let (role, _) = attr(2);
        let (sets, sets_null) = attr(3);
        let (message_type, _) = attr(4);
        let (message, _) = attr(5);
        protocol::QueueRow {
            queued_at: queued_at.value() as i64,
            role: CStr::from_ptr(role.cast_mut_ptr::<c_char>()).to_string_lossy().into_owned(),
            replication_sets: if sets_null { None } else { Vec::<String>::from_datum(sets, false) },
            message_type: message_type.value() as u8,
            message: String::from_datum(message, false).unwrap_or_default(),
        }
    };
    if let Some(sets) = &row.replication_sets
        && !sets.iter().any(|s| replication_sets.contains(s))
    {
        return;
    }
    ensure_begin(ctx, txn);
    write(ctx, &Message::Queue(row), false);
}

/// Sends the Relation message of this version of the entry.
fn send_relation(
    ctx: *mut pg_sys::LogicalDecodingContext,
    relation: pg_sys::Relation,
    entry: &Rc<relcache::Entry>,
) {
    // SAFETY: the relation being decoded.
    let (nspname, relname) = unsafe {
        let form = (*relation).rd_rel;
        let nsp = pg_sys::get_namespace_name((*form).relnamespace);
        (
            if nsp.is_null() { String::new() } else { CStr::from_ptr(nsp).to_string_lossy().into_owned() },
            CStr::from_ptr((*form).relname.data.as_ptr()).to_string_lossy().into_owned(),
        )
    };
    let columns = entry.columns.iter().map(|(_, c)| c.clone()).collect();
    write(ctx, &Message::Relation { relid: entry.relid, nspname, relname, columns }, false);
    relcache::mark_schema_sent(entry);
}

#[pg_guard]
unsafe extern "C-unwind" fn truncate(
    ctx: *mut pg_sys::LogicalDecodingContext,
    txn: *mut pg_sys::ReorderBufferTXN,
    nrelations: i32,
    relations: *mut pg_sys::Relation,
    change: *mut pg_sys::ReorderBufferChange,
) {
    if state(ctx).repair || state(ctx).loops_back {
        return;
    }
    // SAFETY: the relations and change of this callback.
    unsafe {
        let replication_sets = state(ctx).replication_sets.clone();
        let mut members = Vec::new();
        for i in 0..nrelations as usize {
            let relation = *relations.add(i);
            let (entry, schema_sent) = relcache::entry(relation, &replication_sets);
            if entry.actions & ACTION_TRUNCATE != 0 {
                members.push((relation, entry, schema_sent));
            }
        }
        if members.is_empty() {
            return;
        }
        ensure_begin(ctx, txn);
        let mut relids = Vec::with_capacity(members.len());
        for (relation, entry, schema_sent) in &members {
            if !schema_sent {
                send_relation(ctx, *relation, entry);
            }
            relids.push(entry.relid);
        }
        let tr = (*change).data.truncate;
        let mut flags = 0;
        if tr.cascade {
            flags |= protocol::truncate_flags::CASCADE;
        }
        if tr.restart_seqs {
            flags |= protocol::truncate_flags::RESTART_IDENTITY;
        }
        write(ctx, &Message::Truncate { flags, relids }, false);
    }
}
