//! PostgreSQL databases: the connection pool (deadpool-postgres over tokio-postgres, no TLS)
//! with bounded wait and connect times, the `schema` setting, statements prepared once per
//! connection, one transaction per call, the conversion of parameters and cells to and from
//! PostgreSQL's binary forms, and the mapping of PostgreSQL errors to [`StoreError`].
//!
//! The operations in `ops` are synchronous and shared with SQLite: they run on a blocking
//! thread (as SQLite's do), and each statement is awaited there on the runtime that owns the
//! pool's connections.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use portcullis_schema::{App, ModelId};
use rusqlite::types::Value as SqlValue;
use sea_query::Values;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls};

use crate::codec::to_sql;
use crate::dates::parse_date;
use crate::dialect::{Dialect, Postgres};
use crate::migrate::{autoupdate, index_name, quote};
use crate::ops::Conn;
use crate::outbox::{channel_for_schema, store_postgres, OutboxEvent, OUTBOX_DDL};
use crate::StoreError;

pub(crate) static DIALECT: Postgres = Postgres;

/// Longest wait for a pooled connection, and for a new connection to be established.
const TIMEOUT: Duration = Duration::from_secs(5);
const POOL_SIZE: usize = 16;
/// Prepared statements kept per connection before its cache is emptied (SQL varies with
/// the length of `IN` lists, so the set of statements is open-ended).
const STATEMENT_CACHE: usize = 256;
/// PostgreSQL truncates identifiers to this many bytes.
const MAX_IDENT: usize = 63;
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

pub(crate) struct PgDb {
    pool: Pool,
    /// The connection settings (URL, schema as `search_path`, timeouts) the pool uses.
    config: Box<tokio_postgres::Config>,
    /// Unique index or primary key name → (table, column), to name the property of a
    /// unique violation.
    uniques: HashMap<String, (String, String)>,
    /// Where the outbox's wake-ups are sent (see `outbox`).
    channel: String,
}

fn truncate(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The schema named by `-c search_path=…` in a connection's options (its first entry).
fn schema_from_options(options: &str) -> Option<String> {
    let mut tokens = options.split_whitespace();
    while let Some(t) = tokens.next() {
        let setting = match t {
            "-c" | "--" => tokens.next().unwrap_or(""),
            _ => t
                .strip_prefix("-c")
                .or_else(|| t.strip_prefix("--"))
                .unwrap_or(""),
        };
        let Some(value) = setting.strip_prefix("search_path=") else {
            continue;
        };
        let first = value.split(',').next().unwrap_or("").trim();
        let name = match first.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => first.to_lowercase(),
        };
        return (!name.is_empty() && !name.starts_with('$')).then_some(name);
    }
    None
}

/// `-csearch_path="name"`, escaped for the startup options (backslash before blanks).
fn search_path_option(schema: &str) -> String {
    let mut out = String::from("-csearch_path=");
    for c in quote(schema).chars() {
        if c.is_whitespace() || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(t) => {
            StoreError::Unavailable(format!("no database connection within {TIMEOUT:?} ({t:?})"))
        }
        PoolError::Backend(e) => StoreError::Unavailable(format!("cannot connect: {e}")),
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Internal(other.to_string()),
    }
}

impl PgDb {
    /// Connects, creates the configured schema if missing, and brings the tables up to date.
    pub(crate) fn open(
        url: &str,
        raw: &serde_json::Map<String, Value>,
        app: &App,
        models: Vec<ModelId>,
    ) -> Result<PgDb, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("invalid postgresql url: {e}")))?;
        config.connect_timeout(TIMEOUT);
        let schema = match raw.get("schema").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => {
                let option = search_path_option(s);
                let options = match config.get_options() {
                    Some(o) if !o.trim().is_empty() => format!("{o} {option}"),
                    _ => option,
                };
                config.options(options);
                Some(s.to_string())
            }
            _ => config.get_options().and_then(schema_from_options),
        };
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;

        let mut uniques = HashMap::new();
        for &id in &models {
            let model = app.model(id);
            for p in &model.properties {
                if p.unique && !p.id {
                    let name = index_name("ux", &model.table, &p.name);
                    uniques.insert(
                        truncate(&name, MAX_IDENT).to_string(),
                        (model.table.clone(), p.name.clone()),
                    );
                }
            }
            let pkey = format!("{}_pkey", truncate(&model.table, MAX_IDENT - 5));
            uniques.insert(pkey, (model.table.clone(), model.id_name().to_string()));
        }
        let mut db = PgDb {
            pool,
            config: Box::new(config),
            uniques,
            channel: String::new(),
        };
        db.channel = db.run(false, true, |conn| {
            // One autoupdate at a time per schema, across processes.
            let key = schema.clone().unwrap_or_default();
            conn.exec(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                Values(vec![sea_query::Value::String(Some(format!(
                    "portcullis autoupdate {key}"
                )))]),
            )?;
            if let Some(s) = &schema {
                let exists = conn.query(
                    "SELECT 1::int8 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                    Values(vec![sea_query::Value::String(Some(s.clone()))]),
                )?;
                if exists.is_empty() {
                    conn.batch(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(s)))?;
                }
            }
            autoupdate(conn, &DIALECT, app, &models)?;
            conn.batch(OUTBOX_DDL)?;
            let schema = conn.query(
                "SELECT coalesce(current_schema(), '')::text",
                Values(vec![]),
            )?;
            match schema.into_iter().next().and_then(|r| r.into_iter().next()) {
                Some(SqlValue::Text(s)) => Ok(channel_for_schema(&s)),
                _ => Err(StoreError::Internal("no current schema".into())),
            }
        })?;
        Ok(db)
    }

    /// Runs `f` in one transaction on a pooled connection: committed if it succeeds, rolled
    /// back otherwise. Reads see one snapshot (repeatable read), as SQLite's do.
    fn run<T>(
        &self,
        read_only: bool,
        snapshot: bool,
        f: impl FnOnce(&dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run_then(read_only, snapshot, f, |_, _, _| {})
    }

    /// `run`, then `after_commit` on the same connection once the transaction committed.
    fn run_then<T>(
        &self,
        read_only: bool,
        snapshot: bool,
        f: impl FnOnce(&dyn Conn) -> Result<T, StoreError>,
        after_commit: impl FnOnce(&T, &deadpool_postgres::Client, &Handle),
    ) -> Result<T, StoreError> {
        let rt = Handle::try_current()
            .map_err(|e| StoreError::Internal(format!("no async runtime for postgresql: {e}")))?;
        let mut client = rt.block_on(self.pool.get()).map_err(pool_error)?;
        if read_only && !snapshot {
            // A single statement is its own snapshot: no BEGIN/COMMIT round trips.
            return f(&PgConn {
                on: On::Client(&client),
                rt: &rt,
                db: self,
            });
        }
        let tx = rt
            .block_on(async {
                if read_only {
                    client
                        .build_transaction()
                        .isolation_level(IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()
                        .await
                } else {
                    client.transaction().await
                }
            })
            .map_err(|e| self.error(e))?;
        let out = f(&PgConn {
            on: On::Tx(&tx),
            rt: &rt,
            db: self,
        })?;
        rt.block_on(tx.commit()).map_err(|e| self.error(e))?;
        after_commit(&out, &client, &rt);
        Ok(out)
    }

    /// The settings a new connection to this database takes (see `Store::postgres_config`).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Runs `f` as a read; with `snapshot`, in one read-only repeatable-read transaction
    /// (several statements that must agree, e.g. rows and their includes).
    pub(crate) fn read<T>(
        &self,
        snapshot: bool,
        f: impl FnOnce(&dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(true, snapshot, f)
    }

    /// Runs `f` in one write transaction, then stores its events in the outbox before
    /// committing; `committed` runs after the commit.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&dyn Conn) -> Result<(T, Vec<OutboxEvent>), StoreError>,
        committed: impl FnOnce(Vec<OutboxEvent>),
    ) -> Result<T, StoreError> {
        let (out, events) = self.run_then(
            false,
            true,
            |conn| {
                let (out, events) = f(conn)?;
                store_postgres(conn, &events)?;
                Ok((out, events))
            },
            |(_, events), client, rt| {
                if !events.is_empty() {
                    self.wake_listeners(client, rt);
                }
            },
        )?;
        if !events.is_empty() {
            committed(events);
        }
        Ok(out)
    }

    /// Tells every node's outbox listener that rows were committed (see `outbox`), on the
    /// connection that committed them. Best effort: a lost wake-up delays delivery to the
    /// listeners' next tick.
    fn wake_listeners(&self, client: &deadpool_postgres::Client, rt: &Handle) {
        let sent = rt.block_on(async {
            let stmt = client
                .prepare_cached("SELECT pg_notify($1, '')")
                .await
                .map_err(|e| e.to_string())?;
            client
                .execute(&stmt, &[&self.channel])
                .await
                .map_err(|e| e.to_string())
        });
        if let Err(e) = sent {
            tracing::warn!(target: "portcullis::cluster", error = %e, "outbox wake-up not sent; listeners catch up on their tick");
        }
    }

    /// The channel the outbox's wake-ups are sent on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        if let Some(db) = e.as_db_error() {
            if *db.code() == SqlState::UNIQUE_VIOLATION {
                let hit = db.constraint().and_then(|c| self.uniques.get(c));
                return StoreError::UniqueViolation {
                    model: hit
                        .map(|(t, _)| t.as_str())
                        .or(db.table())
                        .unwrap_or_default()
                        .to_string(),
                    property: hit.map(|(_, c)| c.clone()),
                };
            }
            let code = db.code().code();
            let msg = format!("{code}: {}", db.message());
            return match code.get(..2).unwrap_or("") {
                // connection, insufficient resources, operator intervention, rollback
                "08" | "53" | "57" | "40" => StoreError::Unavailable(msg),
                // data exception (bad value, invalid regular expression), integrity
                "22" | "23" => StoreError::Invalid(msg),
                _ => StoreError::Internal(msg),
            };
        }
        let io = e
            .source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        if e.is_closed() || io {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }
}

pub(crate) fn dialect() -> &'static dyn Dialect {
    &DIALECT
}

/// An open transaction on one pooled connection.
struct PgConn<'t, 'c> {
    on: On<'t, 'c>,
    rt: &'t Handle,
    db: &'t PgDb,
}

/// Where statements run: in a transaction, or (single-statement reads) on the connection.
enum On<'t, 'c> {
    Tx(&'t deadpool_postgres::Transaction<'c>),
    Client(&'t deadpool_postgres::Client),
}

fn params(values: Values) -> Result<Vec<Param>, StoreError> {
    values.0.into_iter().map(|v| to_sql(v).map(Param)).collect()
}

impl PgConn<'_, '_> {
    /// The statement for `sql`, prepared once per connection.
    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        let cache = match self.on {
            On::Tx(tx) => &tx.statement_cache,
            On::Client(c) => &c.statement_cache,
        };
        if cache.size() >= STATEMENT_CACHE {
            cache.clear();
        }
        match self.on {
            On::Tx(tx) => tx.prepare_cached(sql).await,
            On::Client(c) => c.prepare_cached(sql).await,
        }
    }
}

impl Conn for PgConn<'_, '_> {
    fn query(&self, sql: &str, values: Values) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        let params = params(values)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self
            .rt
            .block_on(async {
                let stmt = self.prepare(sql).await?;
                match self.on {
                    On::Tx(tx) => tx.query(&stmt, &refs).await,
                    On::Client(c) => c.query(&stmt, &refs).await,
                }
            })
            .map_err(|e| self.db.error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut r = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let cell: Cell = row.try_get(i).map_err(|e| self.db.error(e))?;
                r.push(cell.0);
            }
            out.push(r);
        }
        Ok(out)
    }

    fn exec(&self, sql: &str, values: Values) -> Result<u64, StoreError> {
        let params = params(values)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.rt
            .block_on(async {
                let stmt = self.prepare(sql).await?;
                match self.on {
                    On::Tx(tx) => tx.execute(&stmt, &refs).await,
                    On::Client(c) => c.execute(&stmt, &refs).await,
                }
            })
            .map_err(|e| self.db.error(e))
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.rt
            .block_on(async {
                match self.on {
                    On::Tx(tx) => tx.batch_execute(sql).await,
                    On::Client(c) => c.batch_execute(sql).await,
                }
            })
            .map_err(|e| self.db.error(e))
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// A bound parameter in the neutral form, encoded for whatever type PostgreSQL inferred for
/// its placeholder. A value that cannot be one of that type (e.g. the text `abc` compared
/// with a bigint id) is sent as NULL, so that it matches nothing, as in SQLite.
#[derive(Debug)]
struct Param(SqlValue);

fn as_i64(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Integer(i) => Some(*i),
        SqlValue::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
        SqlValue::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &SqlValue) -> Option<f64> {
    match v {
        SqlValue::Integer(i) => Some(*i as f64),
        SqlValue::Real(f) => Some(*f),
        SqlValue::Text(t) => t.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

fn as_text(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(Value::from(*f).to_string()),
        SqlValue::Text(t) => Some(t.clone()),
        _ => None,
    }
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let v = &self.0;
        if matches!(v, SqlValue::Null) {
            return Ok(IsNull::Yes);
        }
        let t = ty.clone();
        if t == Type::BOOL {
            let b = match v {
                SqlValue::Integer(i) => Some(*i != 0),
                SqlValue::Real(f) => Some(*f != 0.0),
                SqlValue::Text(s) => match s.as_str() {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            return b.map_or(Ok(IsNull::Yes), |b| b.to_sql(ty, out));
        }
        if t == Type::INT8 {
            return as_i64(v).map_or(Ok(IsNull::Yes), |i| i.to_sql(ty, out));
        }
        if t == Type::INT4 {
            return as_i64(v)
                .and_then(|i| i32::try_from(i).ok())
                .map_or(Ok(IsNull::Yes), |i| i.to_sql(ty, out));
        }
        if t == Type::INT2 {
            return as_i64(v)
                .and_then(|i| i16::try_from(i).ok())
                .map_or(Ok(IsNull::Yes), |i| i.to_sql(ty, out));
        }
        if t == Type::FLOAT8 {
            return as_f64(v).map_or(Ok(IsNull::Yes), |f| f.to_sql(ty, out));
        }
        if t == Type::FLOAT4 {
            return as_f64(v).map_or(Ok(IsNull::Yes), |f| (f as f32).to_sql(ty, out));
        }
        if t == Type::TIMESTAMPTZ || t == Type::TIMESTAMP {
            let ms = match v {
                SqlValue::Integer(ms) => Some(*ms),
                SqlValue::Text(s) => parse_date(s),
                _ => None,
            };
            let Some(us) = ms
                .and_then(|ms| ms.checked_mul(1000))
                .and_then(|us| us.checked_sub(PG_EPOCH_US))
            else {
                return Ok(IsNull::Yes);
            };
            out.put_i64(us);
            return Ok(IsNull::No);
        }
        if t == Type::JSONB || t == Type::JSON {
            // JSON columns receive JSON text (see `codec`); numbers are JSON as they are.
            let Some(text) = as_text(v) else {
                return Ok(IsNull::Yes);
            };
            if t == Type::JSONB {
                out.put_u8(1);
            }
            out.put_slice(text.as_bytes());
            return Ok(IsNull::No);
        }
        if t == Type::TEXT
            || t == Type::VARCHAR
            || t == Type::BPCHAR
            || t == Type::NAME
            || t == Type::UNKNOWN
        {
            return match as_text(v) {
                Some(s) => {
                    out.put_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            };
        }
        Err(format!("cannot send a value as PostgreSQL type {ty}").into())
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One result cell in the neutral form (see [`Conn`]).
struct Cell(SqlValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let t = ty.clone();
        let v = if t == Type::BOOL {
            SqlValue::Integer(i64::from(bool::from_sql(ty, raw)?))
        } else if t == Type::INT8 {
            SqlValue::Integer(i64::from_sql(ty, raw)?)
        } else if t == Type::INT4 {
            SqlValue::Integer(i32::from_sql(ty, raw)?.into())
        } else if t == Type::INT2 {
            SqlValue::Integer(i16::from_sql(ty, raw)?.into())
        } else if t == Type::OID {
            SqlValue::Integer(u32::from_sql(ty, raw)?.into())
        } else if t == Type::FLOAT8 {
            SqlValue::Real(f64::from_sql(ty, raw)?)
        } else if t == Type::FLOAT4 {
            SqlValue::Real(f32::from_sql(ty, raw)?.into())
        } else if t == Type::TIMESTAMPTZ || t == Type::TIMESTAMP {
            let us = i64::from_sql(&Type::INT8, raw)?;
            // ±infinity and far dates saturate; `format_date` keeps out-of-range numbers.
            SqlValue::Integer(us.saturating_add(PG_EPOCH_US).div_euclid(1000))
        } else if t == Type::JSONB {
            let body = raw.strip_prefix(&[1u8]).ok_or("unknown jsonb version")?;
            SqlValue::Text(std::str::from_utf8(body)?.to_string())
        } else {
            // text, varchar, name, json and anything else sent as text
            match std::str::from_utf8(raw) {
                Ok(s) => SqlValue::Text(s.to_string()),
                Err(_) => SqlValue::Blob(raw.to_vec()),
            }
        };
        Ok(Cell(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(SqlValue::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_from_options() {
        assert_eq!(
            schema_from_options("-csearch_path=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            schema_from_options("-c search_path=\"My\"\"S\",public").as_deref(),
            Some("My\"S")
        );
        assert_eq!(
            schema_from_options("--search_path=Foo").as_deref(),
            Some("foo")
        );
        assert_eq!(schema_from_options("-cstatement_timeout=5"), None);
        assert_eq!(search_path_option("a b"), "-csearch_path=\"a\\ b\"");
    }
}
