//! Stateless nodes over one PostgreSQL schema: a logout, a password change and a role grant
//! made on one node reach the other node's caches within a second. Runs only when
//! `PORTCULLIS_TEST_DATABASE_URL` names a PostgreSQL server.

mod common;

use std::time::{Duration, Instant};

use common::{wall_login, wall_user, Body, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The documented bound.
const BOUND: Duration = Duration::from_secs(1);

fn pg() -> Option<String> {
    let url = common::pg_url();
    if url.is_none() {
        eprintln!(
            "notice: {} not set: skipping the cluster tests",
            common::PG_ENV
        );
    }
    url
}

async fn status(s: &TestServer, method: Method, path: &str, token: &str) -> StatusCode {
    s.request(method, path, None, Some(token)).await.0
}

/// Polls `path` on `s` with `token` until it answers `want` (up to two seconds); returns how
/// long that took.
async fn until(
    s: &TestServer,
    method: Method,
    path: &str,
    token: &str,
    want: StatusCode,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(s, method.clone(), path, token).await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} still answers {got}, not {want}, after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_logout_on_one_node_reaches_the_other() {
    let Some(url) = pg() else { return };
    let (a, b) = TestServer::start_pair("examples/wall", &url).await;
    let token = wall_user(&a, "a@x.test").await;
    // Both nodes cache the token.
    assert_eq!(
        status(&a, Method::GET, "/api/appusers/1", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&b, Method::GET, "/api/appusers/1", &token).await,
        StatusCode::OK
    );
    let (st, _) = b
        .request(Method::POST, "/api/appusers/logout", None, Some(&token))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let took = until(
        &a,
        Method::GET,
        "/api/appusers/1",
        &token,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    eprintln!("logout reached node A in {took:?}");
    assert!(took < BOUND, "{took:?}");
}

#[tokio::test]
async fn a_password_change_on_one_node_ends_other_sessions_everywhere() {
    let Some(url) = pg() else { return };
    let (a, b) = TestServer::start_pair("examples/wall", &url).await;
    let first = wall_user(&a, "p@x.test").await;
    let second = wall_login(&b, "p@x.test", "pw").await;
    assert_eq!(
        status(&a, Method::GET, "/api/appusers/1", &second).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&b, Method::GET, "/api/appusers/1", &first).await,
        StatusCode::OK
    );
    // Changing the password with the first token ends every other session of the user.
    let (st, body) = a
        .request(
            Method::POST,
            "/api/appusers/change-password",
            Some(Body::Json(
                &json!({"oldPassword": "pw", "newPassword": "pw2"}),
            )),
            Some(&first),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let took = until(
        &b,
        Method::GET,
        "/api/appusers/1",
        &second,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    eprintln!("password change reached node B in {took:?}");
    assert!(took < BOUND, "{took:?}");
    assert_eq!(
        status(&b, Method::GET, "/api/appusers/1", &first).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoking_sessions_on_one_node_ends_them_on_the_other() {
    let Some(url) = pg() else { return };
    let app = common::wall_with_session_revocation();
    let (a, b) = TestServer::start_pair(&app.path().to_string_lossy(), &url).await;
    let on_a = wall_user(&a, "v@x.test").await;
    let on_b = wall_login(&b, "v@x.test", "pw").await;
    for t in [&on_a, &on_b] {
        assert_eq!(
            status(&a, Method::GET, "/api/appusers/1", t).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&b, Method::GET, "/api/appusers/1", t).await,
            StatusCode::OK
        );
    }
    // A bulk delete through the relation: each deleted token is an event of its own.
    let (st, body) = b
        .request(
            Method::DELETE,
            "/api/appusers/1/accessTokens",
            None,
            Some(&on_b),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        status(&b, Method::GET, "/api/appusers/1", &on_a).await,
        StatusCode::UNAUTHORIZED,
        "the revoking node forgets at once"
    );
    for t in [&on_a, &on_b] {
        let took = until(
            &a,
            Method::GET,
            "/api/appusers/1",
            t,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        eprintln!("revocation reached node A in {took:?}");
        assert!(took < BOUND, "{took:?}");
    }
}

#[tokio::test]
async fn a_role_grant_on_one_node_takes_effect_on_the_other() {
    let Some(url) = pg() else { return };
    let (a, b) = TestServer::start_pair("crates/server/tests/fixtures/acl", &url).await;
    let mut tokens = Vec::new();
    for n in 1..=2 {
        let email = format!("u{n}@x.test");
        let (st, body) = a
            .post("/api/customers", &json!({"email": email, "password": "pw"}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (_, body) = a
            .post(
                "/api/customers/login",
                &json!({"email": email, "password": "pw"}),
            )
            .await;
        tokens.push(body["id"].as_str().expect("token").to_string());
    }
    // User 2 may not list orders on node B (its caches are loaded).
    assert_eq!(
        status(&b, Method::GET, "/api/orders", &tokens[1]).await,
        StatusCode::UNAUTHORIZED
    );
    let (st, role) = a.post("/api/Roles", &json!({"name": "admin"})).await;
    assert_eq!(st, StatusCode::OK, "{role}");
    let (st, body) = a
        .post(
            "/api/RoleMappings",
            &json!({"principalType": "USER", "principalId": "2", "roleId": role["id"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let took = until(&b, Method::GET, "/api/orders", &tokens[1], StatusCode::OK).await;
    eprintln!("role grant reached node B in {took:?}");
    assert!(took < BOUND, "{took:?}");

    // And the revocation.
    let (st, _) = a
        .request(
            Method::DELETE,
            &format!("/api/RoleMappings/{}", body["id"]),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let took = until(
        &b,
        Method::GET,
        "/api/orders",
        &tokens[1],
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(took < BOUND, "{took:?}");
}

#[tokio::test]
async fn a_node_whose_listener_dropped_reconnects_and_forgets_its_cache() {
    let Some(url) = pg() else { return };
    let (a, b) = TestServer::start_pair("examples/wall", &url).await;
    let token = wall_user(&a, "r@x.test").await;
    assert_eq!(
        status(&a, Method::GET, "/api/appusers/1", &token).await,
        StatusCode::OK
    );
    let schema = a.pg.as_ref().expect("pg").schema.clone();
    let client = a.pg.as_ref().expect("pg").client().await;
    // Both nodes' listeners go; they come back with backoff.
    let n = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("portcullis:{schema}")],
        )
        .await
        .expect("terminate");
    assert_eq!(n, 2, "one listener per node");
    let (st, _) = b
        .request(Method::POST, "/api/appusers/logout", None, Some(&token))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let took = until(
        &a,
        Method::GET,
        "/api/appusers/1",
        &token,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    eprintln!("after a reconnect, the logout reached node A in {took:?}");
    assert!(took < BOUND, "{took:?}");
}
