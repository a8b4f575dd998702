//! `forward --listen`'s control channel (`wcf/PROTOCOL.md` §2.1, §8, §11.2):
//! TLS to the gateway's AMQP port, then [`wcf::amqp::client`] driven over
//! it: the SDK's SASL, `open`, session and `RelayLink_<guid>:out`/`:in`
//! attach pair, heartbeats, token renewal and settlement all live there;
//! this module moves the bytes and keeps the time.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wcf::amqp::client::{Client, ClientConfig, ClientEvent, Ended};
use wcf::amqp::listener::{Half, ListenerAttach};

use super::Relay;
use crate::relay::Guid;
use crate::transport::stream::BoxIo;

/// Credit granted on `:in`, as the SDK grants it.
const CREDIT: u32 = 1000;

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

impl From<Ended> for Failure {
    fn from(e: Ended) -> Self {
        Failure {
            fatal: e.fatal,
            message: e.message,
        }
    }
}

/// An attached listener.
pub struct Listener {
    rd: ReadHalf<BoxIo>,
    wr: WriteHalf<BoxIo>,
    buf: Vec<u8>,
    conn: Client,
}

impl Listener {
    /// Write what the machine queued, in one write.
    async fn flush(&mut self) -> Result<(), Failure> {
        let mut bytes = Vec::new();
        while let Some(b) = self.conn.poll_transmit() {
            bytes.extend_from_slice(&b);
        }
        if !bytes.is_empty() {
            self.wr.write_all(&bytes).await?;
            self.wr.flush().await?;
        }
        Ok(())
    }

    /// The next event, reading and sending heartbeats until one comes.
    async fn event(&mut self) -> Result<ClientEvent, Failure> {
        loop {
            if let Some(e) = self.conn.poll_event(Instant::now().into_std()) {
                self.flush().await?;
                return Ok(e);
            }
            self.flush().await?;
            let beat = self.conn.poll_timeout().map(Instant::from_std);
            tokio::select! {
                n = self.rd.read_buf(&mut self.buf) => {
                    if n? == 0 {
                        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                    }
                    self.conn.feed(&self.buf, Instant::now().into_std());
                    self.buf.clear();
                }
                () = sleep_until(beat) => self.conn.handle_timeout(Instant::now().into_std()),
            }
        }
    }

    /// Send a renewed token on `:in`, then `:out` (§11.2).
    pub async fn renew(&mut self, token: &str) -> Result<(), Failure> {
        self.conn.renew(token);
        self.flush().await
    }

    /// Wait for the next delivery; returns its data section. It is settled
    /// `accepted` when `next` is called again (with the others received by
    /// then, unless more are already buffered).
    pub async fn next(&mut self) -> Result<Vec<u8>, Failure> {
        if !self.conn.has_frame() {
            self.conn.settle();
        }
        loop {
            match self.event().await? {
                ClientEvent::Delivery(data) => return Ok(data),
                ClientEvent::Ended(e) => return Err(e.into()),
                ClientEvent::Attached => {}
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Connect, authenticate and attach as a listener of `listener_type`.
pub async fn attach(relay: &Relay, listener_type: &str) -> Result<Listener, Failure> {
    let tcp = TcpStream::connect(&relay.amqp).await?;
    let _ = tcp.set_nodelay(true);
    let tls = relay.tls_to(tcp).await?;
    let (rd, wr) = tokio::io::split(Box::new(tls) as BoxIo);
    let (first, rest) = relay.host.split_once('.').unwrap_or((&relay.host, ""));
    let hostname = if rest.is_empty() {
        format!("{first}-relay")
    } else {
        format!("{first}-relay.{rest}")
    };
    let name = format!("RelayLink_{}", Guid::random());
    let token = relay.token();
    let attach = |half: Half| {
        ListenerAttach {
            token: Some(token.clone()),
            listener_type_name: Some(listener_type.to_owned()),
            transport_security: !relay.plain,
            client_auth: relay.client_auth,
            client_agent: Some(concat!("relay-gateway-forward/", env!("CARGO_PKG_VERSION")).into()),
            tracking_id: Some(Guid::random().to_string()),
            ..ListenerAttach::half_of(&name, half, &relay.uri)
        }
        .to_attach()
    };
    let config = ClientConfig {
        container_id: format!("RelayConnection_{}", Guid::random()),
        hostname,
        attaches: [Half::Out, Half::In].map(attach),
        credit: CREDIT,
    };
    let mut l = Listener {
        rd,
        wr,
        buf: Vec::with_capacity(8192),
        conn: Client::new(config, Instant::now().into_std()),
    };
    loop {
        match l.event().await? {
            ClientEvent::Attached => return Ok(l),
            ClientEvent::Ended(e) => return Err(e.into()),
            ClientEvent::Delivery(_) => {}
        }
    }
}
