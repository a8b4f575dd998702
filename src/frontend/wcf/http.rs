//! WCF HTTP relays (`wcf/PROTOCOL.md` §9, §11.3): plain HTTP(S) requests
//! on the `http`/`https` endpoints for a path served by `RelayedHttp`
//! listeners (WebHttpRelayBinding, BasicHttpRelayBinding,
//! WS2007HttpRelayBinding). Each request gets its own rendezvous: a notice
//! to one listener (balanced), the listener's dial-back, and then the
//! gateway is the .NET Message Framing client on that stream:
//! singleton-unsized msbin1, the request as one unsized envelope
//! ([`wcf::web`]), End, and the reply read back into an HTTP response.
//!
//! The gateway enforces what the listener's attach asked for (HTTPS, a Send
//! token from `ServiceBusAuthorization` or a SAS `Authorization`) and never
//! passes the token on. Bodies stream both ways except `Xml` and SOAP 1.1
//! bodies, held whole up to `max_buffered_http_body` to be re-encoded.
//!
//! Named behaviour `inject-soap11-action` (§11.3 "BasicHttp caveat",
//! unverified on .NET Framework): a SOAP 1.1 request (`text/xml` with a
//! `SOAPAction`) gets the action as an `Action` header of the
//! `AddressingVersion.None` namespace inside its envelope, because the SDK
//! listener dispatched nothing without it. On by default; a configured
//! relay turns it off with `inject_soap11_action = false`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming as HttpBody;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, Instrument};
use wcf::framing::{Mode, Record};
use wcf::relay::{any_type_reply, ACTION_RELAYED_ACCEPT_REPLY};
use wcf::web::{self, BodyFormat, BodyWriter, Event, Incoming, ReplyHead, RequestHead, Unframe};

use super::entity::{Entity, Kind};
use super::Wcf;
use crate::config::Right;
use crate::frontend::hybrid::reply::{self, Body, BodyPart, BodyRx, BodyTx};
use crate::frontend::hybrid::{request_host, Peer};
use crate::relay::CoreError;
use crate::transport::http::{HOP_BY_HOP, RESPONSE_HOP_BY_HOP};
use crate::transport::stream::BoxIo;

/// The `frontend` label of HTTP relay requests.
pub const FRONTEND_HTTP: &str = "wcf_http";

/// Largest piece of a streamed body written as one NMF chunk.
const CHUNK: usize = 64 * 1024;

/// The HTTP relay `path` reaches, if any (see [`super::entity::Settings::resolve_http`]).
pub fn resolve(wcf: &Wcf, path: &str) -> Option<(Entity, Option<Kind>)> {
    wcf.settings.resolve_http(path, &wcf.relay)
}

/// Serve one HTTP request for an HTTP relay.
pub async fn handle(
    wcf: &Wcf,
    req: Request<HttpBody>,
    peer: Peer,
    entity: Entity,
    kind: Option<Kind>,
) -> Response<Body> {
    crate::telemetry::record_entity(&entity.path);
    let label = wcf.entity_label(&entity.path);
    let r = relay(wcf, req, peer, &entity, kind, &label).await;
    wcf.metrics
        .sender(&label, FRONTEND_HTTP, r.status().as_u16());
    r
}

fn refuse(code: u16, text: &str) -> Response<Body> {
    reply::status(code, text)
}

/// The SAS token of a request: `ServiceBusAuthorization`, else an
/// `Authorization` holding a SAS token; and whether it was `Authorization`.
fn token(req: &Request<HttpBody>) -> (Option<String>, bool) {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match header("ServiceBusAuthorization") {
        Some(t) => (Some(t), false),
        None => match header("Authorization").filter(|a| a.starts_with("SharedAccessSignature ")) {
            Some(t) => (Some(t), true),
            None => (None, false),
        },
    }
}

/// The request head: the method, the URL the client used (without a port),
/// and the headers it may pass on (no hop-by-hop headers, no token, repeated
/// headers joined with ", ", names that are not XML names left out).
fn request_head(req: &Request<HttpBody>, peer: Peer, format: BodyFormat, sas: bool) -> RequestHead {
    // The address names the host without a port: an SDK listener matches
    // it against its base address, which never has one.
    let host = request_host(req).unwrap_or_else(|| peer.local.ip().to_string());
    let host = match host.rsplit_once(':') {
        Some((h, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h.to_owned()
        }
        _ => host,
    };
    let scheme = if peer.tls { "https" } else { "http" };
    let path_query = req
        .uri()
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let mut headers: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || (sas && n == "authorization") {
            continue;
        }
        let name = web::title_case(n);
        if !web::is_xml_name(&name) {
            debug!(
                header = n,
                "header not carried: its name is not an XML name"
            );
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.iter_mut().find(|(h, _)| *h == name) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    RequestHead {
        method: req.method().as_str().to_owned(),
        address: format!("{scheme}://{host}{path_query}"),
        headers,
        format,
        message_id: format!("urn:uuid:{}", crate::relay::Guid::random()),
    }
}

/// What follows the head: body records ready to send (and the writer that
/// closes them), or a body to stream.
enum Upload {
    Records(Vec<u8>, BodyWriter),
    Stream(HttpBody, BodyWriter),
}

async fn relay(
    wcf: &Wcf,
    req: Request<HttpBody>,
    peer: Peer,
    entity: &Entity,
    kind: Option<Kind>,
    label: &str,
) -> Response<Body> {
    let s = &wcf.settings;
    let Some(kind) = kind else {
        info!(path = %entity.path, "HTTP relay request refused: no listener");
        return refuse(
            404,
            &format!(
                "No service is listening at this address. {}",
                reply::tracker(&s.host, &entity.path)
            ),
        );
    };
    if kind.transport_security && !peer.tls {
        return refuse(403, "This relay requires HTTPS.");
    }
    let (token, sas) = token(&req);
    if entity.requires_auth.unwrap_or(kind.client_auth) {
        if let Err(e) = s.authorize(token.as_deref(), entity, Right::Send, 0) {
            info!(path = %entity.path, reason = %e, "HTTP relay request refused");
            wcf.metrics
                .token_rejected(label, FRONTEND_HTTP, crate::telemetry::token_reason(&e));
            return refuse(
                crate::frontend::hybrid::entity::token_status(&e),
                &format!("{e}. {}", reply::tracker(&s.host, &entity.path)),
            );
        }
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let soap_action = header("soapaction").map(str::to_owned);
    let format = BodyFormat::for_request(header("content-type"), soap_action.is_some());
    let head = request_head(&req, peer, format, sas);
    let is_head = req.method() == Method::HEAD;
    let max = s.limits.max_buffered_http_body;
    let body = req.into_body();
    let upload = match format {
        BodyFormat::Xml | BodyFormat::WrappedSoap11 => {
            let whole = match Limited::new(body, max).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return refuse(413, &format!("The body is larger than {max} bytes."))
                }
                Err(e) => return refuse(400, &format!("The request body failed: {e}")),
            };
            let inject = s
                .entities
                .iter()
                .find(|e| e.path.trim_matches('/').eq_ignore_ascii_case(&entity.path))
                .is_none_or(|e| e.inject_soap11_action);
            let action = soap_action.as_deref().filter(|_| inject);
            match buffered_body(format, &whole, action) {
                Ok((records, writer)) => Upload::Records(records, writer),
                Err(e) => return refuse(400, &e.to_string()),
            }
        }
        _ => Upload::Stream(body, BodyWriter::new(format)),
    };
    let started = Instant::now();
    let conn = match wcf.dial_back(&entity.path, &kind).await {
        Ok(c) => c,
        Err(e) => return core_refusal(wcf, label, &entity.path, &e),
    };
    wcf.metrics
        .rendezvous(label, FRONTEND_HTTP, started.elapsed().as_secs_f64());
    let timeout = s.limits.request_timeout;
    let exchange = Exchange {
        via: format!("sb://{}/{}/", s.host, entity.path),
        head,
        upload,
        max_head: s.limits.max_header_bytes.max(64 * 1024),
        max_buffered: max,
        idle: s.limits.response_idle_timeout,
        metrics: wcf.metrics.clone(),
        label: label.to_owned(),
    };
    match tokio::time::timeout(timeout, exchange.start(conn)).await {
        Ok(Ok((reply, rx))) => respond(reply, rx, is_head, s.limits.response_idle_timeout),
        Ok(Err(e)) => {
            info!(path = %entity.path, reason = %e, "HTTP relay exchange failed");
            refuse(502, &format!("The listener failed the request: {e}"))
        }
        Err(_) => {
            info!(path = %entity.path, "HTTP relay listener did not answer in time");
            refuse(504, "The listener did not answer in time.")
        }
    }
}

fn core_refusal(wcf: &Wcf, label: &str, path: &str, e: &CoreError) -> Response<Body> {
    info!(path, reason = %e, "HTTP relay rendezvous failed");
    match e {
        CoreError::NoListener | CoreError::NoListenerMatches => {
            refuse(404, "No service is listening at this address.")
        }
        CoreError::Timeout => refuse(504, "The listener did not accept the request in time."),
        CoreError::ListenerGone => refuse(502, "The listener went away."),
        CoreError::RendezvousFull(_) | CoreError::ListenerBusy | CoreError::ListenerQuota(_) => {
            wcf.metrics
                .limit_hit(label, FRONTEND_HTTP, e.limit().unwrap_or_default());
            refuse(
                503,
                &format!("The relay has too many pending requests: {e}."),
            )
        }
        CoreError::UnknownRendezvous => refuse(500, &e.to_string()),
    }
}

/// The records of a body held whole: XML re-encoded, SOAP 1.1 with its
/// action injected (see the module docs).
fn buffered_body(
    format: BodyFormat,
    body: &[u8],
    soap_action: Option<&str>,
) -> Result<(Vec<u8>, BodyWriter), BodyError> {
    let mut out = Vec::new();
    let mut w = BodyWriter::new(format);
    if body.is_empty() {
        return Ok((out, w));
    }
    if format == BodyFormat::Xml {
        let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
        let records = web::xml_body(text).map_err(BodyError::NotWellFormed)?;
        return Ok((records, w));
    }
    let text = String::from_utf8_lossy(body);
    match soap_action.and_then(|a| web::inject_soap11_action(&text, a)) {
        Some(t) => w.data(t.as_bytes(), &mut out),
        None => w.data(body, &mut out),
    }
    Ok((out, w))
}

/// Why a request's body cannot go to a listener as it is.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("The XML body is not UTF-8.")]
    NotUtf8,
    #[error("The XML body is not well-formed: {0}")]
    NotWellFormed(#[source] wcf::Error),
}

/// Why an exchange with a listener failed (cloned to both the head's
/// waiter and the reply reader).
#[derive(Debug, Clone, thiserror::Error)]
enum ExchangeError {
    #[error("the dial-back broke: {0}")]
    DialBack(#[source] Arc<std::io::Error>),
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    #[error("the listener closed after the preamble")]
    ClosedAfterPreamble,
    #[error("the listener refused the preamble with a framing fault")]
    PreambleFault,
    #[error("the listener did not acknowledge the preamble")]
    NoPreambleAck,
    #[error(transparent)]
    Reply(#[from] wcf::Error),
    #[error("the listener's reply ended before its head")]
    NoHead,
    #[error("the listener closed mid-reply")]
    ClosedMidReply,
    #[error("the listener went quiet mid-reply")]
    Quiet,
}

impl From<std::io::Error> for ExchangeError {
    fn from(e: std::io::Error) -> Self {
        ExchangeError::Io(Arc::new(e))
    }
}

/// One request's NMF exchange on a listener's dial-back.
struct Exchange {
    /// How long the listener may stay silent mid-reply.
    idle: Duration,
    /// Where the bytes each way are counted, and under which entity label.
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    label: String,
    via: String,
    head: RequestHead,
    upload: Upload,
    max_head: usize,
    max_buffered: usize,
}

impl Exchange {
    /// Reply to the dial-back, run the preamble, start the upload and the
    /// reply reader; returns the reply head and its body's channel.
    async fn start(
        self,
        mut conn: crate::transport::stream::Conn,
    ) -> Result<(ReplyHead, BodyRx), ExchangeError> {
        let accept_reply = any_type_reply(ACTION_RELAYED_ACCEPT_REPLY).to_msbin1();
        conn.write_message(&accept_reply)
            .await
            .map_err(|e| ExchangeError::DialBack(Arc::new(e)))?;
        let io = conn.into_io();
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut pre = Vec::new();
        for r in Record::preamble(Mode::SingletonUnsized, &self.via, web::ENCODING_MSBIN1) {
            r.encode(&mut pre);
        }
        Record::PreambleEnd.encode(&mut pre);
        wr.write_all(&pre).await?;
        wr.flush().await?;
        let mut buf = BytesMut::with_capacity(CHUNK);
        while buf.is_empty() {
            if rd.read_buf(&mut buf).await? == 0 {
                return Err(ExchangeError::ClosedAfterPreamble);
            }
        }
        match buf.first() {
            Some(0x0B) => {
                let _ = buf.split_to(1);
            }
            Some(0x08) => return Err(ExchangeError::PreambleFault),
            _ => return Err(ExchangeError::NoPreambleAck),
        }
        let mut first = web::open_envelope(&self.head.to_envelope())?;
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        let upload = tokio::spawn(
            upload(wr, std::mem::take(&mut first), self.upload, sent.clone()).in_current_span(),
        );
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(8);
        let limits = wcf::Limits::DEFAULT.with_max_message(self.max_buffered);
        let incoming = Incoming::new(limits, self.max_head);
        tokio::spawn(
            async move {
                let mut received = 0;
                let r = read_reply(
                    rd,
                    buf,
                    incoming,
                    head_tx,
                    &body_tx,
                    self.idle,
                    &mut received,
                )
                .await;
                upload.abort();
                self.metrics.bytes(
                    &self.label,
                    FRONTEND_HTTP,
                    sent.load(Ordering::Relaxed),
                    received,
                );
                let end = match r {
                    Ok(()) => Ok(BodyPart::End),
                    Err(e) => {
                        debug!(reason = %e, "HTTP relay reply ended with an error");
                        Err(std::io::Error::other(e))
                    }
                };
                let _ = body_tx.send(end).await;
            }
            .in_current_span(),
        );
        let head = head_rx.await.map_err(|_| ExchangeError::NoHead)??;
        Ok((head, body_rx))
    }
}

/// Write the request: UnsizedEnvelope start, the head, the body (records or
/// streamed), the closing records, the empty chunk and End.
async fn upload(
    mut wr: WriteHalf<BoxIo>,
    head: Vec<u8>,
    body: Upload,
    sent: std::sync::Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut out = vec![0x05];
    web::chunk(&head, &mut out);
    let writer = match body {
        Upload::Records(records, writer) => {
            sent.fetch_add(records.len() as u64, Ordering::Relaxed);
            web::chunk(&records, &mut out);
            writer
        }
        Upload::Stream(mut body, mut writer) => {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                for piece in data.chunks(CHUNK) {
                    writer.data_chunk(piece, &mut out);
                    write(&mut wr, &out).await?;
                    out.clear();
                }
            }
            writer
        }
    };
    writer.finish_framed(&mut out);
    write(&mut wr, &out).await
}

async fn write(wr: &mut WriteHalf<BoxIo>, data: &[u8]) -> std::io::Result<()> {
    wr.write_all(data).await?;
    wr.flush().await
}

type HeadTx = Option<oneshot::Sender<Result<ReplyHead, ExchangeError>>>;

/// A wrapped reply without a status, held until its body shows whether it
/// is a SOAP fault (500) or not (200).
type Pending = Option<(ReplyHead, Vec<u8>)>;

/// Read the listener's reply: its head to `head_tx`, its body to `body_tx`.
async fn read_reply(
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
    mut incoming: Incoming,
    head_tx: oneshot::Sender<Result<ReplyHead, ExchangeError>>,
    body_tx: &BodyTx,
    idle: Duration,
    received: &mut u64,
) -> Result<(), ExchangeError> {
    let mut unframe = Unframe::default();
    let mut head_tx = Some(head_tx);
    let fail = |head_tx: &mut HeadTx, e: ExchangeError| {
        if let Some(tx) = head_tx.take() {
            let _ = tx.send(Err(e.clone()));
        }
        e
    };
    let mut pending: Pending = None;
    loop {
        let before = buf.len();
        let framed = unframe
            .take(&mut buf, &mut incoming)
            .map_err(|e| fail(&mut head_tx, e.into()))?;
        while let Some(event) = incoming.next().map_err(|e| fail(&mut head_tx, e.into()))? {
            match event {
                Event::Head(env) => {
                    let head =
                        ReplyHead::from_envelope(&env).map_err(|e| fail(&mut head_tx, e.into()))?;
                    if head.status.is_none() && head.format.is_some_and(BodyFormat::wrapped) {
                        pending = Some((head, Vec::new()));
                    } else if let Some(tx) = head_tx.take() {
                        let _ = tx.send(Ok(head));
                    }
                }
                Event::Data(d) => {
                    *received += d.len() as u64;
                    let decided = match pending.as_mut() {
                        Some((_, held)) => {
                            held.extend_from_slice(&d);
                            web::is_soap_fault(held).or((held.len() > CHUNK).then_some(false))
                        }
                        None => {
                            if body_tx.send(Ok(BodyPart::Data(d))).await.is_err() {
                                return Ok(());
                            }
                            None
                        }
                    };
                    if let Some(fault) = decided {
                        release(&mut head_tx, &mut pending, fault, body_tx).await;
                    }
                }
                Event::End => {
                    let fault = pending
                        .as_ref()
                        .is_some_and(|(_, h)| web::is_soap_fault(h) == Some(true));
                    release(&mut head_tx, &mut pending, fault, body_tx).await;
                    return Ok(());
                }
            }
        }
        if framed && incoming.is_done() {
            return Ok(());
        }
        if buf.len() == before || buf.is_empty() {
            buf.reserve(CHUNK);
            // Nobody waits for the reply any more: the client went away.
            if body_tx.is_closed() {
                return Ok(());
            }
            match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return Err(fail(&mut head_tx, ExchangeError::ClosedMidReply)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(fail(&mut head_tx, e.into())),
                Err(_) => return Err(fail(&mut head_tx, ExchangeError::Quiet)),
            }
        }
    }
}

/// Send a held wrapped reply's head (500 for a fault) and what was held.
async fn release(head_tx: &mut HeadTx, pending: &mut Pending, fault: bool, body_tx: &BodyTx) {
    let Some((mut head, held)) = pending.take() else {
        return;
    };
    if fault {
        head.status = Some(500);
    }
    if let Some(tx) = head_tx.take() {
        let _ = tx.send(Ok(head));
    }
    if !held.is_empty() {
        let _ = body_tx.send(Ok(BodyPart::Data(Bytes::from(held)))).await;
    }
}

/// The HTTP response for a reply head and its body.
fn respond(head: ReplyHead, rx: BodyRx, is_head: bool, idle: Duration) -> Response<Body> {
    let body = if is_head {
        reply::empty()
    } else {
        // The exchange counts its bytes itself.
        reply::channel_body(rx, idle, |_| {})
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(head.status.unwrap_or(200))
        .unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if RESPONSE_HOP_BY_HOP.contains(&lower.as_str()) && !(is_head && lower == "content-length")
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
    let default_type = match head.format {
        Some(BodyFormat::WrappedSoap11) => Some("text/xml; charset=utf-8"),
        Some(BodyFormat::WrappedSoap12) => Some("application/soap+xml; charset=utf-8"),
        _ => None,
    };
    if let Some(t) = default_type.filter(|_| !headers.contains_key(hyper::header::CONTENT_TYPE)) {
        headers.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    if let Some(r) = &head.reason {
        reply::set_reason(&mut resp, r);
    }
    resp
}
