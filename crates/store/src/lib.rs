//! Storage back ends behind one [`Store`] API. Every datasource an app's models use becomes
//! one database: SQLite (a file, or memory optionally mirrored to LoopBack's memory-store
//! JSON file) or PostgreSQL (a pooled server connection). The typed filter AST from
//! `portcullis-query` is compiled to SQL with sea-query, every value a bound parameter, by
//! code shared between the engines; what differs sits behind the `dialect` seam.
//!
//! Storage forms, SQLite / PostgreSQL: string TEXT / text (byte-order collation), number
//! NUMERIC / double precision (a generated number id is an `INTEGER PRIMARY KEY
//! AUTOINCREMENT` / a bigint identity), boolean INTEGER 0/1 / boolean, date TEXT in the
//! fixed-width `toISOString()` form (so text order is time order) / timestamptz,
//! object/array/any JSON TEXT / jsonb. Loose models keep undeclared properties as a JSON
//! object in the `__extra` column (TEXT / jsonb). Records read back the same from both.
//!
//! Modules: `dialect` (what differs between SQL engines), `compile` (filter AST to SQL),
//! `codec` (value conversions), `ops` (the operations over one connection of either engine),
//! `migrate` (schema autoupdate), `sqlite` and `postgres` (connections, pools, transactions,
//! errors), `memfile` (the JSON mirror), `dates`.

mod codec;
mod compile;
mod dates;
mod dialect;
mod memfile;
mod migrate;
mod ops;
mod outbox;
mod postgres;
mod sqlite;

use std::sync::{Arc, OnceLock};

use portcullis_query::{Filter, Scalar, Where};
use portcullis_schema::{App, Connector, ModelId};

use crate::dialect::Dialect;
use crate::ops::{Conn, Ops};
use crate::outbox::Effects;
pub use crate::outbox::{channel_for_schema, OutboxEvent, RowChange, WriteObserver, OUTBOX_TABLE};
use crate::postgres::PgDb;

/// One model instance: property name to JSON value.
pub type Record = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique index refused the write (maps to HTTP 422 uniqueness).
    #[error("a `{model}` with this {} already exists", property.as_deref().unwrap_or("key"))]
    UniqueViolation {
        model: String,
        property: Option<String>,
    },
    /// The where clause of upsertWithWhere matched several rows (HTTP 400).
    #[error("there are multiple instances found with the given where clause")]
    MultipleMatches,
    /// A value the database cannot take (HTTP 400), e.g. an id of the wrong type.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The database cannot be reached or is busy beyond the timeout (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else (HTTP 500; message is logged, never shown).
    #[error("storage error: {0}")]
    Internal(String),
}

/// One database, of either engine.
enum Db {
    Sqlite(Box<sqlite::Db>),
    Postgres(PgDb),
}

impl Db {
    fn dialect(&self) -> &'static dyn Dialect {
        match self {
            Db::Sqlite(_) => sqlite::dialect(),
            Db::Postgres(_) => postgres::dialect(),
        }
    }

    /// Runs `f` as a read: with `snapshot`, in one read transaction (several statements
    /// that must agree); without, statement by statement.
    fn read<T>(
        &self,
        snapshot: bool,
        f: impl FnOnce(&dyn Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Db::Sqlite(db) => db.read(snapshot, f),
            Db::Postgres(db) => db.read(snapshot, f),
        }
    }
}

struct Inner {
    app: Arc<App>,
    dbs: Vec<Db>,
    /// Per model (by `ModelId`), the index into `dbs` of its database.
    model_db: Vec<Option<usize>>,
    /// Decides the events of writes; none until the app sets one.
    observer: OnceLock<Arc<dyn WriteObserver>>,
}

/// The handle to every database of an app. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn open_blocking(app: Arc<App>) -> Result<Store, StoreError> {
    let mut dbs = Vec::new();
    let mut model_db = vec![None; app.models.len()];
    for ds in app.datasources.values() {
        let models: Vec<ModelId> = app
            .models
            .iter()
            .filter(|m| m.is_persisted() && app.datasource_of(m).is_some_and(|d| d.name == ds.name))
            .map(|m| m.id)
            .collect();
        let db = match &ds.connector {
            Connector::Mail { .. } => continue,
            Connector::Postgres { .. } if models.is_empty() => continue,
            Connector::Postgres { url } => {
                Db::Postgres(PgDb::open(url, &ds.raw, &app, models.clone())?)
            }
            Connector::Sqlite { file } => {
                Db::Sqlite(Box::new(sqlite::Db::open_file(file, &app, models.clone())?))
            }
            Connector::Memory { file } => Db::Sqlite(Box::new(sqlite::Db::open_memory(
                file.as_deref(),
                &app,
                models.clone(),
            )?)),
        };
        for m in &models {
            if let Some(slot) = model_db.get_mut(m.0) {
                *slot = Some(dbs.len());
            }
        }
        dbs.push(db);
    }
    Ok(Store {
        inner: Arc::new(Inner {
            app,
            dbs,
            model_db,
            observer: OnceLock::new(),
        }),
    })
}

fn joined<T>(r: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    r.unwrap_or_else(|e| Err(StoreError::Internal(format!("storage task failed: {e}"))))
}

impl Store {
    /// Opens every datasource the app's models use and brings the schema up to date. A
    /// PostgreSQL server that cannot be reached fails with [`StoreError::Unavailable`] within
    /// the connect timeout.
    pub async fn open(app: Arc<App>) -> Result<Store, StoreError> {
        joined(tokio::task::spawn_blocking(move || open_blocking(app)).await)
    }

    fn db_index(inner: &Inner, model: ModelId) -> Result<usize, StoreError> {
        inner
            .model_db
            .get(model.0)
            .copied()
            .flatten()
            .ok_or_else(|| {
                let name = inner
                    .app
                    .models
                    .get(model.0)
                    .map_or("?", |m| m.name.as_str());
                StoreError::Invalid(format!("model `{name}` is not stored in any database"))
            })
    }

    fn db(inner: &Inner, model: ModelId) -> Result<&Db, StoreError> {
        let index = Self::db_index(inner, model)?;
        inner
            .dbs
            .get(index)
            .ok_or_else(|| StoreError::Internal("model mapped to a missing database".into()))
    }

    async fn read<T: Send + 'static>(
        &self,
        model: ModelId,
        snapshot: bool,
        f: impl FnOnce(&Ops<'_>, &dyn Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // SQLite reads run right here on the async worker: a WAL read from the page cache
        // takes microseconds, less than the hand-off to the blocking pool and back, which
        // dominated the cost of a list. Writes (which wait for the disk) and PostgreSQL
        // calls stay on the blocking pool.
        if let Ok(db @ Db::Sqlite(_)) = Self::db(&self.inner, model) {
            let ops = Ops {
                app: &self.inner.app,
                d: db.dialect(),
            };
            return db.read(snapshot, |conn| f(&ops, conn));
        }
        let inner = self.inner.clone();
        joined(
            tokio::task::spawn_blocking(move || {
                let db = Self::db(&inner, model)?;
                let ops = Ops {
                    app: &inner.app,
                    d: db.dialect(),
                };
                db.read(snapshot, |conn| f(&ops, conn))
            })
            .await,
        )
    }

    async fn write<T: Send + 'static>(
        &self,
        model: ModelId,
        f: impl FnOnce(&Ops<'_>, &dyn Conn, &mut Effects<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let index = Self::db_index(&self.inner, model)?;
        let db = Self::db(&self.inner, model)?;
        // Owned, so that it can run on whichever thread writes: SQLite's drainer, or a
        // blocking thread for PostgreSQL.
        let dialect = db.dialect();
        let job_inner = self.inner.clone();
        let job = move |conn: &dyn Conn| {
            let ops = Ops {
                app: &job_inner.app,
                d: dialect,
            };
            let mut effects = Effects::new(job_inner.observer.get().map(|o| &**o));
            let out = f(&ops, conn, &mut effects)?;
            Ok((out, effects.events))
        };
        let commit_inner = self.inner.clone();
        let committed = move |events| {
            if let Some(o) = commit_inner.observer.get() {
                o.committed(events);
            }
        };
        match db {
            Db::Sqlite(sqlite) => {
                let (answer, start) = sqlite.submit(job, committed);
                if start {
                    let inner = self.inner.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(Db::Sqlite(sqlite)) = inner.dbs.get(index) {
                            let ops = Ops {
                                app: &inner.app,
                                d: dialect,
                            };
                            sqlite.drain(&ops);
                        }
                    });
                }
                answer.await.unwrap_or_else(|_| {
                    Err(StoreError::Internal(
                        "the write was abandoned by a failing writer".into(),
                    ))
                })
            }
            Db::Postgres(_) => {
                let inner = self.inner.clone();
                joined(
                    tokio::task::spawn_blocking(move || match inner.dbs.get(index) {
                        Some(Db::Postgres(pg)) => pg.write(job, committed),
                        _ => Err(StoreError::Internal("database changed kind".into())),
                    })
                    .await,
                )
            }
        }
    }

    /// Sets the observer that decides the events of every later write (once per store;
    /// `false` if one was already set).
    pub fn set_observer(&self, observer: Arc<dyn WriteObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// The `LISTEN` channel of the outbox of the app's first PostgreSQL database, the one
    /// [`Store::postgres_config`] connects to.
    pub fn outbox_channel(&self) -> Option<String> {
        self.inner.dbs.iter().find_map(|db| match db {
            Db::Postgres(pg) => Some(pg.channel().to_string()),
            Db::Sqlite(_) => None,
        })
    }

    /// How many PostgreSQL databases the app uses (nodes tail the first one's outbox).
    pub fn postgres_databases(&self) -> usize {
        self.inner
            .dbs
            .iter()
            .filter(|db| matches!(db, Db::Postgres(_)))
            .count()
    }

    /// The connection settings of the app's first PostgreSQL database (its URL, with the
    /// datasource's `schema` as the `search_path` and the store's connect timeout), for a
    /// caller that needs a dedicated connection of its own: the server's cluster module
    /// LISTENs on one. `None` when no model is stored in PostgreSQL.
    pub fn postgres_config(&self) -> Option<tokio_postgres::Config> {
        self.inner.dbs.iter().find_map(|db| match db {
            Db::Postgres(pg) => Some(pg.config().clone()),
            Db::Sqlite(_) => None,
        })
    }

    /// The query plan of the statement `find` would run (includes left out).
    pub async fn explain(
        &self,
        model: ModelId,
        filter: &Filter,
    ) -> Result<Vec<String>, StoreError> {
        let filter = filter.clone();
        self.read(model, false, move |ops, c| ops.explain(c, model, &filter))
            .await
    }

    pub async fn find(&self, model: ModelId, filter: &Filter) -> Result<Vec<Record>, StoreError> {
        let filter = filter.clone();
        let snapshot = !filter.include.is_empty();
        self.read(model, snapshot, move |ops, c| ops.find(c, model, &filter))
            .await
    }

    pub async fn find_one(
        &self,
        model: ModelId,
        filter: &Filter,
    ) -> Result<Option<Record>, StoreError> {
        let mut filter = filter.clone();
        filter.limit = Some(1);
        let snapshot = !filter.include.is_empty();
        self.read(model, snapshot, move |ops, c| {
            Ok(ops.find(c, model, &filter)?.into_iter().next())
        })
        .await
    }

    pub async fn find_by_id(
        &self,
        model: ModelId,
        id: &Scalar,
        filter: Option<&Filter>,
    ) -> Result<Option<Record>, StoreError> {
        let id = id.clone();
        let filter = filter.cloned();
        let snapshot = filter.as_ref().is_some_and(|f| !f.include.is_empty());
        self.read(model, snapshot, move |ops, c| {
            ops.find_by_id(c, model, &id, filter.as_ref())
        })
        .await
    }

    pub async fn exists(&self, model: ModelId, id: &Scalar) -> Result<bool, StoreError> {
        let id = id.clone();
        self.read(model, false, move |ops, c| {
            let model_ref = ops.model(model)?;
            let f = Filter {
                fields: Some(vec![model_ref.id_name().to_string()]),
                ..Filter::default()
            };
            Ok(ops.find_by_id(c, model, &id, Some(&f))?.is_some())
        })
        .await
    }

    pub async fn count(&self, model: ModelId, where_: Option<&Where>) -> Result<u64, StoreError> {
        let w = where_.cloned();
        self.read(model, false, move |ops, c| ops.count(c, model, w.as_ref()))
            .await
    }

    /// All rows in one transaction: all stored or none. Returns the stored rows (generated ids, defaults).
    pub async fn create(
        &self,
        model: ModelId,
        rows: Vec<Record>,
    ) -> Result<Vec<Record>, StoreError> {
        self.write(model, move |ops, c, fx| {
            let rows = ops.create(c, model, rows)?;
            fx.record(model, RowChange::Created, &rows);
            Ok(rows)
        })
        .await
    }

    /// Patch: only the given properties change. None if no such row.
    pub async fn update_by_id(
        &self,
        model: ModelId,
        id: &Scalar,
        patch: Record,
    ) -> Result<Option<Record>, StoreError> {
        let id = id.clone();
        self.write(model, move |ops, c, fx| {
            let row = ops.update_by_id(c, model, &id, &patch, false)?;
            fx.record(model, RowChange::Updated, row.as_slice());
            Ok(row)
        })
        .await
    }

    /// Replace: properties absent from `data` become NULL (the id is kept). None if no such row.
    pub async fn replace_by_id(
        &self,
        model: ModelId,
        id: &Scalar,
        data: Record,
    ) -> Result<Option<Record>, StoreError> {
        let id = id.clone();
        self.write(model, move |ops, c, fx| {
            let row = ops.update_by_id(c, model, &id, &data, true)?;
            fx.record(model, RowChange::Updated, row.as_slice());
            Ok(row)
        })
        .await
    }

    /// Upsert by the id in `data` (patch if it exists, else create), atomically.
    pub async fn patch_or_create(
        &self,
        model: ModelId,
        data: Record,
    ) -> Result<Record, StoreError> {
        self.write(model, move |ops, c, fx| {
            let (row, change) = ops.upsert(c, model, data, false)?;
            fx.record(model, change, std::slice::from_ref(&row));
            Ok(row)
        })
        .await
    }

    /// Upsert by the id in `data` (replace if it exists, else create), atomically.
    pub async fn replace_or_create(
        &self,
        model: ModelId,
        data: Record,
    ) -> Result<Record, StoreError> {
        self.write(model, move |ops, c, fx| {
            let (row, change) = ops.upsert(c, model, data, true)?;
            fx.record(model, change, std::slice::from_ref(&row));
            Ok(row)
        })
        .await
    }

    /// One match: patch it; none: create `data`; more than one: StoreError::MultipleMatches.
    pub async fn upsert_with_where(
        &self,
        model: ModelId,
        where_: Option<&Where>,
        data: Record,
    ) -> Result<Record, StoreError> {
        let w = where_.cloned();
        self.write(model, move |ops, c, fx| {
            let (row, change) = ops.upsert_with_where(c, model, w.as_ref(), data)?;
            fx.record(model, change, std::slice::from_ref(&row));
            Ok(row)
        })
        .await
    }

    pub async fn update_all(
        &self,
        model: ModelId,
        where_: Option<&Where>,
        patch: Record,
    ) -> Result<u64, StoreError> {
        let w = where_.cloned();
        self.write(model, move |ops, c, fx| {
            if !fx.observes(model) {
                return ops.update_all(c, model, w.as_ref(), &patch, None);
            }
            let mut rows = Vec::new();
            let n = ops.update_all(c, model, w.as_ref(), &patch, Some(&mut rows))?;
            fx.record(model, RowChange::Updated, &rows);
            Ok(n)
        })
        .await
    }

    pub async fn delete_by_id(&self, model: ModelId, id: &Scalar) -> Result<u64, StoreError> {
        let id = id.clone();
        self.write(model, move |ops, c, fx| {
            if !fx.observes(model) {
                return ops.delete_by_id(c, model, &id, None);
            }
            let mut rows = Vec::new();
            let n = ops.delete_by_id(c, model, &id, Some(&mut rows))?;
            fx.record(model, RowChange::Deleted, &rows);
            Ok(n)
        })
        .await
    }

    pub async fn delete_all(
        &self,
        model: ModelId,
        where_: Option<&Where>,
    ) -> Result<u64, StoreError> {
        let w = where_.cloned();
        self.write(model, move |ops, c, fx| {
            if !fx.observes(model) {
                return ops.delete(c, model, w.as_ref(), None);
            }
            let mut rows = Vec::new();
            let n = ops.delete(c, model, w.as_ref(), Some(&mut rows))?;
            fx.record(model, RowChange::Deleted, &rows);
            Ok(n)
        })
        .await
    }
}
