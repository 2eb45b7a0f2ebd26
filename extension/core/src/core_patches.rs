//! The core patches the extension can use, how their presence is judged from
//! the symbols a server exports, and the messages about them.
//!
//! The names here are the contract between the patch series
//! (`patches/<major>/`) and the extension; the extension looks them up at
//! run time and never links against them.

use std::fmt;

/// One capability a core patch gives the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorePatch {
    /// Number in the series, e.g. `"020"`.
    pub number: &'static str,
    /// Name in the series, e.g. `"column-options"`.
    pub name: &'static str,
    /// The exported `const int` whose value is the patch's ABI revision.
    pub marker: &'static str,
    /// Functions the patch exports; all must be present.
    pub functions: &'static [&'static str],
    /// The ABI revision this extension understands.
    pub abi: i32,
    /// What is unavailable (or degraded) without the patch.
    pub features: &'static str,
}

/// Patch 020: column options and old values of flagged columns in WAL.
pub const COLUMN_OPTIONS: CorePatch = CorePatch {
    number: "020",
    name: "column-options",
    marker: "spock_patch_column_options_abi",
    functions: &[],
    abi: 1,
    features: "delta apply (column options log_old_value and delta_apply_function)",
};

/// Patch 030: commit timestamps as a logical clock.
pub const COMMIT_CLOCK: CorePatch = CorePatch {
    number: "030",
    name: "commit-clock",
    marker: "spock_patch_commit_clock_abi",
    functions: &["spock_commit_clock_read", "spock_commit_clock_advance"],
    abi: 1,
    features: "commit timestamps as a logical clock (last-update-wins falls back to wall-clock commit timestamps)",
};

/// Patch 040: per-subtransaction commit timestamp and origin overrides.
pub const SUBXACT_COMMIT_TS: CorePatch = CorePatch {
    number: "040",
    name: "subxact-commit-ts",
    marker: "spock_patch_subxact_commit_ts_abi",
    functions: &["spock_commit_ts_set_subxact"],
    abi: 1,
    features: "delta apply keeping the local row's commit timestamp and origin",
};

/// The capabilities of the spec's §2.3, in series order.
pub const CORE_PATCHES: [CorePatch; 3] = [COLUMN_OPTIONS, COMMIT_CLOCK, SUBXACT_COMMIT_TS];

/// What the server was found to carry for one patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Marker and functions present, revision as expected.
    Present { abi: i32 },
    /// No marker: a server built without the patch.
    Absent,
    /// A marker with another revision, or missing functions: the server and
    /// the extension come from different builds. The feature is refused.
    Mismatch { abi: i32, missing_function: Option<&'static str> },
}

impl Status {
    /// Judges a patch from its marker's value (None when the symbol is
    /// missing) and whether each exported function was found.
    pub fn judge(patch: &CorePatch, marker: Option<i32>, has_function: impl Fn(&str) -> bool) -> Status {
        let Some(abi) = marker else { return Status::Absent };
        let missing_function = patch.functions.iter().copied().find(|f| !has_function(f));
        if abi != patch.abi || missing_function.is_some() {
            return Status::Mismatch { abi, missing_function };
        }
        Status::Present { abi }
    }

    pub fn usable(&self) -> bool {
        matches!(self, Status::Present { .. })
    }

    /// The revision found, if any (`spock.core_patches.abi`).
    pub fn abi(&self) -> Option<i32> {
        match self {
            Status::Present { abi } | Status::Mismatch { abi, .. } => Some(*abi),
            Status::Absent => None,
        }
    }
}

impl CorePatch {
    /// `"020 column-options"`, as `spock.core_patches.patch` shows it.
    pub fn label(&self) -> String {
        format!("{} {}", self.number, self.name)
    }

    /// The patch file for a major, e.g. `pg18-020-column-options.diff`.
    pub fn file(&self, major: u32) -> String {
        format!("pg{major}-{}-{}.diff", self.number, self.name)
    }

    /// The message for a server where the patch is not usable, or None.
    pub fn problem(&self, status: Status, major: u32) -> Option<String> {
        match status {
            Status::Present { .. } => None,
            Status::Absent => Some(format!(
                "{} unavailable: this server was built without {}",
                self.features,
                self.file(major)
            )),
            Status::Mismatch { abi, missing_function } => Some(format!(
                "{} refused: this server carries {} at ABI revision {abi}{}, but this spock needs revision {}; \
                 the server and the extension come from different builds",
                self.features,
                self.file(major),
                match missing_function {
                    Some(f) => format!(" without {f}()"),
                    None => String::new(),
                },
                self.abi
            )),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Present { abi } => write!(f, "present (abi {abi})"),
            Status::Absent => write!(f, "absent"),
            Status::Mismatch { abi, .. } => write!(f, "mismatched (abi {abi})"),
        }
    }
}

/// One LOG line summarising what was found, e.g.
/// `core patches: 020 column-options present (abi 1), 030 commit-clock absent, ...`.
pub fn summary(found: &[(CorePatch, Status)]) -> String {
    let parts: Vec<String> = found.iter().map(|(p, s)| format!("{} {s}", p.label())).collect();
    format!("core patches: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_markers_and_functions() {
        let all = |_: &str| true;
        let none = |_: &str| false;
        assert_eq!(Status::judge(&COMMIT_CLOCK, Some(1), all), Status::Present { abi: 1 });
        assert_eq!(Status::judge(&COMMIT_CLOCK, None, all), Status::Absent);
        assert_eq!(
            Status::judge(&COMMIT_CLOCK, Some(2), all),
            Status::Mismatch { abi: 2, missing_function: None }
        );
        assert_eq!(
            Status::judge(&COMMIT_CLOCK, Some(1), none),
            Status::Mismatch { abi: 1, missing_function: Some("spock_commit_clock_read") }
        );
        // A patch without functions only needs its marker.
        assert!(Status::judge(&COLUMN_OPTIONS, Some(1), none).usable());
    }

    #[test]
    fn messages_name_the_patch_file() {
        assert_eq!(COLUMN_OPTIONS.file(17), "pg17-020-column-options.diff");
        let msg = COLUMN_OPTIONS.problem(Status::Absent, 17).unwrap();
        assert!(
            msg.starts_with("delta apply") && msg.ends_with("built without pg17-020-column-options.diff"),
            "{msg}"
        );
        assert!(COLUMN_OPTIONS.problem(Status::Present { abi: 1 }, 17).is_none());
        let mixed =
            SUBXACT_COMMIT_TS.problem(Status::Mismatch { abi: 3, missing_function: None }, 18).unwrap();
        assert!(mixed.contains("revision 3") && mixed.contains("different builds"), "{mixed}");
        assert_eq!(
            summary(&[(COLUMN_OPTIONS, Status::Present { abi: 1 }), (COMMIT_CLOCK, Status::Absent)]),
            "core patches: 020 column-options present (abi 1), 030 commit-clock absent"
        );
    }

    #[test]
    fn series_numbers_are_ordered_and_unique() {
        let numbers: Vec<&str> = CORE_PATCHES.iter().map(|p| p.number).collect();
        let mut sorted = numbers.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(numbers, sorted);
    }
}
