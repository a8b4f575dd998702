//! The WCF relay front end (`wcf/PROTOCOL.md`): NetTcpRelayBinding
//! listeners register over the AMQP control channel ([`amqp`]); clients and
//! listeners' dial-backs arrive on the relayed-connect port ([`relayed`]);
//! the two meet in the core's rendezvous table and are spliced as opaque
//! byte streams ([`stream`]). Both also run over WebSocket on the HTTPS
//! endpoint ([`websocket`]). One-way and event senders are served as a
//! net.tcp endpoint whose messages go to listeners over AMQP ([`oneway`]).
//! Entities and tokens: [`entity`].

pub mod amqp;
pub mod entity;
pub mod http;
pub mod nmf;
pub mod oneway;
pub mod relayed;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::relay::Relay;
use crate::shutdown::Shutdown;
use entity::Settings;

/// What answers a parked client (the core's answer payload): the listener's
/// dial-back, after its RelayedAccept was read and before any reply.
pub struct Answer(pub crate::transport::stream::Conn);

/// Ask one listener of `path` whose kind is `kind` to dial back (a notice
/// through `relay`), and wait up to `wait` for its dial-back, after its
/// RelayedAccept and before any reply (§3.2, §3.3).
pub async fn dial_back(
    relay: &Relay,
    path: &str,
    kind: &entity::Kind,
    wait: std::time::Duration,
) -> Result<crate::transport::stream::Conn, crate::relay::CoreError> {
    let filter = crate::relay::Filter {
        kinds: vec![kind.label()],
        ..crate::relay::Filter::default()
    };
    // The notice tells a WCF listener nothing of the client but where to
    // dial back, which the core's request carries.
    let ask = crate::relay::Ask::Connect(Box::default());
    let mut parked = relay.connect(path, &filter, |_| ask)?;
    // Only a dial-back answers a WCF rendezvous; anything else is a
    // listener that did not.
    match parked.wait(wait).await?.downcast::<Answer>() {
        Ok(a) => Ok(a.0),
        Err(_) => Err(crate::relay::CoreError::ListenerGone),
    }
}

/// The addresses the gateway tells listeners to dial back (§3.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    /// The relayed-connect endpoint.
    pub relayed: Option<SocketAddr>,
    /// Plain HTTP.
    pub http: Option<SocketAddr>,
    /// HTTPS.
    pub https: Option<SocketAddr>,
}

/// The front end's shared state.
#[derive(Clone)]
pub struct Wcf {
    /// The relay core (shared with Hybrid Connections).
    pub relay: Relay,
    /// Namespace, relays, rules and limits.
    pub settings: Arc<Settings>,
    /// The hybrid connections, for clients of the ones that take WCF
    /// clients (`crate::frontend::bridge`).
    pub hybrid: Arc<crate::frontend::hybrid::entity::Settings>,
    /// Shutdown signal.
    pub shutdown: Shutdown,
    /// Metrics.
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// TLS for the 9352 flag byte and for AMQP on 5671.
    pub tls: Option<TlsAcceptor>,
    /// Where listeners dial back.
    pub ports: Ports,
}

/// The `frontend` label of AMQP listeners.
pub const FRONTEND_AMQP: &str = "wcf_amqp";
/// The `frontend` label of relayed clients.
pub const FRONTEND_RELAYED: &str = "wcf_relayed";

impl Wcf {
    /// Ask one listener of `path` whose kind is `kind` to dial back (a
    /// notice), and wait up to `accept_timeout` for its dial-back, after its
    /// RelayedAccept and before any reply (§3.2, §3.3).
    pub async fn dial_back(
        &self,
        path: &str,
        kind: &entity::Kind,
    ) -> Result<crate::transport::stream::Conn, crate::relay::CoreError> {
        let wait = self.settings.limits.accept_timeout;
        dial_back(&self.relay, path, kind, wait).await
    }

    /// The entity label for metrics: configured relays and paths with live
    /// listeners, else "unknown" (arbitrary paths create no series).
    pub fn entity_label(&self, path: &str) -> String {
        let path = path.trim_matches('/');
        let known = self
            .settings
            .entities
            .iter()
            .any(|e| e.path.trim_matches('/').eq_ignore_ascii_case(path))
            || !self.relay.listeners(path).is_empty();
        if known {
            path.to_owned()
        } else {
            "unknown".to_owned()
        }
    }
}
