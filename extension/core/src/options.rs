//! The options object of `spock.sub_alter_options(subscription_name, options
//! jsonb)` (sql-api.md §4.7): which keys exist, the JSON type each must
//! have, and what a well-formed object asks to change. Values that need the
//! server (the interval of `apply_delay`) are checked by the caller.

use serde_json::Value;

/// What an options object asks to change; `None`: leave as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubOptions {
    /// `forward_origins`: `[]` or `["all"]`.
    pub forward_origins: Option<Vec<String>>,
    /// `apply_delay`: the text of an interval.
    pub apply_delay: Option<String>,
    /// `skip_schema`: schema names the initial copy leaves out.
    pub skip_schema: Option<Vec<String>>,
}

impl SubOptions {
    /// Whether the object asked for nothing (`{}`).
    pub fn is_empty(&self) -> bool {
        *self == SubOptions::default()
    }
}

/// The keys `sub_alter_options` knows.
pub const KEYS: [&str; 3] = ["forward_origins", "apply_delay", "skip_schema"];

/// Reads an options object; the error says what is wrong (the caller raises
/// it as `22023`).
pub fn parse_sub_options(value: &Value) -> Result<SubOptions, String> {
    let Value::Object(map) = value else {
        return Err(format!("options must be a JSON object, not {value}"));
    };
    let mut out = SubOptions::default();
    for (key, v) in map {
        match key.as_str() {
            "forward_origins" => {
                let origins = string_array(key, v)?;
                if let Some(bad) = origins.iter().find(|o| o.as_str() != "all") {
                    return Err(format!("forward_origins may only contain \"all\", not \"{bad}\""));
                }
                out.forward_origins = Some(origins);
            }
            "apply_delay" => match v {
                Value::String(s) => out.apply_delay = Some(s.clone()),
                other => {
                    return Err(format!(
                        "apply_delay must be a JSON string holding an interval, not {other}"
                    ));
                }
            },
            "skip_schema" => out.skip_schema = Some(string_array(key, v)?),
            other => {
                return Err(format!("unknown option \"{other}\"; the options are {}", KEYS.join(", ")));
            }
        }
    }
    Ok(out)
}

fn string_array(key: &str, v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{key} must be a JSON array of strings, not {v}"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("{key} must be a JSON array of strings; {other} is not a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_object_asks_for_nothing() {
        assert!(parse_sub_options(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn each_key_is_read_with_its_type() {
        let o = parse_sub_options(&json!({
            "forward_origins": [], "apply_delay": "5 minutes", "skip_schema": ["audit", "tmp"]
        }))
        .unwrap();
        assert_eq!(o.forward_origins, Some(vec![]));
        assert_eq!(o.apply_delay.as_deref(), Some("5 minutes"));
        assert_eq!(o.skip_schema, Some(vec!["audit".to_string(), "tmp".to_string()]));
        assert_eq!(
            parse_sub_options(&json!({"forward_origins": ["all"]})).unwrap().forward_origins.unwrap(),
            ["all"]
        );
    }

    #[test]
    fn wrong_shapes_and_keys_are_refused_with_what_was_wrong() {
        for (value, says) in [
            (json!([1]), "must be a JSON object"),
            (json!({"apply_dalay": "1s"}), "unknown option \"apply_dalay\""),
            (json!({"apply_delay": 5}), "apply_delay must be a JSON string"),
            (json!({"skip_schema": "audit"}), "skip_schema must be a JSON array"),
            (json!({"skip_schema": ["a", 1]}), "1 is not a string"),
            (json!({"forward_origins": ["n1"]}), "may only contain \"all\", not \"n1\""),
        ] {
            let e = parse_sub_options(&value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
        }
    }
}
