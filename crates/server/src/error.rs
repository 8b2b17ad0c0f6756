//! The one error type of the HTTP layer, rendered as LoopBack's strong-error-handler
//! envelope: `{"error":{"statusCode","name","message","code","details"}}`. Every failure
//! a client can see goes through here, including axum's own rejections.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_query::QueryError;
use portcullis_store::StoreError;
use serde_json::{json, Map, Value};

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub name: &'static str,
    pub message: String,
    pub code: Option<&'static str>,
    pub details: Option<Box<Value>>,
    /// The cause of a 5xx, for the log only; never sent.
    pub internal: Option<Box<str>>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            name: "Error",
            message: message.into(),
            code: None,
            details: None,
            internal: None,
            retry_after: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// An unexpected failure: the client sees only "Internal Server Error"; the cause is
    /// logged.
    pub fn internal(cause: impl Into<String>) -> Self {
        let mut e = Self::new(500, "Internal Server Error");
        e.internal = Some(cause.into().into_boxed_str());
        e
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn model_not_found(message: impl Into<String>) -> Self {
        Self::new(404, message).code("MODEL_NOT_FOUND")
    }

    pub fn unavailable(cause: impl Into<String>) -> Self {
        let mut e = Self::new(503, "Service Unavailable");
        e.internal = Some(cause.into().into_boxed_str());
        e
    }

    /// LoopBack's `ValidationError` (422) for one model instance.
    pub fn validation(model: &str, failures: &ValidationFailures) -> Self {
        let mut codes = Map::new();
        let mut messages = Map::new();
        let mut parts = Vec::new();
        for f in &failures.0 {
            push_to(&mut codes, &f.property, Value::String(f.code.to_string()));
            push_to(&mut messages, &f.property, Value::String(f.message.clone()));
            parts.push(format!(
                "`{}` {} (value: {})",
                f.property,
                f.message,
                describe_value(f.value.as_ref())
            ));
        }
        Self::new(
            422,
            format!(
                "The `{model}` instance is not valid. Details: {}.",
                parts.join("; ")
            ),
        )
        .name("ValidationError")
        .details(json!({"context": model, "codes": codes, "messages": messages}))
    }

    /// The JSON body, in strong-error-handler's key order.
    pub fn body(&self, debug: bool) -> Value {
        let mut inner = Map::new();
        inner.insert("statusCode".into(), json!(self.status));
        if self.status >= 500 && !debug {
            inner.insert("message".into(), json!(reason_phrase(self.status)));
            return json!({ "error": inner });
        }
        inner.insert("name".into(), json!(self.name));
        inner.insert("message".into(), json!(self.message));
        if let Some(code) = self.code {
            inner.insert("code".into(), json!(code));
        }
        if let Some(details) = &self.details {
            inner.insert("details".into(), (**details).clone());
        }
        json!({ "error": inner })
    }
}

fn push_to(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get_mut(key) {
        Some(Value::Array(items)) => items.push(value),
        _ => {
            map.insert(key.to_string(), Value::Array(vec![value]));
        }
    }
}

/// How LoopBack prints a value inside a validation message.
fn describe_value(value: Option<&Value>) -> String {
    match value {
        None => "undefined".into(),
        Some(Value::String(s)) => {
            let shown: String = if s.chars().count() > 32 {
                format!("{}...", s.chars().take(29).collect::<String>())
            } else {
                s.clone()
            };
            serde_json::to_string(&shown).unwrap_or_default()
        }
        Some(other) => other.to_string(),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Internal Server Error")
}

/// One failed validation of one property.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationFailure {
    pub property: String,
    pub code: &'static str,
    pub message: String,
    pub value: Option<Value>,
}

/// The failures collected while validating one instance, in the order found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationFailures(pub Vec<ValidationFailure>);

impl ValidationFailures {
    pub fn add(
        &mut self,
        property: &str,
        code: &'static str,
        message: impl Into<String>,
        value: Option<&Value>,
    ) {
        self.0.push(ValidationFailure {
            property: property.to_string(),
            code,
            message: message.into(),
            value: value.cloned(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let mut out = ApiError::bad_request(e.message);
        out.code = e.code;
        out.details = e.details.map(Box::new);
        out
    }
}

/// Store failures map explicitly: a unique index refusal is the client's 422, a busy or
/// unreachable database is 503, anything else is ours (500).
pub fn store_error(model: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::UniqueViolation { property, .. } => {
            let property = property.unwrap_or_else(|| "id".into());
            let mut failures = ValidationFailures::default();
            failures.add(&property, "uniqueness", "already exists", None);
            ApiError::validation(model, &failures)
        }
        StoreError::MultipleMatches => ApiError::bad_request(
            "There are multiple instances found.Upsert Operation will not be performed!",
        ),
        StoreError::Invalid(message) => ApiError::bad_request(message),
        StoreError::Unavailable(cause) => ApiError::unavailable(cause),
        StoreError::Internal(cause) => ApiError::internal(cause),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status >= 500 {
            tracing::error!(
                status = self.status,
                cause = self.internal.as_deref().unwrap_or(&self.message),
                "request failed"
            );
        }
        error_response(&self, false)
    }
}

/// Renders an error; `debug` (strong-error-handler's debug mode) shows 5xx details.
pub fn error_response(e: &ApiError, debug: bool) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, e.body(debug).to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(secs) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_matches_loopbacks_envelope() {
        let mut f = ValidationFailures::default();
        f.add(
            "email",
            "uniqueness",
            "Email already exists",
            Some(&json!("c@d.com")),
        );
        let body = ApiError::validation("User", &f).body(false);
        assert_eq!(
            body.to_string(),
            r#"{"error":{"statusCode":422,"name":"ValidationError","message":"The `User` instance is not valid. Details: `email` Email already exists (value: \"c@d.com\").","details":{"context":"User","codes":{"email":["uniqueness"]},"messages":{"email":["Email already exists"]}}}}"#
        );
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let body = ApiError::internal("disk on fire").body(false);
        assert_eq!(
            body.to_string(),
            r#"{"error":{"statusCode":500,"message":"Internal Server Error"}}"#
        );
    }

    #[test]
    fn undefined_values_print_literally() {
        let mut f = ValidationFailures::default();
        f.add("text", "presence", "can't be blank", None);
        let e = ApiError::validation("Post", &f);
        assert_eq!(
            e.message,
            "The `Post` instance is not valid. Details: `text` can't be blank (value: undefined)."
        );
    }
}
