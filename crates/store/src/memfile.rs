//! LoopBack's memory-store JSON file: `{"ids": {"Model": nextId}, "models": {"Model":
//! {"<id>": "<JSON text of the instance>"}}}`. Loaded into the in-memory database at open,
//! rewritten whole (temp file, fsync, rename) after every committed write. Models in the file
//! that this app does not define are carried over untouched.

use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis_query::Filter;
use portcullis_schema::ModelId;
use rusqlite::Connection;
use serde_json::{Map, Value};

use crate::ops::Ops;
use crate::{Record, StoreError};

pub(crate) struct MemFile {
    path: PathBuf,
    /// `ids` and `models` entries of models this database does not hold.
    other_ids: Map<String, Value>,
    other_models: Map<String, Value>,
    /// `ids` entries of models without a generated id, as read.
    kept_ids: Map<String, Value>,
}

fn read(path: &Path) -> Result<Option<Map<String, Value>>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Internal(format!(
                "cannot read memory file {}: {e}",
                path.display()
            )))
        }
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(StoreError::Internal(format!(
            "memory file {} is not a JSON object; refusing to open it (the file is left as is)",
            path.display()
        ))),
        Err(e) => Err(StoreError::Internal(format!(
            "memory file {} is not valid JSON ({e}); refusing to open it (the file is left as is)",
            path.display()
        ))),
    }
}

fn section(
    root: &Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<Map<String, Value>, StoreError> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(StoreError::Internal(format!(
            "memory file {}: `{key}` is not an object; refusing to open it",
            path.display()
        ))),
    }
}

impl MemFile {
    /// Reads `path` and loads its rows for `models` into `conn`.
    pub(crate) fn load(
        path: &Path,
        conn: &Connection,
        ops: &Ops<'_>,
        models: &[ModelId],
    ) -> Result<MemFile, StoreError> {
        let root = read(path)?.unwrap_or_default();
        let mut ids = section(&root, "ids", path)?;
        let mut stored = section(&root, "models", path)?;
        let mut kept_ids = Map::new();
        let tx = conn.unchecked_transaction()?;
        for &id in models {
            let model = ops.model(id)?;
            let next = ids.remove(&model.name);
            if let Some(Value::Object(rows)) = stored.remove(&model.name) {
                for (key, row) in rows {
                    let parsed = match row {
                        Value::String(s) => serde_json::from_str::<Value>(&s).map_err(|e| {
                            StoreError::Internal(format!(
                                "memory file {}: {} row {key} is not valid JSON ({e}); refusing to open it",
                                path.display(),
                                model.name
                            ))
                        })?,
                        other => other,
                    };
                    let Value::Object(mut rec) = parsed else {
                        return Err(StoreError::Internal(format!(
                            "memory file {}: {} row {key} is not an object; refusing to open it",
                            path.display(),
                            model.name
                        )));
                    };
                    if !rec.contains_key(model.id_name()) {
                        let id = match (key.parse::<i64>(), &model.id_prop().ty) {
                            (Ok(n), portcullis_schema::PropType::Number) => Value::from(n),
                            _ => Value::String(key.clone()),
                        };
                        rec.insert(model.id_name().to_string(), id);
                    }
                    ops.insert(&*tx, model, &rec, false)?;
                }
            }
            match next {
                Some(Value::Number(n)) if model.id_prop().generated => {
                    if let Some(n) = n.as_i64() {
                        set_sequence(&tx, &model.table, n - 1)?;
                    }
                }
                Some(v) => {
                    kept_ids.insert(model.name.clone(), v);
                }
                None => {}
            }
        }
        tx.commit()?;
        Ok(MemFile {
            path: path.to_path_buf(),
            other_ids: ids,
            other_models: stored,
            kept_ids,
        })
    }

    /// Writes the whole store to the file atomically.
    pub(crate) fn save(
        &self,
        conn: &Connection,
        ops: &Ops<'_>,
        models: &[ModelId],
    ) -> Result<(), StoreError> {
        let mut ids = Map::new();
        let mut stored = Map::new();
        for &id in models {
            let model = ops.model(id)?;
            let rows: Vec<Record> = ops.find(conn, id, &Filter::default())?;
            let next = if model.id_prop().generated {
                Some(Value::from(sequence(conn, &model.table)? + 1))
            } else {
                self.kept_ids.get(&model.name).cloned()
            };
            if let Some(n) = next {
                ids.insert(model.name.clone(), n);
            }
            let mut out = Map::new();
            for row in rows {
                let key = match row.get(model.id_name()) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => continue,
                };
                out.insert(key, Value::String(Value::Object(row).to_string()));
            }
            stored.insert(model.name.clone(), Value::Object(out));
        }
        for (k, v) in &self.other_ids {
            ids.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &self.other_models {
            stored.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut root = Map::new();
        root.insert("ids".into(), Value::Object(ids));
        root.insert("models".into(), Value::Object(stored));
        let text = serde_json::to_string_pretty(&Value::Object(root))
            .map_err(|e| StoreError::Internal(format!("cannot serialise memory store: {e}")))?;
        write_atomic(&self.path, text.as_bytes())
    }
}

fn sequence(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = ?")?;
    let mut rows = stmt.query([table])?;
    Ok(match rows.next()? {
        Some(r) => r.get::<_, i64>(0).unwrap_or(0),
        None => 0,
    })
}

fn set_sequence(conn: &Connection, table: &str, seq: i64) -> Result<(), StoreError> {
    if seq <= sequence(conn, table)? {
        return Ok(());
    }
    let n = conn.execute(
        "UPDATE sqlite_sequence SET seq = ?1 WHERE name = ?2",
        rusqlite::params![seq, table],
    )?;
    if n == 0 {
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
            rusqlite::params![table, seq],
        )?;
    }
    Ok(())
}

/// Temp file in the same directory, fsync, rename, fsync the directory: a crash leaves either
/// the old or the new file, never a torn one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |e: std::io::Error| {
        StoreError::Internal(format!("cannot write memory file {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("memory.json");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // Best effort: not every platform can fsync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
