//! A relay listener's end of the control channel, sans-IO, as the SDK
//! speaks it (`wcf/PROTOCOL.md` §2.1, §6.2, §8, §11.2; AMQP 1.0 part 2.4 to
//! 2.7, part 5.3): SASL EXTERNAL, `open` with the namespace's `-relay`
//! hostname, one session, the `:out`/`:in` attach pair, credit on `:in`
//! replenished at half, deliveries reassembled and settled `accepted`,
//! heartbeats at half the relay's idle time-out, and tokens renewed with
//! flows on both links.
//!
//! The driver feeds bytes with [`Client::feed`], takes [`ClientEvent`]s from
//! [`Client::poll_event`], writes what [`Client::poll_transmit`] gives, and
//! calls [`Client::handle_timeout`] at [`Client::poll_timeout`].

use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{Error as AmqpError, Handle, Role};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
use fe2o3_amqp_types::performatives::{
    Attach, ChannelMax, Disposition, Flow, MaxFrameSize, Open, Performative,
};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit};
use serde_amqp::primitives::Symbol;

use super::connection::{begin, heartbeat_interval, Heartbeat, Wire, FIRST_TRANSFER_ID, WINDOW};
use super::frame::{self, Body, Header, Sasl, AMQP_HEADER, SASL_HEADER};
use super::listener::{self as props, renewal_flow, ADDRESS_IN_USE, AUTH_FAILED, RELAY_NOT_FOUND};

/// The largest frame this end accepts, advertised in `open`.
const MAX_FRAME: u32 = 65_536;
/// The highest channel this end uses.
const CHANNEL_MAX: u16 = 8191;
/// The largest delivery this end reassembles: the relay's notices and
/// one-way messages are far smaller.
const MAX_DELIVERY: usize = 16 << 20;

/// What this end sends.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The container id in our `open`.
    pub container_id: String,
    /// The hostname in our `open` (`<namespace>-relay...`, §11.2).
    pub hostname: String,
    /// The link pair, in the order they are attached: one sender (`:out`)
    /// and one receiver (`:in`).
    pub attaches: [Attach; 2],
    /// The credit granted on the receiver, renewed when half is used.
    pub credit: u32,
}

/// What the driver must look at.
#[derive(Debug)]
pub enum ClientEvent {
    /// Both links are attached and credit is granted.
    Attached,
    /// A delivery's data section; it is settled at the next
    /// [`Client::settle`].
    Delivery(Vec<u8>),
    /// The connection is over.
    Ended(Ended),
}

/// Why the connection ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The relay refused for good: the SDK does not try again after
    /// relay-not-found, address-already-in-use or auth-failed (§6.2).
    pub fatal: bool,
    /// What happened.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SaslHeader,
    Mechanisms,
    Outcome,
    AmqpHeader,
    Open,
    Begin,
    Attaching { answered: u8 },
    Attached,
    Ended,
}

/// The listener's end of one control-channel connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    wire: Wire,
    phase: Phase,
    /// The heartbeat interval the relay's `open` asked for.
    beat_every: Duration,
    heartbeat: Option<Heartbeat>,
    receiver: u32,
    sender: u32,
    next_incoming_id: u32,
    delivery_count: u32,
    partial: Vec<u8>,
    /// Deliveries received and not yet settled: the first and last id.
    unsettled: Option<(u32, u32)>,
    ended: Option<Ended>,
}

fn failed(message: impl Into<String>) -> Ended {
    Ended {
        fatal: false,
        message: message.into(),
    }
}

fn refused(e: Option<&AmqpError>, what: &str) -> Ended {
    let (condition, description) = e.map_or((String::new(), String::new()), |e| {
        (
            props::condition(e),
            e.description.clone().unwrap_or_default(),
        )
    });
    Ended {
        fatal: [RELAY_NOT_FOUND, ADDRESS_IN_USE, AUTH_FAILED].contains(&condition.as_str()),
        message: format!("{what}: {condition} {description}"),
    }
}

impl Client {
    /// A connection about to start: the SASL header is queued.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let handle_of = |role: Role| {
            config
                .attaches
                .iter()
                .find(|a| a.role == role)
                .map_or(0, |a| a.handle.0)
        };
        let (receiver, sender) = (handle_of(Role::Receiver), handle_of(Role::Sender));
        let mut wire = Wire::new(now);
        wire.send_raw(&SASL_HEADER);
        Client {
            config,
            wire,
            phase: Phase::SaslHeader,
            beat_every: heartbeat_interval(None),
            heartbeat: None,
            receiver,
            sender,
            next_incoming_id: 0,
            delivery_count: 0,
            partial: Vec::new(),
            unsettled: None,
            ended: None,
        }
    }

    /// Take bytes the relay sent.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.wire.feed(bytes, now);
    }

    /// The next event, reading frames until one comes or the input runs out.
    pub fn poll_event(&mut self, now: Instant) -> Option<ClientEvent> {
        loop {
            if let Some(e) = self.ended.take() {
                return Some(ClientEvent::Ended(e));
            }
            if self.phase == Phase::Ended {
                return None;
            }
            match self.step(now) {
                Ok(None) => return None,
                Ok(Some(Step::More)) => {}
                Ok(Some(Step::Event(e))) => return Some(e),
                Err(e) => {
                    self.phase = Phase::Ended;
                    self.ended = Some(e);
                }
            }
        }
    }

    /// The next frame (or header) to write, each whole.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.poll_transmit()
    }

    /// When [`Client::handle_timeout`] is next due: the next heartbeat.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heartbeat
            .filter(|_| self.phase != Phase::Ended)
            .map(|h| h.deadline())
    }

    /// Send a heartbeat when one is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(h) = self
            .heartbeat
            .as_mut()
            .filter(|_| self.phase != Phase::Ended)
        {
            h.tick(&mut self.wire, now);
        }
    }

    /// Whether a whole frame is already in: the driver settles deliveries
    /// once none is, so that several are settled at once.
    pub fn has_frame(&self) -> bool {
        self.wire.has_frame()
    }

    /// Settle the deliveries received so far, `accepted`, in one
    /// disposition.
    pub fn settle(&mut self) {
        if let Some((first, last)) = self.unsettled.take() {
            self.send(Performative::Disposition(Disposition {
                role: Role::Receiver,
                first,
                last: (last != first).then_some(last),
                settled: true,
                state: Some(DeliveryState::Accepted(Accepted {})),
                batchable: false,
            }));
        }
    }

    /// Send a renewed token on `:in`, then `:out` (§11.2).
    pub fn renew(&mut self, token: &str) {
        for handle in [self.receiver, self.sender] {
            let f = renewal_flow(self.flow(handle), token);
            self.send(Performative::Flow(f));
        }
    }

    fn flow(&self, handle: u32) -> Flow {
        Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: WINDOW,
            next_outgoing_id: FIRST_TRANSFER_ID,
            outgoing_window: WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(self.delivery_count),
            link_credit: Some(if handle == self.receiver {
                self.config.credit
            } else {
                0
            }),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }
    }

    fn send(&mut self, perf: Performative) {
        if let Err(e) = self.wire.send(0, &perf, &[]) {
            self.phase = Phase::Ended;
            self.ended = Some(failed(e.to_string()));
        }
    }

    /// The next performative, skipping heartbeats.
    fn performative(&mut self) -> Result<Option<(Performative, Vec<u8>)>, Ended> {
        loop {
            let Some(f) = self.wire.frame().map_err(|e| failed(e.to_string()))? else {
                return Ok(None);
            };
            match f.body {
                Body::Amqp(p, payload) => return Ok(Some((*p, payload))),
                Body::Empty => {}
                Body::Sasl(_) => return Err(failed("unexpected SASL frame")),
            }
        }
    }

    fn step(&mut self, now: Instant) -> Result<Option<Step>, Ended> {
        match self.phase {
            Phase::SaslHeader | Phase::AmqpHeader => {
                let sasl = self.phase == Phase::SaslHeader;
                let Some(header) = self.wire.header() else {
                    return Ok(None);
                };
                match (header, sasl) {
                    (Ok(Header::Sasl), true) => self.phase = Phase::Mechanisms,
                    (Ok(Header::Amqp), false) => self.open(),
                    (_, true) => return Err(failed("the relay did not answer with SASL")),
                    (_, false) => return Err(failed("the relay did not answer with AMQP")),
                }
            }
            Phase::Mechanisms | Phase::Outcome => {
                let Some(f) = self.wire.frame().map_err(|e| failed(e.to_string()))? else {
                    return Ok(None);
                };
                match (f.body, self.phase) {
                    (Body::Sasl(Sasl::Mechanisms(_)), Phase::Mechanisms) => {
                        let init = SaslInit {
                            mechanism: Symbol::from("EXTERNAL"),
                            initial_response: None,
                            hostname: None,
                        };
                        self.wire
                            .send_sasl(&Sasl::Init(init))
                            .map_err(|e| failed(e.to_string()))?;
                        self.phase = Phase::Outcome;
                    }
                    (Body::Sasl(Sasl::Outcome(o)), Phase::Outcome)
                        if matches!(o.code, SaslCode::Ok) =>
                    {
                        self.wire.send_raw(&AMQP_HEADER);
                        self.phase = Phase::AmqpHeader;
                    }
                    (_, Phase::Mechanisms) => return Err(failed("expected sasl-mechanisms")),
                    _ => return Err(failed("SASL failed")),
                }
            }
            Phase::Open => match self.performative()? {
                None => return Ok(None),
                Some((Performative::Open(o), _)) => {
                    self.beat_every = heartbeat_interval(o.idle_time_out);
                    self.send(Performative::Begin(begin(None)));
                    self.phase = Phase::Begin;
                }
                Some((Performative::Close(c), _)) => {
                    return Err(refused(c.error.as_ref(), "closed"))
                }
                Some(_) => return Err(failed("expected open")),
            },
            Phase::Begin => match self.performative()? {
                None => return Ok(None),
                Some((Performative::Begin(_), _)) => {
                    for a in self.config.attaches.clone() {
                        self.send(Performative::Attach(a));
                    }
                    self.phase = Phase::Attaching { answered: 0 };
                }
                Some((Performative::Close(c), _)) => {
                    return Err(refused(c.error.as_ref(), "closed"))
                }
                Some(_) => return Err(failed("expected begin")),
            },
            Phase::Attaching { answered } => match self.performative()? {
                None => return Ok(None),
                // A refusal is an attach without terminus; its detach follows.
                Some((Performative::Attach(a), _)) if a.source.is_none() && a.target.is_none() => {}
                Some((Performative::Attach(_), _)) if answered == 0 => {
                    self.phase = Phase::Attaching { answered: 1 };
                }
                Some((Performative::Attach(_), _)) => {
                    let f = self.flow(self.receiver);
                    self.send(Performative::Flow(f));
                    self.heartbeat = Some(Heartbeat::new(self.beat_every, now));
                    self.phase = Phase::Attached;
                    return Ok(Some(Step::Event(ClientEvent::Attached)));
                }
                Some((Performative::Detach(d), _)) => {
                    return Err(refused(d.error.as_ref(), "attach refused"))
                }
                Some((Performative::Close(c), _)) => {
                    return Err(refused(c.error.as_ref(), "closed"))
                }
                Some(_) => {}
            },
            Phase::Attached => match self.performative()? {
                None => return Ok(None),
                Some((Performative::Transfer(t), payload)) => {
                    if self.partial.len() + payload.len() > MAX_DELIVERY {
                        return Err(failed("a delivery larger than 16 MiB"));
                    }
                    self.partial.extend_from_slice(&payload);
                    if !t.more {
                        return self.delivered(t.delivery_id).map(Some);
                    }
                }
                Some((Performative::Detach(d), _)) => {
                    return Err(refused(d.error.as_ref(), "detached"))
                }
                Some((Performative::End(e), _)) => {
                    return Err(refused(e.error.as_ref(), "session ended"))
                }
                Some((Performative::Close(c), _)) => {
                    return Err(refused(c.error.as_ref(), "closed"))
                }
                Some(_) => {}
            },
            Phase::Ended => return Ok(None),
        }
        Ok(Some(Step::More))
    }

    /// Our `open`, once the relay answered the AMQP header.
    fn open(&mut self) {
        self.wire.max_frame = MAX_FRAME;
        self.send(Performative::Open(Open {
            container_id: self.config.container_id.clone(),
            hostname: Some(self.config.hostname.clone()),
            max_frame_size: MaxFrameSize(MAX_FRAME),
            channel_max: ChannelMax(CHANNEL_MAX),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }));
        self.phase = Phase::Open;
    }

    /// The last transfer of a delivery arrived.
    fn delivered(&mut self, delivery_id: Option<u32>) -> Result<Step, Ended> {
        let payload = std::mem::take(&mut self.partial);
        let id = delivery_id.unwrap_or(self.next_incoming_id);
        self.next_incoming_id = id.wrapping_add(1);
        self.delivery_count = self.delivery_count.wrapping_add(1);
        self.unsettled = Some(self.unsettled.map_or((id, id), |(first, _)| (first, id)));
        let half = (self.config.credit / 2).max(1);
        if self.delivery_count % half == 0 {
            let f = self.flow(self.receiver);
            self.send(Performative::Flow(f));
        }
        let data = frame::data_section(&payload).map_err(|e| failed(e.to_string()))?;
        Ok(Step::Event(ClientEvent::Delivery(data.to_vec())))
    }
}

enum Step {
    More,
    Event(ClientEvent),
}
