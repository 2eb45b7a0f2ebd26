//! How the column lists and row filters of a table's memberships combine
//! (behaviour.md §15): a column travels when any set sends it (a set
//! without a list sends every column) or it is part of the replica
//! identity; a row travels only when it passes every set's filter.

/// The columns of `all` (in that order) that travel, given each
/// membership's column list (`None`: every column) and the replica
/// identity columns `key`.
pub fn columns_sent<'a>(all: &'a [String], key: &[String], lists: &[Option<Vec<String>>]) -> Vec<&'a String> {
    all.iter()
        .filter(|c| key.contains(c) || lists.iter().any(|l| l.as_ref().is_none_or(|l| l.contains(c))))
        .collect()
}

/// The union of column lists, in first-seen order; `None` (every column)
/// as soon as one membership has no list.
pub fn union_of_lists(lists: impl IntoIterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for list in lists {
        for c in list? {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Some(out)
}

/// The SQL condition for rows passing all `filters` (each an SQL boolean
/// expression): `None` when there is none.
pub fn conjunction(filters: &[String]) -> Option<String> {
    if filters.is_empty() {
        return None;
    }
    Some(filters.iter().map(|f| format!("({f})")).collect::<Vec<_>>().join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_set_without_a_list_sends_every_column() {
        let all = names(&["id", "a", "b"]);
        let sent = columns_sent(&all, &names(&["id"]), &[Some(names(&["id", "a"])), None]);
        assert_eq!(sent, vec!["id", "a", "b"]);
    }

    #[test]
    fn lists_unite_in_table_order_and_keep_the_key() {
        let all = names(&["id", "a", "b", "c"]);
        let sent = columns_sent(&all, &names(&["id"]), &[Some(names(&["c"])), Some(names(&["a"]))]);
        assert_eq!(sent, vec!["id", "a", "c"]);
    }

    #[test]
    fn the_union_is_none_once_a_set_sends_everything() {
        assert_eq!(
            union_of_lists([Some(names(&["id", "a"])), Some(names(&["a", "b"]))]),
            Some(names(&["id", "a", "b"]))
        );
        assert_eq!(union_of_lists([Some(names(&["id"])), None]), None);
        assert_eq!(union_of_lists([]), Some(vec![]));
    }

    #[test]
    fn every_filter_must_pass() {
        assert_eq!(conjunction(&[]), None);
        assert_eq!(conjunction(&names(&["id > 100"])).as_deref(), Some("(id > 100)"));
        assert_eq!(
            conjunction(&names(&["id > 100", "v IS NOT NULL OR id < 5"])).as_deref(),
            Some("(id > 100) AND (v IS NOT NULL OR id < 5)")
        );
    }
}
