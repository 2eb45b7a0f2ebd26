//! Automatic DDL replication (behaviour.md §10.3-§10.6), seen from the one
//! ProcessUtility hook: before a statement runs, what it is (DDL to queue,
//! a statement that stays local, a guarded DROP); after it succeeded, its
//! text queued in `spock.queue` and the tables it made or changed placed in
//! replication sets.
//!
//! Statements run by `spock.replicate_ddl` and by apply workers are marked
//! with [`executing`]: they are never queued again, and an apply worker
//! executing automatically replicated DDL places tables by its own
//! `spock.include_ddl_repset`.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::prelude::*;
use spock_core::ddl::{self as rules, MessageType, Placement, Statement, TableState};
use spock_core::protocol::QueueRow;

use crate::catalog::{self, node, queue, repset};
use crate::errors::raise_hint;
use crate::guc;

/// Who is running the statements of the current utility call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// A client session (automatic DDL as its settings say).
    Client,
    /// `spock.replicate_ddl` running its command locally.
    ReplicateDdl,
    /// An apply worker executing a queued message of this type.
    Apply(MessageType),
}

thread_local! {
    static EXECUTOR: Cell<Executor> = const { Cell::new(Executor::Client) };
    /// Repair mode is on in this session's transaction.
    static REPAIR: Cell<bool> = const { Cell::new(false) };
}

fn executor() -> Executor {
    EXECUTOR.with(|e| e.get())
}

/// `spock.repair_mode()`: automatic DDL replication stays off until
/// `enabled` is false again or the transaction ends, however it ends (a
/// session setting could be reverted earlier, by a function's SET clause).
pub fn set_repair_mode(enabled: bool) {
    if enabled && !REPAIR.with(|r| r.get()) {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || REPAIR.with(|r| r.set(false)));
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, || REPAIR.with(|r| r.set(false)));
    }
    REPAIR.with(|r| r.set(enabled));
}

/// Runs `f` with statements marked as executed by `who` (on error too, the
/// mark is taken off as the error unwinds).
pub fn executing<R>(who: Executor, f: impl FnOnce() -> R) -> R {
    struct Restore(Executor);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXECUTOR.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXECUTOR.with(|e| e.replace(who)));
    f()
}

thread_local! {
    /// How deep utility statements are nested (1: a client's statement).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The schemas of the objects utility statements touched, as their
    /// event triggers reported them (`note_schemas`), with the nesting
    /// depth of the statement they belong to.
    static TOUCHED_SCHEMAS: std::cell::RefCell<Vec<(u32, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One utility statement being executed, one level deeper than the
/// statement running it (if any); the level is left when this is dropped,
/// also when the statement fails.
pub struct Level(u32);

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(self.0 - 1));
    }
}

/// Enters a utility statement (the ProcessUtility hook, before [`before`]).
pub fn enter_statement() -> Level {
    let level = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    Level(level)
}

/// Notes schemas a DDL statement touched (from its event triggers, which
/// fire inside the statement, at its depth).
pub fn note_schemas(schemas: impl IntoIterator<Item = String>) {
    let depth = DEPTH.with(|d| d.get());
    TOUCHED_SCHEMAS.with(|t| {
        let mut t = t.borrow_mut();
        for s in schemas {
            if !t.iter().any(|(d, n)| *d == depth && *n == s) {
                t.push((depth, s));
            }
        }
    });
}

/// Takes what the statements at `depth` and deeper noted: the schemas the
/// statement at `depth` touched (deeper ones are statements it ran, judged
/// on their own).
fn take_schemas(depth: u32) -> Vec<String> {
    TOUCHED_SCHEMAS.with(|t| {
        let mut t = t.borrow_mut();
        let mine = t.iter().filter(|(d, _)| *d == depth).map(|(_, s)| s.clone()).collect();
        t.retain(|(d, _)| *d < depth);
        mine
    })
}

/// What to do once the statement has run.
pub struct After {
    /// The statement's text, when it is to be queued.
    queue: Option<String>,
    /// Tables whose set membership is re-evaluated, with what the statement
    /// did to them.
    place: Vec<(pg_sys::Oid, Statement)>,
    /// Relations named by a CREATE, resolved once the statement ran.
    created: Vec<*mut pg_sys::RangeVar>,
    /// ALTER INDEX … ATTACH PARTITION: the index whose parent table is re-evaluated.
    attached_index: Option<*mut pg_sys::RangeVar>,
    /// Reported after the statement was queued.
    warning: Option<&'static str>,
}

/// Looks at a statement before it runs. Raises the errors of §10.6
/// (`deny_all_ddl`, dropping a member table); reports statements that stay
/// local; returns what to do after the statement succeeded, if anything.
///
/// # Safety
/// `pstmt` and `query_string` are the hook's arguments.
pub unsafe fn before(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
) -> Option<After> {
    // SAFETY: the statement about to run.
    let stmt = unsafe { (*pstmt).utilityStmt };
    if stmt.is_null() {
        return None;
    }
    let who = executor();
    // Whoever runs it (also an apply worker): a statement that would leave
    // a stored row filter or column list wrong is refused.
    // SAFETY: the statement about to run.
    unsafe { guard_filters(stmt) };
    // SAFETY: classifies a parse tree without catalog access.
    let is_ddl = unsafe { pg_sys::GetCommandLogLevel(stmt) } == pg_sys::LogStmtLevel::LOGSTMT_DDL;
    // SAFETY: reads the statement's node tags and fields.
    let local_reason = unsafe { stays_local(stmt) };
    if !is_ddl && local_reason.is_none() {
        return None;
    }
    if let Executor::Apply(message_type) = who {
        // Replicated DDL: neither denied nor queued again; after automatic
        // DDL, tables are placed by this node's own include_ddl_repset.
        return (is_ddl && message_type == MessageType::Ddl && guc::INCLUDE_DDL_REPSET.get())
            // SAFETY: the statement about to run.
            .then(|| unsafe { placement_targets(stmt) });
    }
    if is_ddl && guc::DENY_ALL_DDL.get() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "DDL is not allowed on this node: spock.deny_all_ddl is on",
            "A superuser can set spock.deny_all_ddl = off for the session.",
        );
    }
    // Repair mode (sql-api.md §4.6): nothing queued, no set membership.
    if who != Executor::Client || !guc::ENABLE_DDL_REPLICATION.get() || REPAIR.with(|r| r.get()) {
        // SAFETY: the statement about to run.
        unsafe { refuse_dropping_members(stmt) };
        return None;
    }
    // SAFETY: reads a server global.
    if unsafe { pg_sys::creating_extension } {
        return None;
    }
    let top_level = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    let in_function = matches!(
        context,
        pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY
            | pg_sys::ProcessUtilityContext::PROCESS_UTILITY_QUERY_NONATOMIC
    );
    if !(top_level || (in_function && guc::ALLOW_DDL_FROM_FUNCTIONS.get())) {
        return None;
    }
    if let Some(reason) = local_reason {
        report(PgLogLevel::WARNING, &format!("spock: this statement is not replicated ({reason})"));
        return None;
    }
    // SAFETY: the hook's statement and its query string.
    let text = unsafe { statement_text(pstmt, query_string) };
    // Notes left at this depth by earlier statements are not this one's.
    take_schemas(DEPTH.with(|d| d.get()));
    let mut after = if guc::INCLUDE_DDL_REPSET.get() {
        // SAFETY: the statement about to run.
        unsafe { placement_targets(stmt) }
    } else {
        After::empty()
    };
    after.queue = Some(text);
    // SAFETY: reads the statement's node tag.
    if unsafe { is_tag(stmt, pg_sys::NodeTag::T_CreateTableAsStmt) } {
        after.warning = Some(
            "CREATE TABLE AS and SELECT INTO are re-run by each subscriber on its own data: the result may differ between nodes",
        );
    }
    Some(after)
}

impl After {
    fn empty() -> After {
        After { queue: None, place: Vec::new(), created: Vec::new(), attached_index: None, warning: None }
    }

    /// After the statement succeeded: queue it, then place its tables.
    pub fn run(self) {
        if !spock_installed() {
            return;
        }
        let has_node =
            catalog::with_catalog_owner_rights(|| Spi::connect(|client| node::local_node(client).is_some()));
        if !has_node {
            return;
        }
        let touched = take_schemas(DEPTH.with(|d| d.get()));
        let local_schema = if self.queue.is_some() && !touched.is_empty() {
            catalog::with_catalog_owner_rights(|| catalog::reserved::keeps_ddl_local(&touched))
        } else {
            None
        };
        if let Some(schema) = &local_schema {
            report(
                PgLogLevel::WARNING,
                &format!(
                    "spock: this statement is not replicated (it changes objects in schema \"{schema}\", reserved \
                     with replicate_ddl = false)"
                ),
            );
        }
        if let Some(text) = self.queue.as_ref().filter(|_| local_schema.is_none()) {
            let role = current_role();
            let search_path = current_search_path();
            let message =
                serde_json::to_string(&rules::queued_sql(&search_path, text)).expect("a string encodes");
            let row = QueueRow {
                queued_at: 0,
                role,
                replication_sets: Some(rules::AUTOMATIC_DDL_SETS.iter().map(|s| s.to_string()).collect()),
                message_type: MessageType::Ddl.code(),
                message,
            };
            catalog::with_catalog_owner_rights(|| {
                Spi::connect_mut(|client| queue::insert(client, &row, None))
            });
            report(PgLogLevel::INFO, "spock: DDL statement queued for replication");
            if let Some(w) = self.warning {
                report(PgLogLevel::WARNING, &format!("spock: {w}"));
            }
        }
        // A statement kept local places nothing (§10.5 places the tables of
        // queued statements): its tables do not exist on the subscribers.
        if local_schema.is_some() {
            return;
        }
        let mut place = self.place;
        for rv in self.created {
            // SAFETY: a RangeVar of the statement that just ran; looked up
            // without a lock (the statement holds one).
            let relid = unsafe { relid_of(rv) };
            if relid != pg_sys::InvalidOid {
                place.push((relid, Statement::Create));
            }
        }
        if let Some(rv) = self.attached_index {
            // SAFETY: as above, then the index's table.
            let index = unsafe { relid_of(rv) };
            if index != pg_sys::InvalidOid {
                // SAFETY: looks up the table of an existing index.
                let table = unsafe { pg_sys::IndexGetRelation(index, true) };
                if table != pg_sys::InvalidOid {
                    place.push((table, Statement::Create));
                }
            }
        }
        for (relid, stmt) in place {
            for table in with_partitions(relid) {
                place_table(table, stmt);
            }
        }
    }
}

/// Whether extension spock exists in this database.
fn spock_installed() -> bool {
    // SAFETY: a catalog lookup by name, missing_ok.
    unsafe { pg_sys::get_extension_oid(c"spock".as_ptr(), true) != pg_sys::InvalidOid }
}

fn report(level: PgLogLevel, message: &str) {
    let level = if guc::ENABLE_QUIET_MODE.get() { PgLogLevel::LOG } else { level };
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message.to_string(),
        "spock",
    )
    .report(level);
}

/// The current role's name.
pub fn current_role() -> String {
    // SAFETY: the name of the current user id, palloc'd.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// The session's `search_path` as `current_setting` shows it.
pub fn current_search_path() -> String {
    // SAFETY: reads a setting by name; the string is copied at once.
    unsafe {
        let v = pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false);
        if v.is_null() { String::new() } else { CStr::from_ptr(v).to_string_lossy().into_owned() }
    }
}

/// The text of this statement within the query string (which may hold
/// several statements).
unsafe fn statement_text(pstmt: *mut pg_sys::PlannedStmt, query_string: *const std::ffi::c_char) -> String {
    if query_string.is_null() {
        return String::new();
    }
    // SAFETY: the query string of the hook call, NUL-terminated; location
    // and length are byte offsets into it.
    unsafe {
        let all = CStr::from_ptr(query_string).to_bytes();
        let loc = (*pstmt).stmt_location;
        let len = (*pstmt).stmt_len;
        let start = if loc >= 0 { (loc as usize).min(all.len()) } else { 0 };
        let end = if loc >= 0 && len > 0 { (start + len as usize).min(all.len()) } else { all.len() };
        String::from_utf8_lossy(&all[start..end]).trim().to_string()
    }
}

unsafe fn is_tag(node: *mut pg_sys::Node, tag: pg_sys::NodeTag) -> bool {
    // SAFETY: a parse tree node.
    !node.is_null() && unsafe { (*node).type_ } == tag
}

/// The relation a RangeVar names, or InvalidOid.
unsafe fn relid_of(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: looks the name up without taking a lock, missing_ok.
    unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

/// Whether a RangeVar names a temporary relation (by its persistence or by
/// the relation it finds).
unsafe fn names_temp(rv: *mut pg_sys::RangeVar) -> bool {
    if rv.is_null() {
        return false;
    }
    // SAFETY: a RangeVar of the statement; a catalog lookup.
    unsafe {
        if (*rv).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP {
            return true;
        }
        let relid = relid_of(rv);
        relid != pg_sys::InvalidOid && pg_sys::get_rel_persistence(relid) as u8 == pg_sys::RELPERSISTENCE_TEMP
    }
}

/// The elements of a pointer list.
unsafe fn list_ptrs<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a List of pointers.
    unsafe { (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).ptr_value as *mut T).collect() }
}

/// Whether a DefElem list has `name` set to true (or without a value).
unsafe fn option_on(list: *mut pg_sys::List, name: &str) -> bool {
    // SAFETY: a list of DefElem.
    unsafe {
        list_ptrs::<pg_sys::DefElem>(list)
            .into_iter()
            .any(|d| CStr::from_ptr((*d).defname).to_bytes() == name.as_bytes() && pg_sys::defGetBoolean(d))
    }
}

/// Whether a query reads a temporary relation (its range table and those of
/// its subqueries).
unsafe fn reads_temp(query: *mut pg_sys::Query) -> bool {
    if query.is_null() {
        return false;
    }
    // SAFETY: an analysed Query and its range table entries.
    unsafe {
        list_ptrs::<pg_sys::RangeTblEntry>((*query).rtable).into_iter().any(|rte| match (*rte).rtekind {
            pg_sys::RTEKind::RTE_RELATION => {
                pg_sys::get_rel_persistence((*rte).relid) as u8 == pg_sys::RELPERSISTENCE_TEMP
            }
            pg_sys::RTEKind::RTE_SUBQUERY => reads_temp((*rte).subquery),
            _ => false,
        })
    }
}

/// Why a statement stays on this node (behaviour.md §10.4), if it does.
unsafe fn stays_local(stmt: *mut pg_sys::Node) -> Option<&'static str> {
    use pg_sys::NodeTag::*;
    // SAFETY: the statement's node and the fields of its type.
    unsafe {
        match (*stmt).type_ {
            T_CreatedbStmt
            | T_AlterDatabaseStmt
            | T_AlterDatabaseSetStmt
            | T_AlterDatabaseRefreshCollStmt
            | T_DropdbStmt => Some("databases are not replicated"),
            T_RenameStmt
                if (*(stmt as *mut pg_sys::RenameStmt)).renameType == pg_sys::ObjectType::OBJECT_DATABASE =>
            {
                Some("databases are not replicated")
            }
            T_AlterOwnerStmt
                if (*(stmt as *mut pg_sys::AlterOwnerStmt)).objectType
                    == pg_sys::ObjectType::OBJECT_DATABASE =>
            {
                Some("databases are not replicated")
            }
            T_CreateTableSpaceStmt | T_DropTableSpaceStmt => Some("tablespaces are not replicated"),
            T_AlterSystemStmt => Some("ALTER SYSTEM changes this server only"),
            T_CreateSubscriptionStmt | T_AlterSubscriptionStmt | T_DropSubscriptionStmt => {
                Some("subscriptions belong to one node")
            }
            T_VacuumStmt => Some("VACUUM and ANALYZE run on each node by itself"),
            T_AlterExtensionStmt
                if CStr::from_ptr((*(stmt as *mut pg_sys::AlterExtensionStmt)).extname).to_bytes()
                    == b"spock" =>
            {
                // Nodes are upgraded one at a time: a node still on the
                // older library could not run the newer update script.
                Some("each node updates its own spock catalog when it runs the new library")
            }
            T_ClusterStmt => {
                let rel = (*(stmt as *mut pg_sys::ClusterStmt)).relation;
                if rel.is_null() {
                    return Some("CLUSTER without a table");
                }
                let relid = relid_of(rel);
                (relid != pg_sys::InvalidOid
                    && pg_sys::get_rel_relkind(relid) as u8 == pg_sys::RELKIND_PARTITIONED_TABLE)
                    .then_some("CLUSTER on a partitioned table")
            }
            T_IndexStmt => {
                let s = stmt as *mut pg_sys::IndexStmt;
                if (*s).concurrent {
                    Some("CREATE INDEX CONCURRENTLY cannot run inside the transaction that applies it")
                } else if names_temp((*s).relation) {
                    Some("temporary objects are not replicated")
                } else {
                    None
                }
            }
            T_DropStmt => {
                let s = stmt as *mut pg_sys::DropStmt;
                if (*s).concurrent {
                    return Some("DROP INDEX CONCURRENTLY cannot run inside the transaction that applies it");
                }
                let relation_kinds = [
                    pg_sys::ObjectType::OBJECT_TABLE,
                    pg_sys::ObjectType::OBJECT_SEQUENCE,
                    pg_sys::ObjectType::OBJECT_VIEW,
                    pg_sys::ObjectType::OBJECT_INDEX,
                ];
                if relation_kinds.contains(&(*s).removeType)
                    && list_ptrs::<pg_sys::List>((*s).objects)
                        .into_iter()
                        .any(|names| names_temp(pg_sys::makeRangeVarFromNameList(names)))
                {
                    return Some("temporary objects are not replicated");
                }
                None
            }
            T_ReindexStmt if option_on((*(stmt as *mut pg_sys::ReindexStmt)).params, "concurrently") => {
                Some("REINDEX CONCURRENTLY cannot run inside the transaction that applies it")
            }
            T_AlterTableStmt => {
                let s = stmt as *mut pg_sys::AlterTableStmt;
                for cmd in list_ptrs::<pg_sys::AlterTableCmd>((*s).cmds) {
                    if (*cmd).subtype == pg_sys::AlterTableType::AT_DetachPartition
                        && is_tag((*cmd).def, T_PartitionCmd)
                        && (*((*cmd).def as *mut pg_sys::PartitionCmd)).concurrent
                    {
                        return Some(
                            "DETACH PARTITION CONCURRENTLY cannot run inside the transaction that applies it",
                        );
                    }
                }
                names_temp((*s).relation).then_some("temporary objects are not replicated")
            }
            T_CreateStmt => {
                let s = stmt as *mut pg_sys::CreateStmt;
                if names_temp((*s).relation) {
                    return Some("temporary objects are not replicated");
                }
                list_ptrs::<pg_sys::Node>((*s).tableElts)
                    .into_iter()
                    .any(|e| {
                        is_tag(e, T_TableLikeClause)
                            && names_temp((*(e as *mut pg_sys::TableLikeClause)).relation)
                    })
                    .then_some("CREATE TABLE … LIKE a temporary table is not replicated")
            }
            T_CreateSeqStmt => names_temp((*(stmt as *mut pg_sys::CreateSeqStmt)).sequence)
                .then_some("temporary objects are not replicated"),
            T_ViewStmt => names_temp((*(stmt as *mut pg_sys::ViewStmt)).view)
                .then_some("temporary objects are not replicated"),
            T_CreateTableAsStmt => {
                let s = stmt as *mut pg_sys::CreateTableAsStmt;
                let into = (*s).into;
                if !into.is_null() && names_temp((*into).rel) {
                    return Some("temporary objects are not replicated");
                }
                let query = (*s).query;
                if is_tag(query, T_Query) {
                    let q = query as *mut pg_sys::Query;
                    if (*q).commandType == pg_sys::CmdType::CMD_UTILITY
                        && is_tag((*q).utilityStmt, T_ExecuteStmt)
                    {
                        return Some(
                            "CREATE TABLE AS EXECUTE depends on a prepared statement of this session",
                        );
                    }
                    if reads_temp(q) {
                        return Some("CREATE TABLE AS reading a temporary relation is not replicated");
                    }
                }
                None
            }
            T_ExplainStmt => {
                let s = stmt as *mut pg_sys::ExplainStmt;
                let analyze = option_on((*s).options, "analyze");
                let q = (*s).query as *mut pg_sys::Query;
                let explains_ddl = is_tag((*s).query, T_Query)
                    && (*q).commandType == pg_sys::CmdType::CMD_UTILITY
                    && !(*q).utilityStmt.is_null();
                (!analyze && explains_ddl).then_some("EXPLAIN without ANALYZE runs nothing")
            }
            _ => None,
        }
    }
}

/// The tables whose membership a statement may change, and how (the
/// created ones are looked up after the statement ran).
unsafe fn placement_targets(stmt: *mut pg_sys::Node) -> After {
    use pg_sys::NodeTag::*;
    let mut after = After::empty();
    // SAFETY: the statement's node and the fields of its type.
    unsafe {
        match (*stmt).type_ {
            T_CreateStmt => after.created.push((*(stmt as *mut pg_sys::CreateStmt)).relation),
            T_CreateTableAsStmt => {
                let s = stmt as *mut pg_sys::CreateTableAsStmt;
                if (*s).objtype == pg_sys::ObjectType::OBJECT_TABLE && !(*s).into.is_null() {
                    after.created.push((*(*s).into).rel);
                }
            }
            T_CreateSchemaStmt => {
                let s = stmt as *mut pg_sys::CreateSchemaStmt;
                for e in list_ptrs::<pg_sys::Node>((*s).schemaElts) {
                    if is_tag(e, T_CreateStmt) {
                        // A copy naming the schema (the statement's own
                        // tree may be a cached plan's, never written to).
                        let rv = (*(e as *mut pg_sys::CreateStmt)).relation;
                        let schema =
                            if (*rv).schemaname.is_null() { (*s).schemaname } else { (*rv).schemaname };
                        after.created.push(pg_sys::makeRangeVar(schema, (*rv).relname, -1));
                    }
                }
            }
            T_AlterTableStmt => {
                let s = stmt as *mut pg_sys::AlterTableStmt;
                match (*s).objtype {
                    pg_sys::ObjectType::OBJECT_TABLE => {
                        let relid = relid_of((*s).relation);
                        if relid != pg_sys::InvalidOid {
                            after.place.push((relid, Statement::Alter { key_before: has_key(relid) }));
                        }
                    }
                    pg_sys::ObjectType::OBJECT_INDEX => {
                        let attaches = list_ptrs::<pg_sys::AlterTableCmd>((*s).cmds)
                            .into_iter()
                            .any(|c| (*c).subtype == pg_sys::AlterTableType::AT_AttachPartition);
                        if attaches {
                            after.attached_index = Some((*s).relation);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    after
}

/// Whether a table has a replica identity index.
fn has_key(relid: pg_sys::Oid) -> bool {
    // SAFETY: opens the relation through the relcache and closes it.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return false;
        }
        let key = pg_sys::RelationGetReplicaIndex(rel) != pg_sys::InvalidOid;
        pg_sys::RelationClose(rel);
        key
    }
}

/// A table and, for a partitioned table, all its partitions.
fn with_partitions(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    // SAFETY: a syscache read of the relation's kind.
    if unsafe { pg_sys::get_rel_relkind(relid) } as u8 != pg_sys::RELKIND_PARTITIONED_TABLE {
        return vec![relid];
    }
    Spi::connect(|client| {
        client
            .select("SELECT relid FROM pg_catalog.pg_partition_tree($1)", None, &[relid.into()])
            .unwrap_or_else(catalog::spi_failed("read pg_partition_tree"))
            .filter_map(|r| r.get::<pg_sys::Oid>(1).unwrap())
            .collect()
    })
}

/// Puts one table where behaviour.md §10.5 says.
fn place_table(relid: pg_sys::Oid, stmt: Statement) {
    // SAFETY: relcache and syscache reads of an existing relation.
    let (name, mut state) = unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return;
        }
        let form = (*rel).rd_rel;
        let kind = (*form).relkind as u8;
        if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_PARTITIONED_TABLE {
            pg_sys::RelationClose(rel);
            return;
        }
        let nsp = pg_sys::get_namespace_name((*form).relnamespace);
        let schema =
            if nsp.is_null() { String::new() } else { CStr::from_ptr(nsp).to_string_lossy().into_owned() };
        let relname = CStr::from_ptr((*form).relname.data.as_ptr()).to_string_lossy().into_owned();
        let state = TableState {
            permanent: (*form).relpersistence as u8 == pg_sys::RELPERSISTENCE_PERMANENT,
            // `spock` also has a built-in reserved row; this holds even if
            // that row was removed behind the guard's back.
            blocked_schema: schema.starts_with("pg_") || schema == "information_schema" || schema == "spock",
            has_key: pg_sys::RelationGetReplicaIndex(rel) != pg_sys::InvalidOid,
        };
        pg_sys::RelationClose(rel);
        (format!("{}.{}", pgrx::spi::quote_identifier(&schema), pgrx::spi::quote_identifier(&relname)), state)
    };
    // Reserved schemas and extensions (sql-api.md §6.15), the spock
    // schema among them, keep their tables out of every set.
    if !state.blocked_schema
        && catalog::with_catalog_owner_rights(|| catalog::reserved::blocking(relid)).is_some()
    {
        state.blocked_schema = true;
    }
    catalog::with_catalog_owner_rights(|| {
        Spi::connect_mut(|client| {
            let Some(local) = node::local_node(client) else { return };
            let memberships = repset::memberships(client, local.node_id, relid);
            let rule_view: Vec<rules::Membership> = memberships
                .iter()
                .map(|(n, s)| rules::Membership {
                    set_name: n.clone(),
                    updates_or_deletes: s.update || s.delete,
                })
                .collect();
            match rules::placement(stmt, state, &rule_view) {
                Placement::Untouched { notice } => {
                    if let Some(n) = notice {
                        report(PgLogLevel::NOTICE, &format!("spock: {name}: {n}"));
                    }
                }
                Placement::RemoveFromAll => {
                    for (_, set) in &memberships {
                        repset::remove_member(client, set, relid);
                    }
                    if !memberships.is_empty() {
                        pgrx::log!(
                            "spock: {name} removed from all replication sets (not a permanent table of a replicated schema)"
                        );
                    }
                }
                Placement::Only { set: target } => {
                    let Some(set) = repset::find_set(client, local.node_id, target) else { return };
                    for (n, s) in &memberships {
                        if n != target {
                            repset::remove_member(client, s, relid);
                        }
                    }
                    if !memberships.iter().any(|(n, _)| n == target) {
                        repset::add_member(client, &set, relid);
                        pgrx::log!("spock: {name} added to replication set \"{target}\"");
                    }
                }
                Placement::InsertOnly { warn } => {
                    let target = "default_insert_only";
                    let Some(set) = repset::find_set(client, local.node_id, target) else { return };
                    let mut left = Vec::new();
                    for (n, s) in &memberships {
                        if s.update || s.delete {
                            repset::remove_member(client, s, relid);
                            left.push(n.clone());
                        }
                    }
                    if warn {
                        report(
                            PgLogLevel::WARNING,
                            &format!(
                                "spock: {name} has no replica identity index any more: it left replication set(s) {} and replicates inserts only",
                                left.join(", ")
                            ),
                        );
                    }
                    if !memberships.iter().any(|(n, _)| n == target) {
                        repset::add_member(client, &set, relid);
                        pgrx::log!("spock: {name} added to replication set \"{target}\"");
                    }
                }
            }
        })
    });
}

/// Dropping a member table, or a column a row filter reads, without
/// CASCADE while automatic DDL is off (behaviour.md §10.6).
unsafe fn refuse_dropping_members(stmt: *mut pg_sys::Node) {
    // SAFETY: the statement's node.
    unsafe {
        if is_tag(stmt, pg_sys::NodeTag::T_AlterTableStmt) {
            refuse_dropping_filtered_columns(stmt as *mut pg_sys::AlterTableStmt);
            return;
        }
        if !is_tag(stmt, pg_sys::NodeTag::T_DropStmt) {
            return;
        }
        let s = stmt as *mut pg_sys::DropStmt;
        if (*s).removeType != pg_sys::ObjectType::OBJECT_TABLE
            || (*s).behavior == pg_sys::DropBehavior::DROP_CASCADE
        {
            return;
        }
        if !spock_installed() {
            return;
        }
        for names in list_ptrs::<pg_sys::List>((*s).objects) {
            let relid = relid_of(pg_sys::makeRangeVarFromNameList(names));
            if relid == pg_sys::InvalidOid {
                continue;
            }
            let sets = catalog::with_catalog_owner_rights(|| {
                Spi::connect(|client| repset::set_names_of(client, relid))
            });
            if !sets.is_empty() {
                let name = CStr::from_ptr(pg_sys::get_rel_name(relid)).to_string_lossy().into_owned();
                raise_hint(
                    PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("table \"{name}\" is a member of replication set(s) {}", sets.join(", ")),
                    "Remove it with spock.repset_remove_table() first, or use DROP TABLE ... CASCADE, which also removes its memberships.",
                );
            }
        }
    }
}

/// `ALTER TABLE ... DROP COLUMN` (without CASCADE) of a column a member's
/// row filter reads, in the table or (unless ONLY) one of its partitions.
unsafe fn refuse_dropping_filtered_columns(s: *mut pg_sys::AlterTableStmt) {
    // SAFETY: the statement's node and its commands.
    unsafe {
        let drops: Vec<*mut pg_sys::AlterTableCmd> = list_ptrs::<pg_sys::AlterTableCmd>((*s).cmds)
            .into_iter()
            .filter(|c| {
                (**c).subtype == pg_sys::AlterTableType::AT_DropColumn
                    && (**c).behavior != pg_sys::DropBehavior::DROP_CASCADE
            })
            .collect();
        if drops.is_empty() || !spock_installed() {
            return;
        }
        for cmd in drops {
            let column = CStr::from_ptr((*cmd).name).to_string_lossy().into_owned();
            if let Some((table, sets)) = filters_reading((*s).relation, (*cmd).name) {
                raise_hint(
                    PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                    format!(
                        "column \"{column}\" of table \"{table}\" is used by the row filter of replication set(s) {}",
                        sets.join(", ")
                    ),
                    "Remove the table from those sets with spock.repset_remove_table() first, or use DROP COLUMN ... CASCADE, which also removes those memberships.",
                );
            }
        }
    }
}

/// The first table (the one named or, unless ONLY, a partition of it) one
/// of whose memberships has a row filter that reads column `name`, with
/// those sets.
unsafe fn filters_reading(
    rv: *mut pg_sys::RangeVar,
    name: *const std::ffi::c_char,
) -> Option<(String, Vec<String>)> {
    // SAFETY: the statement's RangeVar and a column name; catalog lookups.
    unsafe {
        let relid = relid_of(rv);
        if relid == pg_sys::InvalidOid {
            return None;
        }
        let tables = if (*rv).inh { with_partitions(relid) } else { vec![relid] };
        for table in tables {
            let attnum = pg_sys::get_attnum(table, name);
            if attnum == pg_sys::InvalidAttrNumber as i16 {
                continue;
            }
            let sets = catalog::with_catalog_owner_rights(|| {
                Spi::connect(|client| repset::sets_filtering_on(client, table, attnum))
            });
            if !sets.is_empty() {
                let table = CStr::from_ptr(pg_sys::get_rel_name(table)).to_string_lossy().into_owned();
                return Some((table, sets));
            }
        }
        None
    }
}

/// Statements that would leave a stored row filter or column list wrong:
/// `ALTER COLUMN ... TYPE` of a column a row filter reads (the stored
/// expression names the old type, and every walsender decoding the table
/// would fail), and renaming a column a column list names (lists keep
/// names: the column would silently stop being sent).
unsafe fn guard_filters(stmt: *mut pg_sys::Node) {
    // SAFETY: the statement's node and its fields.
    unsafe {
        if is_tag(stmt, pg_sys::NodeTag::T_AlterTableStmt) {
            let s = stmt as *mut pg_sys::AlterTableStmt;
            for cmd in list_ptrs::<pg_sys::AlterTableCmd>((*s).cmds) {
                if (*cmd).subtype != pg_sys::AlterTableType::AT_AlterColumnType || !spock_installed() {
                    continue;
                }
                let column = CStr::from_ptr((*cmd).name).to_string_lossy().into_owned();
                if let Some((table, sets)) = filters_reading((*s).relation, (*cmd).name) {
                    raise_hint(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        format!(
                            "cannot change the type of column \"{column}\" of table \"{table}\": the row filter of replication set(s) {} reads it",
                            sets.join(", ")
                        ),
                        "Remove the table from those sets with spock.repset_remove_table(), change the type, and add it again with its row filter.",
                    );
                }
            }
        } else if is_tag(stmt, pg_sys::NodeTag::T_RenameStmt) {
            let s = stmt as *mut pg_sys::RenameStmt;
            if (*s).renameType != pg_sys::ObjectType::OBJECT_COLUMN
                || (*s).relation.is_null()
                || !spock_installed()
            {
                return;
            }
            let relid = relid_of((*s).relation);
            if relid == pg_sys::InvalidOid {
                return;
            }
            let column = CStr::from_ptr((*s).subname).to_string_lossy().into_owned();
            let tables = if (*(*s).relation).inh { with_partitions(relid) } else { vec![relid] };
            for table in tables {
                let sets = catalog::with_catalog_owner_rights(|| {
                    Spi::connect(|client| repset::sets_listing_column(client, table, &column))
                });
                if !sets.is_empty() {
                    let name = CStr::from_ptr(pg_sys::get_rel_name(table)).to_string_lossy().into_owned();
                    raise_hint(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        format!(
                            "cannot rename column \"{column}\" of table \"{name}\": it is in the column list of replication set(s) {}",
                            sets.join(", ")
                        ),
                        "Column lists name their columns: remove the table from those sets with spock.repset_remove_table(), rename the column, and add the table again with the new name in columns.",
                    );
                }
            }
        }
    }
}
