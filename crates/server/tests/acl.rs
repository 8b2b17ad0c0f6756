//! ACL enforcement over HTTP: `$owner`, static and nested roles, the ACL table changed at
//! runtime, custom resolvers, default permissions, 401 versus 403, and `enableAuth`.

mod common;

use common::{assert_error, Body, TestServer};
use portcullis_server::access::{BoxFuture, RoleContext};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// `teamMember` holds for user 3 only: a stand-in for a resolver that reads the database.
fn team_member<'a>(ctx: &'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>> {
    Box::pin(async move { Ok(ctx.user_id == Some("3")) })
}

async fn app() -> (TestServer, Vec<String>) {
    let s = TestServer::start_with("crates/server/tests/fixtures/acl", |b| {
        b.register_role_resolver("teamMember", team_member)
    })
    .await;
    let mut tokens = Vec::new();
    for n in 1..=3 {
        let email = format!("u{n}@x.test");
        let (st, body) = s
            .post("/api/customers", &json!({"email": email, "password": "pw"}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (_, body) = s
            .post(
                "/api/customers/login",
                &json!({"email": email, "password": "pw"}),
            )
            .await;
        tokens.push(body["id"].as_str().expect("token").to_string());
    }
    (s, tokens)
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> StatusCode {
    s.request(method, path, body.map(Body::Json), token).await.0
}

#[tokio::test]
async fn owner_static_roles_nested_roles_and_deny_precedence() {
    let (s, t) = app().await;
    let (st, order) = s
        .request(
            Method::POST,
            "/api/orders",
            Some(Body::Json(&json!({"total": 5, "userId": 1}))),
            Some(&t[0]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{order}");
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders/1", None, Some(&t[0])).await,
        StatusCode::OK,
        "owner by userId"
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders/1", None, Some(&t[1])).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[0])).await,
        StatusCode::UNAUTHORIZED,
        "no $owner for lists"
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders?id=1", None, Some(&t[0])).await,
        StatusCode::UNAUTHORIZED,
        "no borrowed id"
    );

    // A static role.
    s.post("/api/Roles", &json!({"name": "admin"})).await;
    let (st, body) = s
        .post(
            "/api/RoleMappings",
            &json!({"principalType": "USER", "principalId": "2", "roleId": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[1])).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders/1", None, Some(&t[1])).await,
        StatusCode::OK
    );

    // A nested role: user 3 is staff, staff is admin.
    s.post("/api/Roles", &json!({"name": "staff"})).await;
    s.post(
        "/api/RoleMappings",
        &json!({"principalType": "USER", "principalId": "3", "roleId": 2}),
    )
    .await;
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[2])).await,
        StatusCode::UNAUTHORIZED
    );
    s.post(
        "/api/RoleMappings",
        &json!({"principalType": "ROLE", "principalId": "staff", "roleId": 1}),
    )
    .await;
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[2])).await,
        StatusCode::OK
    );

    // admin ALLOW and banned DENY are equally specific: DENY wins.
    s.post("/api/Roles", &json!({"name": "banned"})).await;
    s.post(
        "/api/RoleMappings",
        &json!({"principalType": "USER", "principalId": "2", "roleId": 3}),
    )
    .await;
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[1])).await,
        StatusCode::UNAUTHORIZED
    );
    // Removing the mapping takes effect at once.
    s.delete("/api/RoleMappings/4").await;
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[1])).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn custom_resolver_roles() {
    let (s, t) = app().await;
    s.request(
        Method::POST,
        "/api/orders",
        Some(Body::Json(&json!({"total": 5, "userId": 1}))),
        Some(&t[0]),
    )
    .await;
    assert_eq!(
        call(&s, Method::GET, "/api/orders/1", None, Some(&t[2])).await,
        StatusCode::OK,
        "teamMember"
    );
    assert_eq!(
        call(&s, Method::GET, "/api/orders", None, Some(&t[2])).await,
        StatusCode::UNAUTHORIZED,
        "only findById"
    );
    assert_eq!(
        call(&s, Method::DELETE, "/api/orders/1", None, Some(&t[2])).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_acl_table_changes_decisions_at_runtime() {
    let (s, t) = app().await;
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, None).await,
        StatusCode::OK,
        "no rules: open"
    );
    let deny = json!({"model": "Item", "property": "*", "accessType": "*", "principalType": "ROLE", "principalId": "$everyone", "permission": "DENY"});
    let (st, row) = s.post("/api/ACLs", &deny).await;
    assert_eq!(st, StatusCode::OK, "{row}");
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, Some(&t[0])).await,
        StatusCode::UNAUTHORIZED
    );
    // A table rule with accessType EXECUTE never reaches READ methods (LoopBack 3).
    let allow_exec = json!({"model": "Item", "property": "*", "accessType": "EXECUTE", "principalType": "ROLE", "principalId": "$everyone", "permission": "ALLOW"});
    s.post("/api/ACLs", &allow_exec).await;
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    // An invalid row is skipped, never treated as ALLOW.
    let bogus = json!({"model": "Item", "property": "find", "accessType": "read", "principalType": "ROLE", "principalId": "$everyone", "permission": "ALLOW"});
    s.post("/api/ACLs", &bogus).await;
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, None).await,
        StatusCode::UNAUTHORIZED
    );
    s.delete("/api/ACLs/1").await;
    assert_eq!(
        call(&s, Method::GET, "/api/Items", None, None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn default_permission_and_error_status() {
    let (s, t) = app().await;
    let (st, body) = s.get("/api/Secrets").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(assert_error(&body, 401)["code"], "AUTHORIZATION_REQUIRED");
    assert_eq!(
        call(&s, Method::GET, "/api/Secrets", None, Some(&t[0])).await,
        StatusCode::UNAUTHORIZED
    );
    let (st, body) = s.request(Method::GET, "/api/Docs", None, Some(&t[0])).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let e = assert_error(&body, 403);
    assert_eq!(
        (e["message"].clone(), e["code"].clone()),
        (json!("Access Denied"), json!("ACCESS_DENIED"))
    );
    assert_eq!(
        call(&s, Method::GET, "/api/Docs", None, None).await,
        StatusCode::UNAUTHORIZED,
        "anonymous is always 401"
    );
}

#[tokio::test]
async fn enable_auth_false_opens_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = common::workspace_root().join("examples/wall");
    common::copy_dir(&root, dir.path());
    let config = dir.path().join("server/config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("config")).expect("json");
    cfg["enableAuth"] = json!(false);
    std::fs::write(&config, cfg.to_string()).expect("write");
    let s = TestServer::start_in(dir).await;
    let (st, body) = s.post("/api/posts", &json!({"text": "anonymous"})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn applications_identified_by_their_keys_carry_an_app_principal() {
    let (s, _) = app().await;
    let app = std::sync::Arc::new(portcullis_schema::load_app(s.dir.path()).expect("app"));
    let store = portcullis_store::Store::open(app.clone())
        .await
        .expect("store");
    let registered = portcullis_server::apps::register(&app, &store, "billing", Some("acme"), None)
        .await
        .expect("registered");
    let client_key = registered
        .keys
        .iter()
        .find(|(k, _)| *k == "clientKey")
        .map(|(_, v)| v.clone())
        .expect("key");
    let allow_app = json!({"model": "Secret", "property": "*", "accessType": "*", "principalType": "APP", "principalId": registered.id, "permission": "ALLOW"});
    assert_eq!(s.post("/api/ACLs", &allow_app).await.0, StatusCode::OK);
    let get = |key: String| {
        let id = registered.id.clone();
        let s = &s;
        async move {
            s.client
                .get(format!("{}/api/Secrets", s.base))
                .header("X-Application-Id", id)
                .header("X-Client-Key", key)
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    assert_eq!(get(client_key.clone()).await, StatusCode::OK);
    assert_eq!(get("wrong".into()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("/api/Secrets").await.0, StatusCode::UNAUTHORIZED);
    // Keys are stored hashed.
    let raw = std::fs::read(s.dir.path().join("acl.sqlite")).unwrap_or_default();
    let wal = std::fs::read(s.dir.path().join("acl.sqlite-wal")).unwrap_or_default();
    let hay = [raw, wal].concat();
    assert!(!hay
        .windows(client_key.len())
        .any(|w| w == client_key.as_bytes()));
}
