//! The WCF relay front end against an independent AMQP 1.0 peer (rhea,
//! attaching as Microsoft.ServiceBus.dll does, `wcf/PROTOCOL.md` §2.1,
//! §11.2) and a relayed-connect client and dial-back built on the `wcf`
//! crate (§3.1, §3.3): the notice, the splice, token and quota refusals with
//! the AMQP conditions of §6.2, balancing, and the relay faults of §6.1 for
//! every way a client or listener can get it wrong.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::gateway::{token, Gateway, ROOT};
use support::relayed::{self, fault_code, Rhea};
use wcf::relay::{ConnectPreamble, ACTION_RELAYED_ACCEPT_REPLY, ACTION_RELAYED_CONNECT_REPLY};
use wcf::soap::Envelope;

const LIMITS: &str = "[limits]\naccept_timeout = 3\nhandshake_timeout = 2\n";

fn start() -> Gateway {
    Gateway::start(LIMITS)
}

fn listener(gw: &Gateway, path: &str, count: usize, extra: serde_json::Value) -> Rhea {
    Rhea::start(
        gw.amqps.unwrap(),
        &gw.ca(),
        &format!("sb://localhost/{path}/"),
        &token(path, ROOT, 3600),
        count,
        extra,
    )
}

/// A client's RelayedConnect to `sb://localhost/{path}` over TLS with
/// `token`, in a thread while the test plays the listener.
fn client_in_background(
    gw: &Gateway,
    path: &str,
    token: String,
) -> std::thread::JoinHandle<(Box<dyn relayed::Stream>, Envelope)> {
    let (addr, tls) = (gw.relayed.unwrap(), relayed::tls_config(&gw.ca()));
    let uri = format!("sb://localhost/{path}");
    std::thread::spawn(move || relayed::connect(addr, Some((&tls, "localhost")), &uri, Some(token)))
}

/// A client of `entity` and the listener's dial-back for it, spliced:
/// (client, listener).
fn spliced(
    gw: &Gateway,
    rhea: &Rhea,
    entity: &str,
) -> (Box<dyn relayed::Stream>, Box<dyn relayed::Stream>) {
    let client = client_in_background(gw, &format!("{entity}/"), token(entity, ROOT, 600));
    let notice = relayed::notice(&rhea.next_message());
    let tls = relayed::tls_config(&gw.ca());
    let via = format!("sb://localhost/{entity}/");
    let (lst, _) = relayed::dial_back(&notice, &tls, "localhost", &via);
    let (cl, _) = client.join().unwrap();
    (cl, lst)
}

#[test]
fn a_client_reaches_an_amqp_listener_through_notice_dial_back_and_splice() {
    let gw = start();
    let rhea = listener(&gw, "echo", 1, json!({}));
    assert_eq!(rhea.next()["event"], "attached");
    let tls = relayed::tls_config(&gw.ca());
    let relayed_addr = gw.relayed.unwrap();
    let client = client_in_background(&gw, "echo/", token("echo", "SendOnly", 600));
    let notice = relayed::notice(&rhea.next_message());
    assert_eq!(notice.to, "sb://localhost/echo/");
    assert_eq!(notice.ip, std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(notice.ip_port, relayed_addr.port());
    assert_eq!(notice.https.1, gw.https.port());
    assert_eq!(notice.instance_dns.as_deref(), Some("localhost"));
    let (mut lst, reply) = relayed::dial_back(&notice, &tls, "localhost", "sb://localhost/echo/");
    assert_eq!(reply.action().as_deref(), Some(ACTION_RELAYED_ACCEPT_REPLY));
    let (mut cl, reply) = client.join().unwrap();
    assert_eq!(
        reply.action().as_deref(),
        Some(ACTION_RELAYED_CONNECT_REPLY)
    );
    // The NMF session then flows untouched, both ways.
    cl.write_all(b"\x00\x01\x00\x01\x02").unwrap();
    cl.flush().unwrap();
    let mut buf = [0u8; 5];
    lst.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\x00\x01\x00\x01\x02");
    lst.write_all(b"\x0b").unwrap();
    lst.flush().unwrap();
    let mut ack = [0u8; 1];
    cl.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x0b]);
    drop(cl);
    let mut rest = Vec::new();
    let _ = lst.read_to_end(&mut rest);
    assert!(rest.is_empty());
    drop(lst);
    // Each connection's log span names its id, endpoint, peer and entity
    // (the relayed one on its closing line).
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.log();
    // Both peers closed TCP after their data without a TLS close_notify
    // (as Mono's and .NET's SslStream may): a normal end, not a failure,
    // and counted as such.
    let admin = gw.admin.unwrap();
    let metrics = {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(admin).unwrap();
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        metrics.contains(r#"relay_splice_endings_total{namespace="localhost",entity="echo",frontend="wcf_relayed",ending="clean"} 1"#),
        "{metrics}"
    );
    let ended: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("relayed connection ended"))
        .collect();
    assert!(
        ended.len() == 1 && ended[0].contains("end=clean"),
        "{ended:?}"
    );
    for endpoint in ["amqps", "relayed"] {
        let span = format!("endpoint=\"{endpoint}\" peer=127.0.0.1:");
        assert!(
            log.lines().any(|l| l.contains("conn{id=")
                && l.contains(&span)
                && l.contains("entity=\"echo\"")),
            "no {endpoint} span with its entity:\n{log}"
        );
    }
    drop(rhea);
    gw.stop_clean();
}

#[test]
fn attaches_with_bad_tokens_conflicts_and_the_26th_listener_are_refused() {
    let gw = start();
    let amqps = gw.amqps.unwrap();
    let refused = |path: &str, tok: &str, extra| {
        let r = Rhea::start(
            amqps,
            &gw.ca(),
            &format!("sb://localhost/{path}/"),
            tok,
            1,
            extra,
        );
        let e = r.next_of("error");
        (
            e["condition"].as_str().unwrap_or("").to_owned(),
            e["description"].as_str().unwrap_or("").to_owned(),
        )
    };
    let wrong_key = hybrid::sas::create("http://localhost/a/", ROOT, "not-the-key", 4_000_000_000);
    assert_eq!(
        refused("a", &wrong_key, json!({})).0,
        "com.microsoft:auth-failed"
    );
    let (cond, why) = refused("a", &token("a", ROOT, -600), json!({}));
    assert_eq!(cond, "com.microsoft:auth-failed");
    assert!(why.contains("expired"), "{why}");
    let (cond, why) = refused("a", &token("a", "SendOnly", 600), json!({}));
    assert_eq!(cond, "com.microsoft:auth-failed");
    assert!(why.contains("Listen"), "{why}");
    assert_eq!(
        refused("a", &token("other", ROOT, 600), json!({})).0,
        "com.microsoft:auth-failed"
    );
    let fixed = json!({"com.microsoft:dynamic-relay": false});
    assert_eq!(
        refused("nowhere", &token("nowhere", ROOT, 600), fixed).0,
        "com.microsoft:relay-not-found"
    );

    // A one-way listener cannot join a path served by NetTcp listeners.
    let nettcp = listener(&gw, "mixed", 1, json!({}));
    assert_eq!(nettcp.next()["event"], "attached");
    let unicast = json!({"com.microsoft:listener-type": "Unicast"});
    assert_eq!(
        refused("mixed", &token("mixed", ROOT, 600), unicast).0,
        "com.microsoft:address-already-in-use"
    );

    // 25 listeners per path, then the quota error.
    let many = listener(&gw, "crowd", 26, json!({}));
    let (mut attached, mut errors) = (0, Vec::new());
    while attached + errors.len() < 26 {
        let e = many.next();
        match e["event"].as_str() {
            Some("attached") => attached += 1,
            Some("error") => errors.push(e),
            _ => {}
        }
    }
    assert_eq!(attached, 25);
    assert_eq!(errors[0]["condition"], "amqp:resource-limit-exceeded");
    assert!(errors[0]["description"].as_str().unwrap().contains("25"));
    drop((nettcp, many));
    gw.stop_clean();
}

#[test]
fn clients_are_balanced_across_listeners() {
    let gw = start();
    let rhea = listener(&gw, "pool", 2, json!({}));
    assert_eq!(rhea.next_of("attached")["event"], "attached");
    assert_eq!(rhea.next_of("attached")["event"], "attached");
    let tls = relayed::tls_config(&gw.ca());
    let mut per_listener = [0usize; 2];
    for _ in 0..20 {
        let client = client_in_background(&gw, "pool/x", token("pool", ROOT, 600));
        let m = rhea.next_of("message");
        per_listener[m["index"].as_u64().unwrap() as usize] += 1;
        let data = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            m["data"].as_str().unwrap(),
        )
        .unwrap();
        let (_l, reply) = relayed::dial_back(
            &relayed::notice(&data),
            &tls,
            "localhost",
            "sb://localhost/pool/",
        );
        assert_eq!(reply.action().as_deref(), Some(ACTION_RELAYED_ACCEPT_REPLY));
        assert_eq!(
            client.join().unwrap().1.action().as_deref(),
            Some(ACTION_RELAYED_CONNECT_REPLY)
        );
    }
    assert!(per_listener.iter().all(|n| *n > 0), "{per_listener:?}");
    drop(rhea);
    gw.stop_clean();
}

#[test]
fn every_bad_client_or_dial_back_gets_a_relay_fault_and_others_are_undisturbed() {
    let gw = start();
    let tls = relayed::tls_config(&gw.ca());
    let addr = gw.relayed.unwrap();
    let secure = Some((&tls, "localhost"));
    let send_token = || Some(token("svc", "SendOnly", 600));

    // Nobody listens yet.
    let (_, r) = relayed::connect(addr, secure, "sb://localhost/svc/", send_token());
    assert_eq!(fault_code(&r).as_deref(), Some("EndpointNotFoundFault"));

    let rhea = listener(&gw, "svc", 1, json!({}));
    rhea.next_of("attached");
    // An established splice that must survive everything below.
    let (mut cl, mut lst) = spliced(&gw, &rhea, "svc");

    let (_, r) = relayed::connect(addr, secure, "sb://localhost/svc/", None);
    assert_eq!(fault_code(&r).as_deref(), Some("AuthorizationFailedFault"));
    let (_, r) = relayed::connect(
        addr,
        secure,
        "sb://localhost/svc/",
        Some(token("svc", "ListenOnly", 600)),
    );
    assert_eq!(fault_code(&r).as_deref(), Some("AuthorizationFailedFault"));
    let (_, r) = relayed::connect(addr, None, "sb://localhost/svc/", send_token());
    assert_eq!(fault_code(&r).as_deref(), Some("NoTransportSecurityFault"));

    // The listener never dials back: ConnectionFailedFault within the accept timeout.
    let started = Instant::now();
    let (_, r) = relayed::connect(addr, secure, "sb://localhost/svc/", send_token());
    assert_eq!(fault_code(&r).as_deref(), Some("ConnectionFailedFault"));
    assert!(started.elapsed() < Duration::from_secs(6));
    let stale = relayed::notice(&rhea.next_message());
    // Its late dial-back, and one with an unknown id, are refused.
    let (_, r) = relayed::dial_back(&stale, &tls, "localhost", "sb://localhost/svc/");
    assert_eq!(fault_code(&r).as_deref(), Some("InvalidRequestFault"));

    // A message with the wrong Action.
    let mut s = relayed::open(addr, "sb://localhost/svc/", secure);
    let wrong = wcf::relay::any_type_reply("Bogus").to_msbin1();
    relayed::send(&mut *s, &wrong);
    assert_eq!(
        fault_code(&relayed::receive(&mut *s).unwrap()).as_deref(),
        Some("InvalidRequestFault")
    );
    // Not binary XML at all, and an oversize length.
    let mut s = relayed::open(addr, "sb://localhost/svc/", secure);
    relayed::send(&mut *s, b"garbage garbage");
    assert_eq!(
        fault_code(&relayed::receive(&mut *s).unwrap()).as_deref(),
        Some("InvalidRequestFault")
    );
    let mut s = relayed::open(addr, "sb://localhost/svc/", secure);
    s.write_all(&(1u32 << 30).to_le_bytes()).unwrap();
    s.flush().unwrap();
    assert_eq!(
        fault_code(&relayed::receive(&mut *s).unwrap()).as_deref(),
        Some("InvalidRequestFault")
    );
    // Garbage instead of a preamble, and a truncated preamble: closed.
    for bytes in [&b"GET / HTTP/1.1\r\n\r\n"[..], &b"\x07\x00\x00\x00conn"[..]] {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(bytes).unwrap();
        let mut sink = Vec::new();
        assert_eq!(raw.read_to_end(&mut sink).unwrap_or(0), 0);
    }

    // The first splice still carries bytes both ways.
    cl.write_all(b"ping").unwrap();
    cl.flush().unwrap();
    let mut buf = [0u8; 4];
    lst.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    lst.write_all(b"pong").unwrap();
    lst.flush().unwrap();
    cl.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    drop((cl, lst, rhea));
    gw.stop_clean();
}

/// A listener that resets its dial-back right after its RelayedAccept has
/// still accepted: its client gets RelayedConnectReply (written first), then
/// sees its session end; the gateway goes on serving. (Should the reset
/// overtake the RelayedAccept before the gateway reads it, the listener
/// never accepted and the client gets ConnectionFailedFault at the accept
/// timeout instead.)
#[test]
fn a_dial_back_reset_after_its_relayed_accept_ends_the_clients_session() {
    let gw = start();
    let rhea = listener(&gw, "reset", 1, json!({}));
    rhea.next_of("attached");
    let client = client_in_background(&gw, "reset/", token("reset", ROOT, 600));
    let notice = relayed::notice(&rhea.next_message());
    // Preamble (no TLS) and RelayedAccept in one write, then a reset: a
    // zero linger makes the close send RST instead of FIN.
    let mut bytes = Vec::new();
    ConnectPreamble {
        via: "sb://localhost/reset/".into(),
        tls: false,
    }
    .encode(&mut bytes);
    let accept = relayed::sdk_accept(&notice).to_envelope().to_msbin1();
    wcf::relay::write_prefixed(&accept, &mut bytes);
    let mut raw = TcpStream::connect(gw.relayed.unwrap()).unwrap();
    rustix::net::sockopt::set_socket_linger(&raw, Some(Duration::ZERO)).unwrap();
    raw.write_all(&bytes).unwrap();
    drop(raw);
    let (mut cl, reply) = client.join().unwrap();
    if fault_code(&reply).as_deref() == Some("ConnectionFailedFault") {
        eprintln!("the reset came before the RelayedAccept was read");
    } else {
        assert_eq!(
            reply.action().as_deref(),
            Some(ACTION_RELAYED_CONNECT_REPLY)
        );
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = cl.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // The next client and dial-back are spliced as usual.
    let (mut cl, mut lst) = spliced(&gw, &rhea, "reset");
    cl.write_all(b"ping").unwrap();
    cl.flush().unwrap();
    let mut buf = [0u8; 4];
    lst.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    drop((cl, lst, rhea));
    gw.stop_clean();
}

/// The real SDK's listener parses the notice `Id` as a `System.Guid` and
/// writes it back in a form of its own; the gateway matches ids by value.
/// First the captured SDK RelayedAccept, byte for byte but for the id, which
/// carries the gateway's id as `Guid.ToString()` writes it; then the other
/// forms .NET reads: upper case, 32 digits, braces, parentheses. Each is
/// spliced; an id the gateway never issued is refused.
#[test]
fn a_relayed_accept_matches_the_notice_id_in_every_guid_form() {
    let gw = start();
    let rhea = listener(&gw, "forms", 1, json!({}));
    rhea.next_of("attached");
    let tls = relayed::tls_config(&gw.ca());
    let via = "sb://localhost/forms/";
    let dump = std::fs::read_to_string(
        support::root().join("fixtures/wcf/sdk5-listener-9352-relayedaccept.hex.txt"),
    )
    .unwrap();
    let chunks = wcf::hexdump::parse(&dump).unwrap();
    let (captured, _) = wcf::relay::read_prefixed(&chunks[0].bytes, 1 << 16)
        .unwrap()
        .unwrap();
    let captured_id = b"5e854c76-2121-45bd-baf3-04094dc28386";
    let at = captured
        .windows(captured_id.len())
        .position(|w| w == captured_id)
        .unwrap();
    type Form = fn(&str) -> String;
    let forms: [(&str, Form); 5] = [
        ("the captured SDK message", |d| d.to_owned()),
        ("upper case", |d| d.to_uppercase()),
        ("32 digits", |d| d.replace('-', "")),
        ("braces", |d| format!("{{{d}}}")),
        ("parentheses", |d| format!("({})", d.to_uppercase())),
    ];
    for (i, (what, form)) in forms.iter().enumerate() {
        let client = client_in_background(&gw, "forms/", token("forms", ROOT, 600));
        let notice = relayed::notice(&rhea.next_message());
        let sdk_form = relayed::sdk_accept(&notice).id;
        let msg = if i == 0 {
            let mut m = captured.to_vec();
            m[at..at + captured_id.len()].copy_from_slice(sdk_form.as_bytes());
            m
        } else {
            wcf::relay::RelayedAccept {
                id: form(&sdk_form),
            }
            .to_envelope()
            .to_msbin1()
        };
        let addr = std::net::SocketAddr::from((notice.ip, notice.ip_port));
        let mut lst = relayed::open(addr, via, Some((&tls, "localhost")));
        relayed::send(&mut *lst, &msg);
        let reply = relayed::receive(&mut *lst).unwrap();
        assert_eq!(
            reply.action().as_deref(),
            Some(ACTION_RELAYED_ACCEPT_REPLY),
            "{what}"
        );
        let (mut cl, reply) = client.join().unwrap();
        assert_eq!(
            reply.action().as_deref(),
            Some(ACTION_RELAYED_CONNECT_REPLY),
            "{what}"
        );
        cl.write_all(what.as_bytes()).unwrap();
        cl.flush().unwrap();
        let mut buf = vec![0u8; what.len()];
        lst.read_exact(&mut buf).unwrap();
        assert_eq!(buf, what.as_bytes());
    }
    // A well-formed GUID the gateway never issued is an unknown rendezvous.
    let addr = gw.relayed.unwrap();
    let mut lst = relayed::open(addr, via, Some((&tls, "localhost")));
    let stranger = wcf::relay::RelayedAccept {
        id: "954138b9-fb45-44a4-2d1c-df7aa347bce3".into(),
    };
    relayed::send(&mut *lst, &stranger.to_envelope().to_msbin1());
    let reply = relayed::receive(&mut *lst).unwrap();
    assert_eq!(fault_code(&reply).as_deref(), Some("InvalidRequestFault"));
    drop(rhea);
    gw.stop_clean();
}

/// A TLS connection to the AMQP endpoint.
fn amqps(gw: &Gateway) -> Box<dyn relayed::Stream> {
    let tcp = TcpStream::connect(gw.amqps.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = relayed::tls_config(&gw.ca());
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = tokio_rustls::rustls::ClientConnection::new(config, name).unwrap();
    Box::new(tokio_rustls::rustls::StreamOwned::new(conn, tcp))
}

fn read_all(s: &mut dyn relayed::Stream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn garbage_on_the_amqp_endpoint_gets_the_protocol_header_or_a_decode_error() {
    let gw = start();
    let rhea = listener(&gw, "steady", 1, json!({}));
    rhea.next_of("attached");
    // Not AMQP: the gateway answers with the header it supports and closes (AMQP part 2.2).
    let mut s = amqps(&gw);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    s.flush().unwrap();
    assert_eq!(read_all(&mut *s), b"AMQP\x03\x01\x00\x00");
    // A valid start, then a frame whose size is impossible: close with amqp:decode-error.
    let mut s = amqps(&gw);
    s.write_all(b"AMQP\x00\x01\x00\x00").unwrap();
    s.write_all(&[0, 0, 0, 3, 2, 0, 0, 0]).unwrap();
    s.flush().unwrap();
    let reply = read_all(&mut *s);
    assert!(reply.starts_with(b"AMQP\x00\x01\x00\x00"), "{reply:?}");
    assert!(
        reply.windows(17).any(|w| w == b"amqp:decode-error"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // The probe's pre-authentication crash: an open whose values nest
    // deeper than the decoder's bound. Within the 512 bytes allowed before
    // open (160 described values deep) it gets amqp:decode-error; the
    // probe's own 15 KB frame (5,000 deep) is over that size and refused
    // from its header. Either way the process lives on (checked below).
    for depth in [160, 5000] {
        let mut body = vec![0x00, 0x53, 0x10];
        for _ in 0..depth {
            body.extend_from_slice(&[0x00, 0x53, 0x01]);
        }
        body.push(0x45);
        let mut frame = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, 0, 0, 0]);
        frame.extend_from_slice(&body);
        let mut s = amqps(&gw);
        s.write_all(b"AMQP\x00\x01\x00\x00").unwrap();
        let _ = s.write_all(&frame).and_then(|()| s.flush());
        let reply = read_all(&mut *s);
        if depth == 160 {
            assert!(
                reply.windows(17).any(|w| w == b"amqp:decode-error"),
                "{:?}",
                String::from_utf8_lossy(&reply)
            );
        }
    }
    // An open, then an attach on a channel with no session: the connection is closed with an error.
    let mut s = amqps(&gw);
    s.write_all(b"AMQP\x00\x01\x00\x00").unwrap();
    let open = wcf::amqp::frame::encode(
        0,
        &wcf::amqp::types::performatives::Performative::Open(
            wcf::amqp::types::performatives::Open {
                container_id: "garbage".into(),
                hostname: None,
                max_frame_size: wcf::amqp::types::performatives::MaxFrameSize(65536),
                channel_max: wcf::amqp::types::performatives::ChannelMax(1),
                idle_time_out: None,
                outgoing_locales: None,
                incoming_locales: None,
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            },
        ),
        &[],
    )
    .unwrap();
    s.write_all(&open).unwrap();
    s.write_all(&[0, 0, 0, 12, 2, 0, 0, 5, 0, 0x53, 0x12, 0x45])
        .unwrap();
    s.flush().unwrap();
    let reply = read_all(&mut *s);
    assert!(
        reply.windows(4).any(|w| w == b"amqp"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // An open and then only heartbeats: without an attached link the
    // connection is closed at the handshake time-out (2 s here).
    let mut idle = amqps(&gw);
    idle.write_all(b"AMQP\x00\x01\x00\x00").unwrap();
    idle.write_all(&open).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        let _ = idle.write_all(&wcf::amqp::frame::HEARTBEAT);
        let _ = idle.flush();
    }
    let reply = read_all(&mut *idle);
    assert!(
        reply.windows(23).any(|w| w == b"com.microsoft:auth-fail"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // The established listener is undisturbed: a client still reaches it.
    let client = client_in_background(&gw, "steady/", token("steady", ROOT, 600));
    let notice = relayed::notice(&rhea.next_message());
    let tls = relayed::tls_config(&gw.ca());
    let (_l, r) = relayed::dial_back(&notice, &tls, "localhost", "sb://localhost/steady/");
    assert_eq!(r.action().as_deref(), Some(ACTION_RELAYED_ACCEPT_REPLY));
    assert_eq!(
        client.join().unwrap().1.action().as_deref(),
        Some(ACTION_RELAYED_CONNECT_REPLY)
    );
    drop(rhea);
    gw.stop_clean();
}
