//! Every PersistedModel and relation route over the real HTTP server and a real SQLite
//! file, with LoopBack 3's status codes and bodies.

mod common;

use common::{assert_error, Body, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn library() -> TestServer {
    TestServer::start("crates/server/tests/fixtures/library").await
}

/// Three authors, five books.
async fn seeded() -> TestServer {
    let s = library().await;
    for name in ["Ann", "Bob", "Cy"] {
        let (st, _) = s
            .post("/api/Authors", &json!({"name": name, "secret": "s3cret"}))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let books = json!([
        {"title": "Alpha", "pages": 100, "price": 9.5, "authorId": 1, "published": "2020-01-01T00:00:00.000Z", "tags": ["a", "x"], "isbn": "1"},
        {"title": "beta", "pages": 200, "price": 20, "authorId": 1, "published": "2021-06-01T00:00:00.000Z", "tags": ["b"], "isbn": "2", "available": false},
        {"title": "Gamma", "pages": 300, "authorId": 2, "published": "2022-01-01T00:00:00.000Z", "isbn": "3"},
        {"title": "Delta", "pages": 400, "price": 5, "authorId": 2, "isbn": "4"},
        {"title": "epsilon", "pages": 50, "price": 1, "authorId": 3, "published": "2019-03-03T10:00:00.000Z", "isbn": "5"}
    ]);
    let (st, body) = s.post("/api/Books", &books).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(5));
    s
}

fn titles(body: &Value) -> Vec<String> {
    body.as_array()
        .unwrap_or_else(|| panic!("not an array: {body}"))
        .iter()
        .map(|b| b["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn create_returns_200_with_generated_id_defaults_and_no_hidden_fields() {
    let s = library().await;
    let (st, body) = s
        .post("/api/Authors", &json!({"name": "Ann", "secret": "x"}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, json!({"name": "Ann", "id": 1}));
    let (st, body) = s
        .post("/api/Books", &json!({"title": "T", "authorId": 1}))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["available"], json!(true), "default applied: {body}");
    assert_eq!(body["id"], json!(1));
}

#[tokio::test]
async fn find_with_where_order_limit_skip_fields_in_both_encodings() {
    let s = seeded().await;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "/api/Books",
            vec!["Alpha", "beta", "Gamma", "Delta", "epsilon"],
        ),
        (
            "/api/Books?filter[where][pages][gt]=150",
            vec!["beta", "Gamma", "Delta"],
        ),
        (
            r#"/api/Books?filter={"where":{"pages":{"gte":200}},"order":"pages DESC"}"#,
            vec!["Delta", "Gamma", "beta"],
        ),
        (
            "/api/Books?filter[where][pages][lt]=200&filter[order]=title%20ASC",
            vec!["Alpha", "epsilon"],
        ),
        (
            "/api/Books?filter[where][pages][lte]=100&filter[order]=pages",
            vec!["epsilon", "Alpha"],
        ),
        (
            "/api/Books?filter[where][pages][between][0]=100&filter[where][pages][between][1]=300",
            vec!["Alpha", "beta", "Gamma"],
        ),
        (
            "/api/Books?filter[where][pages][inq]=100&filter[where][pages][inq]=400",
            vec!["Alpha", "Delta"],
        ),
        (
            r#"/api/Books?filter={"where":{"pages":{"nin":[100,400]}}}"#,
            vec!["beta", "Gamma", "epsilon"],
        ),
        (
            "/api/Books?filter[where][pages][neq]=100",
            vec!["beta", "Gamma", "Delta", "epsilon"],
        ),
        (
            "/api/Books?filter[where][title][like]=%25ta",
            vec!["beta", "Delta"],
        ),
        (
            "/api/Books?filter[where][title][nlike]=%25ta",
            vec!["Alpha", "Gamma", "epsilon"],
        ),
        (
            "/api/Books?filter[where][title][ilike]=%25A",
            vec!["Alpha", "beta", "Gamma", "Delta"],
        ),
        (
            "/api/Books?filter[where][title][nilike]=%25a",
            vec!["epsilon"],
        ),
        (
            "/api/Books?filter[where][title][regexp]=^[A-D]",
            vec!["Alpha", "Delta"],
        ),
        (
            "/api/Books?filter[where][title][regexp]=/^g/i",
            vec!["Gamma"],
        ),
        (
            r#"/api/Books?filter={"where":{"or":[{"pages":50},{"title":"Gamma"}]}}"#,
            vec!["Gamma", "epsilon"],
        ),
        (
            "/api/Books?filter[where][and][0][pages][gt]=60&filter[where][and][1][pages][lt]=250",
            vec!["Alpha", "beta"],
        ),
        (
            r#"/api/Books?filter={"where":{"price":null}}"#,
            vec!["Gamma"],
        ),
        (
            r#"/api/Books?filter={"where":{"price":{"neq":null}}}"#,
            vec!["Alpha", "beta", "Delta", "epsilon"],
        ),
        ("/api/Books?filter[where][available]=false", vec!["beta"]),
        (
            "/api/Books?filter[where][published][gte]=2021-01-01T00:00:00.000Z",
            vec!["beta", "Gamma"],
        ),
        (
            "/api/Books?filter[order]=pages%20DESC&filter[limit]=2",
            vec!["Delta", "Gamma"],
        ),
        (
            "/api/Books?filter[order]=pages%20DESC&filter[limit]=2&filter[skip]=1",
            vec!["Gamma", "beta"],
        ),
        (
            "/api/Books?filter[order]=pages&filter[offset]=3",
            vec!["Gamma", "Delta"],
        ),
        (
            r#"/api/Books?filter={"order":["authorId DESC","pages ASC"]}"#,
            vec!["epsilon", "Gamma", "Delta", "Alpha", "beta"],
        ),
    ];
    for (url, expected) in cases {
        let (st, body) = s.get(url).await;
        assert_eq!(st, StatusCode::OK, "{url}: {body}");
        assert_eq!(titles(&body), expected, "{url}");
    }
}

#[tokio::test]
async fn fields_select_properties_like_loopback() {
    let s = seeded().await;
    let (_, body) = s
        .get("/api/Books?filter[fields][title]=true&filter[limit]=1")
        .await;
    assert_eq!(body, json!([{"title": "Alpha"}]));
    // From query strings every value is a non-empty string, so `false` still includes.
    let (_, body) = s
        .get("/api/Books?filter[fields][title]=false&filter[limit]=1")
        .await;
    assert_eq!(body, json!([{"title": "Alpha"}]));
    let (_, body) = s.get(r#"/api/Books?filter={"fields":{"tags":false,"published":false,"price":false,"available":false,"isbn":false},"limit":1}"#).await;
    assert_eq!(
        body,
        json!([{"title": "Alpha", "pages": 100, "id": 1, "authorId": 1}])
    );
    let (_, body) = s
        .get(r#"/api/Books?filter={"fields":["id","title"],"limit":1}"#)
        .await;
    assert_eq!(body, json!([{"title": "Alpha", "id": 1}]));
}

#[tokio::test]
async fn find_by_id_find_one_exists_and_count() {
    let s = seeded().await;
    let (st, body) = s.get("/api/Books/3").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["title"], "Gamma");
    assert_eq!(body["tags"], Value::Null, "unset properties are omitted");
    let (st, body) = s.get("/api/Books/99").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let e = assert_error(&body, 404);
    assert_eq!(e["message"], "Unknown \"Book\" id \"99\".");
    assert_eq!(e["code"], "MODEL_NOT_FOUND");
    // An id of the wrong type finds nothing.
    let (st, body) = s.get("/api/Books/abc").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&body, 404);

    let (st, body) = s
        .get("/api/Books/findOne?filter[where][pages][gt]=250")
        .await;
    assert_eq!(
        (st, body["title"].clone()),
        (StatusCode::OK, json!("Gamma"))
    );
    let (st, body) = s
        .get("/api/Books/findOne?filter[where][pages][gt]=2500")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "Unknown \"Book\" id \"undefined\"."
    );

    assert_eq!(
        s.get("/api/Books/2/exists").await.1,
        json!({"exists": true})
    );
    assert_eq!(
        s.get("/api/Books/22/exists").await.1,
        json!({"exists": false})
    );
    assert_eq!(s.head("/api/Books/2").await, StatusCode::OK);
    assert_eq!(s.head("/api/Books/22").await, StatusCode::NOT_FOUND);

    assert_eq!(s.get("/api/Books/count").await.1, json!({"count": 5}));
    assert_eq!(
        s.get("/api/Books/count?where[pages][gt]=150").await.1,
        json!({"count": 3})
    );
    assert_eq!(
        s.get(r#"/api/Books/count?where={"authorId":2}"#).await.1,
        json!({"count": 2})
    );
}

#[tokio::test]
async fn updates_replace_upsert_and_delete() {
    let s = seeded().await;
    let (st, body) = s.patch("/api/Books/1", &json!({"pages": 111})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["pages"].clone(), body["title"].clone()),
        (json!(111), json!("Alpha"))
    );

    // PUT /:id replaces: properties left out are gone.
    let (st, body) = s
        .put("/api/Books/1", &json!({"title": "Alpha 2", "isbn": "1"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Alpha 2");
    assert_eq!(body.get("pages"), None, "{body}");
    let (st, body) = s.put("/api/Books/77", &json!({"title": "x"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "Could not replace. Object with id 77 does not exist!"
    );
    let (st, body) = s
        .request(
            Method::POST,
            "/api/Books/2/replace",
            Some(Body::Json(&json!({"title": "B2", "isbn": "2"}))),
            None,
        )
        .await;
    assert_eq!((st, body["title"].clone()), (StatusCode::OK, json!("B2")));

    let (st, body) = s.patch("/api/Books/99", &json!({"pages": 1})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let e = assert_error(&body, 404);
    assert_eq!(
        (e["message"].clone(), e["code"].clone()),
        (
            json!("could not find a model with id 99"),
            json!("MODEL_NOT_FOUND")
        )
    );

    // forceId: changing the id is refused.
    let (st, body) = s.patch("/api/Books/3", &json!({"id": 77})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        assert_error(&body, 400)["message"],
        "id cannot be updated from 3 to 77 when forceId is set to true"
    );

    // Upserts.
    let (st, body) = s.patch("/api/Books", &json!({"id": 3, "pages": 333})).await;
    assert_eq!(
        (st, body["pages"].clone(), body["title"].clone()),
        (StatusCode::OK, json!(333), json!("Gamma"))
    );
    let (st, body) = s
        .patch("/api/Books", &json!({"title": "New", "isbn": "9"}))
        .await;
    assert_eq!((st, body["id"].clone()), (StatusCode::OK, json!(6)));
    let (st, body) = s
        .put(
            "/api/Books",
            &json!({"id": 3, "title": "Gamma R", "isbn": "3"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body.get("pages"), None, "replaceOrCreate replaces: {body}");
    let (st, body) = s
        .post(
            "/api/Books/replaceOrCreate",
            &json!({"title": "Via POST", "isbn": "10"}),
        )
        .await;
    assert_eq!((st, body["id"].clone()), (StatusCode::OK, json!(7)));

    let (st, body) = s
        .post(
            "/api/Books/upsertWithWhere?where[isbn]=4",
            &json!({"pages": 444}),
        )
        .await;
    assert_eq!(
        (st, body["title"].clone(), body["pages"].clone()),
        (StatusCode::OK, json!("Delta"), json!(444))
    );
    let (st, body) = s
        .post(
            "/api/Books/upsertWithWhere?where[isbn]=404",
            &json!({"title": "Made", "isbn": "404"}),
        )
        .await;
    assert_eq!((st, body["title"].clone()), (StatusCode::OK, json!("Made")));
    let (st, body) = s
        .post(
            "/api/Books/upsertWithWhere?where[pages][gt]=0",
            &json!({"pages": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "several matches: {body}");

    // Books 4 and 5 still have pages; the replaced ones lost theirs.
    let (st, body) = s
        .post(
            "/api/Books/update?where[pages][gt]=10",
            &json!({"price": 42}),
        )
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({"count": 2})));
    assert_eq!(
        s.get("/api/Books/count?where[price]=42").await.1,
        json!({"count": 2})
    );
    let (st, body) = s.post("/api/Books/update", &json!({"price": 1})).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "updateAll needs a where: {body}"
    );

    assert_eq!(
        s.delete("/api/Books/5").await,
        (StatusCode::OK, json!({"count": 1}))
    );
    assert_eq!(
        s.delete("/api/Books/5").await,
        (StatusCode::OK, json!({"count": 0}))
    );
    // deleteAll is not exposed.
    let (st, body) = s.delete("/api/Books").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&body, 404);
}

#[tokio::test]
async fn create_refuses_client_ids_for_generated_keys() {
    let s = library().await;
    let (st, body) = s.post("/api/Authors", &json!({"id": 5, "name": "x"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let e = assert_error(&body, 422);
    assert_eq!(e["name"], "ValidationError");
    assert_eq!(e["details"]["codes"], json!({"id": ["absence"]}));
}

#[tokio::test]
async fn relation_routes_has_many_belongs_to_has_one() {
    let s = seeded().await;
    let (st, body) = s.get("/api/Authors/1/books").await;
    assert_eq!(
        (st, titles(&body)),
        (
            StatusCode::OK,
            vec!["Alpha".to_string(), "beta".to_string()]
        )
    );
    let (_, body) = s
        .get("/api/Authors/1/books?filter[where][pages][gt]=150")
        .await;
    assert_eq!(titles(&body), vec!["beta"]);
    assert_eq!(
        s.get("/api/Authors/2/books/count").await.1,
        json!({"count": 2})
    );
    assert_eq!(
        s.get("/api/Authors/2/books/count?where[pages][gt]=350")
            .await
            .1,
        json!({"count": 1})
    );
    let (st, body) = s.get("/api/Authors/2/books/3").await;
    assert_eq!(
        (st, body["title"].clone()),
        (StatusCode::OK, json!("Gamma"))
    );
    let (st, body) = s.get("/api/Authors/2/books/1").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "book 1 is not Bob's");
    assert_eq!(
        assert_error(&body, 404)["message"],
        "No instance with id 1 found for Book"
    );
    let (st, body) = s.get("/api/Authors/99/books").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "could not find a model with id 99"
    );

    let (st, body) = s
        .post(
            "/api/Authors/3/books",
            &json!({"title": "Zeta", "authorId": 1, "isbn": "z"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body["authorId"],
        json!(3),
        "the relation key comes from the parent"
    );
    let zeta = body["id"].clone();
    let (st, body) = s
        .put(
            &format!("/api/Authors/3/books/{zeta}"),
            &json!({"pages": 9, "authorId": 1}),
        )
        .await;
    assert_eq!(
        (st, body["pages"].clone(), body["authorId"].clone()),
        (StatusCode::OK, json!(9), json!(3))
    );
    let (st, _) = s.delete(&format!("/api/Authors/3/books/{zeta}")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.delete("/api/Authors/3/books").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/Authors/3/books/count").await.1,
        json!({"count": 0})
    );

    let (st, body) = s.get("/api/Books/3/author").await;
    assert_eq!(
        (st, body.clone()),
        (StatusCode::OK, json!({"name": "Bob", "id": 2}))
    );

    let (st, body) = s.get("/api/Authors/1/profile").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "No \"Profile\" instance(s) found"
    );
    let (st, body) = s
        .post("/api/Authors/1/profile", &json!({"bio": "hi"}))
        .await;
    assert_eq!((st, body["authorId"].clone()), (StatusCode::OK, json!(1)));
    let (st, body) = s
        .put("/api/Authors/1/profile", &json!({"bio": "hello"}))
        .await;
    assert_eq!((st, body["bio"].clone()), (StatusCode::OK, json!("hello")));
    assert_eq!(s.get("/api/Authors/1/profile").await.1["bio"], "hello");
    assert_eq!(
        s.delete("/api/Authors/1/profile").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get("/api/Authors/1/profile").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn through_relations_link_unlink_exists_and_include() {
    let s = seeded().await;
    for name in ["R1", "R2"] {
        assert_eq!(
            s.post("/api/Readers", &json!({"name": name})).await.0,
            StatusCode::OK
        );
    }
    let (st, body) = s.put("/api/Books/1/readers/rel/1", &json!({})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        (body["bookId"].clone(), body["readerId"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(s.head("/api/Books/1/readers/rel/1").await, StatusCode::OK);
    assert_eq!(
        s.head("/api/Books/1/readers/rel/2").await,
        StatusCode::NOT_FOUND
    );
    let (st, body) = s.post("/api/Books/1/readers", &json!({"name": "R3"})).await;
    assert_eq!((st, body["id"].clone()), (StatusCode::OK, json!(3)));
    let (_, body) = s.get("/api/Books/1/readers").await;
    let names: Vec<&str> = body
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["R1", "R3"]);
    assert_eq!(
        s.get("/api/Books/1/readers/count").await.1,
        json!({"count": 2})
    );
    let (_, body) = s.get("/api/Books/1?filter[include]=readers").await;
    assert_eq!(body["readers"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(
        s.delete("/api/Books/1/readers/rel/1").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.head("/api/Books/1/readers/rel/1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/Books/1/readers/count").await.1,
        json!({"count": 1})
    );
}

#[tokio::test]
async fn include_shapes() {
    let s = seeded().await;
    let (st, body) = s
        .get("/api/Books?filter[include]=author&filter[where][authorId]=2&filter[order]=id")
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        body[0]["author"],
        json!({"name": "Bob", "id": 2}),
        "hidden `secret` removed inside include"
    );
    let (_, body) = s.get(r#"/api/Authors?filter={"include":{"relation":"books","scope":{"order":"pages DESC","limit":1,"fields":["title","authorId"]}}}"#).await;
    let per_author: Vec<Value> = body
        .as_array()
        .map(|a| a.iter().map(|x| x["books"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        per_author,
        vec![
            json!([{"title": "beta", "authorId": 1}]),
            json!([{"title": "Delta", "authorId": 2}]),
            json!([{"title": "epsilon", "authorId": 3}])
        ]
    );
    let (_, body) = s
        .get(r#"/api/Authors/1?filter={"include":{"books":"author"}}"#)
        .await;
    assert_eq!(body["books"][0]["author"]["name"], "Ann", "{body}");
    // The seed client's exact request shape.
    let (st, body) = s.get("/api/Books/?filter[include][author]&filter[where][published][gte]=2000-01-01T05%3A00%3A00.000Z&filter[order]=published%20desc").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(titles(&body), vec!["Gamma", "beta", "Alpha", "epsilon"]);
    assert_eq!(body[0]["author"]["name"], "Bob");
}

#[tokio::test]
async fn form_encoded_bodies_are_coerced_by_property_type() {
    let s = library().await;
    s.post("/api/Authors", &json!({"name": "Ann"})).await;
    let (st, body) = s
        .request(Method::POST, "/api/Books", Some(Body::Form("title=Form+book&pages=12&available=false&authorId=1&tags[]=a&tags[]=b&published=2020-02-02")), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["pages"], json!(12));
    assert_eq!(body["available"], json!(false));
    assert_eq!(body["tags"], json!(["a", "b"]));
    assert_eq!(body["published"], json!("2020-02-02T00:00:00.000Z"));
}

#[tokio::test]
async fn loose_models_keep_unknown_properties_and_query_them() {
    let s = library().await;
    let (st, body) = s
        .post(
            "/api/Notes",
            &json!({"text": "t", "status": "active", "n": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        body,
        json!({"text": "t", "id": 1, "status": "active", "n": 3})
    );
    s.post("/api/Notes", &json!({"text": "u", "status": "off"}))
        .await;
    let (_, body) = s.get("/api/Notes?filter[where][status]=active").await;
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_models_get_envelopes() {
    let s = library().await;
    let (st, body) = s.get("/api/Nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "There is no method to handle GET /Nope"
    );
    let (st, body) = s.post("/api/Books/foobar", &json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        assert_error(&body, 404)["message"],
        "Shared class \"Book\" has no method handling POST /foobar"
    );
    let (st, body) = s.get("/not-api").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&body, 404);
}

#[tokio::test]
async fn books_are_readable_case_insensitively_like_express() {
    let s = seeded().await;
    assert_eq!(s.get("/api/books/count").await.1, json!({"count": 5}));
}

/// Echoes a custom method's arguments and instance id.
fn echo(
    call: portcullis_server::remote::RemoteCall,
) -> portcullis_server::access::BoxFuture<'static, Result<Value, portcullis_server::ApiError>> {
    Box::pin(async move {
        let mut out = call.args.clone();
        out.insert("instance".into(), json!(call.instance_id));
        Ok(Value::Object(out))
    })
}

#[tokio::test]
async fn custom_methods_take_named_path_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(
        &common::workspace_root().join("crates/server/tests/fixtures/library"),
        dir.path(),
    );
    let file = dir.path().join("common/models/book.json");
    let mut book: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    book["methods"] = json!({
        "prototype.chapter": {
            "accepts": [
                {"arg": "n", "type": "number", "required": true, "http": {"source": "path"}},
                {"arg": "style", "type": "string"}
            ],
            "returns": {"arg": "chapter", "type": "object", "root": true},
            "http": {"verb": "get", "path": "/chapters/:n"}
        },
        "compare": {
            "accepts": [{"arg": "a", "type": "number"}, {"arg": "b", "type": "number"}],
            "returns": {"arg": "result", "type": "object", "root": true},
            "http": {"verb": "get", "path": "/compare/:a/with/:b"}
        }
    });
    std::fs::write(&file, book.to_string()).expect("write");
    let s = TestServer::start_in_with(dir, |b| {
        b.remote_method("Book", "chapter", echo)
            .remote_method("Book", "compare", echo)
    })
    .await;
    let (st, created) = s.post("/api/Books", &json!({"title": "Dune"})).await;
    assert_eq!(st, StatusCode::OK, "{created}");

    let (st, body) = s.get("/api/Books/1/chapters/3?style=plain").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"n": 3, "style": "plain", "instance": "1"}));
    let (st, body) = s.get("/api/Books/compare/2/with/5").await;
    assert_eq!(
        (st, body),
        (StatusCode::OK, json!({"a": 2, "b": 5, "instance": null}))
    );
    // Path values are coerced like any argument.
    let (st, body) = s.get("/api/Books/1/chapters/three").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, 400);

    // The document lists them as path parameters, not as body fields.
    let (_, doc) = s.get("/explorer/openapi.json").await;
    let op = &doc["paths"]["/Books/compare/{a}/with/{b}"]["get"];
    let names: Vec<&str> = op["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "path")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "{op}");
    assert_eq!(op["parameters"][0]["schema"], json!({"type": "number"}));
    assert!(op.get("requestBody").is_none(), "{op}");
    assert!(doc["paths"]["/Books/{id}/chapters/{n}"]["get"].is_object());
}
