//! Relayed HTTP requests (`hybrid/PROTOCOL.md` §4): any method but
//! CONNECT on `/{entity}/…`; bodies up to 64 KiB (and header blocks up to
//! 32 KiB) travel inline on the control channel, larger or unknown-length
//! ones over a rendezvous the listener opens; the response comes back on the
//! control channel or on a rendezvous (the listener's own, for a large or
//! slow response) and is streamed to the client as it arrives. Hop-by-hop
//! headers and relay credentials are dropped; `Via` is added both ways;
//! service-generated errors are JSON without `Via`.

use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::{BodyExt, Limited};
use hybrid::address;
use hybrid::control::{
    parse_command, ListenerCommand, RemoteEndpoint, Request as HcRequest, RequestHead,
    Response as HcResponse,
};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response};
use tokio::sync::mpsc;
use tracing::info;
use tracing::Instrument;

use super::connect::{filter, join_headers};
use super::entity::{Settings, TokenSource};
use super::reply::{self, Body, BodyPart, BodyRx};
use super::{Answer, Hybrid, Peer, FRONTEND_HTTP};
use crate::config::Right;
use crate::frontend::spelling::Names;
use crate::relay::{Ask, Caller, CoreError, Forwarded, Guid, HttpHead};
use crate::transport::http::{HOP_BY_HOP, RESPONSE_HOP_BY_HOP};
use crate::transport::websocket::{self, WsRead, WsWrite};

/// Largest body sent inline on the control channel.
pub const INLINE_BODY: usize = 64 * 1024;

fn gone(s: &Settings, path: &str) -> Response<Body> {
    reply::json_error(
        502,
        "BadGateway",
        &format!(
            "The listener disconnected before responding. {}",
            reply::tracker(&s.host, path)
        ),
    )
}

/// Relay one HTTP request.
pub async fn relay(h: &Hybrid, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    let s = &h.settings;
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some(entity) = s.resolve(&path, &h.relay, false) else {
        return reply::json_error(
            404,
            "EndpointNotFound",
            &format!(
                "Endpoint does not exist. {}",
                reply::tracker(&s.host, &path)
            ),
        );
    };
    let (token, used_authorization) = Settings::find_token(
        TokenSource::Http,
        req.headers(),
        &query,
        entity.requires_auth,
    );
    if entity.requires_auth {
        if let Err(e) = s.authorize(token.as_deref(), &entity, Right::Send, 0) {
            info!(path = entity.path, reason = %e, "request refused");
            h.metrics.token_rejected(
                &h.entity_label(&entity.path),
                FRONTEND_HTTP,
                crate::telemetry::token_reason(&e),
            );
            return reply::json_error(
                401,
                "TokenMissingOrInvalid",
                &format!("{e}. {}", reply::tracker(&s.host, &entity.path)),
            );
        }
    }
    let mut drop: Vec<&str> = HOP_BY_HOP.to_vec();
    if used_authorization {
        drop.push("authorization");
    }
    let names = req.extensions().get::<Names>();
    let mut headers = join_headers(req.headers(), names, &drop);
    headers.insert("Via".into(), format!("1.1 {}", s.host));
    let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
    let has_body = chunked || length.is_some_and(|n| n > 0);
    let inline = !chunked
        && length.is_none_or(|n| n as usize <= INLINE_BODY)
        && header_bytes <= s.limits.max_header_bytes;
    let target = match address::filter_query(&query) {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let head = RequestHead {
        request_target: target,
        method: req.method().to_string(),
        request_headers: headers,
        remote_endpoint: RemoteEndpoint {
            address: peer.remote.ip().to_string(),
            port: peer.remote.port(),
        },
        body: has_body,
    };
    let is_head = req.method() == Method::HEAD;
    let filter = filter(req.headers());
    let mut incoming = req.into_body();
    let inline_body = if inline && has_body {
        match Limited::new(&mut incoming, INLINE_BODY).collect().await {
            Ok(b) => Some(b.to_bytes()),
            Err(_) => {
                return reply::json_error(400, "BadRequest", "The request body could not be read.")
            }
        }
    } else {
        None
    };
    let mut sent = inline_body.as_ref().map_or(0, |b| b.len() as u64);
    let caller = Caller {
        tracking: String::new(),
        suffix: entity.suffix.clone(),
        query: address::filter_query(&query),
        // Headers travel with the ask only when the request does; otherwise
        // the listener reads them on the rendezvous.
        headers: if inline {
            head.request_headers.clone()
        } else {
            Default::default()
        },
        remote: Some(peer.remote),
    };
    let ask = Ask::Http {
        caller: Box::new(caller),
        head: inline.then(|| HttpHead {
            method: head.method.clone(),
            target: head.request_target.clone(),
            body: head.body,
        }),
        body: inline_body,
    };
    let parked = h.relay.connect(&entity.path, &filter, |_| ask);
    let mut parked = match parked {
        Ok(p) => p,
        Err(e) => {
            let (code, text) = super::connect::no_listener(h, FRONTEND_HTTP, &e, &entity.path);
            info!(path = entity.path, reason = %e, side = ?e.side(), "request refused");
            return reply::json_error(
                code,
                if code == 404 {
                    "EndpointNotFound"
                } else {
                    "ServiceUnavailable"
                },
                &text,
            );
        }
    };
    let timeout = s.limits.request_timeout;
    let answer = match parked.wait(timeout).await {
        // A listener on another node answered inline there.
        Ok(a) if a.is::<Forwarded>() => match a.downcast::<Forwarded>() {
            Ok(f) => forwarded(*f),
            Err(_) => Answer::ListenerGone,
        },
        Ok(a) => a
            .downcast::<Answer>()
            .map(|a| *a)
            .unwrap_or(Answer::ListenerGone),
        Err(CoreError::Timeout) => {
            info!(path = entity.path, "request timed out");
            return reply::json_error(504, "GatewayTimeout", &format!("The request was routed to the listener but the listener did not respond in the required time. {}", reply::tracker(&s.host, &entity.path)));
        }
        Err(_) => return gone(s, &entity.path),
    };
    let idle = s.limits.response_idle_timeout;
    let (metrics, label) = (h.metrics.clone(), entity.path.clone());
    let count = move |to_listener: u64| {
        move |to_sender: u64| metrics.bytes(&label, FRONTEND_HTTP, to_listener, to_sender)
    };
    match answer {
        Answer::Response(r, body) => respond(s, r, body, is_head, idle, count(sent)),
        Answer::Rendezvous(read, write) => {
            let request = (!inline).then(|| {
                (
                    HcRequest {
                        address: String::new(),
                        id: parked.id().to_string(),
                        head: Some(head),
                    },
                    incoming,
                )
            });
            let max_text = s.limits.max_control_message;
            match over_rendezvous(read, write, request, timeout, max_text, &mut sent).await {
                Some((r, body)) => respond(s, r, body, is_head, idle, count(sent)),
                None => {
                    count(sent)(0);
                    gone(s, &entity.path)
                }
            }
        }
        Answer::ListenerGone | Answer::Accepted { .. } | Answer::Rejected(..) => {
            gone(s, &entity.path)
        }
    }
}

/// The answer a listener on another node sent inline: its `response` and
/// the body that came with it.
fn forwarded(f: Forwarded) -> Answer {
    let Ok(ListenerCommand::Response(r)) = parse_command(&f.text) else {
        return Answer::ListenerGone;
    };
    let body = r.body.then(|| {
        let (tx, rx) = mpsc::channel(2);
        if let Some(b) = f.body.filter(|b| !b.is_empty()) {
            let _ = tx.try_send(Ok(BodyPart::Data(b)));
        }
        let _ = tx.try_send(Ok(BodyPart::End));
        rx
    });
    Answer::Response(r, body)
}

/// Handle `sb-hc-action=request`: the listener's request rendezvous.
pub fn listener_rendezvous(h: &Hybrid, mut req: Request<Incoming>, query: &str) -> Response<Body> {
    let Some(claim) = address::param(query, "sb-hc-rendezvous")
        .and_then(|rid| Guid::parse(&rid))
        .and_then(|rid| h.relay.rendezvous.take(rid))
    else {
        return reply::status(
            403,
            "The rendezvous address is not valid or was already used.",
        );
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    tokio::spawn(
        async move {
            let Ok(ws) = upgrade.await else { return };
            let (read, write) = websocket::split(ws.into_inner(), usize::MAX);
            if claim
                .send(Box::new(Answer::Rendezvous(read, write.clone())))
                .is_err()
            {
                let _ =
                    websocket::send_close(&write, 1001, "The request is no longer pending").await;
            }
        }
        .in_current_span(),
    );
    response.map(|_| reply::empty())
}

/// On a request rendezvous: send the request (rendezvous form) with its body
/// streamed as one binary message, then read the `response` and stream its
/// body; the rendezvous is closed with 1000 after the last body frame.
async fn over_rendezvous(
    mut read: WsRead,
    write: WsWrite,
    request: Option<(HcRequest, Incoming)>,
    timeout: Duration,
    max_text: usize,
    sent: &mut u64,
) -> Option<(HcResponse, Option<BodyRx>)> {
    if let Some((r, mut body)) = request {
        let has_body = r.head.as_ref().is_some_and(|h| h.body);
        websocket::send_text(&write, &r.to_json()).await.ok()?;
        if has_body {
            // One binary message: the first frame Binary, the rest
            // Continuation, ended by an empty final frame.
            let mut opcode = OpCode::Binary;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.ok()?.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                *sent += data.len() as u64;
                write
                    .lock()
                    .await
                    .write_frame(Frame::new(false, opcode, None, Payload::Borrowed(&data)))
                    .await
                    .ok()?;
                opcode = OpCode::Continuation;
            }
            write
                .lock()
                .await
                .write_frame(Frame::new(true, opcode, None, Payload::Borrowed(b"")))
                .await
                .ok()?;
        }
    }
    let mut text = Vec::new();
    let response = loop {
        let frame = tokio::time::timeout(timeout, websocket::read_frame(&mut read, &write))
            .await
            .ok()?
            .ok()?;
        match frame.opcode {
            OpCode::Text | OpCode::Continuation => {
                let fin = frame.fin;
                text.extend_from_slice(&frame.data);
                if text.len() > max_text {
                    let _ = websocket::send_close(&write, 1009, "control message too large").await;
                    return None;
                }
                if fin {
                    match parse_command(&String::from_utf8_lossy(&text)) {
                        Ok(ListenerCommand::Response(r)) => break r,
                        _ => {
                            let _ = websocket::send_close(
                                &write,
                                1002,
                                "'response' command was expected.",
                            )
                            .await;
                            return None;
                        }
                    }
                }
            }
            OpCode::Binary => {
                let _ = websocket::send_close(
                    &write,
                    1002,
                    "Command messages must be MessageType=Text.",
                )
                .await;
                return None;
            }
            OpCode::Close => return None,
            OpCode::Ping | OpCode::Pong => {}
        }
    };
    if !response.body {
        let _ = websocket::send_close(&write, 1000, "NormalClosure").await;
        return Some((response, None));
    }
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(
        async move {
            loop {
                let Ok(Ok(frame)) =
                    tokio::time::timeout(timeout, websocket::read_frame(&mut read, &write)).await
                else {
                    let _ = tx
                        .send(Err(std::io::Error::other("response body stalled or broke")))
                        .await;
                    return;
                };
                match frame.opcode {
                    OpCode::Binary | OpCode::Continuation | OpCode::Text => {
                        let fin = frame.fin;
                        let data = frame.data;
                        if !data.is_empty() && tx.send(Ok(BodyPart::Data(data))).await.is_err() {
                            return;
                        }
                        if fin {
                            let _ = tx.send(Ok(BodyPart::End)).await;
                            let _ = websocket::send_close(&write, 1000, "NormalClosure").await;
                            return;
                        }
                    }
                    OpCode::Close => {
                        let _ = tx
                            .send(Err(std::io::Error::other(
                                "listener closed the response early",
                            )))
                            .await;
                        return;
                    }
                    OpCode::Ping | OpCode::Pong => {}
                }
            }
        }
        .in_current_span(),
    );
    Some((response, Some(rx)))
}

/// The HTTP response for a listener's `response` and its body stream;
/// `done` is told how many body bytes reached the client.
fn respond(
    s: &Settings,
    r: HcResponse,
    body: Option<BodyRx>,
    is_head: bool,
    idle: Duration,
    done: impl FnOnce(u64) + Send + Sync + 'static,
) -> Response<Body> {
    let body: Body = match body {
        Some(rx) if !is_head => reply::channel_body(rx, idle, done),
        _ => {
            done(0);
            reply::empty()
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status_code).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    for (name, value) in &r.response_headers {
        if RESPONSE_HOP_BY_HOP
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
            && !(is_head && name.eq_ignore_ascii_case("content-length"))
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("1.1 {}", s.host)) {
        headers.append(hyper::header::VIA, v);
    }
    if let Some(d) = r.status_description.as_deref().filter(|d| !d.is_empty()) {
        reply::set_reason(&mut resp, d);
    }
    resp
}
