//! The listener control channel (`hybrid/PROTOCOL.md` §2): the `listen`
//! upgrade (token from header or query, Listen right, quota), then one task
//! per listener driving [`hybrid::listener::server::Server`], which owns the
//! channel's protocol (messages, pings, keep-alive and token deadlines,
//! close codes). This module reads and writes the WebSocket, keeps the
//! time, checks renewal tokens, turns the core's requests into `accept` and
//! `request` messages, and takes each `response` to the waiting request (or
//! to the node that holds its client), its body frame by frame. When the
//! channel ends, requests still waiting on it fail at once.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hybrid::address;
use hybrid::control::{
    Accept, RemoteEndpoint, Request as HcRequest, RequestHead, Response as HcResponse,
};
use hybrid::listener::server::{End, Event, Server, ServerConfig};
use hybrid::sas::Token;
use hyper::{Request, Response};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;
use tracing::{debug, info, warn};

use super::entity::Entity;
use super::reply::{self, Body, BodyPart, BodyTx};
use super::{Answer, Hybrid, Peer, FRONTEND_WS};
use crate::auth;
use crate::config::Right;
use crate::relay::elsewhere::Elsewhere;
use crate::relay::{Ask, Caller, CoreError, Guid, ListenerInfo, Request as CoreRequest};
use crate::transport::websocket::{self, WsRead, WsWrite};

/// The core's listener kind of Hybrid Connections listeners (so that senders
/// never reach a WCF relay listener registered on the same path).
pub const KIND: &str = "hybrid";

/// Handle `sb-hc-action=listen`.
pub async fn listen(
    h: &Hybrid,
    mut req: Request<hyper::body::Incoming>,
    path: &str,
    query: &str,
    peer: Peer,
) -> Response<Body> {
    let s = &h.settings;
    let host = super::request_host(&req);
    // A NetTcp relay that takes Hybrid Connections senders takes their
    // listeners too, under its rules (`crate::frontend::bridge`).
    let bridged = h.wcf.takes_hybrid_senders(path).map(|w| Entity {
        path: w.path,
        suffix: String::new(),
        requires_auth: true,
        rules: w.rules,
        wcf_clients: false,
    });
    let entity = match bridged.map_or_else(|| h.entity_or_404(path, true), Ok) {
        Ok(e) => e,
        Err(r) => {
            h.metrics
                .listener_refused("unknown", FRONTEND_WS, r.status().as_u16());
            return *r;
        }
    };
    let token = match h.check_ws_token(&req, query, &entity, Right::Listen, "listen") {
        Ok(t) => t,
        Err(r) => {
            h.metrics
                .listener_refused(&entity.path, FRONTEND_WS, r.status().as_u16());
            return *r;
        }
    };
    let expiry = token
        .as_deref()
        .and_then(|t| Token::parse(t).ok())
        .map_or(0, |t| t.expiry);
    let identity = address::param(query, "sb-hc-id").unwrap_or_else(reply::tracking_id);
    let registered = h.relay.register(
        &entity.path,
        ListenerInfo {
            identity: identity.clone(),
            kind: KIND.into(),
        },
    );
    let (guard, rx) = match registered.await {
        Ok(r) => r,
        Err(CoreError::ListenerQuota(n)) => {
            info!(path = entity.path, "listen refused: quota");
            h.metrics
                .limit_hit(&entity.path, FRONTEND_WS, "listeners_per_path");
            h.metrics.listener_refused(&entity.path, FRONTEND_WS, 403);
            return reply::status(403, &format!("QuotaExceeded: the maximum number of listeners ({n}) for this hybrid connection is reached. {}", reply::tracker(&s.host, &entity.path)));
        }
        Err(e) => return reply::status(500, &e.to_string()),
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    let base = format!(
        "{}://{}",
        if peer.tls { "wss" } else { "ws" },
        host.unwrap_or_else(|| s.host.clone())
    );
    let control = Control {
        h: h.clone(),
        entity,
        base,
        tls: peer.tls,
        identity,
        expiry,
        outstanding: Outstanding::default(),
        elsewhere: Elsewhere::default(),
        body: BodySink::None,
    };
    let tracked = h.shutdown.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        let Ok(ws) = upgrade.await else { return };
        let (read, write) = websocket::split(ws.into_inner(), h_max(&control.h));
        info!(path = control.entity.path, identity = control.identity, remote = %peer.remote, "listener connected");
        let metrics = control.h.metrics.clone();
        let entity = control.entity.path.clone();
        let active = metrics.listener_connected(&entity, FRONTEND_WS);
        control.run(read, write, rx).await;
        drop(active);
        metrics.listener_disconnected(&entity, FRONTEND_WS);
        drop(guard);
    }.in_current_span());
    response.map(|_| reply::empty())
}

fn h_max(h: &Hybrid) -> usize {
    h.settings.limits.max_control_message
}

/// Where binary frames on the control channel go.
enum BodySink {
    /// No response body is being received (stray binary frames are dropped).
    None,
    /// Forward to the waiting request (which fails unless the body's last
    /// frame comes).
    To(BodyTx),
    /// A body nobody waits for: read and drop until its last frame.
    Discard,
    /// The body of a response for a client on another node: gathered,
    /// then carried there with its `response` text.
    Elsewhere(Box<Carried>),
}

/// A response on its way to the node that holds the client.
struct Carried {
    node: String,
    id: Guid,
    text: String,
    body: BytesMut,
}

struct Control {
    h: Hybrid,
    entity: Entity,
    base: String,
    /// Whether the listener is connected over TLS (its rendezvous too).
    tls: bool,
    identity: String,
    expiry: u64,
    /// Rendezvous ids delivered on this channel that may still be pending.
    outstanding: Outstanding,
    /// Accepts and inline requests for clients on other nodes.
    elsewhere: Elsewhere,
    body: BodySink,
}

/// The rendezvous ids a control channel was handed that may still be
/// pending, failed at once when the channel ends. Answers usually arrive
/// elsewhere (an accept or request rendezvous), so ids no longer pending
/// are pruned whenever the set reaches its mark: it stays within twice the
/// ids still pending (which the core caps per path), or [`PRUNE_FLOOR`].
#[derive(Default)]
struct Outstanding {
    ids: HashSet<Guid>,
    prune_at: usize,
}

/// The smallest set that is pruned.
const PRUNE_FLOOR: usize = 64;

impl Outstanding {
    /// Add `id`, first pruning the ids `pending` no longer holds if the set
    /// has reached its mark.
    fn insert(&mut self, id: Guid, pending: impl Fn(Guid) -> bool) {
        if self.ids.len() >= self.prune_at.max(PRUNE_FLOOR) {
            self.ids.retain(|id| pending(*id));
            self.prune_at = 2 * self.ids.len();
        }
        self.ids.insert(id);
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Control {
    /// When the token runs out past the grace, if it does.
    fn deadline(&self, expiry: u64) -> Option<std::time::Instant> {
        if expiry == 0 {
            return None;
        }
        let grace = self.h.settings.limits.token_grace.as_secs() + auth::CLOCK_SKEW;
        let left = expiry.saturating_add(grace).saturating_sub(auth::now());
        now().checked_add(Duration::from_secs(left))
    }

    async fn run(mut self, mut read: WsRead, write: WsWrite, mut rx: mpsc::Receiver<CoreRequest>) {
        let config = ServerConfig {
            max_message: self.h.settings.limits.max_control_message,
            ping_interval: self.h.settings.limits.ping_interval,
            tracking_id: self.identity.clone(),
        };
        let mut session = Server::new(config, self.deadline(self.expiry), now());
        let shutdown = self.h.shutdown.clone();
        let end = loop {
            if let Some(end) = self.events(&mut session).await {
                let _ = websocket::send_queued(&write, || session.poll_transmit()).await;
                break end.reason();
            }
            if websocket::send_queued(&write, || session.poll_transmit())
                .await
                .is_err()
            {
                break "write failed";
            }
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => self.deliver(&mut session, r),
                    // The entity was removed (live reload): 1001, as for a deleted HC (§2.3).
                    None => session.close(End::Removed),
                },
                f = websocket::read_frame(&mut read, &write) => match f {
                    Ok(f) => session.frame(websocket::opcode(f.opcode), f.fin, f.data, now()),
                    // A protocol breach has been answered with its Close.
                    Err(e) if websocket::close_code(&e).is_some() => break "protocol error",
                    Err(_) => break "connection lost",
                },
                () = sleep_until(session.poll_timeout()) => session.handle_timeout(now()),
                () = shutdown.stopping() => session.close(End::Shutdown),
            }
        };
        info!(
            path = self.entity.path,
            identity = self.identity,
            reason = end,
            "listener disconnected"
        );
        for id in self.outstanding.ids.drain() {
            let _ = self
                .h
                .relay
                .rendezvous
                .complete(id, Box::new(Answer::ListenerGone));
        }
        // Clients on other nodes still waiting on this channel hear it too.
        let limits = &self.h.settings.limits;
        let wait = limits.accept_timeout.max(limits.request_timeout);
        self.elsewhere.listener_gone(&self.h.relay, wait);
    }

    /// Act on the session's events; the ending, once there is one.
    async fn events(&mut self, session: &mut Server) -> Option<End> {
        while let Some(event) = session.poll_event() {
            match event {
                Event::RenewToken(token) => self.renew(session, &token),
                Event::Response { response, text } => self.response(response, text),
                Event::Body { data, last } => self.body_frame(last, data).await,
                Event::Ended(end) => {
                    if end == End::TooLarge {
                        self.h.metrics.limit_hit(
                            &self.entity.path,
                            FRONTEND_WS,
                            "max_control_message",
                        );
                    }
                    return Some(end);
                }
            }
        }
        None
    }

    /// Queue what the core asks for.
    fn deliver(&mut self, session: &mut Server, r: CoreRequest) {
        let pending = &self.h.relay.rendezvous;
        self.outstanding.insert(r.id, |id| pending.is_pending(id));
        // The node holding the client, as this listener reaches it.
        let base = match r.origin.as_ref().and_then(|o| o.websocket_base(self.tls)) {
            Some(base) => base,
            None => self.base.clone(),
        };
        let path = &self.entity.path;
        if self.h.relay.is_elsewhere(r.origin.as_deref()) {
            let tracked = match &r.ask {
                Ask::Connect(_) => Some(self.h.settings.limits.accept_timeout),
                Ask::Http { head: Some(_), .. } => Some(self.h.settings.limits.request_timeout),
                _ => None,
            };
            if let (Some(forget), Some(o)) = (tracked, &r.origin) {
                self.elsewhere.insert(r.id, o.node.clone(), forget);
            }
        }
        match r.ask {
            Ask::Connect(c) => {
                let tail = rendezvous_tail(path, &c, "accept", &c.tracking, r.id);
                session.accept(&Accept {
                    address: format!("{base}{tail}"),
                    remote_endpoint: remote_endpoint(c.remote),
                    id: c.tracking,
                    connect_headers: c.headers,
                });
            }
            Ask::Http { caller, head, body } => {
                let id = r.id.to_string();
                let tail = rendezvous_tail(path, &caller, "request", &id, r.id);
                let request = HcRequest {
                    address: format!("{base}{tail}"),
                    id,
                    head: head.map(|h| RequestHead {
                        request_target: h.target,
                        method: h.method,
                        request_headers: caller.headers,
                        remote_endpoint: remote_endpoint(caller.remote),
                        body: h.body,
                    }),
                };
                session.request(&request, body);
            }
            Ask::Message(_) => warn!(path, "a message cannot go to a Hybrid Connections listener"),
        }
    }

    fn renew(&mut self, session: &mut Server, token: &str) {
        let s = &self.h.settings;
        let grace = s.limits.token_grace.as_secs();
        match s.authorize(Some(token), &self.entity, Right::Listen, grace) {
            Ok(()) => {
                self.expiry = Token::parse(token).map_or(self.expiry, |t| t.expiry);
                session.renewed(self.deadline(self.expiry));
                debug!(identity = self.identity, "token renewed");
            }
            Err(e) => session.refuse_renewal(&e.to_string()),
        }
    }

    /// A `response`: for a client on another node it is carried there (with
    /// its body once gathered); else it completes the waiting request.
    fn response(&mut self, r: HcResponse, text: String) {
        let id = Guid::parse(&r.request_id);
        if let Some(id) = id {
            self.outstanding.ids.remove(&id);
        }
        if let Some((id, node)) = id.and_then(|id| self.elsewhere.remove(id).map(|node| (id, node)))
        {
            let carried = Carried {
                node,
                id,
                text,
                body: BytesMut::new(),
            };
            self.body = if r.body {
                BodySink::Elsewhere(Box::new(carried))
            } else {
                self.carry(carried);
                BodySink::None
            };
            return;
        }
        let (body_tx, body_rx) = if r.body {
            let (t, rx) = mpsc::channel(16);
            (Some(t), Some(rx))
        } else {
            (None, None)
        };
        let delivered = id.is_some_and(|id| {
            self.h
                .relay
                .rendezvous
                .complete(id, Box::new(Answer::Response(r, body_rx)))
                .is_ok()
        });
        self.body = match (body_tx, delivered) {
            (Some(t), true) => BodySink::To(t),
            (Some(_), false) => BodySink::Discard,
            (None, _) => BodySink::None,
        };
    }

    /// Send a response to the node that holds its client.
    fn carry(&self, c: Carried) {
        let answer = crate::relay::Forwarded {
            text: c.text,
            body: (!c.body.is_empty()).then(|| c.body.freeze()),
        };
        self.h.relay.carry(c.node, c.id, answer);
    }

    async fn body_frame(&mut self, fin: bool, data: Bytes) {
        if let BodySink::Elsewhere(c) = &mut self.body {
            if c.body.len() + data.len() > h_max(&self.h) {
                // Not an inline body: the client's wait ends it.
                self.body = if fin {
                    BodySink::None
                } else {
                    BodySink::Discard
                };
                return;
            }
            c.body.extend_from_slice(&data);
            if fin {
                if let BodySink::Elsewhere(c) = std::mem::replace(&mut self.body, BodySink::None) {
                    self.carry(*c);
                }
            }
            return;
        }
        if let BodySink::To(tx) = &self.body {
            let mut sent = data.is_empty() || tx.send(Ok(BodyPart::Data(data))).await.is_ok();
            if sent && fin {
                sent = tx.send(Ok(BodyPart::End)).await.is_ok();
            }
            if !sent {
                self.body = BodySink::Discard;
            }
        }
        if fin {
            self.body = BodySink::None;
        }
    }
}

/// The path and query of a rendezvous address for `action` (`accept` or
/// `request`): `/$hc/{entity}{suffix}?{query&}sb-hc-action=…&sb-hc-id=…&sb-hc-rendezvous=…`.
/// The single-use rendezvous id rides in an `sb-hc-` parameter, which SDKs
/// hide from applications.
fn rendezvous_tail(path: &str, caller: &Caller, action: &str, id: &str, rid: Guid) -> String {
    let q = caller
        .query
        .as_ref()
        .map(|q| format!("{q}&"))
        .unwrap_or_default();
    format!(
        "/$hc/{path}{}?{q}sb-hc-action={action}&sb-hc-id={id}&sb-hc-rendezvous={rid}",
        caller.suffix
    )
}

/// The `remoteEndpoint` of a caller (unspecified when not known).
fn remote_endpoint(remote: Option<std::net::SocketAddr>) -> RemoteEndpoint {
    let remote = remote.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    RemoteEndpoint {
        address: remote.ip().to_string(),
        port: remote.port(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_ids_stay_bounded_by_what_is_still_pending() {
        // A long-lived listener whose every connection is answered on its
        // own rendezvous (the set once kept every id it was ever sent).
        let mut o = Outstanding::default();
        for _ in 0..100_000 {
            o.insert(Guid::random(), |_| false);
            assert!(o.ids.len() <= PRUNE_FLOOR);
        }
        // Ids still pending are kept, and the mark follows them.
        let live: Vec<Guid> = (0..500).map(|_| Guid::random()).collect();
        let mut o = Outstanding::default();
        for id in &live {
            o.insert(*id, |id| live.contains(&id));
        }
        for _ in 0..10_000 {
            o.insert(Guid::random(), |id| live.contains(&id));
            assert!(o.ids.len() <= 2 * live.len() + 1);
        }
        assert!(live.iter().all(|id| o.ids.contains(id)));
    }
}
