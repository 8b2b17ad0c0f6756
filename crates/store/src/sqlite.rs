//! SQLite databases: connection setup (pragmas, the `regexp` function), the single writer
//! connection and the reader pool, running work off the async workers, and the mapping of
//! SQLite errors to [`StoreError`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_schema::{App, ModelId};
use regex::{Regex, RegexBuilder};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use rusqlite::types::Value as SqlValue;
use sea_query::Values;

use crate::codec::to_sql;
use crate::dialect::{Dialect, Sqlite};
use crate::memfile::MemFile;
use crate::migrate::autoupdate;
use crate::ops::{Conn, Ops};
use crate::outbox::OutboxEvent;
use crate::StoreError;

const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Compiled patterns kept per connection before the cache is emptied.
const REGEX_CACHE: usize = 64;

pub(crate) static DIALECT: Sqlite = Sqlite;

pub(crate) struct Db {
    writer: Mutex<Connection>,
    /// Empty for in-memory databases: they have one connection.
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    mirror: Option<MemFile>,
    models: Vec<ModelId>,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic mid-transaction rolled the transaction back when it unwound; the connection
    // itself is still sound.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn register_regexp(conn: &Connection) -> rusqlite::Result<()> {
    let cache: Arc<Mutex<HashMap<String, Regex>>> = Arc::default();
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        move |ctx| {
            let pattern: String = ctx.get(0)?;
            let text = match ctx.get_raw(1) {
                ValueRef::Null | ValueRef::Blob(_) => return Ok(None),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Integer(i) => i.to_string(),
                ValueRef::Real(f) => f.to_string(),
            };
            let re = {
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                match cache.get(&pattern) {
                    Some(re) => re.clone(),
                    None => {
                        let re = RegexBuilder::new(&pattern)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?;
                        if cache.len() >= REGEX_CACHE {
                            cache.clear();
                        }
                        cache.insert(pattern, re.clone());
                        re
                    }
                }
            };
            Ok(Some(re.is_match(&text)))
        },
    )
}

fn configure(conn: &Connection, file: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        // FULL: a write acknowledged to a client survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    // LoopBack's like/nlike are case-sensitive; ilike lowers both sides explicitly.
    conn.pragma_update(None, "case_sensitive_like", true)?;
    conn.set_prepared_statement_cache_capacity(128);
    register_regexp(conn)?;
    Ok(())
}

impl Conn for Connection {
    fn query(&self, sql: &str, values: Values) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        tracing::trace!(target: "portcullis::sql", sql);
        let params = params(values)?;
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut r = Vec::with_capacity(n);
            for i in 0..n {
                r.push(row.get::<_, SqlValue>(i)?);
            }
            out.push(r);
        }
        Ok(out)
    }

    fn exec(&self, sql: &str, values: Values) -> Result<u64, StoreError> {
        let params = params(values)?;
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }
}

fn params(values: Values) -> Result<Vec<SqlValue>, StoreError> {
    values.0.into_iter().map(to_sql).collect()
}

fn migrate(conn: &Connection, app: &App, models: &[ModelId]) -> Result<(), StoreError> {
    let tx = conn.unchecked_transaction()?;
    autoupdate(&*tx, &DIALECT, app, models)?;
    tx.commit()?;
    Ok(())
}

impl Db {
    pub(crate) fn open_file(
        path: &Path,
        app: &App,
        models: Vec<ModelId>,
    ) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let writer = Connection::open(path)?;
        configure(&writer, true)?;
        migrate(&writer, app, &models)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            configure(&r, false)?;
            r.pragma_update(None, "query_only", true)?;
            readers.push(Mutex::new(r));
        }
        Ok(Db {
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
            mirror: None,
            models,
        })
    }

    pub(crate) fn open_memory(
        file: Option<&Path>,
        app: &App,
        models: Vec<ModelId>,
    ) -> Result<Db, StoreError> {
        let conn = Connection::open_in_memory()?;
        configure(&conn, false)?;
        migrate(&conn, app, &models)?;
        let ops = Ops { app, d: &DIALECT };
        let mirror = match file {
            Some(path) => Some(MemFile::load(path, &conn, &ops, &models)?),
            None => None,
        };
        Ok(Db {
            writer: Mutex::new(conn),
            readers: Vec::new(),
            next: AtomicUsize::new(0),
            mirror,
            models,
        })
    }

    pub(crate) fn read<T>(
        &self,
        snapshot: bool,
        f: impl FnOnce(&dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // With `snapshot`, one read transaction, so that parents and their included rows
        // come from the same snapshot even while writes commit in between. A single
        // statement is its own snapshot.
        let f = |conn: &Connection| {
            if !snapshot {
                return f(conn);
            }
            let tx = conn.unchecked_transaction()?;
            let out = f(&*tx);
            drop(tx);
            out
        };
        if self.readers.is_empty() {
            return f(&lock(&self.writer));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Take a free reader if there is one, else wait for the next in turn.
        for i in 0..self.readers.len() {
            if let Some(m) = self.readers.get((start + i) % self.readers.len()) {
                if let Ok(conn) = m.try_lock() {
                    return f(&conn);
                }
            }
        }
        match self.readers.get(start % self.readers.len()) {
            Some(m) => f(&lock(m)),
            None => f(&lock(&self.writer)),
        }
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer: all of it is stored or none.
    /// `committed` gets the transaction's events after the commit, still under the writer
    /// lock, so events are handed over in commit order.
    pub(crate) fn write<T>(
        &self,
        ops: &Ops<'_>,
        f: impl FnOnce(&dyn Conn) -> Result<(T, Vec<OutboxEvent>), StoreError>,
        committed: impl FnOnce(Vec<OutboxEvent>),
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (out, events) = f(&*tx)?;
        tx.commit()?;
        if !events.is_empty() {
            committed(events);
        }
        if let Some(mirror) = &self.mirror {
            // Still under the writer lock, so the file follows commit order.
            mirror.save(&conn, ops, &self.models)?;
        }
        Ok(out)
    }
}

pub(crate) fn dialect() -> &'static dyn Dialect {
    &DIALECT
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => {
                let msg = msg.clone().unwrap_or_else(|| e.to_string());
                match f.code {
                    ErrorCode::ConstraintViolation
                        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        unique_violation(&msg)
                    }
                    ErrorCode::ConstraintViolation
                    | ErrorCode::TypeMismatch
                    | ErrorCode::TooBig => StoreError::Invalid(msg),
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen => {
                        StoreError::Unavailable(msg)
                    }
                    _ => StoreError::Internal(msg),
                }
            }
            rusqlite::Error::UserFunctionError(inner) => StoreError::Invalid(inner.to_string()),
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// From SQLite's `UNIQUE constraint failed: Table.column[, Table.column]`.
fn unique_violation(msg: &str) -> StoreError {
    let first = msg
        .rsplit(": ")
        .next()
        .and_then(|l| l.split(", ").next())
        .unwrap_or("");
    match first.split_once('.') {
        Some((table, column)) => StoreError::UniqueViolation {
            model: table.to_string(),
            property: Some(column.to_string()),
        },
        None => StoreError::UniqueViolation {
            model: String::new(),
            property: None,
        },
    }
}
