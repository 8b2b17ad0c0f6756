//! Value coercion to a property's type, following juggler's rules for query values: a query
//! string only carries strings, so `"10"` must become the number 10 for a number property
//! and `"true"` the boolean for a boolean one. Also the coercion of path ids.

use portcullis_schema::{Model, PropType};
use serde_json::Value;

use crate::ast::Scalar;
use crate::date::parse_date;
use crate::error::{cut, echo, QueryError};

/// Coerces one JSON value to a property type, per LoopBack:
///
/// - `null` is [`Scalar::Null`] for every type.
/// - Number: JSON numbers and numeric strings become `Int` (integral and within `i64`) or
///   `Float`; non-numeric strings stay `Text` (they then match nothing, as in LoopBack);
///   booleans become 1 / 0 (`Number(true)`).
/// - Boolean: `"true"`/`"1"` → true, `"false"`/`"0"` → false, other strings by JavaScript
///   truthiness (non-empty → true); numbers by truthiness.
/// - Date: ISO 8601 strings ([`parse_date`]) or a JSON number of epoch milliseconds;
///   anything else is refused with `Invalid date: <value>`.
/// - String: strings stay `Text`; numbers and booleans become their string form.
/// - Object, Array: [`Scalar::Json`] of the value.
/// - Any: strings `Text`, numbers `Int`/`Float`, booleans `Bool`, the rest `Json`.
///
/// Objects and arrays given for a string, number, boolean or date property are refused.
pub fn coerce_scalar(value: &Value, ty: &PropType) -> Result<Scalar, QueryError> {
    if value.is_null() {
        return Ok(Scalar::Null);
    }
    let not_scalar = || QueryError::new(format!("Invalid {} value: {}", ty.name(), echo(value)));
    match ty {
        PropType::Object | PropType::Array(_) => Ok(Scalar::Json(value.clone())),
        PropType::Any => Ok(match value {
            Value::String(s) => Scalar::Text(s.clone()),
            Value::Number(n) => json_number(n),
            Value::Bool(b) => Scalar::Bool(*b),
            other => Scalar::Json(other.clone()),
        }),
        PropType::String => match value {
            Value::String(s) => Ok(Scalar::Text(s.clone())),
            Value::Number(n) => Ok(Scalar::Text(n.to_string())),
            Value::Bool(b) => Ok(Scalar::Text(b.to_string())),
            _ => Err(not_scalar()),
        },
        PropType::Number => match value {
            Value::Number(n) => Ok(json_number(n)),
            Value::String(s) => Ok(parse_number(s).unwrap_or_else(|| Scalar::Text(s.clone()))),
            Value::Bool(b) => Ok(Scalar::Int(i64::from(*b))),
            _ => Err(not_scalar()),
        },
        PropType::Boolean => match value {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            Value::String(s) => Ok(Scalar::Bool(match s.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => !other.is_empty(),
            })),
            Value::Number(n) => Ok(Scalar::Bool(n.as_f64().is_some_and(|f| f != 0.0))),
            _ => Err(not_scalar()),
        },
        PropType::Date => {
            let millis = match value {
                Value::String(s) => parse_date(s),
                Value::Number(n) => n
                    .as_f64()
                    .filter(|f| f.is_finite() && f.abs() <= crate::date::MAX_DATE_MILLIS as f64)
                    // `new Date(1.5)` truncates to 1 ms; the range check makes the cast exact.
                    .map(|f| f.trunc() as i64),
                _ => None,
            };
            match millis {
                Some(m) => Ok(Scalar::Date(m)),
                None => {
                    let shown = match value {
                        Value::String(s) => cut(s.clone()),
                        other => echo(other),
                    };
                    Err(QueryError::new(format!("Invalid date: {shown}")))
                }
            }
        }
    }
}

/// A JSON number as `Int` when integral and within `i64`, else `Float`.
fn json_number(n: &serde_json::Number) -> Scalar {
    if let Some(i) = n.as_i64() {
        return Scalar::Int(i);
    }
    match n.as_f64() {
        Some(f) => float_scalar(f),
        None => Scalar::Text(n.to_string()),
    }
}

fn float_scalar(f: f64) -> Scalar {
    // 2^63 bounds: exactly representable, so the comparison is exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) {
        Scalar::Int(f as i64)
    } else {
        Scalar::Float(f)
    }
}

/// JavaScript's `Number(string)` for decimal literals: optional sign, digits with an
/// optional fraction and exponent, surrounding whitespace allowed. `None` for anything
/// else (including the empty string, hexadecimal and `Infinity`, which LoopBack would
/// still treat as numbers but no client sends on purpose).
pub fn parse_number(s: &str) -> Option<Scalar> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(p) => (&body[..p], Some(&body[p + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(p) => (&mantissa[..p], Some(&mantissa[p + 1..])),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let frac = frac_part.unwrap_or("");
    if !all_digits(int_part) || !all_digits(frac) || (int_part.is_empty() && frac.is_empty()) {
        return None;
    }
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
    }
    if frac_part.is_none() && exponent.is_none() {
        if let Ok(i) = t.trim_start_matches('+').parse::<i64>() {
            return Some(Scalar::Int(i));
        }
    }
    let f: f64 = t.parse().ok()?;
    f.is_finite().then(|| float_scalar(f))
}

/// Coerces an id taken from a URL path (`/Items/:id`) to the model's id type. `None` when
/// the text cannot be a value of that type (e.g. `abc` for a number id): the server then
/// answers 404, as no row can have that id.
pub fn coerce_id(model: &Model, raw: &str) -> Option<Scalar> {
    let ty = model.properties.get(model.id_property).map(|p| &p.ty)?;
    match ty {
        PropType::Number => parse_number(raw),
        PropType::Date => parse_date(raw).map(Scalar::Date),
        PropType::Boolean => match raw {
            "true" | "1" => Some(Scalar::Bool(true)),
            "false" | "0" => Some(Scalar::Bool(false)),
            _ => None,
        },
        _ => Some(Scalar::Text(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers() {
        let cases: &[(&str, Option<Scalar>)] = &[
            ("10", Some(Scalar::Int(10))),
            (" -7 ", Some(Scalar::Int(-7))),
            ("+3", Some(Scalar::Int(3))),
            ("1.5", Some(Scalar::Float(1.5))),
            ("5.0", Some(Scalar::Int(5))),
            (".5", Some(Scalar::Float(0.5))),
            ("5.", Some(Scalar::Int(5))),
            ("1e3", Some(Scalar::Int(1000))),
            ("1E-1", Some(Scalar::Float(0.1))),
            ("99999999999999999999", Some(Scalar::Float(1e20))),
            ("1e400", None),
            ("", None),
            (" ", None),
            (".", None),
            ("-", None),
            ("1e", None),
            ("abc", None),
            ("0x10", None),
            ("Infinity", None),
            ("inf", None),
            ("NaN", None),
            ("1,5", None),
            ("--1", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_number(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn scalars() {
        use PropType as T;
        let cases: Vec<(Value, PropType, Result<Scalar, &str>)> = vec![
            (json!(null), T::Number, Ok(Scalar::Null)),
            (json!(null), T::Date, Ok(Scalar::Null)),
            (json!("10"), T::Number, Ok(Scalar::Int(10))),
            (json!("abc"), T::Number, Ok(Scalar::Text("abc".into()))),
            (json!(2.5), T::Number, Ok(Scalar::Float(2.5))),
            (json!(3), T::Number, Ok(Scalar::Int(3))),
            (json!(true), T::Number, Ok(Scalar::Int(1))),
            (json!([1]), T::Number, Err("Invalid number value: [1]")),
            (json!("true"), T::Boolean, Ok(Scalar::Bool(true))),
            (json!("1"), T::Boolean, Ok(Scalar::Bool(true))),
            (json!("false"), T::Boolean, Ok(Scalar::Bool(false))),
            (json!("0"), T::Boolean, Ok(Scalar::Bool(false))),
            (json!("yes"), T::Boolean, Ok(Scalar::Bool(true))),
            (json!(""), T::Boolean, Ok(Scalar::Bool(false))),
            (json!(0), T::Boolean, Ok(Scalar::Bool(false))),
            (json!(false), T::Boolean, Ok(Scalar::Bool(false))),
            (json!({}), T::Boolean, Err("Invalid boolean value: {}")),
            (json!("x"), T::String, Ok(Scalar::Text("x".into()))),
            (json!(5), T::String, Ok(Scalar::Text("5".into()))),
            (json!(false), T::String, Ok(Scalar::Text("false".into()))),
            (
                json!("2000-01-01"),
                T::Date,
                Ok(Scalar::Date(946_684_800_000)),
            ),
            (json!(1000), T::Date, Ok(Scalar::Date(1000))),
            (json!(1.9), T::Date, Ok(Scalar::Date(1))),
            (json!("nope"), T::Date, Err("Invalid date: nope")),
            (json!(true), T::Date, Err("Invalid date: true")),
            (json!(1e300), T::Date, Err("Invalid date: 1e+300")),
            (json!("a"), T::Object, Ok(Scalar::Json(json!("a")))),
            (
                json!({"a": 1}),
                T::Object,
                Ok(Scalar::Json(json!({"a": 1}))),
            ),
            (json!("a"), T::Array(None), Ok(Scalar::Json(json!("a")))),
            (json!("a"), T::Any, Ok(Scalar::Text("a".into()))),
            (json!(1), T::Any, Ok(Scalar::Int(1))),
            (json!(true), T::Any, Ok(Scalar::Bool(true))),
            (json!([1]), T::Any, Ok(Scalar::Json(json!([1])))),
        ];
        for (value, ty, expected) in cases {
            let got = coerce_scalar(&value, &ty).map_err(|e| e.message);
            assert_eq!(got, expected.map_err(String::from), "{value} as {ty:?}");
        }
    }
}
