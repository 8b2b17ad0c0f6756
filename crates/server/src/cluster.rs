//! Several stateless nodes over one PostgreSQL database: what one node changes in the
//! database reaches the per-node caches of every node (tokens in [`TokenCache`], the ACL
//! table and role memberships in [`AccessControl`]) and every node's change-stream
//! subscribers, within about a second.
//!
//! The design is a transactional outbox plus `LISTEN/NOTIFY` as the wake-up:
//!
//! - `portcullis_events(id bigserial, kind text, key text, data jsonb, at timestamptz)` lives
//!   in the app's schema (created by the store). Every write that matters to other nodes
//!   (a token deleted or changed, a write to `ACL` / `Role` / `RoleMapping`, any change of a
//!   streamed row) inserts its event rows *in its own transaction*, decided by the node's
//!   write observer ([`crate::observer`]). A write and its events are stored together or
//!   not at all; the request answers after the commit. Right after the commit, the writer
//!   sends `pg_notify` on the schema's channel as a wake-up (outside the transaction:
//!   notifying transactions serialize their commits in PostgreSQL).
//! - Each node keeps one dedicated connection that `LISTEN`s on the channel. A notification
//!   (or, as a safety net, a one-second tick) makes it read the rows newer than the last one
//!   it saw and apply them: drop a token key from the cache, reload the access tables, hand
//!   a change to the local change-stream subscribers. Rows committed out of id order are
//!   caught by re-reading the last few seconds and skipping ids already seen.
//! - The connection reconnects with backoff (0.1 s doubling to 5 s). After a reconnect the
//!   node empties its token cache and reloads the access tables (it may have missed
//!   notifications, and the rows may have been pruned), then reads what it missed.
//! - Rows older than ten minutes (and beyond the newest 100 000) are deleted once a minute:
//!   the change-stream replay window for `Last-Event-ID`.
//!
//! The bound: a change is visible to every node's caches about one round trip after the
//! transaction that made it commits (the notification), and at most ~1 s after (the tick)
//! if the notification is lost. Nodes tail the outbox of the app's first PostgreSQL
//! datasource, which holds the built-in models; an app that spreads models over several
//! PostgreSQL databases streams only the first one's changes across nodes (logged at start).
//!
//! On SQLite (one node) there is no link: the observer applies the events locally.

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
pub(crate) mod kind {
    /// A token row was deleted or changed: `key` is its stored id.
    pub const TOKEN: &str = "token";
    /// `ACL`, `Role` or `RoleMapping` changed.
    pub const ACCESS: &str = "access";
    /// A change-stream event: `key` is the model name, `data` the event.
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
    /// The connection the listener holds, also used for replays; `None` while reconnecting.
    client: RwLock<Option<Arc<Client>>>,
    /// The outbox's notification channel, named by the store.
    channel: String,
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
        if store.postgres_databases() > 1 {
            tracing::warn!(target: "portcullis::cluster", "several PostgreSQL datasources: nodes share the changes of the first one only");
        }
        let link = store
            .postgres_config()
            .zip(store.outbox_channel())
            .map(|(config, channel)| {
                Arc::new(Link {
                    config,
                    client: RwLock::new(None),
                    channel,
                })
            });
        Cluster { link }
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

    /// Connects, LISTENs, and publishes the client for replays.
    async fn open(&self) -> Result<Live, String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect the cluster listener: {e}"))?;
        let wake = Arc::new(Notify::new());
        let driver = tokio::spawn(drive(connection, wake.clone()));
        let channel = self.channel.as_str();
        let ready = async {
            // Named after the channel, so operators (and tests) can find a node's listener.
            client
                .execute(
                    "SELECT set_config('application_name', $1, false)",
                    &[&channel],
                )
                .await?;
            client
                .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
                .await?;
            // Listening first, then the newest id: nothing committed after it is missed.
            last_event_id(&client).await
        };
        match ready.await {
            Ok(last_id) => {
                let client = Arc::new(client);
                self.set_client(Some(client.clone()));
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

/// The newest event id (where a node starts reading).
async fn last_event_id(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(id), 0)::int8 FROM portcullis_events",
            &[],
        )
        .await?;
    Ok(row.get(0))
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
