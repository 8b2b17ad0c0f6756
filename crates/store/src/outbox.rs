//! The transactional outbox: what a write means to the rest of the system (change-stream
//! events, cache invalidations) is decided inside the write's own transaction and, on
//! PostgreSQL, stored by that transaction in the `portcullis_events` table. A write and
//! its events are committed together or not at all: an acknowledged write never loses its
//! event, and a rolled-back write never announces anything.
//!
//! The store does not know what the events mean. The app registers one [`WriteObserver`]
//! ([`crate::Store::set_observer`]); per write, the store hands it the rows the write
//! created, updated or deleted (bulk updates and deletes of observed models return their
//! rows for this), the observer turns them into [`OutboxEvent`]s, and after the commit the
//! observer gets the transaction's events back to act on locally. On SQLite (one node) that
//! is all: `committed` runs under the writer lock, so events reach it in commit order. On
//! PostgreSQL the rows are also inserted into the outbox, and right after the commit a
//! `pg_notify` wakes the other nodes' listeners. The wake-up is deliberately not part of
//! the write's transaction: PostgreSQL serializes the commits of notifying transactions
//! (a database-wide lock held through the commit's flush), which cost concurrent writes
//! about a seventh of their throughput. A lost wake-up only delays delivery to the
//! listeners' one-second tick; the events themselves are already committed.

use portcullis_schema::ModelId;
use serde_json::Value;

use crate::ops::Conn;
use crate::{Record, StoreError};

/// The outbox table, in the schema of the app's PostgreSQL datasource.
pub const OUTBOX_TABLE: &str = "portcullis_events";

/// Created by the store's schema update; the listener side reads `id`, `kind`, `key`,
/// `data` and prunes by `at`.
pub(crate) const OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS portcullis_events ( \
       id bigserial PRIMARY KEY, \
       kind text NOT NULL, \
       key text NOT NULL DEFAULT '', \
       data jsonb, \
       at timestamptz NOT NULL DEFAULT clock_timestamp()); \
     CREATE INDEX IF NOT EXISTS portcullis_events_at ON portcullis_events (at);";

/// Rows per outbox insert statement (a bulk delete can cause thousands of events).
const INSERT_CHUNK: usize = 100;

/// What a write did to the rows it hands to the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    /// The rows as stored (generated ids and defaults filled in).
    Created,
    /// The rows after the change.
    Updated,
    /// The rows as they were just before they were deleted.
    Deleted,
}

/// One event, written to the outbox in the transaction of the write that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub kind: String,
    pub key: String,
    pub data: Option<Value>,
}

/// Decides, inside each write's transaction, which events the write causes.
pub trait WriteObserver: Send + Sync {
    /// Whether writes to `model` are observed. Bulk updates and deletes of an observed
    /// model read back the rows they touch (`RETURNING`), so keep this narrow.
    fn observes(&self, model: ModelId) -> bool;

    /// The events that `rows` of `model` changing by `change` cause, appended to `out`.
    /// Runs inside the transaction, on the store's blocking thread: no I/O, no waiting.
    fn events(
        &self,
        model: ModelId,
        change: RowChange,
        rows: &[Record],
        out: &mut Vec<OutboxEvent>,
    );

    /// The events of a transaction that just committed (never empty). On SQLite it runs
    /// under the writer lock, in commit order; keep it short.
    fn committed(&self, events: Vec<OutboxEvent>);
}

/// The events one write transaction has caused so far.
pub(crate) struct Effects<'o> {
    observer: Option<&'o dyn WriteObserver>,
    pub(crate) events: Vec<OutboxEvent>,
}

impl<'o> Effects<'o> {
    pub(crate) fn new(observer: Option<&'o dyn WriteObserver>) -> Self {
        Effects {
            observer,
            events: Vec::new(),
        }
    }

    pub(crate) fn observes(&self, model: ModelId) -> bool {
        self.observer.is_some_and(|o| o.observes(model))
    }

    pub(crate) fn record(&mut self, model: ModelId, change: RowChange, rows: &[Record]) {
        if rows.is_empty() {
            return;
        }
        if let Some(o) = self.observer.filter(|o| o.observes(model)) {
            o.events(model, change, rows, &mut self.events);
        }
    }
}

/// Inserts `events` into the outbox, inside the write's transaction.
pub(crate) fn store_postgres(conn: &dyn Conn, events: &[OutboxEvent]) -> Result<(), StoreError> {
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut sql = String::from("INSERT INTO portcullis_events (kind, key, data) VALUES ");
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for (i, event) in chunk.iter().enumerate() {
            let n = i * 3;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}::text::jsonb)",
                n + 1,
                n + 2,
                n + 3
            ));
            values.push(sea_query::Value::String(Some(event.kind.clone())));
            values.push(sea_query::Value::String(Some(event.key.clone())));
            values.push(sea_query::Value::String(
                event.data.as_ref().map(Value::to_string),
            ));
        }
        conn.exec(&sql, sea_query::Values(values))?;
    }
    Ok(())
}

/// The notification channel of a schema's outbox (channels are per database and schemas
/// share them; names are cut at 63 bytes, where a collision only costs a spurious wake-up).
pub fn channel_for_schema(schema: &str) -> String {
    let mut channel = format!("portcullis:{schema}");
    while channel.len() > 63 {
        channel.pop();
    }
    channel
}
