#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use portcullis_query::{Filter, Include, Op, OrderBy, PropRef, Scalar, Where};
use portcullis_schema::{App, ModelId, PropType};
use portcullis_store::{Record, Store};
use serde_json::{json, Value};

pub const DS_SQLITE: &str = r#"{"db":{"name":"db","connector":"sqlite","file":"db.sqlite"}}"#;

/// The test app: authors with books (loose model), tags through BookTag, reviews, and a
/// widget with a uuid id and defaults.
pub fn models() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Author",
            json!({"name": "Author", "base": "PersistedModel", "strict": true,
            "properties": {
                "name": {"type": "string", "required": true},
                "email": {"type": "string", "unique": true},
                "age": "number",
                "active": "boolean",
                "born": "date",
                "tags": ["string"],
                "meta": "object"
            },
            "relations": {
                "books": {"type": "hasMany", "model": "Book", "foreignKey": "authorId"},
                "biggest": {"type": "hasOne", "model": "Book", "foreignKey": "authorId"}
            }}),
        ),
        (
            "Book",
            json!({"name": "Book", "base": "PersistedModel",
            "properties": {"title": {"type": "string", "index": true}, "pages": "number"},
            "relations": {
                "author": {"type": "belongsTo", "model": "Author", "foreignKey": "authorId"},
                "reviews": {"type": "hasMany", "model": "Review", "foreignKey": "bookId"},
                "tags": {"type": "hasMany", "model": "Tag", "through": "BookTag", "foreignKey": "bookId", "keyThrough": "tagId"}
            }}),
        ),
        (
            "Tag",
            json!({"name": "Tag", "base": "PersistedModel", "strict": true,
                "properties": {"label": "string"}}),
        ),
        (
            "BookTag",
            json!({"name": "BookTag", "base": "PersistedModel", "strict": true,
            "properties": {},
            "relations": {
                "book": {"type": "belongsTo", "model": "Book", "foreignKey": "bookId"},
                "tag": {"type": "belongsTo", "model": "Tag", "foreignKey": "tagId"}
            }}),
        ),
        (
            "Review",
            json!({"name": "Review", "base": "PersistedModel", "strict": true,
                "properties": {"stars": "number", "text": "string"},
                "relations": {"book": {"type": "belongsTo", "model": "Book", "foreignKey": "bookId"}}}),
        ),
        (
            "Widget",
            json!({"name": "Widget", "base": "PersistedModel", "strict": true,
            "properties": {
                "id": {"type": "string", "id": true, "defaultFn": "uuid"},
                "created": {"type": "date", "defaultFn": "now"},
                "status": {"type": "string", "default": "new"},
                "label": "string"
            }}),
        ),
    ]
}

pub fn write_app(dir: &Path, datasources: &str, models: &[(&str, Value)]) {
    std::fs::create_dir_all(dir.join("server")).unwrap();
    std::fs::create_dir_all(dir.join("common/models")).unwrap();
    std::fs::write(dir.join("server/datasources.json"), datasources).unwrap();
    let mut config = serde_json::Map::new();
    config.insert(
        "_meta".into(),
        json!({"sources": ["loopback/common/models", "../common/models"]}),
    );
    for (name, def) in models {
        config.insert(
            (*name).to_string(),
            json!({"dataSource": "db", "public": true}),
        );
        std::fs::write(
            dir.join(format!("common/models/{}.json", name.to_lowercase())),
            serde_json::to_string_pretty(def).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("server/model-config.json"),
        serde_json::to_string_pretty(&Value::Object(config)).unwrap(),
    )
    .unwrap();
}

pub async fn open(dir: &Path) -> (Arc<App>, Store) {
    let app = Arc::new(portcullis_schema::load_app(dir).expect("app loads"));
    let store = Store::open(app.clone()).await.expect("store opens");
    (app, store)
}

/// A back end the store tests run against.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A PostgreSQL server (`PORTCULLIS_TEST_DATABASE_URL`); each test gets its own schema.
    Postgres {
        url: String,
    },
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite => f.write_str("sqlite"),
            Backend::Postgres { .. } => f.write_str("postgresql"),
        }
    }
}

pub const PG_ENV: &str = "PORTCULLIS_TEST_DATABASE_URL";

/// The PostgreSQL test server's URL, if configured (a notice otherwise).
pub fn pg_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("{PG_ENV} not set: skipping PostgreSQL");
            None
        }
    }
}

/// SQLite always; PostgreSQL too when `PORTCULLIS_TEST_DATABASE_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if let Some(url) = pg_url() {
        out.push(Backend::Postgres { url });
    }
    out
}

/// Runs a test body once per back end.
pub async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for b in backends() {
        eprintln!("-- on {b}");
        body(b).await;
    }
}

/// A test's app directory, and for PostgreSQL its own schema (dropped at the end, best effort).
pub struct TestDb {
    dir: tempfile::TempDir,
    pub backend: Backend,
    pub schema: Option<String>,
}

impl TestDb {
    pub fn new(backend: &Backend) -> TestDb {
        let schema = match backend {
            Backend::Sqlite => None,
            // Mixed case: identifiers must be quoted all the way.
            Backend::Postgres { .. } => Some(format!("Test_{}", uuid::Uuid::new_v4().simple())),
        };
        TestDb {
            dir: tempfile::tempdir().unwrap(),
            backend: backend.clone(),
            schema,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// datasources.json with one datasource `db` on this back end.
    pub fn datasources(&self) -> String {
        match (&self.backend, &self.schema) {
            (Backend::Postgres { url }, Some(schema)) => json!({"db": {
                "name": "db", "connector": "postgresql", "url": url, "schema": schema
            }})
            .to_string(),
            _ => DS_SQLITE.to_string(),
        }
    }

    /// A direct connection to the test server (PostgreSQL only).
    pub async fn pg_client(&self) -> tokio_postgres::Client {
        let Backend::Postgres { url } = &self.backend else {
            panic!("not postgresql")
        };
        pg_connect(url).await
    }
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Drops a schema on its own thread and runtime (usable from `Drop`, inside a runtime).
pub fn drop_schema(url: &str, schema: &str) {
    let url = url.to_string();
    let sql = format!(
        "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
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
            client.batch_execute(&sql).await.ok()
        })
    })
    .join();
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Backend::Postgres { url }, Some(schema)) = (&self.backend, &self.schema) {
            drop_schema(url, schema);
        }
    }
}

pub async fn fixture(backend: &Backend) -> (TestDb, Arc<App>, Store) {
    let db = TestDb::new(backend);
    write_app(db.path(), &db.datasources(), &models());
    let (app, store) = open(db.path()).await;
    (db, app, store)
}

pub fn mid(app: &App, name: &str) -> ModelId {
    app.model_id(name).unwrap()
}

pub fn rec(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

pub fn prop(app: &App, model: &str, name: &str) -> PropRef {
    let m = app.model_by_name(model).unwrap();
    match m.property(name) {
        Some(p) => PropRef::Declared {
            name: name.into(),
            ty: p.ty.clone(),
        },
        None => PropRef::Dynamic { name: name.into() },
    }
}

pub fn cond(app: &App, model: &str, name: &str, op: Op) -> Where {
    Where::Cond {
        property: prop(app, model, name),
        op,
    }
}

pub fn order(app: &App, model: &str, name: &str, descending: bool) -> OrderBy {
    OrderBy {
        property: prop(app, model, name),
        descending,
    }
}

pub fn filter_where(w: Where) -> Filter {
    Filter {
        where_: Some(w),
        ..Filter::default()
    }
}

pub fn include(app: &App, model: &str, relation: &str, scope: Filter) -> Include {
    let m = app.model_by_name(model).unwrap();
    Include {
        relation: relation.into(),
        target: m.relation(relation).unwrap().target,
        scope,
    }
}

pub fn ids(rows: &[Record]) -> Vec<i64> {
    rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

pub fn s(text: &str) -> Scalar {
    Scalar::Text(text.into())
}

pub fn _unused(_: PropType) {}
