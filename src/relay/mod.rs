//! The protocol-neutral relay core (`src/main.rs`, "Design"): which listeners
//! serve which path ([`registry`]), how a request reaches one of them, on
//! this node or another ([`routes`]), the table that pairs a parked client
//! with the listener's answer ([`rendezvous`]), and the splice of two legs
//! ([`splice`], or [`zerocopy`] for two plain TCP sockets). Front ends
//! translate their protocols into these calls; the core never names a
//! protocol type (a test checks that no file here mentions the protocol
//! crates).
//!
//! What a listener is asked ([`Ask`]) is typed and serializable, since it
//! may travel to the node that holds the listener; the answer ([`Answer`])
//! never travels: the listener's rendezvous or dial-back comes to the node
//! that parked the client ([`Origin`]), and is matched there.

pub mod elsewhere;
pub mod id;
pub mod leg;
pub mod registry;
pub mod rendezvous;
pub mod routes;
pub mod splice;
#[cfg(target_os = "linux")]
pub mod zerocopy;

use std::any::Any;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use id::Guid;
pub use leg::{Chunk, CloseInfo, Leg, LegEvent, LegReader, LegWriter};
pub use registry::{Broadcast, Filter, ListenerGuard, ListenerInfo, Registry};
pub use rendezvous::{Parked, Rendezvous};
pub use routes::{ClusterView, Delivery, Routes};
pub use splice::{splice, SpliceLimits};

/// A listener's answer to a parked client, as its front end shaped it. It
/// stays on the node that parked the client (see the module docs).
pub type Answer = Box<dyn Any + Send>;

/// Something a listener must act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The rendezvous id the answer must carry.
    pub id: Guid,
    /// The node holding the client, when the listener must be told to dial
    /// a node other than the one it is connected to; `None`: that node.
    pub origin: Option<Box<Origin>>,
    /// What is asked.
    pub ask: Ask,
}

/// What a listener is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// Open a rendezvous for a connecting client.
    Connect(Box<Caller>),
    /// Serve an HTTP request: its head when the listener gets it now, not
    /// on the rendezvous, and then its body too, if it has one.
    Http {
        /// Who sends it.
        caller: Box<Caller>,
        /// The request head, when it travels with the ask.
        head: Option<HttpHead>,
        /// The body, when it travels with the ask.
        #[serde(with = "base64_bytes::option")]
        body: Option<Bytes>,
    },
    /// Take one message (a one-way send).
    Message(#[serde(with = "base64_bytes")] Bytes),
}

/// Bytes in serialized asks as base64 text.
mod base64_bytes {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(b: &Option<Bytes>, s: S) -> Result<S::Ok, S::Error> {
            match b {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Bytes>, D::Error> {
            let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
            text.map(|t| {
                B64.decode(t.as_bytes())
                    .map(Bytes::from)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

/// Who is connecting, as far as a listener is told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The client's tracking id.
    pub tracking: String,
    /// The part of the path the client addressed below the entity's.
    pub suffix: String,
    /// The query the listener sees in its rendezvous address, if any.
    pub query: Option<String>,
    /// The client's headers (names as sent; repeated ones joined).
    pub headers: BTreeMap<String, String>,
    /// The client's address.
    pub remote: Option<SocketAddr>,
}

/// An HTTP request head, as relayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHead {
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Whether a body follows.
    pub body: bool,
}

/// A listener's answer made on another node than the one holding the
/// client, carried there: the front end's own text of it (a control
/// message) and the bytes that came with it. Small by construction: only
/// answers that arrive whole on a listener's control channel travel so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    /// The answer as the listener sent it.
    pub text: String,
    /// Its body, when it had one.
    #[serde(with = "base64_bytes::option")]
    pub body: Option<Bytes>,
}

/// How parties reach a node directly (`[cluster.advertise]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The node's name.
    pub node: String,
    /// Plain HTTP and WebSocket.
    pub http: Option<SocketAddr>,
    /// HTTPS and WSS.
    pub https: Option<SocketAddr>,
    /// The relayed-connect port.
    pub relayed: Option<SocketAddr>,
    /// The host name to use instead of the IP address.
    pub host: Option<String>,
}

impl Origin {
    /// `scheme://host:port` of the node's WebSocket endpoint, `wss` when
    /// `tls` and the node has one (else the other).
    pub fn websocket_base(&self, tls: bool) -> Option<String> {
        let (scheme, addr) = match (tls, self.https, self.http) {
            (true, Some(a), _) | (false, Some(a), None) => ("wss", a),
            (_, _, Some(a)) => ("ws", a),
            (_, None, None) => return None,
        };
        let host = match &self.host {
            Some(h) => h.clone(),
            None if addr.is_ipv6() => format!("[{}]", addr.ip()),
            None => addr.ip().to_string(),
        };
        Some(format!("{scheme}://{host}:{}", addr.port()))
    }
}

/// Which side a failure is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The connecting client or sender.
    Client,
    /// The listener.
    Listener,
    /// The gateway itself.
    Gateway,
}

/// Errors of the core, each saying which side failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// No listener is connected for the path.
    #[error("there are no listeners connected for the endpoint")]
    NoListener,
    /// Listeners are connected, but the caller's filter excludes all of them.
    #[error(
        "none of the connected listeners meet the AllowedListeners/DisallowedListeners criteria"
    )]
    NoListenerMatches,
    /// The path has its maximum number of listeners.
    #[error("the maximum number of listeners ({0}) for the endpoint is reached")]
    ListenerQuota(usize),
    /// The rendezvous table is full, for the path (`pending_per_path`) or in
    /// all (`pending_total`): the limit's name.
    #[error("too many pending connections (limit {0})")]
    RendezvousFull(&'static str),
    /// The listener did not answer in time.
    #[error("the listener did not accept the connection within the allowed time")]
    Timeout,
    /// The listener went away before answering.
    #[error("the listener disconnected before answering")]
    ListenerGone,
    /// Every admitted listener's queue is full.
    #[error("every listener's queue is full (limit listener_queue)")]
    ListenerBusy,
    /// No pending rendezvous has this id (unknown, used or expired).
    #[error("no pending rendezvous with this id")]
    UnknownRendezvous,
}

impl CoreError {
    /// The side the failure is attributed to.
    pub fn side(&self) -> Side {
        match self {
            CoreError::NoListener | CoreError::NoListenerMatches | CoreError::UnknownRendezvous => {
                Side::Client
            }
            CoreError::Timeout | CoreError::ListenerGone => Side::Listener,
            CoreError::ListenerQuota(_)
            | CoreError::RendezvousFull(_)
            | CoreError::ListenerBusy => Side::Gateway,
        }
    }

    /// The name of the `[limits]` entry the failure hit, if it is one.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            CoreError::RendezvousFull(limit) => Some(limit),
            CoreError::ListenerBusy => Some("listener_queue"),
            CoreError::ListenerQuota(_) => Some("listeners_per_path"),
            _ => None,
        }
    }
}

/// The core's limits (from `[limits]`, `config::Limits::core`).
#[derive(Debug, Clone, Copy)]
pub struct CoreLimits {
    /// Listeners per path (25, as the service).
    pub listeners_per_path: usize,
    /// Requests queued per listener before it counts as busy.
    pub listener_queue: usize,
    /// Pending rendezvous per path.
    pub pending_per_path: usize,
    /// Pending rendezvous in all.
    pub pending_total: usize,
}

/// The core: this node's listeners, the routes to listeners anywhere, and
/// the rendezvous table.
#[derive(Clone)]
pub struct Relay {
    /// This node's listeners by path.
    pub registry: Registry,
    /// Pending rendezvous.
    pub rendezvous: Rendezvous,
    routes: Arc<dyn Routes>,
}

impl Relay {
    /// A core with these limits, serving this node's listeners only.
    pub fn new(limits: CoreLimits) -> Self {
        let registry = Registry::new(limits.listeners_per_path, limits.listener_queue);
        Relay {
            routes: Arc::new(registry.clone()),
            registry,
            rendezvous: Rendezvous::new(limits.pending_per_path, limits.pending_total),
        }
    }

    /// Apply new limits (a reload): to listeners registering and clients
    /// parking from now on; those already there keep what they had.
    pub fn set_limits(&self, limits: &CoreLimits) {
        self.registry
            .set_limits(limits.listeners_per_path, limits.listener_queue);
        self.rendezvous
            .set_bounds(limits.pending_per_path, limits.pending_total);
    }

    /// The same core, reaching listeners through `routes` (a cluster built
    /// over [`Relay::registry`]).
    pub fn with_routes(self, routes: Arc<dyn Routes>) -> Self {
        Relay { routes, ..self }
    }

    /// Register a listener of this node for `path`: dropping the guard
    /// unregisters it; requests for it arrive on the receiver.
    pub async fn register(
        &self,
        path: &str,
        info: ListenerInfo,
    ) -> Result<(ListenerGuard, tokio::sync::mpsc::Receiver<Request>), CoreError> {
        self.routes.register(path, info).await
    }

    /// Connect a client to `path`: park it under a fresh id, then hand the
    /// ask built by `make(id)` to one listener chosen by `filter`, wherever
    /// it is. The caller awaits the listener's answer on the [`Parked`].
    ///
    /// A refusal known at once (no listener, none admitted, the table full)
    /// is returned here; one known later (a listener on another node that
    /// has just gone) ends [`Parked::wait`], which meanwhile also takes the
    /// answer, so that waiting for the other node's word adds nothing to a
    /// connect that succeeds.
    pub fn connect(
        &self,
        path: &str,
        filter: &Filter,
        make: impl FnOnce(Guid) -> Ask,
    ) -> Result<Parked, CoreError> {
        let mut parked = self.rendezvous.park(path)?;
        let request = Request {
            id: parked.id(),
            origin: self.routes.origin().map(Box::new),
            ask: make(parked.id()),
        };
        let delivery = self.routes.deliver(path, filter, request, Duration::ZERO)?;
        parked.deliver(delivery);
        Ok(parked)
    }

    /// Hand a message to one listener of `path` (a Unicast one-way send),
    /// waiting up to `wait` for room when every admitted listener is busy.
    pub async fn send(
        &self,
        path: &str,
        filter: &Filter,
        message: Bytes,
        wait: Duration,
    ) -> Result<(), CoreError> {
        let request = self.message(message);
        self.routes.deliver(path, filter, request, wait)?.await
    }

    /// Hand a message to every listener of `path` (a Multicast send), at
    /// most once each; those whose queue is full miss it (counted).
    pub async fn publish(
        &self,
        path: &str,
        filter: &Filter,
        message: Bytes,
    ) -> Result<Broadcast, CoreError> {
        let request = self.message(message);
        self.routes.broadcast(path, filter, request).await
    }

    fn message(&self, message: Bytes) -> Request {
        Request {
            id: Guid::random(),
            origin: None,
            ask: Ask::Message(message),
        }
    }

    /// Whether `origin` names another node than this one (a request from
    /// there is answered there).
    pub fn is_elsewhere(&self, origin: Option<&Origin>) -> bool {
        match (origin, self.routes.node()) {
            (Some(o), Some(here)) => o.node != here,
            _ => false,
        }
    }

    /// Send the answer to request `id` to the node that holds its client.
    pub async fn answer_elsewhere(
        &self,
        node: &str,
        id: Guid,
        answer: Forwarded,
    ) -> Result<(), CoreError> {
        self.routes.answer(node, id, answer).await
    }

    /// The listeners of `path` on every node: this node's first.
    pub fn listeners(&self, path: &str) -> Vec<ListenerInfo> {
        let mut all = self.registry.listeners(path);
        all.extend(self.routes.elsewhere(path));
        all
    }

    /// Paths with listeners on any node.
    pub fn paths(&self) -> Vec<String> {
        let mut paths = self.registry.paths();
        for p in self.routes.paths_elsewhere() {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths
    }

    /// How many listeners `path` has, here and on every node.
    pub fn listener_count(&self, path: &str) -> Counts {
        Counts {
            here: self.registry.listeners(path).len(),
            cluster: self.listeners(path).len(),
        }
    }

    /// The cluster as this node sees it; `None` on a single node.
    pub fn view(&self) -> Option<ClusterView> {
        self.routes.view()
    }
}

/// Listener counts of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// On this node.
    pub here: usize,
    /// In the whole cluster (equal to `here` on a single node).
    pub cluster: usize,
}
