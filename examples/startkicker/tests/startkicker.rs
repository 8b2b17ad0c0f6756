//! The startkicker matrix over the real server: guest, John, Jane and Bob on every
//! endpoint, with the results the running LoopBack 3 example gives (its README is wrong
//! in places; these are the measured ones), and the original's bugs fixed.

//!
//! With `PORTCULLIS_TEST_BACKEND=postgres` and `PORTCULLIS_TEST_DATABASE_URL`, the app runs on
//! PostgreSQL in a schema of its own (the server tests' harness, shared).

#[path = "../../../crates/server/tests/common/mod.rs"]
mod common;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct App {
    base: String,
    client: reqwest::Client,
    _server: common::TestServer,
}

async fn start() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&startkicker::app_dir(), dir.path());
    // The harness applies `server/seed.json`, as `portcullis serve` does.
    let server = common::TestServer::start_in_with(dir, startkicker::configure).await;
    App {
        base: server.base.clone(),
        client: server.client.clone(),
        _server: server,
    }
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Value>,
        form: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut url = format!("{}{}", self.base, path);
        if let Some(t) = token {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("access_token={t}"));
        }
        let mut req = self.client.request(method, url);
        if let Some(j) = json {
            req = req.json(&j);
        }
        if let Some(f) = form {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(f.to_string());
        }
        let res = req.send().await.expect("send");
        let status = res.status();
        let text = res.text().await.expect("text");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn login(&self, user: &str) -> String {
        let (st, body) = self
            .send(
                Method::POST,
                "/api/users/login",
                Some(json!({"username": user, "password": "opensesame"})),
                None,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{user}: {body}");
        body["id"].as_str().expect("token").to_string()
    }

    async fn balances(&self) -> (f64, f64) {
        let bob = self.login("Bob").await;
        let (_, body) = self
            .send(Method::GET, "/api/projects", None, None, Some(&bob))
            .await;
        let b = |i: usize| body[i]["balance"].as_f64().unwrap_or(f64::NAN);
        (b(0), b(1))
    }
}

/// One endpoint: method, path, JSON body, form body, and the status for guest, John,
/// Jane and Bob.
type Case = (
    Method,
    &'static str,
    Option<Value>,
    Option<&'static str>,
    [u16; 4],
);

fn matrix() -> Vec<Case> {
    vec![
        (
            Method::GET,
            "/api/projects/list-projects",
            None,
            None,
            [200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/api/projects",
            None,
            None,
            [401, 401, 401, 200],
        ),
        (
            Method::GET,
            "/api/projects/1",
            None,
            None,
            [401, 200, 200, 401],
        ),
        (
            Method::GET,
            "/api/projects/2",
            None,
            None,
            [401, 401, 200, 401],
        ),
        (
            Method::GET,
            "/api/projects/99",
            None,
            None,
            [401, 401, 401, 401],
        ),
        (
            Method::GET,
            "/api/projects/1/exists",
            None,
            None,
            [401, 401, 401, 401],
        ),
        (
            Method::GET,
            "/api/projects/count",
            None,
            None,
            [401, 401, 401, 401],
        ),
        (
            Method::GET,
            "/api/projects/findOne",
            None,
            None,
            [401, 401, 401, 401],
        ),
        (
            Method::POST,
            "/api/projects",
            Some(json!({"name": "x"})),
            None,
            [401, 401, 401, 401],
        ),
        (
            Method::POST,
            "/api/projects/donate",
            Some(json!({"id": 1, "amount": 10})),
            None,
            [401, 200, 200, 200],
        ),
        (
            Method::POST,
            "/api/projects/donate",
            None,
            Some("id=2&amount=5"),
            [401, 200, 200, 200],
        ),
        (
            Method::POST,
            "/api/projects/withdraw",
            Some(json!({"id": 1, "amount": 30})),
            None,
            [401, 200, 401, 401],
        ),
        (
            Method::POST,
            "/api/projects/withdraw",
            None,
            Some("id=2&amount=30"),
            [401, 401, 200, 401],
        ),
        (
            Method::POST,
            "/api/projects/withdraw?id=1&amount=1",
            None,
            None,
            [401, 200, 401, 401],
        ),
        (
            Method::POST,
            "/api/projects/withdraw",
            Some(json!({"amount": 1})),
            None,
            [401, 401, 401, 401],
        ),
    ]
}

#[tokio::test]
async fn every_user_on_every_endpoint() {
    let expected_balances = [(100.0, 100.0), (79.0, 105.0), (110.0, 75.0), (110.0, 105.0)];
    for (u, user) in [None, Some("John"), Some("Jane"), Some("Bob")]
        .into_iter()
        .enumerate()
    {
        let app = start().await;
        let token = match user {
            Some(name) => Some(app.login(name).await),
            None => None,
        };
        for (method, path, json_body, form, statuses) in matrix() {
            let (st, body) = app
                .send(
                    method.clone(),
                    path,
                    json_body.clone(),
                    form,
                    token.as_deref(),
                )
                .await;
            assert_eq!(st.as_u16(), statuses[u], "{user:?} {method} {path}: {body}");
            if st == StatusCode::OK && (path.contains("donate") || path.contains("withdraw")) {
                assert_eq!(body, json!({"success": true}));
            }
            if st == StatusCode::UNAUTHORIZED {
                assert_eq!(body["error"]["code"], "AUTHORIZATION_REQUIRED");
            }
        }
        assert_eq!(app.balances().await, expected_balances[u], "{user:?}");
    }
}

#[tokio::test]
async fn response_shapes() {
    let app = start().await;
    let (_, body) = app
        .send(Method::GET, "/api/projects/list-projects", None, None, None)
        .await;
    assert_eq!(
        body,
        json!({"projects": [{"name": "project1", "id": 1, "ownerId": 1}, {"name": "project2", "id": 2, "ownerId": 2}]})
    );
    let john = app.login("John").await;
    let (_, body) = app
        .send(Method::GET, "/api/projects/1", None, None, Some(&john))
        .await;
    assert_eq!(
        body,
        json!({"name": "project1", "balance": 100, "id": 1, "ownerId": 1})
    );
    let (st, body) = app
        .send(
            Method::POST,
            "/api/users/login?include=user",
            Some(json!({"email": "jane@doe.com", "password": "opensesame"})),
            None,
            None,
        )
        .await;
    assert_eq!(
        (st, body["userId"].clone(), body["user"]["username"].clone()),
        (StatusCode::OK, json!(2), json!("Jane"))
    );
    assert_eq!(
        app.send(Method::GET, "/api/users/1", None, None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(Method::GET, "/api/teams", None, None, None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(
            Method::POST,
            "/api/users/foobar",
            Some(json!({})),
            None,
            None
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_original_bugs_are_fixed() {
    let app = start().await;
    let john = app.login("John").await;
    // A donation to a missing project crashed the original server.
    let (st, body) = app
        .send(
            Method::POST,
            "/api/projects/donate",
            Some(json!({"id": 99, "amount": 10})),
            None,
            Some(&john),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    // Missing, negative, or ill-typed amounts were accepted (or made the balance NaN).
    for bad in [
        json!({"id": 1}),
        json!({"id": 1, "amount": -5}),
        json!({"id": 1, "amount": 0}),
        json!({"id": 1, "amount": "10"}),
    ] {
        let (st, body) = app
            .send(
                Method::POST,
                "/api/projects/donate",
                Some(bad.clone()),
                None,
                Some(&john),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    assert_eq!(app.balances().await, (100.0, 100.0), "nothing changed");
}
