//! The `filter` object: `where`, `order`, `limit`, `skip`/`offset`, `fields` and `include`,
//! each checked against the model (and, for includes, against each relation's target)
//! and turned into a [`Filter`].

use std::collections::HashSet;

use portcullis_schema::{App, Model, ModelId};
use serde_json::{Map, Value};

use crate::ast::{Filter, Include, OrderBy};
use crate::coerce::parse_number;
use crate::error::{cut, echo, QueryError};
use crate::where_clause::{check_depth, model_of, parse_where_in, resolve_property};
use crate::Scalar;

/// Largest `limit` or `skip` accepted. LoopBack has no bound; a larger value can only be a
/// mistake or an attempt to overflow a back end's arithmetic.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// The limit LoopBack applies when `skip`/`offset` is given without one.
pub const DEFAULT_LIMIT_WITH_SKIP: u64 = 100;
/// Deepest include nesting accepted (`a` → `b` → … five relations).
pub const MAX_INCLUDE_DEPTH: usize = 5;

/// Parses a decoded filter object (from JSON or from [`crate::parse_query_string`]) for
/// `model`. `null` and `""` are the empty filter; other non-objects are
/// `Value is not an object.`; unknown top-level keys are ignored, as in LoopBack.
pub fn parse_filter(app: &App, model: ModelId, value: &Value) -> Result<Filter, QueryError> {
    let model = model_of(app, model)?;
    let map = match value {
        Value::Null => return Ok(Filter::default()),
        Value::String(s) if s.is_empty() => return Ok(Filter::default()),
        Value::Object(map) => map,
        _ => return Err(QueryError::not_an_object()),
    };
    // juggler sanitizes the whole filter first; this also bounds every recursion below.
    check_depth(value)?;
    filter_object(app, model, map, 0)
}

fn filter_object(
    app: &App,
    model: &Model,
    map: &Map<String, Value>,
    include_depth: usize,
) -> Result<Filter, QueryError> {
    let mut filter = Filter::default();
    let (limit, skip) = paging(map)?;
    filter.limit = limit;
    filter.skip = skip;
    if let Some(order) = map.get("order") {
        filter.order = parse_order(model, order)?;
    }
    if let Some(fields) = map.get("fields") {
        filter.fields = parse_fields(model, fields)?;
    }
    if let Some(where_) = map.get("where") {
        filter.where_ = parse_where_in(model, where_)?;
    }
    if let Some(include) = map.get("include") {
        parse_include(app, model, include, include_depth, &mut filter.include)?;
    }
    Ok(filter)
}

/// JavaScript truthiness, which juggler uses to decide whether `limit`/`skip` are given
/// and which `fields` entries are selected.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `limit` and `skip`/`offset`, with juggler's rule that `skip` without `limit` means a
/// limit of 100. Strings from query strings are read as numbers.
fn paging(map: &Map<String, Value>) -> Result<(Option<u64>, u64), QueryError> {
    let limit_raw = map
        .get("limit")
        .filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""));
    // `filter.skip || filter.offset`
    let skip_raw = map
        .get("skip")
        .filter(|v| truthy(v))
        .or_else(|| map.get("offset").filter(|v| truthy(v)));
    let limit = match limit_raw {
        Some(raw) => Some(count(raw, 1).ok_or_else(|| {
            QueryError::new(format!("The limit parameter {} is not valid", echo(raw)))
        })?),
        None => None,
    };
    let skip = match skip_raw {
        Some(raw) => count(raw, 0).ok_or_else(|| {
            QueryError::new(format!(
                "The offset/skip parameter {} is not valid",
                echo(raw)
            ))
        })?,
        None => 0,
    };
    let limit = limit.or(skip_raw.map(|_| DEFAULT_LIMIT_WITH_SKIP));
    Ok((limit, skip))
}

/// An integer in `min ..= MAX_LIMIT`, from a JSON number or a numeric string.
fn count(raw: &Value, min: u64) -> Option<u64> {
    let n = match raw {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => match parse_number(s)? {
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
            _ => return None,
        },
        _ => return None,
    };
    let in_range = n.fract() == 0.0 && n >= min as f64 && n <= MAX_LIMIT as f64;
    // The range check makes the cast exact.
    in_range.then_some(n as u64)
}

/// `"prop"`, `"prop ASC"`, `"a DESC, b"`, or an array of such strings.
fn parse_order(model: &Model, value: &Value) -> Result<Vec<OrderBy>, QueryError> {
    let items: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::String(_) => vec![value],
        Value::Array(items) => items.iter().collect(),
        other => {
            return Err(QueryError::new(format!(
                "The order {} is not valid",
                echo(other)
            )))
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Value::String(text) = item else {
            return Err(QueryError::new(format!(
                "The order {} is not valid",
                echo(item)
            )));
        };
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let parts: Vec<&str> = token.split_whitespace().collect();
            let (name, descending) = match parts.as_slice() {
                [name] => (*name, false),
                [name, dir] if dir.eq_ignore_ascii_case("asc") => (*name, false),
                [name, dir] if dir.eq_ignore_ascii_case("desc") => (*name, true),
                _ => {
                    return Err(QueryError::new(format!(
                        "The order {} has invalid direction",
                        echo(&Value::String(token.to_string()))
                    )))
                }
            };
            out.push(OrderBy {
                property: resolve_property(model, name, "order")?,
                descending,
            });
        }
    }
    Ok(out)
}

/// `"name"`, `["name", "qty"]`, `{"name": true}` (include) or `{"name": false}` (exclude,
/// when no value is truthy). Declared properties only, in model order; `None` when the
/// selection is empty (every property is returned then).
fn parse_fields(model: &Model, value: &Value) -> Result<Option<Vec<String>>, QueryError> {
    let invalid = || QueryError::new(format!("The fields parameter {} is not valid", echo(value)));
    let (names, include): (Vec<&str>, bool) = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => (vec![s.as_str()], true),
        Value::Array(items) => (
            items
                .iter()
                .map(|v| v.as_str().ok_or_else(invalid))
                .collect::<Result<_, _>>()?,
            true,
        ),
        Value::Object(map) => {
            let selected: Vec<&str> = map
                .iter()
                .filter(|(_, v)| truthy(v))
                .map(|(k, _)| k.as_str())
                .collect();
            if selected.is_empty() {
                (map.keys().map(String::as_str).collect(), false)
            } else {
                (selected, true)
            }
        }
        _ => return Err(invalid()),
    };
    if model.is_strict() {
        if let Some(unknown) = names.iter().find(|n| model.property(n).is_none()) {
            return Err(QueryError::new(format!(
                "Property \"{}\" is not defined for {} model",
                cut(unknown.to_string()),
                model.name
            )));
        }
    }
    let names: HashSet<&str> = names.into_iter().collect();
    if names.is_empty() {
        return Ok(None);
    }
    let selected: Vec<String> = model
        .properties
        .iter()
        .filter(|p| names.contains(p.name.as_str()) == include)
        .map(|p| p.name.clone())
        .collect();
    Ok((!selected.is_empty()).then_some(selected))
}

/// One `include` value, in any of LoopBack's shapes, appended to `out`.
fn parse_include(
    app: &App,
    model: &Model,
    value: &Value,
    depth: usize,
    out: &mut Vec<Include>,
) -> Result<(), QueryError> {
    match value {
        // `{"rel": true}` and `{"rel": ""}` (query strings) name no nested include.
        Value::Null | Value::Bool(_) => Ok(()),
        Value::String(s) if s.is_empty() => Ok(()),
        Value::String(name) => add_include(app, model, name, None, None, depth, out),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| parse_include(app, model, item, depth, out)),
        Value::Object(map) => {
            // juggler: `include.rel || include.relation` names the relation.
            let named = map
                .get("rel")
                .filter(|v| truthy(v))
                .or_else(|| map.get("relation"));
            if let Some(Value::String(name)) = named {
                return add_include(app, model, name, map.get("scope"), None, depth, out);
            }
            map.iter().try_for_each(|(name, sub)| {
                add_include(app, model, name, None, Some(sub), depth, out)
            })
        }
        Value::Number(_) => Err(QueryError::new(format!(
            "The include {} is not valid",
            echo(value)
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn add_include(
    app: &App,
    model: &Model,
    name: &str,
    scope: Option<&Value>,
    nested: Option<&Value>,
    depth: usize,
    out: &mut Vec<Include>,
) -> Result<(), QueryError> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(QueryError::new(format!(
            "The include nesting exceeds maximum depth {MAX_INCLUDE_DEPTH}"
        )));
    }
    let Some(relation) = model.relation(name) else {
        return Err(QueryError::new(format!(
            "Relation \"{}\" is not defined for {} model",
            cut(name.to_string()),
            model.name
        )));
    };
    // LoopBack skips these silently (e.g. `User.accessTokens`).
    if relation.disable_include {
        return Ok(());
    }
    let target = model_of(app, relation.target)?;
    let mut scope_filter = match scope {
        None | Some(Value::Null) => Filter::default(),
        Some(Value::String(s)) if s.is_empty() => Filter::default(),
        Some(Value::Object(map)) => filter_object(app, target, map, depth + 1)?,
        Some(other) => {
            return Err(QueryError::new(format!(
                "The scope of relation \"{}\" is not an object: {}",
                relation.name,
                echo(other)
            )))
        }
    };
    if let Some(nested) = nested {
        parse_include(app, target, nested, depth + 1, &mut scope_filter.include)?;
    }
    let include = Include {
        relation: relation.name.clone(),
        target: relation.target,
        scope: scope_filter,
    };
    // Naming a relation twice loads it once; the later mention wins, as in LoopBack where
    // the later include overwrites the earlier result.
    match out.iter_mut().find(|i| i.relation == include.relation) {
        Some(slot) => *slot = include,
        None => out.push(include),
    }
    Ok(())
}
