//! Applications: LoopBack's `Application` model. An application registers (with a realm)
//! and gets its keys once; only their SHA-256 hashes are stored. A request that names an
//! application id and one of its keys carries an APP principal that ACLs can name, as
//! does a token whose `appId` is set.

use axum::http::HeaderMap;
use portcullis_query::Scalar;
use portcullis_schema::App;
use portcullis_store::Store;
use serde_json::{Map, Value};

use crate::error::{store_error, ApiError};
use crate::instance::{prepare, WriteContext, WriteMode};
use crate::rest::RestState;
use crate::secrets::{new_token, secrets_equal, token_key};

/// The key properties of `Application`, and the header each is presented in.
pub const KEYS: [(&str, &str); 5] = [
    ("clientKey", "x-client-key"),
    ("javaScriptKey", "x-javascript-key"),
    ("restApiKey", "x-rest-api-key"),
    ("windowsKey", "x-windows-key"),
    ("masterKey", "x-master-key"),
];

/// A registered application with its keys, which are shown only this once.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: String,
    pub keys: Vec<(&'static str, String)>,
}

/// Registers an application (LoopBack's `Application.register(owner, name, {realm})`).
pub async fn register(
    app: &App,
    store: &Store,
    name: &str,
    realm: Option<&str>,
    owner: Option<&str>,
) -> Result<Registered, String> {
    let model = app
        .model_by_name("Application")
        .ok_or("the app has no Application model")?;
    let mut data = Map::new();
    data.insert("name".into(), Value::String(name.to_string()));
    if let Some(r) = realm {
        data.insert("realm".into(), Value::String(r.to_string()));
    }
    if let Some(o) = owner {
        data.insert("owner".into(), Value::String(o.to_string()));
    }
    let mut row = prepare(
        model,
        &Value::Object(data),
        WriteMode::Create,
        &WriteContext::default(),
    )
    .map_err(|e| e.message)?;
    let mut keys = Vec::new();
    for (prop, _) in KEYS {
        let key = new_token();
        row.insert(prop.to_string(), Value::String(token_key(&key)));
        keys.push((prop, key));
    }
    let created = store
        .create(model.id, vec![row])
        .await
        .map_err(|e| e.to_string())?;
    let id = created
        .first()
        .and_then(|r| r.get(model.id_name()))
        .map(crate::token::value_to_id_string)
        .ok_or("the application was not stored")?;
    Ok(Registered { id, keys })
}

/// The application a request identifies with `X-Application-Id` and one of its keys
/// (`X-Client-Key`, `X-JavaScript-Key`, `X-REST-API-Key`, `X-Windows-Key`,
/// `X-Master-Key`). A wrong key makes the request anonymous, as an unknown token does.
pub async fn identify(state: &RestState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(id) = headers
        .get("x-application-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return Ok(None);
    };
    let Some(model) = state.app.model_by_name("Application") else {
        return Ok(None);
    };
    let presented: Vec<(&str, &str)> = KEYS
        .iter()
        .filter_map(|(prop, header)| {
            headers
                .get(*header)
                .and_then(|v| v.to_str().ok())
                .map(|k| (*prop, k))
        })
        .collect();
    if presented.is_empty() {
        return Ok(None);
    }
    let row = state
        .store
        .find_by_id(model.id, &Scalar::Text(id.to_string()), None)
        .await
        .map_err(|e| store_error("Application", e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let matches = presented.iter().any(|(prop, key)| {
        row.get(*prop)
            .and_then(Value::as_str)
            .is_some_and(|stored| secrets_equal(stored, &token_key(key)))
    });
    Ok(matches.then(|| id.to_string()))
}
