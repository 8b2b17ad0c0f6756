//! Raw axum "ceiling" server for bench/run.
//!
//! `GET /api/posts` (any query string) answers the 20 newest of the benchmark's seeded posts,
//! newest first, as JSON: the same bytes Portcullis sends for
//! `GET /api/posts?filter[order]=created%20DESC&filter[limit]=20` on the seeded wall
//! (bench/run checks that byte for byte before measuring). The rows are built once at start
//! from the same formula as the seed (post i: created 2020-01-01 + i minutes, alternating
//! owners 1/2, id i+1) and serialized on every request, like a real endpoint would.
//!
//! Usage: `ceiling --port N [--posts 10000]` (binds 127.0.0.1 only).

use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use serde::Serialize;

/// Field order matches Portcullis's response (model property order, then the id).
#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Post {
    created: String,
    text: String,
    owner_id: u64,
    id: u64,
}

/// `2020-01-01T00:00:00.000Z` plus `minutes`, in JavaScript's `toISOString()` form.
fn iso_minutes_after_2020(minutes: u64) -> String {
    let (mut days, rem) = (minutes / 1440, minutes % 1440);
    let (hour, minute) = (rem / 60, rem % 60);
    let mut year = 2020u64;
    loop {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let len = if leap { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for len in months {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02}T{hour:02}:{minute:02}:00.000Z",
        days + 1
    )
}

async fn list(State(posts): State<Arc<Vec<Post>>>) -> impl IntoResponse {
    // Serialize per request from structs, as an endpoint backed by a cache would.
    let body = serde_json::to_vec(posts.as_slice()).unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
}

#[tokio::main]
async fn main() {
    let mut port: u16 = 3104;
    let mut total: u64 = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--posts" => total = args.next().and_then(|v| v.parse().ok()).expect("--posts N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let posts: Vec<Post> = (0..total)
        .rev()
        .take(20)
        .map(|i| Post {
            created: iso_minutes_after_2020(i),
            text: format!("post number {i} lorem ipsum dolor sit amet"),
            owner_id: if i % 2 == 0 { 1 } else { 2 },
            id: i + 1,
        })
        .collect();
    let app = Router::new()
        .route("/api/posts", get(list))
        .with_state(Arc::new(posts));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("READY ceiling on 127.0.0.1:{port}");
    axum::serve(listener, app).await.expect("serve");
}
