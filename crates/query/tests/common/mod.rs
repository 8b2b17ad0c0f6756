//! A small LoopBack app written to a temporary directory and loaded with the real loader,
//! shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;

use portcullis_query::{Filter, Op, PropRef, QueryError, Scalar, Where};
use portcullis_schema::{App, ModelId, PropType};
use serde_json::{json, Value};

pub fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |path: &str, value: Value| {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        };
        write("server/config.json", json!({"restApiRoot": "/api"}));
        write(
            "server/datasources.json",
            json!({"db": {"name": "db", "connector": "memory"}}),
        );
        write(
            "server/model-config.json",
            json!({
                "_meta": {"sources": ["loopback/common/models", "../common/models"]},
                "Item": {"dataSource": "db", "public": true},
                "Person": {"dataSource": "db", "public": true},
                "Note": {"dataSource": "db", "public": true}
            }),
        );
        write(
            "common/models/item.json",
            json!({
                "name": "Item",
                "base": "PersistedModel",
                "strict": true,
                "properties": {
                    "name": {"type": "string"},
                    "qty": {"type": "number"},
                    "price": {"type": "number"},
                    "active": {"type": "boolean"},
                    "created": {"type": "date"},
                    "tags": {"type": ["string"]},
                    "meta": {"type": "object"},
                    "secret": {"type": "string"},
                    "ownerId": {"type": "number"}
                },
                "hidden": ["secret"],
                "relations": {
                    "creator": {"type": "belongsTo", "model": "Person", "foreignKey": "ownerId"},
                    "notes": {"type": "hasMany", "model": "Note", "foreignKey": "itemId"},
                    "privateNotes": {"type": "hasMany", "model": "Note", "foreignKey": "itemId",
                                     "options": {"disableInclude": true}}
                }
            }),
        );
        write(
            "common/models/person.json",
            json!({
                "name": "Person",
                "base": "PersistedModel",
                "strict": true,
                "properties": {"name": {"type": "string"}},
                "relations": {
                    "items": {"type": "hasMany", "model": "Item", "foreignKey": "ownerId"}
                }
            }),
        );
        write(
            "common/models/note.json",
            json!({
                "name": "Note",
                "base": "PersistedModel",
                "properties": {"body": {"type": "string"}, "itemId": {"type": "number"}},
                "relations": {
                    "item": {"type": "belongsTo", "model": "Item", "foreignKey": "itemId"}
                }
            }),
        );
        portcullis_schema::load_app(root).unwrap()
    })
}

pub fn model(name: &str) -> ModelId {
    app().model_id(name).unwrap()
}

pub fn item() -> ModelId {
    model("Item")
}

pub fn note() -> ModelId {
    model("Note")
}

pub fn person() -> ModelId {
    model("Person")
}

/// The `filter` argument of a query string, decoded as Express would.
pub fn qs_filter(raw: &str) -> Value {
    let map = portcullis_query::parse_query_string(raw);
    map.get("filter").cloned().unwrap_or(Value::Null)
}

pub fn filter(model: ModelId, value: Value) -> Result<Filter, QueryError> {
    portcullis_query::parse_filter(app(), model, &value)
}

pub fn declared(name: &str, ty: PropType) -> PropRef {
    PropRef::Declared {
        name: name.into(),
        ty,
    }
}

pub fn prop(model: ModelId, name: &str) -> PropRef {
    let m = app().model(model);
    match m.property(name) {
        Some(p) => declared(name, p.ty.clone()),
        None => PropRef::Dynamic { name: name.into() },
    }
}

pub fn cond(model: ModelId, name: &str, op: Op) -> Where {
    Where::Cond {
        property: prop(model, name),
        op,
    }
}

pub fn int(i: i64) -> Scalar {
    Scalar::Int(i)
}

pub fn text(s: &str) -> Scalar {
    Scalar::Text(s.into())
}
