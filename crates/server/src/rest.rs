//! The REST handler: resolves a request under the REST root to a model and remote method,
//! builds its arguments the way strong-remoting does, runs the built-in PersistedModel and
//! relation behaviour against the store, and writes LoopBack's response shapes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use portcullis_query::{Filter, Op, PropRef, Scalar, Where};
use portcullis_schema::{App, Model, ModelId, Relation, RelationKind};
use portcullis_store::{Record, Store};
use serde_json::{json, Map, Value};

use crate::access::{AccessControl, AccessInput, RoleResolver};
use crate::authorize::{acl_vote, run_matrix, MatrixOptions, VoterContext, VoterFn};
use crate::body::read_body;
use crate::error::{store_error, ApiError};
use crate::groups::GroupConfig;
use crate::hooks::{Hooks, Operation, OperationContext, RemoteContext};
use crate::instance::{prepare, shape_output, WriteContext, WriteMode};
use crate::mail::{LogMailer, Mailer};
use crate::remote::{AuthorizeMeta, CustomMethod, Handlers, RemoteCall};
use crate::route::{match_route, model_methods, Action, RelOp, RemoteMethod, Verb};
use crate::secrets::Hasher;
use crate::throttle::{LoginThrottle, ThrottleConfig};
use crate::token::{self, extract_token, Token, TokenCache, TokenOptions, TokenState};

/// Everything a request needs, built once at start-up.
pub struct RestState {
    pub app: Arc<App>,
    pub store: Store,
    /// Remote methods per public model, keyed by lower-cased URL segment.
    models: HashMap<String, (ModelId, Vec<RemoteMethod>)>,
    pub body_limit: usize,
    pub error_debug: bool,
    pub access: AccessControl,
    pub tokens: TokenCache,
    pub token_options: TokenOptions,
    pub token_model: Option<ModelId>,
    /// Tokens name their user model when an app has several.
    pub several_user_models: bool,
    pub allow_eternal_tokens: bool,
    pub hasher: Hasher,
    pub mailer: Arc<dyn Mailer>,
    pub throttle: LoginThrottle,
    /// Held while a user row is checked for uniqueness and written.
    pub user_writes: tokio::sync::Mutex<()>,
    pub hooks: Hooks,
    /// `loopback-component-access-groups`, when the app configures it.
    pub groups: Option<Arc<GroupConfig>>,
    /// Cache invalidation across nodes (PostgreSQL; a no-op on SQLite). See `cluster.rs`.
    pub cluster: crate::cluster::Cluster,
    /// Change-stream subscribers of this node. See `changes.rs`.
    pub changes: crate::changes::Changes,
    /// Declared custom methods per model, indexed by `Action::Remote`.
    pub custom: HashMap<ModelId, Vec<CustomMethod>>,
    pub handlers: Handlers,
    pub voters: HashMap<String, Arc<VoterFn>>,
    /// `authorize` metadata by `(model, method)`.
    pub authorize: HashMap<(String, String), AuthorizeMeta>,
    pub matrix: MatrixOptions,
}

/// Extension points given to [`RestState::new`] by the app builder.
#[derive(Default)]
pub struct Extensions {
    pub resolvers: HashMap<String, Arc<dyn RoleResolver>>,
    pub mailer: Option<Arc<dyn Mailer>>,
    pub hooks: Hooks,
    pub groups: Option<Arc<GroupConfig>>,
    pub handlers: Handlers,
    pub voters: HashMap<String, Arc<VoterFn>>,
    pub authorize: HashMap<(String, String), AuthorizeMeta>,
    pub change_streams: crate::changes::ChangeStreamOptions,
}

impl RestState {
    /// Builds the state; fails on a custom method that is declared but not implemented,
    /// or on malformed `authorize` metadata.
    pub fn new(app: Arc<App>, store: Store, ext: Extensions) -> Result<Self, String> {
        let mut models = HashMap::new();
        let mut custom = HashMap::new();
        let mut authorize = ext.authorize;
        for m in app.public_models() {
            let mut methods = model_methods(m);
            let declared = crate::remote::custom_methods(m, &ext.handlers)?;
            let mut specs = Vec::with_capacity(declared.len());
            for (route, spec) in declared {
                methods.push(route);
                specs.push(spec);
            }
            custom.insert(m.id, specs);
            if let Some(Value::Object(per_method)) = m.setting("authorize") {
                for (method, meta) in per_method {
                    let meta = crate::remote::AuthorizeMeta::from_json(meta)
                        .map_err(|e| format!("model `{}`: authorize.{method}: {e}", m.name))?;
                    authorize
                        .entry((m.name.clone(), method.clone()))
                        .or_insert(meta);
                }
            }
            models.insert(m.http_path.to_ascii_lowercase(), (m.id, methods));
        }
        let user_models: Vec<&Model> = app
            .models
            .iter()
            .filter(|m| m.is_user_model() && !m.builtin)
            .collect();
        let allow_eternal_tokens = app
            .user_model()
            .and_then(|m| m.setting_bool("allowEternalTokens"))
            .unwrap_or(false);
        let mailer = ext.mailer.unwrap_or_else(|| {
            if app.public_models().any(Model::is_user_model) {
                tracing::warn!("no mail transport configured: verification and reset mails are written to the log (development only)");
            }
            Arc::new(LogMailer)
        });
        Ok(Self {
            custom,
            handlers: ext.handlers,
            voters: ext.voters,
            authorize,
            matrix: MatrixOptions::from_config(&app.config.raw),
            access: AccessControl::new(&app, ext.resolvers, ext.groups.as_ref()),
            groups: ext.groups,
            cluster: crate::cluster::Cluster::for_store(&store),
            changes: crate::changes::Changes::new(ext.change_streams),
            tokens: TokenCache::default(),
            token_options: TokenOptions::from_app(&app),
            token_model: app.model_id("AccessToken"),
            several_user_models: user_models.len() > 1,
            allow_eternal_tokens,
            hasher: Hasher::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
                    .div_ceil(2),
            ),
            mailer,
            throttle: LoginThrottle::new(ThrottleConfig::from_config(&app.config.raw)),
            user_writes: tokio::sync::Mutex::new(()),
            hooks: ext.hooks,
            body_limit: app.config.body_limit,
            error_debug: app.config.error_debug,
            models,
            app,
            store,
        })
    }

    /// One of `model`'s remote methods by its canonical name.
    pub(crate) fn remote_method(&self, model: &Model, name: &str) -> Option<&RemoteMethod> {
        self.models
            .get(&model.http_path.to_ascii_lowercase())
            .and_then(|(_, methods)| methods.iter().find(|m| m.name == name))
    }

    /// The `authorize` metadata of a method, from its declaration, the model's `authorize`
    /// setting, or the Rust builder.
    fn authorize_meta<'a>(
        &'a self,
        model: &Model,
        method: &RemoteMethod,
    ) -> Option<&'a AuthorizeMeta> {
        if let Action::Remote(i) = method.action {
            if let Some(meta) = self
                .custom
                .get(&model.id)
                .and_then(|c| c.get(i))
                .and_then(|c| c.authorize.as_ref())
            {
                return Some(meta);
            }
        }
        self.authorize
            .get(&(model.name.clone(), method.name.clone()))
    }
}

/// The arguments of one invocation.
pub struct Invocation<'a> {
    pub state: &'a RestState,
    pub model: &'a Model,
    pub id: Option<String>,
    pub fk: Option<String>,
    pub query: Map<String, Value>,
    pub headers: &'a HeaderMap,
    pub body: Option<Value>,
    pub write_ctx: WriteContext,
    /// HEAD routes answer with a status and no body.
    pub head: bool,
    /// The caller's valid token, if any.
    pub token: Option<Arc<Token>>,
    pub peer: Option<SocketAddr>,
    /// The role of the ACL rule that allowed the request, if a role rule decided.
    pub granted_by: Option<String>,
    /// A custom method's coerced arguments.
    pub args: Map<String, Value>,
}

/// What a method produced.
pub enum Outcome {
    Json(Value),
    /// A status with an empty body (HEAD).
    Empty(StatusCode),
    NoContent,
    /// 302 to a same-site path.
    Redirect(String),
    /// A response built by the method itself (a change stream).
    Stream(Response),
}

pub async fn handle(State(state): State<Arc<RestState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    match dispatch(
        &state,
        &parts.method,
        &parts.uri,
        &parts.headers,
        peer,
        body,
    )
    .await
    {
        Ok(Outcome::Json(value)) => json_response(StatusCode::OK, &value),
        Ok(Outcome::Empty(status)) => status.into_response(),
        Ok(Outcome::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::Stream(response)) => response,
        Ok(Outcome::Redirect(to)) => match HeaderValue::from_str(&to) {
            Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
            Err(_) => crate::error::error_response(
                &ApiError::bad_request("invalid redirect"),
                state.error_debug,
            ),
        },
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(
                    status = e.status,
                    cause = e.internal.as_deref().unwrap_or(&e.message),
                    "request failed"
                );
            }
            crate::error::error_response(&e, state.error_debug)
        }
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

async fn dispatch(
    state: &Arc<RestState>,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: Body,
) -> Result<Outcome, ApiError> {
    let path = uri.path();
    let verb = Verb::from_http(method);
    let query = portcullis_query::parse_query_string(uri.query().unwrap_or(""));
    // The token comes first, as in LoopBack: an expired one fails even an unknown route.
    let raw_token = extract_token(&query, None, headers, &state.token_options);
    let token_state = match state.token_model {
        Some(tm) => {
            token::resolve(
                raw_token.as_deref(),
                &state.store,
                tm,
                &state.tokens,
                state.allow_eternal_tokens,
            )
            .await?
        }
        None => TokenState::Anonymous,
    };
    let token = token_state.token().cloned();
    let no_route = || {
        ApiError::not_found(format!(
            "There is no method to handle {} {path}",
            method.as_str()
        ))
    };
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    if let Some(literal) = &state.token_options.current_user_literal {
        if segments.iter().any(|s| s == literal) {
            let uid = token
                .as_ref()
                .and_then(|t| t.user_id_string())
                .ok_or_else(|| {
                    ApiError::new(401, "Authorization Required").code("AUTHORIZATION_REQUIRED")
                })?;
            for s in segments.iter_mut().filter(|s| *s == literal) {
                *s = uid.clone();
            }
        }
    }
    let (first, rest) = segments.split_first().ok_or_else(no_route)?;
    let (model_id, methods) = state
        .models
        .get(&first.to_ascii_lowercase())
        .ok_or_else(no_route)?;
    let model = state.app.model(*model_id);
    let rest_path = format!("/{}", rest.join("/"));
    let matched = verb
        .and_then(|v| match_route(methods, v, rest))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Shared class \"{}\" has no method handling {} {rest_path}",
                model.name,
                method.as_str()
            ))
        })?;
    let body_is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let body = read_body(headers, body, state.body_limit).await?;
    // Custom methods get their arguments before authorization, as in strong-remoting: a
    // missing or ill-typed argument is a 400 whoever asks.
    let custom = match matched.method.action {
        Action::Remote(i) => state.custom.get(&model.id).and_then(|c| c.get(i)),
        _ => None,
    };
    let args = match custom {
        Some(spec) => {
            let mut params: HashMap<&str, String> = matched
                .params
                .iter()
                .map(|(name, value)| (*name, value.clone()))
                .collect();
            if let Some(id) = &matched.id {
                params.insert("id", id.clone());
            }
            crate::remote::build_args(spec, &params, body.as_ref(), &query, headers, body_is_json)?
        }
        None => Map::new(),
    };
    // `$owner` of a custom method: the URL id, else its `id` argument (LoopBack reads the
    // body and query too). Built-in static methods never borrow an id from the body.
    let model_id = matched.id.clone().or_else(|| {
        custom
            .and_then(|_| args.get("id"))
            .map(crate::token::value_to_id_string)
    });
    let app_id = crate::apps::identify(state, headers).await?;
    let input = AccessInput {
        model,
        method: matched.method,
        token: token.as_deref(),
        model_id: model_id.as_deref(),
        body: body.as_ref(),
        app_id: app_id.as_deref(),
    };
    let mut granted_by = None;
    let decision = state.access.check(&state.app, &state.store, &input).await?;
    let voter_args = || {
        if custom.is_some() {
            args.clone()
        } else {
            body.as_ref()
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        }
    };
    match run_voters(state, &input, decision.as_ref(), voter_args).await? {
        Some(outcome) => {
            if !outcome.allowed {
                return Err(
                    if token.as_ref().and_then(|t| t.user_id.as_ref()).is_some() {
                        ApiError::new(403, "Access Denied").code("ACCESS_DENIED")
                    } else {
                        ApiError::new(401, "Authorization Required").code("AUTHORIZATION_REQUIRED")
                    },
                );
            }
        }
        None => {
            if let Some(decision) = &decision {
                if !decision.allowed {
                    return Err(state.access.denial(model, token.is_some()));
                }
                granted_by = decision
                    .deciding_rule()
                    .filter(|r| r.principal_type == portcullis_authz::PrincipalType::Role)
                    .map(|r| r.principal_id.clone());
            }
        }
    }
    if matched.method.action == Action::ChangeStream {
        let where_ = change_stream_where(state, model, &query, body.as_ref())?;
        let last_event_id = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let response = crate::changes::open(
            state.clone(),
            crate::changes::Subscription {
                model: model.id,
                token,
                app_id,
                where_,
                last_event_id,
            },
        )
        .await?;
        return Ok(Outcome::Stream(response));
    }
    let write_ctx = WriteContext {
        user_id: token.as_ref().and_then(|t| t.user_id.clone()),
    };
    let hooked = state.hooks.has_remote(&model.name, &matched.method.name);
    let mut body = body;
    let mut query = query;
    if hooked {
        let ctx = state
            .hooks
            .run_remote(
                false,
                RemoteContext {
                    model: model.name.clone(),
                    method: matched.method.name.clone(),
                    user_id: write_ctx.user_id.clone(),
                    instance_id: matched.id.clone(),
                    body,
                    query,
                    result: None,
                },
            )
            .await?;
        body = ctx.body;
        query = ctx.query;
    }
    let inv = Invocation {
        state,
        model,
        id: matched.id,
        fk: matched.fk,
        query,
        headers,
        body,
        write_ctx,
        head: verb == Some(Verb::Head),
        token,
        peer,
        granted_by,
        args,
    };
    let mut outcome = run(&inv, matched.method.action).await?;
    if hooked {
        if let Outcome::Json(result) = outcome {
            let ctx = state
                .hooks
                .run_remote(
                    true,
                    RemoteContext {
                        model: model.name.clone(),
                        method: matched.method.name.clone(),
                        user_id: inv.write_ctx.user_id.clone(),
                        instance_id: inv.id.clone(),
                        body: inv.body.clone(),
                        query: inv.query.clone(),
                        result: Some(result),
                    },
                )
                .await?;
            outcome = Outcome::Json(ctx.result.unwrap_or(Value::Null));
        }
    }
    if matched.method.access_type != portcullis_authz::AccessType::Read
        && state.access.is_access_model(model.id)
    {
        // Read-your-writes on this node; other nodes reload from the outbox event.
        state.access.reload(&state.store).await?;
    }
    Ok(outcome)
}

/// The decision matrix (the ACL vote, the voters, the role authorizer) for a method with
/// `authorize` metadata; `None` when the method has none or access control is off, and
/// the ACL decision alone decides.
pub(crate) async fn run_voters(
    state: &RestState,
    input: &AccessInput<'_>,
    decision: Option<&portcullis_authz::Decision>,
    args: impl FnOnce() -> Map<String, Value>,
) -> Result<Option<crate::authorize::MatrixDecision>, ApiError> {
    let Some(meta) = state
        .authorize_meta(input.model, input.method)
        .filter(|m| !m.skip && state.access.enabled)
    else {
        return Ok(None);
    };
    let mut roles: Vec<String> = meta.allowed_roles.clone();
    roles.extend(meta.denied_roles.iter().cloned());
    let held = state
        .access
        .roles_held(&state.app, &state.store, input, &roles)
        .await?;
    let (model, method) = (input.model, input.method);
    let ctx = VoterContext {
        model: model.name.clone(),
        method: method.name.clone(),
        resource: meta
            .resource
            .clone()
            .unwrap_or_else(|| format!("{}.{}", model.name, method.name)),
        principals: crate::access::principals_of(&state.app, input.token, input.app_id),
        user_id: input.token.and_then(|t| t.user_id_string()),
        roles: held,
        scopes: meta.scopes.clone(),
        args: args(),
        instance_id: input.model_id.map(str::to_string),
    };
    let outcome = run_matrix(acl_vote(decision), meta, &state.voters, ctx, state.matrix).await;
    tracing::debug!(target: "portcullis::security", "{}.{}: {outcome}", model.name, method.name);
    Ok(Some(outcome))
}

/// Whether `decision`, and the method's voters when it has `authorize` metadata, allow.
pub(crate) async fn allows(
    state: &RestState,
    input: &AccessInput<'_>,
    decision: Option<&portcullis_authz::Decision>,
) -> Result<bool, ApiError> {
    Ok(match run_voters(state, input, decision, Map::new).await? {
        Some(outcome) => outcome.allowed,
        None => decision.is_none_or(|d| d.allowed),
    })
}

/// The `where` of a change stream's `options` (query `options={"where":…}`, or `options` in
/// a JSON or form body).
fn change_stream_where(
    state: &RestState,
    model: &Model,
    query: &Map<String, Value>,
    body: Option<&Value>,
) -> Result<Option<Where>, ApiError> {
    let raw = query
        .get("options")
        .or_else(|| body.and_then(|b| b.get("options")));
    let Some(options) = portcullis_query::object_arg(raw)? else {
        return Ok(None);
    };
    let Value::Object(options) = options else {
        return Err(ApiError::bad_request("options must be an object"));
    };
    match portcullis_query::object_arg(options.get("where"))? {
        Some(w) => Ok(portcullis_query::parse_where(&state.app, model.id, &w)?),
        None => Ok(None),
    }
}

async fn run(inv: &Invocation<'_>, action: Action) -> Result<Outcome, ApiError> {
    let model = inv.model;
    let store = &inv.state.store;
    let err = |e| store_error(&model.name, e);
    match action {
        Action::Find => {
            let mut filter = inv.filter()?;
            inv.scope_filter(model, &mut filter);
            filter.where_ = inv.op_access(model, filter.where_.take()).await?;
            let rows = store.find(model.id, &filter).await.map_err(err)?;
            let rows = inv.op_loaded(model, rows).await?;
            Ok(Outcome::Json(inv.shape_all(model, rows)))
        }
        Action::FindOne => {
            let mut filter = inv.filter()?;
            inv.scope_filter(model, &mut filter);
            filter.where_ = inv.op_access(model, filter.where_.take()).await?;
            let found = store.find_one(model.id, &filter).await.map_err(err)?;
            inv.found_or_404(model, found, "undefined").await
        }
        Action::FindById => {
            let raw = inv.raw_id();
            let mut filter = inv.filter()?;
            // The row itself is judged by the ACLs; its includes are scoped like lists.
            for include in &mut filter.include {
                let target = inv.state.app.model(include.target);
                inv.scope_filter(target, &mut include.scope);
            }
            let found = match inv.id_scalar(model) {
                Some(id)
                    if inv
                        .state
                        .hooks
                        .has_operation(&model.name, Operation::Access) =>
                {
                    let by_id =
                        Where::declared(model.id_name(), model.id_prop().ty.clone(), Op::Eq(id));
                    let w = and_where(by_id, filter.where_.take());
                    filter.where_ = inv.op_access(model, Some(w)).await?;
                    store.find_one(model.id, &filter).await.map_err(err)?
                }
                Some(id) => store
                    .find_by_id(model.id, &id, Some(&filter))
                    .await
                    .map_err(err)?,
                None => None,
            };
            inv.found_or_404(model, found, &raw).await
        }
        Action::Exists => {
            let exists = match inv.id_scalar(model) {
                Some(id) => store.exists(model.id, &id).await.map_err(err)?,
                None => false,
            };
            if inv.is_head() {
                return Ok(Outcome::Empty(if exists {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                }));
            }
            Ok(Outcome::Json(json!({ "exists": exists })))
        }
        Action::Count => {
            let mut where_ = inv.op_access(model, inv.where_arg("where")?).await?;
            if let Some(scope) = inv.row_scope(model, false) {
                where_ = Some(and_where(scope, where_));
            }
            let count = store.count(model.id, where_.as_ref()).await.map_err(err)?;
            Ok(Outcome::Json(json!({ "count": count })))
        }
        Action::Create => {
            let data = inv.body_or_empty();
            let items: Vec<&Value> = match &data {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let _guard = inv.user_guard(model).await;
            let mut rows = Vec::with_capacity(items.len());
            for item in &items {
                let row = inv
                    .prepare_row(model, item, WriteMode::Create, None)
                    .await?;
                rows.push(inv.op_save(model, Operation::BeforeSave, row, true).await?);
            }
            let stored = store.create(model.id, rows).await.map_err(err)?;
            let mut created = Vec::with_capacity(stored.len());
            for row in stored {
                created.push(inv.op_save(model, Operation::AfterSave, row, true).await?);
            }
            if data.is_array() {
                Ok(Outcome::Json(inv.shape_all(model, created)))
            } else {
                let row = created
                    .into_iter()
                    .next()
                    .ok_or_else(|| ApiError::internal("create returned no row"))?;
                Ok(Outcome::Json(inv.shape(model, row)))
            }
        }
        Action::PatchOrCreate | Action::ReplaceOrCreate => {
            let data = inv.body_or_empty();
            let id = data.get(model.id_name()).filter(|v| !v.is_null()).cloned();
            let before = match id.as_ref().and_then(|v| id_from_json(model, v)) {
                Some(id) => store.find_by_id(model.id, &id, None).await.map_err(err)?,
                None => None,
            };
            let _guard = inv.user_guard(model).await;
            let row = match &before {
                Some(before) => {
                    let mode = if action == Action::PatchOrCreate {
                        WriteMode::Patch
                    } else {
                        WriteMode::Replace
                    };
                    let mut row = inv.prepare_row(model, &data, mode, id.as_ref()).await?;
                    if mode == WriteMode::Replace {
                        crate::instance::keep_protected(model, &mut row, before);
                    }
                    if let Some(id) = id {
                        row.insert(model.id_name().to_string(), id);
                    }
                    row
                }
                None => {
                    inv.prepare_row(model, &data, WriteMode::Create, None)
                        .await?
                }
            };
            let row = inv
                .op_save(model, Operation::BeforeSave, row, before.is_none())
                .await?;
            let saved = if action == Action::PatchOrCreate {
                store.patch_or_create(model.id, row).await
            } else {
                store.replace_or_create(model.id, row).await
            }
            .map_err(err)?;
            let saved = inv
                .op_save(model, Operation::AfterSave, saved, before.is_none())
                .await?;
            if let (Some(before), true) = (&before, model.is_user_model()) {
                crate::users::after_user_update(inv, model, before, &saved).await?;
            }
            Ok(Outcome::Json(inv.shape(model, saved)))
        }
        Action::UpsertWithWhere => {
            let mut where_ = inv.where_arg("where")?;
            if let Some(scope) = inv.row_scope(model, true) {
                where_ = Some(and_where(scope, where_));
            }
            let data = inv.body_or_empty();
            let _guard = inv.user_guard(model).await;
            let matches = store.count(model.id, where_.as_ref()).await.map_err(err)?;
            if matches == 0 {
                let row = inv
                    .prepare_row(model, &data, WriteMode::Create, None)
                    .await?;
                let row = create_one(store, model, row).await?;
                return Ok(Outcome::Json(inv.shape(model, row)));
            }
            if model.is_user_model() {
                return Err(ApiError::bad_request(
                    "users cannot be changed by where clause; use their id",
                ));
            }
            let mut row = prepare(model, &data, WriteMode::Patch, &inv.write_ctx)?;
            row.remove(model.id_name());
            let saved = store
                .upsert_with_where(model.id, where_.as_ref(), row)
                .await
                .map_err(err)?;
            Ok(Outcome::Json(inv.shape(model, saved)))
        }
        Action::UpdateAll => {
            // LoopBack 3 answers a missing `where` with a 500; an update of every row
            // should be asked for explicitly (`where={}`), so Portcullis refuses it.
            if inv.object_arg("where")?.is_none() {
                return Err(ApiError::bad_request("where is a required argument"));
            }
            let mut where_ = inv.where_arg("where")?;
            if let Some(scope) = inv.row_scope(model, true) {
                where_ = Some(and_where(scope, where_));
            }
            let data = inv.body_or_empty();
            if model.is_user_model() {
                return Err(ApiError::bad_request(
                    "users cannot be changed by where clause; use their id",
                ));
            }
            let mut row = prepare(model, &data, WriteMode::Patch, &inv.write_ctx)?;
            row.remove(model.id_name());
            let count = store
                .update_all(model.id, where_.as_ref(), row)
                .await
                .map_err(err)?;
            Ok(Outcome::Json(json!({ "count": count })))
        }
        Action::DeleteById => {
            let count = match inv.id_scalar(model) {
                Some(id) => {
                    if model.is_user_model() {
                        // A deleted user's tokens go first, as in LoopBack.
                        let uid = crate::instance::scalar_json(&id);
                        crate::users::invalidate_tokens(inv, &uid, None).await?;
                    }
                    let by_id = Some(Where::declared(
                        model.id_name(),
                        model.id_prop().ty.clone(),
                        Op::Eq(id.clone()),
                    ));
                    inv.op_delete(model, Operation::BeforeDelete, by_id.clone())
                        .await?;
                    let n = store.delete_by_id(model.id, &id).await.map_err(err)?;
                    inv.op_delete(model, Operation::AfterDelete, by_id).await?;
                    n
                }
                None => 0,
            };
            Ok(Outcome::Json(json!({ "count": count })))
        }
        Action::ReplaceById => {
            let raw = inv.raw_id();
            let missing = || {
                ApiError::not_found(format!(
                    "Could not replace. Object with id {raw} does not exist!"
                ))
            };
            let id = inv.id_scalar(model).ok_or_else(missing)?;
            if !store.exists(model.id, &id).await.map_err(err)? {
                return Err(missing());
            }
            let before = store
                .find_by_id(model.id, &id, None)
                .await
                .map_err(err)?
                .ok_or_else(missing)?;
            let data = inv.body_or_empty();
            let _guard = inv.user_guard(model).await;
            let self_id = before.get(model.id_name()).cloned();
            let mut row = inv
                .prepare_row(model, &data, WriteMode::Replace, self_id.as_ref())
                .await?;
            check_id_change(model, &mut row, &raw)?;
            crate::instance::keep_protected(model, &mut row, &before);
            let row = inv
                .op_save(model, Operation::BeforeSave, row, false)
                .await?;
            let saved = store
                .replace_by_id(model.id, &id, row)
                .await
                .map_err(err)?
                .ok_or_else(missing)?;
            let saved = inv
                .op_save(model, Operation::AfterSave, saved, false)
                .await?;
            if model.is_user_model() {
                crate::users::after_user_update(inv, model, &before, &saved).await?;
            }
            Ok(Outcome::Json(inv.shape(model, saved)))
        }
        Action::PatchAttributes => {
            let (id, before) = inv.load_instance(model).await?;
            let saved = patch_one(inv, model, &id, &before, &inv.raw_id(), None)
                .await?
                .ok_or_else(|| inv.instance_missing())?;
            Ok(Outcome::Json(inv.shape(model, saved)))
        }
        // Answered in `dispatch`, right after authorization.
        Action::ChangeStream => Err(ApiError::internal("change streams are opened by dispatch")),
        Action::Relation { relation, op } => {
            let relation = &model.relations[relation];
            let (_, parent) = inv.load_instance(model).await?;
            run_relation(inv, relation, op, &parent).await
        }
        Action::User(op) => crate::users::run_user(inv, model, op).await,
        Action::Remote(i) => {
            let spec = inv
                .state
                .custom
                .get(&model.id)
                .and_then(|c| c.get(i))
                .ok_or_else(|| ApiError::internal("unknown custom method"))?;
            let handler = inv
                .state
                .handlers
                .get(&(model.name.clone(), spec.name.clone()))
                .ok_or_else(|| ApiError::internal("custom method without implementation"))?;
            let instance = if spec.is_static {
                None
            } else {
                Some(inv.load_instance(model).await?.1)
            };
            let call = RemoteCall {
                app: inv.state.app.clone(),
                store: inv.state.store.clone(),
                model: model.name.clone(),
                method: spec.name.clone(),
                args: inv.args.clone(),
                instance_id: inv.id.clone(),
                instance,
                user_id: inv.write_ctx.user_id.clone(),
            };
            let result = handler(call).await?;
            Ok(match crate::remote::shape_result(spec, result) {
                Some(v) => Outcome::Json(v),
                None => Outcome::NoContent,
            })
        }
    }
}

/// Stores one new row and returns it as stored (generated id, defaults).
async fn create_one(store: &Store, model: &Model, row: Record) -> Result<Record, ApiError> {
    store
        .create(model.id, vec![row])
        .await
        .map_err(|e| store_error(&model.name, e))?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("create returned no row"))
}

/// LoopBack refuses to change a forced id and otherwise ignores the id in an update body.
fn check_id_change(model: &Model, row: &mut Record, raw_id: &str) -> Result<(), ApiError> {
    if let Some(new_id) = row.remove(model.id_name()) {
        let same = match &new_id {
            Value::String(s) => s == raw_id,
            Value::Number(n) => n.to_string() == raw_id,
            Value::Null => true,
            _ => false,
        };
        if !same && model.options.force_id {
            return Err(ApiError::bad_request(format!(
                "id cannot be updated from {raw_id} to {new_id} when forceId is set to true"
            )));
        }
    }
    Ok(())
}

fn id_from_json(model: &Model, value: &Value) -> Option<Scalar> {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    portcullis_query::coerce_id(model, &raw)
}

/// The condition selecting the rows of `target` that belong to `parent` through `relation`.
fn relation_scope(app: &App, relation: &Relation, parent: &Record, parent_model: &Model) -> Where {
    let target = app.model(relation.target);
    match relation.kind {
        RelationKind::BelongsTo => {
            let value = parent
                .get(&relation.foreign_key)
                .cloned()
                .unwrap_or(Value::Null);
            match id_from_json(target, &value) {
                Some(v) => Where::declared(
                    &relation.primary_key,
                    target.id_prop().ty.clone(),
                    Op::Eq(v),
                ),
                None => Where::Never,
            }
        }
        RelationKind::HasMany | RelationKind::HasOne => {
            let value = parent
                .get(&relation.primary_key)
                .cloned()
                .unwrap_or(Value::Null);
            let ty = target
                .property(&relation.foreign_key)
                .map(|p| p.ty.clone())
                .unwrap_or(portcullis_schema::PropType::Any);
            match portcullis_query::coerce_scalar(&value, &ty) {
                Ok(v) if v != Scalar::Null => {
                    Where::declared(&relation.foreign_key, ty.clone(), Op::Eq(v))
                }
                _ => Where::Never,
            }
        }
        RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany => {
            let (Some(through), Some(key_through)) =
                (relation.through, relation.key_through.as_ref())
            else {
                return Where::Never;
            };
            let through_model = app.model(through);
            let value = parent
                .get(parent_model.id_name())
                .cloned()
                .unwrap_or(Value::Null);
            let ty = through_model
                .property(&relation.foreign_key)
                .map(|p| p.ty.clone())
                .unwrap_or(portcullis_schema::PropType::Any);
            let Ok(v) = portcullis_query::coerce_scalar(&value, &ty) else {
                return Where::Never;
            };
            Where::InSubquery {
                property: PropRef::Declared {
                    name: target.id_name().to_string(),
                    ty: target.id_prop().ty.clone(),
                },
                model: through,
                select: key_through.clone(),
                filter: Box::new(Where::declared(
                    &relation.foreign_key,
                    ty.clone(),
                    Op::Eq(v),
                )),
            }
        }
    }
}

fn and_where(scope: Where, extra: Option<Where>) -> Where {
    match extra {
        Some(w) => scope.and(w),
        None => scope,
    }
}

async fn run_relation(
    inv: &Invocation<'_>,
    relation: &Relation,
    op: RelOp,
    parent: &Record,
) -> Result<Outcome, ApiError> {
    let app = &inv.state.app;
    let store = &inv.state.store;
    let target = app.model(relation.target);
    let err = |e| store_error(&target.name, e);
    let mut scope = relation_scope(app, relation, parent, inv.model);
    // Group content behind a relation is scoped like any list of it.
    if let Some(rows) = inv.row_scope(target, false) {
        scope = scope.and(rows);
    }
    let parent_key = parent
        .get(&relation.primary_key)
        .cloned()
        .unwrap_or(Value::Null);
    match op {
        RelOp::Get => {
            let mut filter = inv.filter_for(target)?;
            for include in &mut filter.include {
                inv.scope_filter(app.model(include.target), &mut include.scope);
            }
            filter.where_ = inv
                .op_access(target, Some(and_where(scope, filter.where_.take())))
                .await?;
            match relation.kind {
                RelationKind::BelongsTo | RelationKind::HasOne => {
                    let found = store.find_one(target.id, &filter).await.map_err(err)?;
                    match inv
                        .op_loaded(target, found.into_iter().collect())
                        .await?
                        .pop()
                    {
                        Some(row) => Ok(Outcome::Json(inv.shape(target, row))),
                        None if relation.kind == RelationKind::BelongsTo => {
                            Ok(Outcome::Json(json!({})))
                        }
                        None => Err(ApiError::model_not_found(format!(
                            "No \"{}\" instance(s) found",
                            target.name
                        ))),
                    }
                }
                _ => {
                    let rows = store.find(target.id, &filter).await.map_err(err)?;
                    let rows = inv.op_loaded(target, rows).await?;
                    Ok(Outcome::Json(inv.shape_all(target, rows)))
                }
            }
        }
        RelOp::Count => {
            let where_ = and_where(scope, inv.where_arg_for(target, "where")?);
            let where_ = inv.op_access(target, Some(where_)).await?;
            let count = store.count(target.id, where_.as_ref()).await.map_err(err)?;
            Ok(Outcome::Json(json!({ "count": count })))
        }
        RelOp::FindById | RelOp::UpdateById | RelOp::DestroyById => {
            let fk = inv.fk.clone().unwrap_or_default();
            let missing = || {
                ApiError::not_found(format!(
                    "No instance with id {fk} found for {}",
                    target.name
                ))
            };
            let id = portcullis_query::coerce_id(target, &fk).ok_or_else(missing)?;
            let where_ = scope.and(Where::declared(
                target.id_name(),
                target.id_prop().ty.clone(),
                Op::Eq(id.clone()),
            ));
            let mut filter = if op == RelOp::FindById {
                inv.filter_for(target)?
            } else {
                Filter::default()
            };
            filter.where_ = inv
                .op_access(target, Some(and_where(where_, filter.where_.take())))
                .await?;
            let row = store
                .find_one(target.id, &filter)
                .await
                .map_err(err)?
                .ok_or_else(missing)?;
            match op {
                RelOp::FindById => {
                    let row = inv.op_loaded(target, vec![row]).await?.pop();
                    Ok(Outcome::Json(inv.shape(target, row.ok_or_else(missing)?)))
                }
                RelOp::UpdateById => {
                    let saved = relation_update(inv, relation, target, &id, &row, &parent_key)
                        .await?
                        .ok_or_else(missing)?;
                    Ok(Outcome::Json(inv.shape(target, saved)))
                }
                _ => {
                    if let (Some(through), Some(kt)) = (relation.through, &relation.key_through) {
                        let link = inv.link_where(relation, through, parent, kt, &fk)?;
                        store.delete_all(through, Some(&link)).await.map_err(err)?;
                    }
                    let by_id = Where::declared(
                        target.id_name(),
                        target.id_prop().ty.clone(),
                        Op::Eq(id.clone()),
                    );
                    relation_delete(inv, target, by_id).await?;
                    Ok(Outcome::NoContent)
                }
            }
        }
        RelOp::Create => {
            let data = inv.body_or_empty();
            let _guard = inv.user_guard(target).await;
            let mut row = inv
                .prepare_row(target, &data, WriteMode::Create, None)
                .await?;
            if matches!(relation.kind, RelationKind::HasMany | RelationKind::HasOne) {
                row.insert(relation.foreign_key.clone(), parent_key.clone());
            }
            let row = inv
                .op_save(target, Operation::BeforeSave, row, true)
                .await?;
            let created = create_one(store, target, row).await?;
            let created = inv
                .op_save(target, Operation::AfterSave, created, true)
                .await?;
            if let (Some(through), Some(kt)) = (relation.through, &relation.key_through) {
                let mut link = Map::new();
                link.insert(
                    relation.foreign_key.clone(),
                    parent
                        .get(inv.model.id_name())
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                link.insert(
                    kt.clone(),
                    created
                        .get(target.id_name())
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                store
                    .create(through, vec![link])
                    .await
                    .map_err(|e| store_error(&app.model(through).name, e))?;
            }
            Ok(Outcome::Json(inv.shape(target, created)))
        }
        RelOp::Delete | RelOp::Destroy => {
            relation_delete(inv, target, scope).await?;
            if let (
                Some(through),
                RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany,
            ) = (relation.through, relation.kind)
            {
                let through_model = app.model(through);
                let value = parent
                    .get(inv.model.id_name())
                    .cloned()
                    .unwrap_or(Value::Null);
                let ty = through_model
                    .property(&relation.foreign_key)
                    .map(|p| p.ty.clone())
                    .unwrap_or(portcullis_schema::PropType::Any);
                if let Ok(v) = portcullis_query::coerce_scalar(&value, &ty) {
                    store
                        .delete_all(
                            through,
                            Some(&Where::declared(
                                &relation.foreign_key,
                                ty.clone(),
                                Op::Eq(v),
                            )),
                        )
                        .await
                        .map_err(err)?;
                }
            }
            Ok(Outcome::NoContent)
        }
        RelOp::Update => {
            let filter = Filter {
                where_: inv.op_access(target, Some(scope)).await?,
                ..Filter::default()
            };
            let row = store
                .find_one(target.id, &filter)
                .await
                .map_err(err)?
                .ok_or_else(|| {
                    ApiError::model_not_found(format!("No \"{}\" instance(s) found", target.name))
                })?;
            let id_value = row.get(target.id_name()).cloned().unwrap_or(Value::Null);
            let id = id_from_json(target, &id_value)
                .ok_or_else(|| ApiError::internal("related row without id"))?;
            let saved = relation_update(inv, relation, target, &id, &row, &parent_key)
                .await?
                .ok_or_else(|| {
                    ApiError::model_not_found(format!("No \"{}\" instance(s) found", target.name))
                })?;
            Ok(Outcome::Json(inv.shape(target, saved)))
        }
        RelOp::Link | RelOp::Unlink | RelOp::ExistsLink => {
            let (Some(through), Some(kt)) = (relation.through, relation.key_through.as_ref())
            else {
                return Err(ApiError::not_found("relation has no through model"));
            };
            let fk = inv.fk.clone().unwrap_or_default();
            let link = inv.link_where(relation, through, parent, kt, &fk)?;
            let through_name = &app.model(through).name;
            let terr = |e| store_error(through_name, e);
            match op {
                RelOp::Link => {
                    let target_id = portcullis_query::coerce_id(target, &fk).ok_or_else(|| {
                        ApiError::not_found(format!(
                            "No instance with id {fk} found for {}",
                            target.name
                        ))
                    })?;
                    if !store.exists(target.id, &target_id).await.map_err(err)? {
                        return Err(ApiError::not_found(format!(
                            "No instance with id {fk} found for {}",
                            target.name
                        )));
                    }
                    let data = inv.body_or_empty();
                    let mut row = match data {
                        Value::Object(_) => {
                            prepare(app.model(through), &data, WriteMode::Create, &inv.write_ctx)?
                        }
                        _ => Map::new(),
                    };
                    row.insert(
                        relation.foreign_key.clone(),
                        parent
                            .get(inv.model.id_name())
                            .cloned()
                            .unwrap_or(Value::Null),
                    );
                    row.insert(kt.clone(), crate::instance::scalar_json(&target_id));
                    let created = create_one(store, app.model(through), row).await?;
                    Ok(Outcome::Json(inv.shape(app.model(through), created)))
                }
                RelOp::Unlink => {
                    store.delete_all(through, Some(&link)).await.map_err(terr)?;
                    Ok(Outcome::NoContent)
                }
                _ => {
                    let n = store.count(through, Some(&link)).await.map_err(terr)?;
                    Ok(Outcome::Empty(if n > 0 {
                        StatusCode::OK
                    } else {
                        StatusCode::NOT_FOUND
                    }))
                }
            }
        }
    }
}

/// A write through a relation cannot move the row to another parent.
fn keep_relation_key(relation: &Relation, patch: &mut Record, parent_key: &Value) {
    if matches!(relation.kind, RelationKind::HasMany | RelationKind::HasOne) {
        patch.insert(relation.foreign_key.clone(), parent_key.clone());
    }
}

/// A patch of one related row (`updateById` and hasOne `update` through a relation), with
/// the target's rules as for a direct update (see `patch_one`).
async fn relation_update(
    inv: &Invocation<'_>,
    relation: &Relation,
    target: &Model,
    id: &Scalar,
    before: &Record,
    parent_key: &Value,
) -> Result<Option<Record>, ApiError> {
    let raw_id = before
        .get(target.id_name())
        .map(crate::token::value_to_id_string)
        .unwrap_or_default();
    patch_one(
        inv,
        target,
        id,
        before,
        &raw_id,
        Some((relation, parent_key)),
    )
    .await
}

/// Patches row `id` of `model` (now `before`) with the request body and the model's rules:
/// user rules (password hashing, uniqueness, ending other sessions on a password or email
/// change), the id-change check against `raw_id`, and save hooks. `keep` holds a relation's
/// key in place. `None` when the row is gone.
async fn patch_one(
    inv: &Invocation<'_>,
    model: &Model,
    id: &Scalar,
    before: &Record,
    raw_id: &str,
    keep: Option<(&Relation, &Value)>,
) -> Result<Option<Record>, ApiError> {
    let data = inv.body_or_empty();
    let _guard = inv.user_guard(model).await;
    let self_id = before.get(model.id_name()).cloned();
    let mut patch = inv
        .prepare_row(model, &data, WriteMode::Patch, self_id.as_ref())
        .await?;
    check_id_change(model, &mut patch, raw_id)?;
    if let Some((relation, parent_key)) = keep {
        keep_relation_key(relation, &mut patch, parent_key);
    }
    let patch = inv
        .op_save(model, Operation::BeforeSave, patch, false)
        .await?;
    let Some(saved) = inv
        .state
        .store
        .update_by_id(model.id, id, patch)
        .await
        .map_err(|e| store_error(&model.name, e))?
    else {
        return Ok(None);
    };
    let saved = inv
        .op_save(model, Operation::AfterSave, saved, false)
        .await?;
    if model.is_user_model() {
        crate::users::after_user_update(inv, model, before, &saved).await?;
    }
    Ok(Some(saved))
}

/// Deletes the related rows `where_` selects, with delete hooks; deleted users' tokens go
/// with them, as for a direct delete.
async fn relation_delete(
    inv: &Invocation<'_>,
    target: &Model,
    where_: Where,
) -> Result<u64, ApiError> {
    let store = &inv.state.store;
    let err = |e| store_error(&target.name, e);
    inv.op_delete(target, Operation::BeforeDelete, Some(where_.clone()))
        .await?;
    let users = if target.is_user_model() {
        let ids = Filter {
            where_: Some(where_.clone()),
            fields: Some(vec![target.id_name().to_string()]),
            ..Filter::default()
        };
        store.find(target.id, &ids).await.map_err(err)?
    } else {
        Vec::new()
    };
    let n = store
        .delete_all(target.id, Some(&where_))
        .await
        .map_err(err)?;
    // After the delete, so that no token issued in between survives its user.
    for user in &users {
        if let Some(uid) = user.get(target.id_name()) {
            crate::users::invalidate_tokens(inv, uid, None).await?;
        }
    }
    inv.op_delete(target, Operation::AfterDelete, Some(where_))
        .await?;
    Ok(n)
}

impl Invocation<'_> {
    /// Checks and coerces a body for `model`; User-derived models also get the user rules
    /// (password hashing, email checks, uniqueness).
    async fn prepare_row(
        &self,
        model: &Model,
        data: &Value,
        mode: WriteMode,
        self_id: Option<&Value>,
    ) -> Result<Record, ApiError> {
        if model.is_user_model() {
            if let Some(pw) = data.get("password") {
                if !pw.as_str().is_some_and(crate::secrets::is_bcrypt_hash) {
                    crate::users::check_password(pw)?;
                }
            }
        }
        let mut row = prepare(model, data, mode, &self.write_ctx)?;
        self.check_group_exists(model, &row).await?;
        if model.is_user_model() {
            crate::users::prepare_user_row(
                self,
                model,
                data,
                &mut row,
                mode == WriteMode::Create,
                self_id,
            )
            .await?;
        }
        Ok(row)
    }

    /// The rows of `model` this caller may see in lists (group membership), as a where to
    /// AND into the query. For bulk writes (`write`), only the groups where the caller
    /// holds the role that granted the request.
    pub(crate) fn row_scope(&self, model: &Model, write: bool) -> Option<Where> {
        let groups = self.state.groups.as_ref()?;
        let user = self.token.as_ref().and_then(|t| t.user_id_string());
        let role = if write {
            self.granted_by
                .as_deref()
                .and_then(|r| groups.short_role(r))
        } else {
            None
        };
        groups.row_filter(&self.state.app, model, user.as_deref(), role)
    }

    /// ANDs the row scope into a filter and, recursively, into its includes.
    pub(crate) fn scope_filter(&self, model: &Model, filter: &mut Filter) {
        if let Some(scope) = self.row_scope(model, false) {
            filter.where_ = Some(and_where(scope, filter.where_.take()));
        }
        for include in &mut filter.include {
            let target = self.state.app.model(include.target);
            self.scope_filter(target, &mut include.scope);
        }
    }

    fn op_context(&self, model: &Model, operation: Operation) -> OperationContext {
        OperationContext {
            model: model.name.clone(),
            operation,
            where_: None,
            data: None,
            is_new_instance: false,
            user_id: self.write_ctx.user_id.clone(),
        }
    }

    /// `access` hooks may narrow a query's where.
    async fn op_access(
        &self,
        model: &Model,
        where_: Option<Where>,
    ) -> Result<Option<Where>, ApiError> {
        if !self
            .state
            .hooks
            .has_operation(&model.name, Operation::Access)
        {
            return Ok(where_);
        }
        let mut ctx = self.op_context(model, Operation::Access);
        ctx.where_ = where_;
        Ok(self.state.hooks.run_operation(ctx).await?.where_)
    }

    /// The answer of findById / findOne: the instance after `loaded` hooks, or LoopBack's
    /// 404 naming the id asked for (`undefined` for findOne).
    async fn found_or_404(
        &self,
        model: &Model,
        found: Option<Record>,
        asked: &str,
    ) -> Result<Outcome, ApiError> {
        match self
            .op_loaded(model, found.into_iter().collect())
            .await?
            .pop()
        {
            Some(row) => Ok(Outcome::Json(self.shape(model, row))),
            None => Err(ApiError::model_not_found(format!(
                "Unknown \"{}\" id \"{asked}\".",
                model.name
            ))),
        }
    }

    /// `loaded` hooks see (and may change) every instance read.
    async fn op_loaded(&self, model: &Model, rows: Vec<Record>) -> Result<Vec<Record>, ApiError> {
        if !self
            .state
            .hooks
            .has_operation(&model.name, Operation::Loaded)
        {
            return Ok(rows);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut ctx = self.op_context(model, Operation::Loaded);
            ctx.data = Some(row);
            out.push(
                self.state
                    .hooks
                    .run_operation(ctx)
                    .await?
                    .data
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }

    /// `before save` / `after save` hooks for one instance.
    async fn op_save(
        &self,
        model: &Model,
        operation: Operation,
        row: Record,
        is_new: bool,
    ) -> Result<Record, ApiError> {
        if !self.state.hooks.has_operation(&model.name, operation) {
            return Ok(row);
        }
        let mut ctx = self.op_context(model, operation);
        ctx.data = Some(row);
        ctx.is_new_instance = is_new;
        Ok(self
            .state
            .hooks
            .run_operation(ctx)
            .await?
            .data
            .unwrap_or_default())
    }

    /// `before delete` / `after delete` hooks.
    async fn op_delete(
        &self,
        model: &Model,
        operation: Operation,
        where_: Option<Where>,
    ) -> Result<(), ApiError> {
        if self.state.hooks.has_operation(&model.name, operation) {
            let mut ctx = self.op_context(model, operation);
            ctx.where_ = where_;
            self.state.hooks.run_operation(ctx).await?;
        }
        Ok(())
    }

    /// Group content must name a group that exists: a row in a missing group would be
    /// invisible to everyone and could be claimed later by whoever creates that group.
    async fn check_group_exists(&self, model: &Model, row: &Record) -> Result<(), ApiError> {
        let Some(groups) = &self.state.groups else {
            return Ok(());
        };
        if !groups.is_content_model(model) {
            return Ok(());
        }
        let Some(value) = row.get(&groups.foreign_key).filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let group_model = self.state.app.model(groups.group_model);
        let exists = match id_from_json(group_model, value) {
            Some(id) => self
                .state
                .store
                .exists(group_model.id, &id)
                .await
                .map_err(|e| store_error(&group_model.name, e))?,
            None => false,
        };
        if exists {
            return Ok(());
        }
        let mut failures = crate::error::ValidationFailures::default();
        failures.add(
            &groups.foreign_key,
            "exists",
            format!("names no {}", group_model.name),
            Some(value),
        );
        Err(ApiError::validation(&model.name, &failures))
    }

    /// Serialises user writes on this node, so the uniqueness check and the write cannot
    /// interleave with another registration.
    async fn user_guard(&self, model: &Model) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if model.is_user_model() {
            Some(self.state.user_writes.lock().await)
        } else {
            None
        }
    }

    pub(crate) fn raw_id(&self) -> String {
        self.id.clone().unwrap_or_default()
    }

    pub(crate) fn id_scalar(&self, model: &Model) -> Option<Scalar> {
        self.id
            .as_deref()
            .and_then(|raw| portcullis_query::coerce_id(model, raw))
    }

    pub(crate) fn is_head(&self) -> bool {
        self.head
    }

    pub(crate) fn instance_missing(&self) -> ApiError {
        ApiError::model_not_found(format!("could not find a model with id {}", self.raw_id()))
    }

    /// Prototype methods load their instance first; a missing one is LoopBack's 404.
    pub(crate) async fn load_instance(&self, model: &Model) -> Result<(Scalar, Record), ApiError> {
        let id = self
            .id_scalar(model)
            .ok_or_else(|| self.instance_missing())?;
        let row = self
            .state
            .store
            .find_by_id(model.id, &id, None)
            .await
            .map_err(|e| store_error(&model.name, e))?
            .ok_or_else(|| self.instance_missing())?;
        Ok((id, row))
    }

    /// An object argument looked up as strong-remoting does: query, then a header of the
    /// same name.
    pub(crate) fn object_arg(&self, name: &str) -> Result<Option<Value>, ApiError> {
        let from_query = self.query.get(name);
        let header = self
            .headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .map(|s| Value::String(s.to_string()));
        Ok(portcullis_query::object_arg(
            from_query.or(header.as_ref()),
        )?)
    }

    pub(crate) fn filter(&self) -> Result<Filter, ApiError> {
        self.filter_for(self.model)
    }

    pub(crate) fn filter_for(&self, model: &Model) -> Result<Filter, ApiError> {
        match self.object_arg("filter")? {
            Some(v) => Ok(portcullis_query::parse_filter(
                &self.state.app,
                model.id,
                &v,
            )?),
            None => Ok(Filter::default()),
        }
    }

    pub(crate) fn where_arg(&self, name: &str) -> Result<Option<Where>, ApiError> {
        self.where_arg_for(self.model, name)
    }

    pub(crate) fn where_arg_for(
        &self,
        model: &Model,
        name: &str,
    ) -> Result<Option<Where>, ApiError> {
        match self.object_arg(name)? {
            Some(v) => Ok(portcullis_query::parse_where(
                &self.state.app,
                model.id,
                &v,
            )?),
            None => Ok(None),
        }
    }

    pub(crate) fn body_or_empty(&self) -> Value {
        self.body
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    pub(crate) fn link_where(
        &self,
        relation: &Relation,
        through: ModelId,
        parent: &Record,
        key_through: &str,
        fk: &str,
    ) -> Result<Where, ApiError> {
        let app = &self.state.app;
        let through_model = app.model(through);
        let target = app.model(relation.target);
        let parent_id = parent
            .get(self.model.id_name())
            .cloned()
            .unwrap_or(Value::Null);
        let fk_ty = through_model
            .property(&relation.foreign_key)
            .map(|p| p.ty.clone())
            .unwrap_or(portcullis_schema::PropType::Any);
        let kt_ty = through_model
            .property(key_through)
            .map(|p| p.ty.clone())
            .unwrap_or(portcullis_schema::PropType::Any);
        let parent_v = portcullis_query::coerce_scalar(&parent_id, &fk_ty)?;
        let target_v = portcullis_query::coerce_id(target, fk).ok_or_else(|| {
            ApiError::not_found(format!(
                "No instance with id {fk} found for {}",
                target.name
            ))
        })?;
        Ok(
            Where::declared(&relation.foreign_key, fk_ty.clone(), Op::Eq(parent_v)).and(
                Where::declared(key_through, kt_ty.clone(), Op::Eq(target_v)),
            ),
        )
    }

    pub(crate) fn shape(&self, model: &Model, mut row: Record) -> Value {
        shape_output(&self.state.app, model, &mut row, false);
        Value::Object(row)
    }

    pub(crate) fn shape_all(&self, model: &Model, rows: Vec<Record>) -> Value {
        Value::Array(rows.into_iter().map(|r| self.shape(model, r)).collect())
    }
}
