//! SMTP delivery for LoopBack's mail connector: a `"connector": "mail"` datasource in
//! `server/datasources.json` whose first transport is `{"type": "SMTP", ...}` sends the
//! verification and reset mails through [`SmtpMailer`] (lettre, tokio, rustls).
//!
//! The transport options are nodemailer's, as LoopBack passes them through: `host`
//! (default `localhost`), `port` (default 465 with `secure`, else 587), `secure` (implicit
//! TLS; also implied by port 465 when `secure` is absent), `ignoreTLS` (plain text),
//! `requireTLS` (STARTTLS or fail), otherwise STARTTLS when the server offers it, `auth.user`
//! / `auth.pass`, `tls.rejectUnauthorized: false` (certificates not checked), `name` (the
//! EHLO name), and `connectionTimeout` / `socketTimeout` in milliseconds, which bound the
//! connection and the whole exchange (10 s each by default, so that a dead server cannot
//! hold a request).

use std::fmt;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_schema::{App, Connector};
use serde_json::Value;

use crate::access::BoxFuture;
use crate::mail::{Mail, Mailer};

/// The default for both the connection and the whole-exchange timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (SMTPS, `secure: true`).
    Implicit,
    /// STARTTLS when the server offers it, plain text otherwise (nodemailer's default).
    Opportunistic,
    /// STARTTLS or fail (`requireTLS: true`).
    Required,
    /// Plain text only (`ignoreTLS: true`).
    None,
}

/// One SMTP transport from a mail datasource, after validation.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpOptions {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// `tls.rejectUnauthorized: false`: accept any certificate and host name.
    pub accept_invalid_certs: bool,
    pub user: Option<String>,
    pub pass: Option<String>,
    /// The EHLO name (`name`); the machine's host name when absent.
    pub hello_name: Option<String>,
    pub connect_timeout: Duration,
    /// Bounds the whole exchange, greeting to QUIT.
    pub send_timeout: Duration,
}

impl fmt::Debug for SmtpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("user", &self.user)
            .field("pass", &self.pass.as_ref().map(|_| "<redacted>"))
            .field("hello_name", &self.hello_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .finish()
    }
}

/// Whether a transport entry is an SMTP one (`type` compared case-insensitively).
pub fn is_smtp_transport(transport: &Value) -> bool {
    transport
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("smtp"))
}

impl SmtpOptions {
    /// Reads one entry of a mail datasource's `transports`.
    pub fn from_transport(t: &Value) -> Result<Self, String> {
        let obj = t
            .as_object()
            .ok_or_else(|| "a transport must be an object".to_string())?;
        if !is_smtp_transport(t) {
            return Err("the transport `type` must be `SMTP`".into());
        }
        if obj.contains_key("service") && !obj.contains_key("host") {
            return Err(
                "`service` (nodemailer's well-known services) is not supported; give `host` and `port`"
                    .into(),
            );
        }
        let flag = |key: &str| -> Result<Option<bool>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(format!("`{key}` must be true or false")),
            }
        };
        let string = |v: Option<&Value>, key: &str| -> Result<Option<String>, String> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(format!("`{key}` must be a non-empty string")),
            }
        };
        let millis = |key: &str| -> Result<Option<Duration>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64().filter(|ms| *ms > 0) {
                    Some(ms) => Ok(Some(Duration::from_millis(ms))),
                    None => Err(format!("`{key}` must be a positive number of milliseconds")),
                },
            }
        };

        let host = string(obj.get("host"), "host")?.unwrap_or_else(|| "localhost".into());
        let port = match obj.get("port") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                match n.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
                    Some(p) => Some(p),
                    None => return Err("`port` must be a port number (1-65535)".into()),
                }
            }
        };
        // nodemailer: an explicit `secure` wins; without it, port 465 means implicit TLS.
        let secure = match flag("secure")? {
            Some(s) => s,
            None => port == Some(465),
        };
        let port = port.unwrap_or(if secure { 465 } else { 587 });
        let security = if secure {
            Security::Implicit
        } else if flag("ignoreTLS")?.unwrap_or(false) {
            Security::None
        } else if flag("requireTLS")?.unwrap_or(false) {
            Security::Required
        } else {
            Security::Opportunistic
        };

        let accept_invalid_certs = match obj.get("tls") {
            None | Some(Value::Null) => false,
            Some(Value::Object(tls)) => match tls.get("rejectUnauthorized") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => !b,
                Some(_) => return Err("`tls.rejectUnauthorized` must be true or false".into()),
            },
            Some(_) => return Err("`tls` must be an object".into()),
        };

        let (user, pass) = match obj.get("auth") {
            None | Some(Value::Null) => (None, None),
            Some(Value::Object(auth)) => {
                if let Some(kind) = auth.get("type").and_then(Value::as_str) {
                    if !kind.eq_ignore_ascii_case("login") {
                        return Err(format!(
                            "`auth.type` `{kind}` is not supported (only user and password)"
                        ));
                    }
                }
                let user = string(auth.get("user"), "auth.user")?;
                // The password is never echoed, whatever is wrong with it.
                let pass = match auth.get("pass") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err("`auth.pass` must be a string".into()),
                };
                match (user, pass) {
                    (Some(u), Some(p)) => (Some(u), Some(p)),
                    (None, None) => (None, None),
                    _ => return Err("`auth` needs both `user` and `pass`".into()),
                }
            }
            Some(_) => return Err("`auth` must be an object".into()),
        };

        Ok(Self {
            host,
            port,
            security,
            accept_invalid_certs,
            user,
            pass,
            hello_name: string(obj.get("name"), "name")?,
            connect_timeout: millis("connectionTimeout")?.unwrap_or(DEFAULT_TIMEOUT),
            send_timeout: millis("socketTimeout")?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// Sends mail over SMTP, one connection per message.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    send_timeout: Duration,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(opts: &SmtpOptions) -> Result<Self, String> {
        let server = format!("{}:{}", opts.host, opts.port);
        let tls_params = || {
            TlsParameters::builder(opts.host.clone())
                .dangerous_accept_invalid_certs(opts.accept_invalid_certs)
                .dangerous_accept_invalid_hostnames(opts.accept_invalid_certs)
                .build_rustls()
                .map_err(|e| format!("SMTP {server}: TLS setup failed: {e}"))
        };
        let tls = match opts.security {
            Security::Implicit => Tls::Wrapper(tls_params()?),
            Security::Opportunistic => Tls::Opportunistic(tls_params()?),
            Security::Required => Tls::Required(tls_params()?),
            Security::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&opts.host)
            .port(opts.port)
            .tls(tls)
            .timeout(Some(opts.connect_timeout));
        if let (Some(user), Some(pass)) = (&opts.user, &opts.pass) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        if let Some(name) = &opts.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            server,
            send_timeout: opts.send_timeout,
        })
    }

    /// The SMTP mailer an app's datasources configure, if any: the mail datasource the
    /// `Email` model is attached to, else the first mail datasource, when its first
    /// transport is SMTP. An invalid SMTP transport is an error.
    pub fn from_app(app: &App) -> Result<Option<Self>, String> {
        let mail_ds = |name: &str| {
            app.datasources
                .get(name)
                .filter(|ds| matches!(ds.connector, Connector::Mail { .. }))
        };
        let ds = app
            .model_by_name("Email")
            .and_then(|m| m.data_source.as_deref())
            .and_then(mail_ds)
            .or_else(|| {
                app.datasources
                    .values()
                    .find(|ds| matches!(ds.connector, Connector::Mail { .. }))
            });
        let Some(ds) = ds else {
            return Ok(None);
        };
        let Connector::Mail { transports } = &ds.connector else {
            return Ok(None);
        };
        let Some(first) = transports.first() else {
            tracing::warn!(
                "mail datasource `{}` has no transports: mails are written to the log",
                ds.name
            );
            return Ok(None);
        };
        if !is_smtp_transport(first) {
            let kind = first.get("type").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(
                "mail datasource `{}`: transport type `{kind}` is not supported (only SMTP): mails are written to the log",
                ds.name
            );
            return Ok(None);
        }
        let opts = SmtpOptions::from_transport(first)
            .map_err(|e| format!("mail datasource `{}`: {e}", ds.name))?;
        if opts.accept_invalid_certs && opts.security != Security::None {
            tracing::warn!(
                "mail datasource `{}`: TLS certificates of {} are not checked (tls.rejectUnauthorized: false)",
                ds.name,
                opts.host
            );
        }
        if opts.user.is_some() && opts.security == Security::None {
            tracing::warn!(
                "mail datasource `{}`: ignoreTLS is set, so the SMTP password is sent in plain text",
                ds.name
            );
        }
        let mailer = Self::new(&opts).map_err(|e| format!("mail datasource `{}`: {e}", ds.name))?;
        tracing::info!(
            "mail: SMTP via {} ({:?} TLS, {})",
            mailer.server,
            opts.security,
            if opts.user.is_some() {
                "with login"
            } else {
                "no login"
            }
        );
        Ok(Some(mailer))
    }

    async fn deliver(&self, mail: Mail) -> Result<(), String> {
        let from: Mailbox = mail
            .from
            .parse()
            .map_err(|e| format!("invalid sender address `{}`: {e}", mail.from))?;
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("invalid recipient address: {e}"))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text)
            .map_err(|e| format!("cannot build the message: {e}"))?;
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("SMTP {}: {e}", self.server)),
            Err(_) => Err(format!(
                "SMTP {}: no answer within {} ms",
                self.server,
                self.send_timeout.as_millis()
            )),
        }
    }
}

impl Mailer for SmtpMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), String>> {
        // The callers log failures (verify answers 500, reset logs and answers 204).
        Box::pin(self.deliver(mail))
    }
}
