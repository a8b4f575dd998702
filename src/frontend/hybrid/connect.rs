//! Sender WebSocket connections and the listener's accept rendezvous
//! (`hybrid/PROTOCOL.md` §3): the sender's upgrade is held (no 101)
//! while an `accept` goes to one listener; once the listener opens its
//! rendezvous on the single-use address, both get their 101 at once (the
//! listener's echoing the sub-protocol it asked for, the sender's with the
//! same sub-protocol if the sender offered it) and the two are spliced. A
//! listener that rejects gets 410 and the sender its status and
//! description; a listener that never comes leaves the sender with 504; one
//! that leaves between its rendezvous request and its 101 leaves the sender
//! with a 1011 close.

use std::collections::BTreeMap;

use hybrid::address;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{HeaderMap, Request, Response};
use tracing::Instrument;
use tracing::{debug, info};

use super::reply::{self, Body};
use super::{Answer, Hybrid, Peer, FRONTEND_WS};
use crate::config::Right;
use crate::frontend::bridge;
use crate::frontend::spelling::{canonical, Names};
use crate::relay::{splice, Ask, Caller, CoreError, Filter, Guid};
use crate::transport::websocket;

/// Headers never passed to a listener.
const DROPPED: [&str; 3] = ["serviceBusAuthorization", "connection", "upgrade"];

/// Join repeated headers with `", "`, drop credentials and hop-by-hop ones;
/// names as the sender spelled them when its head was watched (`names`).
pub fn join_headers(
    headers: &HeaderMap,
    names: Option<&Names>,
    drop: &[&str],
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if drop.iter().any(|d| d.eq_ignore_ascii_case(n)) {
            continue;
        }
        let key = names.map_or_else(|| canonical(n), |names| names.spell(n));
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(key)
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// The `Microsoft-Relay-AllowedListeners` / `DisallowedListeners` filter.
pub fn filter(headers: &HeaderMap) -> Filter {
    let list = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    Filter {
        allowed: list("Microsoft-Relay-AllowedListeners"),
        disallowed: list("Microsoft-Relay-DisallowedListeners"),
        kinds: vec![super::listener::KIND.into()],
    }
}

/// The response for a core error when looking for a listener (counting
/// the limit hits among them).
pub fn no_listener(h: &Hybrid, frontend: &str, e: &CoreError, path: &str) -> (u16, String) {
    let s = &h.settings;
    match e {
        CoreError::RendezvousFull(_) | CoreError::ListenerBusy => {
            h.metrics
                .limit_hit(path, frontend, e.limit().unwrap_or_default())
        }
        _ => {}
    }
    match e {
        CoreError::NoListener => (404, format!("There are no listeners connected for the endpoint. {}", reply::tracker(&s.host, path))),
        CoreError::NoListenerMatches => (404, format!("None of the connected listeners meet the AllowedListeners/DisallowedListeners criteria. {}", reply::tracker(&s.host, path))),
        CoreError::Timeout => (504, format!("None of the connected listeners accepted the connections within the allowed timeout. {}", reply::tracker(&s.host, path))),
        CoreError::RendezvousFull(_) | CoreError::ListenerBusy => (503, format!("The gateway has too many pending connections: {e}. {}", reply::tracker(&s.host, path))),
        CoreError::ListenerGone => (502, format!("The listener disconnected before accepting. {}", reply::tracker(&s.host, path))),
        other => (500, other.to_string()),
    }
}

/// Handle `sb-hc-action=connect` (and a missing action).
pub async fn connect(
    h: &Hybrid,
    mut req: Request<hyper::body::Incoming>,
    path: &str,
    query: &str,
    peer: Peer,
) -> Response<Body> {
    let s = &h.settings;
    if let Some(entity) = h.wcf.takes_hybrid_senders(path) {
        return to_bridged_relay(h, req, query, peer, entity).await;
    }
    let entity = match h.entity_or_404(path, false) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    if entity.requires_auth {
        if let Err(r) = h.check_ws_token(&req, query, &entity, Right::Send, "connect") {
            return *r;
        }
    }
    // Validate the upgrade before bothering a listener.
    let offered: Vec<String> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let caller = caller(&req, query, &entity.suffix, &peer);
    let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    let parked = h.relay.connect(&entity.path, &filter(req.headers()), |_| {
        Ask::Connect(Box::new(caller))
    });
    let started = std::time::Instant::now();
    let mut parked = match parked {
        Ok(p) => p,
        Err(e) => {
            let (code, text) = no_listener(h, FRONTEND_WS, &e, &entity.path);
            info!(path = entity.path, reason = %e, side = ?e.side(), "connect refused");
            return reply::status(code, &text);
        }
    };
    let answer = match parked.wait(s.limits.accept_timeout).await {
        Ok(a) => a
            .downcast::<Answer>()
            .map(|a| *a)
            .unwrap_or(Answer::ListenerGone),
        Err(e) => {
            let (code, text) = no_listener(h, FRONTEND_WS, &e, &entity.path);
            info!(path = entity.path, reason = %e, side = ?e.side(), "connect failed");
            return reply::status(code, &text);
        }
    };
    let (listener, protocol) = match answer {
        Answer::Accepted { upgrade, protocol } => {
            h.metrics
                .rendezvous(&entity.path, FRONTEND_WS, started.elapsed().as_secs_f64());
            (upgrade, protocol)
        }
        Answer::Rejected(code, text) => {
            info!(path = entity.path, code, "connect rejected by the listener");
            return reply::status(code, &text);
        }
        Answer::ListenerGone | Answer::Response(..) | Answer::Rendezvous(..) => {
            let (code, text) = no_listener(h, FRONTEND_WS, &CoreError::ListenerGone, &entity.path);
            return reply::status(code, &text);
        }
    };
    if let Some(p) = protocol.filter(|p| offered.contains(p)) {
        if let Ok(v) = HeaderValue::from_str(&p) {
            response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let limits = s.limits.splice();
    let shutdown = h.shutdown.clone();
    let tracked = shutdown.track();
    let max = usize::MAX;
    let (metrics, label) = (h.metrics.clone(), entity.path.clone());
    tokio::spawn(
        async move {
            let _tracked = tracked;
            let _active = metrics.connection_started(&label, FRONTEND_WS);
            // Both 101s are written at once, each by its connection.
            let (sender, listener) = tokio::join!(upgrade, listener);
            let (lread, lwrite) = match listener {
                Ok(ws) => websocket::split(ws.into_inner(), max),
                Err(e) => {
                    debug!(error = %e, "the listener left before its upgrade");
                    if let Ok(ws) = sender {
                        let (_, w) = websocket::split(ws.into_inner(), max);
                        let _ = websocket::send_close(&w, 1011, "The listener went away").await;
                    }
                    return;
                }
            };
            let Ok(ws) = sender else {
                let _ = websocket::send_close(&lwrite, 1001, "The sender went away").await;
                return;
            };
            let (sread, swrite) = websocket::split(ws.into_inner(), max);
            let stats = splice(
                websocket::leg(sread, swrite),
                websocket::leg(lread, lwrite),
                limits,
                shutdown.drained(),
            )
            .await;
            metrics.bytes(&label, FRONTEND_WS, stats.a_to_b, stats.b_to_a);
            metrics.splice_ended(&label, FRONTEND_WS, stats.end.label());
            debug!(
                sender_to_listener = stats.a_to_b,
                listener_to_sender = stats.b_to_a,
                end = %stats.end,
                "connection ended"
            );
        }
        .in_current_span(),
    );
    response.map(|_| reply::empty())
}

/// Who the sender is, as its listener is told: its tracking id, the path
/// below the entity, the query (rebuilt as the service rebuilds it for an
/// accepting listener; the .NET SDK's tests expect its encoding), its
/// headers and its address.
fn caller<B>(req: &Request<B>, query: &str, suffix: &str, peer: &Peer) -> Caller {
    Caller {
        tracking: address::param(query, "sb-hc-id").unwrap_or_else(reply::tracking_id),
        suffix: suffix.to_owned(),
        query: address::service_query(query),
        headers: join_headers(req.headers(), req.extensions().get::<Names>(), &DROPPED),
        remote: Some(peer.remote),
    }
}

/// A sender on a NetTcp relay that takes Hybrid Connections senders
/// (`crate::frontend::bridge`): checked with the relay's Send rules, served
/// by one of its listeners of either kind, answered 101 once that listener
/// has dialed back or opened its rendezvous.
async fn to_bridged_relay(
    h: &Hybrid,
    mut req: Request<hyper::body::Incoming>,
    query: &str,
    peer: Peer,
    entity: crate::frontend::wcf::entity::Entity,
) -> Response<Body> {
    let s = &h.settings;
    crate::telemetry::record_entity(&entity.path);
    if entity.requires_auth.unwrap_or(true) {
        let (token, _) = super::entity::Settings::find_token(
            super::entity::TokenSource::WebSocket,
            req.headers(),
            query,
            true,
        );
        if let Err(e) = h.wcf.authorize(token.as_deref(), &entity, Right::Send, 0) {
            info!(path = entity.path, reason = %e, "connect refused");
            h.metrics.token_rejected(
                &entity.path,
                FRONTEND_WS,
                crate::telemetry::token_reason(&e),
            );
            return reply::status(
                super::entity::token_status(&e),
                &format!("{e}. {}", reply::tracker(&s.host, &entity.path)),
            );
        }
    }
    let caller = caller(&req, query, "", &peer);
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    let started = std::time::Instant::now();
    let wait = s.limits.accept_timeout;
    let chosen = bridge::listener_for_hybrid_sender(&h.relay, &entity.path, caller, wait).await;
    let listener = match chosen {
        Ok(l) => l,
        Err(e) => {
            let (code, text) = no_listener(h, FRONTEND_WS, &e, &entity.path);
            info!(path = entity.path, reason = %e, side = ?e.side(), "connect failed");
            return reply::status(code, &text);
        }
    };
    h.metrics
        .rendezvous(&entity.path, FRONTEND_WS, started.elapsed().as_secs_f64());
    let limits = s.limits.splice();
    let shutdown = h.shutdown.clone();
    let tracked = shutdown.track();
    let (metrics, label) = (h.metrics.clone(), entity.path.clone());
    tokio::spawn(
        async move {
            let _tracked = tracked;
            let Ok(ws) = upgrade.await else { return };
            let _active = metrics.connection_started(&label, FRONTEND_WS);
            let (read, write) = websocket::split(ws.into_inner(), usize::MAX);
            let stats = splice(
                websocket::leg(read, write),
                listener,
                limits,
                shutdown.drained(),
            )
            .await;
            metrics.bytes(&label, FRONTEND_WS, stats.a_to_b, stats.b_to_a);
            metrics.splice_ended(&label, FRONTEND_WS, stats.end.label());
        }
        .in_current_span(),
    );
    response.map(|_| reply::empty())
}

/// Handle `sb-hc-action=accept`: the listener's rendezvous (or rejection).
pub fn accept(h: &Hybrid, mut req: Request<hyper::body::Incoming>, query: &str) -> Response<Body> {
    let Some(rid) = address::param(query, "sb-hc-rendezvous").and_then(|r| Guid::parse(&r)) else {
        return reply::status(404, "The rendezvous address is not valid.");
    };
    if let Some(code) = address::param(query, "sb-hc-statusCode") {
        let Some(code) = code
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=999).contains(c))
        else {
            return reply::status(
                400,
                "sb-hc-statusCode must be an integer between 100 and 999",
            );
        };
        let text = address::param(query, "sb-hc-statusDescription").unwrap_or_default();
        return match h
            .relay
            .rendezvous
            .complete(rid, Box::new(Answer::Rejected(code, text)))
        {
            Ok(()) => reply::status(410, "Gone: the connection was rejected"),
            Err(_) => reply::status(
                404,
                "The rendezvous address is not valid or was already used.",
            ),
        };
    }
    let Some(claim) = h.relay.rendezvous.take(rid) else {
        return reply::status(
            403,
            "The rendezvous address is not valid or was already used.",
        );
    };
    let protocol = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    if let Some(v) = protocol
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Err(gone) = claim.send(Box::new(Answer::Accepted { upgrade, protocol })) {
        if let Ok(Answer::Accepted { upgrade, .. }) = gone.downcast::<Answer>().map(|a| *a) {
            tokio::spawn(
                async move {
                    let Ok(ws) = upgrade.await else { return };
                    let (_, write) = websocket::split(ws.into_inner(), usize::MAX);
                    let _ = websocket::send_close(&write, 1001, "The sender went away").await;
                }
                .in_current_span(),
            );
        }
    }
    response.map(|_| reply::empty())
}
