#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use portcullis_query::{Op, Scalar};
use serde_json::{json, Value};

fn memory_ds(file: Option<&str>) -> String {
    match file {
        Some(f) => format!(r#"{{"db":{{"name":"db","connector":"memory","file":"{f}"}}}}"#),
        None => r#"{"db":{"name":"db","connector":"memory"}}"#.to_string(),
    }
}

#[tokio::test]
async fn memory_without_file() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &memory_ds(None), &models());
    let (app, store) = open(dir.path()).await;
    let author = mid(&app, "Author");
    store
        .create(author, vec![rec(json!({"name": "a"}))])
        .await
        .unwrap();
    assert_eq!(store.count(author, None).await.unwrap(), 1);
    let w = cond(
        &app,
        "Author",
        "name",
        Op::Like {
            pattern: "A".into(),
            negated: false,
            case_insensitive: true,
        },
    );
    assert_eq!(store.count(author, Some(&w)).await.unwrap(), 1);
}

#[tokio::test]
async fn memory_file_loads_and_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &memory_ds(Some("data.json")), &models());
    let file = dir.path().join("data.json");
    let initial = json!({
        "ids": {"Author": 8, "Book": 3, "Other": 4},
        "models": {
            "Author": {
                "3": "{\"name\":\"Ann\",\"age\":30,\"born\":\"2016-11-08T23:20:10.447Z\",\"id\":3}",
                "7": "{\"name\":\"Bob\",\"active\":true,\"id\":7}"
            },
            "Book": {"2": "{\"title\":\"T\",\"authorId\":3,\"color\":\"red\",\"id\":2}"},
            "Other": {"1": "{\"x\":1,\"id\":1}"}
        }
    });
    std::fs::write(&file, serde_json::to_string(&initial).unwrap()).unwrap();
    let (app, store) = open(dir.path()).await;
    let author = mid(&app, "Author");
    let book = mid(&app, "Book");
    let ann = store
        .find_by_id(author, &Scalar::Int(3), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ann,
        rec(json!({"name": "Ann", "age": 30, "born": "2016-11-08T23:20:10.447Z", "id": 3}))
    );
    let b = store
        .find_by_id(book, &Scalar::Int(2), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b["color"], json!("red"));
    // Next id continues from the file's counter.
    let created = store
        .create(author, vec![rec(json!({"name": "Cy"}))])
        .await
        .unwrap();
    assert_eq!(created[0]["id"], json!(8));

    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["ids"]["Author"], json!(9));
    assert_eq!(written["ids"]["Other"], json!(4));
    assert_eq!(written["models"]["Other"], initial["models"]["Other"]);
    let cy: Value =
        serde_json::from_str(written["models"]["Author"]["8"].as_str().unwrap()).unwrap();
    assert_eq!(cy, json!({"name": "Cy", "id": 8}));
    let book2: Value =
        serde_json::from_str(written["models"]["Book"]["2"].as_str().unwrap()).unwrap();
    assert_eq!(
        book2,
        json!({"title": "T", "authorId": 3, "id": 2, "color": "red"})
    );
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    // Deletes are mirrored, and a fresh open sees the written state.
    store.delete_by_id(author, &Scalar::Int(7)).await.unwrap();
    drop(store);
    let (app, store) = open(dir.path()).await;
    let author = mid(&app, "Author");
    assert_eq!(
        ids(&store.find(author, &Default::default()).await.unwrap()),
        [3, 8]
    );
    let created = store
        .create(author, vec![rec(json!({"name": "Dee"}))])
        .await
        .unwrap();
    assert_eq!(created[0]["id"], json!(9));
}

#[tokio::test]
async fn corrupt_memory_file_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), &memory_ds(Some("data.json")), &models());
    let file = dir.path().join("data.json");
    let bytes = b"{\"ids\": {\"Author\": 2}, \"models\": {\"Author\": {\"1\": \"{not json".to_vec();
    std::fs::write(&file, &bytes).unwrap();
    let app = std::sync::Arc::new(portcullis_schema::load_app(dir.path()).unwrap());
    match portcullis_store::Store::open(app.clone()).await {
        Err(portcullis_store::StoreError::Internal(m)) => assert!(m.contains("data.json"), "{m}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("opened a corrupt file"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    // A valid file whose row text is broken is refused as well.
    let bytes2 = br#"{"ids":{},"models":{"Author":{"1":"{broken"}}}"#.to_vec();
    std::fs::write(&file, &bytes2).unwrap();
    assert!(portcullis_store::Store::open(app).await.is_err());
    assert_eq!(std::fs::read(&file).unwrap(), bytes2);
}
