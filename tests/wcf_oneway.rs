//! One-way and event relays (`wcf/PROTOCOL.md` §5, §11.4): an SDK-shaped
//! sender built on the `wcf` crate follows §5.1 step by step (preamble,
//! Connect with its token, OnewayPing with a renewed token, messages each
//! acknowledged with a correlated reply) against the gateway's net.tcp
//! endpoints, plain and with the TLS upgrade; rhea plays Unicast and
//! Multicast listeners over AMQP and counts what arrives. Also: the
//! no-listener fault, the 64 KB boundary, and framing faults for garbage and
//! truncated input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::gateway::{token, Gateway, ROOT};
use support::nettcp::DuplexClient;
use support::oneway::{self, connect, delivered_text, note, send_note, via};
use support::relayed::{self, fault_code, Rhea};
use wcf::relay::{ACTION_CONNECT_REPLY, ACTION_ONEWAY_PING, ACTION_SEND_REPLY};
use wcf::soap::{Element, Envelope, NS_WSA10};

fn listeners(gw: &Gateway, path: &str, kind: &str, count: usize, plain: bool) -> Rhea {
    oneway::listeners(gw.amqps.unwrap(), &gw.ca(), path, kind, count, plain)
}

#[test]
fn an_sdk_shaped_sender_reaches_a_unicast_listener_step_by_step() {
    let gw = Gateway::start("");
    let port = gw.nettcp.unwrap().port();
    let rhea = listeners(&gw, "orders", "Unicast", 1, true);
    let mut c = DuplexClient::connect(&gw.nettcp.unwrap().to_string(), &via(port, "orders"));
    let reply = connect(&mut c, "orders", Some(token("orders", "SendOnly", 600)));
    assert_eq!(
        reply.action().as_deref(),
        Some(ACTION_CONNECT_REPLY),
        "{:?}",
        reply.fault()
    );
    // §11.4: the first send is preceded by a ping; a renewed token rides on it.
    let ping_id = support::nettcp::message_id();
    let ping = Envelope::with_action(ACTION_ONEWAY_PING)
        .header(Element::new("a", "MessageID", NS_WSA10).text(&ping_id))
        .header(wcf::relay::token_header(
            &token("orders", "SendOnly", 1200),
            "uuid:ping",
        ))
        .body_child(
            Element::new("", "OnewayPing", wcf::relay::NS_CONNECT)
                .with_xmlns("", wcf::relay::NS_CONNECT),
        );
    c.send(&ping);
    let pong = c.receive();
    assert_eq!(pong.relates_to(), Some(ping_id));
    assert!(pong.fault().is_none());
    for i in 0..3 {
        let ack = send_note(&mut c, "orders", &format!("order {i}"));
        assert_eq!(ack.action().as_deref(), Some(ACTION_SEND_REPLY));
        assert_eq!(
            delivered_text(&rhea.next_message(), "orders"),
            format!("order {i}")
        );
    }
    // A ping with a token for another relay is refused, and the session goes on.
    let bad = Envelope::with_action(ACTION_ONEWAY_PING)
        .header(Element::new("a", "MessageID", NS_WSA10).text("urn:uuid:bad-ping"))
        .header(wcf::relay::token_header(
            &token("elsewhere", "SendOnly", 600),
            "uuid:bad",
        ))
        .body_child(
            Element::new("", "OnewayPing", wcf::relay::NS_CONNECT)
                .with_xmlns("", wcf::relay::NS_CONNECT),
        );
    c.send(&bad);
    assert_eq!(
        fault_code(&c.receive()).as_deref(),
        Some("AuthorizationFailedFault")
    );
    send_note(&mut c, "orders", "after the bad ping");
    assert_eq!(
        delivered_text(&rhea.next_message(), "orders"),
        "after the bad ping"
    );
    c.close();
    drop(rhea);
    gw.stop_clean();
}

#[test]
fn events_fan_out_to_every_multicast_listener_exactly_once() {
    let gw = Gateway::start("");
    let port = gw.nettcp.unwrap().port();
    let rhea = listeners(&gw, "news", "Multicast", 3, true);
    let mut c = DuplexClient::connect(&gw.nettcp.unwrap().to_string(), &via(port, "news"));
    connect(&mut c, "news", Some(token("news", ROOT, 600)));
    const N: usize = 20;
    for i in 0..N {
        send_note(&mut c, "news", &format!("event {i}"));
    }
    let mut seen: HashMap<(u64, String), usize> = HashMap::new();
    for _ in 0..3 * N {
        let m = rhea.next_of("message");
        let data = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            m["data"].as_str().unwrap(),
        )
        .unwrap();
        *seen
            .entry((m["index"].as_u64().unwrap(), delivered_text(&data, "news")))
            .or_default() += 1;
    }
    assert!(
        rhea.quiet_for(Duration::from_millis(500)),
        "no duplicates arrive"
    );
    for listener in 0..3u64 {
        for i in 0..N {
            assert_eq!(
                seen.get(&(listener, format!("event {i}"))),
                Some(&1),
                "listener {listener} event {i}"
            );
        }
    }
    // With every subscriber gone, publishing still succeeds (§5.1).
    drop(rhea);
    std::thread::sleep(Duration::from_millis(300));
    let ack = send_note(&mut c, "news", "to nobody");
    assert!(ack.fault().is_none(), "{ack:?}");
    c.close();
    gw.stop_clean();
}

#[test]
fn no_listener_faults_and_the_64_kb_limit_is_enforced() {
    let gw = Gateway::start("");
    let addr = gw.nettcp.unwrap().to_string();
    let port = gw.nettcp.unwrap().port();
    let mut c = DuplexClient::connect(&addr, &via(port, "nobody"));
    let r = connect(&mut c, "nobody", Some(token("nobody", ROOT, 600)));
    assert_eq!(fault_code(&r).as_deref(), Some("EndpointNotFoundFault"));
    c.close();

    let rhea = listeners(&gw, "big", "Unicast", 1, true);
    let mut c = DuplexClient::connect(&addr, &via(port, "big"));
    let r = connect(&mut c, "big", None);
    assert_eq!(fault_code(&r).as_deref(), Some("AuthorizationFailedFault"));
    connect(&mut c, "big", Some(token("big", ROOT, 600)));
    // Find a text length whose message is exactly `size` bytes on the wire.
    let sized = |c: &DuplexClient, size: usize| {
        let mut n = size - 600;
        loop {
            let (_, env) = note("big", &"x".repeat(n));
            let len = c.size_of(&env);
            if len == size {
                return (env, n);
            }
            assert!(len < size, "overshot: {len} for {n}");
            n += size - len;
        }
    };
    let (fits, n) = sized(&c, 65_535);
    let id = fits.message_id().unwrap();
    c.send(&fits);
    let ack = c.receive();
    assert_eq!((ack.relates_to(), ack.fault().is_none()), (Some(id), true));
    assert_eq!(delivered_text(&rhea.next_message(), "big").len(), n);
    let (too_big, _) = sized(&c, 65_537);
    c.send(&too_big);
    let f = c.receive();
    assert_eq!(fault_code(&f).as_deref(), Some("QuotaExceededFault"));
    assert_eq!(f.relates_to(), too_big.message_id());
    assert!(
        rhea.quiet_for(Duration::from_millis(300)),
        "the oversize message was not delivered"
    );
    send_note(&mut c, "big", "still usable");
    assert_eq!(delivered_text(&rhea.next_message(), "big"), "still usable");
    c.close();
    drop(rhea);
    gw.stop_clean();
}

#[test]
fn the_tls_upgrade_path_carries_the_session_and_plain_senders_are_refused_for_secure_listeners() {
    let gw = Gateway::start("");
    let rhea = listeners(&gw, "secure", "Unicast", 1, false);
    // 9350 without TLS: the listener requires transport security.
    let plain = gw.nettcp.unwrap();
    let mut c = DuplexClient::connect(&plain.to_string(), &via(plain.port(), "secure"));
    let r = connect(&mut c, "secure", Some(token("secure", ROOT, 600)));
    assert_eq!(fault_code(&r).as_deref(), Some("NoTransportSecurityFault"));
    c.close();
    // 9351 with the application/ssl-tls upgrade (§1.3).
    let tls = gw.nettcps.unwrap();
    let config = relayed::tls_config(&gw.ca());
    let mut c = DuplexClient::connect_tls(
        &tls.to_string(),
        &via(tls.port(), "secure"),
        &config,
        "localhost",
    );
    let r = connect(&mut c, "secure", Some(token("secure", ROOT, 600)));
    assert!(r.fault().is_none(), "{:?}", r.fault());
    send_note(&mut c, "secure", "over TLS");
    assert_eq!(delivered_text(&rhea.next_message(), "secure"), "over TLS");
    c.close();
    drop(rhea);
    gw.stop_clean();
}

/// Everything the gateway sends back before closing.
fn answer(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn garbage_and_truncated_input_get_framing_faults_on_both_ports() {
    let gw = Gateway::start("");
    let rhea = listeners(&gw, "steady", "Unicast", 1, true);
    let port = gw.nettcp.unwrap().port();
    let mut steady = DuplexClient::connect(&gw.nettcp.unwrap().to_string(), &via(port, "steady"));
    connect(&mut steady, "steady", Some(token("steady", ROOT, 600)));
    let fault = |reply: &[u8]| -> String {
        assert_eq!(reply.first(), Some(&0x08), "a Fault record: {reply:?}");
        String::from_utf8_lossy(&reply[2..]).into_owned()
    };
    for addr in [gw.nettcp.unwrap(), gw.nettcps.unwrap()] {
        // Not framing at all.
        assert!(fault(&answer(addr, b"GET / HTTP/1.1\r\n\r\n", false)).contains("/framing/faults/"));
        // A version the gateway does not speak.
        assert!(fault(&answer(addr, &[0x00, 0x02, 0x00], false)).ends_with("UnsupportedVersion"));
        // A mode one-way senders never use (singleton-sized).
        assert!(fault(&answer(addr, &[0x00, 0x01, 0x00, 0x01, 0x03], false))
            .ends_with("UnsupportedMode"));
        // A Via whose length runs past the end of the stream.
        let truncated = [0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x40, b'n', b'e', b't'];
        assert!(fault(&answer(addr, &truncated, true)).contains("/framing/faults/"));
    }
    // The established session is undisturbed.
    send_note(&mut steady, "steady", "still here");
    assert_eq!(delivered_text(&rhea.next_message(), "steady"), "still here");
    steady.close();
    drop(rhea);
    gw.stop_clean();
}

/// A net.tcp session that completes its preamble and then sends nothing (no
/// Connect, no token) gets the ConnectionDispatchFailed framing fault and is
/// closed after `handshake_timeout` (the probe's was kept forever).
#[test]
fn a_session_without_a_connect_is_closed_at_the_handshake_deadline() {
    use wcf::framing::{FaultCode, Mode, Record, ENCODING_MSBINSESSION1};
    let gw = Gateway::start("[limits]\nhandshake_timeout = 2\n");
    let mut s = TcpStream::connect(gw.nettcp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut pre = Vec::new();
    for r in Record::preamble(
        Mode::Duplex,
        "sb://localhost/quiet/",
        ENCODING_MSBINSESSION1,
    ) {
        r.encode(&mut pre);
    }
    Record::PreambleEnd.encode(&mut pre);
    let started = std::time::Instant::now();
    s.write_all(&pre).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = started.elapsed();
    assert_eq!(
        got.first(),
        Some(&0x0B),
        "the preamble is acknowledged: {got:02x?}"
    );
    let fault = FaultCode::ConnectionDispatchFailed.uri();
    let fault = fault.as_bytes();
    assert!(got.windows(fault.len()).any(|w| w == fault), "{got:02x?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    gw.stop_clean();
}
