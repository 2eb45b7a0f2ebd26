//! DDL replication rules that need no server (behaviour.md §10): the text a
//! queued statement carries, the message types of `spock.queue`, and where
//! automatic set membership puts a table after a replicated CREATE or
//! ALTER TABLE (§10.5).

/// `spock.queue.message_type` (sql-api.md §6.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// SQL queued by `spock.replicate_ddl` (`Q`).
    Sql,
    /// A statement queued by automatic DDL replication (`D`).
    Ddl,
    /// A table-sync request (`A`).
    TableSync,
    /// A sequence value (`S`).
    Sequence,
}

impl MessageType {
    pub fn code(self) -> u8 {
        match self {
            MessageType::Sql => b'Q',
            MessageType::Ddl => b'D',
            MessageType::TableSync => b'A',
            MessageType::Sequence => b'S',
        }
    }

    pub fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            b'Q' => MessageType::Sql,
            b'D' => MessageType::Ddl,
            b'A' => MessageType::TableSync,
            b'S' => MessageType::Sequence,
            _ => return None,
        })
    }
}

/// The SQL a queued statement carries: the search path it ran with, then
/// the statement itself (sql-api.md §6.10: `SET search_path TO …; <text>`).
/// `search_path` is the setting's value as `current_setting` shows it; it
/// is split the way PostgreSQL reads it and every element written again as
/// a quoted identifier, so that no value of the setting can add SQL of its
/// own (an unquoted element may contain `;`). An empty path is `''`.
pub fn queued_sql(search_path: &str, statement: &str) -> String {
    let path = split_identifiers(search_path)
        .filter(|names| !names.is_empty())
        .map(|names| names.iter().map(|n| quote_ident(n)).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "''".to_string());
    let statement = statement.trim();
    let statement = statement.strip_suffix(';').unwrap_or(statement).trim_end();
    format!("SET search_path TO {path}; {statement}")
}

/// A list setting split as PostgreSQL splits it (`SplitIdentifierString`
/// with a comma): elements separated by commas and optional white space,
/// double-quoted ones with `""` for a quote, unquoted ones lower-cased.
/// `None` when malformed.
pub fn split_identifiers(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let skip_space = |c: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while c.peek().is_some_and(|ch| ch.is_whitespace()) {
            c.next();
        }
    };
    skip_space(&mut chars);
    if chars.peek().is_none() {
        return Some(out);
    }
    loop {
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break,
                    c => name.push(c),
                }
            }
            if name.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
            if name.is_empty() {
                return None;
            }
        }
        out.push(name);
        skip_space(&mut chars);
        match chars.next() {
            None => return Some(out),
            Some(',') => skip_space(&mut chars),
            Some(_) => return None,
        }
    }
}

/// An identifier in double quotes, with its quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The names of the sets every node has; the others are custom sets.
pub const BUILTIN_SET_NAMES: [&str; 3] = ["default", "default_insert_only", "ddl_sql"];

/// Where automatic DDL sends its statements (behaviour.md §10.3).
pub const AUTOMATIC_DDL_SETS: [&str; 3] = ["default", "default_insert_only", "ddl_sql"];

/// A set a table belongs to, as the membership rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub set_name: String,
    /// Whether the set replicates UPDATE or DELETE (and so needs a key).
    pub updates_or_deletes: bool,
}

impl Membership {
    pub fn is_custom(&self) -> bool {
        !BUILTIN_SET_NAMES.contains(&self.set_name.as_str())
    }
}

/// What the statement did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statement {
    /// CREATE TABLE (also a partition, or inside CREATE SCHEMA), CREATE
    /// TABLE AS, or ALTER INDEX … ATTACH PARTITION re-evaluating a parent.
    Create,
    /// ALTER TABLE; `key_before` says whether the table had a replica
    /// identity index before it ran.
    Alter { key_before: bool },
}

/// The table after the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableState {
    /// Permanent (neither unlogged nor temporary).
    pub permanent: bool,
    /// In a schema whose tables cannot join sets (`pg_*`,
    /// `information_schema`, a reserved schema such as `spock`), or a
    /// table of a reserved extension.
    pub blocked_schema: bool,
    /// Has a replica identity index (or is partitioned: its partitions
    /// carry the key).
    pub has_key: bool,
}

/// The outcome of the membership rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Leave the memberships as they are; `notice` is said to the user.
    Untouched { notice: Option<&'static str> },
    /// Remove the table from every set.
    RemoveFromAll,
    /// Remove it from every set, then add it to `set` (`default` or
    /// `default_insert_only`).
    Only { set: &'static str },
    /// Remove it from the sets that replicate UPDATE or DELETE and add it
    /// to `default_insert_only`; `warn` says a custom set lost it.
    InsertOnly { warn: bool },
}

/// The rule of behaviour.md §10.5 for one affected table.
pub fn placement(stmt: Statement, table: TableState, sets: &[Membership]) -> Placement {
    if !table.permanent || table.blocked_schema {
        return Placement::RemoveFromAll;
    }
    let in_custom = sets.iter().any(Membership::is_custom);
    if let Statement::Alter { key_before } = stmt {
        match (key_before, table.has_key) {
            (true, true) | (false, false) => return Placement::Untouched { notice: None },
            (true, false) => {
                let custom_ud = sets.iter().any(|m| m.is_custom() && m.updates_or_deletes);
                if custom_ud {
                    return Placement::InsertOnly { warn: true };
                }
                if in_custom && sets.iter().all(|m| !m.updates_or_deletes) {
                    return Placement::Untouched { notice: None };
                }
            }
            (false, true) => {
                if in_custom {
                    return Placement::Untouched {
                        notice: Some(
                            "the table now has a key but stays in its custom replication sets; move it with spock.repset_add_table()",
                        ),
                    };
                }
            }
        }
    }
    if table.has_key { Placement::Only { set: "default" } } else { Placement::InsertOnly { warn: false } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, ud: bool) -> Membership {
        Membership { set_name: name.into(), updates_or_deletes: ud }
    }
    const KEYED: TableState = TableState { permanent: true, blocked_schema: false, has_key: true };
    const KEYLESS: TableState = TableState { permanent: true, blocked_schema: false, has_key: false };

    #[test]
    fn queued_sql_carries_the_search_path() {
        assert_eq!(
            queued_sql("\"$user\", public", "CREATE TABLE t (i int);"),
            "SET search_path TO \"$user\", \"public\"; CREATE TABLE t (i int)"
        );
        assert_eq!(queued_sql("", " DROP TABLE t "), "SET search_path TO ''; DROP TABLE t");
    }

    #[test]
    fn no_search_path_adds_sql() {
        // An unquoted element may hold a semicolon: it stays inside one quoted name.
        assert_eq!(queued_sql("x;DROP", "X"), "SET search_path TO \"x;drop\"; X");
        assert_eq!(queued_sql("a, \"b\"\"; DROP\"", "X"), "SET search_path TO \"a\", \"b\"\"; DROP\"; X");
        // What PostgreSQL would not accept as a path becomes the empty path.
        assert_eq!(queued_sql("x;DROP TABLE t", "X"), "SET search_path TO ''; X");
    }

    #[test]
    fn identifier_lists_split_like_postgresql() {
        assert_eq!(split_identifiers(" A , \"B c\",d "), Some(vec!["a".into(), "B c".into(), "d".into()]));
        assert_eq!(split_identifiers(""), Some(vec![]));
        assert_eq!(split_identifiers("a,,b"), None);
        assert_eq!(split_identifiers("\"unterminated"), None);
        assert_eq!(split_identifiers("a b"), None);
        assert_eq!(split_identifiers("x;y"), Some(vec!["x;y".into()]));
    }

    #[test]
    fn message_types_round_trip() {
        for t in [MessageType::Sql, MessageType::Ddl, MessageType::TableSync, MessageType::Sequence] {
            assert_eq!(MessageType::from_code(t.code()), Some(t));
        }
        assert_eq!(MessageType::from_code(b'x'), None);
    }

    #[test]
    fn created_tables_go_by_their_key() {
        assert_eq!(placement(Statement::Create, KEYED, &[]), Placement::Only { set: "default" });
        assert_eq!(placement(Statement::Create, KEYLESS, &[]), Placement::InsertOnly { warn: false });
        let unlogged = TableState { permanent: false, ..KEYED };
        assert_eq!(placement(Statement::Create, unlogged, &[set("default", true)]), Placement::RemoveFromAll);
        let blocked = TableState { blocked_schema: true, ..KEYED };
        assert_eq!(placement(Statement::Create, blocked, &[]), Placement::RemoveFromAll);
    }

    #[test]
    fn alters_that_keep_the_key_leave_membership_alone() {
        let sets = [set("custom", true)];
        assert_eq!(
            placement(Statement::Alter { key_before: true }, KEYED, &sets),
            Placement::Untouched { notice: None }
        );
        assert_eq!(
            placement(Statement::Alter { key_before: false }, KEYLESS, &[]),
            Placement::Untouched { notice: None }
        );
    }

    #[test]
    fn losing_the_key_moves_to_insert_only() {
        let alter = Statement::Alter { key_before: true };
        assert_eq!(placement(alter, KEYLESS, &[set("default", true)]), Placement::InsertOnly { warn: false });
        assert_eq!(
            placement(alter, KEYLESS, &[set("default", true), set("mine", true)]),
            Placement::InsertOnly { warn: true }
        );
        assert_eq!(
            placement(alter, KEYLESS, &[set("mine_inserts", false)]),
            Placement::Untouched { notice: None }
        );
    }

    #[test]
    fn gaining_a_key_in_a_custom_set_only_notices() {
        let alter = Statement::Alter { key_before: false };
        assert!(matches!(
            placement(alter, KEYED, &[set("mine", false)]),
            Placement::Untouched { notice: Some(_) }
        ));
        assert_eq!(
            placement(alter, KEYED, &[set("default_insert_only", false)]),
            Placement::Only { set: "default" }
        );
    }
}
