//! The transactional outbox: the observer sees what each write did inside its transaction,
//! the events commit with the write (on PostgreSQL, in the same transaction) and a
//! rolled-back write announces nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use portcullis_query::{Op, Scalar, Where};
use portcullis_schema::ModelId;
use portcullis_store::{OutboxEvent, Record, RowChange, StoreError, WriteObserver};
use serde_json::{json, Value};

/// Observes `models`; one event per row: kind = the change, key = `Model:id`, data = row.
struct Recorder {
    models: Vec<(ModelId, String)>,
    committed: Mutex<Vec<Vec<OutboxEvent>>>,
}

impl Recorder {
    fn new(app: &portcullis_schema::App, names: &[&str]) -> Arc<Recorder> {
        Arc::new(Recorder {
            models: names
                .iter()
                .map(|n| (mid(app, n), (*n).to_string()))
                .collect(),
            committed: Mutex::new(Vec::new()),
        })
    }

    /// The committed transactions' events as `(kind, key)`, and forgets them.
    fn take(&self) -> Vec<Vec<(String, String)>> {
        std::mem::take(&mut *self.committed.lock().unwrap())
            .into_iter()
            .map(|tx| tx.into_iter().map(|e| (e.kind, e.key)).collect())
            .collect()
    }

    fn take_data(&self) -> Vec<Value> {
        std::mem::take(&mut *self.committed.lock().unwrap())
            .into_iter()
            .flatten()
            .filter_map(|e| e.data)
            .collect()
    }
}

impl WriteObserver for Recorder {
    fn observes(&self, model: ModelId) -> bool {
        self.models.iter().any(|(m, _)| *m == model)
    }

    fn events(
        &self,
        model: ModelId,
        change: RowChange,
        rows: &[Record],
        out: &mut Vec<OutboxEvent>,
    ) {
        let name = &self.models.iter().find(|(m, _)| *m == model).unwrap().1;
        for row in rows {
            out.push(OutboxEvent {
                kind: format!("{change:?}"),
                key: format!("{name}:{}", row["id"]),
                data: Some(Value::Object(row.clone())),
            });
        }
    }

    fn committed(&self, events: Vec<OutboxEvent>) {
        self.committed.lock().unwrap().push(events);
    }
}

fn pair(kind: &str, key: &str) -> (String, String) {
    (kind.to_string(), key.to_string())
}

#[tokio::test]
async fn every_kind_of_write_hands_its_rows_to_the_observer() {
    each_backend(|b| async move {
        let (_d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        let review = mid(&app, "Review");
        let rec_ = Recorder::new(&app, &["Author"]);
        assert!(store.set_observer(rec_.clone()));
        assert!(!store.set_observer(rec_.clone()), "one observer per store");

        store
            .create(
                author,
                vec![
                    rec(json!({"name": "Ann", "age": 30})),
                    rec(json!({"name": "Bob", "age": 20})),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            rec_.take(),
            vec![vec![
                pair("Created", "Author:1"),
                pair("Created", "Author:2")
            ]],
            "one transaction, one event per row"
        );

        store
            .update_by_id(author, &Scalar::Int(1), rec(json!({"age": 31})))
            .await
            .unwrap();
        let data = rec_.take_data();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["age"], json!(31), "the row after the change");
        assert_eq!(data[0]["name"], json!("Ann"));

        // A bulk update reports every row it changed, as changed.
        let adults = Where::Cond {
            property: portcullis_query::PropRef::Declared {
                name: "age".into(),
                ty: portcullis_schema::PropType::Number,
            },
            op: Op::Gte(Scalar::Int(18)),
        };
        let n = store
            .update_all(author, Some(&adults), rec(json!({"active": true})))
            .await
            .unwrap();
        assert_eq!(n, 2);
        let data = rec_.take_data();
        assert_eq!(data.len(), 2);
        assert!(data.iter().all(|r| r["active"] == json!(true)), "{data:?}");

        // Upserts say whether they created or updated.
        store
            .patch_or_create(author, rec(json!({"id": 2, "name": "Bo"})))
            .await
            .unwrap();
        store
            .patch_or_create(author, rec(json!({"id": 7, "name": "Gus"})))
            .await
            .unwrap();
        assert_eq!(
            rec_.take(),
            vec![
                vec![pair("Updated", "Author:2")],
                vec![pair("Created", "Author:7")]
            ]
        );

        // Deletes hand over the rows as they were.
        store.delete_by_id(author, &Scalar::Int(7)).await.unwrap();
        let data = rec_.take_data();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["name"], json!("Gus"));
        let n = store.delete_all(author, None).await.unwrap();
        assert_eq!(n, 2);
        let mut names: Vec<Value> = rec_.take_data().iter().map(|r| r["name"].clone()).collect();
        names.sort_by_key(|v| v.to_string());
        assert_eq!(names, vec![json!("Ann"), json!("Bo")]);

        // A write that changes nothing, and writes to unobserved models, announce nothing.
        assert_eq!(
            store.delete_by_id(author, &Scalar::Int(99)).await.unwrap(),
            0
        );
        store
            .create(review, vec![rec(json!({"stars": 5}))])
            .await
            .unwrap();
        store.delete_all(review, None).await.unwrap();
        assert!(rec_.take().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_rolled_back_write_announces_nothing() {
    each_backend(|b| async move {
        let (d, app, store) = fixture(&b).await;
        let author = mid(&app, "Author");
        let rec_ = Recorder::new(&app, &["Author"]);
        store.set_observer(rec_.clone());
        store
            .create(author, vec![rec(json!({"name": "Ann", "email": "a@x.io"}))])
            .await
            .unwrap();
        assert_eq!(rec_.take().len(), 1);
        // The first row of the batch is fine, the second one is refused: nothing of it stays.
        let err = store
            .create(
                author,
                vec![
                    rec(json!({"name": "Cy", "email": "c@x.io"})),
                    rec(json!({"name": "Ann2", "email": "a@x.io"})),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UniqueViolation { .. }), "{err:?}");
        assert!(rec_.take().is_empty(), "a rolled-back write has no events");
        assert_eq!(store.count(author, None).await.unwrap(), 1);
        if d.is_postgres() {
            let schema = d.schema.clone().unwrap();
            let client = d.pg_client().await;
            let rows = client
                .query(
                    &format!("SELECT key FROM \"{schema}\".portcullis_events ORDER BY id"),
                    &[],
                )
                .await
                .unwrap();
            let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(keys, vec!["Author:1".to_string()]);
        }
    })
    .await;
}

#[tokio::test]
async fn on_postgresql_the_events_are_written_by_the_writes_own_transaction() {
    let Some(url) = pg_url() else { return };
    let b = Backend::Postgres { url };
    let (d, app, store) = fixture(&b).await;
    let author = mid(&app, "Author");
    let rec_ = Recorder::new(&app, &["Author"]);
    store.set_observer(rec_.clone());
    let schema = d.schema.clone().unwrap();
    let client = d.pg_client().await;
    // Listening on the store's channel: the wake-up is sent when the write commits.
    let channel = store.outbox_channel().unwrap();
    assert_eq!(channel, format!("portcullis:{schema}"));
    let (_listener, mut woken) = listen(&url_of(&d), &channel).await;

    store
        .create(
            author,
            vec![rec(json!({"name": "Ann", "meta": {"k": [1]}}))],
        )
        .await
        .unwrap();
    store
        .update_by_id(author, &Scalar::Int(1), rec(json!({"age": 5})))
        .await
        .unwrap();

    // xmin is the id of the transaction that wrote a row version: the row and its event
    // were written by one transaction, for the create and again for the update.
    let row_xmin: String = client
        .query_one(
            &format!("SELECT xmin::text FROM \"{schema}\".\"Author\" WHERE id = 1"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let events = client
        .query(
            &format!(
                "SELECT xmin::text, kind, key, data::text FROM \"{schema}\".portcullis_events ORDER BY id"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let created_xmin: String = events[0].get(0);
    let updated_xmin: String = events[1].get(0);
    assert_ne!(created_xmin, updated_xmin, "one transaction per write");
    assert_eq!(
        updated_xmin, row_xmin,
        "the update and its event share a transaction"
    );
    assert_eq!(events[1].get::<_, String>(1), "Updated");
    assert_eq!(events[1].get::<_, String>(2), "Author:1");
    let data: Value = serde_json::from_str(&events[0].get::<_, String>(3)).unwrap();
    assert_eq!(data["meta"], json!({"k": [1]}), "data round-trips as jsonb");
    assert_eq!(rec_.take().len(), 2, "committed runs after each commit");
    for _ in 0..2 {
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), woken.recv())
            .await
            .expect("a wake-up per committed write");
        assert_eq!(got.as_deref(), Some(channel.as_str()));
    }
    // A write that rolls back wakes nobody.
    store
        .create(author, vec![rec(json!({"id": 1, "name": "again"}))])
        .await
        .unwrap_err();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), woken.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

fn url_of(d: &TestDb) -> String {
    match &d.backend {
        Backend::Postgres { url } => url.clone(),
        Backend::Sqlite => unreachable!("postgresql only"),
    }
}

/// The channels of the notifications a new connection LISTENing on `channel` receives (the
/// client keeps the connection open).
async fn listen(
    url: &str,
    channel: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.channel().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
        .await
        .unwrap();
    (client, rx)
}
