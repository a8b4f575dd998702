//! The WCF relay over WebSocket (`wcf/PROTOCOL.md` §3.1, §11.5): a listener
//! whose AMQP control channel runs over `wsrelayedamqp` (rhea with ws), and a
//! client and a dial-back over `wsrelayedconnection` with no preamble, where
//! every length prefix and envelope the gateway sends is its own binary
//! message; then the spliced messages, a Close passed on, and a probe (an
//! upgrade closed without frames) that disturbs nothing. And an HTTP relay
//! request whose listener runs entirely over WebSocket: the NMF exchange
//! of §11.3 carried in the dial-back's messages.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fastwebsockets::{OpCode, WebSocket};
use serde_json::json;
use support::gateway::{token, Gateway, ROOT};
use support::relayed::{self, Rhea};
use support::wsclient::{next, send, ws};
use tokio::net::TcpStream;
use wcf::relay::{RelayedConnect, ACTION_RELAYED_ACCEPT_REPLY, ACTION_RELAYED_CONNECT_REPLY};
use wcf::soap::Envelope;

const WAIT: Duration = Duration::from_secs(10);

async fn open(addr: SocketAddr) -> WebSocket<TcpStream> {
    let (head, sock) = ws(
        addr,
        "/$servicebus/websocket",
        &[("Sec-WebSocket-Protocol", "wsrelayedconnection")],
    )
    .await;
    assert_eq!(
        head.header("sec-websocket-protocol"),
        Some("wsrelayedconnection")
    );
    sock.expect("101")
}

/// Send a length-prefixed message as the SDK does: length, then envelope,
/// each its own message.
async fn hello(sock: &mut WebSocket<TcpStream>, env: &Envelope) -> Envelope {
    let msg = env.to_msbin1();
    send(
        sock,
        true,
        OpCode::Binary,
        &(msg.len() as u32).to_le_bytes(),
    )
    .await;
    send(sock, true, OpCode::Binary, &msg).await;
    let (op, fin, len) = next(sock, WAIT).await.expect("a length message");
    assert_eq!(
        (op, fin, len.len()),
        (OpCode::Binary, true, 4),
        "the length is its own message"
    );
    let (op, _, body) = next(sock, WAIT).await.expect("an envelope message");
    assert_eq!(op, OpCode::Binary);
    assert_eq!(
        body.len(),
        u32::from_le_bytes(len.try_into().unwrap()) as usize,
        "the envelope is its own message"
    );
    Envelope::decode(&body, wcf::Limits::DEFAULT).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_listener_and_client_meet_with_message_boundaries_kept() {
    let gw = Gateway::start("");
    // The HTTP endpoint is plain, so the listener waives transport security.
    let rhea = Rhea::over_websocket(
        gw.https,
        &gw.ca(),
        "sb://localhost/wsecho/",
        &token("wsecho", ROOT, 600),
        json!({"com.microsoft:transport-security-required": false}),
    );
    assert_eq!(rhea.next_of("attached")["event"], "attached");

    // A probe first: an upgrade and a TCP close.
    drop(open(gw.http).await);

    let mut client = open(gw.http).await;
    let connect = RelayedConnect {
        tracking_id: None,
        token: Some(token("wsecho", "SendOnly", 600)),
        uri: "sb://localhost/wsecho/".into(),
    }
    .to_envelope();
    let client_task = tokio::spawn(async move {
        let reply = hello(&mut client, &connect).await;
        (client, reply)
    });
    let notice = tokio::task::spawn_blocking(move || {
        let n = relayed::notice(&rhea.next_message());
        (rhea, n)
    });
    let (rhea, notice) = notice.await.unwrap();
    assert_eq!(notice.instance_dns.as_deref(), Some("localhost"));
    let mut listener = open(gw.http).await;
    let reply = hello(&mut listener, &relayed::sdk_accept(&notice).to_envelope()).await;
    assert_eq!(reply.action().as_deref(), Some(ACTION_RELAYED_ACCEPT_REPLY));
    let (mut client, reply) = client_task.await.unwrap();
    assert_eq!(
        reply.action().as_deref(),
        Some(ACTION_RELAYED_CONNECT_REPLY)
    );

    send(&mut client, true, OpCode::Binary, b"\x00\x01\x00\x01\x02").await;
    assert_eq!(
        next(&mut listener, WAIT).await.unwrap().2,
        b"\x00\x01\x00\x01\x02"
    );
    send(&mut listener, true, OpCode::Binary, b"\x0b").await;
    assert_eq!(next(&mut client, WAIT).await.unwrap().2, b"\x0b");
    // The SDK closes with an empty Close; the other side sees the end.
    send(&mut client, true, OpCode::Close, b"").await;
    let end = next(&mut listener, WAIT).await;
    assert!(matches!(end, None | Some((OpCode::Close, _, _))), "{end:?}");
    drop((rhea, client, listener));
    tokio::task::spawn_blocking(move || gw.stop_clean())
        .await
        .unwrap();
}

/// Bytes from WebSocket messages until `want` says the stream holds enough.
async fn read_until(
    sock: &mut WebSocket<TcpStream>,
    buf: &mut Vec<u8>,
    want: impl Fn(&[u8]) -> bool,
) {
    while !want(buf) {
        let (op, _, data) = next(sock, WAIT).await.expect("more bytes");
        assert_eq!(op, OpCode::Binary);
        buf.extend_from_slice(&data);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_relay_request_runs_over_a_websocket_dial_back() {
    use wcf::web::{open_envelope, BodyFormat, BodyWriter, Event, Incoming, ReplyHead, Unframe};
    let gw = Gateway::start("");
    // As a WebHttpRelayBinding service with ConnectivityMode.Https and an
    // http endpoint registers (§11.3, §11.5).
    let rhea = Rhea::over_websocket(
        gw.https,
        &gw.ca(),
        "sb://localhost/wsweb/",
        &token("wsweb", ROOT, 600),
        json!({
            "com.microsoft:listener-type": "RelayedHttp",
            "com.microsoft:transport-security-required": false,
            "com.microsoft:client-authentication-required": false,
        }),
    );
    assert_eq!(rhea.next_of("attached")["event"], "attached");
    let url = format!("http://localhost:{}/wsweb/hello?x=1", gw.http.port());
    let curl = std::thread::spawn(move || {
        std::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "20", &url])
            .output()
            .unwrap()
    });
    let notice = tokio::task::spawn_blocking(move || {
        let n = relayed::notice(&rhea.next_message());
        (rhea, n)
    });
    let (rhea, notice) = notice.await.unwrap();
    let mut listener = open(gw.http).await;
    let reply = hello(&mut listener, &relayed::sdk_accept(&notice).to_envelope()).await;
    assert_eq!(reply.action().as_deref(), Some(ACTION_RELAYED_ACCEPT_REPLY));

    // The NMF exchange, carried in WebSocket messages.
    let mut buf = Vec::new();
    read_until(&mut listener, &mut buf, |b| b.last() == Some(&0x0C)).await;
    assert_eq!(
        &buf[..5],
        [0x00, 0x01, 0x00, 0x01, 0x01],
        "singleton-unsized"
    );
    assert!(buf.ends_with(b"sb://localhost/wsweb/\x03\x07\x0c"));
    send(&mut listener, true, OpCode::Binary, b"\x0b").await;
    buf.clear();
    read_until(&mut listener, &mut buf, |b| b.ends_with(&[0x00, 0x07])).await;
    let mut incoming = Incoming::new(wcf::Limits::DEFAULT, 1 << 16);
    let mut bytes = bytes::BytesMut::from(&buf[..]);
    let mut unframe = Unframe::default();
    while !unframe.take(&mut bytes, &mut incoming).unwrap() {
        assert!(!bytes.is_empty(), "the envelope ends inside what was read");
    }
    let Some(Event::Head(env)) = incoming.next().unwrap() else {
        panic!("a head")
    };
    assert_eq!(env.action().as_deref(), Some("GET"));
    assert_eq!(
        wcf::web::RequestHead::from_envelope(&env).unwrap().address,
        "http://localhost/wsweb/hello?x=1"
    );

    let head = ReplyHead {
        action: Some("GETResponse".into()),
        status: Some(200),
        reason: None,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        format: Some(BodyFormat::Raw),
    };
    let mut out = vec![0x05];
    wcf::web::chunk(&open_envelope(&head.to_envelope()).unwrap(), &mut out);
    let mut w = BodyWriter::new(BodyFormat::Raw);
    w.data_chunk(b"hi over websocket", &mut out);
    w.finish_framed(&mut out);
    send(&mut listener, true, OpCode::Binary, &out).await;
    let out = tokio::task::spawn_blocking(move || curl.join().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("hi over websocket"), "{text}");
    drop((rhea, listener));
    tokio::task::spawn_blocking(move || gw.stop_clean())
        .await
        .unwrap();
}
