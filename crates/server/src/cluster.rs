//! Several stateless nodes over one PostgreSQL database: what one node changes in the
//! database reaches the per-node caches of every node (tokens in [`TokenCache`], the ACL
//! table and role memberships in [`AccessControl`]) and every node's change-stream
//! subscribers, within about a second.
//!
//! The design is an outbox table plus `LISTEN/NOTIFY` as the wake-up:
//!
//! - `portcullis_events(id bigserial, kind text, key text, data jsonb, at timestamptz)` lives
//!   in the app's schema. The request that made a change (logout, password change, user
//!   deletion, a write to `ACL` / `Role` / `RoleMapping`, any write behind a change stream)
//!   inserts one row right after its store write and, in the same statement, calls
//!   `pg_notify` on the schema's channel. The request answers only after the row is written.
//! - Each node keeps one dedicated connection that `LISTEN`s on the channel. A notification
//!   (or, as a safety net, a one-second tick) makes it read the rows newer than the last one
//!   it saw and apply them: drop a token key or a user's tokens from the cache, reload the
//!   access tables, hand a change to the local change-stream subscribers. Rows committed out
//!   of id order are caught by re-reading the last few seconds and skipping ids already seen.
//! - The connection reconnects with backoff (0.1 s doubling to 5 s). After a reconnect the
//!   node empties its token cache and reloads the access tables (it may have missed
//!   notifications, and the rows may have been pruned), then reads what it missed.
//! - Rows older than ten minutes (and beyond the newest 100 000) are deleted once a minute:
//!   the change-stream replay window for `Last-Event-ID`.
//!
//! The bound: a change is visible to every node's caches about one round trip after the
//! request that made it answers (the notification), and at most ~1 s after (the tick) if the
//! notification is lost. The store API has no transaction hook, so the row is written just
//! after the change commits: if the process dies (or the database becomes unreachable) in
//! between, the event is lost and is logged as an error by the writer when it fails.
//!
//! On SQLite (one node) there is no link: the callers' in-process invalidation is all there
//! is, and change events go straight to the local subscribers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::rest::RestState;

/// Longest time a node's caches may lag a change when a notification is lost.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long change events are kept for `Last-Event-ID` replay.
pub const RETENTION: Duration = Duration::from_secs(600);
const RETENTION_ROWS: i64 = 100_000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows committed out of id order are looked for this far back.
const LOOKBACK_SECONDS: i32 = 3;
const BATCH: i64 = 5_000;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Event kinds in the outbox table.
mod kind {
    pub const TOKEN: &str = "token";
    pub const USER_TOKENS: &str = "user-tokens";
    pub const ACCESS: &str = "access";
    pub const CHANGE: &str = "change";
}

/// One row of the outbox, as read back.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub data: Option<Value>,
}

/// A node's handle on the other nodes. Cheap to share; a no-op on SQLite.
#[derive(Default)]
pub struct Cluster {
    link: Option<Arc<Link>>,
}

struct Link {
    config: Config,
    /// The connection the listener holds, used for writes too; `None` while reconnecting.
    client: RwLock<Option<Arc<Client>>>,
    channel: RwLock<String>,
    /// Signalled whenever the listener (re)connects.
    connected: Notify,
}

impl Cluster {
    /// Whether nodes share caches through PostgreSQL.
    pub fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    /// Starts the node's listener when the app's data lives in PostgreSQL: connects, creates
    /// the outbox table if missing and LISTENs, before returning (a node that cannot hear
    /// the others must not serve). The listener stops when `state` is dropped.
    pub async fn start(state: &Arc<RestState>) -> Result<(), String> {
        let Some(link) = state.cluster.link.clone() else {
            return Ok(());
        };
        let live = link.open().await?;
        let last_id = live.last_id;
        let weak = Arc::downgrade(state);
        tokio::spawn(listen(link, weak, live, last_id));
        Ok(())
    }

    /// The handle for a store: linked when the store is PostgreSQL.
    pub fn for_store(store: &portcullis_store::Store) -> Cluster {
        Cluster {
            link: store.postgres_config().map(|config| {
                Arc::new(Link {
                    config,
                    client: RwLock::new(None),
                    channel: RwLock::new(String::new()),
                    connected: Notify::new(),
                })
            }),
        }
    }

    /// This node logged a token out (its cache entry is already gone).
    pub async fn token_removed(&self, key: &str) {
        self.emit(kind::TOKEN, key, None).await;
    }

    /// This node deleted every token of `user_id` but `keep`.
    pub async fn user_tokens_removed(&self, user_id: &str, keep: Option<&str>) {
        let data = keep.map(|k| serde_json::json!({ "keep": k }));
        self.emit(kind::USER_TOKENS, user_id, data).await;
    }

    /// This node wrote to `ACL`, `Role` or `RoleMapping`.
    pub async fn access_changed(&self) {
        self.emit(kind::ACCESS, "", None).await;
    }

    /// Publishes a change-stream event to every node; `false` on SQLite (the caller
    /// delivers locally) or when it could not be written.
    pub async fn publish_change(&self, model: &str, data: Value) -> bool {
        self.link.is_some() && self.emit(kind::CHANGE, model, Some(data)).await
    }

    /// Change events newer than `after` still in the table (for `Last-Event-ID`).
    pub async fn changes_since(&self, after: i64) -> Option<Vec<Event>> {
        let link = self.link.as_ref()?;
        let client = link.current()?;
        let rows = client
            .query(
                "SELECT id, kind, key, data::text FROM portcullis_events \
                 WHERE id > $1 AND kind = $2 ORDER BY id LIMIT 10000",
                &[&after, &kind::CHANGE],
            )
            .await
            .ok()?;
        Some(rows.iter().filter_map(event_of).collect())
    }

    async fn emit(&self, kind: &str, key: &str, data: Option<Value>) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        let data = data.map(|d| d.to_string());
        // One retry after a reconnect: the listener may be between connections.
        for attempt in 0..2 {
            let client = match link.current() {
                Some(c) => c,
                None => {
                    let _ = tokio::time::timeout(MAX_BACKOFF, link.connected.notified()).await;
                    match link.current() {
                        Some(c) => c,
                        None => continue,
                    }
                }
            };
            let channel = link.channel();
            let written = client
                .execute(
                    "WITH e AS (INSERT INTO portcullis_events (kind, key, data) \
                     VALUES ($1, $2, $3::text::jsonb) RETURNING id) \
                     SELECT pg_notify($4, e.id::text) FROM e",
                    &[&kind, &key, &data, &channel],
                )
                .await;
            match written {
                Ok(_) => return true,
                Err(e) if attempt == 0 => {
                    tracing::warn!(target: "portcullis::cluster", error = %e, kind, "event write failed; retrying");
                    let _ = tokio::time::timeout(MAX_BACKOFF, link.connected.notified()).await;
                }
                Err(e) => {
                    tracing::error!(target: "portcullis::cluster", error = %e, kind, key, "event lost: other nodes may serve stale caches for this change");
                }
            }
        }
        false
    }
}

impl Link {
    fn current(&self) -> Option<Arc<Client>> {
        self.client
            .read()
            .ok()?
            .clone()
            .filter(|c: &Arc<Client>| !c.is_closed())
    }

    fn set_client(&self, client: Option<Arc<Client>>) {
        if let Ok(mut slot) = self.client.write() {
            *slot = client;
        }
    }

    fn channel(&self) -> String {
        self.channel.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Connects, prepares the table, LISTENs, and publishes the client for writers.
    async fn open(&self) -> Result<Live, String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect the cluster listener: {e}"))?;
        let wake = Arc::new(Notify::new());
        let driver = tokio::spawn(drive(connection, wake.clone()));
        let ready = async {
            let last_id = setup(&client).await?;
            let channel = channel_of(&client).await?;
            // Named after the channel, so operators (and tests) can find a node's listener.
            client
                .execute(
                    "SELECT set_config('application_name', $1, false)",
                    &[&channel],
                )
                .await?;
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(&channel)))
                .await?;
            Ok::<_, tokio_postgres::Error>((last_id, channel))
        };
        match ready.await {
            Ok((last_id, channel)) => {
                if let Ok(mut slot) = self.channel.write() {
                    *slot = channel;
                }
                let client = Arc::new(client);
                self.set_client(Some(client.clone()));
                self.connected.notify_waiters();
                Ok(Live {
                    client,
                    driver,
                    wake,
                    last_id,
                })
            }
            Err(e) => {
                driver.abort();
                Err(format!("cannot prepare the cluster listener: {e}"))
            }
        }
    }
}

/// A prepared listener connection.
struct Live {
    client: Arc<Client>,
    driver: tokio::task::JoinHandle<()>,
    wake: Arc<Notify>,
    /// The newest event id when it connected.
    last_id: i64,
}

/// Creates the outbox table if missing; returns the newest event id (where this node starts).
async fn setup(client: &Client) -> Result<i64, tokio_postgres::Error> {
    client
        .batch_execute(
            "BEGIN; \
             SELECT pg_advisory_xact_lock(hashtext('portcullis events ' || current_schema())); \
             CREATE TABLE IF NOT EXISTS portcullis_events ( \
               id bigserial PRIMARY KEY, \
               kind text NOT NULL, \
               key text NOT NULL DEFAULT '', \
               data jsonb, \
               at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             CREATE INDEX IF NOT EXISTS portcullis_events_at ON portcullis_events (at); \
             COMMIT;",
        )
        .await?;
    let row = client
        .query_one(
            "SELECT coalesce(max(id), 0)::int8 FROM portcullis_events",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The schema's notification channel (channels are per database, schemas share them).
async fn channel_of(client: &Client) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT coalesce(current_schema(), '')::text", &[])
        .await?;
    let schema: String = row.get(0);
    let mut channel = format!("portcullis:{schema}");
    // Identifiers are cut at 63 bytes; a collision only costs a spurious wake-up.
    while channel.len() > 63 {
        channel.pop();
    }
    Ok(channel)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn event_of(row: &tokio_postgres::Row) -> Option<Event> {
    let data: Option<String> = row.try_get(3).ok()?;
    Some(Event {
        id: row.try_get(0).ok()?,
        kind: row.try_get(1).ok()?,
        key: row.try_get(2).ok()?,
        data: data.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

type PgConnection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// Drives a connection, turning notifications into wake-ups; returns when it closes.
async fn drive(mut connection: PgConnection, wake: Arc<Notify>) {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(target: "portcullis::cluster", error = %e, "listener connection failed");
                return;
            }
            None => return,
        }
    }
}

/// What the tail has seen.
struct Tail {
    last_id: i64,
    /// Ids seen recently, for the look-back that catches rows committed out of order.
    seen: HashMap<i64, Instant>,
    last_prune: Instant,
}

/// The node's listener: one connection at a time, reconnecting with backoff, until the
/// node's state is dropped.
async fn listen(link: Arc<Link>, state: Weak<RestState>, live: Live, last_id: i64) {
    let mut tail = Tail {
        last_id,
        seen: HashMap::new(),
        last_prune: Instant::now(),
    };
    let mut current = Some(live);
    let mut backoff = Duration::from_millis(100);
    loop {
        if state.strong_count() == 0 {
            return;
        }
        let live = match current.take() {
            Some(live) => live,
            None => match link.open().await {
                Ok(live) => {
                    backoff = Duration::from_millis(100);
                    // Notifications may have been missed and rows pruned meanwhile.
                    if let Some(state) = state.upgrade() {
                        state.tokens.clear();
                        if let Err(e) = state.access.reload(&state.store).await {
                            tracing::error!(target: "portcullis::cluster", error = %e.message, "access reload failed");
                        }
                    }
                    tracing::info!(target: "portcullis::cluster", "cluster listener reconnected");
                    live
                }
                Err(e) => {
                    tracing::warn!(target: "portcullis::cluster", error = %e, retry_in = ?backoff, "cluster listener down");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        // Tail until the connection fails or the node goes away.
        loop {
            if live.client.is_closed() || live.driver.is_finished() {
                break;
            }
            let Some(node) = state.upgrade() else {
                live.driver.abort();
                return;
            };
            if let Err(e) = poll(&live.client, &node, &mut tail).await {
                tracing::warn!(target: "portcullis::cluster", error = %e, "cluster tail failed");
                break;
            }
            drop(node);
            tokio::select! {
                _ = live.wake.notified() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        link.set_client(None);
        live.driver.abort();
    }
}

/// Reads and applies the events this node has not seen; prunes old rows now and then.
async fn poll(
    client: &Client,
    state: &RestState,
    tail: &mut Tail,
) -> Result<(), tokio_postgres::Error> {
    loop {
        let rows = client
            .query(
                "SELECT id, kind, key, data::text FROM portcullis_events \
                 WHERE id > $1 OR at > clock_timestamp() - make_interval(secs => $2) \
                 ORDER BY id LIMIT $3",
                &[&tail.last_id, &f64::from(LOOKBACK_SECONDS), &BATCH],
            )
            .await?;
        let full = rows.len() as i64 >= BATCH;
        let now = Instant::now();
        let mut reload = false;
        for row in &rows {
            let Some(event) = event_of(row) else { continue };
            if tail.seen.contains_key(&event.id) {
                continue;
            }
            tail.seen.insert(event.id, now);
            tail.last_id = tail.last_id.max(event.id);
            match event.kind.as_str() {
                kind::TOKEN => state.tokens.remove(&event.key),
                kind::USER_TOKENS => {
                    let keep = event
                        .data
                        .as_ref()
                        .and_then(|d| d.get("keep"))
                        .and_then(Value::as_str);
                    state.tokens.remove_user(&event.key, keep);
                }
                kind::ACCESS => reload = true,
                kind::CHANGE => state.changes.deliver(event),
                other => {
                    tracing::debug!(target: "portcullis::cluster", kind = other, "unknown event kind")
                }
            }
        }
        if reload {
            if let Err(e) = state.access.reload(&state.store).await {
                tracing::error!(target: "portcullis::cluster", error = %e.message, "access reload failed");
            }
        }
        let horizon = Duration::from_secs(LOOKBACK_SECONDS as u64 * 4);
        tail.seen.retain(|_, at| now.duration_since(*at) < horizon);
        if !full {
            break;
        }
    }
    if tail.last_prune.elapsed() >= PRUNE_EVERY {
        tail.last_prune = Instant::now();
        client
            .execute(
                "DELETE FROM portcullis_events WHERE at < clock_timestamp() - make_interval(secs => $1) \
                 OR id <= (SELECT max(id) - $2 FROM portcullis_events)",
                &[&(RETENTION.as_secs() as f64), &RETENTION_ROWS],
            )
            .await?;
    }
    Ok(())
}
