//! Clients on other nodes that one of this node's listeners was asked to
//! serve (`src/main.rs`, "Design"; `crate::cluster`): kept by the listener's
//! task, so that when the listener goes, those still waiting hear it at once
//! (an empty [`Forwarded`] answer, which their front end reads as the
//! listener gone) instead of waiting out their timeout. Bounded: past
//! [`MARK`] entries, those older than their wait are forgotten.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{Forwarded, Guid, Relay};

/// Past this many entries, stale ones are dropped.
pub const MARK: usize = 1024;

/// Request ids and the nodes holding their clients.
#[derive(Default)]
pub struct Elsewhere(HashMap<Guid, (String, Instant)>);

impl Elsewhere {
    /// Remember that the client of `id` waits on `node`, for at most `wait`.
    pub fn insert(&mut self, id: Guid, node: String, wait: Duration) {
        if self.0.len() >= MARK {
            self.0.retain(|_, (_, at)| at.elapsed() < wait);
        }
        self.0.insert(id, (node, Instant::now()));
    }

    /// The node of `id`'s client, forgetting it.
    pub fn remove(&mut self, id: Guid) -> Option<String> {
        self.0.remove(&id).map(|(node, _)| node)
    }

    /// Tell every client still within `wait` that the listener is gone.
    pub fn listener_gone(&mut self, relay: &Relay, wait: Duration) {
        for (id, (node, at)) in self.0.drain() {
            if at.elapsed() < wait {
                relay.carry(node, id, Forwarded::default());
            }
        }
    }
}

impl Relay {
    /// Send `answer` for request `id` to `node` in the background.
    pub fn carry(&self, node: String, id: Guid, answer: Forwarded) {
        let relay = self.clone();
        tokio::spawn(async move {
            if relay.answer_elsewhere(&node, id, answer).await.is_err() {
                tracing::debug!(node, "an answer could not be carried to its node");
            }
        });
    }
}
