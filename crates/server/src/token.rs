//! Access tokens on the wire and at rest: where a request's token is read from (LoopBack
//! 3's places), how it is checked (stored only as a SHA-256 key, expiry, eternal tokens),
//! and the per-node cache that keeps the lookup off the database on the hot path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use base64::Engine;
use portcullis_query::Scalar;
use portcullis_schema::{App, ModelId};
use portcullis_store::{Record, Store};
use serde_json::{Map, Value};

use crate::error::{store_error, ApiError};
use crate::secrets::{token_key, TOKEN_LENGTH};

/// A valid token, as the request context sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The stored key (SHA-256 of the token id). The raw id is never kept.
    pub key: String,
    pub user_id: Option<Value>,
    /// The user model the token belongs to, when several exist.
    pub principal_type: Option<String>,
    pub app_id: Option<String>,
    pub ttl: i64,
    pub created_ms: i64,
    pub scopes: Vec<String>,
}

impl Token {
    fn from_record(key: String, row: &Record) -> Option<Token> {
        let created_ms = row
            .get("created")
            .and_then(Value::as_str)
            .and_then(portcullis_query::parse_date)?;
        let ttl = row
            .get("ttl")
            .and_then(Value::as_f64)
            .map(|t| t as i64)
            .unwrap_or(1_209_600);
        Some(Token {
            key,
            user_id: row.get("userId").filter(|v| !v.is_null()).cloned(),
            principal_type: row
                .get("principalType")
                .and_then(Value::as_str)
                .map(str::to_string),
            app_id: row.get("appId").and_then(Value::as_str).map(str::to_string),
            ttl,
            created_ms,
            scopes: row
                .get("scopes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// LoopBack's validity rule: `ttl` must be positive (or -1 when eternal tokens are
    /// allowed) and not yet elapsed.
    pub fn is_valid(&self, now_ms: i64, allow_eternal: bool) -> bool {
        if self.ttl == -1 {
            return allow_eternal;
        }
        self.ttl > 0 && now_ms - self.created_ms < self.ttl.saturating_mul(1000)
    }

    pub fn user_id_string(&self) -> Option<String> {
        self.user_id.as_ref().map(value_to_id_string)
    }
}

pub fn value_to_id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How the request's token resolved.
#[derive(Debug, Clone)]
pub enum TokenState {
    /// No token was sent, or an unknown one: the caller is anonymous.
    Anonymous,
    Valid(Arc<Token>),
}

impl TokenState {
    pub fn token(&self) -> Option<&Arc<Token>> {
        match self {
            TokenState::Valid(t) => Some(t),
            TokenState::Anonymous => None,
        }
    }
}

/// Token options from `loopback#token` in middleware.json and the app config.
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    /// `currentUserLiteral`: `/me` in a path means the current user's id.
    pub current_user_literal: Option<String>,
    /// Read the `access_token` cookie as well.
    pub cookies: bool,
}

impl TokenOptions {
    pub fn from_app(app: &App) -> Self {
        let mut options = TokenOptions::default();
        for m in &app.middleware {
            if let portcullis_schema::Middleware::Token { params } = m {
                match params.get("currentUserLiteral") {
                    Some(Value::String(s)) if !s.is_empty() => {
                        options.current_user_literal = Some(s.clone())
                    }
                    Some(Value::Bool(true)) => options.current_user_literal = Some("me".into()),
                    _ => {}
                }
                if params.get("cookies").and_then(Value::as_bool) == Some(true)
                    || params.get("cookies").is_some_and(Value::is_array)
                {
                    options.cookies = true;
                }
            }
        }
        if let Some(Value::Object(p)) = app.config.raw.get("accessToken") {
            if let Some(Value::String(s)) = p.get("currentUserLiteral") {
                options.current_user_literal = Some(s.clone());
            }
            if p.get("cookies").and_then(Value::as_bool) == Some(true) {
                options.cookies = true;
            }
        }
        options
    }
}

/// Finds the token id a request carries, in LoopBack's order: the `access_token` query
/// (or form) parameter, `X-Access-Token`, `Authorization`, then the cookie.
pub fn extract_token(
    query: &Map<String, Value>,
    body: Option<&Value>,
    headers: &HeaderMap,
    options: &TokenOptions,
) -> Option<String> {
    let param = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(t) = param(body.and_then(|b| b.get("access_token"))) {
        return Some(t);
    }
    if let Some(t) = param(query.get("access_token")) {
        return Some(t);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(t) = header("x-access-token") {
        return Some(t.to_string());
    }
    if let Some(auth) = header("authorization") {
        return Some(authorization_token(auth));
    }
    if options.cookies {
        for cookie in headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for pair in cookie.split(';') {
                if let Some(v) = pair.trim().strip_prefix("access_token=") {
                    if !v.is_empty() {
                        return Some(v.to_string());
                    }
                }
            }
        }
    }
    None
}

/// The token in an `Authorization` value. `Bearer x` accepts both LoopBack's base64 form
/// and the plain id: a 64-character id and the base64 of one cannot be confused, since
/// the encoding of 64 characters is 88 long.
fn authorization_token(value: &str) -> String {
    if let Some(rest) = value.strip_prefix("Bearer ") {
        let rest = rest.trim();
        if rest.len() != TOKEN_LENGTH {
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) {
                if let Ok(s) = String::from_utf8(decoded) {
                    return s;
                }
            }
        }
        return rest.to_string();
    }
    if value.len() > 6 && value[..6].eq_ignore_ascii_case("basic ") {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value[6..].trim()) {
            if let Ok(s) = String::from_utf8(decoded) {
                // LoopBack takes the longer half of `a:b`.
                let mut parts = s.splitn(2, ':');
                let a = parts.next().unwrap_or("");
                let b = parts.next().unwrap_or("");
                return if b.len() > a.len() {
                    b.to_string()
                } else {
                    a.to_string()
                };
            }
        }
    }
    value.to_string()
}

/// The per-node token cache: stored key → token. Entries are dropped on logout and when a
/// user's tokens are invalidated; expiry is checked on every use.
#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<String, Arc<Token>>>,
    /// Bumped by every removal. A token read from the database is cached only if no removal
    /// happened since the read began: otherwise a logout racing a request's cache miss
    /// could leave the logged-out token cached.
    removals: AtomicU64,
}

const TOKEN_CACHE_LIMIT: usize = 100_000;

impl TokenCache {
    fn get(&self, key: &str) -> Option<Arc<Token>> {
        self.entries.read().ok()?.get(key).cloned()
    }

    /// Where removals stand; pass it to `put` after reading the token from the database.
    fn generation(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Caches `token` read from the database, unless a removal happened since `generation`.
    fn put(&self, token: Arc<Token>, generation: u64) {
        if let Ok(mut map) = self.entries.write() {
            // Removals bump the counter under this lock, so the check cannot interleave.
            if self.removals.load(Ordering::Acquire) != generation {
                return;
            }
            if map.len() >= TOKEN_CACHE_LIMIT {
                map.clear();
            }
            map.insert(token.key.clone(), token);
        }
    }

    pub fn remove(&self, key: &str) {
        if let Ok(mut map) = self.entries.write() {
            self.removals.fetch_add(1, Ordering::AcqRel);
            map.remove(key);
        }
    }

    /// Drops every cached token (after a cluster listener reconnects: it may have missed
    /// invalidations).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            self.removals.fetch_add(1, Ordering::AcqRel);
            map.clear();
        }
    }
}

/// Resolves a token id to the request's token state. An expired token fails this one
/// request with 401 `INVALID_TOKEN` and is deleted; unknown tokens are anonymous.
pub async fn resolve(
    raw: Option<&str>,
    store: &Store,
    token_model: ModelId,
    cache: &TokenCache,
    allow_eternal: bool,
) -> Result<TokenState, ApiError> {
    let Some(raw) = raw else {
        return Ok(TokenState::Anonymous);
    };
    // Anything that cannot be a token of ours never reaches the database.
    if raw.len() > 512 {
        return Ok(TokenState::Anonymous);
    }
    let key = token_key(raw);
    let token = match cache.get(&key) {
        Some(t) => t,
        None => {
            let generation = cache.generation();
            let row = store
                .find_by_id(token_model, &Scalar::Text(key.clone()), None)
                .await
                .map_err(|e| store_error("AccessToken", e))?;
            let Some(row) = row else {
                return Ok(TokenState::Anonymous);
            };
            let Some(token) = Token::from_record(key.clone(), &row) else {
                return Err(ApiError::internal(
                    "stored access token has no valid `created`",
                ));
            };
            let token = Arc::new(token);
            cache.put(token.clone(), generation);
            token
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    if !token.is_valid(now, allow_eternal) {
        cache.remove(&key);
        store
            .delete_by_id(token_model, &Scalar::Text(key))
            .await
            .map_err(|e| store_error("AccessToken", e))?;
        return Err(invalid_token());
    }
    Ok(TokenState::Valid(token))
}

/// Whether a token held since an earlier request (a change-stream subscription) is still
/// valid: not logged out, deleted or expired since.
pub async fn still_valid(
    token: &Token,
    store: &Store,
    token_model: ModelId,
    cache: &TokenCache,
    allow_eternal: bool,
) -> Result<bool, ApiError> {
    let now = chrono::Utc::now().timestamp_millis();
    if !token.is_valid(now, allow_eternal) {
        return Ok(false);
    }
    if cache.get(&token.key).is_some() {
        return Ok(true);
    }
    let row = store
        .find_by_id(token_model, &Scalar::Text(token.key.clone()), None)
        .await
        .map_err(|e| store_error("AccessToken", e))?;
    Ok(row.is_some())
}

pub fn invalid_token() -> ApiError {
    ApiError::new(401, "Invalid Access Token").code("INVALID_TOKEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_accepts_plain_and_base64_ids() {
        let id = "a".repeat(64);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&id);
        assert_eq!(authorization_token(&format!("Bearer {id}")), id);
        assert_eq!(authorization_token(&format!("Bearer {b64}")), id);
        assert_eq!(authorization_token(&id), id);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{id}"));
        assert_eq!(authorization_token(&format!("Basic {basic}")), id);
    }

    #[test]
    fn validity_follows_ttl_and_eternal_setting() {
        let t = Token {
            key: String::new(),
            user_id: None,
            principal_type: None,
            app_id: None,
            ttl: 10,
            created_ms: 0,
            scopes: vec![],
        };
        assert!(t.is_valid(9_999, false));
        assert!(!t.is_valid(10_000, false));
        let eternal = Token {
            ttl: -1,
            ..t.clone()
        };
        assert!(!eternal.is_valid(1, false));
        assert!(eternal.is_valid(i64::MAX, true));
        let zero = Token { ttl: 0, ..t };
        assert!(!zero.is_valid(0, true));
    }
}
