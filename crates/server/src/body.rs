//! Request bodies: JSON (any JSON value, like body-parser with `strict: false`) and
//! `application/x-www-form-urlencoded` (extended, qs-style), bounded in size and depth.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::error::ApiError;

/// Bodies nesting deeper than this are refused before anything looks at them.
pub const MAX_BODY_DEPTH: usize = 32;

/// Reads and decodes the body. An empty body or an unknown content type gives `None`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Option<Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(413, "request entity too large").name("PayloadTooLargeError"))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let value = if mime == "application/json" || mime.ends_with("+json") {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("Unexpected token in JSON: {e}")).name("SyntaxError")
        })?;
        value
    } else if mime == "application/x-www-form-urlencoded" {
        let text = String::from_utf8_lossy(&bytes);
        Value::Object(portcullis_query::parse_query_string(&text))
    } else {
        return Ok(None);
    };
    if depth(&value) > MAX_BODY_DEPTH {
        return Err(ApiError::bad_request(format!(
            "request body nests deeper than {MAX_BODY_DEPTH} levels"
        )));
    }
    Ok(Some(value))
}

/// Nesting depth of a JSON value, without recursion (bodies are client-controlled).
pub fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}
