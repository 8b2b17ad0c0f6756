//! strong-remoting's rule for object-typed arguments (`filter`, `where`, `data`): how a
//! value found in the query string, a header or the body becomes an object or a 400.

use serde_json::Value;

use crate::error::QueryError;

/// Converts a raw argument to an object:
///
/// - missing, `null`, `""` and the string `"null"` → `None`;
/// - a string that starts with `{` and ends with `}` (or `[` … `]`) is parsed as JSON;
///   failure → `Cannot parse JSON-encoded object value.`;
/// - an object passes unchanged (e.g. what the query-string decoder built);
/// - anything else, including arrays → `Value is not an object.`
pub fn object_arg(value: Option<&Value>) -> Result<Option<Value>, QueryError> {
    let parsed = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => {
            if s.is_empty() || s == "null" {
                return Ok(None);
            }
            let looks_json = (s.starts_with('{') && s.ends_with('}'))
                || (s.starts_with('[') && s.ends_with(']'));
            if !looks_json {
                return Err(QueryError::not_an_object());
            }
            serde_json::from_str::<Value>(s)
                .map_err(|_| QueryError::new("Cannot parse JSON-encoded object value."))?
        }
        Some(other) => other.clone(),
    };
    match parsed {
        Value::Object(_) => Ok(Some(parsed)),
        _ => Err(QueryError::not_an_object()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Case = (Option<Value>, Result<Option<Value>, &'static str>);

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            (None, Ok(None)),
            (Some(json!(null)), Ok(None)),
            (Some(json!("")), Ok(None)),
            (Some(json!("null")), Ok(None)),
            (Some(json!("{\"a\":1}")), Ok(Some(json!({"a": 1})))),
            (Some(json!({"a": "1"})), Ok(Some(json!({"a": "1"})))),
            (
                Some(json!("{bad}")),
                Err("Cannot parse JSON-encoded object value."),
            ),
            (Some(json!("[1,")), Err("Value is not an object.")),
            (
                Some(json!("[1,]")),
                Err("Cannot parse JSON-encoded object value."),
            ),
            (Some(json!("[1]")), Err("Value is not an object.")),
            (Some(json!("abc")), Err("Value is not an object.")),
            (Some(json!(" {}")), Err("Value is not an object.")),
            (Some(json!(5)), Err("Value is not an object.")),
            (Some(json!(true)), Err("Value is not an object.")),
            (Some(json!([{}])), Err("Value is not an object.")),
        ];
        for (input, expected) in cases {
            let got = object_arg(input.as_ref()).map_err(|e| e.message);
            assert_eq!(got, expected.map_err(String::from), "{input:?}");
        }
    }
}
