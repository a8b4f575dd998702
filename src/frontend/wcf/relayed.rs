//! The relayed-connect endpoint (`wcf/PROTOCOL.md` §3.1, §3.3, §10,
//! §11.1, §11.2): the `connect`/via/flag preamble, TLS when the flag is
//! 0x01 (hop by hop, with the gateway's certificate), then one
//! length-prefixed msbin1 message that is either a client's RelayedConnect or
//! a listener's RelayedAccept (told apart by Action, never by the via). A
//! client is checked, parked and announced to one listener; the listener's
//! dial-back answers it; both get their replies and the two streams are
//! spliced untouched. Failures are SOAP faults with the relay codes (§6.1).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info};
use wcf::relay::{
    any_type_reply, ConnectPreamble, Hello, RelayFault, RelayedAccept, RelayedConnect,
    ACTION_RELAYED_ACCEPT_REPLY, ACTION_RELAYED_CONNECT_REPLY, MAX_PREFIXED_MESSAGE,
};
use wcf::soap::Envelope;

use super::entity::split_address;
use super::{Answer, Wcf, FRONTEND_RELAYED};
use crate::config::Right;
use crate::frontend::bridge;
use crate::relay::{CoreError, Guid};
use crate::transport::stream::{self, Conn, Rewind};

/// Serve one connection on the relayed-connect port.
pub async fn serve(wcf: Wcf, tcp: TcpStream) {
    let remote = tcp.peer_addr().ok();
    let handshake = wcf.settings.limits.handshake_timeout;
    let (conn, secure) = match tokio::time::timeout(handshake, preamble(&wcf, tcp)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            info!(reason = %e, "relayed connection refused before its message");
            return;
        }
        Err(_) => {
            info!("relayed connection preamble timed out");
            return;
        }
    };
    hello(wcf, conn, secure, remote).await;
}

/// Why a relayed connection ends before its first message.
#[derive(Debug, thiserror::Error)]
enum PreambleError {
    #[error(transparent)]
    Invalid(#[from] wcf::Error),
    #[error("preamble too long")]
    TooLong,
    #[error("the peer closed during the preamble")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("TLS requested but no certificate is configured")]
    NoCertificate,
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
}

/// Read the preamble and run TLS if it asks; returns the connection and
/// whether it is encrypted.
async fn preamble(wcf: &Wcf, mut tcp: TcpStream) -> Result<(Conn, bool), PreambleError> {
    let mut buf = BytesMut::with_capacity(4096);
    let limits = wcf::Limits::DEFAULT;
    let (pre, used) = loop {
        if let Some(done) = ConnectPreamble::decode(&buf, limits)? {
            break done;
        }
        if buf.len() > 16 + limits.max_via {
            return Err(PreambleError::TooLong);
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(PreambleError::Closed);
        }
    };
    let rest = buf.split_off(used);
    debug!(via = %pre.via, tls = pre.tls, "relayed preamble");
    if !pre.tls {
        return Ok((Conn::tcp(tcp, rest), false));
    }
    let Some(acceptor) = wcf.tls.clone() else {
        return Err(PreambleError::NoCertificate);
    };
    acceptor
        .accept(Rewind::new(rest.freeze(), tcp))
        .await
        .map(|s| (Conn::new(Box::new(s), BytesMut::new()), true))
        .map_err(PreambleError::Tls)
}

/// Read the first message and act on it: a client's RelayedConnect or a
/// listener's RelayedAccept. `secure` says whether the leg is encrypted;
/// `remote` is the peer's address, when known.
pub async fn hello(wcf: Wcf, mut conn: Conn, secure: bool, remote: Option<SocketAddr>) {
    let handshake = wcf.settings.limits.handshake_timeout;
    let msg = match tokio::time::timeout(handshake, conn.read_message(MAX_PREFIXED_MESSAGE)).await {
        Ok(Ok(m)) => m,
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            // A probe, or a listener's spare dial-back that was never used.
            debug!(reason = %e, "connection closed before its first message");
            return;
        }
        Ok(Err(e)) => {
            info!(reason = %e, "relayed connection refused");
            let _ = fault(&mut conn, RelayFault::InvalidRequest, &e.to_string()).await;
            return;
        }
        Err(_) => {
            info!("relayed connection sent no message in time");
            return;
        }
    };
    let hello =
        Envelope::decode(&msg, wcf::Limits::DEFAULT).and_then(|env| Hello::from_envelope(&env));
    match hello {
        Ok(Hello::Connect(c)) => client(&wcf, conn, c, secure, remote).await,
        Ok(Hello::Accept(a)) => listener(&wcf, conn, a).await,
        Err(e) => {
            info!(reason = %e, "relayed message refused");
            let _ = fault(
                &mut conn,
                RelayFault::InvalidRequest,
                &format!("invalid relay message: {e}"),
            )
            .await;
        }
    }
}

/// Send a relay fault and close.
async fn fault(conn: &mut Conn, code: RelayFault, reason: &str) -> std::io::Result<()> {
    conn.write_message(&code.envelope(reason, None).to_msbin1())
        .await?;
    conn.shutdown().await
}

fn core_fault(e: &CoreError) -> (RelayFault, String) {
    match e {
        CoreError::NoListener | CoreError::NoListenerMatches => (
            RelayFault::EndpointNotFound,
            "No service is hosted at the specified address.".into(),
        ),
        CoreError::Timeout | CoreError::ListenerGone => (
            RelayFault::ConnectionFailed,
            "The listener did not accept the connection in time.".into(),
        ),
        CoreError::RendezvousFull(_) | CoreError::ListenerBusy | CoreError::ListenerQuota(_) => (
            RelayFault::QuotaExceeded,
            format!("The relay has too many pending connections: {e}."),
        ),
        CoreError::UnknownRendezvous => (RelayFault::InvalidRequest, e.to_string()),
    }
}

/// Who answers a client: a WCF listener, or on a bridged path a Hybrid
/// Connections listener (`crate::frontend::bridge`).
enum Target {
    Wcf(super::entity::Entity, super::entity::Kind),
    Hybrid(crate::frontend::hybrid::entity::Entity),
}

/// The answering listener's side of the connection.
enum Answered {
    /// A WCF listener's dial-back, still owed its RelayedAccept reply.
    Wcf(Conn),
    /// On a bridged path, the leg of whichever listener answered.
    Hybrid(crate::relay::Leg),
}

/// A client's RelayedConnect: check, park, notify, wait, reply, splice.
async fn client(
    wcf: &Wcf,
    mut conn: Conn,
    c: RelayedConnect,
    secure: bool,
    remote: Option<SocketAddr>,
) {
    let s = &wcf.settings;
    let Some((_, path)) = split_address(&c.uri) else {
        let _ = fault(
            &mut conn,
            RelayFault::InvalidRequest,
            "Connect/Uri is not a URI",
        )
        .await;
        return;
    };
    let label = wcf.entity_label(path);
    let refuse = |status: u16| wcf.metrics.sender(&label, FRONTEND_RELAYED, status);
    // A hybrid connection that takes WCF clients serves them with all its
    // listeners, of both kinds; any other path, with its WCF listeners.
    let bridged = bridge::hybrid_for_wcf_client(&wcf.hybrid, &wcf.relay, path);
    let target = bridged.map(Target::Hybrid).or_else(|| {
        s.resolve_client(path, "NetTcp", &wcf.relay)
            .map(|(entity, kind)| Target::Wcf(entity, kind))
    });
    let Some(target) = target else {
        info!(uri = %c.uri, "connect refused: no listener");
        refuse(404);
        let _ = fault(
            &mut conn,
            RelayFault::EndpointNotFound,
            "No service is hosted at the specified address.",
        )
        .await;
        return;
    };
    let token = c.token.as_deref();
    let (path, authorized) = match &target {
        Target::Wcf(entity, kind) => {
            if kind.transport_security && !secure {
                refuse(400);
                let _ = fault(
                    &mut conn,
                    RelayFault::NoTransportSecurity,
                    "The listener requires transport security; connect with TLS.",
                )
                .await;
                return;
            }
            let checked = entity.requires_auth.unwrap_or(kind.client_auth);
            let authorized = if checked {
                s.authorize(token, entity, Right::Send, 0).map(|_| ())
            } else {
                Ok(())
            };
            (entity.path.clone(), authorized)
        }
        Target::Hybrid(entity) => {
            let authorized = if entity.requires_auth {
                wcf.hybrid.authorize(token, entity, Right::Send, 0)
            } else {
                Ok(())
            };
            (entity.path.clone(), authorized)
        }
    };
    crate::telemetry::record_entity(&path);
    if let Err(e) = authorized {
        info!(path = %path, reason = %e, "connect refused");
        wcf.metrics
            .token_rejected(&label, FRONTEND_RELAYED, crate::telemetry::token_reason(&e));
        refuse(401);
        let _ = fault(&mut conn, RelayFault::AuthorizationFailed, &e.to_string()).await;
        return;
    }
    let started = Instant::now();
    let answered = match &target {
        Target::Wcf(entity, kind) => wcf.dial_back(&entity.path, kind).await.map(Answered::Wcf),
        Target::Hybrid(entity) => {
            let tracking = c
                .tracking_id
                .clone()
                .unwrap_or_else(|| crate::relay::Guid::random().to_string());
            let wait = s.limits.accept_timeout;
            let host = &wcf.hybrid.host;
            let client = (tracking, remote, secure);
            bridge::listener_for_wcf_client(&wcf.relay, host, entity, client, wait)
                .await
                .map(Answered::Hybrid)
        }
    };
    let answered = match answered {
        Ok(a) => a,
        Err(e) => {
            if let (CoreError::RendezvousFull(_) | CoreError::ListenerBusy, Some(limit)) =
                (&e, e.limit())
            {
                wcf.metrics.limit_hit(&label, FRONTEND_RELAYED, limit);
            }
            info!(path = %path, reason = %e, side = ?e.side(), "connect failed");
            refuse(if matches!(e, CoreError::Timeout) {
                504
            } else {
                404
            });
            let (code, reason) = core_fault(&e);
            let _ = fault(&mut conn, code, &reason).await;
            return;
        }
    };
    let connect_reply = any_type_reply(ACTION_RELAYED_CONNECT_REPLY).to_msbin1();
    // The client's reply first: its first bytes have the longer way to go.
    // A listener whose dial-back breaks before its own reply has still
    // accepted; its client sees the session end, as if it had closed.
    if conn.write_message(&connect_reply).await.is_err() {
        return;
    }
    let limits = s.limits.splice();
    let stats = match answered {
        Answered::Wcf(mut listener) => {
            let accept_reply = any_type_reply(ACTION_RELAYED_ACCEPT_REPLY).to_msbin1();
            if let Err(e) = listener.write_message(&accept_reply).await {
                info!(reason = %e, "listener dial-back broke before its reply");
                return;
            }
            record_start(wcf, &label, started);
            let _tracked = wcf.shutdown.track();
            let _active = wcf.metrics.connection_started(&label, FRONTEND_RELAYED);
            stream::splice(conn, listener, limits, wcf.shutdown.drained()).await
        }
        Answered::Hybrid(listener) => {
            record_start(wcf, &label, started);
            let _tracked = wcf.shutdown.track();
            let _active = wcf.metrics.connection_started(&label, FRONTEND_RELAYED);
            let client = stream::leg(conn.into_io());
            crate::relay::splice(client, listener, limits, wcf.shutdown.drained()).await
        }
    };
    wcf.metrics
        .bytes(&label, FRONTEND_RELAYED, stats.a_to_b, stats.b_to_a);
    wcf.metrics
        .splice_ended(&label, FRONTEND_RELAYED, stats.end.label());
    debug!(
        client_to_listener = stats.a_to_b,
        listener_to_client = stats.b_to_a,
        end = %stats.end,
        "relayed connection ended"
    );
}

/// Count an answered connect and its setup time.
fn record_start(wcf: &Wcf, label: &str, started: Instant) {
    wcf.metrics.sender(label, FRONTEND_RELAYED, 200);
    wcf.metrics
        .rendezvous(label, FRONTEND_RELAYED, started.elapsed().as_secs_f64());
}

/// A listener's dial-back: hand it to the parked client, which replies.
async fn listener(wcf: &Wcf, mut conn: Conn, a: RelayedAccept) {
    // The SDK's listener writes back the id it parsed as a GUID, in its own form.
    match Guid::parse(&a.id).and_then(|id| wcf.relay.rendezvous.take(id)) {
        Some(claim) => {
            if claim.send(Box::new(Answer(conn))).is_err() {
                debug!(id = %a.id, "the client left before the listener answered");
            }
        }
        None => {
            info!(id = %a.id, "dial-back for an unknown rendezvous");
            let _ = fault(
                &mut conn,
                RelayFault::InvalidRequest,
                "No pending connection has this id; it is unknown, used or expired.",
            )
            .await;
        }
    }
}
