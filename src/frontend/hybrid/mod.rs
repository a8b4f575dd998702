//! The Hybrid Connections front end (`hybrid/PROTOCOL.md`): routing
//! of `/$hc/...` WebSocket requests by `sb-hc-action` to the listener
//! control channel ([`listener`]), sender connections and their rendezvous
//! ([`connect`]), relayed HTTP requests on every other path ([`http`]) and
//! the management GET ([`management`]). Entities and tokens: [`entity`];
//! service-worded error responses: [`reply`].

pub mod connect;
pub mod entity;
pub mod http;
pub mod listener;
pub mod management;
pub mod reply;

use std::net::SocketAddr;
use std::sync::Arc;

use hybrid::address::{self, Action};
use hyper::{Method, Request, Response};
use tracing::info;

use crate::relay::Relay;
use crate::shutdown::Shutdown;
use entity::Settings;
use reply::Body;

/// What answers a parked sender (the core's answer payload).
pub enum Answer {
    /// The listener opened its accept rendezvous: its 101 is on its way,
    /// and the upgrade completes once it is written.
    Accepted {
        /// The listener's WebSocket, once upgraded.
        upgrade: fastwebsockets::upgrade::UpgradeFut,
        /// The sub-protocol the listener asked for.
        protocol: Option<String>,
    },
    /// The listener refused with a status and description.
    Rejected(u16, String),
    /// A `response` arrived on the control channel (body frames follow on `body`).
    Response(hybrid::control::Response, Option<reply::BodyRx>),
    /// The listener opened a request rendezvous (already upgraded).
    Rendezvous(
        crate::transport::websocket::WsRead,
        crate::transport::websocket::WsWrite,
    ),
    /// The listener's control channel went away with the request outstanding.
    ListenerGone,
}

/// The front end's shared state.
#[derive(Clone)]
pub struct Hybrid {
    /// The relay core.
    pub relay: Relay,
    /// Namespace, entities, rules and limits.
    pub settings: Arc<Settings>,
    /// The WCF relays, for senders to the ones that take Hybrid
    /// Connections senders (`crate::frontend::bridge`).
    pub wcf: Arc<crate::frontend::wcf::entity::Settings>,
    /// Shutdown signal.
    pub shutdown: Shutdown,
    /// Metrics.
    pub metrics: Arc<crate::telemetry::Metrics>,
}

/// The `frontend` label of WebSocket listeners and senders.
pub const FRONTEND_WS: &str = "hybrid";
/// The `frontend` label of relayed HTTP requests.
pub const FRONTEND_HTTP: &str = "hybrid_http";

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The gateway's address on that connection.
    pub local: SocketAddr,
    /// Whether it came in over TLS.
    pub tls: bool,
}

/// A refusal response (boxed: it is large and only on the error path).
pub type Refusal = Box<Response<Body>>;

/// The `Host` header of a request.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Hybrid {
    /// Resolve `path` to an entity, or the service's 404 ("Endpoint does not exist").
    pub fn entity_or_404(&self, path: &str, for_listener: bool) -> Result<entity::Entity, Refusal> {
        self.settings
            .resolve(path, &self.relay, for_listener)
            .inspect(|e| crate::telemetry::record_entity(&e.path))
            .ok_or_else(|| {
                info!(path, "refused: no such hybrid connection");
                Box::new(reply::status(
                    404,
                    &format!(
                        "Endpoint does not exist. {}",
                        reply::tracker(&self.settings.host, path)
                    ),
                ))
            })
    }

    /// Check the token of a WebSocket listen or connect for `right`; returns
    /// the token, or the 401/403 response (`what` names the operation in the log).
    pub fn check_ws_token<B>(
        &self,
        req: &Request<B>,
        query: &str,
        entity: &entity::Entity,
        right: crate::config::Right,
        what: &str,
    ) -> Result<Option<String>, Refusal> {
        let s = &self.settings;
        let (token, _) = entity::Settings::find_token(
            entity::TokenSource::WebSocket,
            req.headers(),
            query,
            true,
        );
        match s.authorize(token.as_deref(), entity, right, 0) {
            Ok(()) => Ok(token),
            Err(e) => {
                info!(path = entity.path, reason = %e, "{what} refused");
                self.metrics.token_rejected(
                    &self.entity_label(&entity.path),
                    FRONTEND_WS,
                    crate::telemetry::token_reason(&e),
                );
                Err(Box::new(reply::status(
                    entity::token_status(&e),
                    &format!("{e}. {}", reply::tracker(&s.host, &entity.path)),
                )))
            }
        }
    }

    /// Serve one HTTP request.
    pub async fn handle(&self, req: Request<hyper::body::Incoming>, peer: Peer) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let upgrade = fastwebsockets::upgrade::is_upgrade_request(&req);
        if let Some(rest) = address::strip_hc(&path) {
            if !upgrade {
                return reply::status(
                    400,
                    "Hybrid Connections endpoints take WebSocket requests only",
                );
            }
            let action = address::param(&query, "sb-hc-action");
            return match Action::parse(action.as_deref()) {
                Some(Action::Listen) => listener::listen(self, req, rest, &query, peer).await,
                Some(Action::Connect) => {
                    let r = connect::connect(self, req, rest, &query, peer).await;
                    self.metrics
                        .sender(&self.entity_label(rest), FRONTEND_WS, r.status().as_u16());
                    r
                }
                Some(Action::Accept) => connect::accept(self, req, &query),
                Some(Action::Request) => http::listener_rendezvous(self, req, &query),
                None => reply::status(
                    400,
                    &format!("Unsupported action '{}'", action.unwrap_or_default()),
                ),
            };
        }
        if req.method() == Method::CONNECT {
            return reply::status(405, "CONNECT is not relayed");
        }
        if upgrade {
            return reply::status(
                400,
                "WebSocket upgrades are only accepted on /$hc/ addresses",
            );
        }
        if management::is_management(&req) {
            return management::get(self, &req, &path);
        }
        let r = http::relay(self, req, peer).await;
        self.metrics.sender(
            &self.entity_label(&path),
            FRONTEND_HTTP,
            r.status().as_u16(),
        );
        r
    }

    /// The entity a path belongs to, for metric labels: a configured entity
    /// or one with live listeners, else "unknown" (so that arbitrary paths,
    /// which dynamic registration would accept, cannot create series).
    fn entity_label(&self, path: &str) -> String {
        self.settings
            .resolve(path, &self.relay, false)
            .filter(|e| {
                self.settings
                    .entities
                    .iter()
                    .any(|c| c.path.trim_matches('/').eq_ignore_ascii_case(&e.path))
                    || !self.relay.listeners(&e.path).is_empty()
            })
            .map_or_else(|| "unknown".to_owned(), |e| e.path)
    }
}
