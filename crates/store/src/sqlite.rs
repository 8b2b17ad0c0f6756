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
use rusqlite::{Connection, ErrorCode, OpenFlags};

use rusqlite::types::Value as SqlValue;
use sea_query::Values;
use tokio::sync::oneshot;

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

/// Called once the write's batch is committed (or failed to commit): delivers the result.
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Runs a write inside its batch's transaction; `None` if it failed (its error is already
/// delivered).
type RunWrite = Box<dyn FnOnce(&dyn Conn) -> Option<Finish> + Send>;

/// A write waiting for the writer connection.
struct Job {
    run: RunWrite,
    /// Delivers an error without running the write.
    refuse: Box<dyn FnOnce(StoreError) + Send>,
}

/// Writes waiting for the writer, and whether a thread is draining them.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    draining: bool,
}

pub(crate) struct Db {
    writer: Mutex<Connection>,
    /// Writes waiting for the writer (group commit, see `submit`).
    queue: Mutex<Queue>,
    /// Empty for in-memory databases: they have one connection.
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    mirror: Option<MemFile>,
    models: Vec<ModelId>,
}

fn lock_queue(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            queue: Mutex::new(Queue::default()),
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
            queue: Mutex::new(Queue::default()),
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

    /// Queues `f` for the writer. The receiver answers once `f` is durable, or with its
    /// error; `committed` gets its events after the commit, under the writer lock, so
    /// events are handed over in commit order. When this returns `true`, nobody is writing
    /// the queue: the caller must run [`Db::drain`] on a blocking thread.
    ///
    /// Group commit: the drainer runs every queued write in one IMMEDIATE transaction, each
    /// inside its own savepoint, then commits once, and repeats while writes keep coming.
    /// So concurrent writes share one `fsync` instead of waiting for one each, and they
    /// wait on a channel, not on a thread of their own. A write that fails rolls back to
    /// its savepoint alone; every write of a transaction that is lost or fails to commit
    /// gets the error.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Conn) -> Result<(T, Vec<OutboxEvent>), StoreError> + Send + 'static,
        committed: impl FnOnce(Vec<OutboxEvent>) + Send + 'static,
    ) -> (oneshot::Receiver<Result<T, StoreError>>, bool) {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        // The reply goes either to `run`'s failure, to `Finish`, or to `refuse`: one slot.
        let reply = Arc::new(Mutex::new(Some(reply)));
        let send = |slot: &Mutex<Option<oneshot::Sender<Result<T, StoreError>>>>,
                    result: Result<T, StoreError>| {
            if let Some(tx) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(result);
            }
        };
        let run_reply = reply.clone();
        let job = Job {
            run: Box::new(move |conn: &dyn Conn| match f(conn) {
                Err(e) => {
                    send(&run_reply, Err(e));
                    None
                }
                Ok((out, events)) => Some(Box::new(move |outcome: Result<(), StoreError>| {
                    send(
                        &run_reply,
                        outcome.map(|()| {
                            if !events.is_empty() {
                                committed(events);
                            }
                            out
                        }),
                    );
                }) as Finish),
            }),
            refuse: Box::new(move |e| send(&reply, Err(e))),
        };
        let mut queue = lock_queue(&self.queue);
        queue.jobs.push(job);
        let start = !queue.draining;
        queue.draining = true;
        (answer, start)
    }

    /// Writes queued batches until the queue is empty (see `submit`). Blocks: run it on a
    /// blocking thread.
    pub(crate) fn drain(&self, ops: &Ops<'_>) {
        loop {
            let conn = lock(&self.writer);
            let batch = {
                let mut queue = lock_queue(&self.queue);
                if queue.jobs.is_empty() {
                    queue.draining = false;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            // A panicking write must not stop the writer: its batch's writes see their
            // replies dropped (an error), and the queue goes on.
            let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.write_batch(&conn, ops, batch)
            }));
            if written.is_err() {
                tracing::error!(target: "portcullis::store", "a write panicked; its batch failed");
            }
        }
    }

    /// Writes `batch` in one transaction (see `submit`).
    fn write_batch(&self, conn: &Connection, ops: &Ops<'_>, batch: Vec<Job>) {
        // A writer that panicked mid-batch left its transaction open: end it first.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut done: Vec<Finish> = Vec::with_capacity(batch.len());
        let mut open = false;
        let mut jobs = batch.into_iter();
        while let Some(job) = jobs.next() {
            if open && conn.is_autocommit() {
                // Some errors (a full disk, I/O) make SQLite roll the whole transaction
                // back: the writes before this one are gone, and are reported so.
                let lost =
                    StoreError::Unavailable("the database rolled the transaction back".into());
                for finish in done.drain(..) {
                    finish(Err(lost.clone()));
                }
                open = false;
            }
            if !open {
                // IMMEDIATE: the write lock now, not at the first statement.
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    let e = StoreError::from(e);
                    (job.refuse)(e.clone());
                    for job in jobs {
                        (job.refuse)(e.clone());
                    }
                    return;
                }
                open = true;
            }
            if let Err(e) = conn.execute_batch("SAVEPOINT portcullis_write") {
                (job.refuse)(StoreError::from(e));
                continue;
            }
            match (job.run)(conn) {
                Some(finish) => match conn.execute_batch("RELEASE portcullis_write") {
                    Ok(()) => done.push(finish),
                    Err(e) => finish(Err(StoreError::from(e))),
                },
                None => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch(
                            "ROLLBACK TO portcullis_write; RELEASE portcullis_write",
                        );
                    }
                }
            }
        }
        if !open {
            return;
        }
        let outcome = match conn.execute_batch("COMMIT") {
            Ok(()) => match &self.mirror {
                // Still under the writer lock, so the file follows commit order.
                Some(mirror) => mirror.save(conn, ops, &self.models),
                None => Ok(()),
            },
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Err(StoreError::from(e))
            }
        };
        for finish in done {
            finish(outcome.clone());
        }
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
