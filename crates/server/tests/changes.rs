//! Change streams (`createChangeStream`): server-sent events filtered per subscriber by the
//! rules that decide what it may read, on one node (SQLite) and across nodes (PostgreSQL).

mod common;

use std::time::Duration;

use common::{hide_drafts, stores_login, wall_user, Body, TestServer};
use portcullis_server::changes::ChangeStreamOptions;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long "no further event" is watched for.
const QUIET: Duration = Duration::from_millis(600);

/// One parsed server-sent event.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    data: Value,
    raw: String,
}

/// A reader of one event stream.
struct Stream {
    res: reqwest::Response,
    buf: String,
    /// Comment lines seen (heartbeats).
    comments: usize,
    ended: bool,
}

impl Stream {
    /// Opens `path` (GET, or POST with a JSON body); the response must be an event stream.
    async fn open(
        s: &TestServer,
        path: &str,
        body: Option<Value>,
        header: Option<(&str, &str)>,
    ) -> Stream {
        let url = format!("{}{}", s.base, path);
        let mut req = match &body {
            Some(b) => s.client.post(url).json(b),
            None => s.client.get(url),
        };
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let res = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("stream opens in time")
            .expect("stream request");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Stream {
            res,
            buf: String::new(),
            comments: 0,
            ended: false,
        }
    }

    /// The next event within `within`; `None` on timeout or when the stream ends.
    async fn next_within(&mut self, within: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    let value = serde_json::from_str(&data).expect("event data is JSON");
                    return Some(Sse {
                        id,
                        data: value,
                        raw: block,
                    });
                }
            }
            if self.ended {
                return None;
            }
            let chunk = match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    self.ended = true;
                    continue;
                }
            };
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn next(&mut self) -> Sse {
        self.next_within(WAIT).await.expect("an event in time")
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn post_text(s: &TestServer, token: &str, text: &str) -> Value {
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts",
            Some(Body::Json(&json!({"text": text}))),
            Some(token),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn wall_subscribers_see_creates_updates_and_removes_without_secrets() {
    let s = TestServer::start("examples/wall").await;
    // Users are not readable by everyone: no stream for an anonymous caller.
    let (st, _) = s.get("/api/appusers/change-stream").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let mut stream = Stream::open(&s, "/api/posts/change-stream", None, None).await;
    let token = wall_user(&s, "w@x.test").await;
    let post = post_text(&s, &token, "hello").await;
    let id = post["id"].clone();

    let created = stream.next().await;
    assert_eq!(created.data["type"], "create", "{:?}", created);
    assert_eq!(created.data["target"], id);
    assert_eq!(created.data["data"]["text"], "hello");
    assert!(created.id.is_some(), "events carry an id: line");
    assert!(!created.raw.contains("password"), "{}", created.raw);

    let (st, body) = s
        .request(
            Method::PATCH,
            &format!("/api/posts/{id}"),
            Some(Body::Json(&json!({"text": "edited"}))),
            Some(&token),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let updated = stream.next().await;
    assert_eq!(updated.data["type"], "update");
    assert_eq!(updated.data["target"], id);
    assert_eq!(updated.data["data"]["text"], "edited");

    let (st, body) = s
        .request(
            Method::DELETE,
            &format!("/api/posts/{id}"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let removed = stream.next().await;
    assert_eq!(removed.data["type"], "remove");
    assert_eq!(removed.data["target"], id);

    // Ids increase.
    let ids: Vec<i64> = [&created, &updated, &removed]
        .iter()
        .map(|e| {
            e.id.as_deref()
                .and_then(|i| i.parse().ok())
                .expect("numeric id")
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn options_where_narrows_the_events() {
    let s = TestServer::start("examples/wall").await;
    let w = r#"{"where":{"text":{"like":"keep%"}}}"#;
    let mut by_query = Stream::open(
        &s,
        &format!("/api/posts/change-stream?options={}", enc(w)),
        None,
        None,
    )
    .await;
    let mut by_body = Stream::open(
        &s,
        "/api/posts/change-stream",
        Some(json!({"options": {"where": {"text": {"like": "keep%"}}}})),
        None,
    )
    .await;
    let token = wall_user(&s, "o@x.test").await;
    post_text(&s, &token, "drop me").await;
    let kept = post_text(&s, &token, "keep me").await;
    for stream in [&mut by_query, &mut by_body] {
        let first = stream.next().await;
        assert_eq!(first.data["data"]["text"], "keep me", "{first:?}");
        assert_eq!(first.data["target"], kept["id"]);
    }
    // The removal of a matching row is judged from its last state.
    let (st, _) = s
        .request(
            Method::DELETE,
            &format!("/api/posts/{}", kept["id"]),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let removed = by_query.next().await;
    assert_eq!(removed.data["type"], "remove");
    assert_eq!(removed.data["target"], kept["id"]);
    assert!(by_body.next().await.data["type"] == "remove");
}

#[tokio::test]
async fn a_bad_where_is_a_400_before_the_stream_opens() {
    let s = TestServer::start("examples/wall").await;
    for options in [
        r#"{"where":{"nor":[{"text":"x"}]}}"#,
        "{bad",
        r#"{"where":7}"#,
    ] {
        let (st, body) = s
            .get(&format!(
                "/api/posts/change-stream?options={}",
                enc(options)
            ))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{options}: {body}");
        common::assert_error(&body, 400);
    }
    let (st, body) = s
        .request(
            Method::POST,
            "/api/posts/change-stream",
            Some(Body::Json(&json!({"options": {"where": {"nor": []}}}))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    common::assert_error(&body, 400);
}

async fn invoice(s: &TestServer, token: &str, store: &str, number: i64) -> Value {
    let (st, body) = s
        .request(
            Method::POST,
            &format!("/api/invoices?access_token={token}"),
            Some(Body::Json(
                &json!({"storeId": store, "invoiceNumber": number}),
            )),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_store_member_never_sees_another_stores_invoices() {
    let s = TestServer::start("examples/stores").await;
    let member_a = stores_login(&s, "storeMemberA").await;
    let admin_a = stores_login(&s, "storeAdminA").await;
    let admin_b = stores_login(&s, "storeAdminB").await;
    // Anonymous callers are refused by the ACLs before any stream opens.
    let (st, _) = s.get("/api/invoices/change-stream").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let mut stream = Stream::open(
        &s,
        &format!("/api/invoices/change-stream?access_token={member_a}"),
        None,
        None,
    )
    .await;
    let in_b = invoice(&s, &admin_b, "B", 9001).await;
    let in_a = invoice(&s, &admin_a, "A", 9002).await;
    let first = stream.next().await;
    assert_eq!(first.data["type"], "create");
    assert_eq!(first.data["data"]["storeId"], "A", "{first:?}");
    assert_eq!(first.data["target"], in_a["id"]);

    // B's invoice changes and goes; A's goes: only A's removal arrives.
    let (st, _) = s
        .request(
            Method::PATCH,
            &format!("/api/invoices/{}?access_token={admin_b}", in_b["id"]),
            Some(Body::Json(&json!({"invoiceNumber": 9003}))),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for (token, row) in [(&admin_b, &in_b), (&admin_a, &in_a)] {
        let (st, _) = s
            .request(
                Method::DELETE,
                &format!("/api/invoices/{}?access_token={token}", row["id"]),
                None,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    let next = stream.next().await;
    assert_eq!(next.data["type"], "remove", "{next:?}");
    assert_eq!(next.data["target"], in_a["id"]);
    if let Some(extra) = stream.next_within(QUIET).await {
        panic!("unexpected event: {extra:?}");
    }
}

#[tokio::test]
async fn a_slow_subscriber_is_dropped_and_the_others_keep_receiving() {
    let s = TestServer::start_with("examples/wall", |b| {
        b.change_streams(ChangeStreamOptions {
            heartbeat: Duration::from_millis(200),
            buffer: 4,
        })
    })
    .await;
    // Never read until the end, over a socket with a small receive buffer: the server's
    // buffers and then its channel fill up.
    let mut slow = RawStream::open(&s, "/api/posts/change-stream").await;
    let fast = Stream::open(&s, "/api/posts/change-stream", None, None).await;
    const POSTS: usize = 80;
    let reader = tokio::spawn(async move {
        let mut fast = fast;
        let mut seen = 0;
        while seen < POSTS {
            match fast.next_within(WAIT).await {
                Some(e) if e.data["type"] == "create" => seen += 1,
                Some(_) => {}
                None => break,
            }
        }
        (seen, fast.comments)
    });
    let token = wall_user(&s, "slow@x.test").await;
    // Big posts, so the slow reader's socket buffers fill with few events.
    let text = "x".repeat(48 * 1024);
    for _ in 0..POSTS {
        post_text(&s, &token, &text).await;
    }
    let (seen, _) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("fast reader in time")
        .expect("fast reader");
    assert_eq!(seen, POSTS, "the fast subscriber got every event");
    // The slow one was dropped: after what was buffered, its stream ends.
    assert!(
        slow.ends_within(Duration::from_secs(10)).await,
        "the slow subscriber's stream should have ended"
    );
}

/// An event stream over a raw socket whose receive buffer is small and fixed.
struct RawStream {
    conn: tokio::net::TcpStream,
}

impl RawStream {
    async fn open(s: &TestServer, path: &str) -> RawStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr: std::net::SocketAddr = s
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("server address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let mut conn = socket.connect(addr).await.expect("connect");
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("request");
        // The head: the subscription exists once it is sent.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tokio::time::timeout(WAIT, conn.read_exact(&mut byte))
                .await
                .expect("response head in time")
                .expect("response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        RawStream { conn }
    }

    /// Reads until the chunked body ends (or the connection closes) within `within`.
    async fn ends_within(&mut self, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 64 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.conn.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 16 {
                        tail.drain(..tail.len() - 16);
                    }
                    if tail.ends_with(b"\r\n0\r\n\r\n") {
                        return true;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn last_event_id_replays_missed_events_and_heartbeats_flow() {
    let s = TestServer::start_with("examples/wall", |b| {
        b.change_streams(ChangeStreamOptions {
            heartbeat: Duration::from_millis(150),
            buffer: 64,
        })
    })
    .await;
    let token = wall_user(&s, "r@x.test").await;
    let mut first = Stream::open(&s, "/api/posts/change-stream", None, None).await;
    post_text(&s, &token, "one").await;
    let one = first.next().await;
    // Heartbeats while idle.
    assert!(first
        .next_within(Duration::from_millis(500))
        .await
        .is_none());
    assert!(first.comments > 0, "no heartbeat comment seen");
    drop(first);
    post_text(&s, &token, "two").await;
    post_text(&s, &token, "three").await;
    let last = one.id.expect("id");
    let mut again = Stream::open(
        &s,
        "/api/posts/change-stream",
        None,
        Some(("Last-Event-ID", &last)),
    )
    .await;
    assert_eq!(again.next().await.data["data"]["text"], "two");
    assert_eq!(again.next().await.data["data"]["text"], "three");
    post_text(&s, &token, "four").await;
    assert_eq!(again.next().await.data["data"]["text"], "four");
}

#[tokio::test]
async fn an_event_written_on_one_node_reaches_subscribers_of_every_node() {
    if common::pg_backend().is_none() {
        eprintln!(
            "notice: {}=postgres and {} not set: skipping the multi-node change-stream test",
            common::BACKEND_ENV,
            common::PG_ENV
        );
        return;
    }
    let Some(url) = common::pg_url() else { return };
    let (a, b) = TestServer::start_pair("examples/wall", &url).await;
    let mut on_b = Stream::open(&b, "/api/posts/change-stream", None, None).await;
    let mut on_a = Stream::open(&a, "/api/posts/change-stream", None, None).await;
    let token = wall_user(&a, "n@x.test").await;
    let post = post_text(&a, &token, "across").await;
    let got = on_b.next().await;
    assert_eq!(got.data["type"], "create");
    assert_eq!(got.data["target"], post["id"]);
    // The writing node delivers it once, with the same id.
    let mine = on_a.next().await;
    assert_eq!(mine.id, got.id);
    if let Some(extra) = on_a.next_within(QUIET).await {
        panic!("delivered twice: {extra:?}");
    }
    // Replay from the outbox on the other node.
    let mut replay = Stream::open(
        &b,
        "/api/posts/change-stream",
        None,
        Some(("Last-Event-ID", "0")),
    )
    .await;
    let again = replay.next().await;
    assert_eq!(again.data["target"], post["id"]);
}

#[tokio::test]
async fn bulk_updates_and_relation_deletes_stream_every_row() {
    let s = TestServer::start("crates/server/tests/fixtures/library").await;
    let mut stream = Stream::open(&s, "/api/Books/change-stream", None, None).await;
    let (st, author) = s.post("/api/Authors", &json!({"name": "Ann"})).await;
    assert_eq!(st, StatusCode::OK, "{author}");
    let aid = &author["id"];
    let mut ids = Vec::new();
    for (title, pages) in [("A", 50), ("B", 500), ("C", 900)] {
        let (st, book) = s
            .post(
                &format!("/api/Authors/{aid}/books"),
                &json!({"title": title, "pages": pages}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{book}");
        let created = stream.next().await;
        assert_eq!(created.data["type"], "create", "{created:?}");
        assert_eq!(created.data["target"], book["id"]);
        ids.push(book["id"].clone());
    }

    // `updateAll`: one update per changed row, with the row as it is now.
    let w = enc(r#"{"pages":{"gt":100}}"#);
    let (st, body) = s
        .post(
            &format!("/api/Books/update?where={w}"),
            &json!({"available": false}),
        )
        .await;
    assert_eq!((st, body), (StatusCode::OK, json!({"count": 2})));
    let mut updated = Vec::new();
    for _ in 0..2 {
        let e = stream.next().await;
        assert_eq!(e.data["type"], "update", "{e:?}");
        assert_eq!(e.data["data"]["available"], json!(false));
        updated.push(e.data["target"].clone());
    }
    updated.sort_by_key(|v| v.to_string());
    assert_eq!(updated, vec![ids[1].clone(), ids[2].clone()]);

    // Deleting through the relation: one remove per row.
    let (st, _) = s
        .request(
            Method::DELETE,
            &format!("/api/Authors/{aid}/books"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let mut removed = Vec::new();
    for _ in 0..3 {
        let e = stream.next().await;
        assert_eq!(e.data["type"], "remove", "{e:?}");
        removed.push(e.data["target"].clone());
    }
    removed.sort_by_key(|v| v.to_string());
    assert_eq!(removed, ids);
    assert!(
        stream.next_within(QUIET).await.is_none(),
        "one event per row, no more"
    );
}

/// Stand-in embargo: post 2 may not be read by anyone.
fn embargo(
    ctx: portcullis_server::authorize::VoterContext,
) -> portcullis_server::access::BoxFuture<'static, Result<portcullis_authz::Vote, String>> {
    Box::pin(async move {
        Ok(if ctx.instance_id.as_deref() == Some("2") {
            portcullis_authz::Vote::Deny
        } else {
            portcullis_authz::Vote::Abstain
        })
    })
}

#[tokio::test]
async fn voters_and_access_hooks_judge_events_as_they_judge_requests() {
    let s = TestServer::start_with("examples/wall", |b| {
        b.register_voter("embargo", embargo)
            .authorize(
                "Post",
                "findById",
                portcullis_server::remote::AuthorizeMeta {
                    voters: vec!["embargo".into()],
                    ..Default::default()
                },
            )
            .observe(
                "Post",
                portcullis_server::hooks::Operation::Access,
                hide_drafts,
            )
    })
    .await;
    let mut stream = Stream::open(&s, "/api/posts/change-stream", None, None).await;
    let token = wall_user(&s, "v@x.test").await;
    let one = post_text(&s, &token, "one").await;
    let two = post_text(&s, &token, "two").await;
    let draft = post_text(&s, &token, "draft").await;
    let four = post_text(&s, &token, "four").await;
    // The requests' answers, which the stream must agree with.
    for (post, want) in [
        (&one, StatusCode::OK),
        (&two, StatusCode::UNAUTHORIZED),
        (&draft, StatusCode::NOT_FOUND),
        (&four, StatusCode::OK),
    ] {
        let (st, _) = s.get(&format!("/api/posts/{}", post["id"])).await;
        assert_eq!(st, want, "{post}");
    }
    let first = stream.next().await;
    assert_eq!(first.data["target"], one["id"], "{first:?}");
    let second = stream.next().await;
    assert_eq!(
        second.data["target"], four["id"],
        "the embargoed post and the draft are not delivered: {second:?}"
    );
    // Removals are judged the same way, from the last state.
    for post in [&two, &draft, &one] {
        let (st, body) = s
            .request(
                Method::DELETE,
                &format!("/api/posts/{}", post["id"]),
                None,
                Some(&token),
            )
            .await;
        // The draft is hidden from the owner check's query too: whether that deletes it
        // or not, no event may show it.
        if post != &draft {
            assert_eq!(st, StatusCode::OK, "{body}");
        }
    }
    let removed = stream.next().await;
    assert_eq!(
        (removed.data["type"].clone(), removed.data["target"].clone()),
        (json!("remove"), one["id"].clone())
    );
    assert!(stream.next_within(QUIET).await.is_none());
}
