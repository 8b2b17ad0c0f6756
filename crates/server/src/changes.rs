//! Change streams (`createChangeStream`): not served yet. This is where the cluster tail
//! (`cluster.rs`) hands change events read from PostgreSQL; until the change-stream routes
//! exist, nothing publishes them and nothing subscribes.

use crate::cluster::Event;

/// This node's change-stream subscribers (none yet).
#[derive(Default)]
pub struct Changes {}

impl Changes {
    /// Delivers one change event to this node's subscribers.
    pub fn deliver(&self, _event: Event) {}
}
