//! The listener side of the AMQP control channel, as `forward --listen`
//! speaks it (`wcf/PROTOCOL.md` §2.1, §8, §11.2): TLS, SASL EXTERNAL,
//! `open` with the `<ns>-relay` hostname, one session, the
//! `RelayLink_<guid>:out`/`:in` attach pair with the SDK's properties, credit
//! 1000 on `:in`, heartbeats at half the gateway's idle time-out, token
//! renewal through flow properties on both links, and each delivery settled
//! `accepted`.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use wcf::amqp::frame::{self, Body, Header, Sasl, AMQP_HEADER, HEARTBEAT, SASL_HEADER};
use wcf::amqp::listener::{
    self as props, renewal_flow, Half, ListenerAttach, ADDRESS_IN_USE, AUTH_FAILED, RELAY_NOT_FOUND,
};
use wcf::amqp::serde_amqp::primitives::Symbol;
use wcf::amqp::types::definitions::{Error as AmqpError, Handle, Role};
use wcf::amqp::types::messaging::{Accepted, DeliveryState};
use wcf::amqp::types::performatives::{
    Begin, ChannelMax, Disposition, Flow, MaxFrameSize, Open, Performative,
};
use wcf::amqp::types::sasl::{SaslCode, SaslInit};

use super::Relay;
use crate::transport::stream::BoxIo;

const CREDIT: u32 = 1000;
const WINDOW: u32 = 5000;
const OUT: u32 = 0;
const IN: u32 = 1;
const MAX_FRAME: u32 = 1 << 20;

/// Why the control channel ended, and whether trying again can help
/// (§6.2: the SDK gives up on relay-not-found and address-already-in-use).
#[derive(Debug)]
pub struct Failure {
    /// Do not reconnect.
    pub fatal: bool,
    /// What happened.
    pub message: String,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            fatal: false,
            message: e.to_string(),
        }
    }
}

impl From<wcf::Error> for Failure {
    fn from(e: wcf::Error) -> Self {
        Failure {
            fatal: false,
            message: e.to_string(),
        }
    }
}

fn refused(e: Option<&AmqpError>, what: &str) -> Failure {
    let (condition, description) = e.map_or((String::new(), String::new()), |e| {
        (
            props::condition(e),
            e.description.clone().unwrap_or_default(),
        )
    });
    Failure {
        fatal: [RELAY_NOT_FOUND, ADDRESS_IN_USE, AUTH_FAILED].contains(&condition.as_str()),
        message: format!("{what}: {condition} {description}"),
    }
}

/// An attached listener.
pub struct Listener {
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    buf: BytesMut,
    heartbeat: Duration,
    next_beat: tokio::time::Instant,
    next_incoming_id: u32,
    delivery_count: u32,
    partial: Vec<u8>,
    /// Deliveries to settle (first and last id), sent on a later call so
    /// that the work starts first, and for several deliveries at once when
    /// more are already buffered.
    unsettled: Option<(u32, u32)>,
}

impl Listener {
    async fn send(&mut self, perf: Performative) -> Result<(), Failure> {
        let bytes = frame::encode(0, &perf, &[])?;
        self.wr.write_all(&bytes).await?;
        self.wr.flush().await?;
        Ok(())
    }

    async fn frame(&mut self) -> Result<frame::Frame, Failure> {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf, MAX_FRAME)? {
                self.buf.advance(n);
                return Ok(f);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    async fn header(&mut self) -> Result<Header, Failure> {
        while self.buf.len() < 8 {
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
        }
        let mut h = [0u8; 8];
        self.buf.copy_to_slice(&mut h);
        Ok(frame::header(&h)?)
    }

    /// The next performative, skipping heartbeats.
    async fn performative(&mut self) -> Result<Performative, Failure> {
        loop {
            match self.frame().await?.body {
                Body::Amqp(p, payload) => {
                    if let Performative::Transfer(_) = &*p {
                        self.partial.extend_from_slice(&payload);
                    }
                    return Ok(*p);
                }
                Body::Empty => {}
                Body::Sasl(_) => return Err(io::Error::other("unexpected SASL frame").into()),
            }
        }
    }

    fn flow(&self, handle: u32) -> Flow {
        Flow {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: WINDOW,
            next_outgoing_id: 1,
            outgoing_window: WINDOW,
            handle: Some(Handle(handle)),
            delivery_count: Some(self.delivery_count),
            link_credit: Some(if handle == IN { CREDIT } else { 0 }),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        }
    }

    /// Send a renewed token on `:in`, then `:out` (§11.2).
    pub async fn renew(&mut self, token: &str) -> Result<(), Failure> {
        for h in [IN, OUT] {
            let f = renewal_flow(self.flow(h), token);
            self.send(Performative::Flow(f)).await?;
        }
        Ok(())
    }

    /// Wait for the next delivery; returns its data section. It is settled
    /// `accepted` when `next` is called again. Heartbeats go out meanwhile.
    pub async fn next(&mut self) -> Result<Vec<u8>, Failure> {
        let more_buffered = frame::is_complete(&self.buf);
        if let Some((first, last)) = self.unsettled.take_if(|_| !more_buffered) {
            self.send(Performative::Disposition(Disposition {
                role: Role::Receiver,
                first,
                last: (last != first).then_some(last),
                settled: true,
                state: Some(DeliveryState::Accepted(Accepted {})),
                batchable: false,
            }))
            .await?;
        }
        loop {
            let beat = self.next_beat;
            let p = tokio::select! {
                p = self.performative() => p?,
                () = tokio::time::sleep_until(beat) => {
                    self.next_beat = beat + self.heartbeat;
                    self.wr.write_all(&HEARTBEAT).await?;
                    self.wr.flush().await?;
                    continue;
                }
            };
            match p {
                Performative::Transfer(t) => {
                    if t.more {
                        continue;
                    }
                    let payload = std::mem::take(&mut self.partial);
                    let id = t.delivery_id.unwrap_or(self.next_incoming_id);
                    self.next_incoming_id = id.wrapping_add(1);
                    self.delivery_count = self.delivery_count.wrapping_add(1);
                    self.unsettled =
                        Some(self.unsettled.map_or((id, id), |(first, _)| (first, id)));
                    if self.delivery_count % (CREDIT / 2) == 0 {
                        let f = self.flow(IN);
                        self.send(Performative::Flow(f)).await?;
                    }
                    return Ok(frame::data_section(&payload)?.to_vec());
                }
                Performative::Detach(d) => return Err(refused(d.error.as_ref(), "detached")),
                Performative::End(e) => return Err(refused(e.error.as_ref(), "session ended")),
                Performative::Close(c) => return Err(refused(c.error.as_ref(), "closed")),
                _ => {}
            }
        }
    }
}

/// Connect, authenticate and attach as a listener of `listener_type`.
pub async fn attach(relay: &Relay, listener_type: &str) -> Result<Listener, Failure> {
    let tcp = TcpStream::connect(&relay.amqp).await?;
    let _ = tcp.set_nodelay(true);
    let tls = relay.tls_to(tcp).await?;
    let (rd, wr) = tokio::io::split(Box::new(tls) as BoxIo);
    let mut l = Listener {
        rd,
        wr,
        buf: BytesMut::new(),
        heartbeat: Duration::from_secs(30),
        next_beat: tokio::time::Instant::now(),
        next_incoming_id: 0,
        delivery_count: 0,
        partial: Vec::new(),
        unsettled: None,
    };
    l.wr.write_all(&SASL_HEADER).await?;
    if l.header().await? != Header::Sasl {
        return Err(io::Error::other("the gateway did not answer with SASL").into());
    }
    match l.frame().await?.body {
        Body::Sasl(Sasl::Mechanisms(_)) => {}
        _ => return Err(io::Error::other("expected sasl-mechanisms").into()),
    }
    let init = SaslInit {
        mechanism: Symbol::from("EXTERNAL"),
        initial_response: None,
        hostname: None,
    };
    l.wr.write_all(&frame::encode_sasl(&Sasl::Init(init))?)
        .await?;
    match l.frame().await?.body {
        Body::Sasl(Sasl::Outcome(o)) if matches!(o.code, SaslCode::Ok) => {}
        _ => return Err(io::Error::other("SASL failed").into()),
    }
    l.wr.write_all(&AMQP_HEADER).await?;
    if l.header().await? != Header::Amqp {
        return Err(io::Error::other("the gateway did not answer with AMQP").into());
    }
    let (first, rest) = relay.host.split_once('.').unwrap_or((&relay.host, ""));
    let hostname = if rest.is_empty() {
        format!("{first}-relay")
    } else {
        format!("{first}-relay.{rest}")
    };
    l.send(Performative::Open(Open {
        container_id: format!("RelayConnection_{}", crate::relay::Guid::random()),
        hostname: Some(hostname),
        max_frame_size: MaxFrameSize(65_536),
        channel_max: ChannelMax(8191),
        idle_time_out: None,
        outgoing_locales: None,
        incoming_locales: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }))
    .await?;
    match l.performative().await? {
        Performative::Open(o) => {
            if let Some(t) = o.idle_time_out.filter(|t| *t > 0) {
                l.heartbeat = Duration::from_millis(u64::from(t / 2).max(100));
            }
        }
        Performative::Close(c) => return Err(refused(c.error.as_ref(), "closed")),
        _ => return Err(io::Error::other("expected open").into()),
    }
    l.send(Performative::Begin(Begin {
        remote_channel: None,
        next_outgoing_id: 1,
        incoming_window: WINDOW,
        outgoing_window: WINDOW,
        handle_max: Handle(262_143),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }))
    .await?;
    match l.performative().await? {
        Performative::Begin(_) => {}
        Performative::Close(c) => return Err(refused(c.error.as_ref(), "closed")),
        _ => return Err(io::Error::other("expected begin").into()),
    }
    let name = format!("RelayLink_{}", crate::relay::Guid::random());
    let token = relay.token();
    for (half, handle) in [(Half::Out, OUT), (Half::In, IN)] {
        let a = ListenerAttach {
            name: format!("{name}:{}", if half == Half::Out { "out" } else { "in" }),
            handle,
            half,
            address: relay.uri.clone(),
            token: Some(token.clone()),
            listener_type: None,
            listener_type_name: Some(listener_type.to_owned()),
            dynamic: true,
            transport_security: !relay.plain,
            client_auth: relay.client_auth,
            client_agent: Some(concat!("relay-gateway-forward/", env!("CARGO_PKG_VERSION")).into()),
            tracking_id: Some(crate::relay::Guid::random().to_string()),
            display_name: None,
        };
        l.send(Performative::Attach(a.to_attach())).await?;
    }
    let mut answered = 0;
    while answered < 2 {
        match l.performative().await? {
            // A refusal is an attach without terminus; its detach follows.
            Performative::Attach(a) if a.source.is_none() && a.target.is_none() => {}
            Performative::Attach(_) => answered += 1,
            Performative::Detach(d) => return Err(refused(d.error.as_ref(), "attach refused")),
            Performative::Close(c) => return Err(refused(c.error.as_ref(), "closed")),
            _ => {}
        }
    }
    let f = l.flow(IN);
    l.send(Performative::Flow(f)).await?;
    l.next_beat = tokio::time::Instant::now() + l.heartbeat;
    Ok(l)
}
