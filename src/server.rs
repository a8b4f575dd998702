//! The gateway's listening sockets (`design.md`, "Endpoints"): bind every
//! configured endpoint (port 0 allowed), report them on one `ready` line,
//! serve HTTP/1.1 with upgrades on plain and TLS sockets with handshake and
//! header timeouts, and stop as the shutdown signal says: stop accepting,
//! let connections finish until the grace period ends, then return.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info_span, Instrument};

use crate::frontend::hybrid::{Hybrid, Peer};
use crate::shutdown::Shutdown;

/// One HTTP endpoint to serve.
pub struct Endpoint {
    /// Its `[listen]` name.
    pub name: &'static str,
    /// The bound socket.
    pub listener: TcpListener,
    /// TLS, for HTTPS/WSS.
    pub tls: Option<TlsAcceptor>,
}

/// Bind `addr` for endpoint `name`.
pub async fn bind(
    name: &'static str,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {name} on {addr}: {e}")))?;
    Ok(Endpoint {
        name,
        listener,
        tls,
    })
}

/// The `ready` line: `ready {"name":"addr",...}` for every bound endpoint.
pub fn ready_line(bound: &[(&str, SocketAddr)]) -> String {
    let map: BTreeMap<&str, String> = bound.iter().map(|(n, a)| (*n, a.to_string())).collect();
    format!("ready {}", serde_json::to_string(&map).unwrap_or_default())
}

/// Serve every endpoint until shutdown; returns once connections are done
/// or drained.
pub async fn run(endpoints: Vec<Endpoint>, hybrid: Hybrid, handshake_timeout: Duration) {
    let shutdown = hybrid.shutdown.clone();
    let mut accept_loops = Vec::new();
    for ep in endpoints {
        accept_loops.push(tokio::spawn(accept_loop(
            ep,
            hybrid.clone(),
            handshake_timeout,
        )));
    }
    shutdown.stopping().await;
    for l in &accept_loops {
        l.abort();
    }
    shutdown.finished().await;
}

async fn accept_loop(ep: Endpoint, hybrid: Hybrid, handshake_timeout: Duration) {
    loop {
        let (tcp, remote) = match ep.listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (hybrid, tls) = (hybrid.clone(), ep.tls.clone());
        let tracked = hybrid.shutdown.track();
        let span = info_span!("conn", endpoint = ep.name, peer = %remote);
        tokio::spawn(
            async move {
                connection(tcp, remote, tls, hybrid, handshake_timeout).await;
                drop(tracked);
            }
            .instrument(span),
        );
    }
}

async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    hybrid: Hybrid,
    handshake_timeout: Duration,
) {
    match tls {
        None => serve_http(tcp, Peer { remote, tls: false }, hybrid, handshake_timeout).await,
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(stream)) => {
                serve_http(
                    stream,
                    Peer { remote, tls: true },
                    hybrid,
                    handshake_timeout,
                )
                .await
            }
            Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
            Err(_) => debug!("TLS handshake timed out"),
        },
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    peer: Peer,
    hybrid: Hybrid,
    handshake_timeout: Duration,
) {
    let shutdown: Shutdown = hybrid.shutdown.clone();
    let service = service_fn(move |req| {
        let hybrid = hybrid.clone();
        async move { Ok::<_, std::convert::Infallible>(hybrid.handle(req, peer).await) }
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
