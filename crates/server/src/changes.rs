//! Change streams (`createChangeStream`, `GET`/`POST /{plural}/change-stream`): server-sent
//! events for every create, update and remove of a model's rows, each judged per subscriber
//! by the rules that decide what the subscriber may read.
//!
//! - **Publishing.** The store's write observer ([`crate::observer`]) turns every row a
//!   write created, updated or deleted into a change event inside the write's
//!   transaction, whichever route or hook made the write (bulk updates and deletes
//!   included). On SQLite (one node), after the commit, the event gets the next local
//!   sequence id, goes into a ring of the last [`RING`] events (for `Last-Event-ID`) and to
//!   the local subscribers. On PostgreSQL the transaction itself writes it to the outbox
//!   ([`crate::cluster`]) and every node, this one included, delivers it when its listener
//!   reads the row back (so the outbox id is the event id, the same on every node, and
//!   nothing is delivered twice).
//! - **Subscribing.** Each subscriber has a bounded channel. A subscriber whose channel is
//!   full (it reads too slowly) is dropped; its stream ends after what it had buffered, and
//!   nobody else waits for it. A disconnect drops the subscription with the response body.
//! - **Judging.** Per event and subscriber, in the subscriber's stream: the token must still
//!   be valid; `findById` on the row must be allowed, as a request would be (the ACL
//!   decision, and when the method has `authorize` metadata, its voters under the decision
//!   matrix); the row must be in the subscriber's group scope and match the subscription's
//!   `options.where` and what the model's `access` operation hooks add to a query (one
//!   `count` on the database for creates and updates, which also requires the event's own
//!   group to be one of the subscriber's). A removed row cannot be queried: it is judged
//!   from its last state, returned by the delete itself (owner, group roles and group scope
//!   in memory, `where` and hook conditions with a small evaluator). Whatever cannot be
//!   decided is not delivered.
//! - Hidden properties are removed when the event is published.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use portcullis_query::{Op, Scalar, Where};
use portcullis_schema::ModelId;
use portcullis_store::{OutboxEvent, Record};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::access::{AccessInput, RemovedCheck};
use crate::cluster::Event;
use crate::error::{store_error, ApiError};
use crate::hooks::{Operation, OperationContext};
use crate::rest::RestState;
use crate::route::RemoteMethod;
use crate::token::{value_to_id_string, Token};

/// Events kept on SQLite for `Last-Event-ID` replay.
pub const RING: usize = 1000;

/// Tuning of change streams.
#[derive(Debug, Clone, Copy)]
pub struct ChangeStreamOptions {
    /// A `:` comment line is sent after this long without an event.
    pub heartbeat: Duration,
    /// Events a subscriber may have waiting; one more and it is dropped.
    pub buffer: usize,
}

impl Default for ChangeStreamOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            buffer: 256,
        }
    }
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Remove,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Remove => "remove",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        Some(match s {
            "create" => ChangeKind::Create,
            "update" => ChangeKind::Update,
            "remove" => ChangeKind::Remove,
            _ => return None,
        })
    }
}

/// One change event.
#[derive(Debug)]
pub struct Change {
    /// The sequence id (the outbox id on PostgreSQL).
    pub id: i64,
    pub model: String,
    pub kind: ChangeKind,
    pub target: Value,
    /// The instance as saved (hidden properties removed); for `remove`, its last state.
    pub data: Option<Record>,
}

impl Change {
    fn from_event(event: Event) -> Option<Change> {
        Change::from_parts(event.id, event.key, event.data)
    }

    fn from_parts(id: i64, model: String, payload: Option<Value>) -> Option<Change> {
        let payload = payload?;
        Some(Change {
            id,
            model,
            kind: ChangeKind::parse(payload.get("type")?.as_str()?)?,
            target: payload.get("target").cloned().unwrap_or(Value::Null),
            data: payload.get("data").and_then(Value::as_object).cloned(),
        })
    }

    /// The event as subscribers see it (LoopBack's shape; a remove carries no data).
    fn wire(&self) -> String {
        match (&self.data, self.kind) {
            (Some(data), ChangeKind::Create | ChangeKind::Update) => {
                json!({"type": self.kind.as_str(), "target": self.target, "data": data})
            }
            _ => json!({"type": self.kind.as_str(), "target": self.target}),
        }
        .to_string()
    }
}

type Sender = mpsc::Sender<Arc<Change>>;

#[derive(Default)]
struct Inner {
    next_subscriber: u64,
    /// Model name → subscriber id → channel.
    subscribers: HashMap<String, HashMap<u64, Sender>>,
    /// Models that had a subscriber on this node: only their events are kept for replay.
    streamed: HashSet<String>,
    /// SQLite: the last sequence id given out.
    last_id: i64,
    recent: VecDeque<Arc<Change>>,
}

/// This node's change-stream subscribers.
pub struct Changes {
    options: ChangeStreamOptions,
    inner: Mutex<Inner>,
    /// Set when the server shuts down: open streams end.
    closing: watch::Sender<bool>,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new(ChangeStreamOptions::default())
    }
}

impl Changes {
    pub fn new(options: ChangeStreamOptions) -> Self {
        let (closing, _) = watch::channel(false);
        Self {
            options: ChangeStreamOptions {
                buffer: options.buffer.max(1),
                ..options
            },
            inner: Mutex::new(Inner::default()),
            closing,
        }
    }

    /// Ends every open stream (server shutdown: graceful shutdown waits for open responses).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// How many subscribers `model` has on this node.
    pub fn subscribers(&self, model: &str) -> usize {
        self.inner
            .lock()
            .map(|i| i.subscribers.get(model).map_or(0, HashMap::len))
            .unwrap_or(0)
    }

    /// Whether changes of `model` become change events (see [`crate::observer`]): on
    /// PostgreSQL every model but the token model (any node may have subscribers); on
    /// SQLite the models that have had a subscriber on this node.
    pub fn publishes(&self, state: &RestState, model: ModelId) -> bool {
        if state.token_model == Some(model) {
            return false;
        }
        state.cluster.is_enabled()
            || self
                .inner
                .lock()
                .is_ok_and(|i| i.streamed.contains(&state.app.model(model).name))
    }

    /// Delivers a committed change event on this node alone (SQLite): it gets the next
    /// local sequence id and a place in the replay ring.
    pub fn deliver_local(&self, event: OutboxEvent) {
        let change = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            inner.last_id += 1;
            let Some(change) = Change::from_parts(inner.last_id, event.key, event.data) else {
                tracing::debug!(target: "portcullis::changes", "malformed change event");
                return;
            };
            let change = Arc::new(change);
            inner.recent.push_back(change.clone());
            while inner.recent.len() > RING {
                inner.recent.pop_front();
            }
            change
        };
        self.fan_out(change);
    }

    /// Delivers one change event read from the cluster outbox to this node's subscribers.
    pub fn deliver(&self, event: Event) {
        match Change::from_event(event) {
            Some(change) => self.fan_out(Arc::new(change)),
            None => tracing::debug!(target: "portcullis::changes", "malformed change event"),
        }
    }

    fn fan_out(&self, change: Arc<Change>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let Some(subscribers) = inner.subscribers.get_mut(&change.model) else {
            return;
        };
        subscribers.retain(|id, tx| match tx.try_send(change.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(target: "portcullis::changes", model = %change.model, subscriber = id, "change-stream subscriber too slow: dropped");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn subscribe(&self, model: &str) -> Option<(u64, mpsc::Receiver<Arc<Change>>)> {
        let (tx, rx) = mpsc::channel(self.options.buffer);
        let mut inner = self.inner.lock().ok()?;
        inner.next_subscriber += 1;
        let id = inner.next_subscriber;
        inner.streamed.insert(model.to_string());
        inner
            .subscribers
            .entry(model.to_string())
            .or_default()
            .insert(id, tx);
        Some((id, rx))
    }

    fn unsubscribe(&self, model: &str, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(subs) = inner.subscribers.get_mut(model) {
                subs.remove(&id);
                if subs.is_empty() {
                    inner.subscribers.remove(model);
                }
            }
        }
    }

    /// Events of `model` after `after` still kept (outbox on PostgreSQL, ring on SQLite).
    async fn replay(&self, state: &RestState, model: &str, after: i64) -> Vec<Arc<Change>> {
        if state.cluster.is_enabled() {
            return state
                .cluster
                .changes_since(after)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.key == model)
                .filter_map(Change::from_event)
                .map(Arc::new)
                .collect();
        }
        self.inner
            .lock()
            .map(|i| {
                i.recent
                    .iter()
                    .filter(|c| c.id > after && c.model == model)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a subscription asked for, checked and authorized by the REST layer.
pub struct Subscription {
    pub model: ModelId,
    pub token: Option<Arc<Token>>,
    pub app_id: Option<String>,
    /// `options.where`.
    pub where_: Option<Where>,
    /// `Last-Event-ID`.
    pub last_event_id: Option<i64>,
}

/// Opens the event stream of a subscription.
pub async fn open(state: Arc<RestState>, sub: Subscription) -> Result<Response, ApiError> {
    let model = state.app.model(sub.model);
    let find_by_id = state
        .remote_method(model, "findById")
        .cloned()
        .ok_or_else(|| ApiError::internal("model without findById"))?;
    let name = model.name.clone();
    let (id, rx) = state
        .changes
        .subscribe(&name)
        .ok_or_else(|| ApiError::internal("change-stream registry unavailable"))?;
    let guard = Guard {
        state: state.clone(),
        model: name.clone(),
        id,
    };
    // Subscribed first, then the replay: nothing falls between; duplicates are skipped.
    let replay: VecDeque<Arc<Change>> = match sub.last_event_id {
        Some(after) => state.changes.replay(&state, &name, after).await.into(),
        None => VecDeque::new(),
    };
    let replayed = replay.iter().map(|c| c.id).collect();
    let heartbeat = state.changes.options.heartbeat;
    let reader = Reader {
        closing: state.changes.closing.subscribe(),
        state,
        sub,
        find_by_id,
        rx,
        replay,
        replayed,
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        reader
            .next()
            .await
            .map(|event| (Ok::<_, Infallible>(event), reader))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response())
}

/// Removes the subscription when its stream is dropped (disconnect, shutdown, slow reader).
struct Guard {
    state: Arc<RestState>,
    model: String,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.state.changes.unsubscribe(&self.model, self.id);
    }
}

struct Reader {
    state: Arc<RestState>,
    sub: Subscription,
    find_by_id: RemoteMethod,
    rx: mpsc::Receiver<Arc<Change>>,
    replay: VecDeque<Arc<Change>>,
    replayed: HashSet<i64>,
    closing: watch::Receiver<bool>,
    _guard: Guard,
}

enum Verdict {
    Deliver,
    Skip,
    /// The subscriber's token is gone: the stream ends.
    End,
}

impl Reader {
    /// The next event this subscriber may see; `None` ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let change = match self.replay.pop_front() {
                Some(c) => c,
                None => {
                    let change = tokio::select! {
                        c = self.rx.recv() => c?,
                        _ = self.closing.wait_for(|closing| *closing) => return None,
                    };
                    if self.replayed.contains(&change.id) {
                        continue;
                    }
                    change
                }
            };
            let verdict = match self.judge(&change).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(target: "portcullis::changes", error = %e.internal.as_deref().unwrap_or(&e.message), "change not delivered: check failed");
                    Verdict::Skip
                }
            };
            match verdict {
                Verdict::Deliver => {
                    return Some(
                        SseEvent::default()
                            .id(change.id.to_string())
                            .data(change.wire()),
                    )
                }
                Verdict::Skip => continue,
                Verdict::End => return None,
            }
        }
    }

    async fn judge(&self, change: &Change) -> Result<Verdict, ApiError> {
        let state = &*self.state;
        let app = &state.app;
        let model = app.model(self.sub.model);
        if let (Some(token), Some(tm)) = (&self.sub.token, state.token_model) {
            let valid = crate::token::still_valid(
                token,
                &state.store,
                tm,
                &state.tokens,
                state.allow_eternal_tokens,
            )
            .await?;
            if !valid {
                return Ok(Verdict::End);
            }
        }
        let id_text = value_to_id_string(&change.target);
        let Some(id) = portcullis_query::coerce_id(model, &id_text) else {
            return Ok(Verdict::Skip);
        };
        let input = AccessInput {
            model,
            method: &self.find_by_id,
            token: self.sub.token.as_deref(),
            model_id: Some(&id_text),
            body: None,
            app_id: self.sub.app_id.as_deref(),
        };
        let user = self.sub.token.as_ref().and_then(|t| t.user_id_string());
        let scope = state
            .groups
            .as_ref()
            .and_then(|g| g.row_filter(app, model, user.as_deref(), None));
        let column = state
            .groups
            .as_ref()
            .and_then(|g| g.group_column(app, model));
        if change.kind == ChangeKind::Remove {
            let Some(last) = &change.data else {
                return Ok(Verdict::Skip);
            };
            let decision = match state
                .access
                .check_removed(app, &state.store, &input, last)
                .await?
            {
                RemovedCheck::Decided(decision) => decision,
                RemovedCheck::Undecidable => return Ok(Verdict::Skip),
            };
            if !crate::rest::allows(state, &input, decision.as_ref()).await? {
                return Ok(Verdict::Skip);
            }
            if scope.is_some() {
                let (Some(groups), Some((column, _)), Some(user)) = (&state.groups, &column, &user)
                else {
                    return Ok(Verdict::Skip);
                };
                let Some(group) = last.get(column).filter(|v| !v.is_null()) else {
                    return Ok(Verdict::Skip);
                };
                let mine = groups
                    .member_groups(app, &state.store, user)
                    .await
                    .map_err(ApiError::internal)?;
                if !mine.contains(&value_to_id_string(group)) {
                    return Ok(Verdict::Skip);
                }
            }
            if let Some(w) = &self.sub.where_ {
                if eval(w, last) != Some(true) {
                    return Ok(Verdict::Skip);
                }
            }
            // What `access` hooks add to every query must hold for the last state too.
            if let Some(w) = self.access_hooks().await? {
                if eval(&w, last) != Some(true) {
                    return Ok(Verdict::Skip);
                }
            }
            return Ok(Verdict::Deliver);
        }
        let decision = state.access.check(app, &state.store, &input).await?;
        if !crate::rest::allows(state, &input, decision.as_ref()).await? {
            return Ok(Verdict::Skip);
        }
        let mut narrowed = false;
        let mut w = Where::declared(model.id_name(), model.id_prop().ty.clone(), Op::Eq(id));
        if let Some(scope) = scope {
            // The event's own state must be in the subscriber's groups, not only the row's
            // current one.
            let Some((column, ty)) = column else {
                return Ok(Verdict::Skip);
            };
            let value = change
                .data
                .as_ref()
                .and_then(|d| d.get(&column))
                .filter(|v| !v.is_null());
            let Some(value) = value
                .and_then(|v| portcullis_query::coerce_scalar(v, &ty).ok())
                .filter(|v| *v != Scalar::Null)
            else {
                return Ok(Verdict::Skip);
            };
            w = w
                .and(scope)
                .and(Where::declared(&column, ty, Op::Eq(value)));
            narrowed = true;
        }
        if let Some(extra) = &self.sub.where_ {
            w = w.and(extra.clone());
            narrowed = true;
        }
        // As for a query: the hooks may narrow it (soft deletes, tenants), never widen it.
        if let Some(hooked) = self.access_hooks().await? {
            w = w.and(hooked);
            narrowed = true;
        }
        if narrowed {
            let n = state
                .store
                .count(model.id, Some(&w))
                .await
                .map_err(|e| store_error(&model.name, e))?;
            if n == 0 {
                return Ok(Verdict::Skip);
            }
        }
        Ok(Verdict::Deliver)
    }
}

impl Reader {
    /// What the model's `access` operation hooks add to a query by the subscriber (they
    /// start from no where, so they can narrow what is delivered but never widen it).
    async fn access_hooks(&self) -> Result<Option<Where>, ApiError> {
        let state = &*self.state;
        let model = state.app.model(self.sub.model);
        if !state.hooks.has_operation(&model.name, Operation::Access) {
            return Ok(None);
        }
        let ctx = OperationContext {
            model: model.name.clone(),
            operation: Operation::Access,
            where_: None,
            data: None,
            is_new_instance: false,
            user_id: self.sub.token.as_ref().and_then(|t| t.user_id.clone()),
        };
        Ok(state.hooks.run_operation(ctx).await?.where_)
    }
}

/// A `where` evaluated against a record in memory, for rows that no longer exist. `None`
/// when it cannot be decided here (subqueries, regular expressions, dates, JSON values).
fn eval(w: &Where, row: &Record) -> Option<bool> {
    match w {
        Where::And(ws) => {
            let mut all = true;
            for w in ws {
                all &= eval(w, row)?;
            }
            Some(all)
        }
        Where::Or(ws) => {
            let mut any = false;
            for w in ws {
                any |= eval(w, row)?;
            }
            Some(any)
        }
        Where::Never => Some(false),
        Where::InSubquery { .. } => None,
        Where::Cond { property, op } => {
            let v = row.get(property.name()).unwrap_or(&Value::Null);
            holds(v, op)
        }
    }
}

fn compare(v: &Value, s: &Scalar) -> Option<std::cmp::Ordering> {
    match (v, s) {
        (Value::Number(n), Scalar::Int(i)) => n.as_f64()?.partial_cmp(&(*i as f64)),
        (Value::Number(n), Scalar::Float(f)) => n.as_f64()?.partial_cmp(f),
        (Value::String(a), Scalar::Text(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn holds(v: &Value, op: &Op) -> Option<bool> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    if v.is_null() {
        return match op {
            Op::Eq(Scalar::Null) => Some(true),
            Op::Neq(Scalar::Null) => Some(false),
            Op::Neq(_) => Some(true),
            Op::Nin(_) | Op::Regexp { .. } => None,
            _ => Some(false),
        };
    }
    Some(match op {
        Op::Eq(Scalar::Null) => false,
        Op::Neq(Scalar::Null) => true,
        Op::Eq(s) => compare(v, s)? == Equal,
        Op::Neq(s) => compare(v, s)? != Equal,
        Op::Gt(s) => compare(v, s)? == Greater,
        Op::Gte(s) => compare(v, s)? != Less,
        Op::Lt(s) => compare(v, s)? == Less,
        Op::Lte(s) => compare(v, s)? != Greater,
        Op::Between(a, b) => compare(v, a)? != Less && compare(v, b)? != Greater,
        Op::Inq(list) => {
            let mut found = false;
            for s in list {
                found |= compare(v, s)? == Equal;
            }
            found
        }
        Op::Nin(list) => {
            let mut found = false;
            for s in list {
                found |= compare(v, s)? == Equal;
            }
            !found
        }
        Op::Like {
            pattern,
            negated,
            case_insensitive,
        } => {
            let text = v.as_str()?;
            let matched = if *case_insensitive {
                like(&text.to_lowercase(), &pattern.to_lowercase())
            } else {
                like(text, pattern)
            };
            matched != *negated
        }
        Op::Regexp { .. } => return None,
    })
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes the next one.
fn like(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // reach[i]: the pattern so far can end just before text[i].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for t in tokens {
        let mut next = vec![false; text.len() + 1];
        for i in 0..=text.len() {
            if !reach[i] {
                continue;
            }
            match t {
                P::Any => {
                    for slot in next.iter_mut().skip(i) {
                        *slot = true;
                    }
                    break;
                }
                P::One => {
                    if i < text.len() {
                        next[i + 1] = true;
                    }
                }
                P::Lit(c) => {
                    if text.get(i) == Some(&c) {
                        next[i + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_query::PropRef;

    #[test]
    fn like_patterns() {
        assert!(like("keep this", "keep%"));
        assert!(!like("drop this", "keep%"));
        assert!(like("abc", "a_c"));
        assert!(like("a%c", "a\\%c"));
        assert!(!like("abc", "a\\%c"));
        assert!(like("", "%"));
        assert!(!like("ab", "a"));
    }

    #[test]
    fn eval_is_unsure_rather_than_wrong() {
        let mut row = Record::new();
        row.insert("n".into(), json!(3));
        let c = |op| Where::Cond {
            property: PropRef::Dynamic { name: "n".into() },
            op,
        };
        assert_eq!(eval(&c(Op::Gt(Scalar::Int(2))), &row), Some(true));
        assert_eq!(eval(&c(Op::Inq(vec![Scalar::Int(1)])), &row), Some(false));
        assert_eq!(eval(&c(Op::Eq(Scalar::Date(3))), &row), None);
        assert_eq!(
            eval(
                &Where::Or(vec![c(Op::Eq(Scalar::Int(3))), Where::Never]),
                &row
            ),
            Some(true)
        );
    }
}
