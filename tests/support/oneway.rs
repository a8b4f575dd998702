//! One-way and event relays from the sender's side (`wcf/PROTOCOL.md` §5):
//! rhea listeners of a listener type, and the steps of an SDK-shaped sender
//! on the `wcf` crate (Connect, a Note, the wrapper a listener receives).

use std::net::SocketAddr;
use std::path::Path;

use serde_json::json;
use wcf::relay::{Connect, OnewaySend};
use wcf::soap::Envelope;
use wcf::Limits;

use super::gateway::{token, ROOT};
use super::nettcp::{operation, request, DuplexClient};
use super::relayed::Rhea;

/// Attach properties of a listener that waives transport security.
pub const PLAIN_LISTENER: &str = r#"{"com.microsoft:transport-security-required": false, "com.microsoft:client-authentication-required": true}"#;

/// `count` rhea listeners of `kind` (Unicast, Multicast) on `path` at the
/// AMQP endpoint `amqps`, once attached.
pub fn listeners(
    amqps: SocketAddr,
    ca: &Path,
    path: &str,
    kind: &str,
    count: usize,
    plain: bool,
) -> Rhea {
    let mut extra: serde_json::Value = if plain {
        serde_json::from_str(PLAIN_LISTENER).unwrap()
    } else {
        json!({})
    };
    extra["com.microsoft:listener-type"] = json!(kind);
    let r = Rhea::start(
        amqps,
        ca,
        &format!("sb://localhost/{path}/"),
        &token(path, ROOT, 600),
        count,
        extra,
    );
    for _ in 0..count {
        r.next_of("attached");
    }
    r
}

/// The via of a one-way sender on `port` (§11.4: explicit port, trailing slash).
pub fn via(port: u16, path: &str) -> String {
    format!("net.tcp://localhost:{port}/{path}/")
}

/// §5.1 step 1: the Connect, answered by a correlated reply.
pub fn connect(c: &mut DuplexClient, path: &str, tok: Option<String>) -> Envelope {
    let id = super::nettcp::message_id();
    let env = Connect {
        message_id: id.clone(),
        token: tok,
        uri: format!("sb://localhost/{path}/"),
    }
    .to_envelope(&format!("sb://localhost/{path}/"));
    c.send(&env);
    let reply = c.receive();
    assert_eq!(
        reply.relates_to(),
        Some(id),
        "the reply correlates with the Connect"
    );
    reply
}

/// An application message as the SDK sends it; returns its MessageID.
pub fn note(path: &str, text: &str) -> (String, Envelope) {
    let env = request(
        &format!("{}/ICalc/Note", super::nettcp::NS),
        &format!("sb://localhost/{path}/"),
        operation("Note", &[("text", text)]),
    );
    (env.message_id().unwrap(), env)
}

pub fn send_note(c: &mut DuplexClient, path: &str, text: &str) -> Envelope {
    let (id, env) = note(path, text);
    c.send(&env);
    let reply = c.receive();
    assert_eq!(reply.relates_to(), Some(id));
    reply
}

/// The text of the Note inside a delivered wrapper, checking the wrapper.
pub fn delivered_text(data: &[u8], path: &str) -> String {
    let wrapper =
        OnewaySend::from_envelope(&Envelope::decode(data, Limits::DEFAULT).unwrap()).unwrap();
    assert_eq!(wrapper.via, format!("sb://localhost/{path}/"));
    // Plain msbin1: decodes without any session dictionary.
    let inner = Envelope::decode(&wrapper.inner, Limits::DEFAULT).unwrap();
    assert!(inner.action().unwrap().ends_with("/ICalc/Note"));
    inner
        .body_element()
        .unwrap()
        .find_local("text")
        .unwrap()
        .text_content()
}
