//! The gateway's listening sockets (`src/main.rs`, "Design"): bind every
//! configured endpoint (port 0 allowed), report them on one `ready` line,
//! serve HTTP/1.1 with upgrades on plain and TLS sockets with handshake and
//! header timeouts, AMQP over TLS and the relayed-connect port for the WCF
//! front end, and stop as the shutdown signal says: stop accepting, let
//! connections finish until the grace period ends, then return.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info_span, Instrument};

use crate::frontend::hybrid::{Hybrid, Peer};
use crate::frontend::spelling::Watched;
use crate::frontend::wcf::{self, Wcf};
use crate::shutdown::Shutdown;

/// What an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with upgrades (Hybrid Connections, WCF over WebSocket).
    Http,
    /// AMQP 1.0, TLS from the first byte (WCF listeners).
    Amqps,
    /// The relayed-connect preamble (WCF clients and dial-backs).
    Relayed,
    /// net.tcp for one-way and event senders; `true` offers the TLS upgrade.
    NetTcp(bool),
}

/// Connection ids for the log spans.
static CONNECTION_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One endpoint to serve.
pub struct Endpoint {
    /// Its `[listen]` name.
    pub name: &'static str,
    /// The bound socket.
    pub listener: TcpListener,
    /// TLS, for HTTPS/WSS and AMQPS.
    pub tls: Option<TlsAcceptor>,
    /// What it speaks.
    pub protocol: Protocol,
}

/// Bind `addr` for endpoint `name`.
pub async fn bind(
    name: &'static str,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    protocol: Protocol,
) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {name} on {addr}: {e}")))?;
    Ok(Endpoint {
        name,
        listener,
        tls,
        protocol,
    })
}

/// The front ends connections are handed to.
#[derive(Clone)]
pub struct FrontEnds {
    /// Hybrid Connections (and the HTTP endpoints).
    pub hybrid: Hybrid,
    /// The WCF relay.
    pub wcf: Wcf,
    /// The settings in force (swapped on reload).
    pub live: std::sync::Arc<crate::reload::Live>,
}

impl FrontEnds {
    /// The front ends with the settings in force now, for a new connection.
    fn current(&self) -> FrontEnds {
        let now = self.live.current();
        let mut f = self.clone();
        f.wcf.hybrid = now.hybrid.clone();
        f.hybrid.wcf = now.wcf.clone();
        f.hybrid.settings = now.hybrid;
        f.wcf.settings = now.wcf;
        f
    }
}

/// The `ready` line: `ready {"name":"addr",...}` for every bound endpoint.
pub fn ready_line(bound: &[(&str, SocketAddr)]) -> String {
    let map: BTreeMap<&str, String> = bound.iter().map(|(n, a)| (*n, a.to_string())).collect();
    format!("ready {}", serde_json::to_string(&map).unwrap_or_default())
}

/// Serve every endpoint until shutdown; returns once connections are done
/// or drained.
pub async fn run(endpoints: Vec<Endpoint>, fronts: FrontEnds) {
    let shutdown = fronts.hybrid.shutdown.clone();
    let mut accept_loops = Vec::new();
    for ep in endpoints {
        accept_loops.push(tokio::spawn(accept_loop(ep, fronts.clone())));
    }
    shutdown.stopping().await;
    for l in &accept_loops {
        l.abort();
    }
    shutdown.finished().await;
}

/// Accepting on one listening socket. At most `max_connections` of its
/// connections are open at once: at the cap the loop stops accepting (the
/// kernel's backlog holds newcomers) until one ends, counting the hit
/// (`connection_cap_hits`). Accept fails when the process is out of
/// descriptors or memory, and fails again at once until some are freed: the
/// loop then waits, 10 ms doubling to 1 s, instead of spinning, counts every
/// failure (`accept_errors`) and logs at most one line per 10 s; service
/// resumes by itself with the next accept that succeeds.
pub struct Acceptor<'a> {
    listener: &'a TcpListener,
    name: &'static str,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    open: std::sync::Arc<tokio::sync::Semaphore>,
    delay: Duration,
    failed: u64,
    logged: Option<std::time::Instant>,
}

/// Holds one of an endpoint's connection slots while the connection lives.
pub type Slot = tokio::sync::OwnedSemaphorePermit;

impl<'a> Acceptor<'a> {
    /// Accept on `listener`, the endpoint `name`, at most `max_connections`
    /// open at once.
    pub fn new(
        listener: &'a TcpListener,
        name: &'static str,
        metrics: std::sync::Arc<crate::telemetry::Metrics>,
        max_connections: usize,
    ) -> Self {
        Acceptor {
            listener,
            name,
            metrics,
            open: std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
            delay: Duration::ZERO,
            failed: 0,
            logged: None,
        }
    }

    /// A connection slot, waiting (and counting the hit) at the cap.
    async fn slot(&mut self) -> Slot {
        if let Ok(slot) = self.open.clone().try_acquire_owned() {
            return slot;
        }
        self.metrics.connection_cap_hit(self.name);
        tracing::warn!(
            endpoint = self.name,
            "connection cap reached; accepting again once one ends"
        );
        loop {
            // The semaphore is never closed, so this only waits.
            if let Ok(slot) = self.open.clone().acquire_owned().await {
                return slot;
            }
        }
    }

    /// The next connection, with the slot it holds.
    pub async fn next(&mut self) -> (TcpStream, SocketAddr, Slot) {
        let slot = self.slot().await;
        loop {
            match self.listener.accept().await {
                Ok((tcp, remote)) => {
                    if self.failed > 0 {
                        tracing::warn!(
                            endpoint = self.name,
                            failed = self.failed,
                            "accepting again"
                        );
                    }
                    (self.delay, self.failed) = (Duration::ZERO, 0);
                    return (tcp, remote, slot);
                }
                Err(e) => {
                    self.metrics.accept_failed(self.name);
                    self.failed += 1;
                    if self
                        .logged
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
                    {
                        tracing::warn!(endpoint = self.name, error = %e, failed = self.failed, "accept failed; backing off");
                        self.logged = Some(std::time::Instant::now());
                    }
                    self.delay =
                        (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tokio::time::sleep(self.delay).await;
                }
            }
        }
    }
}

async fn accept_loop(ep: Endpoint, fronts: FrontEnds) {
    let max = fronts.live.current().hybrid.limits.max_connections;
    let mut acceptor = Acceptor::new(&ep.listener, ep.name, fronts.hybrid.metrics.clone(), max);
    loop {
        let (tcp, remote, slot) = acceptor.next().await;
        let _ = tcp.set_nodelay(true);
        let (fronts, tls) = (fronts.current(), ep.tls.clone());
        // The configuration in force when the connection came.
        let handshake_timeout = fronts.hybrid.settings.limits.handshake_timeout;
        let tracked = fronts.hybrid.shutdown.track();
        let span = info_span!(
            "conn",
            id = CONNECTION_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            endpoint = ep.name,
            peer = %remote,
            entity = tracing::field::Empty,
        );
        // Each protocol's connection future (kilobytes) is made on the heap
        // once, so spawning moves a pointer rather than the whole state.
        let serve: Pin<Box<dyn Future<Output = ()> + Send>> = match ep.protocol {
            Protocol::Http => Box::pin(connection(tcp, remote, tls, fronts, handshake_timeout)),
            Protocol::Relayed => Box::pin(wcf::relayed::serve(fronts.wcf, tcp)),
            Protocol::NetTcp(upgrade) => Box::pin(wcf::oneway::serve(fronts.wcf, tcp, upgrade)),
            Protocol::Amqps => Box::pin(amqps(tcp, tls, fronts.wcf, handshake_timeout)),
        };
        tokio::spawn(
            async move {
                serve.await;
                drop((tracked, slot));
            }
            .instrument(span),
        );
    }
}

async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    fronts: FrontEnds,
    handshake_timeout: Duration,
) {
    let Ok(local) = tcp.local_addr() else { return };
    let peer = |tls| Peer { remote, local, tls };
    match tls {
        None => serve_http(tcp, peer(false), fronts, handshake_timeout).await,
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(stream)) => serve_http(stream, peer(true), fronts, handshake_timeout).await,
            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
            Err(_) => debug!("TLS handshake timed out"),
        },
    }
}

async fn amqps(tcp: TcpStream, tls: Option<TlsAcceptor>, front: Wcf, handshake_timeout: Duration) {
    let Ok(local) = tcp.local_addr() else { return };
    let Some(acceptor) = tls else { return };
    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => wcf::amqp::serve(front, Box::new(stream), local, false).await,
        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
        Err(_) => debug!("TLS handshake timed out"),
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    peer: Peer,
    fronts: FrontEnds,
    handshake_timeout: Duration,
) {
    let shutdown: Shutdown = fronts.hybrid.shutdown.clone();
    // Header names as the client spelled them, which hyper does not keep.
    let (io, spellings) = Watched::new(io);
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let fronts = fronts.clone();
        if let Some(names) = spellings.next() {
            req.extensions_mut().insert(names);
        }
        async move {
            let path = req.uri().path();
            let response = if path == wcf::websocket::PATH {
                wcf::websocket::handle(&fronts.wcf, req, peer)
            } else if let Some((entity, kind)) =
                (!path.starts_with("/$hc/")) // never a WCF relay
                    .then(|| wcf::http::resolve(&fronts.wcf, path))
                    .flatten()
            {
                wcf::http::handle(&fronts.wcf, req, peer, entity, kind).await
            } else {
                fronts.hybrid.handle(req, peer).await
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopping = shutdown.stopping();
    tokio::pin!(stopping);
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(error = %e, "connection ended with an error") } }
        () = &mut stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
        }
    }
}
