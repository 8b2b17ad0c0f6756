//! The `where` language: property conditions, `and`/`or`, and the operators `eq`, `neq`,
//! `gt`, `gte`, `lt`, `lte`, `between`, `inq`, `nin`, `like`, `nlike`, `ilike`, `nilike`
//! and `regexp`, checked against the model and coerced to property types. Also the two
//! whole-query guards juggler applies first: the depth limit and the ban on `$` operators.

use portcullis_schema::{App, Model, ModelId, PropType};
use serde_json::{Map, Value};

use crate::ast::{Op, PropRef, Scalar, Where};
use crate::coerce::coerce_scalar;
use crate::error::{cut, echo, QueryError};

/// juggler's `maxDepthOfQuery` default for REST requests.
pub const MAX_QUERY_DEPTH: usize = 12;
/// Longest `like` or `regexp` pattern accepted, in characters.
pub const MAX_PATTERN_LEN: usize = 1000;
/// Compiled-size bound for `regexp` patterns, so `a{1000}{1000}` is refused rather than
/// built. Back ends recompiling with the `regex` crate's larger default limit succeed.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Parses a `where` object for `model`. `Ok(None)` when it has no condition (`{}`, `null`
/// or `""`, and clauses that are always true such as `and: []`).
///
/// An empty `inq` list is [`Where::Never`]; an empty `nin` list is no condition.
pub fn parse_where(app: &App, model: ModelId, value: &Value) -> Result<Option<Where>, QueryError> {
    let model = model_of(app, model)?;
    parse_where_in(model, value)
}

pub(crate) fn model_of(app: &App, id: ModelId) -> Result<&Model, QueryError> {
    app.models
        .get(id.0)
        .ok_or_else(|| QueryError::new(format!("Unknown model #{}", id.0)))
}

pub(crate) fn parse_where_in(model: &Model, value: &Value) -> Result<Option<Where>, QueryError> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::Object(map) => map,
        other => {
            return Err(QueryError::new(format!(
                "The where clause {} is not an object",
                echo(other)
            )))
        }
    };
    check_depth(value)?;
    check_operators(value)?;
    where_object(model, map)
}

/// `QUERY_OBJECT_TOO_DEEP` when any node sits deeper than [`MAX_QUERY_DEPTH`] levels below
/// `value` (arrays count as levels, as in juggler's traversal). Stops at the first node
/// past the limit, so it also bounds every later recursion over the value.
pub(crate) fn check_depth(value: &Value) -> Result<(), QueryError> {
    fn too_deep(value: &Value, level: usize) -> bool {
        if level > MAX_QUERY_DEPTH {
            return true;
        }
        match value {
            Value::Array(items) => items.iter().any(|v| too_deep(v, level + 1)),
            Value::Object(map) => map.values().any(|v| too_deep(v, level + 1)),
            _ => false,
        }
    }
    if too_deep(value, 0) {
        return Err(QueryError::new(format!(
            "The query object exceeds maximum depth {MAX_QUERY_DEPTH}"
        ))
        .with_code("QUERY_OBJECT_TOO_DEEP"));
    }
    Ok(())
}

/// `OPERATOR_NOT_ALLOWED_IN_QUERY` when any key anywhere in the where starts with `$`
/// (MongoDB-style operators, which LoopBack refuses unless `allowExtendedOperators`).
fn check_operators(value: &Value) -> Result<(), QueryError> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            Value::Object(map) => {
                for (k, v) in map {
                    if k.starts_with('$') && !out.contains(k) {
                        out.push(k.clone());
                    }
                    collect(v, out);
                }
            }
            _ => {}
        }
    }
    let mut operators = Vec::new();
    collect(value, &mut operators);
    if operators.is_empty() {
        return Ok(());
    }
    Err(QueryError::new(cut(format!(
        "Operators \"{}\" are not allowed in query",
        operators.join(", ")
    )))
    .with_code("OPERATOR_NOT_ALLOWED_IN_QUERY")
    .with_details(serde_json::json!({ "operators": operators, "where": value })))
}

fn where_object(model: &Model, map: &Map<String, Value>) -> Result<Option<Where>, QueryError> {
    let mut parts = Vec::new();
    for (key, value) in map {
        let part = match key.as_str() {
            "and" | "or" => logical(model, key, value)?,
            // juggler validates `nor` but the memory connector never implemented it.
            "nor" => return Err(QueryError::new("The nor operator is not supported")),
            _ => condition(model, key, value)?,
        };
        parts.extend(part);
    }
    Ok(conjoin(parts))
}

/// AND of the parts; `None` (always true) when there are none.
fn conjoin(mut parts: Vec<Where>) -> Option<Where> {
    if parts.iter().any(|w| matches!(w, Where::Never)) {
        return Some(Where::Never);
    }
    match parts.len() {
        0 => None,
        1 => parts.pop(),
        _ => Some(Where::And(parts)),
    }
}

fn logical(model: &Model, op: &str, value: &Value) -> Result<Option<Where>, QueryError> {
    let invalid = |why: &str| {
        QueryError::new(format!(
            "The {op} operator has invalid clauses {}: {why}",
            echo(value)
        ))
    };
    let clauses = sequence(value).ok_or_else(|| invalid(NOT_ARRAY))?;
    let mut subs = Vec::with_capacity(clauses.len());
    for clause in clauses {
        let Value::Object(map) = clause else {
            return Err(invalid("Clause is not an object"));
        };
        subs.push(where_object(model, map)?);
    }
    if op == "and" {
        return Ok(conjoin(subs.into_iter().flatten().collect()));
    }
    // OR: one always-true branch makes the whole clause true; no branch makes it false.
    if subs.iter().any(Option::is_none) {
        return Ok(None);
    }
    let mut branches: Vec<Where> = subs
        .into_iter()
        .flatten()
        .filter(|w| !matches!(w, Where::Never))
        .collect();
    Ok(Some(match branches.len() {
        0 => Where::Never,
        1 => branches.remove(0),
        _ => Where::Or(branches),
    }))
}

const NOT_ARRAY: &str = "Value is not an array or object with sequential numeric indices";

/// juggler's `normalizeArray`: an array, or an object whose keys are exactly `"0"` …
/// `"n-1"` (what `qs` builds for indices above 20), in index order.
fn sequence(value: &Value) -> Option<Vec<&Value>> {
    match value {
        Value::Array(items) => Some(items.iter().collect()),
        Value::Object(map) => {
            let mut slots: Vec<Option<&Value>> = vec![None; map.len()];
            for (k, v) in map {
                let canonical = !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_digit())
                    && (k == "0" || !k.starts_with('0'));
                let index: usize = k.parse().ok().filter(|_| canonical)?;
                let slot = slots.get_mut(index)?;
                *slot = Some(v);
            }
            slots.into_iter().collect()
        }
        _ => None,
    }
}

fn condition(model: &Model, name: &str, value: &Value) -> Result<Option<Where>, QueryError> {
    let property = resolve_property(model, name, "where")?;
    let ty = match &property {
        PropRef::Declared { ty, .. } => ty.clone(),
        PropRef::Dynamic { .. } => PropType::Any,
    };
    let op = match value {
        Value::Object(ops) => match operator(name, &ty, ops, value)? {
            Some(op) => op,
            None => return Ok(None),
        },
        Value::Array(_) if is_scalar_type(&ty) => {
            return Err(QueryError::invalid_clause(
                name,
                value,
                "Expected a value or an operator object",
            ))
        }
        _ => Op::Eq(coerce_scalar(value, &ty)?),
    };
    if matches!(&op, Op::Inq(items) if items.is_empty()) {
        return Ok(Some(Where::Never));
    }
    Ok(Some(Where::Cond { property, op }))
}

fn is_scalar_type(ty: &PropType) -> bool {
    matches!(
        ty,
        PropType::String | PropType::Number | PropType::Boolean | PropType::Date
    )
}

/// One operator object. `Ok(None)` for a condition that is always true (`nin: []`).
fn operator(
    name: &str,
    ty: &PropType,
    ops: &Map<String, Value>,
    clause: &Value,
) -> Result<Option<Op>, QueryError> {
    let invalid = |why: &str| QueryError::invalid_clause(name, clause, why);
    let mut options = None;
    let mut chosen = None;
    for (key, operand) in ops {
        if key == "options" {
            options = Some(operand);
        } else if chosen.is_some() {
            return Err(invalid("Expected exactly one operator"));
        } else {
            chosen = Some((key.as_str(), operand));
        }
    }
    let Some((op, operand)) = chosen else {
        return Err(invalid("Expected an operator"));
    };
    let pattern_op = matches!(op, "like" | "nlike" | "ilike" | "nilike" | "regexp");
    let options_i = match options {
        None | Some(Value::Null) => false,
        Some(_) if !pattern_op => {
            return Err(invalid("The options key only applies to like and regexp"))
        }
        Some(Value::String(s)) => s.contains('i'),
        Some(_) => return Err(invalid("Expected options to be a string")),
    };
    let coerce = |v: &Value| coerce_scalar(v, ty);
    let list = || -> Result<Vec<Scalar>, QueryError> {
        sequence(operand)
            .ok_or_else(|| invalid(NOT_ARRAY))?
            .into_iter()
            .map(coerce)
            .collect()
    };
    let pattern = || -> Result<&str, QueryError> {
        let Value::String(s) = operand else {
            return Err(invalid("Expected a string or RegExp"));
        };
        if s.chars().count() > MAX_PATTERN_LEN {
            return Err(invalid(&format!(
                "The pattern is longer than {MAX_PATTERN_LEN} characters"
            )));
        }
        Ok(s)
    };
    let like = |negated: bool, case_insensitive: bool| -> Result<Op, QueryError> {
        Ok(Op::Like {
            pattern: pattern()?.to_string(),
            negated,
            case_insensitive,
        })
    };
    Ok(Some(match op {
        "eq" => Op::Eq(coerce(operand)?),
        "neq" => Op::Neq(coerce(operand)?),
        "gt" => Op::Gt(coerce(operand)?),
        "gte" => Op::Gte(coerce(operand)?),
        "lt" => Op::Lt(coerce(operand)?),
        "lte" => Op::Lte(coerce(operand)?),
        "between" => {
            let items = sequence(operand).ok_or_else(|| invalid(NOT_ARRAY))?;
            let [low, high] = items.as_slice() else {
                return Err(invalid(&format!(
                    "Expected precisely 2 values, received {}",
                    items.len()
                )));
            };
            Op::Between(coerce(low)?, coerce(high)?)
        }
        "inq" => Op::Inq(list()?),
        "nin" => {
            let items = list()?;
            if items.is_empty() {
                return Ok(None);
            }
            Op::Nin(items)
        }
        "like" => like(false, options_i)?,
        "nlike" => like(true, options_i)?,
        "ilike" => like(false, true)?,
        "nilike" => like(true, true)?,
        "regexp" => regexp(pattern()?, options_i).map_err(|why| invalid(&why))?,
        "near" | "maxDistance" | "minDistance" | "unit" => {
            return Err(invalid("The near operator is not supported"))
        }
        other => {
            return Err(invalid(&format!(
                "Unknown operator \"{}\"",
                cut(other.to_string())
            )))
        }
    }))
}

/// `"^abc"` or `"/abc/i"`. Only the `i` flag changes matching; `g` and `m` are accepted and
/// ignored as juggler's `toRegExp` accepts them; any other flag is refused.
fn regexp(text: &str, options_i: bool) -> Result<Op, String> {
    let (pattern, flags) = match text.rfind('/') {
        Some(last) if last > 0 && text.starts_with('/') => (&text[1..last], &text[last + 1..]),
        _ => (text, ""),
    };
    let invalid_flags: Vec<String> = flags
        .chars()
        .filter(|c| !matches!(c, 'i' | 'g' | 'm'))
        .map(String::from)
        .collect();
    if !invalid_flags.is_empty() {
        return Err(format!("Invalid regex flags: {}", invalid_flags.join(",")));
    }
    let case_insensitive = options_i || flags.contains('i');
    regex::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| "Invalid regular expression".to_string())?;
    Ok(Op::Regexp {
        pattern: pattern.to_string(),
        case_insensitive,
    })
}

/// Checks a property name used in `where` or `order`: a declared, non-hidden property, or
/// on a non-strict model an undeclared name that is a plain identifier.
pub(crate) fn resolve_property(
    model: &Model,
    name: &str,
    usage: &str,
) -> Result<PropRef, QueryError> {
    if let Some(p) = model.property(name) {
        if p.hidden {
            return Err(QueryError::new(format!(
                "The {name} property is hidden and cannot be used in {usage}"
            )));
        }
        return Ok(PropRef::Declared {
            name: p.name.clone(),
            ty: p.ty.clone(),
        });
    }
    let shown = cut(name.to_string());
    // A key `qs` cut off at depth 5 looks like `[qty][gt]`: say how to fix it.
    let hint = if name.contains('[') {
        " (query strings nest at most 5 levels; send deeper filters as JSON)"
    } else {
        ""
    };
    if model.relation(name).is_some() {
        return Err(QueryError::new(format!(
            "Relation \"{shown}\" of {} model cannot be used in {usage}",
            model.name
        )));
    }
    if name.contains('.') {
        return Err(QueryError::new(format!(
            "Nested property \"{shown}\" cannot be used in {usage}"
        )));
    }
    if model.is_strict() {
        return Err(QueryError::new(format!(
            "Property \"{shown}\" is not defined for {} model{hint}",
            model.name
        )));
    }
    if !is_dynamic_name(name) {
        return Err(QueryError::new(format!(
            "Property name \"{shown}\" is not valid{hint}"
        )));
    }
    Ok(PropRef::Dynamic {
        name: name.to_string(),
    })
}

/// Undeclared names end up as keys into a row's extra JSON data: allow plain identifiers
/// only, so back ends never see quoting or path syntax.
fn is_dynamic_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 128
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}
