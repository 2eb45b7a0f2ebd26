//! libpq connection strings: masking passwords in anything shown to users
//! (behaviour.md §21), and the parameters of every connection spock opens
//! (behaviour.md §3), in the order `PQconnectdbParams` needs them.

/// Replaces password values in a connection string, a URI, or any text that
/// contains one, with `********`.
pub fn mask_passwords(text: &str) -> String {
    let masked = mask_keyword_passwords(text);
    mask_uri_passwords(&masked)
}

/// `password=secret`, `sslpassword=secret`, `password = 'se cret'`,
/// `password='it''s'` and the same as URI query parameters
/// (`?password=secret&...`).
fn mask_keyword_passwords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let found_at = i + found;
        // `sslpassword` is a keyword of its own; mask it the same way.
        let start = if found_at >= i + 3 && &lower[found_at - 3..found_at] == "ssl" {
            found_at - 3
        } else {
            found_at
        };
        let keyword = &text[start..found_at + "password".len()];
        let before_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric() && bytes[start - 1] != b'_';
        let mut j = found_at + "password".len();
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if !before_ok || j >= bytes.len() || bytes[j] != b'=' {
            out.push_str(&text[i..found_at + "password".len()]);
            i = found_at + "password".len();
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
            // Unquoted: up to whitespace or `&`, where libpq lets a backslash
            // escape the next character (`pass\ word`).
            let mut k = j;
            while k < bytes.len() && !bytes[k].is_ascii_whitespace() && bytes[k] != b'&' {
                k += if bytes[k] == b'\\' && k + 1 < bytes.len() { 2 } else { 1 };
            }
            k.min(bytes.len())
        };
        // A backslash before a multi-byte character skips only its first byte.
        let mut value_end = value_end;
        while value_end < bytes.len() && !text.is_char_boundary(value_end) {
            value_end += 1;
        }
        out.push_str(&text[i..start]);
        out.push_str(&keyword.to_ascii_lowercase());
        out.push_str("=********");
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

/// The libpq parameters spock puts before every DSN (behaviour.md §3).
/// Values in `spock.extra_connection_options` and in the DSN itself override
/// them.
pub const DEFAULT_PARAMS: [(&str, &str); 6] = [
    ("connect_timeout", "30"),
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("options", "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3"),
];

/// The keyword/value pairs of one connection, in the order libpq's
/// `PQconnectdbParams` must see them with `expand_dbname` set: spock's
/// defaults, then `extra` (the parsed `spock.extra_connection_options`,
/// without any `dbname`), then the DSN itself as the one expanded `dbname`
/// (a keyword/value string or a URI; its values override everything
/// before), then `forced` (`replication`, `application_name`: what the
/// connection is for, which no DSN may change).
pub fn connection_params(
    extra: &[(String, String)],
    dsn: &str,
    forced: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> =
        DEFAULT_PARAMS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    params.extend(extra.iter().filter(|(k, _)| k != "dbname").cloned());
    params.push(("dbname".to_string(), dsn.to_string()));
    params.extend(forced.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    params
}

/// A keyword/value connection string for a client program (`pg_dump`)
/// from parsed pairs, every value quoted, and the password apart, to be
/// handed over in `PGPASSWORD` instead of the program's arguments, which
/// every local user can read.
pub fn client_conninfo(pairs: &[(String, String)]) -> (String, Option<String>) {
    let mut password = None;
    let mut parts = Vec::new();
    for (key, value) in pairs {
        if key == "password" {
            password = Some(value.clone());
        } else {
            parts.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    (parts.join(" "), password)
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
        assert_eq!(mask_passwords("password=a\\ b x=1"), "password=******** x=1");
        assert_eq!(mask_passwords("password=a\\é x=1"), "password=******** x=1");
        assert_eq!(mask_passwords("password='a\\é' x=1"), "password=******** x=1");
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
    fn ssl_passwords_are_masked() {
        assert_eq!(mask_passwords("host=a sslpassword=key port=5"), "host=a sslpassword=******** port=5");
        assert_eq!(
            mask_passwords("SSLPASSWORD = 'k y' password=p"),
            "sslpassword=******** password=********"
        );
        assert_eq!(
            mask_passwords("postgresql://h/db?sslpassword=k&x=1"),
            "postgresql://h/db?sslpassword=********&x=1"
        );
        assert_eq!(mask_passwords("nosslpassword=x"), "nosslpassword=x");
    }

    #[test]
    fn the_dsn_is_expanded_between_defaults_and_forced_values() {
        let extra =
            vec![("sslmode".to_string(), "disable".to_string()), ("dbname".to_string(), "x".to_string())];
        let params = connection_params(&extra, "postgresql://u@h/db", &[("replication", "database")]);
        let keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys[..6],
            [
                "connect_timeout",
                "keepalives",
                "keepalives_idle",
                "keepalives_interval",
                "keepalives_count",
                "options"
            ]
        );
        assert_eq!(
            keys[6..],
            ["sslmode", "dbname", "replication"],
            "a dbname in the extra options is dropped"
        );
        assert_eq!(params[7].1, "postgresql://u@h/db");
    }

    #[test]
    fn client_conninfo_quotes_values_and_keeps_the_password_apart() {
        let pairs: Vec<(String, String)> = [("host", "h"), ("password", "s3cret"), ("dbname", "it's \\db")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (conninfo, password) = client_conninfo(&pairs);
        assert_eq!(conninfo, "host='h' dbname='it\\'s \\\\db'");
        assert_eq!(password.as_deref(), Some("s3cret"));
        assert!(!conninfo.contains("s3cret"));
    }
}
