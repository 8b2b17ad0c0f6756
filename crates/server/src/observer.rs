//! What the node's writes mean to everything that is not the written table: the store's
//! [`WriteObserver`]. Inside each write's transaction it turns the rows the write touched
//! into outbox events, so a write and its events commit together (the transactional
//! outbox, see `portcullis_store::outbox` and [`crate::cluster`]):
//!
//! - a token row updated or deleted (logout, password change, user deletion, a REST delete
//!   of `accessTokens`) → a `token` event per row: every node drops it from its cache;
//! - any write to `ACL`, `Role` or `RoleMapping` → one `access` event: every node reloads
//!   its access tables;
//! - a row of a streamed model created, updated or deleted (bulk writes included) → a
//!   `change` event per row for change-stream subscribers, with hidden properties removed.
//!   A deleted row's last state comes with it: it judges who may see the `remove`.
//!
//! After the commit, on this node: token events empty the local cache entry at once (the
//! request that logged out answers only afterwards). On SQLite, change events go to the
//! local subscribers and access events schedule a reload; on PostgreSQL every node, this
//! one included, applies those when its listener reads the outbox.
//!
//! Which models are observed is kept narrow, because bulk updates and deletes of an
//! observed model read back the rows they touch: the token model, the access models, and
//! the streamed ones (on PostgreSQL every model but the token model, since any node may
//! have subscribers; on SQLite those with a subscriber on this node since start-up).

use std::sync::{Arc, Weak};

use portcullis_schema::ModelId;
use portcullis_store::{OutboxEvent, Record, RowChange, WriteObserver};
use serde_json::{json, Value};

use crate::changes::ChangeKind;
use crate::cluster::kind;
use crate::rest::RestState;
use crate::token::value_to_id_string;

/// The observer of one node's store. Holds its state weakly: the state owns the store.
pub struct NodeObserver {
    state: Weak<RestState>,
}

impl NodeObserver {
    /// Registers the observer of `state`'s store; once per store.
    pub fn install(state: &Arc<RestState>) {
        let observer = Arc::new(NodeObserver {
            state: Arc::downgrade(state),
        });
        if !state.store.set_observer(observer) {
            tracing::warn!(target: "portcullis::cluster", "the store already has a write observer");
        }
    }
}

impl WriteObserver for NodeObserver {
    fn observes(&self, model: ModelId) -> bool {
        let Some(state) = self.state.upgrade() else {
            return false;
        };
        state.token_model == Some(model)
            || state.access.is_access_model(model)
            || state.changes.publishes(&state, model)
    }

    fn events(
        &self,
        model: ModelId,
        change: RowChange,
        rows: &[Record],
        out: &mut Vec<OutboxEvent>,
    ) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let m = state.app.model(model);
        if state.token_model == Some(model) {
            // A new token invalidates nothing; token rows are never streamed.
            if change != RowChange::Created {
                for row in rows {
                    if let Some(id) = row.get(m.id_name()) {
                        out.push(OutboxEvent {
                            kind: kind::TOKEN.into(),
                            key: value_to_id_string(id),
                            data: None,
                        });
                    }
                }
            }
            return;
        }
        if state.access.is_access_model(model) && !out.iter().any(|e| e.kind == kind::ACCESS) {
            out.push(OutboxEvent {
                kind: kind::ACCESS.into(),
                key: String::new(),
                data: None,
            });
        }
        if !state.changes.publishes(&state, model) {
            return;
        }
        let change_kind = match change {
            RowChange::Created => ChangeKind::Create,
            RowChange::Updated => ChangeKind::Update,
            RowChange::Deleted => ChangeKind::Remove,
        };
        for row in rows {
            let target = row.get(m.id_name()).cloned().unwrap_or(Value::Null);
            let mut data = row.clone();
            crate::instance::shape_output(&state.app, m, &mut data, false);
            out.push(OutboxEvent {
                kind: kind::CHANGE.into(),
                key: m.name.clone(),
                data: Some(json!({
                    "type": change_kind.as_str(),
                    "target": target,
                    "data": data,
                })),
            });
        }
    }

    fn committed(&self, events: Vec<OutboxEvent>) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let clustered = state.cluster.is_enabled();
        let mut reload = false;
        for event in events {
            match event.kind.as_str() {
                kind::TOKEN => state.tokens.remove(&event.key),
                kind::ACCESS => reload = true,
                kind::CHANGE if !clustered => state.changes.deliver_local(event),
                _ => {}
            }
        }
        // On PostgreSQL the listener reloads on every node; the REST layer also reloads
        // before it answers a write to these tables, so a client reads its own write.
        if reload && !clustered {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let state = state.clone();
                rt.spawn(async move {
                    if let Err(e) = state.access.reload(&state.store).await {
                        tracing::error!(target: "portcullis::security", error = %e.message, "access reload failed");
                    }
                });
            }
        }
    }
}
