//! `forward --hc`: the gateway's own Hybrid Connections client
//! (`hybrid/PROTOCOL.md` §2, §3), doing what `azbridge -R` and `-L` do for
//! TCP. `--listen` keeps a listener control channel open (driving
//! [`hybrid::listener::client`]: its token renewed with `renewToken` at
//! half-life; reconnecting with back-off) and splices
//! each accepted rendezvous to a new TCP connection to `--to`; when `--to`
//! refuses, the accept is rejected (502) so the sender hears at once.
//! `--connect` accepts local TCP clients and carries each as a sender
//! WebSocket. Bytes travel as binary messages; a TCP end of stream becomes
//! a WebSocket Close, and a Close an end of stream.
//!
//! With `--http`, `--listen` serves relayed HTTP requests (§4) from a local
//! web server instead: an inline request (its body, if any, in the binary
//! message that follows it on the control channel) or one announced for a
//! rendezvous (the request then read there, its body streamed) becomes a
//! plain HTTP/1.1 request to `--to` (`crate::forward::http`'s local call);
//! the response always goes back over the request's rendezvous, its body
//! streamed as one binary message, whatever its size.

use std::net::SocketAddr;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::Request;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use hybrid::control::{parse_relay_message, Accept, RelayMessage, Request as HcRequest, Response};
use hybrid::listener::client::{Client, ClientConfig, Ending, Event};

use super::{Backoff, Relay};
use crate::relay::Guid;
use crate::transport::stream;
use crate::transport::websocket::{self, WsRead, WsWrite};

/// Largest message taken from the gateway (its control messages are at most
/// 64 KiB; rendezvous data is passed on in pieces whatever its size).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Where a Hybrid Connection is: `http`, `https`, `ws` or `wss`, a host, a
/// port and the entity path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`https`, `wss`).
    pub tls: bool,
    /// The host.
    pub host: String,
    /// The port (default 80, or 443 with TLS).
    pub port: u16,
    /// Path and query (for an address), or the entity path (for `--listen`
    /// and `--connect`, without slashes at either end).
    pub rest: String,
}

/// Parse `http(s)://` or `ws(s)://` HOST[:PORT]/REST.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("{url}: not an http://, https://, ws:// or wss:// address"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => false,
        "https" | "wss" => true,
        _ => {
            return Err(anyhow!(
                "{url}: not an http://, https://, ws:// or wss:// address"
            ))
        }
    };
    let (authority, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("{url}: the port is not a number"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(anyhow!("{url}: no host"));
    }
    Ok(Endpoint {
        tls,
        host: host.trim_matches(['[', ']']).to_owned(),
        port,
        rest: rest.to_owned(),
    })
}

/// Runs hyper's side of a client upgrade.
struct Spawn;

impl<F> hyper::rt::Executor<F> for Spawn
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// Open a WebSocket to `at` (its `rest` is the path and query), with the
/// relay's token when `token` is set.
async fn open(relay: &Relay, at: &Endpoint, token: bool) -> anyhow::Result<(WsRead, WsWrite)> {
    let addr = format!("{}:{}", at.host, at.port);
    let tcp = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    let mut req = Request::builder()
        .method("GET")
        .uri(format!("/{}", at.rest.trim_start_matches('/')))
        .header(HOST, &addr)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    if token {
        req = req.header("ServiceBusAuthorization", relay.token());
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let upgraded = if at.tls {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(at.host.clone())?;
        let tls = relay
            .tls
            .connect(name, tcp)
            .await
            .context("TLS to the gateway")?;
        fastwebsockets::handshake::client(&Spawn, req, tls).await
    } else {
        fastwebsockets::handshake::client(&Spawn, req, tcp).await
    };
    let (ws, _) = upgraded.map_err(|e| match e {
        WebSocketError::InvalidStatusCode(code) => anyhow!("the gateway answered {code}"),
        e => anyhow!("WebSocket to {addr}: {e}"),
    })?;
    Ok(websocket::split_client(ws.into_inner(), MAX_MESSAGE))
}

/// Splice a WebSocket and a TCP connection until both ends are done.
async fn splice(ws: (WsRead, WsWrite), tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let stats = crate::relay::splice(
        websocket::leg(ws.0, ws.1),
        stream::leg(Box::new(tcp)),
        super::splice_limits(),
        std::future::pending(),
    )
    .await;
    debug!(end = %stats.end, "connection ended");
}

/// What `--hc --listen` serves.
#[derive(Clone)]
pub enum Service {
    /// Connections, spliced to this TCP service.
    Tcp(String),
    /// Relayed HTTP requests, made to this web server.
    Http(super::http::Target),
}

/// `--hc --listen`: serve the Hybrid Connection at `ep` from `service`,
/// until interrupted; prints `listening URL` each time the control channel
/// opens.
pub async fn listen(relay: Relay, ep: Endpoint, service: Service) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        if let Err(e) = control(&relay, &ep, &service, &mut backoff).await {
            warn!(error = %e, "control channel ended; reconnecting");
        }
        backoff.wait().await;
    }
}

/// One control channel: open, then drive [`Client`] until it ends: serve
/// accepts and requests, renew the token when due.
async fn control(
    relay: &Relay,
    ep: &Endpoint,
    service: &Service,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let at = Endpoint {
        rest: format!(
            "$hc/{}?sb-hc-action=listen&sb-hc-id={}",
            ep.rest,
            Guid::random()
        ),
        ..ep.clone()
    };
    let (mut read, write) = open(relay, &at, true).await?;
    backoff.reset();
    println!(
        "listening {}://{}:{}/{}",
        if ep.tls { "wss" } else { "ws" },
        ep.host,
        ep.port,
        ep.rest
    );
    info!(path = ep.rest, "listening");
    let now = || tokio::time::Instant::now().into_std();
    let config = ClientConfig {
        max_message: MAX_CONTROL_MESSAGE,
        max_inline_body: MAX_INLINE_BODY,
        renew_every: relay.renew_every(),
    };
    let mut session = Client::new(config, now());
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Accept(accept) => spawn_accept(relay, accept, service)?,
                Event::Request { request, body } => match service {
                    Service::Http(target) => spawn_request(relay, target, request, body),
                    Service::Tcp(_) => session.respond(&Response {
                        request_id: request.id,
                        status_code: 501,
                        status_description: Some(
                            "This listener forwards TCP connections, not HTTP requests".into(),
                        ),
                        response_headers: Vec::new(),
                        body: false,
                    }),
                },
                Event::RenewDue => {
                    session.renew(&relay.token());
                    debug!("token renewed");
                }
                Event::Ended(Ending::Closed { code, reason }) => {
                    return Err(anyhow!(
                        "the gateway closed the control channel: {code:?} {reason}"
                    ))
                }
                Event::Ended(e) => return Err(anyhow!("the control channel failed: {e:?}")),
            }
        }
        websocket::send_queued(&write, || session.poll_transmit()).await?;
        let due = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            frame = websocket::read_frame(&mut read, &write) => {
                let frame = frame?;
                session.frame(websocket::opcode(frame.opcode), frame.fin, frame.data);
            }
            () = sleep_until(due) => session.handle_timeout(now()),
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The largest control message taken from the gateway.
const MAX_CONTROL_MESSAGE: usize = 1 << 20;
/// The largest inline body (the gateway sends at most 64 KiB inline).
const MAX_INLINE_BODY: usize = 64 * 1024;

/// An `accept` gets its rendezvous, on its own task (or, for an HTTP
/// listener, a 501 rejection).
fn spawn_accept(relay: &Relay, accept: Accept, service: &Service) -> anyhow::Result<()> {
    let mut at = endpoint(&accept.address)?;
    let (relay, service) = (relay.clone(), service.clone());
    tokio::spawn(async move {
        let result = match &service {
            Service::Tcp(to) => accept_on(&relay, at, to).await,
            Service::Http(_) => {
                at.rest.push_str("&sb-hc-statusCode=501&sb-hc-statusDescription=This+listener+serves+HTTP+requests");
                let _ = open(&relay, &at, false).await;
                Err(anyhow!(
                    "a WebSocket sender on an HTTP listener was rejected"
                ))
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "accept failed");
        }
    });
    Ok(())
}

/// Serve a relayed HTTP request in its own task: `body` is the inline
/// body, `None` when the request is announced for a rendezvous.
fn spawn_request(
    relay: &Relay,
    target: &super::http::Target,
    request: HcRequest,
    body: Option<Bytes>,
) {
    let (relay, target) = (relay.clone(), target.clone());
    tokio::spawn(async move {
        if let Err(e) = http_request(&relay, &target, request, body).await {
            warn!(error = %e, "relayed HTTP request failed");
        }
    });
}

/// Open the request's rendezvous, read the request there if it was only
/// announced, make it to the local server and send the response back.
async fn http_request(
    relay: &Relay,
    target: &super::http::Target,
    mut request: HcRequest,
    inline_body: Option<Bytes>,
) -> anyhow::Result<()> {
    use crate::transport::http::BodyPart;
    let (mut read, write) = open(relay, &endpoint(&request.address)?, false).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    match inline_body {
        Some(body) => {
            if !body.is_empty() {
                let _ = tx.send(Ok(BodyPart::Data(body))).await;
            }
            let _ = tx.send(Ok(BodyPart::End)).await;
        }
        None => {
            // The full request comes first on the rendezvous, then its body.
            let frame = websocket::read_frame(&mut read, &write).await?;
            let text = String::from_utf8_lossy(&frame.data);
            request = match parse_relay_message(&text).context("a request")? {
                RelayMessage::Request(r) if r.head.is_some() => r,
                _ => return Err(anyhow!("no request on the rendezvous")),
            };
            if request.head.as_ref().is_some_and(|h| h.body) {
                let write = write.clone();
                tokio::spawn(async move {
                    loop {
                        match websocket::read_frame(&mut read, &write).await {
                            Ok(f) if matches!(f.opcode, OpCode::Binary | OpCode::Continuation) => {
                                let fin = f.fin;
                                if tx.send(Ok(BodyPart::Data(f.data))).await.is_err() {
                                    return;
                                }
                                if fin {
                                    let _ = tx.send(Ok(BodyPart::End)).await;
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                });
            } else {
                let _ = tx.send(Ok(BodyPart::End)).await;
            }
        }
    }
    let head = request
        .head
        .ok_or_else(|| anyhow!("a request without its head"))?;
    let (id, method, request_target) = (request.id, head.method, head.request_target);
    let headers: Vec<(String, String)> = head.request_headers.into_iter().collect();
    let path = super::http::local_path(&relay.path, &request_target, target.base());
    let answer = super::http::local_call(target, &method, path, &headers, rx).await;
    let (status, reason, headers, body) = match answer {
        Ok(a) => (a.status, a.reason, a.headers, Some(a.body)),
        Err(e) => (
            502,
            Some(format!("the local server failed: {e}")),
            Vec::new(),
            None,
        ),
    };
    let response = Response {
        request_id: id,
        status_code: status,
        status_description: reason,
        response_headers: headers
            .into_iter()
            .filter(|(n, _)| n != "content-length")
            .collect(),
        body: true,
    };
    websocket::send_text(&write, &response.to_json()).await?;
    // The body as one binary message: its pieces, then an empty final frame.
    let mut opcode = OpCode::Binary;
    if let Some(mut body) = body {
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let piece = fastwebsockets::Frame::new(
                false,
                opcode,
                None,
                fastwebsockets::Payload::Borrowed(&data),
            );
            write.lock().await.write_frame(piece).await?;
            opcode = OpCode::Continuation;
        }
    }
    let last =
        fastwebsockets::Frame::new(true, opcode, None, fastwebsockets::Payload::Borrowed(b""));
    write.lock().await.write_frame(last).await?;
    websocket::send_close(&write, 1000, "").await?;
    Ok(())
}

/// Connect to the local service, then open the rendezvous and splice; when
/// the service refuses, reject the accept (502).
async fn accept_on(relay: &Relay, mut at: Endpoint, to: &str) -> anyhow::Result<()> {
    match TcpStream::connect(to).await {
        Ok(tcp) => {
            let ws = open(relay, &at, false).await?;
            splice(ws, tcp).await;
            Ok(())
        }
        Err(e) => {
            let why: String = format!("the service at {to} refused: {e}")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '+' })
                .collect();
            at.rest.push_str(&format!(
                "&sb-hc-statusCode=502&sb-hc-statusDescription={why}"
            ));
            // The gateway answers a rejection with 410, not an upgrade.
            let _ = open(relay, &at, false).await;
            Err(anyhow!("{to}: {e}; the connection was rejected"))
        }
    }
}

/// `--hc --connect`: accept local TCP clients on `local` and carry each to
/// the Hybrid Connection at `ep` as a sender; prints `ready ADDR`.
pub async fn connect(relay: Relay, ep: Endpoint, local: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(local)
        .await
        .with_context(|| format!("binding --local {local}"))?;
    println!("ready {}", listener.local_addr()?);
    info!(
        path = ep.rest,
        "forwarding local clients to the hybrid connection"
    );
    loop {
        let (client, peer) = listener.accept().await?;
        let (relay, at) = (
            relay.clone(),
            Endpoint {
                rest: format!("$hc/{}?sb-hc-action=connect", ep.rest),
                ..ep.clone()
            },
        );
        tokio::spawn(async move {
            match open(&relay, &at, true).await {
                Ok(ws) => splice(ws, client).await,
                Err(e) => warn!(%peer, error = %e, "connect failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_every_scheme() {
        let e = endpoint("https://ns.example/a/b").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.rest.as_str()),
            (true, "ns.example", 443, "a/b")
        );
        let e = endpoint("ws://127.0.0.1:9080/$hc/x?sb-hc-action=accept").unwrap();
        assert_eq!(
            (e.tls, e.port, e.rest.as_str()),
            (false, 9080, "$hc/x?sb-hc-action=accept")
        );
        let e = endpoint("WSS://[::1]:9443/p").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port), (true, "::1", 9443));
        assert_eq!(endpoint("http://h/p").unwrap().port, 80);
        for bad in ["sb://h/p", "h/p", "http://:80/p", "http://h:x/p"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }
}
