//! One path served by both protocols (`wcf/PROTOCOL.md` §3.1,
//! `hybrid/PROTOCOL.md` §3), both ways.
//!
//! WCF clients, Hybrid Connections listeners: a NetTcpRelay client's
//! RelayedConnect for a
//! hybrid connection configured with `accept_wcf_clients` is authorised with
//! the hybrid connection's Send rules and answered by one of its Hybrid
//! Connections listeners. The listener gets an `accept` naming the client's
//! address and its tracking id; once the listener's rendezvous WebSocket is
//! up, the client gets its RelayedConnectReply and the two legs are spliced:
//! the client's bytes as binary messages, the listener's messages as bytes,
//! a close either way as the other's end of stream. A listener that rejects
//! the accept or never comes gives the client the fault a WCF listener's
//! absence would (`ConnectionFailed`); no listener at all, `EndpointNotFound`.
//!
//! Hybrid Connections senders, WCF listeners: a sender's connect for a NetTcp
//! relay configured with `accept_hybrid_senders` is authorised with the
//! relay's Send rules and answered by one of its WCF listeners: the notice,
//! the dial-back with its RelayedAccept and RelayedAcceptReply, then the
//! sender's 101 and the same splice the other way round.
//!
//! Both kinds of listener may serve one bridged path at once: a bridged
//! hybrid connection takes NetTcp WCF listeners, a bridged NetTcp relay
//! Hybrid Connections listeners, and each connect is balanced over all of
//! them; whichever answers, its leg is spliced with the client's.
//!
//! The mapping lives here, between the two front ends; the core sees one
//! `Connect` ask and two legs.

use std::net::SocketAddr;
use std::time::Duration;

use super::hybrid::entity::{Entity, Settings};
use super::hybrid::listener::KIND;
use super::hybrid::Answer;
use super::wcf::entity::Kind;
use crate::relay::{Ask, Caller, CoreError, Filter, Leg, Relay};
use crate::transport::stream;
use crate::transport::websocket;

/// The hybrid connection a WCF client's `path` reaches, if it takes WCF
/// clients.
pub fn hybrid_for_wcf_client(hybrid: &Settings, relay: &Relay, path: &str) -> Option<Entity> {
    hybrid.resolve(path, relay, false).filter(|e| e.wcf_clients)
}

/// The `connectHeaders` of a WCF client's `accept`: those of the WebSocket
/// upgrade a Hybrid Connections sender would have made (SDK listeners, such
/// as hyco-ws, check them as a WebSocket server checks a handshake: without
/// a `Sec-WebSocket-Key` hyco-ws refuses the accept and drops its control
/// channel).
fn upgrade_headers(host: &str) -> std::collections::BTreeMap<String, String> {
    use base64::Engine;
    let key: [u8; 16] = rand::random();
    [
        ("Host", host.to_owned()),
        (
            "Sec-WebSocket-Key",
            base64::engine::general_purpose::STANDARD.encode(key),
        ),
        ("Sec-WebSocket-Version", "13".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Ask one of `entity`'s listeners (of the namespace `host`) to accept a
/// WCF client: its Hybrid Connections listeners (`tracking` and `remote` go
/// in the `accept`) and the NetTcp WCF listeners registered on the same
/// path, balanced over all of them (WCF ones that require TLS only when the
/// client used it, `secure`). Waits up to `wait`; the listener's leg.
pub async fn listener_for_wcf_client(
    relay: &Relay,
    host: &str,
    entity: &Entity,
    client: (String, Option<SocketAddr>, bool),
    wait: Duration,
) -> Result<Leg, CoreError> {
    let (tracking, remote, secure) = client;
    let mut kinds = vec![KIND.to_owned()];
    for l in relay.listeners(&entity.path) {
        if let Some(k) = Kind::parse(&l.kind).filter(|k| k.family == "NetTcp") {
            if (secure || !k.transport_security) && !kinds.contains(&l.kind) {
                kinds.push(l.kind);
            }
        }
    }
    let filter = Filter {
        kinds,
        ..Filter::default()
    };
    let caller = Caller {
        tracking,
        suffix: entity.suffix.clone(),
        query: None,
        headers: upgrade_headers(host),
        remote,
    };
    let mut parked = relay.connect(&entity.path, &filter, |_| Ask::Connect(Box::new(caller)))?;
    either_leg(parked.wait(wait).await?).await
}

/// The leg of whichever kind of listener answered: a Hybrid Connections
/// listener's rendezvous, or a WCF listener's dial-back (which gets its
/// RelayedAcceptReply now).
async fn either_leg(answer: crate::relay::Answer) -> Result<Leg, CoreError> {
    match answer.downcast::<Answer>() {
        Ok(a) => match *a {
            Answer::Accepted { upgrade, .. } => {
                let ws = upgrade.await.map_err(|_| CoreError::ListenerGone)?;
                let (read, write) = websocket::split(ws.into_inner(), usize::MAX);
                Ok(websocket::leg(read, write))
            }
            // A rejection, or anything that is not a rendezvous.
            _ => Err(CoreError::ListenerGone),
        },
        Err(other) => match other.downcast::<super::wcf::Answer>() {
            Ok(dialed) => wcf_leg(dialed.0).await,
            Err(_) => Err(CoreError::ListenerGone),
        },
    }
}

/// A WCF listener's dial-back, answered with its RelayedAcceptReply.
async fn wcf_leg(mut conn: stream::Conn) -> Result<Leg, CoreError> {
    let reply = wcf::relay::any_type_reply(wcf::relay::ACTION_RELAYED_ACCEPT_REPLY).to_msbin1();
    conn.write_message(&reply)
        .await
        .map_err(|_| CoreError::ListenerGone)?;
    Ok(stream::leg(conn.into_io()))
}

/// Ask one of the listeners of the NetTcp relay at `path` that takes
/// Hybrid Connections senders to serve `caller`: its WCF listeners (a
/// notice, then the dial-back; their transport-security flag concerns WCF
/// clients' relayed connections, not senders) and the Hybrid Connections
/// listeners registered on the same path, balanced over all of them. Waits
/// up to `wait`; the listener's leg.
pub async fn listener_for_hybrid_sender(
    relay: &Relay,
    path: &str,
    caller: Caller,
    wait: Duration,
) -> Result<Leg, CoreError> {
    let mut kinds = vec![KIND.to_owned()];
    for l in relay.listeners(path) {
        let nettcp = Kind::parse(&l.kind).is_some_and(|k| k.family == "NetTcp");
        if nettcp && !kinds.contains(&l.kind) {
            kinds.push(l.kind);
        }
    }
    let filter = Filter {
        kinds,
        ..Filter::default()
    };
    let mut parked = relay.connect(path, &filter, |_| Ask::Connect(Box::new(caller)))?;
    either_leg(parked.wait(wait).await?).await
}
