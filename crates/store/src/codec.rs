//! Value conversions between the JSON the server speaks, the typed filter scalars, and the
//! SQL values stored in columns. Each declared type has one storage form per engine (see the
//! crate docs); these functions are the only place that knows it. Values here are in the
//! neutral form both engines take (integers, reals, text; booleans 0/1, dates and JSON as
//! text): SQLite stores them as they are, and `postgres` encodes each for the type of its
//! placeholder (boolean, timestamptz, jsonb…) and decodes cells back to this form.

use portcullis_query::Scalar;
use portcullis_schema::PropType;
use rusqlite::types::Value as SqlValue;
use sea_query::Value as SeaValue;
use serde_json::{Number, Value};

use crate::dates::{format_date, parse_date};
use crate::StoreError;

/// 2^53 - 1: every integer up to it is exact as a double.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

fn null() -> SeaValue {
    SeaValue::String(None)
}

fn text(s: String) -> SeaValue {
    SeaValue::String(Some(s))
}

fn int(i: i64) -> SeaValue {
    SeaValue::BigInt(Some(i))
}

fn is_json_column(ty: &PropType) -> bool {
    matches!(ty, PropType::Object | PropType::Array(_) | PropType::Any)
}

/// A JSON input value as stored in a column of type `ty`.
pub(crate) fn encode(name: &str, ty: &PropType, v: &Value) -> Result<SeaValue, StoreError> {
    let bad = || {
        StoreError::Invalid(format!(
            "invalid value for property `{name}` of type {}",
            ty.name()
        ))
    };
    Ok(match (ty, v) {
        (_, Value::Null) => null(),
        (PropType::Number, Value::Number(n)) => number(n),
        (PropType::Number, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => float(f),
            _ => return Err(bad()),
        },
        (PropType::Number, _) => return Err(bad()),
        (PropType::Boolean, Value::Bool(b)) => int(i64::from(*b)),
        (PropType::Boolean, Value::String(s)) => match s.as_str() {
            "true" | "1" => int(1),
            "false" | "0" => int(0),
            _ => return Err(bad()),
        },
        (PropType::Boolean, Value::Number(n)) => {
            int(i64::from(n.as_f64().is_some_and(|f| f != 0.0)))
        }
        (PropType::Boolean, _) => return Err(bad()),
        (PropType::Date, Value::String(s)) => text(format_date(parse_date(s).ok_or_else(bad)?)),
        (PropType::Date, Value::Number(n)) => text(format_date(n.as_i64().ok_or_else(bad)?)),
        (PropType::Date, _) => return Err(bad()),
        (PropType::String, Value::String(s)) => text(s.clone()),
        (PropType::String, Value::Number(_) | Value::Bool(_)) => text(v.to_string()),
        (PropType::String, _) => return Err(bad()),
        (PropType::Object | PropType::Array(_) | PropType::Any, v) => text(v.to_string()),
    })
}

fn number(n: &Number) -> SeaValue {
    match n.as_i64() {
        Some(i) => int(i),
        None => float(n.as_f64().unwrap_or(0.0)),
    }
}

/// Integral floats are stored as integers so that `1.0` and `1` compare and print alike.
fn float(f: f64) -> SeaValue {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        int(f as i64)
    } else {
        SeaValue::Double(Some(f))
    }
}

/// A filter scalar as compared with a column of type `ty` (`None`: a dynamic property read
/// from the loose-model JSON column).
pub(crate) fn scalar(ty: Option<&PropType>, s: &Scalar) -> SeaValue {
    if ty.is_some_and(is_json_column) {
        // JSON columns hold JSON text, so compare with the operand's JSON text.
        return match s {
            Scalar::Null => null(),
            Scalar::Bool(b) => text(b.to_string()),
            Scalar::Int(i) => text(i.to_string()),
            Scalar::Float(f) => text(Value::from(*f).to_string()),
            Scalar::Text(t) => text(Value::String(t.clone()).to_string()),
            Scalar::Date(ms) => text(Value::String(format_date(*ms)).to_string()),
            Scalar::Json(v) => text(v.to_string()),
        };
    }
    match s {
        Scalar::Null => null(),
        Scalar::Bool(b) => int(i64::from(*b)),
        Scalar::Int(i) => int(*i),
        Scalar::Float(f) => float(*f),
        Scalar::Text(t) => match ty {
            Some(PropType::Date) => match parse_date(t) {
                Some(ms) => text(format_date(ms)),
                None => text(t.clone()),
            },
            _ => text(t.clone()),
        },
        Scalar::Date(ms) => text(format_date(*ms)),
        Scalar::Json(v) => text(v.to_string()),
    }
}

/// A JSON id value as a scalar, to look a row up by it.
pub(crate) fn json_scalar(v: &Value) -> Scalar {
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Scalar::Text(s.clone()),
        other => Scalar::Json(other.clone()),
    }
}

/// A stored value read back as JSON; `None` for NULL.
pub(crate) fn decode(ty: &PropType, v: SqlValue) -> Option<Value> {
    match (ty, v) {
        (_, SqlValue::Null) | (_, SqlValue::Blob(_)) => None,
        (PropType::Boolean, SqlValue::Integer(i)) => Some(Value::Bool(i != 0)),
        (PropType::Boolean, SqlValue::Real(f)) => Some(Value::Bool(f != 0.0)),
        (PropType::Date, SqlValue::Integer(ms)) => Some(Value::String(format_date(ms))),
        (PropType::Object | PropType::Array(_) | PropType::Any, SqlValue::Text(t)) => {
            Some(serde_json::from_str(&t).unwrap_or(Value::String(t)))
        }
        (PropType::String, SqlValue::Integer(i)) => Some(Value::String(i.to_string())),
        (_, v) => decode_natural(v),
    }
}

/// A value with no declared type (e.g. from `json_extract`).
pub(crate) fn decode_natural(v: SqlValue) -> Option<Value> {
    match v {
        SqlValue::Null | SqlValue::Blob(_) => None,
        SqlValue::Integer(i) => Some(Value::from(i)),
        SqlValue::Real(f) => {
            // Integral doubles up to JavaScript's MAX_SAFE_INTEGER print as integers (numbers
            // are double precision in PostgreSQL).
            if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER {
                Some(Value::from(f as i64))
            } else {
                Number::from_f64(f).map(Value::Number)
            }
        }
        SqlValue::Text(t) => Some(Value::String(t)),
    }
}

/// A sea-query parameter as rusqlite binds it.
pub(crate) fn to_sql(v: SeaValue) -> Result<SqlValue, StoreError> {
    Ok(match v {
        SeaValue::Bool(b) => b.map_or(SqlValue::Null, |b| SqlValue::Integer(i64::from(b))),
        SeaValue::TinyInt(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        SeaValue::SmallInt(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        SeaValue::Int(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        SeaValue::BigInt(i) => i.map_or(SqlValue::Null, SqlValue::Integer),
        SeaValue::TinyUnsigned(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        SeaValue::SmallUnsigned(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        SeaValue::Unsigned(i) => i.map_or(SqlValue::Null, |i| SqlValue::Integer(i.into())),
        // LIMIT/OFFSET arrive as u64; anything past i64 means "no bound" anyway.
        SeaValue::BigUnsigned(i) => i.map_or(SqlValue::Null, |i| {
            SqlValue::Integer(i64::try_from(i).unwrap_or(i64::MAX))
        }),
        SeaValue::Float(f) => f.map_or(SqlValue::Null, |f| SqlValue::Real(f.into())),
        SeaValue::Double(f) => f.map_or(SqlValue::Null, SqlValue::Real),
        SeaValue::String(s) => s.map_or(SqlValue::Null, SqlValue::Text),
        SeaValue::Char(c) => c.map_or(SqlValue::Null, |c| SqlValue::Text(c.to_string())),
        SeaValue::Bytes(b) => b.map_or(SqlValue::Null, SqlValue::Blob),
        other => {
            return Err(StoreError::Internal(format!(
                "unsupported SQL parameter {other:?}"
            )))
        }
    })
}

/// A key for matching related rows to parents: equal JSON values give equal keys, whatever
/// their numeric representation.
pub(crate) fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => format!("n{i}"),
            None => {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    format!("n{}", f as i64)
                } else {
                    format!("n{f}")
                }
            }
        }),
        Value::String(s) => Some(format!("s{s}")),
        other => Some(format!("j{other}")),
    }
}
