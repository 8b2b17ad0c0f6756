#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use portcullis_query::{Filter, Op, Scalar, Where};
use portcullis_store::StoreError;
use serde_json::json;

async fn seed_authors(app: &portcullis_schema::App, store: &portcullis_store::Store) {
    let author = mid(app, "Author");
    store
        .create(
            author,
            vec![
                rec(json!({"name": "Ann", "email": "ann@x.io", "age": 30, "active": true, "born": "1990-01-02T03:04:05.678Z"})),
                rec(json!({"name": "bob", "email": "bob@x.io", "age": 25, "active": false})),
                rec(json!({"name": "Cy", "age": 40.5})),
                rec(json!({"name": "Dee", "email": "dee@x.io"})),
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn create_returns_stored_rows_in_model_order() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        let rows = store
            .create(
                author,
                vec![rec(json!({
                    "meta": {"k": [1, 2]}, "name": "Ann", "age": 3.0, "active": true,
                    "born": "2016-11-08T23:20:10Z", "tags": ["a", "b"]
                }))],
            )
            .await
            .unwrap();
        let r = &rows[0];
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["name", "age", "active", "born", "tags", "meta", "id"]
        );
        assert_eq!(r["id"], json!(1));
        assert_eq!(r["age"], json!(3));
        assert!(r["age"].is_i64());
        assert_eq!(r["active"], json!(true));
        assert_eq!(r["born"], json!("2016-11-08T23:20:10.000Z"));
        assert_eq!(r["tags"], json!(["a", "b"]));
        assert_eq!(r["meta"], json!({"k": [1, 2]}));
        assert!(!r.contains_key("email"), "NULL values are omitted");

        let frac = store
            .create(author, vec![rec(json!({"name": "F", "age": 2.5}))])
            .await
            .unwrap();
        assert_eq!(frac[0]["age"], json!(2.5));
        assert_eq!(frac[0]["id"], json!(2));
    })
    .await;
}

#[tokio::test]
async fn defaults_uuid_and_now() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let widget = mid(&app, "Widget");
        let rows = store
            .create(widget, vec![rec(json!({"label": "w"}))])
            .await
            .unwrap();
        let r = &rows[0];
        let id = r["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(r["status"], json!("new"));
        let created = r["created"].as_str().unwrap();
        assert_eq!(created.len(), 24);
        assert!(created.ends_with('Z'));
        // Given values win over defaults.
        let rows = store
            .create(
                widget,
                vec![rec(
                    json!({"id": "mine", "status": "old", "created": "2000-01-01T00:00:00.000Z"}),
                )],
            )
            .await
            .unwrap();
        assert_eq!(rows[0]["id"], json!("mine"));
        assert_eq!(rows[0]["status"], json!("old"));
        assert_eq!(rows[0]["created"], json!("2000-01-01T00:00:00.000Z"));
        assert!(store.exists(widget, &s("mine")).await.unwrap());
        assert!(!store.exists(widget, &s("nope")).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn crud_methods() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        seed_authors(&app, &store).await;
        assert_eq!(store.count(author, None).await.unwrap(), 4);

        let one = store
            .find_by_id(author, &Scalar::Int(2), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one["name"], json!("bob"));
        assert!(store
            .find_by_id(author, &Scalar::Int(99), None)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .find_by_id(author, &s("abc"), None)
            .await
            .unwrap()
            .is_none());
        // find_by_id with a filter that excludes the row
        let f = filter_where(cond(&app, "Author", "name", Op::Eq(s("nobody"))));
        assert!(store
            .find_by_id(author, &Scalar::Int(2), Some(&f))
            .await
            .unwrap()
            .is_none());

        let first = store
            .find_one(
                author,
                &Filter {
                    order: vec![order(&app, "Author", "age", true)],
                    ..Filter::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first["name"], json!("Cy"));
        assert!(store.exists(author, &Scalar::Int(1)).await.unwrap());
        assert!(!store.exists(author, &Scalar::Int(9)).await.unwrap());

        // patch
        let p = store
            .update_by_id(
                author,
                &Scalar::Int(1),
                rec(json!({"age": 31, "email": null})),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p["age"], json!(31));
        assert_eq!(p["name"], json!("Ann"));
        assert!(!p.contains_key("email"));
        assert!(store
            .update_by_id(author, &Scalar::Int(77), rec(json!({"age": 1})))
            .await
            .unwrap()
            .is_none());

        // replace
        let r = store
            .replace_by_id(author, &Scalar::Int(2), rec(json!({"name": "Bobby"})))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, rec(json!({"name": "Bobby", "id": 2})));
        assert!(store
            .replace_by_id(author, &Scalar::Int(77), rec(json!({"name": "x"})))
            .await
            .unwrap()
            .is_none());

        // patchOrCreate: existing, then new
        let u = store
            .patch_or_create(author, rec(json!({"id": 3, "age": 41})))
            .await
            .unwrap();
        assert_eq!(u["name"], json!("Cy"));
        assert_eq!(u["age"], json!(41));
        let c = store
            .patch_or_create(author, rec(json!({"name": "Eve"})))
            .await
            .unwrap();
        assert_eq!(c["id"], json!(5));
        let c = store
            .patch_or_create(author, rec(json!({"id": 50, "name": "Fay"})))
            .await
            .unwrap();
        assert_eq!(c["id"], json!(50));

        // replaceOrCreate
        let r = store
            .replace_or_create(author, rec(json!({"id": 3, "name": "Cyd"})))
            .await
            .unwrap();
        assert_eq!(r, rec(json!({"name": "Cyd", "id": 3})));
        let r = store
            .replace_or_create(author, rec(json!({"name": "Gus"})))
            .await
            .unwrap();
        assert_eq!(r["id"], json!(51));

        // upsertWithWhere
        let w = cond(&app, "Author", "name", Op::Eq(s("Gus")));
        let r = store
            .upsert_with_where(author, Some(&w), rec(json!({"age": 9})))
            .await
            .unwrap();
        assert_eq!((r["id"].clone(), r["age"].clone()), (json!(51), json!(9)));
        let w = cond(&app, "Author", "name", Op::Eq(s("Hal")));
        let r = store
            .upsert_with_where(author, Some(&w), rec(json!({"name": "Hal"})))
            .await
            .unwrap();
        assert_eq!(r["id"], json!(52));
        let err = store
            .upsert_with_where(author, None, rec(json!({"age": 1})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::MultipleMatches), "{err:?}");

        // updateAll
        let w = cond(&app, "Author", "age", Op::Eq(Scalar::Null));
        let before = store.count(author, Some(&w)).await.unwrap();
        let n = store
            .update_all(author, Some(&w), rec(json!({"age": 1})))
            .await
            .unwrap();
        assert_eq!(n, before);
        assert_eq!(store.count(author, Some(&w)).await.unwrap(), 0);

        // delete
        assert_eq!(
            store.delete_by_id(author, &Scalar::Int(52)).await.unwrap(),
            1
        );
        assert_eq!(
            store.delete_by_id(author, &Scalar::Int(52)).await.unwrap(),
            0
        );
        let w = cond(&app, "Author", "age", Op::Lt(Scalar::Int(10)));
        let gone = store.delete_all(author, Some(&w)).await.unwrap();
        assert!(gone > 0);
        let left = store.count(author, None).await.unwrap();
        assert_eq!(store.delete_all(author, None).await.unwrap(), left);
        assert_eq!(store.count(author, None).await.unwrap(), 0);
    })
    .await;
}

async fn names(
    store: &portcullis_store::Store,
    app: &portcullis_schema::App,
    w: Where,
) -> Vec<String> {
    let rows = store
        .find(mid(app, "Author"), &filter_where(w))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn where_operators_and_null_semantics() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        seed_authors(&app, &store).await;
        let a = &app;
        let c = |n: &str, op: Op| cond(a, "Author", n, op);
        assert_eq!(names(&store, a, c("name", Op::Eq(s("Ann")))).await, ["Ann"]);
        assert_eq!(
            names(&store, a, c("email", Op::Eq(Scalar::Null))).await,
            ["Cy"]
        );
        assert_eq!(
            names(&store, a, c("email", Op::Neq(Scalar::Null))).await,
            ["Ann", "bob", "Dee"]
        );
        // neq is null-safe: rows without an age match.
        assert_eq!(
            names(&store, a, c("age", Op::Neq(Scalar::Int(30)))).await,
            ["bob", "Cy", "Dee"]
        );
        assert_eq!(
            names(&store, a, c("age", Op::Gt(Scalar::Int(25)))).await,
            ["Ann", "Cy"]
        );
        assert_eq!(
            names(&store, a, c("age", Op::Gte(Scalar::Int(25)))).await,
            ["Ann", "bob", "Cy"]
        );
        assert_eq!(
            names(&store, a, c("age", Op::Lt(Scalar::Int(30)))).await,
            ["bob"]
        );
        assert_eq!(
            names(&store, a, c("age", Op::Lte(Scalar::Float(30.0)))).await,
            ["Ann", "bob"]
        );
        assert!(names(&store, a, c("age", Op::Gt(Scalar::Null)))
            .await
            .is_empty());
        assert_eq!(
            names(
                &store,
                a,
                c("age", Op::Between(Scalar::Int(25), Scalar::Int(30)))
            )
            .await,
            ["Ann", "bob"]
        );
        assert_eq!(
            names(
                &store,
                a,
                c("age", Op::Inq(vec![Scalar::Int(25), Scalar::Int(40)]))
            )
            .await,
            ["bob"]
        );
        assert!(names(&store, a, c("age", Op::Inq(vec![]))).await.is_empty());
        assert_eq!(
            names(&store, a, c("age", Op::Inq(vec![Scalar::Null]))).await,
            ["Dee"]
        );
        assert_eq!(names(&store, a, c("age", Op::Nin(vec![]))).await.len(), 4);
        assert_eq!(
            names(
                &store,
                a,
                c("age", Op::Nin(vec![Scalar::Int(25), Scalar::Int(30)]))
            )
            .await,
            ["Cy", "Dee"]
        );
        let like = |p: &str, negated, ci| Op::Like {
            pattern: p.into(),
            negated,
            case_insensitive: ci,
        };
        assert_eq!(
            names(&store, a, c("name", like("B%", false, false))).await,
            Vec::<String>::new()
        );
        assert_eq!(
            names(&store, a, c("name", like("b%", false, false))).await,
            ["bob"]
        );
        assert_eq!(
            names(&store, a, c("name", like("B%", false, true))).await,
            ["bob"]
        );
        assert_eq!(
            names(&store, a, c("name", like("%n%", true, false))).await,
            ["bob", "Cy", "Dee"]
        );
        assert_eq!(
            names(&store, a, c("name", like("%N%", true, true))).await,
            ["bob", "Cy", "Dee"]
        );
        assert_eq!(
            names(&store, a, c("name", like("_y", false, false))).await,
            ["Cy"]
        );
        let re = |p: &str, ci| Op::Regexp {
            pattern: p.into(),
            case_insensitive: ci,
        };
        assert_eq!(
            names(&store, a, c("name", re("^[A-C]", false))).await,
            ["Ann", "Cy"]
        );
        assert_eq!(
            names(&store, a, c("name", re("^[a-c]", true))).await,
            ["Ann", "bob", "Cy"]
        );
        assert_eq!(names(&store, a, c("age", re("^4", false))).await, ["Cy"]);
        // booleans and dates
        assert_eq!(
            names(&store, a, c("active", Op::Eq(Scalar::Bool(false)))).await,
            ["bob"]
        );
        assert_eq!(
            names(&store, a, c("born", Op::Gt(Scalar::Date(0)))).await,
            ["Ann"]
        );
        assert_eq!(
            names(&store, a, c("born", Op::Eq(s("1990-01-02T03:04:05.678Z")))).await,
            ["Ann"]
        );
        assert!(names(&store, a, Where::Never).await.is_empty());
        assert_eq!(
            names(
                &store,
                a,
                Where::Or(vec![
                    c("name", Op::Eq(s("Dee"))),
                    Where::And(vec![
                        c("age", Op::Gt(Scalar::Int(20))),
                        c("active", Op::Eq(Scalar::Bool(true)))
                    ]),
                ])
            )
            .await,
            ["Ann", "Dee"]
        );
        assert_eq!(names(&store, a, Where::And(vec![])).await.len(), 4);
        assert!(names(&store, a, Where::Or(vec![])).await.is_empty());
        // json values compare as JSON text
        let author = mid(a, "Author");
        store
            .update_by_id(author, &Scalar::Int(4), rec(json!({"meta": {"x": 1}})))
            .await
            .unwrap();
        assert_eq!(
            names(&store, a, c("meta", Op::Eq(Scalar::Json(json!({"x": 1}))))).await,
            ["Dee"]
        );
    })
    .await;
}

#[tokio::test]
async fn in_subquery() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        seed_authors(&app, &store).await;
        let book = mid(&app, "Book");
        store
            .create(
                book,
                vec![
                    rec(json!({"title": "T1", "authorId": 2})),
                    rec(json!({"title": "T2", "authorId": 4})),
                ],
            )
            .await
            .unwrap();
        let w = Where::InSubquery {
            property: prop(&app, "Author", "id"),
            model: book,
            select: "authorId".into(),
            filter: Box::new(cond(&app, "Book", "title", Op::Eq(s("T2")))),
        };
        assert_eq!(names(&store, &app, w).await, ["Dee"]);
    })
    .await;
}

#[tokio::test]
async fn order_limit_skip_fields() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        seed_authors(&app, &store).await;
        let author = mid(&app, "Author");
        let get = |f: Filter| {
            let store = store.clone();
            async move { store.find(author, &f).await.unwrap() }
        };
        // default: id ascending
        assert_eq!(ids(&get(Filter::default()).await), [1, 2, 3, 4]);
        // ASC: NULLs first; DESC: NULLs last
        let asc = get(Filter {
            order: vec![order(&app, "Author", "age", false)],
            ..Filter::default()
        })
        .await;
        assert_eq!(ids(&asc), [4, 2, 1, 3]);
        let desc = get(Filter {
            order: vec![order(&app, "Author", "age", true)],
            ..Filter::default()
        })
        .await;
        assert_eq!(ids(&desc), [3, 1, 2, 4]);
        // Ties break by id in the last key's direction.
        let by_active = get(Filter {
            order: vec![order(&app, "Author", "active", true)],
            ..Filter::default()
        })
        .await;
        assert_eq!(ids(&by_active), [1, 2, 4, 3]);
        let page = get(Filter {
            limit: Some(2),
            skip: 1,
            ..Filter::default()
        })
        .await;
        assert_eq!(ids(&page), [2, 3]);
        let rest = get(Filter {
            skip: 3,
            ..Filter::default()
        })
        .await;
        assert_eq!(ids(&rest), [4]);
        let fields = get(Filter {
            fields: Some(vec!["name".into()]),
            limit: Some(1),
            ..Filter::default()
        })
        .await;
        assert_eq!(fields, vec![rec(json!({"name": "Ann"}))]);
    })
    .await;
}

async fn seed_library(app: &portcullis_schema::App, store: &portcullis_store::Store) {
    seed_authors(app, store).await;
    let book = mid(app, "Book");
    let tag = mid(app, "Tag");
    let bt = mid(app, "BookTag");
    let review = mid(app, "Review");
    store
        .create(
            book,
            vec![
                rec(json!({"title": "A1", "pages": 100, "authorId": 1})),
                rec(json!({"title": "A2", "pages": 300, "authorId": 1})),
                rec(json!({"title": "A3", "pages": 200, "authorId": 1})),
                rec(json!({"title": "B1", "pages": 50, "authorId": 2})),
                rec(json!({"title": "Orphan", "pages": 1, "authorId": 99})),
            ],
        )
        .await
        .unwrap();
    store
        .create(
            tag,
            vec![
                rec(json!({"label": "sf"})),
                rec(json!({"label": "classic"})),
                rec(json!({"label": "new"})),
            ],
        )
        .await
        .unwrap();
    store
        .create(
            bt,
            vec![
                rec(json!({"bookId": 1, "tagId": 2})),
                rec(json!({"bookId": 1, "tagId": 1})),
                rec(json!({"bookId": 4, "tagId": 2})),
            ],
        )
        .await
        .unwrap();
    store
        .create(
            review,
            vec![
                rec(json!({"bookId": 1, "stars": 5})),
                rec(json!({"bookId": 1, "stars": 3})),
                rec(json!({"bookId": 2, "stars": 4})),
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn include_belongs_to_and_has_many_with_per_parent_limit() {
    each_backend(|b| async move {
    let (_d, app, store) = fixture(&b).await;
    seed_library(&app, &store).await;
    let author = mid(&app, "Author");
    let book = mid(&app, "Book");

    let books = store
        .find(
            book,
            &Filter {
                include: vec![include(&app, "Book", "author", Filter::default())],
                ..Filter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(books[0]["author"]["name"], json!("Ann"));
    assert_eq!(books[3]["author"]["name"], json!("bob"));
    assert!(
        !books[4].contains_key("author"),
        "missing belongsTo target is omitted"
    );

    let scope = Filter {
        order: vec![order(&app, "Book", "pages", true)],
        limit: Some(2),
        ..Filter::default()
    };
    let authors = store
        .find(
            author,
            &Filter {
                include: vec![include(&app, "Author", "books", scope)],
                ..Filter::default()
            },
        )
        .await
        .unwrap();
    let titles = |i: usize| -> Vec<String> {
        authors[i]["books"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(titles(0), ["A2", "A3"]);
    assert_eq!(titles(1), ["B1"]);
    assert_eq!(titles(2), Vec::<String>::new());

    // skip per parent, fields in scope with the foreign key added, parent fields keep the key
    let scope = Filter {
        fields: Some(vec!["title".into()]),
        skip: 1,
        ..Filter::default()
    };
    let authors = store
        .find(
            author,
            &Filter {
                fields: Some(vec!["name".into()]),
                include: vec![include(&app, "Author", "books", scope)],
                limit: Some(2),
                ..Filter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        authors[0],
        rec(
            json!({"name": "Ann", "id": 1, "books": [{"title": "A2", "authorId": 1}, {"title": "A3", "authorId": 1}]})
        )
    );
    assert_eq!(authors[1]["books"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn include_through_and_nested() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        seed_library(&app, &store).await;
        let author = mid(&app, "Author");
        let book = mid(&app, "Book");
        let books = store
            .find(
                book,
                &Filter {
                    include: vec![include(
                        &app,
                        "Book",
                        "tags",
                        Filter {
                            order: vec![order(&app, "Tag", "label", false)],
                            ..Filter::default()
                        },
                    )],
                    limit: Some(4),
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            books[0]["tags"],
            json!([{"label": "classic", "id": 2}, {"label": "sf", "id": 1}])
        );
        assert_eq!(books[1]["tags"], json!([]));
        assert_eq!(books[3]["tags"], json!([{"label": "classic", "id": 2}]));

        let reviews = include(
            &app,
            "Book",
            "reviews",
            Filter {
                order: vec![order(&app, "Review", "stars", true)],
                ..Filter::default()
            },
        );
        let books_inc = include(
            &app,
            "Author",
            "books",
            Filter {
                where_: Some(cond(&app, "Book", "pages", Op::Gte(Scalar::Int(100)))),
                include: vec![reviews],
                ..Filter::default()
            },
        );
        let authors = store
            .find(
                author,
                &Filter {
                    include: vec![books_inc],
                    limit: Some(1),
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        let books = authors[0]["books"].as_array().unwrap();
        assert_eq!(books.len(), 3);
        assert_eq!(books[0]["title"], json!("A1"));
        let stars: Vec<i64> = books[0]["reviews"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["stars"].as_i64().unwrap())
            .collect();
        assert_eq!(stars, [5, 3]);
        assert_eq!(books[1]["reviews"].as_array().unwrap().len(), 1);
        assert_eq!(books[2]["reviews"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn loose_model_extras() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let book = mid(&app, "Book");
        let rows = store
            .create(
                book,
                vec![
                    rec(json!({"title": "X", "color": "red", "n": 5, "deep": {"a": [1]}})),
                    rec(json!({"title": "Y", "color": "blue", "n": 2})),
                    rec(json!({"title": "Z"})),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            rows[0],
            rec(json!({"title": "X", "id": 1, "color": "red", "n": 5, "deep": {"a": [1]}}))
        );
        let dynamic = |name: &str, op: Op| cond(&app, "Book", name, op);
        let found = store
            .find(book, &filter_where(dynamic("color", Op::Eq(s("blue")))))
            .await
            .unwrap();
        assert_eq!(ids(&found), [2]);
        let found = store
            .find(book, &filter_where(dynamic("n", Op::Gt(Scalar::Int(3)))))
            .await
            .unwrap();
        assert_eq!(ids(&found), [1]);
        let found = store
            .find(book, &filter_where(dynamic("color", Op::Eq(Scalar::Null))))
            .await
            .unwrap();
        assert_eq!(ids(&found), [3]);
        let ordered = store
            .find(
                book,
                &Filter {
                    order: vec![order(&app, "Book", "n", true)],
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(ids(&ordered), [1, 2, 3]);
        // patch: change one extra, remove another, keep the rest
        let p = store
            .update_by_id(
                book,
                &Scalar::Int(1),
                rec(json!({"color": "green", "n": null, "pages": 9})),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            rec(json!({"title": "X", "pages": 9, "id": 1, "color": "green", "deep": {"a": [1]}}))
        );
        let p = store
            .update_by_id(book, &Scalar::Int(3), rec(json!({"fresh": true})))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p, rec(json!({"title": "Z", "id": 3, "fresh": true})));
        // replace drops the extras not given
        let r = store
            .replace_by_id(
                book,
                &Scalar::Int(1),
                rec(json!({"title": "X2", "only": 1})),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, rec(json!({"title": "X2", "id": 1, "only": 1})));
        // fields can name an extra
        let f = store
            .find(
                book,
                &Filter {
                    fields: Some(vec!["only".into()]),
                    limit: Some(1),
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(f[0], rec(json!({"only": 1})));
    })
    .await;
}

#[tokio::test]
async fn unique_violation_and_atomic_create() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        store
            .create(author, vec![rec(json!({"name": "A", "email": "a@x"}))])
            .await
            .unwrap();
        let err = store
            .create(author, vec![rec(json!({"name": "B", "email": "a@x"}))])
            .await
            .unwrap_err();
        match err {
            StoreError::UniqueViolation { model, property } => {
                assert_eq!(model, "Author");
                assert_eq!(property.as_deref(), Some("email"));
            }
            other => panic!("{other:?}"),
        }
        let err = store
            .create(
                author,
                vec![
                    rec(json!({"name": "C", "email": "c@x"})),
                    rec(json!({"name": "D", "email": "d@x"})),
                    rec(json!({"name": "E", "email": "c@x"})),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UniqueViolation { .. }));
        assert_eq!(store.count(author, None).await.unwrap(), 1);
        // duplicate id
        let err = store
            .create(author, vec![rec(json!({"id": 1, "name": "dup"}))])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UniqueViolation { .. }), "{err:?}");
        // patch into a taken email
        store
            .create(author, vec![rec(json!({"name": "F", "email": "f@x"}))])
            .await
            .unwrap();
        let err = store
            .update_by_id(author, &Scalar::Int(1), rec(json!({"email": "f@x"})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UniqueViolation { .. }));
        // an id of the wrong type for a generated id
        let err = store
            .create(author, vec![rec(json!({"id": "abc", "name": "x"}))])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn sql_injection_strings_are_inert() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        let evil = "x'); DROP TABLE \"Author\"; --";
        let rows = store
            .create(author, vec![rec(json!({"name": evil}))])
            .await
            .unwrap();
        assert_eq!(rows[0]["name"], json!(evil));
        let found = store
            .find(
                author,
                &filter_where(cond(&app, "Author", "name", Op::Eq(s(evil)))),
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        let none = store
            .find(
                author,
                &filter_where(cond(&app, "Author", "name", Op::Eq(s("' OR '1'='1")))),
            )
            .await
            .unwrap();
        assert!(none.is_empty());
        let book = mid(&app, "Book");
        store
            .create(
                book,
                vec![rec(json!({"title": "t", "a\"b": 1, "c') --": 2}))],
            )
            .await
            .unwrap();
        let w = cond(&app, "Book", "') OR 1=1 --", Op::Eq(Scalar::Int(1)));
        assert!(store.find(book, &filter_where(w)).await.unwrap().is_empty());
        assert_eq!(store.count(author, None).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn reopen_keeps_data_and_adds_columns() {
    each_backend(|b| async move {
        let db = TestDb::new(&b);
        write_app(db.path(), &db.datasources(), &models());
        {
            let (app, store) = open(db.path()).await;
            seed_library(&app, &store).await;
        }
        // Same schema again: nothing changes.
        {
            let (app, store) = open(db.path()).await;
            assert_eq!(store.count(mid(&app, "Author"), None).await.unwrap(), 4);
        }
        let mut defs = models();
        defs[0].1["properties"]["nickname"] = json!({"type": "string", "index": true});
        defs[1].1["properties"]["isbn"] = json!({"type": "string", "unique": true});
        write_app(db.path(), &db.datasources(), &defs);
        let (app, store) = open(db.path()).await;
        let author = mid(&app, "Author");
        assert_eq!(store.count(author, None).await.unwrap(), 4);
        let r = store
            .update_by_id(author, &Scalar::Int(1), rec(json!({"nickname": "annie"})))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r["nickname"], json!("annie"));
        assert_eq!(r["email"], json!("ann@x.io"));
        let created = store
            .create(author, vec![rec(json!({"name": "New"}))])
            .await
            .unwrap();
        assert_eq!(created[0]["id"], json!(5));
        // A unique index added later is enforced and named in the violation.
        let book = mid(&app, "Book");
        store
            .update_by_id(book, &Scalar::Int(1), rec(json!({"isbn": "1"})))
            .await
            .unwrap();
        let err = store
            .update_by_id(book, &Scalar::Int(2), rec(json!({"isbn": "1"})))
            .await
            .unwrap_err();
        match err {
            StoreError::UniqueViolation { model, property } => {
                assert_eq!((model.as_str(), property.as_deref()), ("Book", Some("isbn")))
            }
            other => panic!("{other:?}"),
        }

        let want = [
            "ux_Author_email",
            "ix_Author_nickname",
            "ix_Book_authorId",
            "ix_Book_title",
            "ux_Book_isbn",
            "ix_BookTag_bookId",
            "ix_BookTag_tagId",
        ];
        let idx: Vec<String> = if db.is_postgres() {
            // The tables live in the configured schema, with the declared column types.
            let client = db.pg_client().await;
            let schema = db.schema.clone().unwrap();
            let types: Vec<(String, String)> = client
                .query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = 'Author' ORDER BY ordinal_position",
                    &[&schema],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let types: Vec<(&str, &str)> =
                types.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(
                types,
                [
                    ("name", "text"),
                    ("email", "text"),
                    ("age", "double precision"),
                    ("active", "boolean"),
                    ("born", "timestamp with time zone"),
                    ("tags", "jsonb"),
                    ("meta", "jsonb"),
                    ("id", "bigint"),
                    ("nickname", "text"),
                ]
            );
            client
                .query(
                    "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1",
                    &[&schema],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            // The file is WAL, with the indexes the models ask for.
            let conn = rusqlite::Connection::open(db.path().join("db.sqlite")).unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let mut stmt = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'",
                )
                .unwrap();
            let idx = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            idx
        };
        for w in want {
            assert!(idx.iter().any(|i| i == w), "missing index {w} in {idx:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn concurrent_reads_and_writes() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create(author, vec![rec(json!({"name": format!("n{i}")}))])
                    .await
                    .unwrap();
                store.count(author, None).await.unwrap()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap() >= 1);
        }
        assert_eq!(store.count(author, None).await.unwrap(), 20);
    })
    .await;
}

#[tokio::test]
async fn mail_datasource_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        r#"{"db":{"name":"db","connector":"sqlite","file":"db.sqlite"},"mail":{"connector":"mail"}}"#,
        &models(),
    );
    let (app, store) = open(dir.path()).await;
    assert_eq!(store.count(mid(&app, "Author"), None).await.unwrap(), 0);
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        r#"{"db":{"name":"db","connector":"postgresql","url":"postgres://postgres@127.0.0.1:1/test"}}"#,
        &models(),
    );
    let app = std::sync::Arc::new(portcullis_schema::load_app(dir.path()).unwrap());
    let started = std::time::Instant::now();
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        portcullis_store::Store::open(app),
    )
    .await
    .expect("Store::open hangs on an unreachable server");
    match opened {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("opened"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn postgres_schema_from_url_options() {
    let Some(url) = pg_url() else { return };
    let schema = format!("url_{}", uuid::Uuid::new_v4().simple());
    let sep = if url.contains('?') { '&' } else { '?' };
    let with_path = format!("{url}{sep}options=-csearch_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    write_app(
        dir.path(),
        &json!({"db": {"name": "db", "connector": "postgresql", "url": with_path}}).to_string(),
        &models(),
    );
    let (app, store) = open(dir.path()).await;
    let author = mid(&app, "Author");
    store
        .create(author, vec![rec(json!({"name": "a"}))])
        .await
        .unwrap();
    let client = pg_connect(&url).await;
    let n: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".\"Author\""),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(store);
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn include_has_one_and_errors() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        seed_library(&app, &store).await;
        let author = mid(&app, "Author");
        let scope = Filter {
            order: vec![order(&app, "Book", "pages", true)],
            ..Filter::default()
        };
        let authors = store
            .find(
                author,
                &Filter {
                    include: vec![include(&app, "Author", "biggest", scope)],
                    ..Filter::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(authors[0]["biggest"]["title"], json!("A2"));
        assert_eq!(authors[1]["biggest"]["title"], json!("B1"));
        assert!(!authors[2].contains_key("biggest"));
        // A dynamic property on a strict model is refused, not silently ignored.
        let w = Where::Cond {
            property: portcullis_query::PropRef::Dynamic { name: "zzz".into() },
            op: Op::Eq(Scalar::Int(1)),
        };
        let err = store.find(author, &filter_where(w)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        // An unknown relation in an include is refused too.
        let bad = portcullis_query::Include {
            relation: "nope".into(),
            target: author,
            scope: Filter::default(),
        };
        let err = store
            .find(
                author,
                &Filter {
                    include: vec![bad],
                    ..Filter::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn dynamic_properties_patterns_and_explicit_ids() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let book = mid(&app, "Book");
        store
            .create(
                book,
                vec![
                    rec(json!({"title": "a\\b%", "flag": true, "n": 10, "when": "2020-01-01T00:00:00.000Z"})),
                    rec(json!({"title": "Ab", "flag": false, "n": "x", "pages": 12.5})),
                    rec(json!({"title": "ab", "n": 3})),
                ],
            )
            .await
            .unwrap();
        let found = |w: Where| {
            let store = store.clone();
            async move { ids(&store.find(book, &filter_where(w)).await.unwrap()) }
        };
        let c = |n: &str, op: Op| cond(&app, "Book", n, op);
        // Extras compare by their JSON type: numbers numerically, booleans as booleans.
        assert_eq!(found(c("flag", Op::Eq(Scalar::Bool(true)))).await, [1]);
        assert_eq!(found(c("flag", Op::Eq(Scalar::Bool(false)))).await, [2]);
        assert_eq!(found(c("n", Op::Gt(Scalar::Int(4)))).await, [1]);
        assert_eq!(
            found(c("n", Op::Inq(vec![Scalar::Int(3), Scalar::Int(10)]))).await,
            [1, 3]
        );
        assert_eq!(found(c("n", Op::Eq(s("x")))).await, [2]);
        assert_eq!(
            found(c("when", Op::Eq(s("2020-01-01T00:00:00.000Z")))).await,
            [1]
        );
        // LIKE has no escape character; ilike and regexp on text and numbers.
        let like = |p: &str, ci| Op::Like {
            pattern: p.into(),
            negated: false,
            case_insensitive: ci,
        };
        assert_eq!(found(c("title", like("a\\b%", false))).await, [1]);
        assert_eq!(found(c("title", like("a_", false))).await, [3]);
        assert_eq!(found(c("title", like("a_", true))).await, [2, 3]);
        assert_eq!(found(c("pages", like("12.%", false))).await, [2]);
        let re = |p: &str, ci| Op::Regexp {
            pattern: p.into(),
            case_insensitive: ci,
        };
        assert_eq!(found(c("title", re("^a", false))).await, [1, 3]);
        assert_eq!(found(c("title", re("^a", true))).await, [1, 2, 3]);
        assert_eq!(found(c("pages", re("\\.5$", false))).await, [2]);
        assert_eq!(found(c("n", re("^1", false))).await, [1]);
        // Dates given in another form compare as instants.
        let author = mid(&app, "Author");
        seed_authors(&app, &store).await;
        let born = |op: Op| cond(&app, "Author", "born", op);
        let authors = |w: Where| {
            let store = store.clone();
            async move { ids(&store.find(author, &filter_where(w)).await.unwrap()) }
        };
        assert_eq!(
            authors(born(Op::Eq(s("1990-01-02T04:04:05.678+01:00")))).await,
            [1]
        );
        assert_eq!(
            authors(born(Op::Lt(Scalar::Date(631_249_445_679)))).await,
            [1]
        );
        let like = |p: &str| Op::Like {
            pattern: p.into(),
            negated: false,
            case_insensitive: false,
        };
        assert_eq!(authors(born(like("1990-01-02T03:%.678Z"))).await, [1]);
        let active = |op: Op| cond(&app, "Author", "active", op);
        assert_eq!(
            authors(active(Op::Regexp {
                pattern: "^1$".into(),
                case_insensitive: false
            }))
            .await,
            [1]
        );
        assert!(authors(born(Op::Lt(Scalar::Date(631_249_445_678))))
            .await
            .is_empty());
        // Explicit ids move the generator past them; lookups by a non-numeric id find nothing.
        let r = store
            .create(author, vec![rec(json!({"id": 40, "name": "X"}))])
            .await
            .unwrap();
        assert_eq!(r[0]["id"], json!(40));
        let r = store
            .create(author, vec![rec(json!({"id": 7, "name": "Y"}))])
            .await
            .unwrap();
        assert_eq!(r[0]["id"], json!(7));
        let r = store
            .create(author, vec![rec(json!({"name": "Z"}))])
            .await
            .unwrap();
        assert_eq!(r[0]["id"], json!(41));
        assert!(!store.exists(author, &s("abc")).await.unwrap());
        assert_eq!(
            store.delete_by_id(author, &s("abc")).await.unwrap(),
            0
        );
        // Fractional numbers and large integers round-trip as written.
        let r = store
            .create(
                author,
                vec![rec(json!({"name": "N", "age": 9007199254740991i64}))],
            )
            .await
            .unwrap();
        assert_eq!(r[0]["age"], json!(9007199254740991i64));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_each_get_their_own_outcome() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        store
            .create(
                author,
                vec![rec(json!({"name": "Taken", "email": "taken@x.io"}))],
            )
            .await
            .unwrap();
        // Many writers at once (SQLite commits them in groups): every third one is refused
        // by the unique email, as a whole array, and must leave nothing behind.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let second = if i % 3 == 0 {
                    "taken@x.io".to_string()
                } else {
                    format!("b{i}@x.io")
                };
                let rows = vec![
                    rec(json!({"name": format!("a{i}"), "email": format!("a{i}@x.io")})),
                    rec(json!({"name": format!("b{i}"), "email": second})),
                ];
                (i, store.create(author, rows).await)
            }));
        }
        let mut stored = 1;
        for t in tasks {
            let (i, result) = t.await.unwrap();
            if i % 3 == 0 {
                assert!(
                    matches!(result, Err(StoreError::UniqueViolation { .. })),
                    "{i}: {result:?}"
                );
            } else {
                let rows = result.unwrap();
                assert_eq!(rows.len(), 2);
                assert_eq!(rows[0]["name"], json!(format!("a{i}")));
                stored += 2;
            }
        }
        assert_eq!(store.count(author, None).await.unwrap(), stored);
        // None of a refused array's rows was kept.
        let firsts = Where::Cond {
            property: portcullis_query::PropRef::Declared {
                name: "name".into(),
                ty: portcullis_schema::PropType::String,
            },
            op: Op::Inq(
                (0..60)
                    .step_by(3)
                    .map(|i| Scalar::Text(format!("a{i}")))
                    .collect(),
            ),
        };
        assert_eq!(store.count(author, Some(&firsts)).await.unwrap(), 0);
    })
    .await;
}
