//! The one error type of this crate. Every failure to understand a client's filter is a
//! 400 in LoopBack's envelope; the server maps [`QueryError`] onto that envelope, so this
//! module only owns the message text, the optional LoopBack `code` and `details`.

use serde_json::Value;

/// Longest rendering of client input quoted back in an error message. LoopBack echoes the
/// whole value; we cut it so a 100 kB filter cannot produce a 100 kB error body.
const MAX_ECHO: usize = 200;

/// A refused filter, `where`, or object argument. Always answered as HTTP 400.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
    pub code: Option<&'static str>,
    pub details: Option<Value>,
}

impl QueryError {
    /// An error with a message only (most of LoopBack's filter errors have no code).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            details: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The HTTP status: always 400.
    pub fn status(&self) -> u16 {
        400
    }

    /// `Value is not an object.` (strong-remoting's object-argument check).
    pub fn not_an_object() -> Self {
        Self::new("Value is not an object.")
    }

    /// `The qty property has invalid clause {"inq":"3"}: <why>` (juggler's wording).
    pub(crate) fn invalid_clause(property: &str, clause: &Value, why: &str) -> Self {
        Self::new(format!(
            "The {property} property has invalid clause {}: {why}",
            echo(clause)
        ))
    }
}

/// Renders client input as JavaScript's `%j` would (JSON), cut to [`MAX_ECHO`] characters.
pub(crate) fn echo(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    cut(text)
}

/// Cuts a string to [`MAX_ECHO`] characters on a character boundary.
pub(crate) fn cut(text: String) -> String {
    if text.chars().count() <= MAX_ECHO {
        return text;
    }
    let mut out: String = text.chars().take(MAX_ECHO).collect();
    out.push_str("...");
    out
}
