//! Model instances on their way in and out: coercion of client data to property types,
//! LoopBack's validations (presence, forceId, strict), defaults and server-set fields on
//! the way in; hidden and protected properties removed on the way out.

use portcullis_schema::{App, DefaultFn, Model, PropType, ServerSet};
use portcullis_store::Record;
use serde_json::{Map, Value};

use crate::error::{ApiError, ValidationFailures};

/// How a write treats the properties the client leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A new instance: defaults apply, required properties must be present.
    Create,
    /// Only the given properties change.
    Patch,
    /// The instance is replaced: required properties must be present.
    Replace,
}

/// On a replace, the properties the client may not set keep their stored values
/// (server-set ones and, unless `allowOwnerChange`, the owner keys).
pub fn keep_protected(model: &Model, row: &mut Record, before: &Record) {
    for prop in &model.properties {
        let protected = prop.server_set != ServerSet::No
            || prop.force_default
            || (!model.options.allow_owner_change && model.owner_keys.contains(&prop.name));
        if protected {
            match before.get(&prop.name) {
                Some(v) => {
                    row.insert(prop.name.clone(), v.clone());
                }
                None => {
                    row.remove(&prop.name);
                }
            }
        }
    }
}

/// Facts about the caller that server-set properties need.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    /// The current user's id, when a user is logged in.
    pub user_id: Option<Value>,
}

/// Checks and coerces `data` for `model`. Returns the record to store, or LoopBack's 400
/// (not an object) or 422 (`ValidationError`).
pub fn prepare(
    model: &Model,
    data: &Value,
    mode: WriteMode,
    ctx: &WriteContext,
) -> Result<Record, ApiError> {
    let Value::Object(input) = data else {
        return Err(ApiError::bad_request("Value is not an object."));
    };
    let mut out = Map::new();
    let mut failures = ValidationFailures::default();
    let id_prop = model.id_prop();
    for (key, value) in input {
        match model.property(key) {
            Some(prop) => {
                if prop.server_set != ServerSet::No || prop.force_default {
                    // Server-set: client input is ignored, never an error.
                    continue;
                }
                if mode != WriteMode::Create
                    && !model.options.allow_owner_change
                    && model.owner_keys.contains(key)
                {
                    // LoopBack 3 lets an owner give a row away (or take one) by updating
                    // its owner field; Portcullis keeps the owner unless the model sets
                    // `allowOwnerChange`.
                    continue;
                }
                if prop.id
                    && mode == WriteMode::Create
                    && id_prop.generated
                    && model.options.force_id
                    && !value.is_null()
                {
                    failures.add(key, "absence", "can't be set", Some(value));
                    continue;
                }
                match coerce(value, &prop.ty) {
                    Ok(v) => {
                        out.insert(key.clone(), v);
                    }
                    Err(message) => failures.add(key, "type", message, Some(value)),
                }
            }
            None if model.is_strict() => failures.add(
                key,
                "unknown-property",
                "is not defined in the model",
                Some(value),
            ),
            None => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if mode == WriteMode::Create {
        for prop in &model.properties {
            if prop.force_default || out.get(&prop.name).is_none_or(Value::is_null) {
                if let Some(v) = default_value(prop, ctx) {
                    out.insert(prop.name.clone(), v);
                }
            }
        }
    }
    for prop in &model.properties {
        if !prop.required || (prop.id && prop.generated) {
            continue;
        }
        let blank = match out.get(&prop.name) {
            None => mode != WriteMode::Patch,
            Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if blank {
            failures.add(
                &prop.name,
                "presence",
                "can't be blank",
                out.get(&prop.name),
            );
        }
    }
    if failures.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::validation(&model.name, &failures))
    }
}

fn default_value(prop: &portcullis_schema::Property, ctx: &WriteContext) -> Option<Value> {
    if prop.server_set == ServerSet::CurrentUserId {
        // Token user ids are text; the property has its own type.
        return ctx.user_id.as_ref().and_then(|v| coerce(v, &prop.ty).ok());
    }
    match prop.default_fn {
        Some(DefaultFn::Now) => Some(Value::String(portcullis_query::format_date(
            chrono::Utc::now().timestamp_millis(),
        ))),
        Some(DefaultFn::Uuid) => Some(Value::String(uuid::Uuid::new_v4().to_string())),
        None => prop.default.clone(),
    }
}

/// Coerces one client value to a property type, the way LoopBack's type constructors do
/// for well-formed input, and refuses what they would turn into garbage (`NaN`,
/// `Invalid Date`, `[object Object]`).
pub fn coerce(value: &Value, ty: &PropType) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        PropType::Any => Ok(value.clone()),
        PropType::String => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err("is not a string".into()),
        },
        PropType::Number => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
            Value::String(s) => parse_number(s.trim()).ok_or_else(|| "is not a number".to_string()),
            _ => Err("is not a number".into()),
        },
        PropType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) => match s.as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err("is not a boolean".into()),
            },
            Value::Number(n) if n.as_f64() == Some(1.0) => Ok(Value::Bool(true)),
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(Value::Bool(false)),
            _ => Err("is not a boolean".into()),
        },
        PropType::Date => {
            let millis = match value {
                Value::String(s) => portcullis_query::parse_date(s),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            millis
                .map(|m| Value::String(portcullis_query::format_date(m)))
                .ok_or_else(|| "is not a valid date".to_string())
        }
        PropType::Object => match value {
            Value::Object(_) => Ok(value.clone()),
            _ => Err("is not an object".into()),
        },
        PropType::Array(item) => match value {
            Value::Array(items) => match item {
                Some(item_ty) => items
                    .iter()
                    .map(|i| coerce(i, item_ty))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
                    .map_err(|m| format!("has an item that {m}")),
                None => Ok(value.clone()),
            },
            _ => Err("is not an array".into()),
        },
    }
}

fn parse_number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = s.parse().ok()?;
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// Removes what clients must never see: hidden properties everywhere, and protected
/// properties where the instance is nested in another (LoopBack's rule), recursing
/// through included relations.
pub fn shape_output(app: &App, model: &Model, record: &mut Record, nested: bool) {
    for prop in &model.properties {
        if prop.hidden || (nested && prop.protected) {
            record.remove(&prop.name);
        }
    }
    for relation in &model.relations {
        let target = app.model(relation.target);
        match record.get_mut(&relation.name) {
            Some(Value::Object(inner)) => shape_output(app, target, inner, true),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        shape_output(app, target, inner, true);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A coerced scalar back as JSON, as it would be stored.
pub fn scalar_json(s: &portcullis_query::Scalar) -> Value {
    use portcullis_query::Scalar;
    match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Int(i) => Value::from(*i),
        Scalar::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Scalar::Text(t) => Value::String(t.clone()),
        Scalar::Date(d) => Value::String(portcullis_query::format_date(*d)),
        Scalar::Json(v) => v.clone(),
    }
}
