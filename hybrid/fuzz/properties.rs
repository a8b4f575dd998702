//! The properties the `hybrid` fuzz targets check. Each function panics
//! when a property fails; input the parsers reject is fine as long as
//! nothing panics.

use hybrid::control::{parse_command, parse_relay_message, ListenerCommand, RelayMessage};
use hybrid::listener::{client, server, Opcode, Outgoing};
use hybrid::sas::{audience_covers, create, Token};
use std::time::{Duration, Instant};

/// SAS tokens: parsing any text never panics, nor do the checks on what it
/// parsed; a token made for any resource text parses back to that resource
/// and verifies with its key.
pub fn sas_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = Token::parse(&text) {
        let _ = t.signed_by("key");
        let _ = t.expired(u64::MAX, u64::MAX);
        let _ = audience_covers(&t.resource, "http://host/path");
        let _ = audience_covers("http://host/path", &t.resource);
    }
    let made = create(&text, "rule", "key", 4_000_000_000);
    let t = Token::parse(&made).expect("a token made here parses");
    assert_eq!(t.resource, text);
    assert_eq!(t.key_name, "rule");
    assert!(t.signed_by("key"));
    assert!(!t.signed_by("other"));
}

/// Control-channel messages both ways: parsing any text never panics; a
/// `response` always has a status code between 100 and 999; whatever
/// parses, written out again, parses back to the same value (a listener's
/// `response` as the relay reads it, the relay's `accept` and `request` as
/// a listener reads them).
pub fn control_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ListenerCommand::Response(r)) = parse_command(&text) {
        assert!((100..=999).contains(&r.status_code));
        let again = parse_command(&r.to_json());
        assert_eq!(again, Ok(ListenerCommand::Response(r)));
    }
    match parse_relay_message(&text) {
        Ok(RelayMessage::Accept(a)) => {
            let again = parse_relay_message(&a.to_json());
            assert_eq!(again, Ok(RelayMessage::Accept(a)));
        }
        Ok(RelayMessage::Request(r)) => {
            let again = parse_relay_message(&r.to_json());
            assert_eq!(again, Ok(RelayMessage::Request(r)));
        }
        _ => {}
    }
}

/// Both ends of a listener's control channel, fed the same frames (each
/// input byte pair gives an opcode, a FIN flag and a length; that many
/// bytes follow as the payload), with time moving a second per frame: no
/// panic; nothing comes out of an ended session; every text or close a
/// session writes is within its bound; an inline body never exceeds its
/// bound.
pub fn listener_session(data: &[u8]) {
    let t = Instant::now();
    let mut relay = server::Server::new(
        server::ServerConfig {
            max_message: 256,
            ping_interval: Duration::from_secs(5),
            tracking_id: "t".into(),
        },
        Some(t + Duration::from_secs(60)),
        t,
    );
    let mut listener = client::Client::new(
        client::ClientConfig {
            max_message: 256,
            max_inline_body: 64,
            renew_every: Some(Duration::from_secs(7)),
        },
        t,
    );
    let (mut relay_ended, mut listener_ended) = (false, false);
    let mut at = 0;
    let mut now = t;
    while let (Some(&kind), Some(&len)) = (data.get(at), data.get(at + 1)) {
        let payload = data.get(at + 2..).unwrap_or_default();
        let payload = &payload[..payload.len().min(usize::from(len))];
        at += 2 + payload.len();
        now += Duration::from_secs(1);
        let opcode = [
            Opcode::Text,
            Opcode::Binary,
            Opcode::Continuation,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ][usize::from(kind % 6)];
        let fin = kind & 0x80 != 0;
        relay.frame(opcode, fin, payload.to_vec().into(), now);
        listener.frame(opcode, fin, payload.to_vec().into());
        relay.handle_timeout(now);
        listener.handle_timeout(now);
        while let Some(e) = relay.poll_event() {
            assert!(!relay_ended, "an event after the end: {e:?}");
            if let server::Event::Body { data, .. } = &e {
                assert!(data.len() <= payload.len());
            }
            relay_ended |= matches!(e, server::Event::Ended(_));
        }
        while let Some(e) = listener.poll_event() {
            assert!(!listener_ended, "an event after the end: {e:?}");
            match &e {
                client::Event::Request { body: Some(b), .. } => assert!(b.len() <= 64),
                client::Event::RenewDue => listener.renew("token"),
                _ => {}
            }
            listener_ended |= matches!(e, client::Event::Ended(_));
        }
        while let Some(out) = relay.poll_transmit() {
            if let Outgoing::Close(_, reason) = &out {
                assert!(reason.len() <= 300, "{reason}");
            }
        }
        while listener.poll_transmit().is_some() {}
    }
}
