//! The ABI promise behind our server packages standing in for the
//! distribution's (packaging/README.md): extensions built against a stock
//! server of the same minor load into ours. Checked against the stock build
//! of the negative control: every symbol the stock `postgres` exports is
//! exported by ours with the same kind (the patches only add symbols), the
//! values that make up an extension's `PG_MODULE_MAGIC` block are equal, and
//! the patches change no line of a stock header (they only add lines).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, tool};
use crate::pgbuild::Installed;

/// The defines that make up the magic block PostgreSQL compares when it
/// loads a module (fmgr.h's `Pg_abi_values`): the major (from
/// `PG_VERSION_NUM`), `FUNC_MAX_ARGS`, `INDEX_MAX_KEYS`, `NAMEDATALEN`,
/// `FMGR_ABI_EXTRA`; `FLOAT8PASSBYVAL` is derived in `c.h`, whose lines the
/// header check covers.
const MAGIC: [&str; 5] =
    ["PG_VERSION_NUM", "FUNC_MAX_ARGS", "INDEX_MAX_KEYS", "NAMEDATALEN", "FMGR_ABI_EXTRA"];

/// Lines of `pg_config.h` that differ by design: the version with our extra
/// version, and how configure was called.
const EXPECTED_TO_DIFFER: [&str; 3] = ["PG_VERSION", "PG_VERSION_STR", "CONFIGURE_ARGS"];

/// Compares the patched build with the stock build of the same minor and
/// profile; returns a one-line summary, or an error listing what breaks the
/// promise.
pub fn compare(patched: &Installed, stock: &Installed) -> Result<String> {
    let symbols = |i: &Installed| -> Result<BTreeMap<String, char>> {
        let postgres = i.bin("postgres");
        let out = cmd::read(
            tool("nm", ["-D".into(), "--defined-only".into(), postgres.clone().into_os_string()]),
            &format!("nm -D {}", postgres.display()),
        )?;
        Ok(parse_nm(&out))
    };
    let symbols = compare_symbols(&symbols(stock)?, &symbols(patched)?);
    let (stock_inc, patched_inc) = (server_includes(stock)?, server_includes(patched)?);
    let defines = |dir: &Path| -> Result<BTreeMap<String, String>> {
        let mut all = BTreeMap::new();
        for file in ["pg_config.h", "pg_config_manual.h"] {
            let path = dir.join(file);
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            all.extend(parse_defines(&text));
        }
        Ok(all)
    };
    let (stock_defs, patched_defs) = (defines(&stock_inc)?, defines(&patched_inc)?);
    let mut problems = Vec::new();
    for name in &symbols.missing {
        problems.push(format!("the stock server exports {name}, ours does not"));
    }
    for (name, was, is) in &symbols.changed {
        problems.push(format!("symbol {name} is of kind {was} in the stock server, {is} in ours"));
    }
    for name in MAGIC {
        let (s, p) = (stock_defs.get(name), patched_defs.get(name));
        if s.is_none() || s != p {
            problems.push(format!("magic-block value {name}: stock {s:?}, ours {p:?}"));
        }
    }
    for (name, value) in &stock_defs {
        if !EXPECTED_TO_DIFFER.contains(&name.as_str()) && patched_defs.get(name) != Some(value) {
            problems.push(format!(
                "configuration define {name}: stock {value}, ours {:?}",
                patched_defs.get(name)
            ));
        }
    }
    let mut changed_headers = Vec::new();
    for file in header_files(&stock_inc)? {
        let rel = file.strip_prefix(&stock_inc).expect("below the include directory");
        if ["pg_config.h", "pg_config_manual.h"].contains(&rel.to_string_lossy().as_ref()) {
            continue;
        }
        let ours = patched_inc.join(rel);
        let (a, b) = (std::fs::read(&file)?, std::fs::read(&ours).unwrap_or_default());
        if a == b {
            continue;
        }
        changed_headers.push(rel.display().to_string());
        let removed = removed_lines(&String::from_utf8_lossy(&a), &String::from_utf8_lossy(&b));
        if !removed.is_empty() {
            problems.push(format!(
                "the patches change or remove lines of {}: {}",
                rel.display(),
                removed.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the patched server breaks the ABI of the stock build of the same minor (packaging/README.md):\n  {}",
            problems.join("\n  ")
        );
    }
    let magic: Vec<String> = MAGIC
        .iter()
        .map(|m| format!("{m}={}", stock_defs.get(*m).map(String::as_str).unwrap_or("?")))
        .collect();
    Ok(format!(
        "{} stock symbols kept, {} added ({}); magic block equal ({}); {} header(s) with added lines only ({})",
        symbols.kept,
        symbols.added.len(),
        symbols.added.join(", "),
        magic.join(", "),
        changed_headers.len(),
        changed_headers.join(", ")
    ))
}

fn server_includes(i: &Installed) -> Result<PathBuf> {
    let out = cmd::read(tool(i.dirs.pg_config(), ["--includedir-server"]), "pg_config --includedir-server")?;
    Ok(PathBuf::from(out.trim()))
}

fn header_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "h") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `nm -D --defined-only` output as symbol -> kind letter.
fn parse_nm(text: &str) -> BTreeMap<String, char> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?.chars().next()?;
            // Versioned names (`name@@VERSION`) compare by name.
            Some((name.split('@').next().unwrap_or(name).to_string(), kind))
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct SymbolReport {
    kept: usize,
    missing: Vec<String>,
    changed: Vec<(String, char, char)>,
    added: Vec<String>,
}

fn compare_symbols(stock: &BTreeMap<String, char>, ours: &BTreeMap<String, char>) -> SymbolReport {
    let mut report = SymbolReport { kept: 0, missing: Vec::new(), changed: Vec::new(), added: Vec::new() };
    for (name, kind) in stock {
        match ours.get(name) {
            None => report.missing.push(name.clone()),
            Some(k) if k != kind => report.changed.push((name.clone(), *kind, *k)),
            Some(_) => report.kept += 1,
        }
    }
    report.added = ours.keys().filter(|n| !stock.contains_key(*n)).cloned().collect();
    report
}

/// `#define NAME value` lines (function-like macros left out).
fn parse_defines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("#define")?;
            let rest = rest.trim_start();
            let end = rest.find(|c: char| c.is_whitespace() || c == '(').unwrap_or(rest.len());
            if rest[end..].starts_with('(') {
                return None;
            }
            let value = rest[end..].split("/*").next().unwrap_or("").trim();
            Some((rest[..end].to_string(), value.to_string()))
        })
        .collect()
}

/// Lines of `old` that `new` does not keep in order: what a patch changed
/// or removed, as opposed to lines it only added. A longest common
/// subsequence of lines; headers are small enough.
fn removed_lines(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut removed) = (0, 0, Vec::new());
    while i < n {
        if j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && lcs[i][j + 1] >= lcs[i + 1][j] {
            j += 1;
        } else {
            removed.push(a[i].trim().to_string());
            i += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_may_be_added_but_not_removed_or_changed() {
        let stock = parse_nm("0000000000a1 T heap_insert\n0000000000b2 D work_mem\n00000c3 T gone@@V1\n");
        let ours = parse_nm("0000000000a1 T heap_insert\n0000000000b2 B work_mem\n0000d4 T spock_extra\n");
        let r = compare_symbols(&stock, &ours);
        assert_eq!(r.kept, 1);
        assert_eq!(r.missing, vec!["gone".to_string()]);
        assert_eq!(r.changed, vec![("work_mem".to_string(), 'D', 'B')]);
        assert_eq!(r.added, vec!["spock_extra".to_string()]);
    }

    #[test]
    fn defines_are_read_without_comments_or_function_macros() {
        let d = parse_defines(
            "#define NAMEDATALEN 64\n#define FUNC_MAX_ARGS\t\t100 /* max */\n#define F(x) (x)\n  #define E\n",
        );
        assert_eq!(d.get("NAMEDATALEN").map(String::as_str), Some("64"));
        assert_eq!(d.get("FUNC_MAX_ARGS").map(String::as_str), Some("100"));
        assert_eq!(d.get("E").map(String::as_str), Some(""));
        assert!(!d.contains_key("F"));
    }

    #[test]
    fn added_lines_are_fine_changed_ones_are_reported() {
        let stock = "a\nstruct s {\n int x;\n};\nz\n";
        assert!(removed_lines(stock, "a\nnew\nstruct s {\n int x;\n};\nz\nmore\n").is_empty());
        assert_eq!(removed_lines(stock, "a\nstruct s {\n long x;\n};\nz\n"), vec!["int x;".to_string()]);
        assert_eq!(removed_lines(stock, "a\nz\n"), vec!["struct s {", "int x;", "};"]);
    }
}
