//! Seeding: loads rows from a JSON file (`{"Model": [rows…]}`, by convention
//! `server/seed.json`) into the database, idempotently. A row whose id already exists is
//! left alone; user passwords are hashed as a registration would hash them.

use portcullis_schema::App;
use portcullis_store::Store;
use serde_json::{Map, Value};

use crate::instance::{prepare, WriteContext, WriteMode};

/// What a seed run did, per model: `(model, inserted, already present)`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub models: Vec<(String, usize, usize)>,
}

/// Why seeding stopped. Nothing is half-written for the model that failed: each model's
/// new rows go in one transaction.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed data must be an object of model names to arrays of rows")]
    Shape,
    #[error("unknown model `{0}` in seed data")]
    UnknownModel(String),
    #[error("{model} row {index}: {message}")]
    Row {
        model: String,
        index: usize,
        message: String,
    },
    #[error("{model}: {message}")]
    Store { model: String, message: String },
}

pub async fn seed(app: &App, store: &Store, data: &Value) -> Result<SeedReport, SeedError> {
    let models = data.as_object().ok_or(SeedError::Shape)?;
    let mut report = SeedReport::default();
    for (name, rows) in models {
        let model = app
            .model_by_name(name)
            .ok_or_else(|| SeedError::UnknownModel(name.clone()))?;
        let rows = rows.as_array().ok_or(SeedError::Shape)?;
        let store_err = |e: portcullis_store::StoreError| SeedError::Store {
            model: name.clone(),
            message: e.to_string(),
        };
        // Seed files name ids a client could not: forceId does not apply to them.
        let mut seeding = model.clone();
        seeding.options.force_id = false;
        let mut fresh = Vec::new();
        let mut present = 0;
        for (index, row) in rows.iter().enumerate() {
            let row_err = |message: String| SeedError::Row {
                model: name.clone(),
                index,
                message,
            };
            if let Some(id) = row.get(model.id_name()).filter(|v| !v.is_null()) {
                let raw = crate::token::value_to_id_string(id);
                if let Some(id) = portcullis_query::coerce_id(model, &raw) {
                    if store.exists(model.id, &id).await.map_err(store_err)? {
                        present += 1;
                        continue;
                    }
                }
            }
            let mut record: Map<String, Value> =
                prepare(&seeding, row, WriteMode::Create, &WriteContext::default())
                    .map_err(|e| row_err(e.message))?;
            // Seed files are trusted: values for server-set properties (a post's owner and
            // time) are kept, coerced to their types, where a client's would be ignored.
            for prop in seeding
                .properties
                .iter()
                .filter(|p| p.server_set != portcullis_schema::ServerSet::No || p.force_default)
            {
                if let Some(v) = row.get(&prop.name).filter(|v| !v.is_null()) {
                    let v = crate::instance::coerce(v, &prop.ty)
                        .map_err(|m| row_err(format!("`{}` {m}", prop.name)))?;
                    record.insert(prop.name.clone(), v);
                }
            }
            if model.is_user_model() {
                if let Some(Value::String(pw)) = row.get("password") {
                    let pw = pw.clone();
                    let hash =
                        tokio::task::spawn_blocking(move || crate::secrets::hash_password(&pw))
                            .await
                            .map_err(|e| row_err(e.to_string()))?
                            .map_err(row_err)?;
                    record.insert("password".into(), Value::String(hash));
                }
                record.entry("emailVerified").or_insert(Value::Bool(true));
            }
            fresh.push(record);
        }
        let inserted = fresh.len();
        if !fresh.is_empty() {
            store.create(model.id, fresh).await.map_err(store_err)?;
        }
        report.models.push((name.clone(), inserted, present));
    }
    Ok(report)
}
