//! The AMQP 1.0 listener control channel (`wcf/PROTOCOL.md` §2.1, §2.2,
//! §6.2, §8, §11.2, §11.5), driving [`wcf::amqp::server`] over a socket:
//! the machine owns the protocol (SASL, `open`, sessions, credit, windows,
//! heartbeats, deadlines); this module reads and writes, keeps the time,
//! admits or refuses each attach against the relay's entities and tokens,
//! registers `:in` links with the core and hands them its requests as
//! notices while their credit lasts. Every frame is written with one write
//! over WebSocket, so that each is its own message.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wcf::amqp::connection::LinkId;
use wcf::amqp::listener::{
    self as props, Half, ListenerAttach, ADDRESS_IN_USE, AUTH_FAILED, NOT_ALLOWED, RELAY_NOT_FOUND,
    RESOURCE_LIMIT,
};
use wcf::amqp::server::{Ending, Event, Server, ServerConfig};
use wcf::amqp::types::definitions::Error as AmqpError;
use wcf::amqp::types::performatives::Attach;
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
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest frame the gateway accepts.
const MAX_FRAME: u32 = 65_536;
/// The highest channel a listener's session may use.
const CHANNEL_MAX: u16 = 255;
/// The most links one listener connection may hold: the SDK attaches two,
/// other AMQP clients (rhea) put many listeners on one connection.
const MAX_LINKS: usize = 1024;
/// Most deliveries gathered into one write.
const BATCH: usize = 64;

/// One admitted link, as the gateway sees it.
struct Link {
    half: Half,
    entity: Entity,
    via: String,
    /// When the token runs out (Unix seconds).
    expiry: u64,
    /// For `:in`: the core's queue of requests for this listener.
    queue: Option<(ListenerGuard, mpsc::Receiver<Request>)>,
    _active: Option<crate::telemetry::Active>,
}

/// The connection's writer.
struct Out {
    wr: WriteHalf<BoxIo>,
    /// Every frame its own write (WebSocket, §11.5); else all at once.
    frame_per_write: bool,
}

impl Out {
    /// Write what the machine queued.
    async fn write(&mut self, conn: &mut Server) -> io::Result<()> {
        let mut batch = Vec::new();
        while let Some(frame) = conn.poll_transmit() {
            if self.frame_per_write {
                self.wr.write_all(&frame).await?;
                self.wr.flush().await?;
            } else {
                batch.extend_from_slice(&frame);
            }
        }
        if !batch.is_empty() {
            self.wr.write_all(&batch).await?;
            self.wr.flush().await?;
        }
        Ok(())
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Serve one control-channel connection (after TLS, or inside a WebSocket);
/// `frame_per_write` keeps every frame its own write (WebSocket).
pub async fn serve(wcf: Wcf, io: BoxIo, local: SocketAddr, frame_per_write: bool) {
    let (mut rd, wr) = tokio::io::split(io);
    let mut out = Out {
        wr,
        frame_per_write,
    };
    let config = ServerConfig {
        container_id: "relay-gateway".into(),
        max_frame: MAX_FRAME,
        channel_max: CHANNEL_MAX,
        idle_time_out: IDLE_TIMEOUT,
        handshake: wcf.settings.limits.handshake_timeout,
        max_links: MAX_LINKS,
    };
    let mut conn = Server::new(config, now());
    let mut listener = Listener {
        wcf,
        named: false,
        local_ip: match local.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::LOCALHOST),
        },
        links: HashMap::new(),
        elsewhere: Elsewhere::default(),
    };
    let ended = listener.run(&mut conn, &mut rd, &mut out).await;
    // Clients on other nodes still waiting for this listener hear it now.
    let wait = listener.wcf.settings.limits.accept_timeout;
    listener.elsewhere.listener_gone(&listener.wcf.relay, wait);
    match ended {
        Ok(Ending::ByPeer) => debug!("AMQP connection closed by the listener"),
        Ok(Ending::Closed(e)) => {
            info!(condition = %props::condition(&e), reason = ?e.description, "closing AMQP connection")
        }
        Ok(Ending::Abandoned(why)) => debug!(reason = why, "AMQP handshake abandoned"),
        Err(e) => {
            debug!(error = %e, "AMQP connection broke");
            return;
        }
    }
    let _ = out.write(&mut conn).await;
    let _ = out.wr.shutdown().await;
}

struct Listener {
    wcf: Wcf,
    /// Whether the log span already names the entity.
    named: bool,
    local_ip: Ipv4Addr,
    links: HashMap<LinkId, Link>,
    /// Clients on other nodes this listener was asked to serve.
    elsewhere: Elsewhere,
}

/// Poll the queues of links that may receive now (credit and session
/// window) for the next request; the others are not polled, so their
/// requests stay in the core, which then sees the listener as busy.
fn poll_queues(
    links: &mut HashMap<LinkId, Link>,
    conn: &Server,
    cx: &mut std::task::Context<'_>,
) -> Poll<(LinkId, Option<Request>)> {
    for (id, l) in links.iter_mut() {
        let Some((_, rx)) = l.queue.as_mut().filter(|_| conn.can_send(*id)) else {
            continue;
        };
        if let Poll::Ready(r) = rx.poll_recv(cx) {
            return Poll::Ready((*id, r));
        }
    }
    Poll::Pending
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Listener {
    async fn run(
        &mut self,
        conn: &mut Server,
        rd: &mut ReadHalf<BoxIo>,
        out: &mut Out,
    ) -> io::Result<Ending> {
        let stopping = self.wcf.shutdown.stopping();
        tokio::pin!(stopping);
        let mut buf = Vec::with_capacity(8192);
        loop {
            while let Some(event) = conn.poll_event(now()) {
                if let Event::Closed(ending) = event {
                    return Ok(ending);
                }
                self.event(conn, event).await;
            }
            out.write(conn).await?;
            let links = &mut self.links;
            tokio::select! {
                r = rd.read_buf(&mut buf) => {
                    if r? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    conn.feed(&buf, now());
                    buf.clear();
                }
                () = sleep_until(conn.poll_timeout()) => conn.handle_timeout(now()),
                (id, r) = poll_fn(|cx| poll_queues(links, conn, cx)) => match r {
                    Some(req) => {
                        self.deliver(conn, id, req);
                        // Whatever else is already queued for this link goes
                        // in the same write, as far as credit allows.
                        for _ in 1..BATCH {
                            let Some(req) = self.ready(conn, id) else { break };
                            self.deliver(conn, id, req);
                        }
                    }
                    None => {
                        // The relay was removed (live reload): the SDK goes
                        // offline on relay-not-found (§6.2).
                        self.links.remove(&id);
                        conn.detach(id, props::error(RELAY_NOT_FOUND, "the relay was removed"));
                    }
                },
                () = &mut stopping => conn.close(props::error(
                    "amqp:connection:forced",
                    "the gateway is shutting down",
                )),
            }
        }
    }

    async fn event(&mut self, conn: &mut Server, event: Event) {
        match event {
            Event::Opened {
                container_id,
                hostname,
            } => debug!(container = %container_id, ?hostname, "AMQP open"),
            Event::Attach { channel, attach } => self.attach(conn, channel, &attach).await,
            Event::Renewal { link, token } => self.renewal(conn, link, &token),
            Event::Detached { link, error } => {
                if let Some(l) = self.links.remove(&link) {
                    match error {
                        Some(_) => info!(via = %l.via, "listener token expired without renewal"),
                        None => debug!(via = %l.via, half = ?l.half, "listener link detached"),
                    }
                }
            }
            Event::Closed(_) => {}
        }
    }

    async fn attach(&mut self, conn: &mut Server, channel: u16, attach: &Attach) {
        match self.admit(attach).await {
            Ok(link) => {
                let grace = self.wcf.settings.limits.token_grace.as_secs();
                conn.accept_link(channel, attach, deadline(link.expiry, grace));
                if !self.named {
                    crate::telemetry::record_entity(&link.entity.path);
                    self.named = true;
                }
                info!(via = %link.via, half = ?link.half, "listener link attached");
                let id = LinkId {
                    channel,
                    handle: attach.handle.0,
                };
                self.links.insert(id, link);
            }
            Err(error) => {
                info!(condition = %props::condition(&error), reason = ?error.description, "listener attach refused");
                conn.refuse_link(channel, attach, error);
            }
        }
    }

    /// A token on a flow: a valid one renews the link; a refused one ends it
    /// only once the current one has expired.
    fn renewal(&mut self, conn: &mut Server, id: LinkId, token: &str) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let settings = &self.wcf.settings;
        let grace = settings.limits.token_grace.as_secs();
        match settings.authorize(Some(token), &link.entity, Right::Listen, 0) {
            Ok(expiry) => {
                debug!(via = %link.via, "listener token renewed");
                link.expiry = expiry;
                conn.renew(id, deadline(expiry, grace));
            }
            Err(e) if expired(link.expiry, grace) => {
                info!(via = %link.via, reason = %e, "renewal token refused after expiry");
                self.links.remove(&id);
                conn.detach(id, props::error(AUTH_FAILED, &e.to_string()));
            }
            Err(e) => {
                info!(via = %link.via, reason = %e, "renewal token refused; the current one stays valid")
            }
        }
    }

    /// Validate an attach and, for `:in`, register the listener.
    async fn admit(&self, attach: &Attach) -> Result<Link, AmqpError> {
        let wcf = &self.wcf;
        let a =
            ListenerAttach::parse(attach).map_err(|e| props::error(NOT_ALLOWED, &e.to_string()))?;
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
            _active: active,
        })
    }

    /// The next queued request of a link that may receive it now.
    fn ready(&mut self, conn: &Server, id: LinkId) -> Option<Request> {
        if !conn.can_send(id) {
            return None;
        }
        self.links.get_mut(&id)?.queue.as_mut()?.1.try_recv().ok()
    }

    /// Send one request to the listener on `:in` as a delivery.
    fn deliver(&mut self, conn: &mut Server, id: LinkId, req: Request) {
        if let (Ask::Connect(_), Some(o)) = (&req.ask, &req.origin) {
            if self.wcf.relay.is_elsewhere(Some(o)) {
                let wait = self.wcf.settings.limits.accept_timeout;
                self.elsewhere.insert(req.id, o.node.clone(), wait);
            }
        }
        let Some(link) = self.links.get(&id) else {
            return;
        };
        let data = match req.ask {
            Ask::Connect(_) => {
                let host = &self.wcf.settings.host;
                match &req.origin {
                    Some(o) => notice(&link.via, &req.id.to_string(), &o.as_ref().into(), host),
                    None => {
                        let here = (self.local_ip, self.wcf.ports).into();
                        notice(&link.via, &req.id.to_string(), &here, host)
                    }
                }
            }
            Ask::Message(inner) => wrap(&link.via, inner.into()),
            Ask::Http { .. } => {
                warn!("an HTTP request cannot go to a WCF listener over AMQP");
                return;
            }
        };
        if conn.send_message(id, &data) {
            debug!(id = %req.id, "delivered to the listener");
        }
    }
}

/// When a token that runs out at `expiry` (Unix seconds) has expired past
/// `grace`, as a deadline for the machine; `None` for never.
fn deadline(expiry: u64, grace: u64) -> Option<std::time::Instant> {
    let left = expiry
        .saturating_add(grace)
        .saturating_add(1)
        .saturating_sub(crate::auth::now());
    now().checked_add(Duration::from_secs(left))
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
