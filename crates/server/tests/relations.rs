//! Relation routes apply the target model's rules as its own routes do: operation hooks
//! (`access`, `loaded`, `before`/`after save`, `before`/`after delete`) and, for a User-based
//! target, the user rules (hashed passwords, sessions ended by a password change or a
//! deletion).

mod common;

use common::{Body, TestServer};
use portcullis_query::{Op, Scalar, Where};
use portcullis_schema::PropType;
use portcullis_server::access::BoxFuture;
use portcullis_server::hooks::{Operation, OperationContext};
use portcullis_server::ApiError;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

type HookResult = BoxFuture<'static, Result<OperationContext, ApiError>>;

fn hide_out_of_print(mut ctx: OperationContext) -> HookResult {
    Box::pin(async move {
        let in_print = Where::declared("available", PropType::Boolean, Op::Eq(Scalar::Bool(true)));
        ctx.where_ = Some(match ctx.where_.take() {
            Some(w) => w.and(in_print),
            None => in_print,
        });
        Ok(ctx)
    })
}

fn title_case(mut ctx: OperationContext) -> HookResult {
    Box::pin(async move {
        if let Some(Value::String(t)) = ctx.data.as_mut().and_then(|d| d.get_mut("title")) {
            *t = format!("{}!", t.trim());
        }
        Ok(ctx)
    })
}

fn mark_loaded(mut ctx: OperationContext) -> HookResult {
    Box::pin(async move {
        if let Some(d) = ctx.data.as_mut() {
            d.insert("pages".into(), json!(-1));
        }
        Ok(ctx)
    })
}

fn keep_books(ctx: OperationContext) -> HookResult {
    Box::pin(async move {
        if ctx.model == "Book" {
            Err(ApiError::new(409, "books are kept"))
        } else {
            Ok(ctx)
        }
    })
}

#[tokio::test]
async fn relation_routes_run_the_targets_operation_hooks() {
    let s = TestServer::start_with("crates/server/tests/fixtures/library", |b| {
        b.observe("Book", Operation::Access, hide_out_of_print)
            .observe("Book", Operation::BeforeSave, title_case)
            .observe("Book", Operation::Loaded, mark_loaded)
            .observe("*", Operation::BeforeDelete, keep_books)
    })
    .await;
    let (st, author) = s.post("/api/Authors", &json!({"name": "Ann"})).await;
    assert_eq!(st, StatusCode::OK, "{author}");
    let books = format!("/api/Authors/{}/books", author["id"]);

    // before save runs on a create through the relation.
    let (st, book) = s
        .post(&books, &json!({"title": " Dune ", "pages": 10}))
        .await;
    assert_eq!(st, StatusCode::OK, "{book}");
    assert_eq!(book["title"], "Dune!");
    let (_, hidden) = s
        .post(&books, &json!({"title": "Gone", "available": false}))
        .await;

    // access narrows lists, counts and lookups; loaded shapes what is read.
    let (_, list) = s.get(&books).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["pages"], json!(-1), "{list}");
    assert_eq!(
        s.get(&format!("{books}/count")).await.1,
        json!({"count": 1})
    );
    let (st, _) = s.get(&format!("{books}/{}", hidden["id"])).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a hidden row is not found");
    let (st, found) = s.get(&format!("{books}/{}", book["id"])).await;
    assert_eq!((st, found["pages"].clone()), (StatusCode::OK, json!(-1)));

    // before save runs on an update through the relation.
    let (st, updated) = s
        .put(
            &format!("{books}/{}", book["id"]),
            &json!({"title": "Emma"}),
        )
        .await;
    assert_eq!(
        (st, updated["title"].clone()),
        (StatusCode::OK, json!("Emma!"))
    );

    // before delete can refuse, for one row and for all of them.
    let (st, body) = s.delete(&format!("{books}/{}", book["id"])).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let (st, body) = s.delete(&books).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let (_, all) = s.get("/api/Books/count").await;
    assert_eq!(all, json!({"count": 1}), "nothing was deleted");
}

/// A team whose members (a User-based model) are created, changed and removed through the
/// team's `members` relation.
fn teams() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for sub in ["server", "common/models"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    let write = |path: &str, v: Value| {
        std::fs::write(root.join(path), v.to_string()).expect("write");
    };
    write("server/config.json", json!({"restApiRoot": "/api"}));
    write(
        "server/datasources.json",
        json!({"db": {"name": "db", "connector": "sqlite", "file": "teams.sqlite"}}),
    );
    write(
        "server/model-config.json",
        json!({
            "_meta": {"sources": ["loopback/common/models", "../common/models"]},
            "AccessToken": {"dataSource": "db", "public": false},
            "ACL": {"dataSource": "db", "public": false},
            "Role": {"dataSource": "db", "public": false},
            "RoleMapping": {"dataSource": "db", "public": false},
            "Team": {"dataSource": "db", "public": true},
            "Member": {"dataSource": "db", "public": true}
        }),
    );
    write(
        "common/models/team.json",
        json!({"name": "Team", "base": "PersistedModel",
            "properties": {"name": "string"},
            "relations": {"members": {"type": "hasMany", "model": "Member", "foreignKey": "teamId"}}}),
    );
    write(
        "common/models/member.json",
        json!({"name": "Member", "base": "User", "properties": {}}),
    );
    dir
}

async fn login(s: &TestServer, email: &str, password: &str) -> (StatusCode, Value) {
    s.post(
        "/api/Members/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

#[tokio::test]
async fn user_targets_of_a_relation_keep_the_user_rules() {
    let s = TestServer::start_in(teams()).await;
    let (st, team) = s.post("/api/Teams", &json!({"name": "red"})).await;
    assert_eq!(st, StatusCode::OK, "{team}");
    let members = format!("/api/Teams/{}/members", team["id"]);

    // A create through the relation checks and hashes the password.
    let (st, body) = s
        .post(&members, &json!({"email": "m@x.test", "password": ""}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, member) = s
        .post(
            &members,
            &json!({"email": "m@x.test", "password": "first-pw"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{member}");
    assert!(member.get("password").is_none(), "{member}");
    let (st, dup) = s
        .post(&members, &json!({"email": "m@x.test", "password": "x"}))
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "emails stay unique: {dup}"
    );
    let stored = match &s.pg {
        Some(pg) => pg.dump_text().await,
        None => {
            let file = s.dir.path().join("teams.sqlite");
            let mut bytes = std::fs::read(&file).unwrap_or_default();
            bytes.extend(std::fs::read(file.with_extension("sqlite-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    assert!(stored.contains("m@x.test"), "the dump reads the member row");
    assert!(
        !stored.contains("first-pw"),
        "the password is stored hashed"
    );
    let (st, first) = login(&s, "m@x.test", "first-pw").await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let first = first["id"].as_str().expect("token").to_string();
    let me = format!("/api/Members/{}", member["id"]);
    let (st, _) = s.request(Method::GET, &me, None, Some(&first)).await;
    assert_eq!(st, StatusCode::OK);

    // A password change through the relation is hashed and ends the member's sessions.
    let one = format!("{members}/{}", member["id"]);
    let (st, body) = s
        .request(
            Method::PUT,
            &one,
            Some(Body::Json(&json!({"password": "second-pw"}))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _) = s.request(Method::GET, &me, None, Some(&first)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the old session ended");
    assert_eq!(
        login(&s, "m@x.test", "first-pw").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, second) = login(&s, "m@x.test", "second-pw").await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let second = second["id"].as_str().expect("token").to_string();

    // Deleting the member through the relation ends their sessions too.
    let (st, body) = s.delete(&one).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) = s
        .request(Method::POST, "/api/Members/logout", None, Some(&second))
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a deleted member's token is dead: {body}"
    );
}
