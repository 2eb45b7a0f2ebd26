//! libpq connection strings: masking passwords in anything shown to users
//! (behaviour.md §21), and the options spock adds to every connection.

/// Replaces password values in a connection string, a URI, or any text that
/// contains one, with `********`.
pub fn mask_passwords(text: &str) -> String {
    let masked = mask_keyword_passwords(text);
    mask_uri_passwords(&masked)
}

/// `password=secret`, `password = 'se cret'`, `password='it''s'` and the same
/// as a URI query parameter (`?password=secret&...`).
fn mask_keyword_passwords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let start = i + found;
        let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric() && bytes[start - 1] != b'_';
        let mut j = start + "password".len();
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if !before_ok || j >= bytes.len() || bytes[j] != b'=' {
            out.push_str(&text[i..start + "password".len()]);
            i = start + "password".len();
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        // The value: quoted (with '' or \' inside) or up to whitespace, & or end.
        let value_end = if j < bytes.len() && bytes[j] == b'\'' {
            let mut k = j + 1;
            loop {
                if k >= bytes.len() {
                    break k;
                }
                if bytes[k] == b'\\' && k + 1 < bytes.len() {
                    k += 2;
                } else if bytes[k] == b'\'' {
                    if k + 1 < bytes.len() && bytes[k + 1] == b'\'' {
                        k += 2;
                    } else {
                        break k + 1;
                    }
                } else {
                    k += 1;
                }
            }
        } else {
            let mut k = j;
            while k < bytes.len() && !bytes[k].is_ascii_whitespace() && bytes[k] != b'&' {
                k += 1;
            }
            k
        };
        out.push_str(&text[i..start]);
        out.push_str("password=********");
        i = value_end;
    }
    out.push_str(&text[i..]);
    out
}

/// `postgres://user:secret@host` and `postgresql://...` user-info passwords.
fn mask_uri_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let scheme_start = rest[..pos].rfind(|c: char| !c.is_ascii_alphanumeric()).map_or(0, |p| p + 1);
        let scheme = &rest[scheme_start..pos];
        let after = pos + 3;
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        if scheme != "postgres" && scheme != "postgresql" {
            continue;
        }
        // user-info ends at the first '@' before any '/', '?' or whitespace.
        let authority_end =
            rest.find(|c: char| c == '/' || c == '?' || c.is_whitespace()).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            out.push_str(&rest[..colon + 1]);
            out.push_str("********");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// The libpq options spock puts before every DSN it uses (behaviour.md §3);
/// values in the DSN itself win because libpq takes the last occurrence.
pub const DEFAULT_OPTIONS: &str = "connect_timeout=30 keepalives=1 keepalives_idle=10 keepalives_interval=5 \
     keepalives_count=3 options='-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3'";

/// The connection string spock uses for `dsn`: defaults, then
/// `spock.extra_connection_options`, then the DSN itself. Only for
/// keyword/value DSNs; a URI is returned as given (libpq cannot mix the forms).
pub fn with_defaults(dsn: &str, extra: &str) -> String {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return dsn.to_string();
    }
    let mut s = String::from(DEFAULT_OPTIONS);
    if !extra.trim().is_empty() {
        s.push(' ');
        s.push_str(extra.trim());
    }
    s.push(' ');
    s.push_str(dsn);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_passwords_are_masked() {
        assert_eq!(mask_passwords("host=a password=secret port=5"), "host=a password=******** port=5");
        assert_eq!(mask_passwords("password = 'se cret' host=a"), "password=******** host=a");
        assert_eq!(mask_passwords("password='it''s' x=1"), "password=******** x=1");
        assert_eq!(mask_passwords("password='a\\'b' x=1"), "password=******** x=1");
        assert_eq!(mask_passwords("PASSWORD=secret"), "password=********");
        assert_eq!(mask_passwords("password=secret"), "password=********");
        // Not a keyword of its own: left alone.
        assert_eq!(mask_passwords("mypassword=x"), "mypassword=x");
        assert_eq!(mask_passwords("no secrets here"), "no secrets here");
        assert_eq!(
            mask_passwords("could not connect to \"host=h password=p1\" and \"password=p2\""),
            "could not connect to \"host=h password=******** and \"password=********"
        );
    }

    #[test]
    fn uri_passwords_are_masked() {
        assert_eq!(mask_passwords("postgresql://u:secret@h:5432/db"), "postgresql://u:********@h:5432/db");
        assert_eq!(mask_passwords("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_passwords("postgres://u:p@h/db?password=q&x=1"),
            "postgres://u:********@h/db?password=********&x=1"
        );
        assert_eq!(mask_passwords("see https://a:b@c"), "see https://a:b@c");
        let unterminated = mask_passwords("password='open");
        assert!(!unterminated.contains("open"), "{unterminated}");
    }

    #[test]
    fn defaults_come_first() {
        let s = with_defaults("host=h port=5", "sslmode=disable");
        assert!(s.starts_with("connect_timeout=30"));
        assert!(s.ends_with("sslmode=disable host=h port=5"), "{s}");
        assert_eq!(with_defaults("postgres://h/db", ""), "postgres://h/db");
    }
}
