//! Bad input and abuse on the Hybrid Connections endpoints
//! (issue: malformed upgrades, bad tokens, oversized and malformed control
//! messages, unknown actions, listeners that never answer, senders that
//! vanish while parked, thousands of parked senders, a frame that breaks
//! the protocol mid-splice, a listener that resets its rendezvous right
//! after asking for it): each gets the status or close code `hybrid/PROTOCOL.md`
//! gives, other connections keep working, and the rendezvous table never
//! exceeds its cap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::time::Duration;

use fastwebsockets::OpCode;
use support::gateway::{token, Gateway, ROOT};
use support::hc::{listener, pair};
use support::wsclient::{http, next, next_json, send, send_text, split_url, upgrade_request, ws};
use support::{open_fds, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A full echo round trip on `path`, proving the gateway still serves.
async fn still_works(gw: &Gateway, path: &str) {
    let mut ctl = listener(gw, path).await;
    let (mut sws, mut l) = pair(gw, &mut ctl, path).await;
    send_text(&mut sws, "ping").await;
    assert_eq!(
        next(&mut l, Duration::from_secs(5)).await.unwrap().2,
        b"ping"
    );
}

async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn malformed_upgrade_requests() {
    let gw = Gateway::start("");
    let t = token("hc1", ROOT, 3600);
    // No Sec-WebSocket-Key.
    let r = raw(gw.http, format!("GET /$hc/hc1?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nServiceBusAuthorization: {t}\r\n\r\n").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Wrong version.
    let r = raw(gw.http, format!("GET /$hc/hc1?sb-hc-action=listen HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\nSec-WebSocket-Version: 8\r\nServiceBusAuthorization: {t}\r\n\r\n").as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // A plain GET on $hc.
    let r = raw(
        gw.http,
        b"GET /$hc/hc1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Not HTTP at all.
    let r = raw(gw.http, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    // Unknown action, with a token.
    let (h, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=delete",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(h.status, 400);
    still_works(&gw, "hc1").await;
    gw.stop_clean();
}

#[tokio::test]
async fn bad_tokens_on_every_operation() {
    let gw = Gateway::start("");
    let _ctl = listener(&gw, "hc1").await;
    let wrong_aud = token("other", ROOT, 3600);
    let garbage = "SharedAccessSignature sr=&sig=&se=x&skn=".to_string();
    for t in [wrong_aud.as_str(), garbage.as_str(), "Bearer abc"] {
        let (h, _) = ws(
            gw.http,
            "/$hc/hc1?sb-hc-action=connect",
            &[("ServiceBusAuthorization", t)],
        )
        .await;
        assert_eq!(h.status, 401, "{t}");
        let (h, _) = ws(
            gw.http,
            "/$hc/hc1?sb-hc-action=listen",
            &[("ServiceBusAuthorization", t)],
        )
        .await;
        assert_eq!(h.status, 401, "{t}");
        let (h, _) = http(
            gw.http,
            "GET",
            "/hc1/x",
            &[("ServiceBusAuthorization", t)],
            b"",
        )
        .await;
        assert_eq!(h.status, 401, "{t}");
    }
    still_works(&gw, "hc2").await;
}

#[tokio::test]
async fn oversized_and_malformed_control_messages() {
    let gw = Gateway::start("[limits]\nmax_control_message = 4096\n");
    let mut ctl = listener(&gw, "hc1").await;
    send_text(&mut ctl, &"x".repeat(10_000)).await;
    let (op, _, data) = next(&mut ctl, Duration::from_secs(5))
        .await
        .expect("a Close frame");
    assert_eq!(
        (op, &data[..2]),
        (OpCode::Close, &1009u16.to_be_bytes()[..])
    );
    for bad in [
        "not json",
        "[1,2]",
        r#"{"a":1,"b":2}"#,
        r#"{"response":{"statusCode":"abc"}}"#,
    ] {
        let mut ctl = listener(&gw, "hc1").await;
        send_text(&mut ctl, bad).await;
        let (op, _, data) = next(&mut ctl, Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            (op, &data[..2]),
            (OpCode::Close, &1008u16.to_be_bytes()[..]),
            "{bad}"
        );
    }
    // A fragmented text command is reassembled.
    let mut ctl = listener(&gw, "hc1").await;
    send(&mut ctl, false, OpCode::Text, br#"{"fo"#).await;
    send(&mut ctl, true, OpCode::Continuation, br#"o":{}}"#).await;
    assert!(
        next(&mut ctl, Duration::from_millis(500)).await.is_none(),
        "unknown command ignored, channel open"
    );
    still_works(&gw, "hc2").await;
}

#[tokio::test]
async fn senders_that_vanish_while_parked_free_their_rendezvous() {
    let gw = Gateway::start("[limits]\npending_per_path = 4\naccept_timeout = 30\n");
    let mut ctl = listener(&gw, "hc1").await;
    let t = token("hc1", ROOT, 3600);
    // Four senders park, then vanish.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (addr, t) = (gw.http, t.clone());
        tasks.push(tokio::spawn(async move {
            ws(
                addr,
                "/$hc/hc1?sb-hc-action=connect",
                &[("ServiceBusAuthorization", &t)],
            )
            .await
        }));
        next_json(&mut ctl).await;
    }
    // The table is full for this path.
    let (h, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=connect",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(h.status, 503);
    assert!(h.reason.contains("pending_per_path"), "{}", h.reason);
    for t in &tasks {
        t.abort();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Their entries are gone: new senders park again.
    let (addr, t2) = (gw.http, t.clone());
    let s = tokio::spawn(async move {
        ws(
            addr,
            "/$hc/hc1?sb-hc-action=connect",
            &[("ServiceBusAuthorization", &t2)],
        )
        .await
    });
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (_, _l) = ws(addr, &target, &[]).await;
    assert_eq!(s.await.unwrap().0.status, 101);
}

#[tokio::test]
async fn thousands_of_parked_senders_stay_within_the_cap() {
    let gw = Gateway::start(
        "[limits]\npending_per_path = 200\npending_total = 300\naccept_timeout = 5\n",
    );
    let _silent = listener(&gw, "hc1").await; // never answers
    let t = token("hc1", ROOT, 3600);
    let mut tasks = Vec::new();
    for _ in 0..2000 {
        let (addr, t) = (gw.http, t.clone());
        tasks.push(tokio::spawn(async move {
            ws(
                addr,
                "/$hc/hc1?sb-hc-action=connect",
                &[("ServiceBusAuthorization", &t)],
            )
            .await
            .0
            .status
        }));
    }
    // While they are parked, another path still works.
    still_works(&gw, "hc2").await;
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        *counts.entry(task.await.unwrap()).or_insert(0) += 1;
    }
    // At most 200 were ever parked (and time out with 504); the rest are
    // refused at once as busy (503), never as a failed listener.
    let (parked, busy) = (
        counts.get(&504).copied().unwrap_or(0),
        counts.get(&503).copied().unwrap_or(0),
    );
    assert!(parked <= 200, "{counts:?}");
    assert_eq!(parked + busy, 2000, "{counts:?}");
    gw.stop_clean();
}

/// A frame that breaks the protocol, arriving in the same segment as a good
/// one, ends the splice, but only after the good one has been passed on;
/// other connections keep working.
#[tokio::test]
async fn a_broken_frame_ends_the_splice_after_what_came_before_it() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "broken").await;
    let (sws, mut l) = pair(&gw, &mut ctl, "broken").await;
    let mut raw = sws.into_inner();
    // A masked binary "ok" (mask 0), then a frame with a reserved bit set.
    let mut bytes = vec![0x82, 0x82, 0, 0, 0, 0, b'o', b'k'];
    bytes.extend_from_slice(&[0xC2, 0x82, 0, 0, 0, 0, b'n', b'o']);
    raw.write_all(&bytes).await.unwrap();
    let (op, fin, data) = next(&mut l, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (op, fin, data.as_slice()),
        (OpCode::Binary, true, &b"ok"[..])
    );
    assert!(
        next(&mut l, Duration::from_secs(5)).await.is_none(),
        "the listener's leg ends after the good frame"
    );
    still_works(&gw, "broken-after").await;
}

/// A listener that sends its rendezvous request and resets the connection
/// at once. Nearly always the gateway has read the request but not yet
/// written the listener's 101: the sender still gets its own 101 (the two
/// are written together), then a Close with 1011. If the reset comes just
/// after that 101, the splice aborts the sender as for any TCP error
/// (`hybrid/PROTOCOL.md` §3.4); if it comes before the request is read, the listener never
/// accepted and the sender gets 504 at the accept timeout. Never a hang,
/// and other connections keep working.
#[tokio::test]
async fn a_listener_that_resets_after_its_rendezvous_request_ends_its_sender() {
    let gw = Gateway::start("[limits]\naccept_timeout = 2\n");
    let mut ctl = listener(&gw, "reset").await;
    let s = support::hc::sender(
        gw.http,
        "/$hc/reset?sb-hc-action=connect".into(),
        support::hc::auth("reset"),
    );
    let accept = next_json(&mut ctl).await;
    let (addr, target) = split_url(accept["accept"]["address"].as_str().unwrap());
    let mut raw = TcpStream::connect(addr).await.unwrap();
    // Closing with a zero linger sends a reset instead of a FIN.
    rustix::net::sockopt::set_socket_linger(&raw, Some(Duration::ZERO)).unwrap();
    raw.write_all(upgrade_request(addr, &target, &[]).as_bytes())
        .await
        .unwrap();
    drop(raw);
    let (head, sws) = s.await.unwrap();
    if head.status == 504 {
        eprintln!("the reset came before the request was read: 504");
    } else {
        assert_eq!(head.status, 101, "{head:?}");
        let told = std::time::Instant::now();
        match next(&mut sws.unwrap(), Duration::from_secs(10)).await {
            Some((OpCode::Close, _, data)) => {
                assert_eq!(data.get(..2), Some(&1011u16.to_be_bytes()[..]), "{data:?}")
            }
            None => assert!(
                told.elapsed() < Duration::from_secs(5),
                "no Close and no abort"
            ),
            other => panic!("expected a Close or an abort, got {other:?}"),
        }
    }
    still_works(&gw, "reset-after").await;
    gw.stop_clean();
}

/// A relayed HTTP response whose listener drops its control channel before
/// the body is whole is never passed on as a complete one: at the head
/// (`body: true`, then nothing), mid-body (part of the body frame), and
/// before the end (every byte, but the frame not final). The client's
/// chunked response ends without its last chunk, and the next request on the
/// path is served.
#[tokio::test]
async fn a_response_cut_by_the_listener_is_never_a_complete_one() {
    let gw = Gateway::start("");
    let t = token("cut", ROOT, 3600);
    for (what, frames) in [
        ("at the head", &[][..]),
        ("mid-body", &[(false, &b"partial"[..])][..]),
        (
            "before the end",
            &[(false, &b"partial"[..]), (false, &b" body"[..])][..],
        ),
    ] {
        let mut ctl = listener(&gw, "cut").await;
        let mut client = TcpStream::connect(gw.http).await.unwrap();
        let request =
            format!("GET /cut/x HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let msg = next_json(&mut ctl).await;
        let response = serde_json::json!({"response": {"requestId": msg["request"]["id"], "statusCode": 200, "body": true}});
        send_text(&mut ctl, &response.to_string()).await;
        for (fin, data) in frames {
            let op = if data == b"partial" {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            send(&mut ctl, *fin, op, data).await;
        }
        drop(ctl);
        let mut got = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(8), async {
            let mut buf = [0u8; 1024];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "{what}: the connection was left open");
        // Either aborted before the head (hyper writes it with the first
        // body bytes) or a chunked body without its last chunk.
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || (text.starts_with("HTTP/1.1 200") && text.contains("chunked")),
            "{what}: {text}"
        );
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{what}: a complete-looking body: {text}"
        );
    }
    // A whole inline body still ends cleanly.
    let mut ctl = listener(&gw, "cut").await;
    let req = tokio::spawn(async move {
        http(
            gw.http,
            "GET",
            "/cut/whole",
            &[("ServiceBusAuthorization", &t)],
            b"",
        )
        .await
    });
    let msg = next_json(&mut ctl).await;
    let response = serde_json::json!({"response": {"requestId": msg["request"]["id"], "statusCode": 200, "body": true}});
    send_text(&mut ctl, &response.to_string()).await;
    send(&mut ctl, true, OpCode::Binary, b"whole").await;
    let (head, body) = req.await.unwrap();
    assert_eq!((head.status, &body[..]), (200, &b"whole"[..]));
}

/// Read raw bytes until the peer closes (or 5 s pass).
async fn drain(raw: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut got)).await;
    got
}

/// Frames a server must refuse (RFC 6455 §5.1-§5.5), each from a spliced
/// sender: the sender gets a Close with 1002 (an unmasked frame, a lone
/// continuation, a 126-byte ping, a length with its top bit set, which once
/// panicked the reader with 2^64-2) and the gateway keeps serving.
#[tokio::test]
async fn frames_that_break_rfc_6455_close_with_1002() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "rfc").await;
    let mut top_bit = vec![0x82, 0xFF];
    top_bit.extend_from_slice(&(u64::MAX - 1).to_be_bytes());
    top_bit.extend_from_slice(&[0; 4 + 20]);
    let mut big_ping = vec![0x89, 0xFE, 0, 126, 0, 0, 0, 0];
    big_ping.extend_from_slice(&[b'p'; 126]);
    let cases: [(&str, Vec<u8>); 4] = [
        ("unmasked", vec![0x82, 0x02, b'n', b'o']),
        (
            "lone continuation",
            vec![0x80, 0x82, 0, 0, 0, 0, b'n', b'o'],
        ),
        ("126-byte ping", big_ping),
        ("top bit set", top_bit),
    ];
    for (what, bytes) in cases {
        let (sws, _l) = pair(&gw, &mut ctl, "rfc").await;
        let mut raw = sws.into_inner();
        raw.write_all(&bytes).await.unwrap();
        let got = drain(&mut raw).await;
        assert!(
            got.len() >= 4 && got[0] == 0x88 && got[2..4] == [0x03, 0xEA],
            "{what}: {got:02x?}"
        );
    }
    still_works(&gw, "rfc-after").await;
}

/// A frame declaring 2^40 bytes, of which 64 MiB are sent, is passed on as
/// it arrives: the listener receives every byte, unmasked, as fragments of
/// one message, and the gateway's memory does not grow with the frame (it
/// once held all of it: +614 MiB for 600 MiB).
#[tokio::test]
async fn a_huge_frame_is_relayed_in_constant_memory() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "huge").await;
    let (sws, l) = pair(&gw, &mut ctl, "huge").await;
    let before = rss_kib(gw.pid());
    let mut raw = sws.into_inner();
    let mut lraw = l.into_inner();
    // 64 MiB here; `RELAY_HUGE_FRAME_MIB=1024` measures a 1 GiB frame.
    let sent: usize = std::env::var("RELAY_HUGE_FRAME_MIB")
        .ok()
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(64)
        << 20;
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut head = vec![0x82, 0xFF];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    head.extend_from_slice(&mask);
    let writer = tokio::spawn(async move {
        raw.write_all(&head).await.unwrap();
        let chunk: Vec<u8> = (0..1 << 20)
            .map(|i| (i % 251) as u8 ^ mask[i % 4])
            .collect();
        for _ in 0..sent >> 20 {
            raw.write_all(&chunk).await.unwrap();
        }
        raw
    });
    // Read the listener's side raw: frame headers (unmasked, server to
    // client) and payload bytes, checking every payload byte.
    let (mut payload, mut buf, mut peak) = (0usize, Vec::new(), before);
    let mut first = true;
    while payload < sent {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(20), lraw.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the listener's leg ended after {payload} bytes");
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if buf.len() < 2 {
                break;
            }
            let (op, len7) = (buf[0] & 0x0F, buf[1] & 0x7F);
            assert_eq!(
                buf[0] & 0x80,
                0,
                "a fragment of a frame still going is not final"
            );
            assert_eq!(op, if first { 2 } else { 0 });
            let (hl, len) = match len7 {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => break,
                l => (2, l as usize),
            };
            if buf.len() < hl + len {
                break;
            }
            for (i, b) in buf[hl..hl + len].iter().enumerate() {
                assert_eq!(
                    *b as usize,
                    (payload + i) % (1 << 20) % 251,
                    "byte {}",
                    payload + i
                );
            }
            payload += len;
            first = false;
            buf.drain(..hl + len);
        }
        peak = peak.max(rss_kib(gw.pid()));
    }
    writer.await.unwrap();
    assert_eq!(payload, sent);
    eprintln!("gateway RSS {before} KiB before, {peak} KiB at most while relaying");
    assert!(
        peak < before + 16 * 1024,
        "RSS grew from {before} KiB to {peak} KiB for a {sent}-byte frame"
    );
}

/// CPU ticks (user + system) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of descriptors (the gateway's limit lowered to what it has open plus
/// a few, then a flood of connections): the accept loops back off instead
/// of spinning (the probe's admin loop took 1.2 cores), the established
/// splice keeps working, and once the flood is gone every endpoint serves
/// again by itself, with the failures counted.
#[tokio::test]
async fn running_out_of_descriptors_degrades_without_spinning() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "fd").await;
    let (mut s, mut l) = pair(&gw, &mut ctl, "fd").await;
    let pid = gw.pid();
    let open = open_fds(pid);
    let limit = format!("--nofile={}:{}", open + 8, open + 8);
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .status()
        .unwrap();
    assert!(status.success());
    let mut flood = Vec::new();
    for _ in 0..64 {
        flood.push(TcpStream::connect(gw.http).await.unwrap());
    }
    // Once the flood has taken the spare descriptors, the admin endpoint too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = TcpStream::connect(gw.admin.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    eprintln!("CPU ticks while out of descriptors: {used}");
    assert!(
        used < 60,
        "{used} ticks of CPU in 3 s while out of descriptors"
    );
    // The established splice still carries data.
    send_text(&mut s, "still here").await;
    assert_eq!(
        next(&mut l, Duration::from_secs(5)).await.unwrap().2,
        b"still here"
    );
    drop((flood, admin));
    // Service resumes by itself; the failures were counted.
    let mut metrics = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (head, body) = http(gw.admin.unwrap(), "GET", "/metrics", &[], b"").await;
        if head.status == 200 {
            metrics = String::from_utf8_lossy(&body).into_owned();
            break;
        }
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("relay_accept_errors_total{")),
        "{metrics}"
    );
    still_works(&gw, "fd-after").await;
    assert!(gw.log().contains("accept failed; backing off"));
}

/// At `max_connections` an endpoint stops accepting until a connection
/// ends (the kernel's backlog holds newcomers), and counts the hit; the
/// waiting client is then served.
#[tokio::test]
async fn the_connection_cap_pauses_accepting_until_one_ends() {
    let gw = Gateway::start("[limits]\nmax_connections = 2\n");
    let first = TcpStream::connect(gw.http).await.unwrap();
    let _second = TcpStream::connect(gw.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(gw.http).await.unwrap();
    third
        .write_all(b"GET /nowhere/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "served over the cap");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 "), "{:?}", &buf[..n]);
    let (_, metrics) = http(gw.admin.unwrap(), "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8_lossy(&metrics);
    let hits: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"relay_connection_cap_hits_total{namespace="localhost",endpoint="http"} "#,
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(hits >= 1, "{metrics}");
}
