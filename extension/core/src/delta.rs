//! Delta apply (behaviour.md §9, sql-api.md §5): which columns are applied
//! as deltas, where each written value comes from, and what an incoming
//! change does to a row with delta columns once last-update-wins has
//! decided. The arithmetic itself is the column's SQL function, called by
//! the apply worker.

/// The default `delta_apply_function`.
pub const DEFAULT_FUNCTION: &str = "spock.delta_apply";

/// The two column options of core patch 020, as read from the text of
/// `pg_attribute.attoptions` (`name=value` entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnOptions {
    pub log_old_value: bool,
    pub delta_apply_function: Option<String>,
}

/// How PostgreSQL spells true for a boolean option (`parse_bool`).
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "1" | "t" | "y" | "tr" | "tru" | "ye"
    )
}

impl ColumnOptions {
    /// Reads the options from `attoptions` entries; other options are ignored.
    pub fn parse<S: AsRef<str>>(attoptions: &[S]) -> ColumnOptions {
        let mut out = ColumnOptions::default();
        for entry in attoptions {
            let Some((key, value)) = entry.as_ref().split_once('=') else { continue };
            match key {
                "log_old_value" => out.log_old_value = truthy(value),
                "delta_apply_function" if !value.trim().is_empty() => {
                    out.delta_apply_function = Some(value.trim().to_string())
                }
                _ => {}
            }
        }
        out
    }

    /// The function that applies this column as a delta on a subscriber:
    /// the named one, or `spock.delta_apply` for a `log_old_value` column
    /// that names none; `None` for an ordinary column.
    pub fn delta_function(&self) -> Option<&str> {
        match (&self.delta_apply_function, self.log_old_value) {
            (Some(f), _) => Some(f.as_str()),
            (None, true) => Some(DEFAULT_FUNCTION),
            (None, false) => None,
        }
    }
}

/// Where the value written to a delta column comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `f(remote_old, remote_new, local_current)`.
    Computed,
    /// The incoming new value, as for an ordinary column: the provider sent
    /// no old value (its column was not `log_old_value` when the update
    /// happened), or one of the three values is NULL.
    RemoteNew,
}

/// The source of one delta column's value, from which of
/// (remote old, remote new, local current) are non-NULL.
pub fn source(remote_old: bool, remote_new: bool, local: bool) -> Source {
    if remote_old && remote_new && local { Source::Computed } else { Source::RemoteNew }
}

/// What an incoming UPDATE (or an INSERT that met a row) does to a row
/// with delta columns, once last-update-wins has decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The incoming row is written, its delta columns replaced by the
    /// computed values.
    WriteRemote,
    /// The local row stays, except that its delta columns take the computed
    /// values, in an update that keeps the local version's commit timestamp
    /// and origin (`n_dca`).
    ForceLocalDeltas,
    /// Nothing is written.
    Nothing,
}

/// The action for a change whose remote version `applies` (last-update-wins
/// or same origin), given whether any delta column's computed value differs
/// from the local one.
pub fn action(applies: bool, deltas_change_local: bool) -> Action {
    match (applies, deltas_change_local) {
        (true, _) => Action::WriteRemote,
        (false, true) => Action::ForceLocalDeltas,
        (false, false) => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_from_attoptions_text() {
        let o = ColumnOptions::parse(&["n_distinct=5", "log_old_value=true", "delta_apply_function=my.f"]);
        assert_eq!(o, ColumnOptions { log_old_value: true, delta_apply_function: Some("my.f".into()) });
        assert_eq!(o.delta_function(), Some("my.f"));
        for spelling in ["on", "1", "yes", "TRUE", "t"] {
            assert!(ColumnOptions::parse(&[format!("log_old_value={spelling}")]).log_old_value, "{spelling}");
        }
        for spelling in ["off", "0", "no", "false", "f"] {
            assert!(
                !ColumnOptions::parse(&[format!("log_old_value={spelling}")]).log_old_value,
                "{spelling}"
            );
        }
        let none: [&str; 0] = [];
        assert_eq!(ColumnOptions::parse(&none), ColumnOptions::default());
    }

    #[test]
    fn a_log_old_value_column_uses_the_default_function() {
        let o = ColumnOptions::parse(&["log_old_value=on"]);
        assert_eq!(o.delta_function(), Some(DEFAULT_FUNCTION));
        // A function alone makes a delta column too (the old value must
        // come from the provider's own log_old_value).
        assert_eq!(ColumnOptions::parse(&["delta_apply_function=f"]).delta_function(), Some("f"));
        assert_eq!(ColumnOptions::parse(&["log_old_value=off"]).delta_function(), None);
        // An empty name is no name.
        assert_eq!(ColumnOptions::parse(&["delta_apply_function="]).delta_function(), None);
    }

    #[test]
    fn a_missing_value_falls_back_to_the_remote_new_value() {
        assert_eq!(source(true, true, true), Source::Computed);
        assert_eq!(source(false, true, true), Source::RemoteNew);
        assert_eq!(source(true, true, false), Source::RemoteNew);
        assert_eq!(source(true, false, true), Source::RemoteNew);
    }

    #[test]
    fn an_increment_is_never_lost() {
        assert_eq!(action(true, true), Action::WriteRemote);
        assert_eq!(action(true, false), Action::WriteRemote);
        // Local wins, but its delta columns still take the increment.
        assert_eq!(action(false, true), Action::ForceLocalDeltas);
        assert_eq!(action(false, false), Action::Nothing);
    }
}
