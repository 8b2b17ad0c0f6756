//! Assembles the axum application from a compiled app: the REST API under its root, the
//! middleware LoopBack apps declare in `middleware.json` (static files, CORS, compression,
//! helmet headers, urlNotFound), request logging, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use portcullis_schema::{App, Middleware};
use portcullis_store::Store;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::access::{BoxFuture, RoleResolver};
use crate::authorize::VoterContext;
use crate::error::{error_response, ApiError};
use crate::hooks::{Operation, OperationContext, RemoteContext};
use crate::mail::Mailer;
use crate::remote::{AuthorizeMeta, RemoteCall};
use crate::rest::{self, Extensions, RestState};
use portcullis_authz::Vote;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] portcullis_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot load access rules: {0}")]
    Access(String),
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A running configuration: the router plus what tests and the CLI need to know.
pub struct Server {
    pub router: Router,
    pub app: Arc<App>,
    pub store: Store,
    /// Open change streams end when the server shuts down.
    changes: Arc<RestState>,
}

/// Builds a server from an app, with the Rust extension points (role resolvers, mail).
pub struct ServerBuilder {
    app: App,
    ext: Extensions,
    seed: Option<serde_json::Value>,
}

impl ServerBuilder {
    pub fn new(app: App) -> Self {
        Self {
            app,
            ext: Extensions::default(),
            seed: None,
        }
    }

    /// Registers a custom role, usable as a `ROLE` principal in ACLs (LoopBack's
    /// `Role.registerResolver`).
    pub fn register_role_resolver(
        mut self,
        name: impl Into<String>,
        resolver: impl RoleResolver + 'static,
    ) -> Self {
        self.ext.resolvers.insert(name.into(), Arc::new(resolver));
        self
    }

    /// LoopBack's `Model.beforeRemote(method, hook)`: runs after authorization, before the
    /// method; `model` and `method` may be `*`.
    pub fn before_remote<F>(mut self, model: &str, method: &str, hook: F) -> Self
    where
        F: Fn(RemoteContext) -> BoxFuture<'static, Result<RemoteContext, ApiError>>
            + Send
            + Sync
            + 'static,
    {
        self.ext
            .hooks
            .add_before_remote(model, method, Arc::new(hook));
        self
    }

    /// LoopBack's `Model.afterRemote(method, hook)`: may change `ctx.result`.
    pub fn after_remote<F>(mut self, model: &str, method: &str, hook: F) -> Self
    where
        F: Fn(RemoteContext) -> BoxFuture<'static, Result<RemoteContext, ApiError>>
            + Send
            + Sync
            + 'static,
    {
        self.ext
            .hooks
            .add_after_remote(model, method, Arc::new(hook));
        self
    }

    /// LoopBack's `Model.observe(operation, hook)` for `access`, `loaded`, `before save`,
    /// `after save`, `before delete` and `after delete`; `model` may be `*`.
    pub fn observe<F>(mut self, model: &str, operation: Operation, hook: F) -> Self
    where
        F: Fn(OperationContext) -> BoxFuture<'static, Result<OperationContext, ApiError>>
            + Send
            + Sync
            + 'static,
    {
        self.ext
            .hooks
            .add_operation(model, operation, Arc::new(hook));
        self
    }

    /// Seed rows (`{"Model": [rows]}`) applied at start, idempotently, before the access
    /// caches are loaded (see [`crate::seed`]).
    pub fn seed(mut self, data: serde_json::Value) -> Self {
        self.seed = Some(data);
        self
    }

    /// Implements the custom remote method `method` declared in `model`'s JSON `methods`.
    pub fn remote_method<F>(mut self, model: &str, method: &str, handler: F) -> Self
    where
        F: Fn(RemoteCall) -> BoxFuture<'static, Result<serde_json::Value, ApiError>>
            + Send
            + Sync
            + 'static,
    {
        self.ext
            .handlers
            .insert((model.to_string(), method.to_string()), Arc::new(handler));
        self
    }

    /// Registers a voter by name, for `authorize.voters` in model JSON or Rust metadata.
    pub fn register_voter<F>(mut self, name: &str, voter: F) -> Self
    where
        F: Fn(VoterContext) -> BoxFuture<'static, Result<Vote, String>> + Send + Sync + 'static,
    {
        self.ext.voters.insert(name.to_string(), Arc::new(voter));
        self
    }

    /// Attaches `authorize` metadata to a method (built-in or custom), as LoopBack 4's
    /// `@authorize` does.
    pub fn authorize(mut self, model: &str, method: &str, meta: AuthorizeMeta) -> Self {
        self.ext
            .authorize
            .insert((model.to_string(), method.to_string()), meta);
        self
    }

    /// Change-stream tuning: heartbeat interval and per-subscriber buffer.
    pub fn change_streams(mut self, options: crate::changes::ChangeStreamOptions) -> Self {
        self.ext.change_streams = options;
        self
    }

    /// Sends verification and reset mails through `mailer` instead of the log.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.ext.mailer = Some(mailer);
        self
    }

    /// Opens the store (creating or updating tables), loads the ACL table and role
    /// memberships, and builds the router.
    pub async fn build(mut self) -> Result<Server, StartError> {
        self.ext.groups = crate::groups::GroupConfig::from_app(&self.app)
            .map_err(|e| StartError::Access(e.to_string()))?
            .map(Arc::new);
        if self.ext.mailer.is_none() {
            if let Some(smtp) =
                crate::smtp::SmtpMailer::from_app(&self.app).map_err(StartError::Config)?
            {
                self.ext.mailer = Some(Arc::new(smtp));
            }
        }
        let app = Arc::new(self.app);
        let store = Store::open(app.clone()).await?;
        let state = Arc::new(
            RestState::new(app.clone(), store.clone(), self.ext).map_err(StartError::Config)?,
        );
        // Before any write, the seed's included: every write then carries its events.
        crate::observer::NodeObserver::install(&state);
        if let Some(data) = &self.seed {
            let report = crate::seed::seed(&app, &store, data)
                .await
                .map_err(|e| StartError::Config(format!("seed: {e}")))?;
            let inserted: usize = report.models.iter().map(|m| m.1).sum();
            tracing::info!("seeded {inserted} row(s)");
        }
        state
            .access
            .reload(&store)
            .await
            .map_err(|e| StartError::Access(e.message))?;
        // Other nodes' invalidations and change events (PostgreSQL only).
        crate::cluster::Cluster::start(&state)
            .await
            .map_err(|e| StartError::Store(portcullis_store::StoreError::Unavailable(e)))?;
        let router = router(state.clone());
        Ok(Server {
            router,
            app,
            store,
            changes: state,
        })
    }
}

impl Server {
    /// A server with no Rust extensions.
    pub async fn build(app: App) -> Result<Server, StartError> {
        ServerBuilder::new(app).build().await
    }

    /// Serves until SIGINT or SIGTERM, then finishes in-flight requests.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), StartError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        self.serve_on(listener, shutdown_signal()).await
    }

    /// Serves on an already bound listener until `shutdown` completes.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        if let Ok(local) = listener.local_addr() {
            tracing::info!(
                "Web server listening at: http://{local}{}",
                self.app.config.rest_api_root
            );
        }
        let state = self.changes.clone();
        let shutdown = async move {
            shutdown.await;
            // Event streams never finish on their own; graceful shutdown would wait forever.
            state.changes.close();
        };
        axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartError::Serve)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Builds the full router over a prepared REST state.
pub fn router(rest_state: Arc<RestState>) -> Router {
    let app = rest_state.app.clone();
    let rest_root = app.config.rest_api_root.clone();
    let rest = Router::new().fallback(rest::handle).with_state(rest_state);
    let mut router = if rest_root.is_empty() || rest_root == "/" {
        rest
    } else {
        Router::new().nest(&rest_root, rest)
    };
    if let Some(explorer) = crate::explorer::explorer_router(&app) {
        router = router.merge(explorer);
    }

    let mut root_static = None;
    for m in &app.middleware {
        if let Middleware::Static { mount, dir } = m {
            let service = ServeDir::new(dir).append_index_html_on_directories(true);
            if mount == "/" || mount.is_empty() {
                root_static = Some(service);
            } else {
                router = router.nest_service(mount, service);
            }
        }
    }
    router = match root_static {
        Some(service) => router.fallback_service(service.fallback(tower::service_fn(
            |req: Request| async move {
                Ok::<_, std::convert::Infallible>(url_not_found(req.method(), req.uri().path()))
            },
        ))),
        None => router
            .fallback(|req: Request| async move { url_not_found(req.method(), req.uri().path()) }),
    };
    router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    ));

    for m in &app.middleware {
        match m {
            Middleware::Helmet { name, params } => {
                for (header, value) in helmet_headers(name, params) {
                    router = router.layer(SetResponseHeaderLayer::overriding(header, value));
                }
            }
            Middleware::Cors { params } => router = router.layer(cors_layer(params)),
            Middleware::Compression => {
                router = router.layer(tower_http::compression::CompressionLayer::new());
            }
            _ => {}
        }
    }
    router.layer(middleware::from_fn(log_request))
}

/// LoopBack's `urlNotFound`: a 404 in the error envelope.
fn url_not_found(method: &Method, path: &str) -> Response {
    error_response(
        &ApiError::not_found(format!("Cannot {} {path}", method.as_str())),
        false,
    )
}

/// One log line per request. The query string is left out: it can carry access tokens.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        target: "portcullis::http",
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response.into_response()
}

fn cors_layer(params: &serde_json::Value) -> CorsLayer {
    let max_age = params
        .get("maxAge")
        .and_then(|v| v.as_u64())
        .unwrap_or(86400);
    let credentials = params
        .get("credentials")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let mut layer = CorsLayer::new()
        .allow_methods(tower_http::cors::AllowMethods::mirror_request())
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .max_age(std::time::Duration::from_secs(max_age));
    layer = match params.get("origin") {
        Some(serde_json::Value::String(o)) if o != "*" => match HeaderValue::from_str(o) {
            Ok(v) => layer.allow_origin(AllowOrigin::exact(v)),
            Err(_) => layer.allow_origin(AllowOrigin::mirror_request()),
        },
        _ => layer.allow_origin(AllowOrigin::mirror_request()),
    };
    layer.allow_credentials(credentials)
}

fn helmet_headers(name: &str, params: &serde_json::Value) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.push((HeaderName::from_static(name), v));
        }
    };
    match name {
        "frameguard" => {
            // helmet takes the action as `{action}` or as the first positional parameter.
            let action = params
                .get("action")
                .or_else(|| params.get(0))
                .and_then(|v| v.as_str())
                .unwrap_or("sameorigin");
            add("x-frame-options", action.to_ascii_uppercase());
        }
        "noSniff" => add("x-content-type-options", "nosniff".into()),
        "xssFilter" => add("x-xss-protection", "1; mode=block".into()),
        "ieNoOpen" => add("x-download-options", "noopen".into()),
        "hsts" => {
            let max_age = params
                .get("maxAge")
                .and_then(|v| v.as_u64())
                .unwrap_or(15_552_000);
            let sub = params
                .get("includeSubdomains")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
            add(
                "strict-transport-security",
                if sub {
                    format!("max-age={max_age}; includeSubDomains")
                } else {
                    format!("max-age={max_age}")
                },
            );
        }
        _ => {}
    }
    out
}
