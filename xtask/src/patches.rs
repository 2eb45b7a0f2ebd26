//! The core patch series: discovery and ordering of `patches/<major>/`,
//! applying it to a fresh tree (atomically), `--check` and `--refresh`, and
//! the record of what a tree carries. Also the `cargo xtask patch` task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd::tool;
use crate::fetch::{self, Source};
use crate::flags::Patch;
use crate::fsutil::{self, sha256_bytes};
use crate::layout::{self, PgDirs};
use crate::versions::Manifest;
use crate::{tarball, ui};

/// Name of the file in a patch folder that lists optional patches.
pub const OPTIONAL_FILE: &str = "OPTIONAL";
/// The record of the applied series, written at the top of a patched tree.
pub const RECORD_FILE: &str = ".spock-series.json";

/// One patch file of a series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchFile {
    pub path: PathBuf,
    pub number: u32,
    pub name: String,
    pub sha256: String,
}

impl PatchFile {
    pub fn file_name(&self) -> String {
        self.path.file_name().unwrap().to_string_lossy().into_owned()
    }
}

/// The ordered series for one major.
#[derive(Clone, Debug)]
pub struct Series {
    pub major: u32,
    pub patches: Vec<PatchFile>,
    pub skipped_optional: Vec<PatchFile>,
}

/// Parses `pg<major>-<NNN>-<name>.diff`; the error explains the pattern.
pub fn parse_file_name(file_name: &str, major: u32) -> Result<(u32, String), String> {
    let expected = format!(
        "patch files must be named pg{major}-<NNN>-<name>.diff (NNN: three digits; name: lower-case \
         letters, digits and '-'), e.g. pg{major}-020-column-options.diff"
    );
    let bad = |why: &str| Err(format!("{file_name:?}: {why}; {expected}"));
    let Some(stem) = file_name.strip_suffix(".diff") else { return bad("not a .diff file") };
    let Some(rest) = stem.strip_prefix(&format!("pg{major}-")) else {
        return bad(&format!("does not start with pg{major}-"));
    };
    let Some((number, name)) = rest.split_once('-') else { return bad("no -<name> after the number") };
    if number.len() != 3 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the number is not three digits");
    }
    let name_ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !name_ok {
        return bad("the name is empty or has characters other than a-z, 0-9 and '-'");
    }
    Ok((number.parse().expect("three digits"), name.to_string()))
}

/// The patch folder of a major.
pub fn series_dir(major: u32) -> PathBuf {
    layout::project_root().join("patches").join(major.to_string())
}

/// Reads and orders the series in `dir`. Every file must be a correctly named
/// patch, the `OPTIONAL` list, or `.gitkeep`; numbers must be unique.
pub fn discover(dir: &Path, major: u32, with_optional: bool) -> Result<Series> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!("cannot read the patch folder {}; it must exist for every supported major", dir.display())
    })?;
    let mut optional: Vec<String> = Vec::new();
    let mut by_number: BTreeMap<u32, PatchFile> = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if file_name == ".gitkeep" {
            continue;
        }
        if file_name == OPTIONAL_FILE {
            let text = std::fs::read_to_string(&path)?;
            optional = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            continue;
        }
        if !entry.file_type()?.is_file() {
            bail!("{}: only patch files belong in {}", path.display(), dir.display());
        }
        let (number, name) = parse_file_name(&file_name, major)
            .map_err(|e| anyhow::anyhow!("bad file in patch folder {}: {e}", dir.display()))?;
        let sha256 = fsutil::sha256_file(&path)?;
        let patch = PatchFile { path, number, name, sha256 };
        if let Some(other) = by_number.get(&number) {
            bail!(
                "two patches in {} have the number {number:03}: {} and {}; renumber one of them",
                dir.display(),
                other.file_name(),
                patch.file_name()
            );
        }
        by_number.insert(number, patch);
    }
    for listed in &optional {
        if !by_number.values().any(|p| p.file_name() == *listed) {
            bail!("{}/{OPTIONAL_FILE} lists {listed}, which is not in the folder", dir.display());
        }
    }
    let (mut patches, mut skipped_optional) = (Vec::new(), Vec::new());
    for patch in by_number.into_values() {
        if !with_optional && optional.contains(&patch.file_name()) {
            skipped_optional.push(patch);
        } else {
            patches.push(patch);
        }
    }
    Ok(Series { major, patches, skipped_optional })
}

/// One patch as recorded with a tree and in `spock-core-patches.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedPatch {
    pub number: String,
    pub name: String,
    pub file: String,
    pub sha256: String,
}

/// What a patched tree carries; written at its top as `.spock-series.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeriesRecord {
    pub postgresql_version: String,
    pub tarball_sha256: String,
    pub patches: Vec<RecordedPatch>,
    pub skipped_optional: Vec<RecordedPatch>,
    /// SHA-256 over the applied patches' numbers, names and checksums.
    pub series_hash: String,
}

fn recorded(p: &PatchFile) -> RecordedPatch {
    RecordedPatch {
        number: format!("{:03}", p.number),
        name: p.name.clone(),
        file: p.file_name(),
        sha256: p.sha256.clone(),
    }
}

impl Series {
    /// Hash of the applied series: any changed, added or removed patch changes it.
    pub fn hash(&self) -> String {
        let text: String =
            self.patches.iter().map(|p| format!("{:03} {} {}\n", p.number, p.name, p.sha256)).collect();
        sha256_bytes(text.as_bytes())
    }

    pub fn record(&self, source: &Source) -> SeriesRecord {
        SeriesRecord {
            postgresql_version: source.version.to_string(),
            tarball_sha256: source.sha256.clone(),
            patches: self.patches.iter().map(recorded).collect(),
            skipped_optional: self.skipped_optional.iter().map(recorded).collect(),
            series_hash: self.hash(),
        }
    }
}

impl SeriesRecord {
    /// The `--with-extra-version` suffix that marks a patched build.
    pub fn extra_version(&self) -> String {
        format!("-spock.{}", &self.series_hash[..8])
    }
}

/// What `patch` said about one patch.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub ok: bool,
    /// "Hunk #2 succeeded at 130 (offset 4 lines)." lines.
    pub offsets: Vec<String>,
    pub fuzz: Vec<String>,
    /// Contents of the reject files, or patch's own complaint.
    pub rejects: String,
}

/// Applies one patch in `tree` with `patch -p1 --forward --batch`, with fuzz 0
/// unless `allow_fuzz`.
pub fn apply_one(tree: &Path, patch: &Path, allow_fuzz: bool) -> Result<ApplyReport> {
    let mut args: Vec<String> =
        vec!["-p1".into(), "--forward".into(), "--batch".into(), "--no-backup-if-mismatch".into()];
    if !allow_fuzz {
        args.push("--fuzz=0".into());
    }
    args.push("-i".into());
    args.push(patch.display().to_string());
    let out = tool("patch", &args)
        .dir(tree)
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("cannot run `patch`; install it (see `cargo xtask doctor`)")?;
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut report = ApplyReport { ok: out.status.success(), ..Default::default() };
    for line in output.lines() {
        if line.contains("with fuzz") {
            report.fuzz.push(line.trim().to_string());
        } else if line.contains("(offset") {
            report.offsets.push(line.trim().to_string());
        }
        if let Some(rej) = line.split("saving rejects to file ").nth(1) {
            let rej = rej.trim().trim_end_matches('.');
            let text = std::fs::read_to_string(tree.join(rej)).unwrap_or_default();
            report.rejects.push_str(&format!("--- {rej} ---\n{text}"));
        }
    }
    if !allow_fuzz && !report.fuzz.is_empty() {
        report.ok = false;
    }
    if !report.ok && report.rejects.is_empty() {
        report.rejects = output;
    }
    Ok(report)
}

/// Unpacks a fresh tree from `source` into a temporary directory next to
/// `dest`, applies `series`, records it, and only then moves it to `dest`.
/// A failing patch leaves `dest` exactly as it was.
pub fn prepare_tree(source: &Source, series: &Series, dest: &Path) -> Result<SeriesRecord> {
    let parent = dest.parent().context("tree path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".src-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a temporary directory in {}", parent.display()))?;
    let tree = work.path().join("tree");
    let step = ui::Step::start(format!("Unpacking {}", source.path.display()));
    tarball::unpack_single_root(&source.path, &tree)?;
    step.done("");
    if !series.patches.is_empty() {
        let step = ui::Step::start(format!(
            "Applying {} patch(es) from {}",
            series.patches.len(),
            series_dir(series.major).display()
        ));
        for patch in &series.patches {
            let report = apply_one(&tree, &patch.path, false)?;
            if !report.ok {
                bail!(
                    "patch {} does not apply to PostgreSQL {}; the source tree was left as it was.\n{}\n\
                     Rebase it (cargo xtask patch --pg {} --refresh) or fix the patch.",
                    patch.file_name(),
                    source.version,
                    report.rejects.trim_end(),
                    source.version
                );
            }
            for line in &report.offsets {
                ui::note(format!("{}: {line}", patch.file_name()));
            }
        }
        step.done("all applied");
    }
    for skipped in &series.skipped_optional {
        ui::note(format!("skipped optional patch {} (use --with-optional)", skipped.file_name()));
    }
    let record = series.record(source);
    fsutil::write_json(&tree.join(RECORD_FILE), &record)?;

    // Swap the new tree into place.
    let old = work.path().join("old");
    if dest.exists() {
        std::fs::rename(dest, &old).with_context(|| format!("cannot move {} aside", dest.display()))?;
    }
    std::fs::rename(&tree, dest)
        .with_context(|| format!("cannot move the new tree to {}", dest.display()))?;
    drop(work); // removes the old tree
    Ok(record)
}

/// The record of the tree at `dir`, if it has one.
pub fn read_record(dir: &Path) -> Option<SeriesRecord> {
    fsutil::read_json(&dir.join(RECORD_FILE))
}

/// Makes sure `dirs.src()` is a tree of `source` with `series` applied;
/// returns its record and whether a fresh tree was made.
pub fn ensure_tree(dirs: &PgDirs, source: &Source, series: &Series) -> Result<(SeriesRecord, bool)> {
    let wanted = series.record(source);
    if read_record(&dirs.src()).as_ref() == Some(&wanted) {
        return Ok((wanted, false));
    }
    Ok((prepare_tree(source, series, &dirs.src())?, true))
}

/// Files a unified diff touches, from its `---`/`+++` lines, without the
/// `a/`/`b/` prefix; `(path, exists_before, exists_after)`.
pub fn touched_files(diff: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let mut lines = diff.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(old) = line.strip_prefix("--- ") else { continue };
        let Some(new) = lines.peek().and_then(|l| l.strip_prefix("+++ ")) else { continue };
        lines.next();
        let clean = |p: &str| p.split('\t').next().unwrap_or("").trim().to_string();
        let (old, new) = (clean(old), clean(new));
        let strip = |p: &str| p.split_once('/').map(|(_, rest)| rest.to_string()).unwrap_or_default();
        let before = old != "/dev/null";
        let after = new != "/dev/null";
        let path = if after { strip(&new) } else { strip(&old) };
        if !path.is_empty() && !out.iter().any(|(p, _, _)| *p == path) {
            out.push((path, before, after));
        }
    }
    out
}

/// Splits a patch file into its plain-text preamble and the diff.
pub fn split_preamble(text: &str) -> (&str, &str) {
    let mut offset = 0;
    let mut prev_start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("diff ") || line.starts_with("Index: ") {
            return (&text[..offset], &text[offset..]);
        }
        if line.starts_with("+++ ")
            && let Some(start) = prev_start
        {
            return (&text[..start], &text[start..]);
        }
        prev_start = line.starts_with("--- ").then_some(offset);
        offset += line.len();
    }
    (text, "")
}

impl Patch {
    pub fn run(self) -> Result<()> {
        let manifest = Manifest::builtin();
        if self.source_tarball.is_some() && self.pg.len() != 1 {
            bail!("--source-tarball names one file; give exactly one --pg with it");
        }
        let mut failed = Vec::new();
        for request in &self.pg {
            let resolved = manifest.resolve(*request);
            let major = resolved.version.major;
            let series = discover(&series_dir(major), major, self.with_optional)?;
            ui::note(format!(
                "PostgreSQL {}: {} patch(es) in {}{}",
                resolved.version,
                series.patches.len(),
                series_dir(major).display(),
                if series.skipped_optional.is_empty() {
                    String::new()
                } else {
                    format!(", {} optional skipped", series.skipped_optional.len())
                }
            ));
            let source = fetch::obtain(&resolved, self.source_tarball.as_deref()).with_context(|| {
                format!(
                    "cannot {} the series for PostgreSQL {}",
                    if self.check { "check" } else { "apply" },
                    resolved.version
                )
            })?;
            if self.check {
                if !check(&source, &series)? {
                    failed.push(resolved.version.to_string());
                }
            } else if self.refresh {
                refresh(&source, &series)?;
            } else {
                let dirs = PgDirs::new(major, self.profile);
                let (record, fresh) = ensure_tree(&dirs, &source, &series)?;
                println!(
                    "{} ({}, series {})",
                    dirs.src().display(),
                    if fresh { "fresh tree" } else { "unchanged" },
                    &record.series_hash[..8]
                );
            }
        }
        if !failed.is_empty() {
            bail!("the patch series does not apply cleanly to PostgreSQL {}", failed.join(", "));
        }
        Ok(())
    }
}

/// Applies the series to a throw-away tree and reports on every patch.
/// Returns whether all applied with no fuzz. Nothing outside a temporary
/// directory is changed.
pub fn check(source: &Source, series: &Series) -> Result<bool> {
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let tree = work.path().join("tree");
    tarball::unpack_single_root(&source.path, &tree)?;
    let mut all_ok = true;
    for patch in &series.patches {
        let report = apply_one(&tree, &patch.path, false)?;
        if report.ok && report.offsets.is_empty() {
            println!("ok      {}", patch.file_name());
        } else if report.ok {
            println!("offsets {} ({})", patch.file_name(), report.offsets.join("; "));
        } else {
            all_ok = false;
            println!("FAILED  {}\n{}", patch.file_name(), report.rejects.trim_end());
        }
    }
    for skipped in &series.skipped_optional {
        println!("skipped {} (optional; use --with-optional)", skipped.file_name());
    }
    if series.patches.is_empty() {
        println!("(the series for PostgreSQL {} is empty)", source.version);
    }
    Ok(all_ok)
}

/// Applies each patch with patch's default fuzz to a scratch tree and rewrites
/// the patch file from the result, keeping its preamble, so that it applies to
/// `source` with no fuzz and no offsets.
pub fn refresh(source: &Source, series: &Series) -> Result<()> {
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let tree = work.path().join("tree");
    tarball::unpack_single_root(&source.path, &tree)?;
    for patch in &series.patches {
        let text = std::fs::read_to_string(&patch.path)?;
        let (preamble, diff) = split_preamble(&text);
        let files = touched_files(diff);
        if files.is_empty() {
            bail!("{} contains no unified diff", patch.file_name());
        }
        let before = work.path().join(format!("before-{:03}", patch.number));
        for (file, existed, _) in &files {
            if *existed {
                let to = before.join(file);
                std::fs::create_dir_all(to.parent().unwrap())?;
                std::fs::copy(tree.join(file), &to)
                    .with_context(|| format!("{} patches {file}, which the tree lacks", patch.file_name()))?;
            }
        }
        let report = apply_one(&tree, &patch.path, true)?;
        if !report.ok {
            bail!(
                "{} does not apply to PostgreSQL {} even with fuzz; rebase it by hand:\n{}",
                patch.file_name(),
                source.version,
                report.rejects.trim_end()
            );
        }
        let mut new_diff = String::new();
        for (file, existed, exists) in &files {
            let old = if *existed { before.join(file) } else { PathBuf::from("/dev/null") };
            let new = if *exists { tree.join(file) } else { PathBuf::from("/dev/null") };
            let old_label = if *existed { format!("a/{file}") } else { "/dev/null".into() };
            let new_label = if *exists { format!("b/{file}") } else { "/dev/null".into() };
            let out = tool(
                "diff",
                [
                    "-u",
                    "-p",
                    "--label",
                    &old_label,
                    "--label",
                    &new_label,
                    &old.display().to_string(),
                    &new.display().to_string(),
                ],
            )
            .stdout_capture()
            .unchecked()
            .run()
            .context("cannot run `diff`")?;
            // diff exits 1 when the files differ, which is the expected case.
            if out.status.code() == Some(2) {
                bail!("diff failed on {file}");
            }
            new_diff.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        let new_text = format!("{preamble}{new_diff}");
        if new_text == text {
            println!("unchanged {}", patch.file_name());
        } else {
            fsutil::write_atomic(&patch.path, new_text.as_bytes())?;
            let how = if report.fuzz.is_empty() { "offsets" } else { "fuzz" };
            println!(
                "refreshed {} (had {how}: {})",
                patch.file_name(),
                [report.offsets, report.fuzz].concat().join("; ")
            );
        }
    }
    println!("Now rebuild and test: cargo xtask test-patches --pg {}", source.version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::tests::make_tarball;
    use crate::versions::PgVersion;

    #[test]
    fn names_are_strict() {
        assert_eq!(parse_file_name("pg17-020-column-options.diff", 17), Ok((20, "column-options".into())));
        assert_eq!(parse_file_name("pg17-100-x.diff", 17), Ok((100, "x".into())));
        for bad in [
            "pg17-20-x.diff",
            "pg16-020-x.diff",
            "pg17-020-x.patch",
            "pg17-020-.diff",
            "pg17-020-Col.diff",
            "pg17-020x.diff",
            "README.md",
            "pg17-0200-x.diff",
        ] {
            let err = parse_file_name(bad, 17).unwrap_err();
            assert!(err.contains("pg17-<NNN>-<name>.diff"), "{bad}: {err}");
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn series_is_in_numeric_order_and_validated() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pg17-100-later.diff", "x");
        write(dir.path(), "pg17-025-early.diff", "y");
        write(dir.path(), "pg17-010-opt.diff", "z");
        write(dir.path(), OPTIONAL_FILE, "# optional patches\npg17-010-opt.diff\n");
        let s = discover(dir.path(), 17, false).unwrap();
        let names: Vec<_> = s.patches.iter().map(|p| p.file_name()).collect();
        assert_eq!(names, ["pg17-025-early.diff", "pg17-100-later.diff"]);
        assert_eq!(s.skipped_optional.len(), 1);
        let with = discover(dir.path(), 17, true).unwrap();
        assert_eq!(with.patches[0].file_name(), "pg17-010-opt.diff");
        assert_ne!(s.hash(), with.hash());

        write(dir.path(), "pg17-025-dup.diff", "w");
        let err = discover(dir.path(), 17, false).unwrap_err().to_string();
        assert!(err.contains("number 025"), "{err}");
        std::fs::remove_file(dir.path().join("pg17-025-dup.diff")).unwrap();

        write(dir.path(), "notes.txt", "w");
        let err = discover(dir.path(), 17, false).unwrap_err().to_string();
        assert!(err.contains("notes.txt") && err.contains("pg17-<NNN>-<name>.diff"), "{err}");
    }

    #[test]
    fn hash_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pg18-020-a.diff", "one");
        let h1 = discover(dir.path(), 18, false).unwrap().hash();
        write(dir.path(), "pg18-020-a.diff", "two");
        let h2 = discover(dir.path(), 18, false).unwrap().hash();
        assert_ne!(h1, h2);
    }

    #[test]
    fn real_series_folders_are_well_formed() {
        for major in crate::versions::SUPPORTED_MAJORS {
            discover(&series_dir(major), major, true).unwrap();
        }
    }

    #[test]
    fn preamble_and_touched_files() {
        let text = "Title: x\n\nSome words.\n--- a/src/one.c\n+++ b/src/one.c\n@@ -1 +1 @@\n-a\n+b\n\
                    --- /dev/null\n+++ b/src/new.h\n@@ -0,0 +1 @@\n+x\n";
        let (pre, diff) = split_preamble(text);
        assert_eq!(pre, "Title: x\n\nSome words.\n");
        assert!(diff.starts_with("--- a/src/one.c"));
        assert_eq!(
            touched_files(diff),
            vec![("src/one.c".into(), true, true), ("src/new.h".into(), false, true)]
        );
        let git = "preamble\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n";
        assert_eq!(split_preamble(git).0, "preamble\n");
        // A preamble line that merely starts with "--- " is not a diff header.
        let dashes = "--- notes ---\nmore\n--- a/x\n+++ b/x\n";
        assert_eq!(split_preamble(dashes).0, "--- notes ---\nmore\n");
    }

    /// A fixture "source tarball" and patch series that exercise the machinery
    /// without PostgreSQL.
    struct Fixture {
        _dir: tempfile::TempDir,
        source: Source,
        patches: PathBuf,
        dest: PathBuf,
    }

    const FILE_C: &str = "int one(void)\n{\n\treturn 1;\n}\n\nint two(void)\n{\n\treturn 2;\n}\n\nint three(void)\n{\n\treturn 3;\n}\n";

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("mini-1.0.tar.bz2");
        make_tarball(
            &tb,
            &[("mini-1.0/", ""), ("mini-1.0/src/file.c", FILE_C), ("mini-1.0/README", "mini\n")],
        );
        let sha256 = fsutil::sha256_file(&tb).unwrap();
        let patches = dir.path().join("patches");
        std::fs::create_dir(&patches).unwrap();
        let dest = dir.path().join("pg").join("src");
        let source = Source { version: PgVersion { major: 18, minor: 0 }, path: tb, sha256 };
        Fixture { _dir: dir, source, patches, dest }
    }

    const GOOD: &str = "Title: make two return 22\n\n--- a/src/file.c\n+++ b/src/file.c\n@@ -6,5 +6,5 @@ int one(void)\n int two(void)\n {\n-\treturn 2;\n+\treturn 22;\n }\n \n";
    const ADD: &str = "--- /dev/null\n+++ b/src/added.h\n@@ -0,0 +1 @@\n+#define ADDED 1\n";
    const WRONG_CONTEXT: &str = "--- a/src/file.c\n+++ b/src/file.c\n@@ -11,4 +11,4 @@\n int three(void)\n {\n-\treturn 33;\n+\treturn 4;\n }\n";
    // Same change as GOOD, but its line numbers are off by two.
    const OFFSET: &str =
        "--- a/src/file.c\n+++ b/src/file.c\n@@ -13,3 +13,3 @@\n {\n-\treturn 3;\n+\treturn 30;\n }\n";

    #[test]
    fn series_applies_in_order_and_is_recorded() {
        let f = fixture();
        write(&f.patches, "pg18-010-two.diff", GOOD);
        write(&f.patches, "pg18-020-add.diff", ADD);
        let series = discover(&f.patches, 18, false).unwrap();
        let record = prepare_tree(&f.source, &series, &f.dest).unwrap();
        assert!(std::fs::read_to_string(f.dest.join("src/file.c")).unwrap().contains("return 22;"));
        assert!(f.dest.join("src/added.h").exists());
        assert_eq!(read_record(&f.dest), Some(record.clone()));
        assert_eq!(record.patches.len(), 2);
        assert_eq!(record.patches[0].number, "010");
        assert!(record.extra_version().starts_with("-spock.") && record.extra_version().len() == 15);
    }

    #[test]
    fn failing_patch_names_itself_and_leaves_the_tree_alone() {
        let f = fixture();
        write(&f.patches, "pg18-010-two.diff", GOOD);
        let good = discover(&f.patches, 18, false).unwrap();
        prepare_tree(&f.source, &good, &f.dest).unwrap();
        let before = std::fs::read_to_string(f.dest.join("src/file.c")).unwrap();

        write(&f.patches, "pg18-020-wrong.diff", WRONG_CONTEXT);
        let bad = discover(&f.patches, 18, false).unwrap();
        let err = prepare_tree(&f.source, &bad, &f.dest).unwrap_err().to_string();
        assert!(err.contains("pg18-020-wrong.diff"), "{err}");
        assert!(err.contains("return 33;"), "the rejected hunk is shown: {err}");
        assert_eq!(std::fs::read_to_string(f.dest.join("src/file.c")).unwrap(), before);
        assert_eq!(read_record(&f.dest).unwrap().patches.len(), 1, "old record kept");
        let leftovers: Vec<_> = std::fs::read_dir(f.dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, ["src"], "no temporary trees are left behind");

        assert!(!check(&f.source, &bad).unwrap());
        assert!(check(&f.source, &good).unwrap());
    }

    #[test]
    fn refresh_rewrites_offsets_away_and_keeps_the_preamble() {
        let f = fixture();
        let text = format!("Title: offset fixture\n\n{OFFSET}");
        write(&f.patches, "pg18-030-offset.diff", &text);
        let series = discover(&f.patches, 18, false).unwrap();
        let report = {
            let work = tempfile::tempdir().unwrap();
            let tree = work.path().join("t");
            tarball::unpack_single_root(&f.source.path, &tree).unwrap();
            apply_one(&tree, &series.patches[0].path, false).unwrap()
        };
        assert!(report.ok && !report.offsets.is_empty(), "fixture must need an offset: {report:?}");

        refresh(&f.source, &series).unwrap();
        let new_text = std::fs::read_to_string(&series.patches[0].path).unwrap();
        assert!(
            new_text.starts_with("Title: offset fixture\n\n--- a/src/file.c\n+++ b/src/file.c\n"),
            "{new_text}"
        );
        let series = discover(&f.patches, 18, false).unwrap();
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().join("t");
        tarball::unpack_single_root(&f.source.path, &tree).unwrap();
        let report = apply_one(&tree, &series.patches[0].path, false).unwrap();
        assert!(report.ok && report.offsets.is_empty(), "{report:?}");
        assert!(std::fs::read_to_string(tree.join("src/file.c")).unwrap().contains("return 30;"));
    }
}
