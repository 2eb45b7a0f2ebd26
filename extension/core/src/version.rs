//! Extension version numbers: `major.minor.patch` and its integer form.

/// Parses `major.minor.patch` (an optional `-suffix` is ignored) into
/// `major * 10000 + minor * 100 + patch`, the form `spock.spock_version_num()`
/// returns. `const` so the extension computes it at compile time; a malformed
/// version fails the build.
pub const fn version_num(v: &str) -> i32 {
    let bytes = v.as_bytes();
    let mut parts = [0i32; 3];
    let mut part = 0;
    let mut digits = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' {
            assert!(digits > 0, "empty component in version");
            part += 1;
            digits = 0;
            assert!(part < 3, "version must be major.minor.patch");
        } else if b.is_ascii_digit() {
            parts[part] = parts[part] * 10 + (b - b'0') as i32;
            digits += 1;
        } else if b == b'-' || b == b'+' {
            break; // pre-release or build suffix
        } else {
            panic!("unexpected character in version");
        }
        i += 1;
    }
    assert!(part == 2 && digits > 0, "version must be major.minor.patch");
    assert!(parts[1] < 100 && parts[2] < 100, "minor and patch must be below 100");
    parts[0] * 10000 + parts[1] * 100 + parts[2]
}

/// What a database's spock catalog means for the loaded library, given the
/// catalog's version (`pg_extension.extversion`) and whether the installed
/// scripts lead from it to the library's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogCheck {
    /// Catalog and library are the same version.
    Matches,
    /// The catalog is older and update scripts lead to the library's
    /// version: `ALTER EXTENSION spock UPDATE TO '<library>'` brings it level.
    Update,
    /// The library cannot work with this catalog; the text says why and
    /// what to do.
    Refuse(String),
}

/// Compares a database's catalog version with the library's (sql-api.md
/// §2.4): equal versions match; an older catalog with an update path is
/// updated; anything else is refused with a message naming both versions.
pub fn check_catalog(library: &str, catalog: &str, update_path: bool) -> CatalogCheck {
    if library == catalog {
        return CatalogCheck::Matches;
    }
    if update_path {
        return CatalogCheck::Update;
    }
    let newer = parse(catalog).zip(parse(library)).is_some_and(|(c, l)| c > l);
    CatalogCheck::Refuse(if newer {
        format!(
            "the spock catalog of this database is version {catalog}, newer than the loaded library \
             {library}; spock does not downgrade: install the spock package of version {catalog} (or \
             later) and restart the server"
        )
    } else {
        format!(
            "the spock catalog of this database is version {catalog} and the loaded library is {library}, \
             but no update script leads from {catalog} to {library}; install the complete package of spock \
             {library} (it ships the update scripts spock--<from>--<to>.sql) or the package of {catalog}, and \
             restart the server"
        )
    })
}

/// `major.minor.patch` as a comparable triple; `None` when malformed.
fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

#[cfg(test)]
mod tests {
    use super::{CatalogCheck, check_catalog, version_num};

    #[test]
    fn equal_versions_match_and_older_ones_update_along_a_path() {
        assert_eq!(check_catalog("0.2.0", "0.2.0", false), CatalogCheck::Matches);
        assert_eq!(check_catalog("0.2.0", "0.1.0", true), CatalogCheck::Update);
    }

    #[test]
    fn a_newer_catalog_or_a_missing_path_is_refused_with_both_versions() {
        let CatalogCheck::Refuse(newer) = check_catalog("0.2.0", "0.10.0", false) else { panic!() };
        assert!(newer.contains("newer than the loaded library 0.2.0"), "{newer}");
        assert!(newer.contains("does not downgrade"), "{newer}");
        let CatalogCheck::Refuse(gap) = check_catalog("0.3.0", "0.1.0", false) else { panic!() };
        assert!(gap.contains("no update script leads from 0.1.0 to 0.3.0"), "{gap}");
        let CatalogCheck::Refuse(odd) = check_catalog("0.3.0", "weird", false) else { panic!() };
        assert!(odd.contains("no update script"), "{odd}");
    }

    #[test]
    fn follows_the_spec_formula() {
        assert_eq!(version_num("0.1.0"), 100);
        assert_eq!(version_num("5.0.4"), 50004);
        assert_eq!(version_num("12.34.56"), 123456);
        assert_eq!(version_num("1.2.3-beta1"), 10203);
    }

    #[test]
    #[should_panic(expected = "major.minor.patch")]
    fn rejects_two_components() {
        version_num("1.2");
    }

    #[test]
    #[should_panic(expected = "unexpected character")]
    fn rejects_garbage() {
        version_num("1.x.3");
    }
}
