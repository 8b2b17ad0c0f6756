//! The user system beyond the wall's flows: realms, email verification, password reset,
//! `/me`, legacy bcrypt hashes, and what a deleted user leaves behind.

mod common;

use std::sync::Arc;

use common::{assert_error, Body, TestServer};
use portcullis_server::mail::MemoryMailer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn realms() -> TestServer {
    TestServer::start("examples/realms").await
}

#[tokio::test]
async fn the_same_username_in_two_realms() {
    let s = realms().await;
    for (realm, pw) in [("acme", "pw-acme"), ("globex", "pw-globex")] {
        let (st, body) = s
            .post("/api/members", &json!({"realm": realm, "username": "john", "email": "john@x.test", "password": pw}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let (st, body) = s
        .post(
            "/api/members",
            &json!({"realm": "acme", "username": "john", "email": "other@x.test", "password": "p"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        assert_error(&body, 422)["details"]["codes"],
        json!({"username": ["uniqueness"]})
    );

    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"username": "acme:john", "password": "pw-acme"}),
        )
        .await;
    assert_eq!((st, body["userId"].clone()), (StatusCode::OK, json!(1)));
    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"realm": "globex", "username": "john", "password": "pw-globex"}),
        )
        .await;
    assert_eq!((st, body["userId"].clone()), (StatusCode::OK, json!(2)));
    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"email": "globex:john@x.test", "password": "pw-globex"}),
        )
        .await;
    assert_eq!((st, body["userId"].clone()), (StatusCode::OK, json!(2)));
    // The wrong realm for the password, a missing realm, a realm that is not a string.
    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"username": "globex:john", "password": "pw-acme"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("LOGIN_FAILED"))
    );
    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"username": "john", "password": "pw-acme"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("REALM_REQUIRED"))
    );
    let (st, body) = s
        .post(
            "/api/members/login",
            &json!({"realm": 5, "username": "john", "password": "pw-acme"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REALM"))
    );
}

/// An app directory with email verification required and a `/me` literal.
fn verifying_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("server")).expect("dir");
    std::fs::create_dir_all(root.join("common/models")).expect("dir");
    let write = |p: &str, v: Value| {
        std::fs::write(
            root.join(p),
            serde_json::to_string_pretty(&v).expect("json"),
        )
        .expect("write")
    };
    write(
        "server/config.json",
        json!({"restApiRoot": "/api", "port": 4000}),
    );
    write(
        "server/datasources.json",
        json!({"db": {"connector": "sqlite", "file": "db.sqlite"}}),
    );
    write(
        "server/model-config.json",
        json!({"_meta": {"sources": ["../common/models"]}, "customer": {"dataSource": "db", "public": true,
               "options": {"emailVerificationRequired": true, "caseSensitiveEmail": false}}}),
    );
    write(
        "server/middleware.json",
        json!({"auth": {"loopback#token": {"params": {"currentUserLiteral": "me"}}}}),
    );
    write(
        "common/models/customer.json",
        json!({"name": "customer", "base": "User", "properties": {}}),
    );
    dir
}

async fn verifying() -> (TestServer, MemoryMailer) {
    let mailer = MemoryMailer::default();
    let m = mailer.clone();
    let s = TestServer::start_in_with(verifying_app(), move |b| b.mailer(Arc::new(m))).await;
    (s, mailer)
}

fn link_param(text: &str, name: &str) -> String {
    let start = text.find(&format!("{name}=")).expect("param in mail") + name.len() + 1;
    text[start..]
        .split(['&', '\n', ' ', '\t'])
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn email_verification_gates_login() {
    let (s, mailer) = verifying().await;
    let (st, user) = s
        .post(
            "/api/customers",
            &json!({"email": "Ann@X.test", "password": "pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{user}");
    assert_eq!(
        user["email"], "ann@x.test",
        "emails are lower-cased when not case-sensitive"
    );
    let (st, body) = s
        .post(
            "/api/customers/login",
            &json!({"email": "ANN@x.test", "password": "pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let e = assert_error(&body, 401);
    assert_eq!(e["code"], "LOGIN_FAILED_EMAIL_NOT_VERIFIED");
    assert_eq!(e["details"], json!({"userId": 1}));

    let (st, _) = s
        .request(Method::POST, "/api/customers/1/verify", None, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let mail = mailer.sent().pop().expect("a verification mail");
    assert_eq!(mail.to, "ann@x.test");
    assert!(
        mail.text
            .contains("http://localhost:4000/api/customers/confirm?uid=1"),
        "{}",
        mail.text
    );
    let token = link_param(&mail.text, "token");
    assert_eq!(token.len(), 128);

    let (st, body) = s.get("/api/customers/confirm?uid=1&token=wrong").await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_TOKEN"))
    );
    let (st, body) = s
        .get(&format!("/api/customers/confirm?uid=9&token={token}"))
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("USER_NOT_FOUND"))
    );
    let (st, _) = s
        .get(&format!(
            "/api/customers/confirm?uid=1&token={token}&redirect=https%3A%2F%2Fevil.test"
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no open redirects");
    let (st, headers, _) = s
        .request_full(
            Method::GET,
            &format!("/api/customers/confirm?uid=1&token={token}&redirect=%2Fwelcome"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FOUND);
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/welcome")
    );
    let (st, _) = s
        .get(&format!("/api/customers/confirm?uid=1&token={token}"))
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a verification token works once"
    );

    let (st, body) = s
        .post(
            "/api/customers/login",
            &json!({"email": "ann@x.test", "password": "pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let t = body["id"].as_str().expect("token").to_string();
    // `/me` is the current user.
    let (st, body) = s
        .request(Method::GET, "/api/customers/me", None, Some(&t))
        .await;
    assert_eq!(
        (st, body["email"].clone()),
        (StatusCode::OK, json!("ann@x.test"))
    );
    let (st, body) = s.get("/api/customers/me").await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("AUTHORIZATION_REQUIRED"))
    );
}

#[tokio::test]
async fn password_reset_reveals_nothing_and_its_token_is_single_use() {
    let (s, mailer) = verifying().await;
    s.post(
        "/api/customers",
        &json!({"email": "bo@x.test", "password": "old"}),
    )
    .await;
    // Not verified: the answer is the same 204 as for an unknown address, and no mail.
    for email in ["bo@x.test", "nobody@x.test"] {
        let (st, body) = s
            .post("/api/customers/reset", &json!({"email": email}))
            .await;
        assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null), "{email}");
    }
    assert!(mailer.sent().is_empty());
    let (st, body) = s.post("/api/customers/reset", &json!({})).await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("EMAIL_REQUIRED"))
    );

    // Verify, then reset.
    s.request(Method::POST, "/api/customers/1/verify", None, None)
        .await;
    let token = link_param(&mailer.sent().pop().expect("mail").text, "token");
    s.get(&format!("/api/customers/confirm?uid=1&token={token}"))
        .await;
    let (_, session) = s
        .post(
            "/api/customers/login",
            &json!({"email": "bo@x.test", "password": "old"}),
        )
        .await;
    let session = session["id"].as_str().expect("token").to_string();
    let (st, _) = s
        .post("/api/customers/reset", &json!({"email": "bo@x.test"}))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let mail = mailer.sent().pop().expect("reset mail");
    let reset = mail
        .text
        .lines()
        .last()
        .expect("token line")
        .trim()
        .to_string();
    assert_eq!(reset.len(), 64);
    // The reset token opens nothing but setPassword.
    let (st, _) = s
        .request(Method::GET, "/api/customers/1", None, Some(&reset))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = s
        .request(
            Method::POST,
            "/api/customers/reset-password",
            Some(Body::Form("newPassword=new")),
            Some(&reset),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, _) = s
        .request(
            Method::POST,
            "/api/customers/reset-password",
            Some(Body::Form("newPassword=again")),
            Some(&reset),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a reset token works once");
    assert_eq!(
        s.request(Method::GET, "/api/customers/1", None, Some(&session))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "old sessions end"
    );
    let (st, _) = s
        .post(
            "/api/customers/login",
            &json!({"email": "bo@x.test", "password": "new"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn loopback_bcrypt_hashes_log_in_and_are_upgraded() {
    let s = TestServer::start("examples/wall").await;
    let legacy = bcrypt::hash("password", 4).expect("bcrypt");
    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "old@x.test", "password": legacy}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "old@x.test", "password": "password"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let db = match &s.pg {
        Some(pg) => pg.dump_text().await,
        None => rusqlite_free_read(&s.dir.path().join("wall.sqlite")),
    };
    assert!(
        db.contains("$argon2id$"),
        "the hash is upgraded after login"
    );
    let (st, _) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "old@x.test", "password": "password"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn deleting_a_user_deletes_their_tokens() {
    let s = TestServer::start("examples/wall").await;
    s.post(
        "/api/appusers",
        &json!({"email": "d@x.test", "password": "pw"}),
    )
    .await;
    let (_, t) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "d@x.test", "password": "pw"}),
        )
        .await;
    let t = t["id"].as_str().expect("token").to_string();
    let (st, body) = s
        .request(Method::DELETE, "/api/appusers/1", None, Some(&t))
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({"count": 1})));
    let (st, _) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Form("text=x")),
            Some(&t),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the token died with its user");
}

/// The database file's text (the WAL included), without a SQLite client.
fn rusqlite_free_read(path: &std::path::Path) -> String {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    bytes.extend(std::fs::read(path.with_extension("sqlite-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn revoking_sessions_through_the_relation_ends_cached_tokens_at_once() {
    let s = TestServer::start_in(common::wall_with_session_revocation()).await;
    s.post(
        "/api/appusers",
        &json!({"email": "r@x.test", "password": "pw"}),
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (st, body) = s
            .post(
                "/api/appusers/login",
                &json!({"email": "r@x.test", "password": "pw"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        tokens.push(body["id"].as_str().expect("token").to_string());
    }
    // Both tokens are in the node's cache now.
    for t in &tokens {
        let (st, _) = s
            .request(Method::GET, "/api/appusers/1", None, Some(t))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, body) = s
        .request(
            Method::DELETE,
            "/api/appusers/1/accessTokens",
            None,
            Some(&tokens[0]),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    // No wait: the delete's own transaction announced every removed token.
    for t in &tokens {
        let (st, _) = s
            .request(Method::GET, "/api/appusers/1", None, Some(t))
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "a revoked token still works");
    }
}
