//! The version manifest (`xtask/versions.toml`) and the `--pg` argument.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The PostgreSQL majors this project supports.
pub const SUPPORTED_MAJORS: [u32; 4] = [15, 16, 17, 18];

fn supported_list() -> String {
    SUPPORTED_MAJORS.map(|m| m.to_string()).join(", ")
}

/// An exact PostgreSQL release, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl PgVersion {
    /// Parses `X.Y` for a supported major X.
    pub fn parse(s: &str) -> Result<PgVersion, String> {
        match PgRequest::parse(s)? {
            PgRequest::Exact(v) => Ok(v),
            PgRequest::Major(m) => Err(format!("`{s}` is a major version; expected `{m}.<minor>`")),
        }
    }

    /// The upstream tarball's file name.
    pub fn tarball_name(&self) -> String {
        format!("postgresql-{self}.tar.bz2")
    }
}

/// What the user asked for with `--pg`: a major (its default minor is used)
/// or an exact version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgRequest {
    Major(u32),
    Exact(PgVersion),
}

impl fmt::Display for PgRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgRequest::Major(m) => write!(f, "{m}"),
            PgRequest::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl PgRequest {
    /// Parses `18` or `18.6`. Errors say what was wrong and what is accepted.
    pub fn parse(s: &str) -> Result<PgRequest, String> {
        let s = s.trim();
        let malformed = || {
            format!(
                "`{s}` is not a PostgreSQL version: use a major ({}) or an exact version such as 18.6",
                supported_list()
            )
        };
        let number = |part: &str| -> Result<u32, String> {
            if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            part.parse().map_err(|_| malformed())
        };
        let (major, minor) = match s.split_once('.') {
            None => (number(s)?, None),
            Some((major, minor)) => (number(major)?, Some(number(minor)?)),
        };
        if !SUPPORTED_MAJORS.contains(&major) {
            return Err(format!(
                "PostgreSQL {major} is not supported; supported majors are {}",
                supported_list()
            ));
        }
        Ok(match minor {
            None => PgRequest::Major(major),
            Some(minor) => PgRequest::Exact(PgVersion { major, minor }),
        })
    }

    pub fn major(&self) -> u32 {
        match self {
            PgRequest::Major(m) => *m,
            PgRequest::Exact(v) => v.major,
        }
    }
}

/// Where Debian's source archive carries a pinned version.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DebianSource {
    /// Suite whose `Sources` index lists the package version (`bookworm`, `sid`).
    pub suite: String,
    /// Debian version of the `postgresql-NN` source package.
    pub version: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    majors: BTreeMap<String, RawMajor>,
    #[serde(default)]
    pins: BTreeMap<String, RawPin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMajor {
    default: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    sha256: String,
    debian: Option<DebianSource>,
}

/// A version resolved against the manifest: what to fetch and how to verify it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub version: PgVersion,
    /// Pinned SHA-256 of the upstream tarball, if the manifest has one.
    pub sha256: Option<String>,
    pub debian: Option<DebianSource>,
}

/// The parsed `xtask/versions.toml`.
#[derive(Debug)]
pub struct Manifest {
    defaults: BTreeMap<u32, PgVersion>,
    pins: BTreeMap<PgVersion, (String, Option<DebianSource>)>,
}

const MANIFEST: &str = include_str!("../versions.toml");

impl Manifest {
    /// The manifest compiled into this binary.
    pub fn builtin() -> Manifest {
        // The file is part of this crate and checked by a unit test.
        Manifest::parse(MANIFEST).expect("xtask/versions.toml is valid")
    }

    pub fn parse(text: &str) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(text).context("xtask/versions.toml is malformed")?;
        let mut defaults = BTreeMap::new();
        for (major, entry) in raw.majors {
            let major: u32 = major.parse().with_context(|| format!("major `{major}` is not a number"))?;
            if !SUPPORTED_MAJORS.contains(&major) {
                bail!("major {major} in versions.toml is not a supported major");
            }
            let default = PgVersion::parse(&entry.default).map_err(anyhow::Error::msg)?;
            if default.major != major {
                bail!("default {default} listed under major {major}");
            }
            defaults.insert(major, default);
        }
        for major in SUPPORTED_MAJORS {
            if !defaults.contains_key(&major) {
                bail!("versions.toml has no entry for supported major {major}");
            }
        }
        let mut pins = BTreeMap::new();
        for (version, pin) in raw.pins {
            let version = PgVersion::parse(&version).map_err(anyhow::Error::msg)?;
            if pin.sha256.len() != 64 || !pin.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("pin for {version}: sha256 must be 64 hex digits");
            }
            pins.insert(version, (pin.sha256.to_ascii_lowercase(), pin.debian));
        }
        Ok(Manifest { defaults, pins })
    }

    pub fn resolve(&self, request: PgRequest) -> Resolved {
        let version = match request {
            PgRequest::Major(m) => self.defaults[&m],
            PgRequest::Exact(v) => v,
        };
        let (sha256, debian) = match self.pins.get(&version) {
            Some((sha, deb)) => (Some(sha.clone()), deb.clone()),
            None => (None, None),
        };
        Resolved { version, sha256, debian }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_has_the_known_pins() {
        let m = Manifest::builtin();
        let r15 = m.resolve(PgRequest::Major(15));
        assert_eq!(r15.version.to_string(), "15.18");
        assert_eq!(
            r15.sha256.as_deref(),
            Some("11df0df97fe3ea4ba9a791faaf39cee1d2fe571e78885b5b55d8517d27c323b4")
        );
        assert_eq!(r15.debian.unwrap().suite, "bookworm");
        let r18 = m.resolve(PgRequest::Major(18));
        assert_eq!(r18.version.to_string(), "18.6");
        assert_eq!(r18.debian.unwrap().version, "18.6-3");
        let r17 = m.resolve(PgRequest::Major(17));
        assert_eq!(r17.version.to_string(), "17.12");
        assert!(r17.sha256.is_some() && r17.debian.is_none());
        assert!(m.resolve(PgRequest::Major(16)).sha256.is_none());
    }

    #[test]
    fn unpinned_exact_version_has_no_checksum() {
        let m = Manifest::builtin();
        let r = m.resolve(PgRequest::parse("18.2").unwrap());
        assert_eq!(r.version, PgVersion { major: 18, minor: 2 });
        assert_eq!(r.sha256, None);
    }

    #[test]
    fn parse_requests() {
        assert_eq!(PgRequest::parse("17"), Ok(PgRequest::Major(17)));
        assert_eq!(PgRequest::parse("17.12"), Ok(PgRequest::Exact(PgVersion { major: 17, minor: 12 })));
        for bad in ["", "17.", ".3", "17.x", "17.1.2", "seventeen", "17 .1", "-17", "99999"] {
            assert!(PgRequest::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = PgRequest::parse("14.3").unwrap_err();
        assert!(err.contains("not supported") && err.contains("15, 16, 17, 18"), "{err}");
        assert!(PgVersion::parse("18").unwrap_err().contains("major version"));
    }

    #[test]
    fn manifest_errors_are_caught() {
        assert!(Manifest::parse("[majors.15]\ndefault = \"15.1\"").is_err(), "missing majors");
        let bad_sha = format!("{MANIFEST}\n[pins.\"18.1\"]\nsha256 = \"abc\"\n");
        assert!(Manifest::parse(&bad_sha).is_err());
        let unknown_field =
            format!("{MANIFEST}\n[pins.\"18.1\"]\nsha256 = \"{}\"\nmd5 = \"x\"\n", "a".repeat(64));
        assert!(Manifest::parse(&unknown_field).is_err());
    }
}
