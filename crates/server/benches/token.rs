//! Access-token lookup with the per-node cache hot: what every authenticated request pays
//! before routing.
//!
//! `cargo bench -p portcullis-server --bench token` (add `-- --quick` for a short run).
//!
//! - `token_key`: SHA-256 of the raw 64-character id, hex-encoded (the stored key).
//! - `extract_token`: finding the id in the request (`Authorization` header).
//! - `resolve_hot`: the real [`token::resolve`] with the token already in the
//!   [`TokenCache`]: key hash, cache read lock, `Arc` clone, validity check. The store is
//!   a temporary copy of `examples/wall` (SQLite) holding the token row; the first call
//!   loads it into the cache, after which no call reaches the database, so the future is
//!   complete on its first poll and is polled inline (no runtime on the timed path).
//! - `extract_and_resolve_hot`: both, as the request middleware does.
//! - `key_plus_hashmap`: `token_key` + a plain `HashMap` lookup of an `Arc<Token>`, the
//!   floor under `resolve_hot`.

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_server::secrets::{new_token, token_key};
use portcullis_server::token::{self, Token, TokenCache, TokenOptions, TokenState};
use portcullis_store::Store;
use serde_json::{json, Map, Value};

/// Polls a future once; the hot-cache lookup never waits.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("token lookup went to the store: the cache is not hot"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "wall.sqlite" {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let app_dir = dir.path().join("wall");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wall"),
        &app_dir,
    );
    let app = Arc::new(portcullis_schema::load_app(&app_dir).expect("examples/wall loads"));
    let token_model = app.model_id("AccessToken").expect("AccessToken model");
    let store = rt.block_on(Store::open(app.clone())).expect("store opens");

    let raw = new_token();
    let key = token_key(&raw);
    let mut row = Map::new();
    row.insert("id".into(), Value::String(key.clone()));
    row.insert("ttl".into(), json!(1_209_600));
    row.insert(
        "created".into(),
        Value::String(portcullis_query::format_date(
            chrono::Utc::now().timestamp_millis(),
        )),
    );
    row.insert("userId".into(), json!("1"));
    rt.block_on(store.create(token_model, vec![row]))
        .expect("token row stored");
    let cache = TokenCache::default();
    // Cold lookup: loads the row into the cache.
    let state = rt
        .block_on(token::resolve(
            Some(&raw),
            &store,
            token_model,
            &cache,
            false,
        ))
        .expect("resolves");
    assert!(matches!(state, TokenState::Valid(_)), "token not found");

    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&raw).expect("header"),
    );
    headers.insert("accept", HeaderValue::from_static("application/json"));
    let query = Map::new();
    let options = TokenOptions::default();

    let mut plain: HashMap<String, Arc<Token>> = HashMap::new();
    plain.insert(
        key.clone(),
        Arc::new(Token {
            key: key.clone(),
            user_id: Some(json!("1")),
            principal_type: None,
            app_id: None,
            ttl: 1_209_600,
            created_ms: chrono::Utc::now().timestamp_millis(),
            scopes: Vec::new(),
        }),
    );
    // A realistic table: the cache holds other users' tokens too.
    for _ in 0..10_000 {
        let k = token_key(&new_token());
        let t = Arc::new(Token {
            key: k.clone(),
            ..(**plain.get(&key).expect("present")).clone()
        });
        plain.insert(k, t);
    }

    let mut group = c.benchmark_group("token");
    group.bench_function("token_key", |b| b.iter(|| token_key(black_box(&raw))));
    group.bench_function("extract_token", |b| {
        b.iter(|| token::extract_token(&query, None, black_box(&headers), &options))
    });
    group.bench_function("key_plus_hashmap", |b| {
        b.iter(|| plain.get(&token_key(black_box(&raw))).cloned())
    });
    group.bench_function("resolve_hot", |b| {
        b.iter(|| {
            ready(token::resolve(
                Some(black_box(&raw)),
                &store,
                token_model,
                &cache,
                false,
            ))
        })
    });
    group.bench_function("extract_and_resolve_hot", |b| {
        b.iter(|| {
            let id = token::extract_token(&query, None, black_box(&headers), &options);
            ready(token::resolve(
                id.as_deref(),
                &store,
                token_model,
                &cache,
                false,
            ))
        })
    });
    group.finish();
    drop(store);
    drop(rt);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
