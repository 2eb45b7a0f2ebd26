//! Source acquisition: `--source-tarball`, the download cache, the upstream
//! site, then Debian's source archive; every tarball verified before use.
//! Also the `cargo xtask fetch` task.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::flags::Fetch;
use crate::fsutil::{self, sha256_file};
use crate::versions::{Manifest, PgVersion, Resolved};
use crate::{debsrc, layout, ui};

/// A verified source tarball in the cache.
#[derive(Clone, Debug)]
pub struct Source {
    pub version: PgVersion,
    pub path: PathBuf,
    pub sha256: String,
}

/// No route could supply the tarball. Kept as its own type so `cargo xtask
/// test` can tell "not obtainable on this machine" from real failures.
#[derive(Debug)]
pub struct NotAvailable {
    pub version: PgVersion,
    pub pinned: bool,
    pub attempts: Vec<String>,
}

impl fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the source of PostgreSQL {} cannot be obtained on this machine. Tried:", self.version)?;
        for a in &self.attempts {
            writeln!(f, "  - {a}")?;
        }
        write!(
            f,
            "Download {} on a machine that can reach the upstream site and pass it with \
             --source-tarball FILE ({}).",
            self.version.tarball_name(),
            if self.pinned {
                "it is verified against the pinned checksum"
            } else {
                "this version has no pinned checksum; add one to xtask/versions.toml to have it verified"
            }
        )
    }
}

impl std::error::Error for NotAvailable {}

/// A tarball whose checksum did not match; the file has been deleted unless
/// it was the user's own.
fn mismatch(file: &Path, expected: &str, actual: &str, outcome: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "checksum mismatch for {}\n  expected sha256: {expected}\n  actual sha256:   {actual}\n{outcome}",
        file.display(),
    )
}

const DELETED: &str = "The download was deleted. Try again; if the mismatch persists, the source does not serve the released tarball.";

impl Fetch {
    pub fn run(self) -> Result<()> {
        if self.source_tarball.is_some() && self.pg.len() != 1 {
            bail!("--source-tarball names one file; give exactly one --pg with it");
        }
        let manifest = Manifest::builtin();
        for request in &self.pg {
            let resolved = manifest.resolve(*request);
            let source = obtain(&resolved, self.source_tarball.as_deref())?;
            println!("{}", source.path.display());
        }
        Ok(())
    }
}

/// The cache file for a version.
pub fn cached_path(version: PgVersion) -> Result<PathBuf> {
    Ok(layout::downloads_dir()?.join(version.tarball_name()))
}

/// Finds, verifies and caches the tarball for `resolved`, trying the routes
/// in order. Returns [`NotAvailable`] (inside the error) when none works.
pub fn obtain(resolved: &Resolved, explicit: Option<&Path>) -> Result<Source> {
    let version = resolved.version;
    let dest = cached_path(version)?;
    let downloads = layout::downloads_dir()?;
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create the download cache {}", downloads.display()))?;

    // 1. A tarball the user gave.
    if let Some(file) = explicit {
        let step = ui::Step::start(format!("Verifying {}", file.display()));
        let actual = sha256_file(file)?;
        let pinned = match &resolved.sha256 {
            Some(expected) if *expected != actual => {
                return Err(mismatch(
                    file,
                    expected,
                    &actual,
                    "The file was left in place (it is yours). Check that it is the released tarball.",
                ));
            }
            Some(_) => true,
            None => {
                ui::warn(format!(
                    "PostgreSQL {version} has no pinned checksum; using {} unverified (sha256 {actual})",
                    file.display()
                ));
                false
            }
        };
        copy_into_cache(file, &dest, &actual)?;
        step.done(if pinned { "checksum matches the pin" } else { "not pinned" });
        return Ok(Source { version, path: dest, sha256: actual });
    }

    // 2. The cache.
    if dest.exists() {
        let expected = match &resolved.sha256 {
            Some(sha) => Some(sha.clone()),
            None => std::fs::read_to_string(sidecar(&dest)).ok().map(|s| s.trim().to_string()),
        };
        let actual = sha256_file(&dest)?;
        match expected {
            Some(expected) if expected == actual => {
                if resolved.sha256.is_none() {
                    ui::note(format!(
                        "PostgreSQL {version} is not pinned; {} matches the checksum recorded when it was downloaded",
                        dest.display()
                    ));
                }
                return Ok(Source { version, path: dest, sha256: actual });
            }
            Some(expected) => {
                std::fs::remove_file(&dest).ok();
                ui::warn(
                    mismatch(&dest, &expected, &actual, "The cached file was deleted; fetching it again.")
                        .to_string(),
                );
            }
            None => {
                std::fs::remove_file(&dest).ok();
                ui::warn(format!("{} has no recorded checksum; fetching it again", dest.display()));
            }
        }
    }

    let mut attempts = Vec::new();

    // 3. Upstream.
    match download_upstream(resolved, &dest) {
        Ok(source) => return Ok(source),
        Err(Route::Unavailable(why)) => {
            if resolved.debian.is_some() {
                ui::note(format!("upstream download not possible ({why}); trying Debian's source archive"));
            }
            attempts.push(format!("upstream download: {why}"));
        }
        Err(Route::Failed(err)) => return Err(err),
    }

    // 4. Debian's source archive.
    match &resolved.debian {
        None => attempts.push(format!(
            "Debian's source archive: no Debian source version is known for {version} (see xtask/versions.toml)"
        )),
        Some(deb) => match debsrc::fetch_orig(version, deb, &downloads) {
            Ok(file) => {
                let actual = sha256_file(&file)?;
                let expected = resolved.sha256.as_deref().expect("Debian routes are only listed for pinned versions");
                if actual != expected {
                    std::fs::remove_file(&file).ok();
                    return Err(mismatch(&file, expected, &actual, DELETED));
                }
                std::fs::rename(&file, &dest)
                    .with_context(|| format!("cannot move the tarball to {}", dest.display()))?;
                return Ok(Source { version, path: dest, sha256: actual });
            }
            Err(debsrc::Miss::Unavailable(why)) => attempts.push(format!("Debian's source archive: {why}")),
            Err(debsrc::Miss::Failed(err)) => return Err(err),
        },
    }

    Err(NotAvailable { version, pinned: resolved.sha256.is_some(), attempts }.into())
}

fn sidecar(tarball: &Path) -> PathBuf {
    let mut name = tarball.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn copy_into_cache(file: &Path, dest: &Path, sha256: &str) -> Result<()> {
    if file.canonicalize().ok() == dest.canonicalize().ok() {
        return Ok(());
    }
    let dir = dest.parent().expect("cache file has a parent");
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut src = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    std::io::copy(&mut src, &mut tmp).with_context(|| format!("cannot copy {}", file.display()))?;
    tmp.persist(dest).with_context(|| format!("cannot write {}", dest.display()))?;
    fsutil::write_atomic(&sidecar(dest), format!("{sha256}\n").as_bytes())
}

/// Why the upstream route did not deliver: not usable here (try the next
/// one), or a real failure that must stop the run (a checksum mismatch).
enum Route {
    Unavailable(String),
    Failed(anyhow::Error),
}

/// The upstream base URL; `SPOCK_PG_SOURCE_URL` points at a mirror.
fn upstream_base() -> String {
    std::env::var("SPOCK_PG_SOURCE_URL")
        .unwrap_or_else(|_| "https://ftp.postgresql.org/pub/source".to_string())
        .trim_end_matches('/')
        .to_string()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(900))
        .user_agent(concat!("spock-xtask/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a default HTTP client can be built")
}

/// Sends a GET with up to three attempts for transient failures.
fn get(client: &reqwest::blocking::Client, url: &str) -> Result<reqwest::blocking::Response, String> {
    let mut last = String::new();
    for attempt in 1..=3 {
        match client.get(url).send() {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp) if resp.status().is_server_error() => last = format!("{url}: HTTP {}", resp.status()),
            Ok(resp) => return Err(format!("{url}: HTTP {}", resp.status())),
            Err(e) => last = format!("{url}: {}", error_chain(&e)),
        }
        if attempt < 3 {
            std::thread::sleep(Duration::from_secs(attempt));
        }
    }
    Err(last)
}

/// The innermost cause of an error (for reqwest errors the outer layers
/// repeat the URL, which the caller already names).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn download_upstream(resolved: &Resolved, dest: &Path) -> Result<Source, Route> {
    let version = resolved.version;
    let base = upstream_base();
    let url = format!("{base}/v{version}/{}", version.tarball_name());
    let client = client();

    let (expected, pinned) = match &resolved.sha256 {
        Some(sha) => (sha.clone(), true),
        None => {
            let resp = get(&client, &format!("{url}.sha256")).map_err(Route::Unavailable)?;
            let text = resp.text().map_err(|e| Route::Unavailable(error_chain(&e)))?;
            let sha = text.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Route::Failed(anyhow::anyhow!("{url}.sha256 does not hold a SHA-256: {text:?}")));
            }
            ui::warn(format!(
                "PostgreSQL {version} is not pinned in xtask/versions.toml; verifying against the \
                 upstream {}.sha256 file",
                version.tarball_name()
            ));
            (sha, false)
        }
    };

    let mut resp = get(&client, &url).map_err(Route::Unavailable)?;
    let step = ui::Step::start(format!("Downloading {url}"));
    let dir = dest.parent().expect("cache file has a parent");
    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(|e| Route::Failed(anyhow::Error::new(e).context("cannot create a temporary file")))?;
    let bar = ui::download_bar(resp.content_length());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Route::Unavailable(format!("{url}: download interrupted: {e}"))),
        };
        tmp.write_all(&buf[..n])
            .map_err(|e| Route::Failed(anyhow::Error::new(e).context("cannot write the download")))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let actual = sha256_file(tmp.path()).map_err(Route::Failed)?;
    if actual != expected {
        // The temporary file is deleted when `tmp` is dropped.
        drop(tmp);
        return Err(Route::Failed(mismatch(&PathBuf::from(&url), &expected, &actual, DELETED)));
    }
    tmp.persist(dest).map_err(|e| {
        Route::Failed(anyhow::Error::new(e).context("cannot move the download into the cache"))
    })?;
    if !pinned {
        fsutil::write_atomic(&sidecar(dest), format!("{actual}\n").as_bytes()).map_err(Route::Failed)?;
    }
    step.done("verified");
    Ok(Source { version, path: dest.to_path_buf(), sha256: actual })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::PgVersion;

    /// Points the cache at a temporary directory for the duration of a test.
    /// Tests that use it run in one thread (see `serial`).
    fn with_cache<T>(f: impl FnOnce(&Path) -> T) -> T {
        let _guard = crate::test_support::env_lock();
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: the lock above serialises every test that touches the environment.
        unsafe {
            std::env::set_var("XDG_CACHE_HOME", dir.path());
            std::env::set_var("SPOCK_PG_SOURCE_URL", "http://127.0.0.1:9/unreachable");
        }
        let out = f(dir.path());
        unsafe {
            std::env::remove_var("XDG_CACHE_HOME");
            std::env::remove_var("SPOCK_PG_SOURCE_URL");
        }
        out
    }

    fn resolved(sha: Option<String>) -> Resolved {
        Resolved { version: PgVersion { major: 18, minor: 99 }, sha256: sha, debian: None }
    }

    #[test]
    fn explicit_tarball_with_matching_pin_is_cached() {
        with_cache(|cache| {
            let file = cache.join("given.tar.bz2");
            std::fs::write(&file, b"tarball bytes").unwrap();
            let sha = fsutil::sha256_bytes(b"tarball bytes");
            let src = obtain(&resolved(Some(sha.clone())), Some(&file)).unwrap();
            assert_eq!(src.sha256, sha);
            assert_eq!(std::fs::read(&src.path).unwrap(), b"tarball bytes");
            assert!(file.exists(), "the user's file is kept");
        });
    }

    #[test]
    fn flipped_byte_is_rejected_with_both_sums() {
        with_cache(|cache| {
            let good = b"tarball bytes".to_vec();
            let sha = fsutil::sha256_bytes(&good);
            let mut bad = good.clone();
            bad[3] ^= 0x01;
            // A corrupted cache file is deleted and the next route tried.
            let cached = cached_path(PgVersion { major: 18, minor: 99 }).unwrap();
            std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
            std::fs::write(&cached, &bad).unwrap();
            let err = obtain(&resolved(Some(sha.clone())), None).unwrap_err();
            assert!(!cached.exists(), "corrupted cache file must be deleted");
            assert!(err.downcast_ref::<NotAvailable>().is_some(), "{err:#}");
            // A user's corrupted file is refused with both checksums, and kept.
            let file = cache.join("given.tar.bz2");
            std::fs::write(&file, &bad).unwrap();
            let err = obtain(&resolved(Some(sha.clone())), Some(&file)).unwrap_err().to_string();
            assert!(err.contains(&sha) && err.contains(&fsutil::sha256_bytes(&bad)), "{err}");
            assert!(file.exists());
            assert!(!cached.exists(), "nothing unverified enters the cache");
        });
    }

    #[test]
    fn nothing_reachable_lists_what_was_tried() {
        with_cache(|_| {
            let err = obtain(&resolved(Some("a".repeat(64))), None).unwrap_err();
            let na = err.downcast_ref::<NotAvailable>().expect("NotAvailable");
            let text = na.to_string();
            assert!(text.contains("upstream download") && text.contains("Debian"), "{text}");
            assert!(text.contains("--source-tarball"), "{text}");
        });
    }
}
