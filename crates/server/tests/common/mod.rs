//! Test harness: copies an app directory into a temp folder, serves it on a real port over
//! a real SQLite file, and offers a small HTTP client.
//!
//! With `PORTCULLIS_TEST_BACKEND=postgres` and `PORTCULLIS_TEST_DATABASE_URL` set, every
//! SQLite / memory datasource of the copy is rewritten to that PostgreSQL server, in a fresh
//! schema `t_<uuid>` per test server, dropped when the `TestServer` is dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL schema the server runs in, when the tests run on PostgreSQL.
    pub pg: Option<PgTarget>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

/// A PostgreSQL server URL and the schema one test server uses on it.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub url: String,
    pub schema: String,
}

pub const BACKEND_ENV: &str = "PORTCULLIS_TEST_BACKEND";
pub const PG_ENV: &str = "PORTCULLIS_TEST_DATABASE_URL";

/// The PostgreSQL server URL, when the PostgreSQL variables are set (whatever the back end).
pub fn pg_url() -> Option<String> {
    std::env::var(PG_ENV).ok().filter(|u| !u.trim().is_empty())
}

/// The PostgreSQL server URL when the server tests run on PostgreSQL
/// (`PORTCULLIS_TEST_BACKEND=postgres` and `PORTCULLIS_TEST_DATABASE_URL`).
pub fn pg_backend() -> Option<String> {
    let backend = std::env::var(BACKEND_ENV).unwrap_or_default();
    if !backend.eq_ignore_ascii_case("postgres") && !backend.eq_ignore_ascii_case("postgresql") {
        return None;
    }
    let url = pg_url();
    assert!(
        url.is_some(),
        "{BACKEND_ENV}=postgres needs {PG_ENV} (a postgres:// URL)"
    );
    url
}

/// Points every SQLite / memory datasource of the app in `dir` at PostgreSQL, in a fresh
/// schema (or the one a previous server of this directory used).
pub fn use_postgres(dir: &Path, url: &str) -> PgTarget {
    let path = dir.join("server/datasources.json");
    let mut ds: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("datasources.json"))
            .expect("datasources json");
    let existing = ds.as_object().and_then(|m| {
        m.values().find_map(|d| {
            (d.get("connector").and_then(Value::as_str) == Some("postgresql"))
                .then(|| d.get("schema").and_then(Value::as_str))
                .flatten()
                .filter(|s| s.starts_with("t_"))
                .map(str::to_string)
        })
    });
    let schema = existing.unwrap_or_else(|| format!("t_{}", uuid::Uuid::new_v4().simple()));
    if let Some(map) = ds.as_object_mut() {
        for (name, d) in map.iter_mut() {
            let connector = d.get("connector").and_then(Value::as_str).unwrap_or("");
            if connector == "sqlite" || connector == "memory" {
                *d = serde_json::json!({
                    "name": name, "connector": "postgresql", "url": url, "schema": schema
                });
            }
        }
    }
    std::fs::write(&path, ds.to_string()).expect("write datasources.json");
    PgTarget {
        url: url.to_string(),
        schema,
    }
}

impl PgTarget {
    /// A direct connection to the test server's database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to postgresql");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path = \"{}\"", self.schema))
            .await
            .expect("search_path");
        client
    }

    /// Every row of every table in the schema, as text: what reading a SQLite file's bytes
    /// shows for the SQLite back end.
    pub async fn dump_text(&self) -> String {
        let client = self.client().await;
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&self.schema],
            )
            .await
            .expect("tables");
        let mut out = String::new();
        for t in tables {
            let name: String = t.get(0);
            let sql = format!(
                "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{}\" t",
                name.replace('"', "\"\"")
            );
            let row = client.query_one(&sql, &[]).await.expect("dump table");
            out.push_str(&row.get::<_, String>(0));
            out.push('\n');
        }
        out
    }

    /// Drops the schema on its own thread and runtime (usable from `Drop`), best effort.
    pub fn drop_schema(&self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // The servers being dropped may hold a transaction open on the schema (their runtime
        // is this thread, blocked here): end their sessions first, then drop.
        let sql = format!(
            "SET lock_timeout = '2s'; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            schema.replace('"', "\"\"")
        );
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                for _ in 0..3 {
                    let _ = client
                        .execute(
                            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                             JOIN pg_class c ON c.oid = l.relation \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                            &[&schema],
                        )
                        .await;
                    if client.batch_execute(&sql).await.is_ok() {
                        return Some(());
                    }
                }
                None
            })
        })
        .join();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_schema();
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copies an app directory, leaving out database files and node_modules.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.ends_with(".sqlite")
            || name_str.contains(".sqlite-")
            || name_str == "node_modules"
        {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy file");
        }
    }
}

impl TestServer {
    /// Serves a copy of `app_dir` (relative to the workspace root).
    pub async fn start(app_dir: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&workspace_root().join(app_dir), dir.path());
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> TestServer {
        Self::start_in_with(dir, |b| b).await
    }

    /// Serves a copy of `app_dir`, letting the test add Rust extensions to the builder.
    pub async fn start_with(
        app_dir: &str,
        configure: impl FnOnce(portcullis_server::ServerBuilder) -> portcullis_server::ServerBuilder,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&workspace_root().join(app_dir), dir.path());
        Self::start_in_with(dir, configure).await
    }

    pub async fn start_in_with(
        dir: tempfile::TempDir,
        configure: impl FnOnce(portcullis_server::ServerBuilder) -> portcullis_server::ServerBuilder,
    ) -> TestServer {
        let pg = pg_backend().map(|url| use_postgres(dir.path(), &url));
        Self::serve_dir(dir, pg, configure).await
    }

    /// Two nodes of `app_dir` over the same PostgreSQL schema at `url` (the first node owns
    /// the schema and seeds it). For the cluster tests.
    pub async fn start_pair(app_dir: &str, url: &str) -> (TestServer, TestServer) {
        Self::start_pair_with(app_dir, url, |b| b, |b| b).await
    }

    pub async fn start_pair_with(
        app_dir: &str,
        url: &str,
        configure_a: impl FnOnce(portcullis_server::ServerBuilder) -> portcullis_server::ServerBuilder,
        configure_b: impl FnOnce(portcullis_server::ServerBuilder) -> portcullis_server::ServerBuilder,
    ) -> (TestServer, TestServer) {
        let dir_a = tempfile::tempdir().expect("tempdir");
        copy_dir(&workspace_root().join(app_dir), dir_a.path());
        let pg = use_postgres(dir_a.path(), url);
        let dir_b = tempfile::tempdir().expect("tempdir");
        copy_dir(dir_a.path(), dir_b.path());
        let _ = std::fs::remove_file(dir_b.path().join("server/seed.json"));
        let a = Self::serve_dir(dir_a, Some(pg), configure_a).await;
        let b = Self::serve_dir(dir_b, None, configure_b).await;
        (a, b)
    }

    async fn serve_dir(
        dir: tempfile::TempDir,
        pg: Option<PgTarget>,
        configure: impl FnOnce(portcullis_server::ServerBuilder) -> portcullis_server::ServerBuilder,
    ) -> TestServer {
        let app = portcullis_schema::load_app(dir.path()).expect("app loads");
        let mut builder = portcullis_server::ServerBuilder::new(app);
        // The seed-file convention, as `portcullis serve` applies it: before the access
        // caches load, so seeded roles count.
        let seed_file = dir.path().join("server/seed.json");
        if seed_file.exists() {
            let data: Value =
                serde_json::from_str(&std::fs::read_to_string(&seed_file).expect("seed"))
                    .expect("seed json");
            builder = builder.seed(data);
        }
        let server = configure(builder).build().await.expect("server builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = server
                .serve_on(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            dir,
            pg,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it; the data directory stays (and on PostgreSQL its
    /// schema, which a server started again in the directory reuses and then drops).
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.pg = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body<'_>>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self
            .request_full(method, path, body, token.map(|t| ("Authorization", t)))
            .await;
        (status, value)
    }

    /// A request with one optional extra header; returns the response headers too.
    pub async fn request_full(
        &self,
        method: Method,
        path: &str,
        body: Option<Body<'_>>,
        header: Option<(&str, &str)>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(v),
            Some(Body::Form(s)) => req
                .header(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(s.to_string()),
            Some(Body::Raw(ct, s)) => req.header("Content-Type", ct).body(s.to_string()),
            None => req,
        };
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, value)
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(Body::Json(body)), None)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, Some(Body::Json(body)), None)
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.request(Method::PATCH, path, Some(Body::Json(body)), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, None, None).await
    }

    pub async fn head(&self, path: &str) -> StatusCode {
        self.request(Method::HEAD, path, None, None).await.0
    }
}

pub enum Body<'a> {
    Json(&'a Value),
    Form(&'a str),
    Raw(&'a str, &'a str),
}

/// Asserts LoopBack's error envelope and returns its inner object.
pub fn assert_error(body: &Value, status: u16) -> &serde_json::Map<String, Value> {
    let inner = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("not an error envelope: {body}"));
    assert_eq!(
        inner.get("statusCode"),
        Some(&Value::from(status)),
        "{body}"
    );
    assert!(inner.get("message").is_some_and(Value::is_string), "{body}");
    inner
}

/// A copy of the wall where a user may revoke their own sessions
/// (`DELETE /appusers/{id}/accessTokens`, "log out everywhere").
pub fn wall_with_session_revocation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&workspace_root().join("examples/wall"), dir.path());
    let path = dir.path().join("common/models/appuser.json");
    let mut model: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    model["acls"] = serde_json::json!([{
        "principalType": "ROLE", "principalId": "$owner",
        "permission": "ALLOW", "property": "__delete__accessTokens"
    }]);
    std::fs::write(&path, model.to_string()).expect("write");
    dir
}

/// Signs a new wall user up (password `pw`) and logs them in; returns the token.
pub async fn wall_user(s: &TestServer, email: &str) -> String {
    let (st, body) = s
        .post(
            "/api/appusers",
            &serde_json::json!({"email": email, "password": "pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    wall_login(s, email, "pw").await
}

/// Logs a wall user in; returns the token.
pub async fn wall_login(s: &TestServer, email: &str, password: &str) -> String {
    let (st, body) = s
        .post(
            "/api/appusers/login",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["id"].as_str().expect("token").to_string()
}

/// Logs a seeded `examples/stores` user in (password `<user>-pass`); returns the token.
pub async fn stores_login(s: &TestServer, user: &str) -> String {
    let (st, body) = s
        .post(
            "/api/users/login",
            &serde_json::json!({"username": user, "password": format!("{user}-pass")}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{user}: {body}");
    body["id"].as_str().expect("token").to_string()
}

/// An `access` operation hook: posts whose text is exactly "draft" never show in queries.
pub fn hide_drafts(
    mut ctx: portcullis_server::hooks::OperationContext,
) -> portcullis_server::access::BoxFuture<
    'static,
    Result<portcullis_server::hooks::OperationContext, portcullis_server::ApiError>,
> {
    use portcullis_query::{Op, Scalar, Where};
    Box::pin(async move {
        let not_draft = Where::declared(
            "text",
            portcullis_schema::PropType::String,
            Op::Neq(Scalar::Text("draft".into())),
        );
        ctx.where_ = Some(match ctx.where_.take() {
            Some(w) => w.and(not_draft),
            None => not_draft,
        });
        Ok(ctx)
    })
}
