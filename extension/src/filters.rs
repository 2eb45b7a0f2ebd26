//! Column lists and row filters of set memberships (sql-api.md §4.3,
//! behaviour.md §15): how `repset_add_table` checks them and what the
//! catalog keeps (column names; the row filter as a parsed expression tree,
//! `nodeToString` text, whose column references are attribute numbers of
//! the member table). The output plugin evaluates the stored trees
//! (`output::rowfilter`); the initial copy deparses them with `pg_get_expr`.

use std::ffi::{CStr, CString, c_void};

use pgrx::prelude::*;

use crate::errors::{raise, raise_hint};

/// Attribute numbers of a relation's replica identity key.
pub fn identity_columns(relation: pg_sys::Relation) -> Vec<i16> {
    let mut out = Vec::new();
    // SAFETY: reads the relcache's identity-key bitmap (a copy, freed here).
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

/// A user column of a table: (attnum, name, generated).
struct Attribute {
    attnum: i16,
    name: String,
    generated: bool,
}

/// The live user columns of an open relation.
fn attributes(relation: pg_sys::Relation) -> Vec<Attribute> {
    // SAFETY: the descriptor of an open relation.
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked((*relation).rd_att) };
    desc.iter()
        .enumerate()
        .filter(|(_, a)| !a.attisdropped)
        .map(|(i, a)| Attribute {
            attnum: (i + 1) as i16,
            // SAFETY: attname is a NUL-terminated NameData.
            name: unsafe { CStr::from_ptr(a.attname.data.as_ptr()) }.to_string_lossy().into_owned(),
            generated: a.attgenerated != 0,
        })
        .collect()
}

/// An open relation, closed (keeping its lock) when dropped.
struct Opened(pg_sys::Relation);

impl Opened {
    fn new(reloid: pg_sys::Oid) -> Opened {
        // SAFETY: the caller holds a lock on the table; AccessShareLock is
        // taken in addition and kept to the end of the transaction.
        Opened(unsafe { pg_sys::table_open(reloid, pg_sys::AccessShareLock as i32) })
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        // SAFETY: opened by `new`; the lock stays until the transaction ends.
        unsafe { pg_sys::table_close(self.0, pg_sys::NoLock as i32) };
    }
}

/// Checks a column list for `qualified` and returns it as stored: the
/// listed columns, once each, in the table's column order. Raises 42703 for
/// an unknown column, 22023 for a generated column or a missing replica
/// identity column.
pub fn column_list(reloid: pg_sys::Oid, qualified: &str, columns: &[String]) -> Vec<String> {
    let rel = Opened::new(reloid);
    let atts = attributes(rel.0);
    for name in columns {
        match atts.iter().find(|a| &a.name == name) {
            None => raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{name}\" of relation {qualified} does not exist"),
            ),
            Some(a) if a.generated => raise_hint(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "column \"{name}\" of {qualified} is a generated column and cannot be in a column list"
                ),
                "Generated columns are never sent; each subscriber computes its own. Leave it out of columns.",
            ),
            Some(_) => {}
        }
    }
    let key = identity_columns(rel.0);
    let missing: Vec<&str> = atts
        .iter()
        .filter(|a| key.contains(&a.attnum) && !columns.contains(&a.name))
        .map(|a| a.name.as_str())
        .collect();
    if !missing.is_empty() {
        raise_hint(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "the column list of {qualified} leaves out its replica identity column(s) {}",
                missing.join(", ")
            ),
            "Subscribers find rows by these columns: add them to columns.",
        );
    }
    atts.into_iter().filter(|a| columns.contains(&a.name)).map(|a| a.name).collect()
}

/// What a walk over a raw (unanalysed) row filter found.
#[derive(Default)]
struct RawScan {
    nspname: String,
    relname: String,
    columns: Vec<String>,
    sublink: bool,
    /// The first reference to something other than the table's columns.
    other_table: Option<String>,
}

/// The names of a `ColumnRef`'s fields (`*` for a star).
///
/// # Safety
/// `cref` is a ColumnRef of a raw parse tree.
unsafe fn column_ref_names(cref: *mut pg_sys::ColumnRef) -> Vec<String> {
    // SAFETY: the fields list holds String or A_Star nodes.
    unsafe {
        let list = (*cref).fields;
        let n = if list.is_null() { 0 } else { (*list).length as usize };
        (0..n)
            .map(|i| {
                let node = (*(*list).elements.add(i)).ptr_value as *mut pg_sys::Node;
                if (*node).type_ == pg_sys::NodeTag::T_String {
                    let s = node as *mut pg_sys::String;
                    CStr::from_ptr((*s).sval).to_string_lossy().into_owned()
                } else {
                    "*".to_string()
                }
            })
            .collect()
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn raw_walker(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: `context` is the RawScan of `row_filter`; `node` a raw parse
    // tree node.
    unsafe {
        let scan = &mut *(context as *mut RawScan);
        match (*node).type_ {
            pg_sys::NodeTag::T_SubLink => {
                scan.sublink = true;
                false
            }
            pg_sys::NodeTag::T_ColumnRef => {
                let names = column_ref_names(node as *mut pg_sys::ColumnRef);
                // `col`, `col.field`, `table.col`, `schema.table.col`.
                let own = match names.as_slice() {
                    [] | [_] => true,
                    [first, ..] if scan.columns.contains(first) => true,
                    [table, _] => *table == scan.relname,
                    [schema, table, ..] => *schema == scan.nspname && *table == scan.relname,
                };
                if !own && scan.other_table.is_none() {
                    let n = names.len();
                    scan.other_table = Some(names[..n - 1].join("."));
                }
                false
            }
            _ => pg_sys::raw_expression_tree_walker(node, Some(raw_walker), context),
        }
    }
}

/// What a walk over an analysed row filter found: the first thing a row
/// filter may not contain.
#[derive(Default)]
struct Analysed {
    function: Option<pg_sys::Oid>,
    system_column: bool,
    /// A node kind outside the allowed list (its tag).
    construct: Option<pg_sys::NodeTag>,
    /// A user-defined type or collation (its oid).
    user_type: Option<pg_sys::Oid>,
    user_collation: Option<pg_sys::Oid>,
}

/// The node kinds a row filter may contain: columns, constants, operators,
/// built-in functions, boolean logic, NULL tests, casts, CASE, COALESCE,
/// GREATEST/LEAST, arrays and collations. Everything else (subqueries,
/// aggregates, domains with their constraints, SQL value functions such as
/// CURRENT_DATE, parameters) is refused.
const ALLOWED_NODES: [pg_sys::NodeTag; 19] = [
    pg_sys::NodeTag::T_Var,
    pg_sys::NodeTag::T_Const,
    pg_sys::NodeTag::T_OpExpr,
    pg_sys::NodeTag::T_DistinctExpr,
    pg_sys::NodeTag::T_NullIfExpr,
    pg_sys::NodeTag::T_ScalarArrayOpExpr,
    pg_sys::NodeTag::T_BoolExpr,
    pg_sys::NodeTag::T_NullTest,
    pg_sys::NodeTag::T_BooleanTest,
    pg_sys::NodeTag::T_FuncExpr,
    pg_sys::NodeTag::T_RelabelType,
    pg_sys::NodeTag::T_CoerceViaIO,
    pg_sys::NodeTag::T_ArrayExpr,
    pg_sys::NodeTag::T_CaseExpr,
    pg_sys::NodeTag::T_CaseWhen,
    pg_sys::NodeTag::T_CaseTestExpr,
    pg_sys::NodeTag::T_CoalesceExpr,
    pg_sys::NodeTag::T_MinMaxExpr,
    pg_sys::NodeTag::T_CollateExpr,
];

#[pg_guard]
unsafe extern "C-unwind" fn disallowed_function(funcid: pg_sys::Oid, context: *mut c_void) -> bool {
    // SAFETY: `context` is the Analysed of `row_filter`; a syscache lookup.
    unsafe {
        let bad = funcid.to_u32() >= pg_sys::FirstNormalObjectId
            || pg_sys::func_volatile(funcid) as u8 != pg_sys::PROVOLATILE_IMMUTABLE;
        if bad {
            (*(context as *mut Analysed)).function = Some(funcid);
        }
        bad
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn analysed_walker(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
    if node.is_null() {
        return false;
    }
    // SAFETY: `context` is the Analysed of `row_filter`; `node` a node of
    // an analysed expression.
    unsafe {
        let found = &mut *(context as *mut Analysed);
        let tag = (*node).type_;
        if tag == pg_sys::NodeTag::T_List {
            return pg_sys::expression_tree_walker(node, Some(analysed_walker), context);
        }
        if !ALLOWED_NODES.contains(&tag) {
            found.construct = Some(tag);
            return true;
        }
        if tag == pg_sys::NodeTag::T_Var && (*(node as *mut pg_sys::Var)).varattno < 0 {
            found.system_column = true;
            return true;
        }
        let user = |oid: pg_sys::Oid| oid.to_u32() >= pg_sys::FirstNormalObjectId;
        // A user-defined type brings its own operators and input and output
        // functions; a user-defined collation its own comparisons.
        if tag != pg_sys::NodeTag::T_CaseWhen {
            let ty = pg_sys::exprType(node);
            if user(ty) {
                found.user_type = Some(ty);
                return true;
            }
            let coll = pg_sys::exprCollation(node);
            if user(coll) {
                found.user_collation = Some(coll);
                return true;
            }
            let input = pg_sys::exprInputCollation(node);
            if user(input) {
                found.user_collation = Some(input);
                return true;
            }
        }
        if pg_sys::check_functions_in_node(node, Some(disallowed_function), context) {
            return true;
        }
        pg_sys::expression_tree_walker(node, Some(analysed_walker), context)
    }
}

/// How an error message names a refused node kind.
fn construct_name(tag: pg_sys::NodeTag) -> String {
    match tag {
        pg_sys::NodeTag::T_SQLValueFunction => {
            "CURRENT_DATE, CURRENT_USER or a similar SQL value function".into()
        }
        pg_sys::NodeTag::T_CoerceToDomain => "a cast to a domain".into(),
        pg_sys::NodeTag::T_Param => "a parameter".into(),
        pg_sys::NodeTag::T_NextValueExpr => "a sequence".into(),
        other => format!("an expression of kind {}", format!("{other:?}").trim_start_matches("T_")),
    }
}

/// The expression of `SELECT <text>` when that is all the statement is.
///
/// # Safety
/// `stmts` is raw_parser's result.
unsafe fn lone_expression(stmts: *mut pg_sys::List) -> Option<*mut pg_sys::Node> {
    // SAFETY: a list of RawStmt nodes from the parser.
    unsafe {
        if stmts.is_null() || (*stmts).length != 1 {
            return None;
        }
        let raw = (*(*stmts).elements).ptr_value as *mut pg_sys::RawStmt;
        let stmt = (*raw).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            return None;
        }
        let s = stmt as *mut pg_sys::SelectStmt;
        let bare = (*s).op == pg_sys::SetOperation::SETOP_NONE
            && (*s).distinctClause.is_null()
            && (*s).intoClause.is_null()
            && (*s).fromClause.is_null()
            && (*s).whereClause.is_null()
            && (*s).groupClause.is_null()
            && (*s).havingClause.is_null()
            && (*s).windowClause.is_null()
            && (*s).valuesLists.is_null()
            && (*s).sortClause.is_null()
            && (*s).limitOffset.is_null()
            && (*s).limitCount.is_null()
            && (*s).lockingClause.is_null()
            && (*s).withClause.is_null()
            && !(*s).targetList.is_null()
            && (*(*s).targetList).length == 1;
        if !bare {
            return None;
        }
        let target = (*(*(*s).targetList).elements).ptr_value as *mut pg_sys::ResTarget;
        Some((*target).val)
    }
}

/// Checks a row filter for `qualified` and returns it as stored: the
/// analysed expression tree (`nodeToString`). The rules are those of a
/// CHECK constraint, plus: only built-in immutable functions, no system
/// columns. Raises 42601 (not one expression), 42P10 (another table),
/// 42804 (not boolean), 0A000 (a disallowed construct or function) and
/// the parser's own errors (syntax, unknown column).
pub fn row_filter(reloid: pg_sys::Oid, qualified: &str, text: &str) -> String {
    let rel = Opened::new(reloid);
    let sql = CString::new(format!("SELECT {text}")).unwrap_or_else(|_| {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "a row filter cannot contain a NUL character")
    });
    let not_one = || -> ! {
        raise_hint(
            PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            format!("the row filter of {qualified} is not a single expression: {text}"),
            "Give a boolean expression over the table's columns, as in a CHECK constraint, e.g. 'id > 100'.",
        )
    };
    // SAFETY: parses our own statement text; the nodes live in the current
    // memory context.
    let raw = unsafe {
        let stmts = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        lone_expression(stmts).unwrap_or_else(|| not_one())
    };
    // SAFETY: reads the open relation's names.
    let (nspname, relname) = unsafe {
        let form = (*rel.0).rd_rel;
        let nsp = pg_sys::get_namespace_name((*form).relnamespace);
        (
            if nsp.is_null() { String::new() } else { CStr::from_ptr(nsp).to_string_lossy().into_owned() },
            CStr::from_ptr((*form).relname.data.as_ptr()).to_string_lossy().into_owned(),
        )
    };
    let mut scan = RawScan {
        nspname,
        relname,
        columns: attributes(rel.0).into_iter().map(|a| a.name).collect(),
        ..Default::default()
    };
    // SAFETY: walks the raw tree with our callback and its context.
    unsafe { raw_walker(raw, &mut scan as *mut RawScan as *mut c_void) };
    if scan.sublink {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the row filter of {qualified} contains a subquery; row filters cannot use subqueries"),
        );
    }
    if let Some(other) = scan.other_table {
        raise_hint(
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!(
                "the row filter of {qualified} refers to \"{other}\"; a row filter can use only the table's own columns"
            ),
            "Each change is filtered on the provider by itself: other tables cannot be consulted.",
        );
    }
    // SAFETY: analyses the expression against the open relation as the
    // only range table entry, as a CHECK constraint is.
    unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        (*pstate).p_sourcetext = sql.as_ptr();
        let nsitem = pg_sys::addRangeTableEntryForRelation(
            pstate,
            rel.0,
            pg_sys::AccessShareLock as i32,
            std::ptr::null_mut(),
            false,
            false,
        );
        pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
        let expr = pg_sys::transformExpr(pstate, raw, pg_sys::ParseExprKind::EXPR_KIND_SELECT_TARGET);
        let construct = if (*pstate).p_hasAggs {
            Some("an aggregate")
        } else if (*pstate).p_hasWindowFuncs {
            Some("a window function")
        } else if (*pstate).p_hasTargetSRFs {
            Some("a set-returning function")
        } else {
            None
        };
        if let Some(what) = construct {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "the row filter of {qualified} uses {what}; row filters follow the rules of CHECK constraints"
                ),
            );
        }
        let expr = pg_sys::coerce_to_boolean(pstate, expr, c"row filter".as_ptr());
        pg_sys::assign_expr_collations(pstate, expr);
        let mut found = Analysed::default();
        analysed_walker(expr, &mut found as *mut Analysed as *mut c_void);
        if let Some(funcid) = found.function {
            let name = pg_sys::get_func_name(funcid);
            let name = if name.is_null() {
                format!("function {}", funcid.to_u32())
            } else {
                format!("{}()", CStr::from_ptr(name).to_string_lossy())
            };
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "the row filter of {qualified} calls {name}, which is not a built-in immutable function"
                ),
                "Row filters run in the provider's walsender for every change: only built-in immutable functions and operators are allowed.",
            );
        }
        if found.system_column {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "the row filter of {qualified} uses a system column; only user columns can be filtered on"
                ),
            );
        }
        if let Some(ty) = found.user_type {
            let name = CStr::from_ptr(pg_sys::format_type_be(ty)).to_string_lossy().into_owned();
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("the row filter of {qualified} uses the user-defined type {name}"),
                "Row filters may use only built-in types, operators, functions and collations.",
            );
        }
        if found.user_collation.is_some() {
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("the row filter of {qualified} uses a user-defined collation"),
                "Row filters may use only built-in types, operators, functions and collations.",
            );
        }
        if let Some(tag) = found.construct {
            raise_hint(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "the row filter of {qualified} uses {}, which row filters do not allow",
                    construct_name(tag)
                ),
                "Row filters may use columns, constants, operators, built-in immutable functions, AND/OR/NOT, \
                 IS [NOT] NULL, casts, CASE, COALESCE, GREATEST/LEAST and arrays; not CURRENT_DATE, \
                 CURRENT_USER and the like, domains or parameters.",
            );
        }
        // What the walsender will evaluate, simplified as the executor does,
        // so that an error there (a division by a constant zero) shows now.
        pg_sys::expression_planner(expr as *mut pg_sys::Expr);
        let tree = pg_sys::nodeToString(expr as *const c_void);
        let stored = CStr::from_ptr(tree).to_string_lossy().into_owned();
        pg_sys::free_parsestate(pstate);
        stored
    }
}

/// Whether a stored row filter reads column `attnum` (or the whole row).
pub fn uses_column(tree: &str, attnum: i16) -> bool {
    let Ok(text) = CString::new(tree) else { return false };
    // SAFETY: rebuilds a stored expression and collects the attribute
    // numbers of its Vars of range table entry 1 (the only one).
    unsafe {
        let node = pg_sys::stringToNode(text.as_ptr()) as *mut pg_sys::Node;
        let mut attnos: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(node, 1, &mut attnos);
        let offset = |a: i32| a - pg_sys::FirstLowInvalidHeapAttributeNumber;
        pg_sys::bms_is_member(offset(i32::from(attnum)), attnos) || pg_sys::bms_is_member(offset(0), attnos)
    }
}
