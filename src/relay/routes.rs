//! How a request reaches a listener (`src/main.rs`, "Design", "Where users
//! outgrow one machine"): the seam between this node's [`Registry`] and a
//! cluster. A single node routes to its own registry; a cluster
//! (`crate::cluster`) routes through the cluster's bus to a listener on any
//! node, telling it where the client is held. Front ends see only
//! [`super::Relay`] and never learn which routes run.

use std::time::Duration;

use tokio::sync::mpsc;

use super::leg::BoxFuture;
use super::registry::Broadcast;
use super::{
    CoreError, Filter, Forwarded, Guid, ListenerGuard, ListenerInfo, Origin, Registry, Request,
};

/// The part of a delivery that may still be under way (a request sent to
/// another node, awaiting its answer), and how it ended.
pub type Delivery = BoxFuture<'static, Result<(), CoreError>>;

/// Ownership of listeners and routing of requests to them.
pub trait Routes: Send + Sync {
    /// Register a listener of this node for `path`, and make it reachable
    /// by every node that routes here.
    fn register<'a>(
        &'a self,
        path: &'a str,
        info: ListenerInfo,
    ) -> BoxFuture<'a, Result<(ListenerGuard, mpsc::Receiver<Request>), CoreError>>;

    /// Hand `request` to one listener of `path` that `filter` admits,
    /// chosen uniformly among all of them, wherever they are; when every
    /// one's queue is full, wait up to `wait` for room (zero: refuse).
    /// What can be refused at once is (no listener, none admitted); the
    /// rest of the delivery is the returned [`Delivery`], which a caller
    /// may await alongside the listener's answer.
    fn deliver(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
        wait: Duration,
    ) -> Result<Delivery, CoreError>;

    /// Hand `request` to every listener of `path` that `filter` admits, at
    /// most once each, skipping those whose queue is full.
    fn broadcast<'a>(
        &'a self,
        path: &'a str,
        filter: &'a Filter,
        request: Request,
    ) -> BoxFuture<'a, Result<Broadcast, CoreError>>;

    /// How listeners elsewhere reach this node; `None` on a single node,
    /// where every listener is connected to the node holding the client.
    fn origin(&self) -> Option<Origin>;

    /// The cluster as this node sees it; `None` on a single node.
    fn view(&self) -> Option<ClusterView>;

    /// The listeners of `path` connected to other nodes.
    fn elsewhere(&self, path: &str) -> Vec<ListenerInfo>;

    /// Paths with listeners on any node (this one's included, or not).
    fn paths_elsewhere(&self) -> Vec<String>;

    /// This node's name in a cluster.
    fn node(&self) -> Option<&str>;

    /// Carry a listener's answer to request `id` to `node`, which holds its
    /// client.
    fn answer<'a>(
        &'a self,
        node: &'a str,
        id: Guid,
        answer: Forwarded,
    ) -> BoxFuture<'a, Result<(), CoreError>>;
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// The nodes seen alive (this one included), sorted.
    pub members: Vec<String>,
    /// Whether the bus is connected (and its store reachable).
    pub connected: bool,
    /// Why not, when it is not.
    pub problem: Option<String>,
    /// Listeners per path on every node.
    pub listeners: std::collections::BTreeMap<String, usize>,
    /// Messages from other nodes dropped, by reason.
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
}

/// A single node: its registry is every listener there is.
impl Routes for Registry {
    fn register<'a>(
        &'a self,
        path: &'a str,
        info: ListenerInfo,
    ) -> BoxFuture<'a, Result<(ListenerGuard, mpsc::Receiver<Request>), CoreError>> {
        Box::pin(std::future::ready(Registry::register(self, path, info)))
    }

    fn deliver(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
        wait: Duration,
    ) -> Result<Delivery, CoreError> {
        if wait.is_zero() {
            Registry::deliver(self, path, filter, request)?;
            return Ok(Box::pin(std::future::ready(Ok(()))));
        }
        let (registry, path, filter) = (self.clone(), path.to_owned(), filter.clone());
        Ok(Box::pin(async move {
            registry
                .deliver_waiting(&path, &filter, request, wait)
                .await
        }))
    }

    fn broadcast<'a>(
        &'a self,
        path: &'a str,
        filter: &'a Filter,
        request: Request,
    ) -> BoxFuture<'a, Result<Broadcast, CoreError>> {
        let each = || request.clone();
        Box::pin(std::future::ready(Registry::broadcast(
            self, path, filter, each,
        )))
    }

    fn origin(&self) -> Option<Origin> {
        None
    }

    fn view(&self) -> Option<ClusterView> {
        None
    }

    fn elsewhere(&self, _path: &str) -> Vec<ListenerInfo> {
        Vec::new()
    }

    fn paths_elsewhere(&self) -> Vec<String> {
        Vec::new()
    }

    fn node(&self) -> Option<&str> {
        None
    }

    fn answer<'a>(
        &'a self,
        _node: &'a str,
        _id: Guid,
        _answer: Forwarded,
    ) -> BoxFuture<'a, Result<(), CoreError>> {
        // One node: every client is here.
        Box::pin(std::future::ready(Err(CoreError::UnknownRendezvous)))
    }
}
