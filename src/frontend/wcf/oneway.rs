//! One-way and event relays (`wcf/PROTOCOL.md` §5, §6, §11.4): the
//! gateway as a net.tcp endpoint for NetOnewayRelayBinding and
//! NetEventRelayBinding senders, plain on `[listen] nettcp` (9350) and with
//! the NMF `application/ssl-tls` upgrade on `nettcps` (9351). It terminates
//! the sender's duplex msbinsession1 session: the Connect (Send token, the
//! relay by longest path prefix), every application message re-encoded as
//! plain msbin1 and delivered over AMQP to one Unicast listener or to every
//! Multicast listener, each answered with a correlated reply, and OnewayPing
//! with its renewed token re-checked. Framing errors get framing faults;
//! relay errors get SOAP faults with the relay codes.
//!
//! Queue policy (listener credit is respected by the AMQP side, which only
//! takes a message from a listener's queue of `listener_queue` while the
//! listener has credit): a Unicast message goes to a listener with room in
//! its queue; when every queue is full the sender's reply waits for room
//! (backpressure: the SDK sends its next message only after the reply), up
//! to `accept_timeout`, after which the sender gets QuotaExceededFault and
//! the message is not taken. A Multicast message goes to every listener with
//! room at once; a listener whose queue is full misses it (counted as a
//! `listener_queue` limit hit) so that one slow subscriber cannot stall the
//! others, and the sender gets success.
//!
//! Deadlines: a session must complete its preamble and present a valid
//! Connect within `handshake_timeout` of connecting, else it gets the
//! `ConnectionDispatchFailed` framing fault and is closed. After the
//! Connect, a session with no record for `oneway_session_idle` is ended
//! (End record): the SDK sends an OnewayPing after 30 s without a message,
//! so a live sender never comes near the default 90 s.

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};
use wcf::framing::preamble::{Encoding, PreambleConfig, ServerPreamble, Step};
use wcf::framing::{FaultCode, Mode, Record, ENCODING_MSBINSESSION1, UPGRADE_TLS};
use wcf::relay::{
    access_token, correlated_reply, Connect, RelayFault, ACTION_CONNECT, ACTION_CONNECT_REPLY,
    ACTION_ONEWAY_PING, ACTION_ONEWAY_PING_REPLY, ACTION_SEND_REPLY,
};
use wcf::soap::Envelope;

use super::entity::{split_address, Entity, Kind};
use super::nmf::Session;
use super::Wcf;
use crate::config::{Right, WcfRelayType};
use crate::relay::{CoreError, Filter};
use crate::transport::stream::{Rewind, Transport};

/// Largest framing record read at all; beyond it the session ends with a
/// framing fault.
const MAX_RECORD: usize = 4 << 20;

/// The `frontend` label of one-way and event senders.
pub const FRONTEND_ONEWAY: &str = "wcf_oneway";

/// What a Connect established: the relay and how to reach its listeners.
struct Target {
    entity: Entity,
    family: &'static str,
    kind: Option<Kind>,
}

/// Serve one sender connection; `upgrade` allows the TLS upgrade (9351).
pub async fn serve(wcf: Wcf, tcp: TcpStream, upgrade: bool) {
    let handshake = wcf.settings.limits.handshake_timeout;
    let connect_by = Instant::now() + handshake;
    let session = Session::new(Transport::Tcp(tcp), MAX_RECORD);
    let config = PreambleConfig {
        modes: vec![Mode::Duplex],
        encodings: vec![Encoding::Known(ENCODING_MSBINSESSION1)],
        upgrades: if upgrade && wcf.tls.is_some() {
            vec![UPGRADE_TLS.to_owned()]
        } else {
            Vec::new()
        },
    };
    let session = match tokio::time::timeout(handshake, preamble(&wcf, session, config)).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(_) => {
            info!("net.tcp preamble timed out");
            return;
        }
    };
    messages(&wcf, session, connect_by).await;
}

/// Run the preamble (and the TLS upgrade); `None` when the session ended.
async fn preamble(wcf: &Wcf, mut s: Session, config: PreambleConfig) -> Option<Session> {
    let mut machine = ServerPreamble::new(config);
    loop {
        let (at, record) = match s.record().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                debug!("net.tcp connection closed during the preamble");
                return None;
            }
            Err(e) => {
                info!(reason = %e, "net.tcp preamble refused");
                s.framing_fault(FaultCode::ConnectionDispatchFailed).await;
                return None;
            }
        };
        match machine.feed(&record, at) {
            Ok(Step::Continue) => {}
            Ok(Step::Upgrade(_)) => {
                let acceptor = wcf.tls.clone()?;
                if s.send(&Record::UpgradeResponse).await.is_err() {
                    return None;
                }
                let (tcp, head) = s.take_tcp()?;
                match acceptor.accept(Rewind::new(head, tcp)).await {
                    Ok(tls) => s = s.upgraded(Box::new(tls)),
                    Err(e) => {
                        info!(reason = %e, "net.tcp TLS upgrade failed");
                        return None;
                    }
                }
            }
            Ok(Step::Complete(p)) => {
                debug!(via = %p.via, secure = s.secure(), "net.tcp preamble");
                s.send(&Record::PreambleAck).await.ok()?;
                return Some(s);
            }
            Err(wcf::Error::Framing { fault, message, .. }) => {
                info!(reason = %message, "net.tcp preamble refused");
                s.framing_fault(fault).await;
                return None;
            }
            Err(e) => {
                info!(reason = %e, "net.tcp preamble refused");
                s.framing_fault(FaultCode::ConnectionDispatchFailed).await;
                return None;
            }
        }
    }
}

/// The session: Connect, then messages and pings, until End.
async fn messages(wcf: &Wcf, mut s: Session, connect_by: Instant) {
    let mut target: Option<Target> = None;
    loop {
        let deadline = match target {
            None => connect_by,
            Some(_) => Instant::now() + wcf.settings.limits.oneway_session_idle,
        };
        let Ok(record) = tokio::time::timeout_at(deadline, s.record()).await else {
            if target.is_none() {
                info!("net.tcp session sent no valid Connect in time");
                s.framing_fault(FaultCode::ConnectionDispatchFailed).await;
            } else {
                info!("net.tcp session idle; ending it");
                let _ = s.send(&Record::End).await;
                let _ = s.shutdown().await;
            }
            return;
        };
        let payload = match record {
            Ok(Some((_, Record::SizedEnvelope(p)))) => p,
            Ok(Some((_, Record::End))) => {
                let _ = s.send(&Record::End).await;
                let _ = s.shutdown().await;
                return;
            }
            Ok(Some((_, other))) => {
                info!(record = %other.describe(), "unexpected record in a one-way session");
                s.framing_fault(FaultCode::ContentTypeInvalid).await;
                return;
            }
            Ok(None) => return,
            Err(e) => {
                info!(reason = %e, "one-way session framing error");
                s.framing_fault(FaultCode::MaxMessageSizeExceeded).await;
                return;
            }
        };
        let msg = match s.transcode(&payload) {
            Ok(msg) => msg,
            Err(e) => {
                info!(reason = %e, "undecodable one-way message");
                let _ = fault(
                    &mut s,
                    RelayFault::InvalidRequest,
                    &format!("the message could not be read: {e}"),
                    None,
                )
                .await;
                continue;
            }
        };
        let relates = msg.message_id.as_deref();
        // Connect and OnewayPing are read in full; application messages pass as they are.
        let control = match msg.action.as_deref() {
            Some(ACTION_CONNECT | ACTION_ONEWAY_PING) => {
                match Envelope::decode(&msg.doc, wcf::Limits::DEFAULT.with_max_message(MAX_RECORD))
                {
                    Ok(env) => Some(env),
                    Err(e) => {
                        let reason = format!("the message could not be read: {e}");
                        if fault(&mut s, RelayFault::InvalidRequest, &reason, relates)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                }
            }
            _ => None,
        };
        let done = match (msg.action.as_deref(), &control) {
            (Some(ACTION_CONNECT), Some(env)) => match connect(wcf, env, s.secure()) {
                Ok(t) => {
                    target = Some(t);
                    s.send_envelope(&correlated_reply(
                        ACTION_CONNECT_REPLY,
                        relates.unwrap_or_default(),
                    ))
                    .await
                }
                Err((code, reason)) => fault(&mut s, code, &reason, relates).await,
            },
            (Some(ACTION_ONEWAY_PING), Some(env)) => {
                match (ping_token(wcf, env, target.as_ref()), relates) {
                    (Ok(()), Some(r)) => {
                        s.send_envelope(&correlated_reply(ACTION_ONEWAY_PING_REPLY, r))
                            .await
                    }
                    (Ok(()), None) => Ok(()),
                    (Err(e), _) => {
                        let reason = e.to_string();
                        fault(&mut s, RelayFault::AuthorizationFailed, &reason, relates).await
                    }
                }
            }
            _ => match (
                &target,
                payload.len() > wcf.settings.limits.max_oneway_message,
            ) {
                (None, _) => {
                    fault(
                        &mut s,
                        RelayFault::InvalidRequest,
                        "the session has not connected to a relay",
                        relates,
                    )
                    .await
                }
                (Some(_), true) => {
                    fault(
                        &mut s,
                        RelayFault::QuotaExceeded,
                        &format!(
                            "the message is {} bytes; the limit is {}",
                            payload.len(),
                            wcf.settings.limits.max_oneway_message
                        ),
                        relates,
                    )
                    .await
                }
                (Some(t), false) => match deliver(wcf, t, msg.doc).await {
                    Ok(()) => {
                        if let Some(r) = relates {
                            s.send_later(ACTION_SEND_REPLY, r);
                        }
                        Ok(())
                    }
                    Err((code, reason)) => fault(&mut s, code, &reason, relates).await,
                },
            },
        };
        if let Err(e) = done {
            debug!(error = %e, "one-way session broke");
            return;
        }
    }
}

type Refusal = (RelayFault, String);

/// Answer with a relay fault.
async fn fault(
    s: &mut Session,
    code: RelayFault,
    reason: &str,
    relates_to: Option<&str>,
) -> std::io::Result<()> {
    s.send_envelope(&code.envelope(reason, relates_to)).await
}

/// Check a Connect and find its relay.
fn connect(wcf: &Wcf, env: &Envelope, secure: bool) -> Result<Target, Refusal> {
    let c = Connect::from_envelope(env).map_err(|e| (RelayFault::InvalidRequest, e.to_string()))?;
    let (_, path) = split_address(&c.uri).ok_or((
        RelayFault::InvalidRequest,
        "Connect/Uri is not a URI".to_owned(),
    ))?;
    let s = &wcf.settings;
    let registry = &wcf.relay;
    let live = ["NetOneway", "NetEvent"].into_iter().find_map(|f| {
        s.resolve_client(path, f, registry)
            .map(|(e, k)| (e, k.family, Some(k)))
    });
    let oneway: Vec<&crate::config::WcfRelay> = s
        .entities
        .iter()
        .filter(|e| matches!(e.kind, WcfRelayType::NetOneway | WcfRelayType::NetEvent))
        .collect();
    let paths: Vec<&str> = oneway.iter().map(|e| e.path.as_str()).collect();
    let configured = hybrid::address::resolve(path, &paths).and_then(|(i, _)| oneway.get(i));
    let (entity, family, kind) = match (live, configured) {
        (Some(found), _) => found,
        (None, Some(e)) => (
            Entity {
                path: e.path.trim_matches('/').to_owned(),
                rules: e.rule.clone(),
                requires_auth: Some(e.requires_client_authorization),
            },
            e.kind.name(),
            None,
        ),
        (None, None) => {
            return Err((
                RelayFault::EndpointNotFound,
                "No service is hosted at the specified address.".into(),
            ))
        }
    };
    crate::telemetry::record_entity(&entity.path);
    if kind.is_some_and(|k| k.transport_security) && !secure {
        return Err((
            RelayFault::NoTransportSecurity,
            "The listeners require transport security; use the TLS endpoint.".into(),
        ));
    }
    if entity
        .requires_auth
        .unwrap_or(kind.is_none_or(|k| k.client_auth))
    {
        s.authorize(c.token.as_deref(), &entity, Right::Send, 0)
            .map_err(|e| {
                wcf.metrics.token_rejected(
                    &wcf.entity_label(&entity.path),
                    FRONTEND_ONEWAY,
                    crate::telemetry::token_reason(&e),
                );
                (RelayFault::AuthorizationFailed, e.to_string())
            })?;
    }
    info!(path = %entity.path, family, "one-way sender connected");
    Ok(Target {
        entity,
        family,
        kind,
    })
}

/// Why a ping's token is refused.
#[derive(Debug, thiserror::Error)]
enum PingTokenError {
    /// The token header does not read.
    #[error(transparent)]
    Unreadable(#[from] wcf::Error),
    /// The token does not authorize sending.
    #[error(transparent)]
    Refused(#[from] hybrid::sas::TokenError),
}

/// A ping's renewed token, if it carries one, must still be valid.
fn ping_token(wcf: &Wcf, env: &Envelope, target: Option<&Target>) -> Result<(), PingTokenError> {
    if let (Some(t), Some(target)) = (access_token(env)?, target) {
        wcf.settings
            .authorize(Some(&t), &target.entity, Right::Send, 0)?;
    }
    Ok(())
}

/// Re-encode a message as plain msbin1 and hand it to the listeners.
async fn deliver(wcf: &Wcf, t: &Target, inner: Vec<u8>) -> Result<(), Refusal> {
    let filter = Filter {
        kinds: t.kind.map(|k| vec![k.label()]).unwrap_or_default(),
        ..Filter::default()
    };
    let label = wcf.entity_label(&t.entity.path);
    let inner = bytes::Bytes::from(inner);
    let path = &t.entity.path;
    let result = if t.family == "NetEvent" {
        match wcf.relay.publish(path, &filter, inner).await {
            Ok(b) => {
                for _ in 0..b.busy {
                    wcf.metrics
                        .limit_hit(&label, FRONTEND_ONEWAY, "listener_queue");
                }
                Ok(())
            }
            // Publishing to no subscriber is not an error (§5.1).
            Err(CoreError::NoListener | CoreError::NoListenerMatches) => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        let wait = wcf.settings.limits.accept_timeout;
        wcf.relay.send(path, &filter, inner, wait).await
    };
    result.map_err(|e| match e {
        CoreError::NoListener | CoreError::NoListenerMatches | CoreError::ListenerGone => (
            RelayFault::EndpointNotFound,
            "No service is hosted at the specified address.".into(),
        ),
        CoreError::ListenerBusy => {
            wcf.metrics
                .limit_hit(&label, FRONTEND_ONEWAY, "listener_queue");
            (
                RelayFault::QuotaExceeded,
                "The listeners are busy; the message was not accepted.".into(),
            )
        }
        other => (RelayFault::ServerError, other.to_string()),
    })
}
