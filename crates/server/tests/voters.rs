//! LoopBack 4-style authorization on top of the ACLs: `authorize` metadata from Rust and
//! from model JSON, voters (a panicking or failing voter denies), the role-based
//! authorizer, and 401 versus 403.

mod common;

use common::{Body, TestServer};
use portcullis_authz::Vote;
use portcullis_server::access::BoxFuture;
use portcullis_server::authorize::VoterContext;
use portcullis_server::remote::AuthorizeMeta;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn weekday_only(ctx: VoterContext) -> BoxFuture<'static, Result<Vote, String>> {
    Box::pin(async move {
        // Stand-in business rule: texts starting with "closed" are refused.
        let closed = ctx
            .args
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("closed"));
        Ok(if closed { Vote::Deny } else { Vote::Abstain })
    })
}

fn panics(_: VoterContext) -> BoxFuture<'static, Result<Vote, String>> {
    Box::pin(async move { panic!("voter bug") })
}

fn fails(_: VoterContext) -> BoxFuture<'static, Result<Vote, String>> {
    Box::pin(async move { Err("database down".to_string()) })
}

fn allows(_: VoterContext) -> BoxFuture<'static, Result<Vote, String>> {
    Box::pin(async move { Ok(Vote::Allow) })
}

async fn user(s: &TestServer, email: &str) -> String {
    s.post("/api/appusers", &json!({"email": email, "password": "pw"}))
        .await;
    let (_, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": email, "password": "pw"}),
        )
        .await;
    body["id"].as_str().expect("token").to_string()
}

#[tokio::test]
async fn voters_restrict_and_errors_deny() {
    let s = TestServer::start_with("examples/wall", |b| {
        b.register_voter("openHours", weekday_only)
            .register_voter("buggy", panics)
            .register_voter("flaky", fails)
            .authorize(
                "Post",
                "create",
                AuthorizeMeta {
                    voters: vec!["openHours".into()],
                    ..Default::default()
                },
            )
            .authorize(
                "Post",
                "find",
                AuthorizeMeta {
                    voters: vec!["buggy".into()],
                    ..Default::default()
                },
            )
            .authorize(
                "Post",
                "count",
                AuthorizeMeta {
                    voters: vec!["flaky".into()],
                    ..Default::default()
                },
            )
    })
    .await;
    let t = user(&s, "a@x.test").await;
    let (st, _) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&json!({"text": "open"}))),
            Some(&t),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the ACL allows and the voter abstains");
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&json!({"text": "closed today"}))),
            Some(&t),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a known user denied by a voter gets 403: {body}"
    );
    let (st, _) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&json!({"text": "x"}))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "no user: 401");
    assert_eq!(
        s.request(Method::GET, "/api/posts", None, Some(&t)).await.0,
        StatusCode::FORBIDDEN,
        "a panicking voter denies"
    );
    assert_eq!(
        s.request(Method::GET, "/api/posts/count", None, Some(&t))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "a failing voter denies"
    );
    // Methods without metadata keep LoopBack 3's ACL semantics.
    assert_eq!(s.get("/api/posts/1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn role_based_authorizer_and_precedence() {
    // Only $owner may read a post by id, whatever the ACLs allow.
    let s = TestServer::start_with("examples/wall", |b| {
        b.authorize(
            "Post",
            "findById",
            AuthorizeMeta {
                allowed_roles: vec!["$owner".into()],
                ..Default::default()
            },
        )
        .register_voter("yes", allows)
        .authorize(
            "Post",
            "deleteById",
            AuthorizeMeta {
                voters: vec!["yes".into()],
                ..Default::default()
            },
        )
    })
    .await;
    let a = user(&s, "a@x.test").await;
    let b = user(&s, "b@x.test").await;
    s.request(
        Method::POST,
        "/api/posts",
        Some(Body::Json(&json!({"text": "mine"}))),
        Some(&a),
    )
    .await;
    assert_eq!(
        s.request(Method::GET, "/api/posts/1", None, Some(&a))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.request(Method::GET, "/api/posts/1", None, Some(&b))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.get("/api/posts/1").await.0, StatusCode::UNAUTHORIZED);
    // With the default precedence (Deny), a voter's Allow cannot open what an ACL denies.
    assert_eq!(
        s.request(Method::DELETE, "/api/posts/1", None, Some(&b))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn metadata_in_model_json_and_precedence_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = common::workspace_root().join("examples/wall");
    common::copy_dir(&root, dir.path());
    let post = dir.path().join("common/models/post.json");
    let mut model: Value =
        serde_json::from_str(&std::fs::read_to_string(&post).expect("read")).expect("json");
    model["authorize"] = json!({"deleteById": {"voters": ["yes"]}});
    std::fs::write(&post, model.to_string()).expect("write");
    let config = dir.path().join("server/config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("json");
    cfg["authorization"] = json!({"precedence": "ALLOW", "defaultDecision": "DENY"});
    std::fs::write(&config, cfg.to_string()).expect("write");
    let s = TestServer::start_in_with(dir, |b| b.register_voter("yes", allows)).await;
    let a = user(&s, "a@x.test").await;
    let b = user(&s, "b@x.test").await;
    s.request(
        Method::POST,
        "/api/posts",
        Some(Body::Json(&json!({"text": "mine"}))),
        Some(&a),
    )
    .await;
    // precedence ALLOW: the voter's Allow wins over the ACL's Deny.
    let (st, body) = s
        .request(Method::DELETE, "/api/posts/1", None, Some(&b))
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({"count": 1})));
}
