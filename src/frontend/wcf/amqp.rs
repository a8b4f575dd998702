//! The AMQP 1.0 listener control channel (`wcf/PROTOCOL.md` §2.1, §2.2,
//! §6.2, §8, §11.2, §11.5): SASL EXTERNAL or ANONYMOUS (authorization comes
//! from the token on the attach), `open` with a 60 s idle time-out and
//! heartbeats at half the peer's, sessions, the `:out`/`:in` attach pair
//! validated and registered with the core, notices delivered on `:in` as
//! link credit allows, token renewal through flow properties, and refusals
//! with the conditions the SDK maps (relay-not-found, auth-failed,
//! address-already-in-use, resource-limit-exceeded for the listener cap).
//! Every frame is written with one write, so that over WebSocket each frame
//! is its own message.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wcf::amqp::frame::{self, Body, Header, Sasl, AMQP_HEADER, HEARTBEAT, SASL_HEADER};
use wcf::amqp::listener::{
    self as props, answer_attach, flow_token, Half, ListenerAttach, ADDRESS_IN_USE, AUTH_FAILED,
    DECODE_ERROR, NOT_ALLOWED, RELAY_NOT_FOUND, RESOURCE_LIMIT,
};
use wcf::amqp::serde_amqp::primitives::{Array, Symbol};
use wcf::amqp::types::definitions::{Error as AmqpError, Handle};
use wcf::amqp::types::performatives::{
    Attach, Begin, ChannelMax, Close, Detach, End, Flow, MaxFrameSize, Open, Performative, Transfer,
};
use wcf::amqp::types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use wcf::relay::{Notice, OnewaySend};

use super::entity::{split_address, Entity, Kind, Refused};
use super::{Wcf, FRONTEND_AMQP};
use crate::config::Right;
use crate::frontend::bridge;
use crate::relay::elsewhere::Elsewhere;
use crate::relay::ListenerGuard;
use crate::relay::{Ask, CoreError, ListenerInfo, Origin, Request};
use crate::transport::stream::BoxIo;

/// The idle time-out the gateway advertises; the SDK refuses less (§11.2).
pub const IDLE_TIMEOUT_MS: u32 = 60_000;
/// Largest frame the gateway accepts.
pub const MAX_FRAME: u32 = 65_536;
/// Heartbeat interval when the peer advertises no idle time-out (§8).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Link credit the gateway grants on `:out` (the SDK never sends on it).
const CHANNEL_MAX: u16 = 255;
/// Session windows the gateway advertises.
const WINDOW: u32 = 5000;

/// Why a connection ends early.
#[derive(Debug)]
enum Stop {
    Io(io::Error),
    /// Close the connection with this error.
    Close(AmqpError),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

fn protocol(what: impl std::fmt::Display) -> Stop {
    Stop::Close(props::error(DECODE_ERROR, &what.to_string()))
}

/// One attached link.
struct Link {
    half: Half,
    entity: Entity,
    via: String,
    expiry: u64,
    /// For `:in`: the core's queue of requests for this listener.
    queue: Option<(ListenerGuard, mpsc::Receiver<Request>)>,
    credit: u32,
    delivery_count: u32,
    _active: Option<crate::telemetry::Active>,
}

struct Session {
    next_outgoing_id: u32,
    remote_incoming_window: u32,
    next_delivery_id: u32,
    links: HashMap<u32, Link>,
    /// Handles the gateway detached; the peer's detach answers, unanswered.
    closing: HashSet<u32>,
}

/// The connection's writer and the facts notices need.
struct Out {
    wr: WriteHalf<BoxIo>,
    max_frame: u32,
    /// Transfers gathered for one write; `None` where every frame must be
    /// its own write (WebSocket, §11.5).
    batch: Option<Vec<u8>>,
}

impl Out {
    /// Queue a frame for the next [`Out::flush_batch`], or send it now when
    /// frames are not batched.
    async fn queue(
        &mut self,
        channel: u16,
        perf: Performative,
        payload: &[u8],
    ) -> Result<(), Stop> {
        match self.batch.as_mut() {
            Some(batch) => {
                batch.extend_from_slice(&frame::encode(channel, &perf, payload).map_err(protocol)?);
                Ok(())
            }
            None => self.send(channel, perf, payload).await,
        }
    }

    /// Write the queued frames at once.
    async fn flush_batch(&mut self) -> Result<(), Stop> {
        if let Some(batch) = self.batch.as_mut().filter(|b| !b.is_empty()) {
            let bytes = std::mem::take(batch);
            self.wr.write_all(&bytes).await?;
            self.wr.flush().await?;
        }
        Ok(())
    }

    async fn send(&mut self, channel: u16, perf: Performative, payload: &[u8]) -> Result<(), Stop> {
        let bytes = frame::encode(channel, &perf, payload).map_err(protocol)?;
        self.wr.write_all(&bytes).await?;
        self.wr.flush().await?;
        Ok(())
    }

    async fn close(&mut self, error: Option<AmqpError>) {
        let _ = self
            .send(0, Performative::Close(Close { error }), &[])
            .await;
        let _ = self.wr.shutdown().await;
    }
}

/// Read buffer and the half it fills.
struct In {
    rd: ReadHalf<BoxIo>,
    buf: BytesMut,
    /// The largest frame accepted: 512 bytes until `open` has been
    /// exchanged (AMQP part 2.4.1), then what the gateway advertised.
    max_frame: u32,
}

impl In {
    async fn header(&mut self) -> Result<Header, Stop> {
        while self.buf.len() < 8 {
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let mut h = [0u8; 8];
        self.buf.copy_to_slice(&mut h);
        frame::header(&h).map_err(protocol)
    }

    /// The next whole frame in the buffer, if any.
    fn frame(&mut self) -> Result<Option<frame::Frame>, Stop> {
        match frame::decode(&self.buf, self.max_frame).map_err(protocol)? {
            Some((f, n)) => {
                self.buf.advance(n);
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    async fn next_frame(&mut self) -> Result<frame::Frame, Stop> {
        loop {
            if let Some(f) = self.frame()? {
                return Ok(f);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// Most deliveries gathered into one write.
const BATCH: usize = 64;

/// Serve one control-channel connection (after TLS, or inside a WebSocket);
/// `frame_per_write` keeps every frame its own write (WebSocket).
pub async fn serve(wcf: Wcf, io: BoxIo, local: SocketAddr, frame_per_write: bool) {
    let (rd, wr) = tokio::io::split(io);
    let mut input = In {
        rd,
        buf: BytesMut::with_capacity(8192),
        max_frame: frame::MIN_MAX_FRAME_SIZE,
    };
    let mut out = Out {
        wr,
        max_frame: MAX_FRAME,
        batch: (!frame_per_write).then(Vec::new),
    };
    let handshake = wcf.settings.limits.handshake_timeout;
    let opened = tokio::time::timeout(handshake, open(&mut input, &mut out)).await;
    let remote_idle = match opened {
        Ok(Ok(idle)) => idle,
        Ok(Err(Stop::Close(e))) => {
            info!(reason = ?e.description, "AMQP connection refused");
            out.close(Some(e)).await;
            return;
        }
        Ok(Err(Stop::Io(e))) => {
            debug!(error = %e, "AMQP connection ended during the handshake");
            return;
        }
        Err(_) => {
            debug!("AMQP handshake timed out");
            return;
        }
    };
    let mut conn = Connection {
        wcf,
        named: false,
        local_ip: match local.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::LOCALHOST),
        },
        sessions: HashMap::new(),
        elsewhere: Elsewhere::default(),
    };
    let ended = conn.run(&mut input, &mut out, remote_idle).await;
    // Clients on other nodes still waiting for this listener hear it now.
    let wait = conn.wcf.settings.limits.accept_timeout;
    conn.elsewhere.listener_gone(&conn.wcf.relay, wait);
    match ended {
        Ok(()) => debug!("AMQP connection closed by the listener"),
        Err(Stop::Close(e)) => {
            info!(condition = %props::condition(&e), reason = ?e.description, "closing AMQP connection");
            out.close(Some(e)).await;
        }
        Err(Stop::Io(e)) => debug!(error = %e, "AMQP connection broke"),
    }
}

/// SASL (optional) and `open`; returns the peer's idle time-out.
async fn open(input: &mut In, out: &mut Out) -> Result<Option<u32>, Stop> {
    let mut header = input.header().await;
    if let Ok(Header::Sasl) = header {
        out.wr.write_all(&SASL_HEADER).await?;
        let mechanisms = SaslMechanisms {
            sasl_server_mechanisms: Array(vec![
                Symbol::from("EXTERNAL"),
                Symbol::from("ANONYMOUS"),
            ]),
        };
        out.wr
            .write_all(&frame::encode_sasl(&Sasl::Mechanisms(mechanisms)).map_err(protocol)?)
            .await?;
        let init = match input.next_frame().await?.body {
            Body::Sasl(Sasl::Init(init)) => init,
            _ => return Err(protocol("expected sasl-init")),
        };
        let ok = matches!(init.mechanism.0.as_str(), "EXTERNAL" | "ANONYMOUS");
        let outcome = SaslOutcome {
            code: if ok { SaslCode::Ok } else { SaslCode::Auth },
            additional_data: None,
        };
        out.wr
            .write_all(&frame::encode_sasl(&Sasl::Outcome(outcome)).map_err(protocol)?)
            .await?;
        if !ok {
            return Err(Stop::Io(io::Error::other(format!(
                "unsupported SASL mechanism {}",
                init.mechanism.0
            ))));
        }
        header = input.header().await;
    }
    match header {
        Ok(Header::Amqp) => out.wr.write_all(&AMQP_HEADER).await?,
        _ => {
            // Part 2.2: answer with the header we support, then close.
            out.wr.write_all(&SASL_HEADER).await?;
            return Err(Stop::Io(io::Error::other("unsupported protocol header")));
        }
    }
    let f = input.next_frame().await?;
    let Body::Amqp(perf, _) = f.body else {
        return Err(protocol("expected open"));
    };
    let Performative::Open(peer) = *perf else {
        return Err(protocol("expected open"));
    };
    input.max_frame = MAX_FRAME;
    out.max_frame = peer
        .max_frame_size
        .0
        .clamp(frame::MIN_MAX_FRAME_SIZE, MAX_FRAME);
    debug!(container = %peer.container_id, hostname = ?peer.hostname, "AMQP open");
    let ours = Open {
        container_id: "relay-gateway".into(),
        hostname: None,
        max_frame_size: MaxFrameSize(MAX_FRAME),
        channel_max: ChannelMax(CHANNEL_MAX),
        idle_time_out: Some(IDLE_TIMEOUT_MS),
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    };
    out.send(0, Performative::Open(ours), &[]).await?;
    Ok(peer.idle_time_out.filter(|t| *t > 0))
}

enum Event {
    Read(io::Result<usize>),
    Tick,
    Deliver(u16, u32, Option<Request>),
    Stop,
}

struct Connection {
    wcf: Wcf,
    /// Whether the log span already names the entity.
    named: bool,
    local_ip: Ipv4Addr,
    sessions: HashMap<u16, Session>,
    /// Clients on other nodes this listener was asked to serve.
    elsewhere: Elsewhere,
}

/// Poll the queues of links that have credit (and session window) for the
/// next request; links without credit are not polled, so their requests
/// stay in the core, which then sees the listener as busy.
fn poll_queues(
    sessions: &mut HashMap<u16, Session>,
    cx: &mut std::task::Context<'_>,
) -> Poll<(u16, u32, Option<Request>)> {
    for (ch, s) in sessions.iter_mut() {
        if s.remote_incoming_window == 0 {
            continue;
        }
        for (h, l) in s.links.iter_mut() {
            let Some((_, rx)) = l.queue.as_mut().filter(|_| l.credit > 0) else {
                continue;
            };
            if let Poll::Ready(r) = rx.poll_recv(cx) {
                return Poll::Ready((*ch, *h, r));
            }
        }
    }
    Poll::Pending
}

impl Connection {
    async fn run(
        &mut self,
        input: &mut In,
        out: &mut Out,
        remote_idle: Option<u32>,
    ) -> Result<(), Stop> {
        let beat = remote_idle.map_or(DEFAULT_HEARTBEAT, |t| {
            Duration::from_millis(u64::from(t / 2).max(500))
        });
        let beat = beat.min(DEFAULT_HEARTBEAT);
        // Token expiry is checked every second; heartbeats go out per `beat`.
        let mut ticker = tokio::time::interval(Duration::from_secs(1).min(beat));
        let silence = Duration::from_millis(u64::from(IDLE_TIMEOUT_MS) * 2);
        let mut last_read = Instant::now();
        let mut last_beat = Instant::now();
        // A connection with no attached link has not authenticated: it may
        // stay so for the handshake time-out, whatever heartbeats it sends.
        let handshake = self.wcf.settings.limits.handshake_timeout;
        let mut unattached_since = Some(Instant::now());
        let stopping = self.wcf.shutdown.stopping();
        tokio::pin!(stopping);
        loop {
            while let Some(f) = input.frame()? {
                if self.frame(out, f).await? {
                    return Ok(());
                }
            }
            let sessions = &mut self.sessions;
            let event = tokio::select! {
                r = input.rd.read_buf(&mut input.buf) => Event::Read(r),
                _ = ticker.tick() => Event::Tick,
                (ch, h, r) = poll_fn(|cx| poll_queues(sessions, cx)) => Event::Deliver(ch, h, r),
                () = &mut stopping => Event::Stop,
            };
            match event {
                Event::Read(Ok(0)) => return Err(Stop::Io(io::ErrorKind::UnexpectedEof.into())),
                Event::Read(Ok(_)) => last_read = Instant::now(),
                Event::Read(Err(e)) => return Err(Stop::Io(e)),
                Event::Tick => {
                    let attached = self.sessions.values().any(|s| !s.links.is_empty());
                    unattached_since = match (attached, unattached_since) {
                        (true, _) => None,
                        (false, since) => since.or_else(|| Some(Instant::now())),
                    };
                    if unattached_since.is_some_and(|t| t.elapsed() > handshake) {
                        return Err(Stop::Close(props::error(
                            AUTH_FAILED,
                            "no link was attached within the handshake time-out",
                        )));
                    }
                    if last_read.elapsed() > silence {
                        return Err(Stop::Close(props::error(
                            props::IDLE_TIMEOUT,
                            "no frames within twice the idle time-out",
                        )));
                    }
                    if last_beat.elapsed() >= beat {
                        last_beat = Instant::now();
                        out.wr.write_all(&HEARTBEAT).await?;
                        out.wr.flush().await?;
                    }
                    self.expire_tokens(out).await?;
                }
                Event::Deliver(ch, h, Some(req)) => {
                    self.deliver(out, ch, h, req).await?;
                    // Whatever else is already queued for this link goes in
                    // the same write, as far as credit allows.
                    for _ in 1..BATCH {
                        let Some(req) = self.ready(ch, h) else { break };
                        self.deliver(out, ch, h, req).await?;
                    }
                    out.flush_batch().await?;
                }
                Event::Deliver(ch, h, None) => {
                    // The relay was removed (live reload): the SDK goes
                    // offline on relay-not-found (§6.2).
                    if let Some(s) = self.sessions.get_mut(&ch) {
                        s.links.remove(&h);
                        s.closing.insert(h);
                    }
                    let detach = Detach {
                        handle: Handle(h),
                        closed: true,
                        error: Some(props::error(RELAY_NOT_FOUND, "the relay was removed")),
                    };
                    out.send(ch, Performative::Detach(detach), &[]).await?;
                }
                Event::Stop => {
                    return Err(Stop::Close(props::error(
                        "amqp:connection:forced",
                        "the gateway is shutting down",
                    )))
                }
            }
        }
    }

    /// Handle one frame; `true` when the peer closed the connection.
    async fn frame(&mut self, out: &mut Out, f: frame::Frame) -> Result<bool, Stop> {
        let ch = f.channel;
        let perf = match f.body {
            Body::Empty => return Ok(false),
            Body::Sasl(_) => return Err(protocol("SASL frame after open")),
            Body::Amqp(p, _) => *p,
        };
        match perf {
            Performative::Begin(b) => {
                let ours = Begin {
                    remote_channel: Some(ch),
                    next_outgoing_id: 1,
                    incoming_window: WINDOW,
                    outgoing_window: WINDOW,
                    handle_max: Handle(262_143),
                    offered_capabilities: None,
                    desired_capabilities: None,
                    properties: None,
                };
                if self.sessions.contains_key(&ch) || ch > CHANNEL_MAX {
                    return Err(Stop::Close(props::error(
                        "amqp:connection:framing-error",
                        "begin on a channel in use or beyond channel-max",
                    )));
                }
                self.sessions.insert(
                    ch,
                    Session {
                        next_outgoing_id: 1,
                        remote_incoming_window: b.incoming_window,
                        next_delivery_id: 0,
                        links: HashMap::new(),
                        closing: HashSet::new(),
                    },
                );
                out.send(ch, Performative::Begin(ours), &[]).await?;
            }
            Performative::Attach(a) => self.attach(out, ch, a).await?,
            Performative::Flow(fl) => self.flow(out, ch, fl).await?,
            Performative::Transfer(_) => {
                debug!("ignoring a transfer from a listener (§2.3)");
            }
            Performative::Disposition(_) => {}
            Performative::Detach(d) => {
                let session = self.session(ch)?;
                if session.closing.remove(&d.handle.0) {
                    return Ok(false);
                }
                if session.links.remove(&d.handle.0).is_some() {
                    debug!(handle = d.handle.0, "listener link detached");
                }
                let reply = Detach {
                    handle: d.handle,
                    closed: d.closed,
                    error: None,
                };
                out.send(ch, Performative::Detach(reply), &[]).await?;
            }
            Performative::End(_) => {
                self.sessions.remove(&ch);
                out.send(ch, Performative::End(End { error: None }), &[])
                    .await?;
            }
            Performative::Close(_) => {
                self.sessions.clear();
                out.close(None).await;
                return Ok(true);
            }
            Performative::Open(_) => return Err(protocol("a second open")),
        }
        Ok(false)
    }

    fn session(&mut self, ch: u16) -> Result<&mut Session, Stop> {
        self.sessions.get_mut(&ch).ok_or_else(|| {
            Stop::Close(props::error(
                "amqp:session:unattached",
                "frame on a channel without a session",
            ))
        })
    }

    async fn attach(&mut self, out: &mut Out, ch: u16, attach: Attach) -> Result<(), Stop> {
        let handle = attach.handle.0;
        if self.session(ch)?.links.contains_key(&handle) {
            return Err(Stop::Close(props::error(
                "amqp:session:handle-in-use",
                "the handle is already attached",
            )));
        }
        match self.admit(&attach).await {
            Ok(link) => {
                let reply = answer_attach(&attach, handle, true);
                out.send(ch, Performative::Attach(reply), &[]).await?;
                if !self.named {
                    crate::telemetry::record_entity(&link.entity.path);
                    self.named = true;
                }
                info!(via = %link.via, half = ?link.half, "listener link attached");
                self.session(ch)?.links.insert(handle, link);
                Ok(())
            }
            Err(error) => {
                info!(condition = %props::condition(&error), reason = ?error.description, "listener attach refused");
                let reply = answer_attach(&attach, handle, false);
                out.send(ch, Performative::Attach(reply), &[]).await?;
                self.session(ch)?.closing.insert(handle);
                let detach = Detach {
                    handle: Handle(handle),
                    closed: true,
                    error: Some(error),
                };
                out.send(ch, Performative::Detach(detach), &[]).await
            }
        }
    }

    /// Validate an attach and, for `:in`, register the listener.
    async fn admit(&self, attach: &Attach) -> Result<Link, AmqpError> {
        let wcf = &self.wcf;
        let a = ListenerAttach::parse(attach).map_err(|e| props::error(NOT_ALLOWED, &e))?;
        let ltype = a.listener_type.ok_or_else(|| {
            props::error(
                NOT_ALLOWED,
                &format!(
                    "listener type {:?} is not supported",
                    a.listener_type_name.as_deref().unwrap_or("(none)")
                ),
            )
        })?;
        let (_, path) = split_address(&a.address)
            .ok_or_else(|| props::error(NOT_ALLOWED, "the address is not a URI"))?;
        let kind = Kind::of(&a, ltype);
        let label = wcf.entity_label(path);
        let refuse = |condition: &str, status: u16, msg: &str| {
            wcf.metrics.listener_refused(&label, FRONTEND_AMQP, status);
            props::error(condition, msg)
        };
        // A hybrid connection that takes WCF clients takes NetTcp listeners
        // beside its own, under its rules (`crate::frontend::bridge`).
        let bridged = bridge::hybrid_for_wcf_client(&wcf.hybrid, &wcf.relay, path)
            .filter(|e| e.suffix.is_empty() && kind.family == "NetTcp");
        let entity = match bridged {
            Some(hc) => super::entity::Entity {
                path: hc.path,
                rules: hc.rules,
                requires_auth: Some(hc.requires_auth),
            },
            None => wcf
                .settings
                .resolve_listener(path, kind, a.dynamic, &wcf.relay)
                .map_err(|r| match r {
                    Refused::NotFound(m) => refuse(RELAY_NOT_FOUND, 404, &m),
                    Refused::InUse(m) => refuse(ADDRESS_IN_USE, 409, &m),
                })?,
        };
        let expiry = wcf
            .settings
            .authorize(a.token.as_deref(), &entity, Right::Listen, 0)
            .map_err(|e| {
                wcf.metrics.token_rejected(
                    &label,
                    FRONTEND_AMQP,
                    crate::telemetry::token_reason(&e),
                );
                refuse(AUTH_FAILED, 401, &e.to_string())
            })?;
        let (queue, active) = if a.half == Half::In {
            let info = ListenerInfo {
                identity: a.tracking_id.clone().unwrap_or_else(|| a.name.clone()),
                kind: kind.label(),
            };
            let q = wcf
                .relay
                .register(&entity.path, info)
                .await
                .map_err(|e| match e {
                    CoreError::ListenerQuota(n) => {
                        wcf.metrics
                            .limit_hit(&label, FRONTEND_AMQP, "listeners_per_path");
                        refuse(
                            RESOURCE_LIMIT,
                            403,
                            &format!(
                                "MaximumListenersPerEndpoint: the relay already has {n} listeners"
                            ),
                        )
                    }
                    other => refuse(RESOURCE_LIMIT, 503, &other.to_string()),
                })?;
            let active = wcf
                .metrics
                .listener_connected(&wcf.entity_label(&entity.path), FRONTEND_AMQP);
            (Some(q), Some(active))
        } else {
            (None, None)
        };
        Ok(Link {
            half: a.half,
            via: a.address.clone(),
            entity,
            expiry,
            queue,
            credit: 0,
            delivery_count: 0,
            _active: active,
        })
    }

    async fn flow(&mut self, out: &mut Out, ch: u16, fl: Flow) -> Result<(), Stop> {
        let settings = self.wcf.settings.clone();
        let session = self.session(ch)?;
        session.remote_incoming_window = fl
            .next_incoming_id
            .unwrap_or(1)
            .wrapping_add(fl.incoming_window)
            .wrapping_sub(session.next_outgoing_id);
        let Some(handle) = fl.handle.as_ref().map(|h| h.0) else {
            return Ok(());
        };
        let Some(link) = session.links.get_mut(&handle) else {
            // A link the gateway refused or detached: the peer may not have
            // seen the detach yet.
            debug!(handle, "flow for a link that is not attached");
            return Ok(());
        };
        if let Some(credit) = fl.link_credit {
            link.credit = fl
                .delivery_count
                .unwrap_or(0)
                .wrapping_add(credit)
                .wrapping_sub(link.delivery_count);
        }
        let mut refused = None;
        if let Some(token) = flow_token(&fl) {
            match settings.authorize(Some(&token), &link.entity, Right::Listen, 0) {
                Ok(expiry) => {
                    debug!(via = %link.via, "listener token renewed");
                    link.expiry = expiry;
                }
                Err(e) if expired(link.expiry, settings.limits.token_grace.as_secs()) => {
                    refused = Some(props::error(AUTH_FAILED, &e.to_string()));
                }
                Err(e) => {
                    info!(via = %link.via, reason = %e, "renewal token refused; the current one stays valid")
                }
            }
        }
        let (delivery_count, credit, next_outgoing_id) =
            (link.delivery_count, link.credit, session.next_outgoing_id);
        tracing::trace!(
            handle,
            credit,
            window = session.remote_incoming_window,
            "listener flow"
        );
        if let Some(error) = refused {
            session.links.remove(&handle);
            session.closing.insert(handle);
            let detach = Detach {
                handle: Handle(handle),
                closed: true,
                error: Some(error),
            };
            return out.send(ch, Performative::Detach(detach), &[]).await;
        }
        if fl.echo {
            let reply = Flow {
                next_incoming_id: Some(1),
                incoming_window: WINDOW,
                next_outgoing_id,
                outgoing_window: WINDOW,
                handle: Some(Handle(handle)),
                delivery_count: Some(delivery_count),
                link_credit: Some(credit),
                available: Some(0),
                drain: false,
                echo: false,
                properties: None,
            };
            out.send(ch, Performative::Flow(reply), &[]).await?;
        }
        Ok(())
    }

    /// The next queued request of a link that may receive it now.
    fn ready(&mut self, ch: u16, h: u32) -> Option<Request> {
        let s = self.sessions.get_mut(&ch)?;
        if s.remote_incoming_window == 0 {
            return None;
        }
        let l = s.links.get_mut(&h)?;
        if l.credit == 0 {
            return None;
        }
        l.queue.as_mut()?.1.try_recv().ok()
    }

    /// Detach links whose token expired (past the grace) without renewal.
    async fn expire_tokens(&mut self, out: &mut Out) -> Result<(), Stop> {
        let grace = self.wcf.settings.limits.token_grace.as_secs();
        let mut dead = Vec::new();
        for (ch, s) in &mut self.sessions {
            let gone: Vec<u32> = s
                .links
                .iter()
                .filter(|(_, l)| expired(l.expiry, grace))
                .map(|(h, _)| *h)
                .collect();
            for h in gone {
                s.links.remove(&h);
                s.closing.insert(h);
                dead.push((*ch, h));
            }
        }
        for (ch, h) in dead {
            info!(handle = h, "listener token expired without renewal");
            let detach = Detach {
                handle: Handle(h),
                closed: true,
                error: Some(props::error(
                    AUTH_FAILED,
                    "the token expired and was not renewed",
                )),
            };
            out.send(ch, Performative::Detach(detach), &[]).await?;
        }
        Ok(())
    }

    /// Send one request to the listener on `:in` as a transfer, split to the
    /// peer's frame size.
    async fn deliver(&mut self, out: &mut Out, ch: u16, h: u32, req: Request) -> Result<(), Stop> {
        if let (Ask::Connect(_), Some(o)) = (&req.ask, &req.origin) {
            if self.wcf.relay.is_elsewhere(Some(o)) {
                let wait = self.wcf.settings.limits.accept_timeout;
                self.elsewhere.insert(req.id, o.node.clone(), wait);
            }
        }
        let ports = self.wcf.ports;
        let host = self.wcf.settings.host.clone();
        let ip = self.local_ip;
        let session = self.session(ch)?;
        let Some(link) = session.links.get_mut(&h) else {
            return Ok(());
        };
        let data = match req.ask {
            Ask::Connect(_) => match &req.origin {
                Some(o) => notice(&link.via, &req.id.to_string(), &o.as_ref().into(), &host),
                None => notice(&link.via, &req.id.to_string(), &(ip, ports).into(), &host),
            },
            Ask::Message(inner) => wrap(&link.via, inner.into()),
            Ask::Http { .. } => {
                warn!("an HTTP request cannot go to a WCF listener over AMQP");
                return Ok(());
            }
        };
        link.credit = link.credit.saturating_sub(1);
        link.delivery_count = link.delivery_count.wrapping_add(1);
        let delivery_id = session.next_delivery_id;
        session.next_delivery_id = session.next_delivery_id.wrapping_add(1);
        let message = frame::data_message(&data);
        let room = (out.max_frame as usize).saturating_sub(128).max(256);
        let pieces: Vec<&[u8]> = message.chunks(room).collect();
        let last = pieces.len().saturating_sub(1);
        session.next_outgoing_id = session.next_outgoing_id.wrapping_add(pieces.len() as u32);
        session.remote_incoming_window = session
            .remote_incoming_window
            .saturating_sub(pieces.len() as u32);
        for (i, piece) in pieces.into_iter().enumerate() {
            let t = Transfer {
                handle: Handle(h),
                delivery_id: Some(delivery_id),
                delivery_tag: Some(delivery_id.to_be_bytes().to_vec().into()),
                message_format: Some(0),
                settled: Some(false),
                more: i < last,
                rcv_settle_mode: None,
                state: None,
                resume: false,
                aborted: false,
                batchable: false,
            };
            out.queue(ch, Performative::Transfer(t), piece).await?;
        }
        debug!(id = %req.id, "delivered to the listener");
        Ok(())
    }
}

fn expired(expiry: u64, grace: u64) -> bool {
    expiry.saturating_add(grace) < crate::auth::now()
}

/// The notice for rendezvous `id` (§3.2), wrapped for delivery (§2.2): the
/// addresses are the gateway's own, as the listener reached it.
/// Where a notice tells the listener to dial back (§3.2).
struct DialBack {
    ip: Ipv4Addr,
    ports: super::Ports,
    host: Option<String>,
}

/// This node, as the listener reached it.
impl From<(Ipv4Addr, super::Ports)> for DialBack {
    fn from((ip, ports): (Ipv4Addr, super::Ports)) -> Self {
        DialBack {
            ip,
            ports,
            host: None,
        }
    }
}

/// The node holding the client, as it advertises itself.
impl From<&Origin> for DialBack {
    fn from(o: &Origin) -> Self {
        let ip = [o.relayed, o.https, o.http]
            .into_iter()
            .flatten()
            .find_map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })
            .unwrap_or(Ipv4Addr::LOCALHOST);
        DialBack {
            ip,
            ports: super::Ports {
                relayed: o.relayed,
                http: o.http,
                https: o.https,
            },
            host: o.host.clone(),
        }
    }
}

fn notice(via: &str, id: &str, to: &DialBack, host: &str) -> Vec<u8> {
    let port = |a: Option<SocketAddr>, d: u16| a.map_or(d, |a| a.port());
    let inner = Notice {
        to: via.to_owned(),
        id: id.to_owned(),
        ip: to.ip,
        ip_port: port(to.ports.relayed, 9352),
        http: (to.ip, port(to.ports.http, 80)),
        https: (to.ip, port(to.ports.https, 443)),
        instance_dns: Some(to.host.clone().unwrap_or_else(|| host.to_owned())),
    }
    .to_envelope()
    .to_msbin1();
    wrap(via, inner)
}

/// The OnewaySend wrapper around an inner msbin1 envelope (§2.2).
fn wrap(via: &str, inner: Vec<u8>) -> Vec<u8> {
    use rand::RngCore;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    OnewaySend::write_msbin1(via, &id, &inner)
}
