//! Apply errors (behaviour.md §8): which errors are transient (retried
//! as they are) and which are permanent (the failing remote transaction is
//! handled in exception mode), what each exception mode does with the
//! operations of that transaction, and the texts of `spock.exception_log`.

/// `spock.exception_behaviour`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every operation in its own subtransaction: the failing ones are
    /// rolled back and logged, the others stay.
    Discard,
    /// Nothing of the transaction is applied; progress moves past it.
    TransDiscard,
    /// Nothing is applied, the subscription is disabled, progress stays.
    SubDisable,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Discard => "discard",
            Mode::TransDiscard => "transdiscard",
            Mode::SubDisable => "sub_disable",
        }
    }

    /// Whether the operations are tried (each in a subtransaction).
    pub fn applies_operations(self) -> bool {
        self == Mode::Discard
    }

    /// Whether the subscription's progress moves past the transaction.
    pub fn moves_progress(self) -> bool {
        self != Mode::SubDisable
    }
}

/// `spock.exception_logging`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logging {
    None,
    /// Only the operations that failed (and the `SUB_DISABLE` row).
    Discard,
    /// Also the operations discarded because another one failed.
    All,
}

/// Whether an error with this SQLSTATE is transient: the transaction rolls
/// back, the worker restarts and applies it again normally, and nothing is
/// logged in `exception_log` (behaviour.md §8.1).
pub fn is_transient(sqlstate: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "57P01", // admin_shutdown
        "57P02", // crash_shutdown
        "57P03", // cannot_connect_now
        "40P01", // deadlock_detected
        "40001", // serialization_failure
        "55P03", // lock_not_available
        // query_canceled: an administrator cancelling a slow or stuck apply
        // (pg_cancel_backend) wants it retried, not its changes discarded.
        "57014",
    ];
    if TRANSIENT.contains(&sqlstate) {
        return true;
    }
    // Insufficient resources; connection exceptions but a protocol violation.
    sqlstate.starts_with("53") || (sqlstate.starts_with("08") && sqlstate != "08P01")
}

/// The five-character SQLSTATE of PostgreSQL's packed error code (six bits
/// per character, first character lowest).
pub fn unpack_sqlstate(code: i32) -> String {
    (0..5).map(|i| char::from((((code >> (6 * i)) & 0x3F) as u8) + b'0')).collect()
}

/// What becomes of one operation of a transaction handled in exception mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Tried in a subtransaction (`discard` mode).
    Try,
    /// Not applied; logged with this `error_message`.
    Log(String),
    /// Not applied and not logged.
    Skip,
}

/// The fate of operation `counter` (1-based) in a transaction that failed
/// at operation `failed_at` with `error` (`[SQLSTATE] message`), when it is
/// not tried. In `discard` mode every operation is tried; the caller logs
/// the ones that fail with their own error ([`failed_text`]).
pub fn verdict(mode: Mode, logging: Logging, counter: u32, failed_at: u32, error: &str) -> Verdict {
    if mode.applies_operations() {
        return Verdict::Try;
    }
    if counter == failed_at {
        return if logging == Logging::None { Verdict::Skip } else { Verdict::Log(error.to_string()) };
    }
    if logging == Logging::All { Verdict::Log(discarded_text(mode, failed_at)) } else { Verdict::Skip }
}

/// Whether an operation that failed when tried (`discard` mode) is logged.
pub fn logs_failures(logging: Logging) -> bool {
    logging != Logging::None
}

/// `error_message` of an operation that failed: `[SQLSTATE] message`.
pub fn failed_text(sqlstate: &str, message: &str) -> String {
    format!("[{sqlstate}] {message}")
}

/// `error_message` of an operation discarded with a failed one.
pub fn discarded_text(mode: Mode, failed_at: u32) -> String {
    format!("{}: discarded because the transaction failed at command_counter {failed_at}", mode.name())
}

/// `error_message` of the `SUB_DISABLE` row.
pub fn sub_disable_text(subscription: &str, skip_lsn: &str) -> String {
    format!("subscription {subscription} disabled after an apply error; skip_lsn = {skip_lsn}")
}

/// What a skip LSN armed with `sub_alter_skiplsn` does to a transaction
/// that begins with commit LSN `commit_lsn` (behaviour.md §8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipPlan {
    /// No skip is armed.
    None,
    /// This is the transaction to skip: nothing applied, progress moves
    /// past it, the skip LSN is reset.
    Skip,
    /// Another transaction came first: the skip LSN is reset with a
    /// WARNING and this transaction is applied normally.
    Disarm,
}

pub fn skip_plan(skip_lsn: u64, commit_lsn: u64) -> SkipPlan {
    match skip_lsn {
        0 => SkipPlan::None,
        lsn if lsn == commit_lsn => SkipPlan::Skip,
        _ => SkipPlan::Disarm,
    }
}

/// A JSON object keyed by column name from text values (`None` is SQL
/// NULL; columns not sent are left out), for the rows of `exception_log`,
/// which must be written even when the table does not exist locally.
pub fn text_row_json<'a>(columns: impl IntoIterator<Item = (&'a str, Option<Option<&'a str>>)>) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for (name, value) in columns {
        let Some(value) = value else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(&mut out, name);
        out.push(':');
        match value {
            None => out.push_str("null"),
            Some(text) => push_json_string(&mut out, text),
        }
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors() {
        for s in [
            "57P01", "57P02", "57P03", "57014", "40P01", "40001", "55P03", "53100", "53200", "08006", "08001",
        ] {
            assert!(is_transient(s), "{s}");
        }
        for s in ["08P01", "23505", "42P01", "02000", "22P02", "42883", "XX000", "40002"] {
            assert!(!is_transient(s), "{s}");
        }
    }

    #[test]
    fn sqlstates_unpack() {
        let pack = |s: &str| -> i32 {
            s.bytes().enumerate().map(|(i, b)| (i32::from(b - b'0') & 0x3F) << (6 * i)).sum()
        };
        for s in ["23505", "42P01", "08P01", "57P01", "XX000", "00000", "40P01"] {
            assert_eq!(unpack_sqlstate(pack(s)), s);
        }
    }

    #[test]
    fn transdiscard_logs_everything_under_all() {
        let err = "[42P01] relation \"t2\" does not exist";
        let v: Vec<Verdict> = (1..=3).map(|c| verdict(Mode::TransDiscard, Logging::All, c, 2, err)).collect();
        assert_eq!(
            v,
            [
                Verdict::Log(
                    "transdiscard: discarded because the transaction failed at command_counter 2".into()
                ),
                Verdict::Log(err.into()),
                Verdict::Log(
                    "transdiscard: discarded because the transaction failed at command_counter 2".into()
                ),
            ]
        );
    }

    #[test]
    fn logging_discard_keeps_only_the_failure() {
        let v: Vec<Verdict> =
            (1..=3).map(|c| verdict(Mode::SubDisable, Logging::Discard, c, 2, "[x] y")).collect();
        assert_eq!(v, [Verdict::Skip, Verdict::Log("[x] y".into()), Verdict::Skip]);
    }

    #[test]
    fn logging_none_logs_nothing() {
        for mode in [Mode::TransDiscard, Mode::SubDisable] {
            for c in 1..=3 {
                assert_eq!(verdict(mode, Logging::None, c, 2, "[x] y"), Verdict::Skip);
            }
        }
        assert!(!logs_failures(Logging::None));
        assert!(logs_failures(Logging::Discard));
    }

    #[test]
    fn discard_tries_every_operation() {
        for c in 1..=3 {
            assert_eq!(verdict(Mode::Discard, Logging::All, c, 2, "[x] y"), Verdict::Try);
        }
    }

    #[test]
    fn modes() {
        assert!(Mode::TransDiscard.moves_progress());
        assert!(Mode::Discard.moves_progress());
        assert!(!Mode::SubDisable.moves_progress());
        assert!(Mode::Discard.applies_operations());
        assert!(!Mode::TransDiscard.applies_operations());
    }

    #[test]
    fn texts() {
        assert_eq!(failed_text("23505", "duplicate key"), "[23505] duplicate key");
        assert_eq!(
            sub_disable_text("sub_n2_n1", "0/1A2B3C"),
            "subscription sub_n2_n1 disabled after an apply error; skip_lsn = 0/1A2B3C"
        );
    }

    #[test]
    fn skip_plans() {
        assert_eq!(skip_plan(0, 42), SkipPlan::None);
        assert_eq!(skip_plan(42, 42), SkipPlan::Skip);
        assert_eq!(skip_plan(42, 43), SkipPlan::Disarm);
    }

    #[test]
    fn json_rows() {
        let row = text_row_json([
            ("id", Some(Some("1"))),
            ("note", Some(None)),
            ("big", None),
            ("q\"uote", Some(Some("a\\b\n\u{1}é"))),
        ]);
        assert_eq!(row, r#"{"id":"1","note":null,"q\"uote":"a\\b\n\u0001é"}"#);
        assert_eq!(text_row_json([]), "{}");
    }
}
