//! Synchronisation states of a subscription and its tables, as stored in
//! `spock.local_sync_status` (sql-api.md §6.5), the rule that decides
//! whether an apply worker may create its subscription's replication slot,
//! and the pure parts of the initial copy: when it runs, which entries of
//! the provider's dump are restored, and the name patterns given to
//! `pg_dump`.

use std::fmt;

/// What a sync status row asks to synchronise (`sync_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// Nothing to copy: only the slot and origin are set up (`i`).
    Init,
    /// Structure only (`s`).
    Structure,
    /// Data only (`d`).
    Data,
    /// Structure and data (`f`).
    Full,
}

impl SyncKind {
    pub const ALL: [SyncKind; 4] = [SyncKind::Init, SyncKind::Structure, SyncKind::Data, SyncKind::Full];

    /// The kind of a subscription created with these flags.
    pub fn from_flags(structure: bool, data: bool) -> SyncKind {
        match (structure, data) {
            (false, false) => SyncKind::Init,
            (true, false) => SyncKind::Structure,
            (false, true) => SyncKind::Data,
            (true, true) => SyncKind::Full,
        }
    }

    /// The catalog's one-character code.
    pub fn code(self) -> char {
        match self {
            SyncKind::Init => 'i',
            SyncKind::Structure => 's',
            SyncKind::Data => 'd',
            SyncKind::Full => 'f',
        }
    }

    pub fn from_code(c: char) -> Result<SyncKind, UnknownCode> {
        SyncKind::ALL.into_iter().find(|k| k.code() == c).ok_or(UnknownCode { what: "sync kind", code: c })
    }
}

/// How far a synchronisation has come (`sync_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    /// Requested, nothing done yet (`i`).
    Requested,
    /// Copying the structure (`s`).
    Structure,
    /// Copying the data (`d`).
    Data,
    /// Restoring constraints and indexes (`c`).
    Constraints,
    /// Table copy done, waiting for the hand-over (`w`).
    Waiting,
    /// Catching up (`u`).
    CatchUp,
    /// Synchronised up to `sync_statuslsn` (`y`).
    Synchronized,
    /// Ready: replicating (`r`).
    Ready,
    /// Failed, not retried automatically (`f`).
    Failed,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 9] = [
        SyncStatus::Requested,
        SyncStatus::Structure,
        SyncStatus::Data,
        SyncStatus::Constraints,
        SyncStatus::Waiting,
        SyncStatus::CatchUp,
        SyncStatus::Synchronized,
        SyncStatus::Ready,
        SyncStatus::Failed,
    ];

    /// The catalog's one-character code.
    pub fn code(self) -> char {
        match self {
            SyncStatus::Requested => 'i',
            SyncStatus::Structure => 's',
            SyncStatus::Data => 'd',
            SyncStatus::Constraints => 'c',
            SyncStatus::Waiting => 'w',
            SyncStatus::CatchUp => 'u',
            SyncStatus::Synchronized => 'y',
            SyncStatus::Ready => 'r',
            SyncStatus::Failed => 'f',
        }
    }

    pub fn from_code(c: char) -> Result<SyncStatus, UnknownCode> {
        SyncStatus::ALL
            .into_iter()
            .find(|s| s.code() == c)
            .ok_or(UnknownCode { what: "sync status", code: c })
    }

    /// The name `sub_show_table` reports (sql-api.md §4.4).
    pub fn name(self) -> &'static str {
        match self {
            SyncStatus::Requested => "sync_init",
            SyncStatus::Structure => "sync_structure",
            SyncStatus::Data => "sync_data",
            SyncStatus::Constraints => "sync_constraints",
            SyncStatus::Waiting => "sync_waiting",
            SyncStatus::CatchUp => "catchup",
            SyncStatus::Synchronized => "synchronized",
            SyncStatus::Ready => "replicating",
            SyncStatus::Failed => "sync_failed",
        }
    }
}

/// A code the catalog holds that this build does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownCode {
    pub what: &'static str,
    pub code: char,
}

impl fmt::Display for UnknownCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?} in spock.local_sync_status", self.what, self.code)
    }
}

impl std::error::Error for UnknownCode {}

/// What an apply worker does about its subscription's slot on the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotPlan {
    /// The slot exists: stream from it.
    Use,
    /// The subscription never streamed from a slot and none exists: create it.
    Create,
    /// The subscription streamed from its slot before, and the slot is gone
    /// (dropped by hand, provider restored from a backup, failover). A new
    /// slot would start at the provider's current position and silently
    /// skip every change in between, so this is an error until an operator
    /// acts.
    Missing,
}

/// The slot rule (behaviour.md §21): only a subscription that is still
/// initialising creates its slot. `stream_start` is the provider position
/// recorded when the subscription first streamed from its slot (the
/// subscription-level `sync_statuslsn`), `None` while it never did.
pub fn slot_plan(slot_exists: bool, stream_start: Option<u64>) -> SlotPlan {
    match (slot_exists, stream_start) {
        (true, _) => SlotPlan::Use,
        (false, None) => SlotPlan::Create,
        (false, Some(_)) => SlotPlan::Missing,
    }
}

/// Whether a subscription's apply worker starts with the initial copy
/// (behaviour.md §6.1): it asked for structure or data and never streamed.
/// A leftover slot of an attempt that failed is then dropped and made again,
/// because its snapshot is gone.
pub fn needs_initial_copy(kind: SyncKind, stream_start: Option<u64>) -> bool {
    kind != SyncKind::Init && stream_start.is_none()
}

/// The extension whose objects a structure copy never restores: the
/// subscriber has its own.
pub const OWN_EXTENSION: &str = "spock";

/// Whether an entry of `pg_restore --list` is restored on the subscriber.
/// The list has comment lines (`;`) and entries `<id>; <catalog> <oid>
/// <description> <schema> <name> <owner>`; the `spock` extension, the
/// extensions in `excluded` (reserved on the subscriber with
/// `exclude_from_dump`) and their comments are left out (excluded schemas
/// are left out of the dump itself).
pub fn keep_in_restore<S: AsRef<str>>(line: &str, excluded: &[S]) -> bool {
    let Some((id, rest)) = line.split_once(';') else { return true };
    if id.trim().parse::<u64>().is_err() {
        return true;
    }
    // Skip the catalog and object ids.
    let mut words = rest.split_whitespace().skip(2);
    let entry: Vec<&str> = words.by_ref().take(4).collect();
    let own = |w: &[&str]| {
        w.first().is_some_and(|name| *name == OWN_EXTENSION || excluded.iter().any(|e| e.as_ref() == *name))
    };
    match entry.as_slice() {
        ["EXTENSION", "-", tail @ ..] if own(tail) => false,
        ["COMMENT", "-", "EXTENSION", tail @ ..] if own(tail) => false,
        _ => true,
    }
}

/// A script `pg_restore --file` wrote, made fit to send as one simple query:
/// without the psql meta-commands `\restrict` and `\unrestrict` that
/// recent releases put around it (they guard psql against meta-commands
/// smuggled into object names; a simple query runs no meta-commands at
/// all, so any other backslash line is an SQL syntax error, never a
/// command).
pub fn restore_script(text: &str) -> String {
    text.lines().filter(|l| !(l.starts_with("\\restrict ") || l.starts_with("\\unrestrict "))).fold(
        String::with_capacity(text.len()),
        |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        },
    )
}

/// Splits a row of a `COPY ... TO STDOUT` (text format) into its fields
/// but the last, and the last (without the line's end). `None` when the
/// row has a single field.
pub fn split_last_field(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = row.strip_suffix(b"\n").unwrap_or(row);
    let last = line.iter().rposition(|&b| b == b'\t')?;
    Some((&line[..last], &line[last + 1..]))
}

/// A row of `COPY ... TO STDOUT` in text format (without its line end) as
/// the SQL of a `VALUES` row: every field a quoted literal (typed by the
/// column it goes to, as `COPY FROM` would type it), `\N` as `NULL`.
/// `None` when a field is not UTF-8 once its escapes are undone.
pub fn copy_row_to_values(row: &[u8]) -> Option<String> {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    let mut out = String::with_capacity(row.len() + 16);
    out.push('(');
    for (i, field) in row.split(|&b| b == b'\t').enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if field == b"\\N" {
            out.push_str("NULL");
            continue;
        }
        let text = String::from_utf8(unescape_copy_field(field)).ok()?;
        out.push('\'');
        out.push_str(&text.replace('\'', "''"));
        out.push('\'');
    }
    out.push(')');
    Some(out)
}

/// Undoes the backslash escapes of a field of COPY's text format.
fn unescape_copy_field(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        i += 1;
        if b != b'\\' || i >= field.len() {
            out.push(b);
            continue;
        }
        let c = field[i];
        i += 1;
        match c {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match field.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            b'x' if field.get(i).is_some_and(|d| d.is_ascii_hexdigit()) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d) if d.is_ascii_hexdigit() => {
                            value = value * 16 + (*d as char).to_digit(16).unwrap_or(0);
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    out
}

/// A `pg_dump` name pattern that matches exactly `name` (in double quotes,
/// where every character is literal and `"` is doubled).
pub fn exact_pattern(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for kind in SyncKind::ALL {
            assert_eq!(SyncKind::from_code(kind.code()), Ok(kind));
        }
        for status in SyncStatus::ALL {
            assert_eq!(SyncStatus::from_code(status.code()), Ok(status));
        }
        let mut codes: Vec<char> = SyncStatus::ALL.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), SyncStatus::ALL.len());
        let err = SyncStatus::from_code('x').unwrap_err();
        assert_eq!(err.to_string(), "unknown sync status 'x' in spock.local_sync_status");
        assert!(SyncKind::from_code('r').is_err());
    }

    #[test]
    fn kind_follows_the_flags() {
        assert_eq!(SyncKind::from_flags(false, false), SyncKind::Init);
        assert_eq!(SyncKind::from_flags(true, false), SyncKind::Structure);
        assert_eq!(SyncKind::from_flags(false, true), SyncKind::Data);
        assert_eq!(SyncKind::from_flags(true, true), SyncKind::Full);
    }

    #[test]
    fn status_names_follow_the_spec() {
        assert_eq!(SyncStatus::Ready.name(), "replicating");
        assert_eq!(SyncStatus::Requested.name(), "sync_init");
        assert_eq!(SyncStatus::Failed.name(), "sync_failed");
    }

    #[test]
    fn a_slot_is_created_only_before_the_first_stream() {
        assert_eq!(slot_plan(true, None), SlotPlan::Use);
        assert_eq!(slot_plan(true, Some(0x1000)), SlotPlan::Use);
        assert_eq!(slot_plan(false, None), SlotPlan::Create);
        assert_eq!(slot_plan(false, Some(0x1000)), SlotPlan::Missing);
    }

    #[test]
    fn only_a_subscription_that_never_streamed_copies() {
        assert!(needs_initial_copy(SyncKind::Full, None));
        assert!(needs_initial_copy(SyncKind::Data, None));
        assert!(needs_initial_copy(SyncKind::Structure, None));
        assert!(!needs_initial_copy(SyncKind::Init, None));
        assert!(!needs_initial_copy(SyncKind::Full, Some(0x1000)));
    }

    #[test]
    fn the_own_extension_is_left_out_of_the_restore() {
        let list = "\
;
; Archive created at 2026-12-02 15:00:00 UTC
;     dbname: postgres
3; 3079 16385 EXTENSION - spock 
4321; 0 0 COMMENT - EXTENSION spock 
5; 3079 16390 EXTENSION - spockish 
6; 3079 16391 EXTENSION - vector 
215; 1259 16386 TABLE public t postgres
216; 1259 16387 TABLE public spock postgres
3301; 2606 16400 CONSTRAINT public t t_pkey postgres
";
        let none: [&str; 0] = [];
        let kept: Vec<&str> = list.lines().filter(|l| keep_in_restore(l, &none)).collect();
        assert!(kept.iter().all(|l| !l.contains("EXTENSION - spock ") && !l.contains("EXTENSION spock")));
        assert!(kept.iter().any(|l| l.contains("EXTENSION - spockish")));
        assert!(kept.iter().any(|l| l.contains("EXTENSION - vector")));
        assert!(kept.iter().any(|l| l.contains("TABLE public spock")), "a table named spock stays");
        assert!(kept.iter().any(|l| l.contains("t_pkey")));
        assert_eq!(kept.len(), list.lines().count() - 2);
        // A reserved extension is left out too, and only it.
        let kept: Vec<&str> = list.lines().filter(|l| keep_in_restore(l, &["vector"])).collect();
        assert!(kept.iter().all(|l| !l.contains("EXTENSION - vector")));
        assert!(kept.iter().any(|l| l.contains("EXTENSION - spockish")));
        assert_eq!(kept.len(), list.lines().count() - 3);
    }

    #[test]
    fn patterns_match_names_literally() {
        assert_eq!(exact_pattern("s2"), "\"s2\"");
        assert_eq!(exact_pattern("My*Schema"), "\"My*Schema\"");
        assert_eq!(exact_pattern("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn restore_scripts_lose_only_the_psql_guards() {
        let script = "\\restrict abc\nSET x = 1;\nCREATE TABLE t (v text DEFAULT '\\restrict no');\n\\unrestrict abc\n";
        assert_eq!(restore_script(script), "SET x = 1;\nCREATE TABLE t (v text DEFAULT '\\restrict no');\n");
        assert_eq!(restore_script("SELECT 1;\n"), "SELECT 1;\n");
    }

    #[test]
    fn the_last_field_is_split_off_copied_rows() {
        let (data, xmin) = split_last_field(b"1\ta\\tb\t\\N\t7301\n").unwrap();
        assert_eq!(data, b"1\ta\\tb\t\\N");
        assert_eq!(xmin, b"7301");
        assert_eq!(split_last_field(b"\\N\t2").unwrap(), (&b"\\N"[..], &b"2"[..]));
        assert!(split_last_field(b"only\n").is_none());
    }

    #[test]
    fn copied_rows_become_values() {
        assert_eq!(copy_row_to_values(b"1\tit's\t\\N\n").unwrap(), "('1', 'it''s', NULL)");
        assert_eq!(copy_row_to_values(b"a\\tb\\nc\\\\d").unwrap(), "('a\tb\nc\\d')");
        assert_eq!(copy_row_to_values(b"\\101\\x42\\N").unwrap(), "('ABN')", "\\N inside a field is N");
        assert_eq!(copy_row_to_values(b"{1,2}\t\\\\N").unwrap(), "('{1,2}', '\\N')");
        assert_eq!(copy_row_to_values(b"").unwrap(), "('')");
        assert!(copy_row_to_values(b"\\377").is_none(), "not UTF-8");
    }
}
