//! Outgoing mail (verification and password-reset messages) behind one transport trait.
//! The default transport writes each message to the log, for development; apps that send
//! real mail configure a transport in `datasources.json` or register their own.

use std::sync::{Arc, Mutex};

use crate::access::BoxFuture;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub from: String,
    pub subject: String,
    pub text: String,
}

/// Where messages go.
pub trait Mailer: Send + Sync {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), String>>;
}

/// Writes messages to the log under the target `portcullis::mail`. The messages contain
/// single-use links, so this transport is meant for development only; a warning at start-up
/// says so.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(target: "portcullis::mail", to = %mail.to, from = %mail.from, subject = %mail.subject, "\n{}", mail.text);
            Ok(())
        })
    }
}

/// Keeps messages in memory; for tests and embedding.
#[derive(Clone, Default)]
pub struct MemoryMailer {
    sent: Arc<Mutex<Vec<Mail>>>,
}

impl MemoryMailer {
    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Mailer for MemoryMailer {
    fn send(&self, mail: Mail) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if let Ok(mut v) = self.sent.lock() {
                v.push(mail);
            }
            Ok(())
        })
    }
}
