//! LoopBack's built-in user system for every User-derived model: registration rules
//! (password, email format, uniqueness within a realm), login and logout with access
//! tokens, email verification, password reset and change, and the token invalidation that
//! follows a password or email change. Hardened where LoopBack 3 is weak; each divergence
//! is listed in `docs/security.md`.

use std::net::SocketAddr;

use portcullis_query::{Op, Scalar, Where};
use portcullis_schema::{Model, PropType};
use portcullis_store::Record;
use serde_json::{json, Map, Value};

use crate::error::{store_error, ApiError, ValidationFailures};
use crate::rest::{Invocation, Outcome};
use crate::route::UserOp;
use crate::secrets::{
    new_token, new_verification_token, secrets_equal, token_key, PasswordCheck, MAX_PASSWORD_BYTES,
};
use crate::token::value_to_id_string;

/// Scope carried by password-reset tokens: they can set a new password and nothing else.
pub const RESET_SCOPE: &str = "reset-password";

const DEFAULT_TTL: i64 = 1_209_600;
const DEFAULT_MAX_TTL: i64 = 31_556_926;
const DEFAULT_RESET_TTL: i64 = 900;

fn text(v: &str) -> Scalar {
    Scalar::Text(v.to_string())
}

fn case_sensitive_email(model: &Model) -> bool {
    model.setting_bool("caseSensitiveEmail").unwrap_or(true)
}

fn verification_required(model: &Model) -> bool {
    model
        .setting_bool("emailVerificationRequired")
        .unwrap_or(false)
}

/// LoopBack validates passwords before anything else: a non-string or empty password is
/// `INVALID_PASSWORD`, a long one `PASSWORD_TOO_LONG` (422, plain errors).
pub fn check_password(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) if !s.is_empty() => {
            if s.len() > MAX_PASSWORD_BYTES {
                return Err(ApiError::new(
                    422,
                    format!(
                        "The password entered was too long. Max length is {MAX_PASSWORD_BYTES} (entered {})",
                        s.len()
                    ),
                )
                .code("PASSWORD_TOO_LONG"));
            }
            Ok(s.clone())
        }
        _ => Err(ApiError::new(422, "Invalid password.").code("INVALID_PASSWORD")),
    }
}

/// A pragmatic address check in the spirit of `isemail`: one `@`, a local part, and a
/// domain of letters, digits, hyphens and dots (TLD-less domains are accepted, as
/// LoopBack accepts them).
pub fn email_is_valid(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && !local.contains(char::is_whitespace)
        && !local.contains('@')
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || !c.is_ascii())
}

/// Applies the user rules to a row on its way in: password checked and hashed, email
/// normalised and checked, and the verification fields taken out of the client's hands.
pub async fn prepare_user_row(
    inv: &Invocation<'_>,
    model: &Model,
    raw: &Value,
    row: &mut Record,
    creating: bool,
    self_id: Option<&Value>,
) -> Result<(), ApiError> {
    // LoopBack 3 lets a client send `verificationToken` (and, as the owner, set
    // `emailVerified`), which bypasses email verification. Only the server sets them.
    row.remove("verificationToken");
    row.remove("emailVerified");
    if creating {
        row.insert("emailVerified".into(), Value::Bool(false));
    }
    if let Some(pw) = raw.get("password") {
        if !creating && model.setting_bool("rejectPasswordChangesViaPatchOrReplace") == Some(true) {
            return Err(ApiError::new(401, "Changing password via patch/replace API is not allowed. Use changePassword() or setPassword() instead.")
                .code("PASSWORD_CHANGE_NOT_ALLOWED"));
        }
        let hash = match pw {
            Value::String(s) if crate::secrets::is_bcrypt_hash(s) => s.clone(),
            other => {
                let plain = check_password(other)?;
                inv.state
                    .hasher
                    .hash(plain)
                    .await
                    .map_err(ApiError::internal)?
            }
        };
        row.insert("password".into(), Value::String(hash));
    }
    if let Some(Value::String(email)) = row.get("email").cloned() {
        let email = if case_sensitive_email(model) {
            email
        } else {
            email.to_lowercase()
        };
        if !email.is_empty() && !email_is_valid(&email) {
            let mut f = ValidationFailures::default();
            f.add(
                "email",
                "custom.email",
                "is invalid",
                Some(&Value::String(email.clone())),
            );
            return Err(ApiError::validation(&model.name, &f));
        }
        row.insert("email".into(), Value::String(email));
    }
    check_unique(inv, model, row, self_id).await
}

/// Email and username are unique within a realm. LoopBack 3 scopes uniqueness to realms
/// only with both realm settings on, and refuses the same email in two realms otherwise
/// (its issue 2159); Portcullis always scopes by realm.
async fn check_unique(
    inv: &Invocation<'_>,
    model: &Model,
    row: &Record,
    self_id: Option<&Value>,
) -> Result<(), ApiError> {
    let store = &inv.state.store;
    let mut failures = ValidationFailures::default();
    for (prop, message) in [
        ("email", "Email already exists"),
        ("username", "User already exists"),
    ] {
        let Some(Value::String(value)) = row.get(prop) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let mut w = Where::declared(prop, PropType::String, Op::Eq(text(value)));
        let realm = match row.get("realm") {
            Some(Value::String(r)) => Scalar::Text(r.clone()),
            _ => Scalar::Null,
        };
        w = w.and(Where::declared("realm", PropType::String, Op::Eq(realm)));
        if let Some(id) = self_id.and_then(|v| id_scalar(model, v)) {
            w = w.and(Where::declared(
                model.id_name(),
                model.id_prop().ty.clone(),
                Op::Neq(id),
            ));
        }
        let n = store
            .count(model.id, Some(&w))
            .await
            .map_err(|e| store_error(&model.name, e))?;
        if n > 0 {
            failures.add(
                prop,
                "uniqueness",
                message,
                Some(&Value::String(value.clone())),
            );
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(&model.name, &failures))
    }
}

pub fn id_scalar(model: &Model, v: &Value) -> Option<Scalar> {
    portcullis_query::coerce_id(model, &value_to_id_string(v))
}

/// After a user changed: a new password or email ends every other session of that user,
/// and a new email needs verifying again when verification is required.
pub async fn after_user_update(
    inv: &Invocation<'_>,
    model: &Model,
    before: &Record,
    after: &Record,
) -> Result<(), ApiError> {
    let changed = |k: &str| before.get(k) != after.get(k);
    if !(changed("password") || changed("email")) {
        return Ok(());
    }
    let Some(uid) = after.get(model.id_name()) else {
        return Ok(());
    };
    if changed("email") && verification_required(model) {
        if let Some(id) = id_scalar(model, uid) {
            let mut patch = Map::new();
            patch.insert("emailVerified".into(), Value::Bool(false));
            inv.state
                .store
                .update_by_id(model.id, &id, patch)
                .await
                .map_err(|e| store_error(&model.name, e))?;
        }
    }
    let keep = inv.token.as_ref().map(|t| t.key.clone());
    invalidate_tokens(inv, uid, keep.as_deref()).await
}

/// Deletes every token of `user_id` except `keep`.
pub async fn invalidate_tokens(
    inv: &Invocation<'_>,
    user_id: &Value,
    keep: Option<&str>,
) -> Result<(), ApiError> {
    let Some(token_model) = inv.state.token_model else {
        return Ok(());
    };
    let tm = inv.state.app.model(token_model);
    let uid_ty = tm
        .property("userId")
        .map(|p| p.ty.clone())
        .unwrap_or(PropType::Any);
    let uid = portcullis_query::coerce_scalar(user_id, &uid_ty)?;
    let mut w = Where::declared("userId", uid_ty, Op::Eq(uid));
    if let Some(k) = keep {
        w = w.and(Where::declared("id", PropType::String, Op::Neq(text(k))));
    }
    // Each deleted row leaves every node's token cache through the store's observer.
    inv.state
        .store
        .delete_all(token_model, Some(&w))
        .await
        .map_err(|e| store_error("AccessToken", e))?;
    Ok(())
}

/// Issues a token for `user_id`. Returns the raw id (shown once) and the stored row.
async fn issue_token(
    inv: &Invocation<'_>,
    model: &Model,
    user_id: &Value,
    ttl: i64,
    scopes: Option<Vec<String>>,
) -> Result<(String, Record), ApiError> {
    let token_model = inv
        .state
        .token_model
        .ok_or_else(|| ApiError::internal("no AccessToken model"))?;
    let raw = new_token();
    let mut row = Map::new();
    row.insert("id".into(), Value::String(token_key(&raw)));
    row.insert("ttl".into(), json!(ttl));
    row.insert(
        "created".into(),
        Value::String(portcullis_query::format_date(
            chrono::Utc::now().timestamp_millis(),
        )),
    );
    // Stored as text whatever the user model's id type, so one token table serves every
    // user model.
    row.insert("userId".into(), Value::String(value_to_id_string(user_id)));
    if let Some(s) = scopes {
        row.insert("scopes".into(), json!(s));
    }
    if inv.state.several_user_models {
        row.insert("principalType".into(), Value::String(model.name.clone()));
    }
    let created = inv
        .state
        .store
        .create(token_model, vec![row])
        .await
        .map_err(|e| store_error("AccessToken", e))?;
    let row = created
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("token not stored"))?;
    Ok((raw, row))
}

fn body_field<'a>(inv: &'a Invocation<'_>, name: &str) -> Option<&'a Value> {
    inv.body
        .as_ref()
        .and_then(|b| b.get(name))
        .filter(|v| !v.is_null())
}

fn required_string(inv: &Invocation<'_>, name: &str) -> Result<String, ApiError> {
    match body_field(inv, name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err(ApiError::bad_request(format!(
            "{name} is a required argument"
        ))),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

async fn find_user(
    inv: &Invocation<'_>,
    model: &Model,
    w: Where,
) -> Result<Option<Record>, ApiError> {
    let filter = portcullis_query::Filter {
        where_: Some(w),
        limit: Some(1),
        ..Default::default()
    };
    inv.state
        .store
        .find_one(model.id, &filter)
        .await
        .map_err(|e| store_error(&model.name, e))
}

async fn user_by_id(
    inv: &Invocation<'_>,
    model: &Model,
    id: &Value,
) -> Result<Option<(Scalar, Record)>, ApiError> {
    let Some(sid) = id_scalar(model, id) else {
        return Ok(None);
    };
    let row = inv
        .state
        .store
        .find_by_id(model.id, &sid, None)
        .await
        .map_err(|e| store_error(&model.name, e))?;
    Ok(row.map(|r| (sid, r)))
}

fn login_failed() -> ApiError {
    ApiError::new(401, "login failed").code("LOGIN_FAILED")
}

fn client_address(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub async fn run_user(
    inv: &Invocation<'_>,
    model: &Model,
    op: UserOp,
) -> Result<Outcome, ApiError> {
    match op {
        UserOp::Login => login(inv, model).await,
        UserOp::Logout => {
            let Some(token) = &inv.token else {
                return Err(ApiError::new(401, "accessToken is required to logout"));
            };
            let token_model = inv
                .state
                .token_model
                .ok_or_else(|| ApiError::internal("no AccessToken model"))?;
            // The store's observer drops the token from every node's cache (see
            // `observer.rs`), from this one before the delete returns.
            inv.state
                .store
                .delete_by_id(token_model, &Scalar::Text(token.key.clone()))
                .await
                .map_err(|e| store_error("AccessToken", e))?;
            Ok(Outcome::NoContent)
        }
        UserOp::Verify => verify(inv, model).await,
        UserOp::Confirm => confirm(inv, model).await,
        UserOp::ResetPassword => reset_password(inv, model).await,
        UserOp::ChangePassword => {
            let old = required_string(inv, "oldPassword")?;
            let new = required_string(inv, "newPassword")?;
            let (uid, id, user) = token_user(inv, model).await?;
            let stored = user
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_string);
            if inv.state.hasher.verify(old, stored).await == PasswordCheck::Mismatch {
                return Err(
                    ApiError::bad_request("Invalid current password").code("INVALID_PASSWORD")
                );
            }
            set_password(inv, model, &uid, &id, &new, false).await?;
            Ok(Outcome::NoContent)
        }
        UserOp::SetPassword => {
            let new = required_string(inv, "newPassword")?;
            let (uid, id, _) = token_user(inv, model).await?;
            let reset_token = inv
                .token
                .as_ref()
                .is_some_and(|t| t.scopes.iter().any(|s| s == RESET_SCOPE));
            set_password(inv, model, &uid, &id, &new, reset_token).await?;
            Ok(Outcome::NoContent)
        }
    }
}

/// The user the request's token belongs to.
async fn token_user(
    inv: &Invocation<'_>,
    model: &Model,
) -> Result<(Value, Scalar, Record), ApiError> {
    let token = inv.token.as_ref().ok_or_else(|| {
        ApiError::new(401, "Authorization Required").code("AUTHORIZATION_REQUIRED")
    })?;
    if token
        .principal_type
        .as_deref()
        .is_some_and(|p| p != model.name && p != "USER")
    {
        return Err(ApiError::new(403, "Access Denied"));
    }
    let uid = token.user_id.clone().unwrap_or(Value::Null);
    match user_by_id(inv, model, &uid).await? {
        Some((id, row)) => Ok((uid, id, row)),
        None => Err(
            ApiError::new(401, format!("User {} not found", value_to_id_string(&uid)))
                .code("USER_NOT_FOUND"),
        ),
    }
}

async fn set_password(
    inv: &Invocation<'_>,
    model: &Model,
    uid: &Value,
    id: &Scalar,
    new: &str,
    end_current: bool,
) -> Result<(), ApiError> {
    let plain = check_password(&Value::String(new.to_string()))?;
    let hash = inv
        .state
        .hasher
        .hash(plain)
        .await
        .map_err(ApiError::internal)?;
    let mut patch = Map::new();
    patch.insert("password".into(), Value::String(hash));
    inv.state
        .store
        .update_by_id(model.id, id, patch)
        .await
        .map_err(|e| store_error(&model.name, e))?;
    // A reset token is single-use: it goes with the others.
    let keep = if end_current {
        None
    } else {
        inv.token.as_ref().map(|t| t.key.clone())
    };
    invalidate_tokens(inv, uid, keep.as_deref()).await
}

async fn login(inv: &Invocation<'_>, model: &Model) -> Result<Outcome, ApiError> {
    let creds = inv.body.clone().unwrap_or_else(|| json!({}));
    if !creds.is_object() {
        return Err(ApiError::bad_request("Value is not an object."));
    }
    let realm_required = model.setting_bool("realmRequired").unwrap_or(false)
        || model.setting_str("realmDelimiter").is_some();
    let delimiter = model
        .setting_str("realmDelimiter")
        .filter(|d| !d.is_empty());
    let mut email = creds.get("email").filter(|v| !v.is_null()).cloned();
    let mut username = creds.get("username").filter(|v| !v.is_null()).cloned();
    let mut realm: Option<String> = None;
    if realm_required {
        realm = match creds.get("realm").filter(|v| !v.is_null()) {
            None => None,
            Some(Value::String(r)) => Some(r.clone()),
            Some(_) => return Err(ApiError::bad_request("Invalid realm").code("INVALID_REALM")),
        };
        if let Some(d) = delimiter {
            for field in [&mut email, &mut username] {
                if let Some(Value::String(s)) = field.as_ref() {
                    if let Some((r, rest)) = s.split_once(d) {
                        realm = Some(r.to_string());
                        *field = Some(Value::String(rest.to_string()));
                    }
                }
            }
        }
        if realm.is_none() {
            return Err(ApiError::bad_request("realm is required").code("REALM_REQUIRED"));
        }
    }
    let (prop, value) = match (&email, &username) {
        (Some(Value::String(e)), _) => {
            let e = if case_sensitive_email(model) {
                e.clone()
            } else {
                e.to_lowercase()
            };
            ("email", e)
        }
        (Some(_), _) => return Err(ApiError::bad_request("Invalid email").code("INVALID_EMAIL")),
        (None, Some(Value::String(u))) => ("username", u.clone()),
        (None, Some(_)) => {
            return Err(ApiError::bad_request("Invalid username").code("INVALID_USERNAME"))
        }
        (None, None) => {
            return Err(ApiError::bad_request("username or email is required")
                .code("USERNAME_EMAIL_REQUIRED"))
        }
    };
    let account = format!(
        "{}\u{0}{}\u{0}{}:{}",
        model.name,
        realm.as_deref().unwrap_or(""),
        prop,
        value.to_lowercase()
    );
    let address = client_address(inv.peer);
    if let Some(wait) = inv.state.throttle.blocked(&account, &address) {
        let mut e = ApiError::new(429, "Too many failed login attempts; try again later")
            .code("TOO_MANY_REQUESTS");
        e.retry_after = Some(wait);
        return Err(e);
    }
    let mut w = Where::declared(prop, PropType::String, Op::Eq(text(&value)));
    if let Some(r) = &realm {
        w = w.and(Where::declared("realm", PropType::String, Op::Eq(text(r))));
    }
    let user = if value.is_empty() {
        None
    } else {
        find_user(inv, model, w).await?
    };
    let password = match creds.get("password") {
        Some(Value::String(p)) if !p.is_empty() && p.len() <= 1024 => Some(p.clone()),
        _ => None,
    };
    let stored = user
        .as_ref()
        .and_then(|u| u.get("password"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let check = match &password {
        Some(p) => inv.state.hasher.verify(p.clone(), stored).await,
        None => PasswordCheck::Mismatch,
    };
    let user = match (user, &check) {
        (Some(u), PasswordCheck::Match | PasswordCheck::MatchRehash(_)) => u,
        _ => {
            inv.state.throttle.failed(&account, &address);
            return Err(login_failed());
        }
    };
    inv.state.throttle.succeeded(&account);
    let uid = user.get(model.id_name()).cloned().unwrap_or(Value::Null);
    if verification_required(model) && user.get("emailVerified") != Some(&Value::Bool(true)) {
        return Err(
            ApiError::new(401, "login failed as the email has not been verified")
                .code("LOGIN_FAILED_EMAIL_NOT_VERIFIED")
                .details(json!({ "userId": uid })),
        );
    }
    if let PasswordCheck::MatchRehash(new_hash) = check {
        if let Some(id) = id_scalar(model, &uid) {
            let mut patch = Map::new();
            patch.insert("password".into(), Value::String(new_hash));
            inv.state
                .store
                .update_by_id(model.id, &id, patch)
                .await
                .map_err(|e| store_error(&model.name, e))?;
        }
    }
    let default_ttl = model
        .setting_f64("ttl")
        .map(|t| t as i64)
        .unwrap_or(DEFAULT_TTL);
    let max_ttl = model
        .setting_f64("maxTTL")
        .map(|t| t as i64)
        .unwrap_or(DEFAULT_MAX_TTL);
    let asked = match creds.get("ttl") {
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .filter(|t| *t != 0)
    .unwrap_or(default_ttl);
    let ttl = asked.min(max_ttl);
    let (raw, row) = issue_token(inv, model, &uid, ttl, None).await?;
    let mut out = Map::new();
    out.insert("id".into(), Value::String(raw));
    out.insert("ttl".into(), json!(ttl));
    out.insert(
        "created".into(),
        row.get("created").cloned().unwrap_or(Value::Null),
    );
    out.insert("userId".into(), uid);
    let include_user = match inv.query.get("include") {
        Some(Value::String(s)) => s.eq_ignore_ascii_case("user"),
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("user"))),
        _ => false,
    };
    if include_user {
        let mut u = user;
        crate::instance::shape_output(&inv.state.app, model, &mut u, false);
        out.insert("user".into(), Value::Object(u));
    }
    Ok(Outcome::Json(Value::Object(out)))
}

/// The public base URL links in mails point at (`verifyOptions`, else the app config).
fn base_url(inv: &Invocation<'_>, model: &Model) -> String {
    let opts = model.setting("verifyOptions").and_then(Value::as_object);
    let get = |k: &str| opts.and_then(|o| o.get(k));
    let protocol = get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("http")
        .to_string();
    let host = get("host")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            inv.state
                .app
                .config
                .host
                .clone()
                .filter(|h| h != "0.0.0.0" && h != "::")
        })
        .unwrap_or_else(|| "localhost".into());
    let port = get("port")
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
        .or(inv.state.app.config.port.map(u64::from))
        .unwrap_or(3000);
    let show_port = !((protocol == "http" && port == 80) || (protocol == "https" && port == 443));
    if show_port {
        format!("{protocol}://{host}:{port}")
    } else {
        format!("{protocol}://{host}")
    }
}

fn mail_from(model: &Model) -> String {
    model
        .setting("verifyOptions")
        .and_then(|o| o.get("from"))
        .and_then(Value::as_str)
        .unwrap_or("noreply@example.com")
        .to_string()
}

async fn verify(inv: &Invocation<'_>, model: &Model) -> Result<Outcome, ApiError> {
    let raw_id = inv.id.clone().unwrap_or_default();
    let missing = || ApiError::model_not_found(format!("could not find a model with id {raw_id}"));
    let id = portcullis_query::coerce_id(model, &raw_id).ok_or_else(missing)?;
    let user = inv
        .state
        .store
        .find_by_id(model.id, &id, None)
        .await
        .map_err(|e| store_error(&model.name, e))?
        .ok_or_else(missing)?;
    let Some(Value::String(email)) = user.get("email") else {
        return Err(ApiError::bad_request("user has no email"));
    };
    let token = new_verification_token();
    let mut patch = Map::new();
    patch.insert("verificationToken".into(), Value::String(token.clone()));
    inv.state
        .store
        .update_by_id(model.id, &id, patch)
        .await
        .map_err(|e| store_error(&model.name, e))?;
    let redirect = model
        .setting("verifyOptions")
        .and_then(|o| o.get("redirect"))
        .and_then(Value::as_str)
        .unwrap_or("/");
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let link = format!(
        "{}{}/{}/confirm?uid={}&redirect={}&token={}",
        base_url(inv, model),
        inv.state.app.config.rest_api_root,
        model.http_path,
        enc(&raw_id),
        enc(redirect),
        token
    );
    let mail = crate::mail::Mail {
        to: email.clone(),
        from: mail_from(model),
        subject: "Thanks for Registering".into(),
        text: format!("Please verify your email by opening this link in a web browser:\n\t{link}"),
    };
    inv.state
        .mailer
        .send(mail)
        .await
        .map_err(ApiError::internal)?;
    Ok(Outcome::NoContent)
}

async fn confirm(inv: &Invocation<'_>, model: &Model) -> Result<Outcome, ApiError> {
    let arg = |name: &str| match inv.query.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::bad_request(format!(
            "{name} is a required argument"
        ))),
    };
    let uid = arg("uid")?;
    let token = arg("token")?;
    let not_found = || ApiError::not_found(format!("User not found: {uid}")).code("USER_NOT_FOUND");
    let id = portcullis_query::coerce_id(model, &uid).ok_or_else(not_found)?;
    let user = inv
        .state
        .store
        .find_by_id(model.id, &id, None)
        .await
        .map_err(|e| store_error(&model.name, e))?
        .ok_or_else(not_found)?;
    let stored = user
        .get("verificationToken")
        .and_then(Value::as_str)
        .unwrap_or("");
    if stored.is_empty() || !secrets_equal(stored, &token) {
        return Err(ApiError::bad_request(format!("Invalid token: {token}")).code("INVALID_TOKEN"));
    }
    // Only same-site paths: LoopBack 3 redirects anywhere, an open redirect. Checked
    // before the token is spent.
    let redirect = match inv.query.get("redirect").and_then(Value::as_str) {
        Some(r) if r.starts_with('/') && !r.starts_with("//") && !r.contains('\\') => {
            Some(r.to_string())
        }
        Some(r) if !r.is_empty() => {
            return Err(ApiError::bad_request(
                "redirect must be a path on this site",
            ))
        }
        _ => None,
    };
    let mut patch = Map::new();
    patch.insert("verificationToken".into(), Value::Null);
    patch.insert("emailVerified".into(), Value::Bool(true));
    inv.state
        .store
        .update_by_id(model.id, &id, patch)
        .await
        .map_err(|e| store_error(&model.name, e))?;
    Ok(match redirect {
        Some(r) => Outcome::Redirect(r),
        None => Outcome::NoContent,
    })
}

/// Requests a reset. The answer is the same whether or not the email belongs to anyone:
/// the lookup, token and mail happen after the response, so neither status nor timing
/// tells. (LoopBack 3 answers 404 `EMAIL_NOT_FOUND`.)
async fn reset_password(inv: &Invocation<'_>, model: &Model) -> Result<Outcome, ApiError> {
    let email = match body_field(inv, "email") {
        Some(Value::String(e)) if !e.is_empty() => e.clone(),
        _ => return Err(ApiError::bad_request("Email is required").code("EMAIL_REQUIRED")),
    };
    let email = if case_sensitive_email(model) {
        email
    } else {
        email.to_lowercase()
    };
    let realm = body_field(inv, "realm")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut w = Where::declared("email", PropType::String, Op::Eq(text(&email)));
    if let Some(r) = &realm {
        w = w.and(Where::declared("realm", PropType::String, Op::Eq(text(r))));
    }
    let user = find_user(inv, model, w).await?;
    let Some(user) = user else {
        return Ok(Outcome::NoContent);
    };
    if verification_required(model) && user.get("emailVerified") != Some(&Value::Bool(true)) {
        return Ok(Outcome::NoContent);
    }
    let uid = user.get(model.id_name()).cloned().unwrap_or(Value::Null);
    let ttl = model
        .setting_f64("resetPasswordTokenTTL")
        .map(|t| t as i64)
        .unwrap_or(DEFAULT_RESET_TTL);
    let (raw, _) = issue_token(inv, model, &uid, ttl, Some(vec![RESET_SCOPE.to_string()])).await?;
    let mail = crate::mail::Mail {
        to: email,
        from: mail_from(model),
        subject: "Password reset".into(),
        text: format!(
            "To choose a new password, send POST {}{}/{}/reset-password with `newPassword`, authorized with this token (valid {} minutes):\n\t{raw}",
            base_url(inv, model),
            inv.state.app.config.rest_api_root,
            model.http_path,
            ttl / 60
        ),
    };
    if let Err(e) = inv.state.mailer.send(mail).await {
        tracing::error!(target: "portcullis::mail", error = %e, "password reset mail failed");
    }
    Ok(Outcome::NoContent)
}
