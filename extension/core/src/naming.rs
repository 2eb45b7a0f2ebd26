//! Identifiers and naming rules (sql-api.md §3): node ids, slot names,
//! subscription names.

/// FNV-1a, 32 bits: a small, stable hash (the same input gives the same value
/// on every platform and release).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The node id of a node name: 1..=65534, derived from the name alone.
pub fn node_id(name: &str) -> u32 {
    1 + fnv1a32(name.as_bytes()) % 65534
}

/// Shortens one part of a slot name: parts longer than 16 bytes become their
/// first 8 bytes (on a character boundary) and 8 hex digits of a hash of the
/// whole part.
fn slot_part(part: &str) -> String {
    if part.len() <= 16 {
        return part.to_string();
    }
    let mut end = 8;
    while !part.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{:08x}", &part[..end], fnv1a32(part.as_bytes()))
}

/// The slot (and replication origin) name of a subscription:
/// `spk_<db>_<provider>_<sub>`, long parts shortened, every character outside
/// `[a-z0-9_]` replaced by `_`.
pub fn slot_name(dbname: &str, provider: &str, subscription: &str) -> String {
    let raw = format!("spk_{}_{}_{}", slot_part(dbname), slot_part(provider), slot_part(subscription));
    raw.chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect()
}

/// What the name of a forwarding origin starts with.
const FORWARD_PREFIX: &str = "spkfwd_";

/// The replication origin that stands, in database `dbname`, for node
/// `node_id` when this node receives that node's transactions forwarded by
/// another provider and has no subscription from it (behaviour.md §5.3):
/// `spkfwd_<db>_<node id>`. Slot names start with `spk_`, so the two never
/// meet.
pub fn forward_origin_name(dbname: &str, node_id: u32) -> String {
    let db: String = slot_part(dbname)
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect();
    format!("{FORWARD_PREFIX}{db}_{node_id}")
}

/// The node a forwarding origin stands for, from its name; `None` for
/// any other origin.
pub fn node_of_forward_origin(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(FORWARD_PREFIX)?;
    let (_, id) = rest.rsplit_once('_')?;
    id.parse().ok().filter(|id| *id != 0)
}

/// Checks a subscription name: 1 to 63 bytes of `[a-z0-9_]`. The error says
/// which rule was broken (SQLSTATE 42602 or 42622 at the call site).
pub fn check_subscription_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 63 {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        return Err(NameError::BadCharacter(c));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong(usize),
    BadCharacter(char),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "the name is empty"),
            NameError::TooLong(n) => write!(f, "the name is {n} bytes long; at most 63 are allowed"),
            NameError::BadCharacter(c) => {
                write!(f, "the name contains {c:?}; only lower-case letters, digits and _ are allowed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a32(b""), 0x811C_9DC5);
        assert_eq!(fnv1a32(b"a"), 0xE40C_292C);
        assert_eq!(fnv1a32(b"foobar"), 0xBF9C_F968);
    }

    #[test]
    fn node_ids_are_stable_and_in_range() {
        assert_eq!(node_id("n1"), node_id("n1"));
        assert_ne!(node_id("n1"), node_id("n2"));
        for name in ["", "n1", "a very long node name indeed", "ü"] {
            assert!((1..=65534).contains(&node_id(name)), "{name}");
        }
    }

    #[test]
    fn slot_names_follow_the_rule() {
        assert_eq!(slot_name("postgres", "n1", "sub_n1_n2"), "spk_postgres_n1_sub_n1_n2");
        // Upper case and punctuation are replaced, not folded.
        assert_eq!(slot_name("My-DB", "n1", "s"), "spk__y____n1_s");
        // Parts over 16 bytes keep 8 bytes and get a hash of the whole part.
        let long = "abcdefghijklmnopq";
        assert_eq!(long.len(), 17);
        let name = slot_name(long, "n1", "s");
        assert_eq!(name, format!("spk_abcdefgh{:08x}_n1_s", fnv1a32(long.as_bytes())));
        // Exactly 16 bytes stays.
        assert_eq!(slot_name("abcdefghijklmnop", "n", "s"), "spk_abcdefghijklmnop_n_s");
        // The longest result fits a name (63 bytes).
        let worst = slot_name(&"x".repeat(63), &"y".repeat(63), &"z".repeat(63));
        assert!(worst.len() <= 63, "{worst}");
        // Multi-byte characters are cut on a boundary and then replaced.
        let s = slot_name("ééééééééé", "n", "s");
        assert!(s.is_ascii() && s.starts_with("spk_____"), "{s}");
    }

    #[test]
    fn forward_origins_name_their_node() {
        let name = forward_origin_name("postgres", 4242);
        assert_eq!(name, "spkfwd_postgres_4242");
        assert_eq!(node_of_forward_origin(&name), Some(4242));
        let long = forward_origin_name("A database-with a long name", 7);
        assert!(long.starts_with("spkfwd_") && long.ends_with("_7"), "{long}");
        assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{long}");
        assert_eq!(node_of_forward_origin(&long), Some(7));
        // Slot names and other origins are not forwarding origins.
        assert_eq!(node_of_forward_origin(&slot_name("postgres", "n1", "sub_n2_n1")), None);
        assert_eq!(node_of_forward_origin("pg_16384"), None);
        assert_eq!(node_of_forward_origin("spkfwd_postgres_x"), None);
        assert_eq!(node_of_forward_origin("spkfwd_postgres_0"), None);
    }

    #[test]
    fn subscription_names_are_checked() {
        assert_eq!(check_subscription_name("sub_n1_n2"), Ok(()));
        assert_eq!(check_subscription_name(""), Err(NameError::Empty));
        assert_eq!(check_subscription_name(&"a".repeat(64)), Err(NameError::TooLong(64)));
        assert_eq!(check_subscription_name("Sub"), Err(NameError::BadCharacter('S')));
        assert_eq!(check_subscription_name("sub-1"), Err(NameError::BadCharacter('-')));
    }
}
