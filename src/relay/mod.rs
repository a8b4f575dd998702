//! The protocol-neutral relay core (`src/main.rs`, "Design"): which listeners
//! serve which path ([`registry`]), the table that pairs a parked client with
//! the listener's answer ([`rendezvous`]), and the splice of two legs
//! ([`splice`], or [`zerocopy`] for two plain TCP sockets). Front ends translate their protocols into these calls; the
//! core never names a protocol type (a test checks that no file here
//! mentions the protocol crates).

pub mod id;
pub mod leg;
pub mod registry;
pub mod rendezvous;
pub mod splice;
#[cfg(target_os = "linux")]
pub mod zerocopy;

use std::any::Any;

pub use id::Guid;
pub use leg::{Chunk, CloseInfo, Leg, LegEvent, LegReader, LegWriter};
pub use registry::{Filter, ListenerInfo, Registry, Request};
pub use rendezvous::{Parked, Rendezvous};
pub use splice::{splice, SpliceLimits};

/// Opaque data a front end passes through the core.
pub type Payload = Box<dyn Any + Send>;

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

/// The core: registry plus rendezvous table.
#[derive(Clone)]
pub struct Relay {
    /// Listeners by path.
    pub registry: Registry,
    /// Pending rendezvous.
    pub rendezvous: Rendezvous,
}

impl Relay {
    /// A core with these limits.
    pub fn new(limits: CoreLimits) -> Self {
        Relay {
            registry: Registry::new(limits.listeners_per_path, limits.listener_queue),
            rendezvous: Rendezvous::new(limits.pending_per_path, limits.pending_total),
        }
    }

    /// Connect a client to `path`: park it under a fresh id, then hand a
    /// request built by `make(id)` to one listener chosen by `filter`. The
    /// caller awaits the listener's answer on the returned [`Parked`].
    pub fn connect(
        &self,
        path: &str,
        filter: &Filter,
        make: impl FnOnce(Guid) -> Payload,
    ) -> Result<Parked, CoreError> {
        let parked = self.rendezvous.park(path)?;
        let payload = make(parked.id());
        self.registry.deliver(
            path,
            filter,
            Request {
                id: parked.id(),
                payload,
            },
        )?;
        Ok(parked)
    }
}
