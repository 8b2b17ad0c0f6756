//! Hooks for Rust users: the wall's server-set `created` and `ownerId`, built with a
//! remote hook instead of the declarative options, give the same results; and operation
//! hooks see and shape data access.

mod common;

use common::{hide_drafts, Body, TestServer};
use portcullis_server::hooks::{Operation, OperationContext, RemoteContext};
use portcullis_server::ApiError;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The wall with plain `created` / `ownerId` properties: no server-set options.
fn plain_wall() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::workspace_root().join("examples/wall"), dir.path());
    let file = dir.path().join("common/models/post.json");
    let mut post: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    post["properties"]["created"] = json!({"type": "date", "required": false});
    post["properties"]["ownerId"] = json!({"type": "number"});
    std::fs::write(&file, post.to_string()).expect("write");
    dir
}

/// The tutorial's `Post.beforeRemote('create')`, in Rust.
fn stamp_created_and_owner(
    mut ctx: RemoteContext,
) -> portcullis_server::access::BoxFuture<'static, Result<RemoteContext, ApiError>> {
    Box::pin(async move {
        let now = portcullis_query::format_date(chrono::Utc::now().timestamp_millis());
        if let Some(Value::Object(body)) = ctx.body.as_mut() {
            body.insert("created".into(), Value::String(now));
            body.insert("ownerId".into(), ctx.user_id.clone().unwrap_or(Value::Null));
        }
        Ok(ctx)
    })
}

async fn scenario(s: &TestServer) -> Vec<Value> {
    let mut seen = Vec::new();
    for email in ["a@x.test", "b@x.test"] {
        s.post("/api/appusers", &json!({"email": email, "password": "pw"}))
            .await;
    }
    let (_, t) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@x.test", "password": "pw"}),
        )
        .await;
    let t = t["id"].as_str().expect("token").to_string();
    let spoof = json!({"text": "spoof", "ownerId": 2, "created": "1999-01-01T00:00:00.000Z"});
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&spoof)),
            Some(&t),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_ne!(body["created"], json!("1999-01-01T00:00:00.000Z"));
    seen.push(json!({"ownerId": body["ownerId"], "text": body["text"]}));
    let (st, body) = s
        .request(
            Method::PATCH,
            "/api/posts/1",
            Some(Body::Json(&json!({"ownerId": 2, "text": "edit"}))),
            Some(&t),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    seen.push(json!({"ownerId": body["ownerId"], "text": body["text"]}));
    seen
}

#[tokio::test]
async fn hooks_give_the_same_wall_as_the_declarative_options() {
    let declarative = TestServer::start("examples/wall").await;
    let expected = scenario(&declarative).await;
    assert_eq!(expected[0], json!({"ownerId": 1, "text": "spoof"}));
    assert_eq!(expected[1], json!({"ownerId": 1, "text": "edit"}));

    let hooked = TestServer::start_in_with(plain_wall(), |b| {
        b.before_remote("Post", "create", stamp_created_and_owner)
    })
    .await;
    assert_eq!(scenario(&hooked).await, expected);

    // Without the hook the plain wall would keep the client's values: the hook is what
    // makes the difference.
    let bare = TestServer::start_in(plain_wall()).await;
    let got = scenario_create_only(&bare).await;
    assert_eq!(
        got,
        json!({"ownerId": 2, "created": "1999-01-01T00:00:00.000Z"})
    );
}

async fn scenario_create_only(s: &TestServer) -> Value {
    s.post(
        "/api/appusers",
        &json!({"email": "a@x.test", "password": "pw"}),
    )
    .await;
    let (_, t) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@x.test", "password": "pw"}),
        )
        .await;
    let t = t["id"].as_str().expect("token").to_string();
    let spoof = json!({"text": "spoof", "ownerId": 2, "created": "1999-01-01T00:00:00.000Z"});
    let (_, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&spoof)),
            Some(&t),
        )
        .await;
    json!({"ownerId": body["ownerId"], "created": body["created"]})
}

fn shout(
    mut ctx: OperationContext,
) -> portcullis_server::access::BoxFuture<'static, Result<OperationContext, ApiError>> {
    Box::pin(async move {
        if let Some(Value::String(t)) = ctx.data.as_mut().and_then(|d| d.get_mut("text")) {
            *t = t.to_uppercase();
        }
        Ok(ctx)
    })
}

fn no_deletes(
    _ctx: OperationContext,
) -> portcullis_server::access::BoxFuture<'static, Result<OperationContext, ApiError>> {
    Box::pin(async move { Err(ApiError::new(409, "posts are kept")) })
}

fn count_result(
    mut ctx: RemoteContext,
) -> portcullis_server::access::BoxFuture<'static, Result<RemoteContext, ApiError>> {
    Box::pin(async move {
        let n = ctx
            .result
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        ctx.result = Some(json!({"posts": ctx.result.take(), "n": n}));
        Ok(ctx)
    })
}

#[tokio::test]
async fn operation_and_after_remote_hooks() {
    let s = TestServer::start_with("examples/wall", |b| {
        b.observe("Post", Operation::Access, hide_drafts)
            .observe("Post", Operation::Loaded, shout)
            .observe("*", Operation::BeforeDelete, no_deletes)
            .after_remote("Post", "find", count_result)
    })
    .await;
    s.post(
        "/api/appusers",
        &json!({"email": "a@x.test", "password": "pw"}),
    )
    .await;
    let (_, t) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@x.test", "password": "pw"}),
        )
        .await;
    let t = t["id"].as_str().expect("token").to_string();
    for text in ["draft", "hello"] {
        s.request(
            Method::POST,
            "/api/posts",
            Some(Body::Form(&format!("text={text}"))),
            Some(&t),
        )
        .await;
    }
    let (_, body) = s.get("/api/posts").await;
    assert_eq!(body["n"], json!(1), "{body}");
    assert_eq!(body["posts"][0]["text"], "HELLO");
    assert_eq!(s.get("/api/posts/count").await.1, json!({"count": 1}));
    assert_eq!(
        s.get("/api/posts/1").await.0,
        StatusCode::NOT_FOUND,
        "the access hook applies to findById"
    );
    let (st, body) = s
        .request(Method::DELETE, "/api/posts/2", None, Some(&t))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        s.get("/api/posts/2/exists").await.1,
        json!({"exists": true})
    );
}
