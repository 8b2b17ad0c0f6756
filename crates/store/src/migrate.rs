//! Schema autoupdate: brings the tables of one database up to date with the models, at
//! open, idempotently and additively. Tables and columns are created, never dropped or
//! retyped, so existing data is never lost. Shared by both engines: the dialect supplies the
//! column types and the catalogue query.
//!
//! DDL cannot bind identifiers as parameters, so it is written here with every identifier
//! taken from the compiled schema and quoted by [`quote`]; no values appear in it.

use std::collections::HashSet;

use portcullis_schema::PropType;
use portcullis_schema::{App, Model, ModelId, RelationKind};
use rusqlite::types::Value as SqlValue;

use crate::compile::EXTRA;
use crate::dialect::Dialect;
use crate::ops::Conn;
use crate::StoreError;

/// A quoted SQL identifier (`"` doubled inside).
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column_def(d: &dyn Dialect, model: &Model, idx: usize) -> String {
    let p = &model.properties[idx];
    if idx == model.id_property {
        if p.generated {
            return format!("{} {}", quote(&p.name), d.generated_id());
        }
        return format!(
            "{} {} NOT NULL PRIMARY KEY",
            quote(&p.name),
            d.column_type(&p.ty)
        );
    }
    format!("{} {}", quote(&p.name), d.column_type(&p.ty))
}

fn existing_columns(
    conn: &dyn Conn,
    d: &dyn Dialect,
    table: &str,
) -> Result<HashSet<String>, StoreError> {
    let (sql, values) = d.columns_query(table);
    Ok(conn
        .query(&sql, values)?
        .into_iter()
        .filter_map(|mut r| match r.pop() {
            Some(SqlValue::Text(name)) => Some(name),
            _ => None,
        })
        .collect())
}

/// Creates or extends the tables and indexes of `models` (all in this database). The caller
/// runs it in a transaction.
pub(crate) fn autoupdate(
    tx: &dyn Conn,
    d: &dyn Dialect,
    app: &App,
    models: &[ModelId],
) -> Result<(), StoreError> {
    let extra_type = d.column_type(&PropType::Object);
    for &id in models {
        let model = app.model(id);
        let cols = existing_columns(tx, d, &model.table)?;
        if cols.is_empty() {
            let mut defs: Vec<String> = (0..model.properties.len())
                .map(|i| column_def(d, model, i))
                .collect();
            if !model.is_strict() {
                defs.push(format!("{} {extra_type}", quote(EXTRA)));
            }
            tx.batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                quote(&model.table),
                defs.join(", ")
            ))?;
        } else {
            for (i, p) in model.properties.iter().enumerate() {
                // A primary key cannot be added to an existing table; such a change needs a
                // manual migration and the table keeps working with its old key.
                if !cols.contains(&p.name) && i != model.id_property {
                    tx.batch(&format!(
                        "ALTER TABLE {} {} {}",
                        quote(&model.table),
                        d.add_column(),
                        column_def(d, model, i)
                    ))?;
                }
            }
            if !model.is_strict() && !cols.contains(EXTRA) {
                tx.batch(&format!(
                    "ALTER TABLE {} {} {} {extra_type}",
                    quote(&model.table),
                    d.add_column(),
                    quote(EXTRA)
                ))?;
            }
        }
    }
    // Indexes once every table exists: relation keys may point into other models.
    let mut wanted: Vec<(ModelId, String, bool)> = Vec::new();
    for &id in models {
        let model = app.model(id);
        for (i, p) in model.properties.iter().enumerate() {
            if i != model.id_property && (p.index || p.unique) {
                wanted.push((id, p.name.clone(), p.unique));
            }
        }
        for rel in &model.relations {
            match rel.kind {
                RelationKind::BelongsTo => wanted.push((id, rel.foreign_key.clone(), false)),
                RelationKind::HasMany | RelationKind::HasOne => {
                    wanted.push((rel.target, rel.foreign_key.clone(), false))
                }
                RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany => {
                    if let Some(t) = rel.through {
                        wanted.push((t, rel.foreign_key.clone(), false));
                        if let Some(kt) = &rel.key_through {
                            wanted.push((t, kt.clone(), false));
                        }
                    }
                }
            }
        }
    }
    let mut done = HashSet::new();
    for (id, column, unique) in wanted {
        if !models.contains(&id) {
            continue;
        }
        let model = app.model(id);
        let is_column = model.property(&column).is_some_and(|p| !p.id);
        if !is_column || !done.insert((id, column.clone(), unique)) {
            continue;
        }
        let (prefix, kind) = if unique {
            ("ux", "UNIQUE INDEX")
        } else {
            ("ix", "INDEX")
        };
        let name = index_name(prefix, &model.table, &column);
        // Where NULLs do not already sort lowest, the index says so, so that it serves
        // both `ASC NULLS FIRST` and (read backwards) `DESC NULLS LAST`.
        let nulls = if d.nulls_sort_low() {
            ""
        } else {
            " NULLS FIRST"
        };
        tx.batch(&format!(
            "CREATE {kind} IF NOT EXISTS {} ON {} ({}{nulls})",
            quote(&name),
            quote(&model.table),
            quote(&column)
        ))?;
    }
    Ok(())
}

/// `ux_<table>_<column>` / `ix_<table>_<column>`.
pub(crate) fn index_name(prefix: &str, table: &str, column: &str) -> String {
    format!("{prefix}_{table}_{column}")
}
