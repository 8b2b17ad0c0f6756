//! The wall's users, tokens and ACLs over the real server: the tutorial's flows with the
//! tutorial's transport (form bodies, the bare token in `Authorization`).

mod common;

use common::{assert_error, Body, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn wall() -> TestServer {
    TestServer::start("examples/wall").await
}

async fn register(s: &TestServer, email: &str, password: &str) -> Value {
    let form = format!("email={}&password={}", email.replace('@', "%40"), password);
    let (st, body) = s
        .request(Method::POST, "/api/appusers", Some(Body::Form(&form)), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

async fn login(s: &TestServer, email: &str, password: &str) -> String {
    let form = format!("email={}&password={}", email.replace('@', "%40"), password);
    let (st, body) = s
        .request(
            Method::POST,
            "/api/appusers/login",
            Some(Body::Form(&form)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["id"].as_str().expect("token").to_string()
}

async fn post(s: &TestServer, token: &str, text: &str) -> Value {
    let form = format!("text={text}");
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Form(&form)),
            Some(token),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn register_login_and_the_token_shape() {
    let s = wall().await;
    let user = register(&s, "a@example.com", "secret-a").await;
    assert_eq!(
        user,
        json!({"email": "a@example.com", "emailVerified": false, "id": 1})
    );
    let (st, body) = s
        .request(
            Method::POST,
            "/api/appusers/login",
            Some(Body::Form("email=a%40example.com&password=secret-a")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let token = body["id"].as_str().expect("id");
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(body["ttl"], json!(1209600));
    assert_eq!(body["userId"], json!(1));
    assert!(body["created"].as_str().is_some_and(|c| c.ends_with('Z')));
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, vec!["id", "ttl", "created", "userId"]);

    let (st, body) = s
        .post(
            "/api/appusers/login?include=user",
            &json!({"email": "a@example.com", "password": "secret-a"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body["user"],
        json!({"email": "a@example.com", "emailVerified": false, "id": 1})
    );
}

#[tokio::test]
async fn registration_and_login_errors() {
    let s = wall().await;
    register(&s, "a@example.com", "pw").await;
    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "a@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let e = assert_error(&body, 422);
    assert_eq!(e["details"]["codes"], json!({"email": ["uniqueness"]}));
    assert_eq!(
        e["details"]["messages"],
        json!({"email": ["Email already exists"]})
    );

    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "not-an-email", "password": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        assert_error(&body, 422)["details"]["codes"],
        json!({"email": ["custom.email"]})
    );
    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "b@example.com", "password": ""}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("INVALID_PASSWORD"))
    );
    let (st, body) = s
        .post(
            "/api/appusers",
            &json!({"email": "b@example.com", "password": "p".repeat(73)}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("PASSWORD_TOO_LONG"))
    );
    let (st, body) = s
        .post("/api/appusers", &json!({"email": "b@example.com"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        assert_error(&body, 422)["details"]["codes"],
        json!({"password": ["presence"]})
    );
    assert_eq!(
        s.get("/api/appusers/count").await.0,
        StatusCode::UNAUTHORIZED
    );

    let (st, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@example.com", "password": "wrong"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(assert_error(&body, 401)["code"], "LOGIN_FAILED");
    let (st, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "nobody@example.com", "password": "wrong"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("LOGIN_FAILED"))
    );
    let (st, body) = s
        .post("/api/appusers/login", &json!({"password": "pw"}))
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("USERNAME_EMAIL_REQUIRED"))
    );
    let (st, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": {"gt": ""}, "password": "pw"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_EMAIL"))
    );
    let (st, body) = s
        .post("/api/appusers/login", &json!({"email": "a@example.com"}))
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("LOGIN_FAILED"))
    );
}

#[tokio::test]
async fn client_cannot_self_verify_or_choose_a_verification_token() {
    let s = wall().await;
    let (st, body) = s
        .post("/api/appusers", &json!({"email": "v@example.com", "password": "pw", "emailVerified": true, "verificationToken": "mine"}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["emailVerified"], json!(false));
    let (st, _) = s.get("/api/appusers/confirm?uid=1&token=mine").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_wall_acls() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    register(&s, "b@example.com", "pb").await;
    let ta = login(&s, "a@example.com", "pa").await;
    let tb = login(&s, "b@example.com", "pb").await;

    // Anonymous: read yes, write no.
    assert_eq!(s.get("/api/posts").await, (StatusCode::OK, json!([])));
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Form("text=hi")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(assert_error(&body, 401)["code"], "AUTHORIZATION_REQUIRED");

    // Authenticated create: the server sets the owner and the time.
    let spoof =
        json!({"text": "spoof", "ownerId": 2, "created": "1999-01-01T00:00:00.000Z", "id": 99});
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&spoof)),
            Some(&ta),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a client id is refused: {body}"
    );
    let spoof = json!({"text": "spoof", "ownerId": 2, "created": "1999-01-01T00:00:00.000Z"});
    let (st, p1) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&spoof)),
            Some(&ta),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p1}");
    assert_eq!(p1["ownerId"], json!(1));
    assert_ne!(p1["created"], json!("1999-01-01T00:00:00.000Z"));
    let id = p1["id"].as_i64().expect("id");
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Form("created=x")),
            Some(&ta),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "text is required: {body}"
    );

    // Only the owner deletes or updates.
    let (st, body) = s
        .request(Method::DELETE, &format!("/api/posts/{id}"), None, Some(&tb))
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("AUTHORIZATION_REQUIRED"))
    );
    let (st, _) = s
        .request(
            Method::PATCH,
            &format!("/api/posts/{id}"),
            Some(Body::Json(&json!({"text": "hacked"}))),
            Some(&tb),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = s
        .request(
            Method::PATCH,
            &format!("/api/posts/{id}"),
            Some(Body::Json(&json!({"text": "edited", "ownerId": 2}))),
            Some(&ta),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["text"].clone(), body["ownerId"].clone()),
        (json!("edited"), json!(1)),
        "the owner field stays"
    );
    let (st, _) = s
        .request(
            Method::PUT,
            "/api/posts",
            Some(Body::Json(&json!({"text": "upsert"}))),
            Some(&ta),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "upserts are not allowed by the wall's ACLs"
    );

    // Reads include the creator without secrets.
    let (st, body) = s
        .get("/api/posts?filter[include][creator]&filter[order]=created%20desc")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body[0]["creator"],
        json!({"email": "a@example.com", "emailVerified": false, "id": 1})
    );

    let (st, body) = s
        .request(Method::DELETE, &format!("/api/posts/{id}"), None, Some(&ta))
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({"count": 1})));

    // A missing post: a denied caller sees 401 before any 404.
    let (st, _) = s
        .request(
            Method::PATCH,
            "/api/posts/999",
            Some(Body::Json(&json!({"text": "x"}))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Users: the list is closed, your own record is open to you only.
    assert_eq!(
        s.request(Method::GET, "/api/appusers", None, Some(&ta))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.request(Method::GET, "/api/appusers/1", None, Some(&ta))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.request(Method::GET, "/api/appusers/2", None, Some(&ta))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/api/Users").await.0,
        StatusCode::NOT_FOUND,
        "User is not public"
    );
}

#[tokio::test]
async fn token_sources() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    let t = login(&s, "a@example.com", "pa").await;
    let b64 = base64_encode(&t);
    let headers = [
        ("Authorization", t.clone()),
        ("Authorization", format!("Bearer {t}")),
        ("Authorization", format!("Bearer {b64}")),
        ("X-Access-Token", t.clone()),
    ];
    for (name, value) in headers {
        let (st, _, body) = s
            .request_full(
                Method::GET,
                "/api/appusers/1",
                None,
                Some((name, value.as_str())),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{name}: {value}: {body}");
    }
    let (st, _) = s.get(&format!("/api/appusers/1?access_token={t}")).await;
    assert_eq!(st, StatusCode::OK);
    // Unknown tokens are anonymous, as in LoopBack.
    let (st, body) = s
        .request(Method::GET, "/api/posts", None, Some("not-a-real-token"))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = s
        .request(
            Method::GET,
            "/api/appusers/1",
            None,
            Some("not-a-real-token"),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_token() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    let t = login(&s, "a@example.com", "pa").await;
    post(&s, &t, "before").await;
    let (st, body) = s
        .request(Method::POST, "/api/appusers/logout", None, Some(&t))
        .await;
    assert_eq!((st, body), (StatusCode::NO_CONTENT, Value::Null));
    let (st, _) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Form("text=after")),
            Some(&t),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = s
        .request(Method::POST, "/api/appusers/logout", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        assert_error(&body, 401)["message"],
        "accessToken is required to logout"
    );
}

#[tokio::test]
async fn expired_tokens_fail_once_then_are_anonymous() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    let (_, body) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@example.com", "password": "pa", "ttl": 1}),
        )
        .await;
    let t = body["id"].as_str().expect("token").to_string();
    assert_eq!(body["ttl"], json!(1));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, body) = s.request(Method::GET, "/api/posts", None, Some(&t)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "even a public route: {body}");
    assert_eq!(assert_error(&body, 401)["code"], "INVALID_TOKEN");
    let (st, _) = s.request(Method::GET, "/api/posts", None, Some(&t)).await;
    assert_eq!(st, StatusCode::OK, "then anonymous");
}

#[tokio::test]
async fn failed_logins_are_throttled_with_retry_after() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    for _ in 0..10 {
        let (st, _) = s
            .post(
                "/api/appusers/login",
                &json!({"email": "a@example.com", "password": "bad"}),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, headers, body) = s
        .request_full(
            Method::POST,
            "/api/appusers/login",
            Some(Body::Json(
                &json!({"email": "a@example.com", "password": "pa"}),
            )),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, 429);
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry > 0);
}

#[tokio::test]
async fn password_change_ends_other_sessions_but_not_this_one() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    let t1 = login(&s, "a@example.com", "pa").await;
    let t2 = login(&s, "a@example.com", "pa").await;
    let (st, body) = s
        .request(
            Method::POST,
            "/api/appusers/change-password",
            Some(Body::Form("oldPassword=wrong&newPassword=pb")),
            Some(&t1),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_PASSWORD"))
    );
    let (st, _) = s
        .request(
            Method::POST,
            "/api/appusers/change-password",
            Some(Body::Form("oldPassword=pa&newPassword=pb")),
            Some(&t1),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.request(Method::GET, "/api/appusers/1", None, Some(&t1))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.request(Method::GET, "/api/appusers/1", None, Some(&t2))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .post(
            "/api/appusers/login",
            &json!({"email": "a@example.com", "password": "pa"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    login(&s, "a@example.com", "pb").await;
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let s = wall().await;
    register(&s, "a@example.com", "pa").await;
    let t = login(&s, "a@example.com", "pa").await;
    if let Some(pg) = &s.pg {
        let text = pg.dump_text().await;
        assert!(text.contains("a@example.com"), "the dump shows the rows");
        assert!(
            !text.contains(&t),
            "the raw token must not be in the database"
        );
        return;
    }
    let db = std::fs::read(s.dir.path().join("wall.sqlite")).expect("db file");
    let wal = std::fs::read(s.dir.path().join("wall.sqlite-wal")).unwrap_or_default();
    let contains = |hay: &[u8]| hay.windows(t.len()).any(|w| w == t.as_bytes());
    assert!(
        !contains(&db) && !contains(&wal),
        "the raw token must not be in the database"
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
