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

#[cfg(test)]
mod tests {
    use super::version_num;

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
