//! Custom remote methods: declared in a model's JSON `methods` (LoopBack's `accepts`,
//! `returns`, `http`, `accessType`, `isStatic`), implemented in Rust by name on the server
//! builder, routed and argument-coerced the way strong-remoting does it.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_authz::AccessType;
use portcullis_schema::{App, Model};
use portcullis_store::{Record, Store};
use serde_json::{Map, Value};

use crate::access::BoxFuture;
use crate::error::ApiError;
use crate::route::{Action, RemoteMethod, Route, Segment, Verb};

/// The type of an argument or a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    Number,
    String,
    Boolean,
    Date,
    Object,
    Array,
    Any,
}

impl ArgType {
    fn parse(v: Option<&Value>) -> ArgType {
        match v
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("number" | "integer") => ArgType::Number,
            Some("string") => ArgType::String,
            Some("boolean") => ArgType::Boolean,
            Some("date") => ArgType::Date,
            Some("object") => ArgType::Object,
            Some("array") => ArgType::Array,
            _ if v.is_some_and(Value::is_array) => ArgType::Array,
            _ => ArgType::Any,
        }
    }
}

/// Where an argument's value comes from (`http.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSource {
    /// No source: path, then body field, then query, then header (strong-remoting).
    Auto,
    /// The whole body.
    Body,
    /// A field of the body.
    Form,
    Query,
    Path,
    Header,
    /// The request itself: handlers get the caller in [`RemoteCall`] instead.
    Req,
}

#[derive(Debug, Clone)]
pub struct ArgSpec {
    pub name: String,
    pub ty: ArgType,
    pub required: bool,
    pub source: ArgSource,
}

#[derive(Debug, Clone)]
pub struct ReturnSpec {
    pub name: Option<String>,
    /// `root: true`: the value is the whole response.
    pub root: bool,
}

/// `authorize` metadata (LoopBack 4's `@authorize`), for custom and built-in methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeMeta {
    pub allowed_roles: Vec<String>,
    pub denied_roles: Vec<String>,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    /// Voters by registered name, run in this order.
    pub voters: Vec<String>,
    /// `skip: true`: the method is not subject to the decision matrix.
    pub skip: bool,
}

impl AuthorizeMeta {
    /// Parses the documented JSON form:
    /// `{"allowedRoles": [], "deniedRoles": [], "scopes": [], "resource": "", "voters": [], "skip": false}`.
    pub fn from_json(v: &Value) -> Result<AuthorizeMeta, String> {
        let obj = v.as_object().ok_or("`authorize` must be an object")?;
        let list = |k: &str| -> Result<Vec<String>, String> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_string)
                            .ok_or(format!("`{k}` must hold strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("`{k}` must be an array of strings")),
            }
        };
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "allowedRoles" | "deniedRoles" | "scopes" | "resource" | "voters" | "skip"
            ) {
                return Err(format!("unknown key `{key}` in `authorize`"));
            }
        }
        Ok(AuthorizeMeta {
            allowed_roles: list("allowedRoles")?,
            denied_roles: list("deniedRoles")?,
            scopes: list("scopes")?,
            resource: obj
                .get("resource")
                .and_then(Value::as_str)
                .map(str::to_string),
            voters: list("voters")?,
            skip: obj.get("skip").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// A declared custom method.
#[derive(Debug, Clone)]
pub struct CustomMethod {
    pub name: String,
    pub is_static: bool,
    pub accepts: Vec<ArgSpec>,
    pub returns: Vec<ReturnSpec>,
    pub authorize: Option<AuthorizeMeta>,
}

/// What a remote method implementation receives.
#[derive(Clone)]
pub struct RemoteCall {
    pub app: Arc<App>,
    pub store: Store,
    pub model: String,
    pub method: String,
    /// Arguments by name, coerced to their declared types.
    pub args: Map<String, Value>,
    /// The URL `:id` of an instance method.
    pub instance_id: Option<String>,
    /// The instance of an instance method, loaded before the call.
    pub instance: Option<Record>,
    /// The caller's user id, if logged in.
    pub user_id: Option<Value>,
}

impl RemoteCall {
    /// A numeric argument, if present.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.args.get(name).and_then(Value::as_f64)
    }
}

/// An implementation: returns the method's result (the values named by `returns`, as an
/// object keyed by their `arg` names, or the root value).
pub type RemoteHandler =
    dyn Fn(RemoteCall) -> BoxFuture<'static, Result<Value, ApiError>> + Send + Sync;

/// Handlers by `(model, method)`.
pub type Handlers = HashMap<(String, String), Arc<RemoteHandler>>;

/// Reads a model's `methods`: each becomes a route-table entry and a declaration.
/// A method without an implementation is an error naming it.
pub fn custom_methods(
    model: &Model,
    handlers: &Handlers,
) -> Result<Vec<(RemoteMethod, CustomMethod)>, String> {
    let declared = declared_methods(model)?;
    for (_, spec) in &declared {
        if !handlers.contains_key(&(model.name.clone(), spec.name.clone())) {
            let file = model
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| model.name.clone());
            return Err(format!(
                "{file}: remote method `{}.{}` is declared but not implemented; register it with ServerBuilder::remote_method(\"{}\", \"{}\", …)",
                model.name, spec.name, model.name, spec.name
            ));
        }
    }
    Ok(declared)
}

/// Reads a model's `methods` without looking for implementations (documentation, audits).
pub fn declared_methods(model: &Model) -> Result<Vec<(RemoteMethod, CustomMethod)>, String> {
    let mut out = Vec::new();
    for (raw_name, def) in &model.methods {
        let file = model
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| model.name.clone());
        let here = |m: &str| format!("{file}: method `{raw_name}`: {m}");
        let obj = def.as_object().ok_or_else(|| here("expected an object"))?;
        let (name, prototype) = match raw_name.strip_prefix("prototype.") {
            Some(n) => (n.to_string(), true),
            None => (raw_name.clone(), false),
        };
        let is_static = !prototype && obj.get("isStatic").and_then(Value::as_bool).unwrap_or(true);
        let accepts = match obj.get("accepts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(parse_arg)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| here(&m))?,
            Some(v @ Value::Object(_)) => vec![parse_arg(v).map_err(|m| here(&m))?],
            Some(_) => return Err(here("`accepts` must be an array")),
        };
        let returns = match obj.get("returns") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(parse_return).collect(),
            Some(v) => vec![parse_return(v)],
        };
        let (routes, single_get) =
            parse_http(obj.get("http"), &name, is_static).map_err(|m| here(&m))?;
        let access_type = match obj.get("accessType") {
            None | Some(Value::Null) => {
                if single_get {
                    AccessType::Read
                } else {
                    AccessType::Execute
                }
            }
            Some(Value::String(s)) => match AccessType::parse(s) {
                Some(AccessType::Any) | None => {
                    return Err(here(&format!(
                        "accessType `{s}` must be READ, WRITE, EXECUTE or REPLICATE"
                    )))
                }
                Some(t) => t,
            },
            Some(_) => return Err(here("accessType must be a string")),
        };
        let authorize = match obj.get("authorize") {
            None | Some(Value::Null) => None,
            Some(v) => Some(AuthorizeMeta::from_json(v).map_err(|m| here(&m))?),
        };
        let index = out.len();
        out.push((
            RemoteMethod {
                name: name.clone(),
                aliases: Vec::new(),
                access_type,
                action: Action::Remote(index),
                routes,
            },
            CustomMethod {
                name,
                is_static,
                accepts,
                returns,
                authorize,
            },
        ));
    }
    Ok(out)
}

fn parse_arg(v: &Value) -> Result<ArgSpec, String> {
    let obj = v
        .as_object()
        .ok_or("each `accepts` entry must be an object")?;
    let name = obj
        .get("arg")
        .and_then(Value::as_str)
        .ok_or("an `accepts` entry needs `arg`")?
        .to_string();
    let source = match obj
        .get("http")
        .and_then(|h| h.get("source"))
        .and_then(Value::as_str)
    {
        None => ArgSource::Auto,
        Some("body") => ArgSource::Body,
        Some("form") => ArgSource::Form,
        Some("query") => ArgSource::Query,
        Some("path") => ArgSource::Path,
        Some("header") => ArgSource::Header,
        Some("req" | "res" | "context") => ArgSource::Req,
        Some(other) => return Err(format!("unknown http.source `{other}` for `{name}`")),
    };
    Ok(ArgSpec {
        ty: ArgType::parse(obj.get("type")),
        required: obj
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name,
        source,
    })
}

fn parse_return(v: &Value) -> ReturnSpec {
    ReturnSpec {
        name: v.get("arg").and_then(Value::as_str).map(str::to_string),
        root: v.get("root").and_then(Value::as_bool).unwrap_or(false),
    }
}

/// The routes of a method, and whether LoopBack gives it READ (a single GET/HEAD route).
fn parse_http(
    http: Option<&Value>,
    name: &str,
    is_static: bool,
) -> Result<(Vec<Route>, bool), String> {
    let entries: Vec<&Value> = match http {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
    };
    let single_get = matches!(http, Some(Value::Object(o)) if o.get("verb").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case("get") || v.eq_ignore_ascii_case("head")));
    let mut routes = Vec::new();
    let specs: Vec<(String, String)> = if entries.is_empty() {
        vec![("post".into(), format!("/{name}"))]
    } else {
        entries
            .iter()
            .map(|e| {
                let verb = e
                    .get("verb")
                    .and_then(Value::as_str)
                    .unwrap_or("post")
                    .to_string();
                let path = e
                    .get("path")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("/{name}"));
                (verb, path)
            })
            .collect()
    };
    for (verb, path) in specs {
        let verb = match verb.to_ascii_lowercase().as_str() {
            "get" => Verb::Get,
            "head" => Verb::Head,
            "post" => Verb::Post,
            "put" => Verb::Put,
            "patch" => Verb::Patch,
            "delete" | "del" => Verb::Delete,
            "all" => Verb::All,
            other => return Err(format!("unknown http verb `{other}`")),
        };
        let mut segments = Vec::new();
        if !is_static {
            segments.push(Segment::Param("id".into()));
        }
        for s in path.split('/').filter(|s| !s.is_empty()) {
            segments.push(match s.strip_prefix(':') {
                Some(name) if segments.contains(&Segment::Param(name.to_string())) => {
                    return Err(format!("path `{path}` names `:{name}` twice"));
                }
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            });
        }
        routes.push(Route { verb, segments });
    }
    Ok((routes, single_get))
}

/// Builds the arguments of a call from the request, coercing as strong-remoting does:
/// strings from the query string and forms are converted; JSON values must already have
/// the right type (`"10"` for a number is refused, as LoopBack refuses it).
pub fn build_args(
    spec: &CustomMethod,
    path_params: &HashMap<&str, String>,
    body: Option<&Value>,
    query: &Map<String, Value>,
    headers: &axum::http::HeaderMap,
    body_is_json: bool,
) -> Result<Map<String, Value>, ApiError> {
    let mut args = Map::new();
    for arg in &spec.accepts {
        let header = || {
            headers
                .get(&arg.name)
                .and_then(|h| h.to_str().ok())
                .map(|s| Value::String(s.to_string()))
        };
        let from_body = || body.and_then(|b| b.get(&arg.name)).cloned();
        let (raw, from_json) = match arg.source {
            ArgSource::Req => continue,
            ArgSource::Body => (body.cloned(), body_is_json),
            ArgSource::Form => (from_body(), body_is_json),
            ArgSource::Query => (query.get(&arg.name).cloned(), false),
            ArgSource::Path => (
                path_params
                    .get(arg.name.as_str())
                    .map(|s| Value::String(s.clone())),
                false,
            ),
            ArgSource::Header => (header(), false),
            ArgSource::Auto => {
                if let Some(p) = path_params.get(arg.name.as_str()) {
                    (Some(Value::String(p.clone())), false)
                } else if let Some(b) = from_body() {
                    (Some(b), body_is_json)
                } else if let Some(q) = query.get(&arg.name) {
                    (Some(q.clone()), false)
                } else {
                    (header(), false)
                }
            }
        };
        let value = match raw {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() && !from_json => None,
            Some(v) => Some(coerce_arg(&arg.name, arg.ty, v, from_json)?),
        };
        match value {
            Some(v) => {
                args.insert(arg.name.clone(), v);
            }
            None if arg.required => {
                return Err(ApiError::bad_request(format!(
                    "{} is a required argument",
                    arg.name
                )));
            }
            None => {}
        }
    }
    Ok(args)
}

fn coerce_arg(name: &str, ty: ArgType, v: Value, from_json: bool) -> Result<Value, ApiError> {
    let bad = |what: &str| {
        ApiError::bad_request(format!("Value is not {what}."))
            .details(serde_json::json!({ "arg": name }))
    };
    match (ty, v) {
        (ArgType::Any, v) => Ok(v),
        (ArgType::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (ArgType::Number, Value::String(s)) if !from_json => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some(Value::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(Value::Number)
                }
            })
            .ok_or_else(|| bad("a number")),
        (ArgType::Number, _) => Err(bad("a number")),
        (ArgType::String, Value::String(s)) => Ok(Value::String(s)),
        (ArgType::String, Value::Number(n)) if !from_json => Ok(Value::String(n.to_string())),
        (ArgType::String, _) => Err(bad("a string")),
        (ArgType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (ArgType::Boolean, Value::String(s)) if !from_json => match s.as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad("a boolean")),
        },
        (ArgType::Boolean, _) => Err(bad("a boolean")),
        (ArgType::Date, Value::String(s)) => portcullis_query::parse_date(&s)
            .map(|m| Value::String(portcullis_query::format_date(m)))
            .ok_or_else(|| bad("a date")),
        (ArgType::Date, Value::Number(n)) => n
            .as_i64()
            .map(|m| Value::String(portcullis_query::format_date(m)))
            .ok_or_else(|| bad("a date")),
        (ArgType::Date, _) => Err(bad("a date")),
        (ArgType::Object, v @ Value::Object(_)) => Ok(v),
        (ArgType::Object, Value::String(s)) if !from_json => {
            portcullis_query::object_arg(Some(&Value::String(s)))
                .map_err(ApiError::from)?
                .ok_or_else(|| bad("an object"))
        }
        (ArgType::Object, _) => Err(bad("an object")),
        (ArgType::Array, v @ Value::Array(_)) => Ok(v),
        (ArgType::Array, v) if !from_json => Ok(Value::Array(vec![v])),
        (ArgType::Array, _) => Err(bad("an array")),
    }
}

/// Shapes a handler's result as LoopBack does: a `root` return is the body itself;
/// otherwise the body is an object keyed by the return names. A handler may already
/// return that object.
pub fn shape_result(spec: &CustomMethod, result: Value) -> Option<Value> {
    match spec.returns.as_slice() {
        [] => None,
        [one] if one.root => Some(result),
        [one] => match (&one.name, &result) {
            (Some(n), Value::Object(o)) if o.contains_key(n) && o.len() == 1 => Some(result),
            (Some(n), _) => {
                let mut m = Map::new();
                m.insert(n.clone(), result);
                Some(Value::Object(m))
            }
            (None, _) => Some(result),
        },
        _ => Some(result),
    }
}
