//! Fetching the upstream tarball from Debian's source archive with
//! `apt-get source --download-only`, through a private apt state directory
//! whose `deb-src` entries are derived from the system's own apt sources.
//!
//! No archive host is written in the repository: the archive URI and its
//! keyring come from the system's configuration.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cmd::{self, tool};
use crate::versions::{DebianSource, PgVersion};
use crate::{layout, ui};

/// Why Debian's source archive did not deliver the tarball: not usable on
/// this machine (the caller tries its next route), or a real failure that
/// must stop the run.
pub enum Miss {
    Unavailable(String),
    Failed(anyhow::Error),
}

/// One apt source entry of type `deb`, as configured on the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AptSource {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The `Signed-By` value (a keyring path or an inline key), if any.
    pub signed_by: Option<String>,
}

/// Parses `sources.list`-style one-line entries (`deb [opts] uri suite comps`).
pub fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else {
            continue;
        };
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(after) = rest.strip_prefix('[') {
            let Some((opts, tail)) = after.split_once(']') else { continue };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = tail.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else { continue };
        out.push(AptSource {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            signed_by,
        });
    }
    out
}

/// Parses deb822 `.sources` paragraphs, keeping enabled entries of type `deb`.
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in para.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| fields.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        let words =
            |k: &str| get(k).map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
        let types: Vec<String> = words("types");
        if !types.iter().any(|t| t == "deb") {
            continue;
        }
        if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        let entry = AptSource {
            uris: words("uris"),
            suites: words("suites"),
            components: words("components"),
            signed_by: get("signed-by"),
        };
        if !entry.uris.is_empty() && !entry.suites.is_empty() {
            out.push(entry);
        }
    }
    out
}

/// Picks the distribution's main archive among the system's entries: one that
/// carries `main` for a plain release suite (not -security, -updates or
/// -backports), preferring the system's own codename.
pub fn choose_archive<'a>(entries: &'a [AptSource], codename: Option<&str>) -> Option<&'a AptSource> {
    let plain = |s: &String| !s.contains('/') && !s.contains('-');
    let candidates: Vec<&AptSource> = entries
        .iter()
        .filter(|e| e.components.iter().any(|c| c == "main") && e.suites.iter().any(plain))
        .collect();
    candidates
        .iter()
        .find(|e| codename.is_some_and(|c| e.suites.iter().any(|s| s == c)))
        .or(candidates.first())
        .copied()
}

/// The deb822 `deb-src` entry for `suite` in the same archive with the same keyring.
pub fn render_deb_src(archive: &AptSource, suite: &str) -> String {
    let mut s =
        format!("Types: deb-src\nURIs: {}\nSuites: {suite}\nComponents: main\n", archive.uris.join(" "));
    if let Some(key) = &archive.signed_by {
        let mut lines = key.lines();
        s.push_str(&format!("Signed-By: {}\n", lines.next().unwrap_or("")));
        for line in lines {
            s.push_str(&format!(" {}\n", if line.is_empty() { "." } else { line }));
        }
    }
    s
}

/// Reads the system's apt sources (`/etc/apt/sources.list`, `.list` and
/// `.sources` files in `/etc/apt/sources.list.d`).
fn system_sources() -> Vec<AptSource> {
    let mut entries = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => entries.extend(parse_one_line(&text)),
                Some("sources") => entries.extend(parse_deb822(&text)),
                _ => {}
            }
        }
    }
    entries
}

fn system_codename() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// Downloads `postgresql-NN_X.Y.orig.tar.bz2` into `downloads` under a
/// temporary name and returns its path; the caller verifies and renames it.
pub fn fetch_orig(version: PgVersion, deb: &DebianSource, downloads: &Path) -> Result<PathBuf, Miss> {
    let unavailable = |s: String| Miss::Unavailable(s);
    if cmd::on_path("apt-get").is_none() {
        return Err(unavailable("apt-get is not installed (not a Debian-family system)".into()));
    }
    let entries = system_sources();
    let Some(archive) = choose_archive(&entries, system_codename().as_deref()) else {
        return Err(unavailable(
            "no Debian archive with a `main` component in /etc/apt/sources.list{,.d}".into(),
        ));
    };

    let fail = |e: anyhow::Error| Miss::Failed(e);
    let apt = layout::apt_dir().map_err(fail)?;
    for sub in ["state/lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"] {
        std::fs::create_dir_all(apt.join(sub))
            .with_context(|| format!("cannot create {}", apt.join(sub).display()))
            .map_err(fail)?;
    }
    std::fs::write(apt.join("etc/sources.list"), "")
        .context("cannot write the private sources.list")
        .map_err(fail)?;
    std::fs::write(
        apt.join("etc/sources.list.d/postgresql-source.sources"),
        render_deb_src(archive, &deb.suite),
    )
    .context("cannot write the private deb-src entry")
    .map_err(fail)?;

    let mut opts: Vec<String> = Vec::new();
    let mut opt = |k: &str, v: &Path| {
        opts.push("-o".into());
        opts.push(format!("{k}={}", v.display()));
    };
    opt("Dir::State", &apt.join("state"));
    opt("Dir::Cache", &apt.join("cache"));
    opt("Dir::Etc::SourceList", &apt.join("etc/sources.list"));
    opt("Dir::Etc::SourceParts", &apt.join("etc/sources.list.d"));
    opt("Dir::Etc::Preferences", &apt.join("etc/preferences"));
    opt("Dir::Etc::PreferencesParts", &apt.join("etc/preferences.d"));
    if nix::unistd::geteuid().is_root() {
        // Files in the private directories are not reachable by apt's `_apt`
        // download sandbox user; downloading as root is what apt falls back to anyway.
        opts.extend(["-o".into(), "APT::Sandbox::User=root".into()]);
    }
    opts.push("-q".into());

    let step = ui::Step::start(format!(
        "Fetching PostgreSQL {version} from Debian's source archive (suite {}, postgresql-{} {})",
        deb.suite, version.major, deb.version
    ));
    let update_log = apt.join("update.log");
    let mut args = opts.clone();
    args.push("update".into());
    if let Err(e) = cmd::run_logged(tool("apt-get", &args), "apt-get update (private state)", &update_log) {
        return Err(unavailable(format!("{e:#}")));
    }

    let work = tempfile::Builder::new()
        .prefix(".debian-")
        .tempdir_in(downloads)
        .context("cannot create a temporary directory in the download cache")
        .map_err(fail)?;
    let mut args = opts;
    args.push("source".into());
    args.push("--download-only".into());
    args.push(format!("postgresql-{}={}", version.major, deb.version));
    let source_log = apt.join("source.log");
    if let Err(e) = cmd::run_logged(
        tool("apt-get", &args).dir(work.path()),
        "apt-get source --download-only",
        &source_log,
    ) {
        return Err(unavailable(format!("{e:#}")));
    }
    let orig = work.path().join(format!("postgresql-{}_{version}.orig.tar.bz2", version.major));
    if !orig.exists() {
        return Err(unavailable(format!(
            "apt-get source did not produce {}; see {}",
            orig.file_name().unwrap().to_string_lossy(),
            source_log.display()
        )));
    }
    let dest = downloads.join(format!(".debian-{}", version.tarball_name()));
    std::fs::rename(&orig, &dest).context("cannot move the Debian orig tarball").map_err(fail)?;
    step.done("downloaded");
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
URIs: http://archive.example/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/example-archive-keyring.gpg

Types: deb
URIs: http://archive.example/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/example-archive-keyring.gpg

Types: deb
URIs: http://vendor.example/apt
Suites: stable
Components: contrib
Enabled: no
";

    #[test]
    fn deb822_entries_are_parsed() {
        let e = parse_deb822(DEB822);
        assert_eq!(e.len(), 2, "the disabled entry is skipped: {e:?}");
        assert_eq!(e[0].suites, vec!["trixie", "trixie-updates"]);
        assert_eq!(e[0].signed_by.as_deref(), Some("/usr/share/keyrings/example-archive-keyring.gpg"));
    }

    #[test]
    fn one_line_entries_are_parsed() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://archive.example/debian bookworm main contrib\n\
                    deb-src http://archive.example/debian bookworm main\n\
                    deb http://archive.example/debian-security bookworm-security main\n";
        let e = parse_one_line(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(e[0].components, vec!["main", "contrib"]);
    }

    #[test]
    fn the_main_archive_is_chosen_and_rendered_as_deb_src() {
        let e = parse_deb822(DEB822);
        let archive = choose_archive(&e, Some("trixie")).unwrap();
        assert_eq!(archive.uris, vec!["http://archive.example/debian"]);
        let rendered = render_deb_src(archive, "sid");
        assert_eq!(
            rendered,
            "Types: deb-src\nURIs: http://archive.example/debian\nSuites: sid\nComponents: main\n\
             Signed-By: /usr/share/keyrings/example-archive-keyring.gpg\n"
        );
        let reparsed = parse_deb822(&rendered.replace("deb-src", "deb"));
        assert_eq!(reparsed[0].suites, vec!["sid"]);
    }

    #[test]
    fn inline_keys_survive_rendering() {
        let text = "Types: deb\nURIs: http://a.example/d\nSuites: x\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n";
        let e = parse_deb822(text);
        let rendered = render_deb_src(&e[0], "sid");
        assert!(
            rendered.contains("Signed-By: \n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"),
            "{rendered}"
        );
    }

    #[test]
    fn no_archive_without_main() {
        let e = parse_one_line("deb http://a.example/x stable contrib\n");
        assert!(choose_archive(&e, None).is_none());
    }
}
