//! Hostile and malformed input: every case gets a 4xx in LoopBack's envelope, never a
//! 500, and never a partial write.

mod common;

use common::{assert_error, Body, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn library() -> TestServer {
    let s = TestServer::start("crates/server/tests/fixtures/library").await;
    s.post(
        "/api/Authors",
        &json!({"name": "Ann", "secret": "hidden-value"}),
    )
    .await;
    s.post(
        "/api/Books",
        &json!({"title": "Alpha", "pages": 1, "authorId": 1, "isbn": "1"}),
    )
    .await;
    s
}

async fn book_count(s: &TestServer) -> serde_json::Value {
    s.get("/api/Books/count").await.1["count"].clone()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let s = library().await;
    let (st, body) = s
        .request(
            Method::POST,
            "/api/Books",
            Some(Body::Raw("application/json", "{\"title\": ")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(assert_error(&body, 400)["name"], "SyntaxError");
}

#[tokio::test]
async fn bodies_that_are_not_objects_are_400() {
    let s = library().await;
    for raw in ["5", "\"text\"", "true", "null"] {
        let (st, body) = s
            .request(
                Method::POST,
                "/api/Books",
                Some(Body::Raw("application/json", raw)),
                None,
            )
            .await;
        assert!(st == StatusCode::BAD_REQUEST, "{raw}: {st} {body}");
        assert_error(&body, 400);
    }
    let (st, body) = s
        .request(
            Method::PATCH,
            "/api/Books/1",
            Some(Body::Raw("application/json", "[1,2]")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn wrong_types_are_422_and_nothing_is_written() {
    let s = library().await;
    let cases = [
        json!({"title": "x", "pages": "many"}),
        json!({"title": "x", "available": "perhaps"}),
        json!({"title": "x", "published": "not a date"}),
        json!({"title": {"nested": true}}),
        json!({"title": "x", "tags": "not-an-array"}),
        json!({"title": "x", "tags": [{"o": 1}]}),
        json!({"pages": 3}),
        json!({"title": ""}),
    ];
    for data in cases {
        let (st, body) = s.post("/api/Books", &data).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{data}: {body}");
        assert_eq!(assert_error(&body, 422)["name"], "ValidationError");
    }
    let (st, body) = s.patch("/api/Books/1", &json!({"pages": "lots"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(book_count(&s).await, json!(1));
    assert_eq!(s.get("/api/Books/1").await.1["pages"], json!(1));
}

#[tokio::test]
async fn unknown_properties_on_a_strict_model_are_422() {
    let s = library().await;
    let (st, body) = s
        .post("/api/Books", &json!({"title": "x", "bogus": 1}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        assert_error(&body, 422)["details"]["codes"],
        json!({"bogus": ["unknown-property"]})
    );
}

#[tokio::test]
async fn an_array_create_is_all_or_nothing() {
    let s = library().await;
    let (st, _) = s
        .post(
            "/api/Books",
            &json!([{"title": "ok", "isbn": "a"}, {"pages": 2}]),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // A unique violation in the middle of a batch leaves nothing behind.
    let (st, body) = s
        .post(
            "/api/Books",
            &json!([{"title": "ok", "isbn": "b"}, {"title": "dup", "isbn": "1"}]),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        assert_error(&body, 422)["details"]["codes"],
        json!({"isbn": ["uniqueness"]})
    );
    assert_eq!(book_count(&s).await, json!(1));
}

#[tokio::test]
async fn hostile_filters_are_400() {
    let s = library().await;
    let cases = [
        "/api/Books?filter[where][pages][foo]=1",
        "/api/Books?filter[where][nope]=1",
        "/api/Books?filter[where][pages][$gt]=1",
        "/api/Books?filter={bad json}",
        "/api/Books?filter=5",
        "/api/Books?filter[limit]=-1",
        "/api/Books?filter[limit]=abc",
        "/api/Books?filter[skip]=-5",
        "/api/Books?filter[limit]=99999999999999",
        "/api/Books?filter[order]=pages%20DOWN",
        "/api/Books?filter[order]=nope",
        "/api/Books?filter[include]=nope",
        "/api/Books?filter[where][title][regexp]=(unclosed",
        "/api/Books?filter[where][published]=not-a-date",
        "/api/Books?filter[where][pages][between][0]=1",
        "/api/Books?filter[where][pages][inq]=1",
        "/api/Books/count?where[nope]=1",
        "/api/Authors?filter[where][secret]=hidden-value",
    ];
    for url in cases {
        let (st, body) = s.get(url).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_error(&body, 400);
    }
    let (st, body) = s.get("/api/Books?filter[where][pages][$gt]=1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "OPERATOR_NOT_ALLOWED_IN_QUERY");
}

#[tokio::test]
async fn deep_filters_and_bodies_are_refused() {
    let s = library().await;
    let mut deep = json!({"title": "x"});
    for _ in 0..20 {
        deep = json!({"or": [deep]});
    }
    let url = format!(
        "/api/Books?filter={}",
        urlencode(&json!({"where": deep}).to_string())
    );
    let (st, body) = s.get(&url).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "QUERY_OBJECT_TOO_DEEP");

    let mut deep_body = json!(1);
    for _ in 0..100 {
        deep_body = json!({"a": deep_body});
    }
    let (st, body) = s
        .request(
            Method::POST,
            "/api/Notes",
            Some(Body::Json(&deep_body)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, 400);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = library().await;
    let big = "x".repeat(4096);
    let (st, body) = s.post("/api/Books", &json!({"title": big})).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, 413);
    assert_eq!(book_count(&s).await, json!(1));
}

#[tokio::test]
async fn sql_looking_input_is_inert() {
    let s = library().await;
    let evil = "x'); DROP TABLE \"Book\"; --";
    let (st, body) = s
        .post("/api/Books", &json!({"title": evil, "isbn": "e"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["title"], evil);
    let (st, body) = s
        .get(&format!(
            "/api/Books?filter[where][title]={}",
            urlencode(evil)
        ))
        .await;
    assert_eq!(
        (st, body.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (st, body) = s
        .get(&format!(
            "/api/Books?filter[where][{}]=1",
            urlencode("title\" OR 1=1 --")
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let (st, body) = s
        .get(&format!(
            "/api/Books?filter[order]={}",
            urlencode("title; DROP TABLE Book")
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(book_count(&s).await, json!(2));
}

#[tokio::test]
async fn hidden_properties_never_leave_the_server() {
    let s = library().await;
    let (_, body) = s.get("/api/Authors/1").await;
    assert_eq!(body, json!({"name": "Ann", "id": 1}));
    let (_, body) = s.get("/api/Books/1?filter[include]=author").await;
    assert_eq!(body["author"], json!({"name": "Ann", "id": 1}));
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
