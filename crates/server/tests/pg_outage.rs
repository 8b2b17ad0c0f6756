//! The database goes away mid-run: requests get 503 in the envelope within the pool's
//! timeout (no hang), and the node recovers by itself when the database returns. Runs only
//! when `PORTCULLIS_TEST_DATABASE_URL` names a PostgreSQL server; the server reaches it
//! through a TCP proxy this test can cut.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use reqwest::StatusCode;

/// A TCP proxy to PostgreSQL that can drop every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                if let Ok(mut v) = c.lock() {
                    v.push(handle);
                }
            }
        });
        Proxy { port, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut v) = self.conns.lock() {
            for h in v.drain(..) {
                h.abort();
            }
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` → (`host:port`, the same URL through 127.0.0.1:`port`).
fn split(url: &str, proxy_port: u16) -> (String, String) {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let host_start = url[after_scheme..]
        .find('@')
        .map(|i| after_scheme + i + 1)
        .unwrap_or(after_scheme);
    let host_end = url[host_start..]
        .find('/')
        .map(|i| host_start + i)
        .unwrap_or(url.len());
    let hostport = &url[host_start..host_end];
    let upstream = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    let proxied = format!(
        "{}127.0.0.1:{proxy_port}{}",
        &url[..host_start],
        &url[host_end..]
    );
    (upstream, proxied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_503_and_the_node_recovers() {
    let Some(url) = common::pg_url() else {
        eprintln!(
            "notice: {} not set: skipping the outage test",
            common::PG_ENV
        );
        return;
    };
    let (upstream, _) = split(&url, 0);
    let proxy = Proxy::start(upstream).await;
    let (_, proxied) = split(&url, proxy.port);
    let dir = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&common::workspace_root().join("examples/wall"), dir.path());
    let target = common::use_postgres(dir.path(), &proxied);
    let s = TestServer::start_in(dir).await;
    assert_eq!(s.get("/api/posts").await.0, StatusCode::OK);

    proxy.down();
    let started = Instant::now();
    let (st, body) = s.get("/api/posts").await;
    let took = started.elapsed();
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    common::assert_error(&body, 503);
    assert!(
        took < Duration::from_secs(10),
        "answered after {took:?}: no hang beyond the pool timeout"
    );

    proxy.restore();
    let started = Instant::now();
    loop {
        let (st, _) = s.get("/api/posts").await;
        if st == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {st} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(s);
    target.drop_schema();
}
