//! The relay's end of a listener's control channel, sans-IO
//! (`wcf/PROTOCOL.md` §2.1, §2.2, §6.2, §8, §11.2, §11.5; AMQP 1.0 part 2.4
//! to 2.7 and part 5.3): SASL EXTERNAL or ANONYMOUS (authorization comes
//! with the attach), `open` with the idle time-out the SDK needs, sessions,
//! links the application admits or refuses, deliveries on a listener's `:in`
//! as link credit and the session window allow, tokens renewed on flows,
//! heartbeats, and the deadlines: the handshake, a first attached link, the
//! peer's silence and each link's token.
//!
//! The driver feeds bytes with [`Server::feed`], answers each [`Event`] from
//! [`Server::poll_event`] before asking for the next (an attach is admitted
//! or refused before the frames behind it are read), writes what
//! [`Server::poll_transmit`] gives, and calls [`Server::handle_timeout`] at
//! [`Server::poll_timeout`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{Error as AmqpError, Handle};
use fe2o3_amqp_types::performatives::{
    Attach, ChannelMax, Close, Detach, End, Flow, MaxFrameSize, Open, Performative, Transfer,
};
use fe2o3_amqp_types::sasl::{SaslCode, SaslMechanisms, SaslOutcome};
use serde_amqp::primitives::{Array, Symbol};

use super::connection::{
    begin, heartbeat_interval, Heartbeat, LinkId, Wire, FIRST_TRANSFER_ID, WINDOW,
};
use super::frame::{self, Body, Header, Sasl, AMQP_HEADER, SASL_HEADER};
use super::listener::{self as props, answer_attach, flow_token, AUTH_FAILED, DECODE_ERROR};

/// Room left in a frame for the transfer performative before its payload.
const TRANSFER_OVERHEAD: usize = 128;

/// What the relay's end advertises and enforces.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The container id in our `open`.
    pub container_id: String,
    /// The largest frame accepted, advertised in `open`.
    pub max_frame: u32,
    /// The highest channel a session may use.
    pub channel_max: u16,
    /// The idle time-out advertised; a peer silent for twice as long is
    /// closed (the SDK refuses less than 60 s, §11.2).
    pub idle_time_out: Duration,
    /// How long the handshake up to `open`, and then the wait for a first
    /// attached link, may take: until a link is attached the peer has not
    /// authenticated, whatever heartbeats it sends.
    pub handshake: Duration,
    /// The most links one connection may hold at once (the SDK attaches
    /// two); more are refused with `amqp:resource-limit-exceeded` without
    /// asking the application.
    pub max_links: usize,
}

/// What the application must look at, in order.
#[derive(Debug)]
pub enum Event {
    /// The peer's `open` arrived (and ours went out).
    Opened {
        /// The peer's container id.
        container_id: String,
        /// The hostname it asked for.
        hostname: Option<String>,
    },
    /// The peer asks to attach a link: answer with [`Server::accept_link`]
    /// or [`Server::refuse_link`].
    Attach {
        /// The session's channel.
        channel: u16,
        /// The attach as sent.
        attach: Box<Attach>,
    },
    /// A flow on an attached link carries a token: answer with
    /// [`Server::renew`], or [`Server::detach`] when it is refused and the
    /// current one has expired.
    Renewal {
        /// The link.
        link: LinkId,
        /// The token.
        token: String,
    },
    /// A link is gone: the peer detached it or ended its session, or this
    /// end detached it because its token expired (`error` says so).
    Detached {
        /// The link.
        link: LinkId,
        /// The error this end detached with, if it did.
        error: Option<AmqpError>,
    },
    /// The connection is over; write what is left and close the transport.
    Closed(Ending),
}

/// How the connection ended.
#[derive(Debug, Clone)]
pub enum Ending {
    /// The peer sent `close`; it was answered.
    ByPeer,
    /// This end sent `close` with this error.
    Closed(AmqpError),
    /// The handshake failed before `open`, as said; nothing more is sent.
    Abandoned(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a protocol header; `sasl_done` once SASL succeeded.
    Header {
        sasl_done: bool,
    },
    SaslInit,
    Open,
    Running,
    Closed,
}

#[derive(Debug)]
struct Link {
    credit: u32,
    delivery_count: u32,
    /// When the link's token runs out (with any grace), if it does.
    expires: Option<Instant>,
}

#[derive(Debug)]
struct Session {
    next_outgoing_id: u32,
    remote_incoming_window: u32,
    next_delivery_id: u32,
    links: HashMap<u32, Link>,
    /// Handles this end detached, whose answering detach is awaited.
    closing: HashSet<u32>,
}

/// A reason to end the connection.
enum Stop {
    Close(AmqpError),
    Abandon(&'static str),
}

fn decode_error(what: impl std::fmt::Display) -> Stop {
    Stop::Close(props::error(DECODE_ERROR, &what.to_string()))
}

/// The relay's end of one control-channel connection.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    wire: Wire,
    phase: Phase,
    events: VecDeque<Event>,
    now: Instant,
    started: Instant,
    /// The largest frame the peer accepts.
    peer_max_frame: u32,
    heartbeat: Heartbeat,
    sessions: HashMap<u16, Session>,
    /// Since when no link has been attached.
    unattached_since: Option<Instant>,
}

impl Server {
    /// A connection whose first byte is yet to come.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        Server {
            heartbeat: Heartbeat::new(heartbeat_interval(None), now),
            config,
            wire: Wire::new(now),
            phase: Phase::Header { sasl_done: false },
            events: VecDeque::new(),
            now,
            started: now,
            peer_max_frame: frame::MIN_MAX_FRAME_SIZE,
            sessions: HashMap::new(),
            unattached_since: Some(now),
        }
    }

    /// Take bytes the peer sent.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.now = now;
        self.wire.feed(bytes, now);
    }

    /// The next event, reading frames until one comes or the input runs out.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.now = now;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.phase == Phase::Closed {
                return None;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(stop) => self.end(stop),
            }
        }
    }

    /// The next frame (or header) to write, each whole.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.poll_transmit()
    }

    /// When [`Server::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Running => {
                let silence = self.wire.last_read + self.config.idle_time_out * 2;
                let unattached = self.unattached_since.map(|t| t + self.config.handshake);
                let expiry = self.links().filter_map(|(_, l)| l.expires).min();
                [
                    Some(self.heartbeat.deadline()),
                    Some(silence),
                    unattached,
                    expiry,
                ]
                .into_iter()
                .flatten()
                .min()
            }
            _ => Some(self.started + self.config.handshake),
        }
    }

    /// Act on the deadlines that have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.phase {
            Phase::Closed => {}
            Phase::Running => {
                if self
                    .unattached_since
                    .is_some_and(|t| now >= t + self.config.handshake)
                {
                    return self.end(Stop::Close(props::error(
                        AUTH_FAILED,
                        "no link was attached within the handshake time-out",
                    )));
                }
                if now >= self.wire.last_read + self.config.idle_time_out * 2 {
                    return self.end(Stop::Close(props::error(
                        props::IDLE_TIMEOUT,
                        "no frames within twice the idle time-out",
                    )));
                }
                self.heartbeat.tick(&mut self.wire, now);
                self.expire_tokens(now);
            }
            _ => {
                if now >= self.started + self.config.handshake {
                    self.end(Stop::Abandon("the handshake timed out"));
                }
            }
        }
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Close the connection with `error` (a shutdown, say).
    pub fn close(&mut self, error: AmqpError) {
        if self.phase != Phase::Closed {
            self.end(Stop::Close(error));
        }
    }

    /// Admit the link an [`Event::Attach`] asked for; its token runs out at
    /// `expires`.
    pub fn accept_link(&mut self, channel: u16, attach: &Attach, expires: Option<Instant>) {
        let handle = attach.handle.0;
        let Some(session) = self.sessions.get_mut(&channel) else {
            return;
        };
        session.links.insert(
            handle,
            Link {
                credit: 0,
                delivery_count: 0,
                expires,
            },
        );
        self.unattached_since = None;
        let reply = answer_attach(attach, handle, true);
        self.send(channel, &Performative::Attach(reply), &[]);
    }

    /// Refuse the link an [`Event::Attach`] asked for: an attach without a
    /// terminus, then a detach with `error` (part 2.6.3).
    pub fn refuse_link(&mut self, channel: u16, attach: &Attach, error: AmqpError) {
        let handle = attach.handle.0;
        let Some(session) = self.sessions.get_mut(&channel) else {
            return;
        };
        session.closing.insert(handle);
        let reply = answer_attach(attach, handle, false);
        self.send(channel, &Performative::Attach(reply), &[]);
        self.send_detach(LinkId { channel, handle }, Some(error));
    }

    /// The link's token was renewed and now runs out at `expires`.
    pub fn renew(&mut self, link: LinkId, expires: Option<Instant>) {
        if let Some(l) = self.link_mut(link) {
            l.expires = expires;
        }
    }

    /// Detach an attached link with `error`.
    pub fn detach(&mut self, link: LinkId, error: AmqpError) {
        if let Some(session) = self.sessions.get_mut(&link.channel) {
            if session.links.remove(&link.handle).is_some() {
                session.closing.insert(link.handle);
                self.note_links();
                self.send_detach(link, Some(error));
            }
        }
    }

    /// Whether a delivery may go on `link` now: it has credit and its
    /// session has window.
    pub fn can_send(&self, link: LinkId) -> bool {
        self.sessions.get(&link.channel).is_some_and(|s| {
            s.remote_incoming_window > 0 && s.links.get(&link.handle).is_some_and(|l| l.credit > 0)
        })
    }

    /// Send `data` as a message with one data section on `link`, split into
    /// transfers that fit the peer's frames; `false` when it may not go now
    /// (see [`Server::can_send`]).
    pub fn send_message(&mut self, link: LinkId, data: &[u8]) -> bool {
        if !self.can_send(link) {
            return false;
        }
        let message = frame::data_message(data);
        let room = (self.peer_max_frame as usize)
            .saturating_sub(TRANSFER_OVERHEAD)
            .max(256);
        let pieces: Vec<&[u8]> = message.chunks(room).collect();
        let count = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
        let Some(session) = self.sessions.get_mut(&link.channel) else {
            return false;
        };
        let Some(l) = session.links.get_mut(&link.handle) else {
            return false;
        };
        l.credit -= 1;
        l.delivery_count = l.delivery_count.wrapping_add(1);
        let delivery_id = session.next_delivery_id;
        session.next_delivery_id = delivery_id.wrapping_add(1);
        session.next_outgoing_id = session.next_outgoing_id.wrapping_add(count);
        session.remote_incoming_window = session.remote_incoming_window.saturating_sub(count);
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.into_iter().enumerate() {
            let t = Transfer {
                handle: Handle(link.handle),
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
            self.send(link.channel, &Performative::Transfer(t), piece);
        }
        true
    }

    /// Read one header or frame; `false` when the input holds none.
    fn step(&mut self) -> Result<bool, Stop> {
        match self.phase {
            Phase::Header { sasl_done } => {
                let Some(header) = self.wire.header() else {
                    return Ok(false);
                };
                match header {
                    Ok(Header::Sasl) if !sasl_done => {
                        self.wire.send_raw(&SASL_HEADER);
                        let mechanisms = SaslMechanisms {
                            sasl_server_mechanisms: Array(vec![
                                Symbol::from("EXTERNAL"),
                                Symbol::from("ANONYMOUS"),
                            ]),
                        };
                        self.wire
                            .send_sasl(&Sasl::Mechanisms(mechanisms))
                            .map_err(decode_error)?;
                        self.phase = Phase::SaslInit;
                    }
                    Ok(Header::Amqp) => {
                        self.wire.send_raw(&AMQP_HEADER);
                        self.phase = Phase::Open;
                    }
                    _ => {
                        // Part 2.2: answer with the header we support, then close.
                        self.wire.send_raw(&SASL_HEADER);
                        return Err(Stop::Abandon("unsupported protocol header"));
                    }
                }
            }
            Phase::SaslInit => {
                let Some(f) = self.wire.frame().map_err(decode_error)? else {
                    return Ok(false);
                };
                let Body::Sasl(Sasl::Init(init)) = f.body else {
                    return Err(decode_error("expected sasl-init"));
                };
                let ok = matches!(init.mechanism.0.as_str(), "EXTERNAL" | "ANONYMOUS");
                let outcome = SaslOutcome {
                    code: if ok { SaslCode::Ok } else { SaslCode::Auth },
                    additional_data: None,
                };
                self.wire
                    .send_sasl(&Sasl::Outcome(outcome))
                    .map_err(decode_error)?;
                if !ok {
                    return Err(Stop::Abandon("unsupported SASL mechanism"));
                }
                self.phase = Phase::Header { sasl_done: true };
            }
            Phase::Open => {
                let Some(f) = self.wire.frame().map_err(decode_error)? else {
                    return Ok(false);
                };
                let Body::Amqp(perf, _) = f.body else {
                    return Err(decode_error("expected open"));
                };
                let Performative::Open(peer) = *perf else {
                    return Err(decode_error("expected open"));
                };
                self.opened(peer);
            }
            Phase::Running => {
                let Some(f) = self.wire.frame().map_err(decode_error)? else {
                    return Ok(false);
                };
                match f.body {
                    Body::Empty => {}
                    Body::Sasl(_) => return Err(decode_error("SASL frame after open")),
                    Body::Amqp(p, _) => self.performative(f.channel, *p)?,
                }
            }
            Phase::Closed => return Ok(false),
        }
        Ok(true)
    }

    fn opened(&mut self, peer: Open) {
        self.wire.max_frame = self.config.max_frame;
        self.peer_max_frame = peer
            .max_frame_size
            .0
            .clamp(frame::MIN_MAX_FRAME_SIZE, self.config.max_frame);
        let idle_ms = u32::try_from(self.config.idle_time_out.as_millis()).unwrap_or(u32::MAX);
        let ours = Open {
            container_id: self.config.container_id.clone(),
            hostname: None,
            max_frame_size: MaxFrameSize(self.config.max_frame),
            channel_max: ChannelMax(self.config.channel_max),
            idle_time_out: Some(idle_ms),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.send(0, &Performative::Open(ours), &[]);
        self.heartbeat = Heartbeat::new(heartbeat_interval(peer.idle_time_out), self.now);
        self.unattached_since = Some(self.now);
        self.phase = Phase::Running;
        self.events.push_back(Event::Opened {
            container_id: peer.container_id,
            hostname: peer.hostname,
        });
    }

    fn performative(&mut self, ch: u16, perf: Performative) -> Result<(), Stop> {
        match perf {
            Performative::Begin(b) => {
                if self.sessions.contains_key(&ch) || ch > self.config.channel_max {
                    return Err(Stop::Close(props::error(
                        "amqp:connection:framing-error",
                        "begin on a channel in use or beyond channel-max",
                    )));
                }
                self.sessions.insert(
                    ch,
                    Session {
                        next_outgoing_id: FIRST_TRANSFER_ID,
                        remote_incoming_window: b.incoming_window,
                        next_delivery_id: 0,
                        links: HashMap::new(),
                        closing: HashSet::new(),
                    },
                );
                self.send(ch, &Performative::Begin(begin(Some(ch))), &[]);
            }
            Performative::Attach(attach) => {
                if self.session(ch)?.links.contains_key(&attach.handle.0) {
                    return Err(Stop::Close(props::error(
                        "amqp:session:handle-in-use",
                        "the handle is already attached",
                    )));
                }
                if self.links().count() >= self.config.max_links {
                    let error = props::error(
                        props::RESOURCE_LIMIT,
                        "the connection already holds as many links as it may",
                    );
                    self.refuse_link(ch, &attach, error);
                    return Ok(());
                }
                self.events.push_back(Event::Attach {
                    channel: ch,
                    attach: Box::new(attach),
                });
            }
            Performative::Flow(fl) => self.flow(ch, fl)?,
            // A listener never sends on `:out` (§2.3), and its settlements
            // need no answer.
            Performative::Transfer(_) | Performative::Disposition(_) => {}
            Performative::Detach(d) => {
                let handle = d.handle.0;
                let session = self.session(ch)?;
                if session.closing.remove(&handle) {
                    return Ok(());
                }
                if session.links.remove(&handle).is_some() {
                    let link = LinkId {
                        channel: ch,
                        handle,
                    };
                    self.events.push_back(Event::Detached { link, error: None });
                    self.note_links();
                }
                let reply = Detach {
                    handle: d.handle,
                    closed: d.closed,
                    error: None,
                };
                self.send(ch, &Performative::Detach(reply), &[]);
            }
            Performative::End(_) => {
                if let Some(s) = self.sessions.remove(&ch) {
                    let mut handles: Vec<u32> = s.links.into_keys().collect();
                    handles.sort_unstable();
                    for handle in handles {
                        let link = LinkId {
                            channel: ch,
                            handle,
                        };
                        self.events.push_back(Event::Detached { link, error: None });
                    }
                    self.note_links();
                }
                self.send(ch, &Performative::End(End { error: None }), &[]);
            }
            Performative::Close(_) => {
                self.sessions.clear();
                self.send(0, &Performative::Close(Close { error: None }), &[]);
                self.phase = Phase::Closed;
                self.events.push_back(Event::Closed(Ending::ByPeer));
            }
            Performative::Open(_) => return Err(decode_error("a second open")),
        }
        Ok(())
    }

    fn flow(&mut self, ch: u16, fl: Flow) -> Result<(), Stop> {
        let session = self.session(ch)?;
        session.remote_incoming_window = fl
            .next_incoming_id
            .unwrap_or(FIRST_TRANSFER_ID)
            .wrapping_add(fl.incoming_window)
            .wrapping_sub(session.next_outgoing_id);
        let next_outgoing_id = session.next_outgoing_id;
        // A flow for a link this end refused or detached: the peer may not
        // have seen the detach yet.
        let Some(handle) = fl.handle.as_ref().map(|h| h.0) else {
            return Ok(());
        };
        let Some(link) = session.links.get_mut(&handle) else {
            return Ok(());
        };
        if let Some(credit) = fl.link_credit {
            link.credit = fl
                .delivery_count
                .unwrap_or(0)
                .wrapping_add(credit)
                .wrapping_sub(link.delivery_count);
        }
        if fl.echo {
            let reply = Flow {
                next_incoming_id: Some(FIRST_TRANSFER_ID),
                incoming_window: WINDOW,
                next_outgoing_id,
                outgoing_window: WINDOW,
                handle: Some(Handle(handle)),
                delivery_count: Some(link.delivery_count),
                link_credit: Some(link.credit),
                available: Some(0),
                drain: false,
                echo: false,
                properties: None,
            };
            self.send(ch, &Performative::Flow(reply), &[]);
        }
        if let Some(token) = flow_token(&fl) {
            let link = LinkId {
                channel: ch,
                handle,
            };
            self.events.push_back(Event::Renewal { link, token });
        }
        Ok(())
    }

    /// Detach the links whose token ran out without a renewal.
    fn expire_tokens(&mut self, now: Instant) {
        let mut gone: Vec<LinkId> = self
            .links()
            .filter(|(_, l)| l.expires.is_some_and(|t| now >= t))
            .map(|(id, _)| id)
            .collect();
        gone.sort_unstable();
        for link in gone {
            let error = props::error(AUTH_FAILED, "the token expired and was not renewed");
            self.detach(link, error.clone());
            self.events.push_back(Event::Detached {
                link,
                error: Some(error),
            });
        }
    }

    fn links(&self) -> impl Iterator<Item = (LinkId, &Link)> {
        self.sessions.iter().flat_map(|(ch, s)| {
            s.links.iter().map(|(h, l)| {
                let id = LinkId {
                    channel: *ch,
                    handle: *h,
                };
                (id, l)
            })
        })
    }

    fn link_mut(&mut self, link: LinkId) -> Option<&mut Link> {
        self.sessions
            .get_mut(&link.channel)?
            .links
            .get_mut(&link.handle)
    }

    fn session(&mut self, ch: u16) -> Result<&mut Session, Stop> {
        self.sessions.get_mut(&ch).ok_or_else(|| {
            Stop::Close(props::error(
                "amqp:session:unattached",
                "frame on a channel without a session",
            ))
        })
    }

    /// Start the handshake deadline again when the last link is gone.
    fn note_links(&mut self) {
        let attached = self.sessions.values().any(|s| !s.links.is_empty());
        self.unattached_since = match (attached, self.unattached_since) {
            (true, _) => None,
            (false, since) => since.or(Some(self.now)),
        };
    }

    fn send_detach(&mut self, link: LinkId, error: Option<AmqpError>) {
        let detach = Detach {
            handle: Handle(link.handle),
            closed: true,
            error,
        };
        self.send(link.channel, &Performative::Detach(detach), &[]);
    }

    /// Queue a frame; one this end cannot encode ends the connection.
    fn send(&mut self, channel: u16, perf: &Performative, payload: &[u8]) {
        if let Err(e) = self.wire.send(channel, perf, payload) {
            let error = props::error("amqp:internal-error", &e.to_string());
            self.end(Stop::Close(error));
        }
    }

    fn end(&mut self, stop: Stop) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        let ending = match stop {
            Stop::Close(error) => {
                let close = Performative::Close(Close {
                    error: Some(error.clone()),
                });
                if let Ok(bytes) = frame::encode(0, &close, &[]) {
                    self.wire.send_raw(&bytes);
                }
                Ending::Closed(error)
            }
            Stop::Abandon(why) => Ending::Abandoned(why),
        };
        self.events.push_back(Event::Closed(ending));
    }
}
