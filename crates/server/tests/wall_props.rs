//! Property test over HTTP: whatever a client sends for `created`, `ownerId` and `id` on
//! the wall, on create or on update, none of it sticks.

mod common;

use common::{Body, TestServer};
use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn arbitrary_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        (-1.0e9f64..1.0e9).prop_map(|f| json!(f)),
        "[a-zA-Z0-9:._ -]{0,24}".prop_map(Value::String),
        Just(json!("1999-01-01T00:00:00.000Z")),
        Just(json!(2)),
        Just(json!("2")),
        Just(json!({"gt": 0})),
        Just(json!([1, 2])),
    ]
}

/// A client body: text plus any subset of the protected fields with arbitrary values.
fn body() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(arbitrary_value()),
        proptest::option::of(arbitrary_value()),
        proptest::option::of(arbitrary_value()),
    )
        .prop_map(|(created, owner, id)| {
            let mut b = json!({"text": "hello"});
            if let Some(v) = created {
                b["created"] = v;
            }
            if let Some(v) = owner {
                b["ownerId"] = v;
            }
            if let Some(v) = id {
                b["id"] = v;
            }
            b
        })
}

#[test]
fn client_supplied_created_owner_and_id_never_stick() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (s, token, post_id, before) = rt.block_on(async {
        let s = TestServer::start("examples/wall").await;
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
        let token = t["id"].as_str().expect("token").to_string();
        let (_, post) = s
            .request(
                Method::POST,
                "/api/posts",
                Some(Body::Json(&json!({"text": "first"}))),
                Some(&token),
            )
            .await;
        let id = post["id"].as_i64().expect("id");
        (s, token, id, post)
    });
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(create in body(), update in body())| {
        rt.block_on(async {
            let started = chrono::Utc::now().timestamp_millis();
            let (st, created) = s.request(Method::POST, "/api/posts", Some(Body::Json(&create)), Some(&token)).await;
            if st == StatusCode::OK {
                prop_assert_eq!(&created["ownerId"], &json!(1));
                let at = created["created"].as_str().and_then(portcullis_query::parse_date).unwrap_or(0);
                prop_assert!(at >= started - 1000, "created is the server's time: {}", created);
                if let Some(client_id) = create.get("id").filter(|v| !v.is_null()) {
                    prop_assert_ne!(&created["id"], client_id);
                }
            } else {
                // Refused (a client id for a generated key): nothing was stored.
                prop_assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{}", created);
            }
            let (st, updated) = s
                .request(Method::PATCH, &format!("/api/posts/{post_id}"), Some(Body::Json(&update)), Some(&token))
                .await;
            prop_assert!(st == StatusCode::OK || st.is_client_error(), "{} {}", st, updated);
            let (_, now) = s.get(&format!("/api/posts/{post_id}")).await;
            prop_assert_eq!(&now["id"], &before["id"]);
            prop_assert_eq!(&now["ownerId"], &before["ownerId"]);
            prop_assert_eq!(&now["created"], &before["created"]);
            Ok(())
        })?;
    });
}
