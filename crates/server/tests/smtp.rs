//! SMTP delivery configured by a LoopBack mail datasource, against a tiny fake SMTP server
//! run inside the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use portcullis_server::mail::{Mail, Mailer, MemoryMailer};
use portcullis_server::smtp::{Security, SmtpMailer, SmtpOptions};
use portcullis_server::{ServerBuilder, StartError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the fake server received it.
#[derive(Debug, Clone, Default)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
    /// `user:pass` from `AUTH PLAIN`, when the client logged in.
    auth: Option<String>,
}

/// A fake SMTP server on 127.0.0.1: greets, answers EHLO without STARTTLS, takes AUTH PLAIN,
/// MAIL, RCPT and DATA, and keeps what it was sent.
struct FakeSmtp {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store).await;
                });
            }
        });
        FakeSmtp {
            port,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Received>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 fake.test ESMTP ready\r\n").await?;
    let mut current = Received::default();
    let mut auth = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-fake.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("AUTH PLAIN ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line[11..].trim())
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            auth = Some(parts[1..].join(":"));
            b"235 authenticated\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            current = Received {
                mail_from: line[10..].trim().to_string(),
                ..Received::default()
            };
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            current.rcpt_to.push(line[8..].trim().to_string());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                // Dot-stuffing (RFC 5321 4.5.2).
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            current.data = data;
            current.auth = auth.clone();
            store
                .lock()
                .expect("lock")
                .push(std::mem::take(&mut current));
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// The body of a message, with quoted-printable undone when the message uses it.
fn body_text(data: &str) -> String {
    let (headers, body) = data.split_once("\r\n\r\n").expect("headers and body");
    if !headers
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: quoted-printable")
    {
        return body.to_string();
    }
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 body")
}

/// A copy of the wall example with `transport` as the only transport of a mail datasource.
fn wall_with_mail(transport: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&common::workspace_root().join("examples/wall"), dir.path());
    let path = dir.path().join("server/datasources.json");
    let mut ds: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    ds["emailDs"] = json!({"name": "emailDs", "connector": "mail", "transports": [transport]});
    std::fs::write(&path, serde_json::to_string_pretty(&ds).expect("json")).expect("write");
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.contains(".sqlite") || name_str == "node_modules" {
            continue;
        }
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

async fn register(s: &TestServer, email: &str) {
    let (st, body) = s
        .post("/api/appusers", &json!({"email": email, "password": "pw"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
}

/// `POST /api/appusers/1/verify`, failing the test if it takes longer than `limit`.
async fn verify_within(s: &TestServer, limit: Duration) -> (StatusCode, Duration) {
    let started = Instant::now();
    let (st, _) = tokio::time::timeout(
        limit,
        s.request(Method::POST, "/api/appusers/1/verify", None, None),
    )
    .await
    .expect("verify answers in time");
    (st, started.elapsed())
}

#[tokio::test]
async fn verification_mail_goes_through_the_smtp_datasource() {
    let smtp = FakeSmtp::start().await;
    let dir = wall_with_mail(json!({
        "type": "SMTP", "host": "127.0.0.1", "port": smtp.port, "ignoreTLS": true,
        "auth": {"user": "mailer", "pass": "s3cret"}
    }));
    let s = TestServer::start_in_with(dir, |b| b).await;
    register(&s, "ann@example.com").await;
    let (st, _) = verify_within(&s, Duration::from_secs(20)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let got = smtp.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let msg = &got[0];
    assert_eq!(msg.auth.as_deref(), Some("mailer:s3cret"));
    assert_eq!(msg.mail_from, "<noreply@example.com>");
    assert_eq!(msg.rcpt_to, vec!["<ann@example.com>".to_string()]);
    assert!(msg.data.contains("To: ann@example.com"), "{}", msg.data);
    assert!(
        msg.data.contains("Subject: Thanks for Registering"),
        "{}",
        msg.data
    );
    let body = body_text(&msg.data);
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("a link in the mail");
    assert!(
        link.starts_with("http://localhost:3000/api/appusers/confirm?uid=1&redirect="),
        "{link}"
    );
    let token = link.split("token=").nth(1).expect("token in link");
    assert_eq!(token.len(), 128, "{link}");

    // The link works.
    let path = link.trim_start_matches("http://localhost:3000");
    let (st, body) = s.get(path).await;
    assert!(st.is_success() || st.is_redirection(), "{st} {body}");
}

#[tokio::test]
async fn starttls_is_opportunistic_by_default() {
    // Without `ignoreTLS`, a server that offers no STARTTLS still gets the message in plain
    // text, as nodemailer does.
    let smtp = FakeSmtp::start().await;
    let opts = SmtpOptions::from_transport(
        &json!({"type": "smtp", "host": "127.0.0.1", "port": smtp.port}),
    )
    .expect("options");
    assert_eq!(opts.security, Security::Opportunistic);
    let mailer = SmtpMailer::new(&opts).expect("mailer");
    mailer
        .send(Mail {
            to: "Bob <bob@example.com>".into(),
            from: "Wall <wall@example.com>".into(),
            subject: "hi".into(),
            text: "hello\n.dot line".into(),
        })
        .await
        .expect("sent");
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["<bob@example.com>".to_string()]);
    assert_eq!(got[0].auth, None);
    assert!(body_text(&got[0].data).contains(".dot line"));
}

#[tokio::test]
async fn a_closed_port_fails_fast() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = wall_with_mail(json!({
        "type": "SMTP", "host": "127.0.0.1", "port": port, "ignoreTLS": true
    }));
    let s = TestServer::start_in_with(dir, |b| b).await;
    register(&s, "ann@example.com").await;
    let (st, took) = verify_within(&s, Duration::from_secs(15)).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(took < Duration::from_secs(11), "{took:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let dir = wall_with_mail(json!({
        "type": "SMTP", "host": "127.0.0.1", "port": port, "ignoreTLS": true,
        "socketTimeout": 500
    }));
    let s = TestServer::start_in_with(dir, |b| b).await;
    register(&s, "ann@example.com").await;
    let (st, took) = verify_within(&s, Duration::from_secs(10)).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(took < Duration::from_secs(5), "{took:?}");
    hold.abort();
}

#[tokio::test]
async fn an_explicit_mailer_wins_over_the_datasource() {
    let dir = wall_with_mail(json!({"type": "SMTP", "host": "127.0.0.1", "port": 9}));
    let memory = MemoryMailer::default();
    let m = memory.clone();
    let s = TestServer::start_in_with(dir, move |b| b.mailer(Arc::new(m))).await;
    register(&s, "ann@example.com").await;
    let (st, _) = verify_within(&s, Duration::from_secs(10)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(memory.sent().len(), 1);
}

#[tokio::test]
async fn an_invalid_mail_datasource_stops_start_up() {
    let dir = wall_with_mail(json!({
        "type": "SMTP", "host": "smtp.example.com", "port": "not a port",
        "auth": {"user": "u", "pass": "hunter2"}
    }));
    let app = portcullis_schema::load_app(dir.path()).expect("app loads");
    match ServerBuilder::new(app).build().await {
        Err(StartError::Config(msg)) => {
            assert!(msg.contains("emailDs") && msg.contains("port"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("an invalid mail datasource must not start"),
    }
}

#[tokio::test]
async fn other_transport_types_keep_the_log_mailer() {
    let dir = wall_with_mail(json!({"type": "stub"}));
    let s = TestServer::start_in_with(dir, |b| b).await;
    register(&s, "ann@example.com").await;
    let (st, _) = verify_within(&s, Duration::from_secs(10)).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
}

fn opts(v: Value) -> SmtpOptions {
    SmtpOptions::from_transport(&v).expect("valid options")
}

fn err(v: Value) -> String {
    SmtpOptions::from_transport(&v).expect_err("invalid options")
}

#[test]
fn option_mapping() {
    let o = opts(json!({"type": "SMTP"}));
    assert_eq!(
        (o.host.as_str(), o.port, o.security),
        ("localhost", 587, Security::Opportunistic)
    );
    assert!(!o.accept_invalid_certs);
    assert_eq!((o.user, o.pass), (None, None));
    assert_eq!(o.connect_timeout, Duration::from_secs(10));
    assert_eq!(o.send_timeout, Duration::from_secs(10));

    // LoopBack's documented example.
    let o = opts(json!({
        "type": "SMTP", "host": "smtp.example.com", "secure": true, "port": 465,
        "tls": {"rejectUnauthorized": false},
        "auth": {"user": "me@example.com", "pass": "hunter2"}
    }));
    assert_eq!(
        (o.host.as_str(), o.port, o.security),
        ("smtp.example.com", 465, Security::Implicit)
    );
    assert!(o.accept_invalid_certs);
    assert_eq!(o.user.as_deref(), Some("me@example.com"));
    assert_eq!(o.pass.as_deref(), Some("hunter2"));
    assert!(!format!("{o:?}").contains("hunter2"));

    assert_eq!(opts(json!({"type": "smtp", "secure": true})).port, 465);
    assert_eq!(
        opts(json!({"type": "Smtp", "port": 465})).security,
        Security::Implicit,
        "port 465 without `secure` means implicit TLS, as in nodemailer"
    );
    let o = opts(json!({"type": "SMTP", "port": 465, "secure": false}));
    assert_eq!((o.port, o.security), (465, Security::Opportunistic));
    let o = opts(json!({"type": "SMTP", "port": "2525", "ignoreTLS": true}));
    assert_eq!((o.port, o.security), (2525, Security::None));
    assert_eq!(
        opts(json!({"type": "SMTP", "requireTLS": true})).security,
        Security::Required
    );
    assert!(
        !opts(json!({"type": "SMTP", "tls": {"rejectUnauthorized": true}})).accept_invalid_certs
    );
    let o = opts(json!({"type": "SMTP", "name": "app.example.com",
                        "connectionTimeout": 2000, "socketTimeout": 3000}));
    assert_eq!(o.hello_name.as_deref(), Some("app.example.com"));
    assert_eq!(o.connect_timeout, Duration::from_secs(2));
    assert_eq!(o.send_timeout, Duration::from_secs(3));

    for bad in [
        json!({"type": "SMTP", "port": 0}),
        json!({"type": "SMTP", "port": 70000}),
        json!({"type": "SMTP", "port": "x"}),
        json!({"type": "SMTP", "secure": "yes"}),
        json!({"type": "SMTP", "host": ""}),
        json!({"type": "SMTP", "tls": true}),
        json!({"type": "SMTP", "auth": {"user": "u"}}),
        json!({"type": "SMTP", "auth": {"pass": "hunter2"}}),
        json!({"type": "SMTP", "auth": {"type": "OAuth2", "user": "u"}}),
        json!({"type": "SMTP", "service": "gmail"}),
        json!({"type": "SMTP", "socketTimeout": -1}),
        json!({"type": "stub"}),
        json!("SMTP"),
    ] {
        let e = err(bad.clone());
        assert!(!e.contains("hunter2"), "{bad}: {e}");
    }
}
