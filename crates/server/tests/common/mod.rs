//! Test harness: copies an app directory into a temp folder, serves it on a real port over
//! a real SQLite file, and offers a small HTTP client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
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
        let app = portcullis_schema::load_app(dir.path()).expect("app loads");
        let server = configure(portcullis_server::ServerBuilder::new(app))
            .build()
            .await
            .expect("server builds");
        // The seed-file convention, as `portcullis serve` applies it.
        let seed_file = dir.path().join("server/seed.json");
        if seed_file.exists() {
            let data: Value =
                serde_json::from_str(&std::fs::read_to_string(&seed_file).expect("seed"))
                    .expect("seed json");
            portcullis_server::seed::seed(&server.app, &server.store, &data)
                .await
                .expect("seeded");
        }
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
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server and waits for it; the data directory stays.
    pub async fn stop(mut self) -> tempfile::TempDir {
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
