//! The 48 conformance cases of `hybrid/PROTOCOL.md` §9 against the
//! real binary, each test named after its case number. Raw WebSocket and
//! HTTP clients play the SDKs here (the "F" mode of the table); the live
//! SDK runs ("L") are in `hc_live.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use fastwebsockets::OpCode;
use serde_json::Value;
use support::gateway::{token, Gateway, ROOT};
use support::hc::{auth, listener, pair, sender, Ws};
use support::wsclient::{self, close, http, next, next_json, send, send_text, split_url, ws};
use tokio::net::TcpStream;

const SECS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn case_01_listener_connects_with_header_token() {
    let gw = Gateway::start("");
    let t = token("hc1", ROOT, 3600);
    let (head, ws) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[
            ("ServiceBusAuthorization", &t),
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ],
    )
    .await;
    assert_eq!(head.status, 101);
    assert!(head.header("sec-websocket-extensions").is_none());
    assert!(head.header("sec-websocket-protocol").is_none());
    drop(ws);
    gw.stop_clean();
}

#[tokio::test]
async fn case_02_listener_token_in_query() {
    let gw = Gateway::start("");
    let t = token("hc1", ROOT, 3600);
    let enc: String = url_encode(&t);
    let (head, _ws) = ws(
        gw.http,
        &format!("/$hc/hc1?sb-hc-action=listen&sb-hc-token={enc}"),
        &[],
    )
    .await;
    assert_eq!(head.status, 101);
    // Form encoding: '+' for spaces.
    let plus = enc.replace("%20", "+");
    let (head, _ws2) = ws(
        gw.http,
        &format!("/$hc/hc1?sb-hc-action=listen&sb-hc-token={plus}"),
        &[],
    )
    .await;
    assert_eq!(head.status, 101);
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn case_03_listener_on_unknown_hc() {
    let gw = Gateway::start_with(&support::gateway::BASE_CONFIG.replace(
        "dynamic_hybrid_connections = true",
        "dynamic_hybrid_connections = false",
    ));
    let (head, _) = ws(
        gw.http,
        "/$hc/nope?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("nope", ROOT, 3600))],
    )
    .await;
    assert_eq!(head.status, 404);
    assert!(
        head.reason.contains("Endpoint does not exist") && head.reason.contains("nope"),
        "{}",
        head.reason
    );
}

#[tokio::test]
async fn case_04_listener_bad_expired_or_missing_token() {
    let gw = Gateway::start("");
    let bad = hybrid::sas::create("http://localhost/hc1", ROOT, "wrong", 4_000_000_000);
    for (t, want) in [
        (Some(bad), "invalid signature"),
        (Some(token("hc1", ROOT, -3600)), "expired"),
        (None, "RelaySecurityTokenRequired"),
    ] {
        let h: Vec<(&str, &str)> = t
            .iter()
            .map(|t| ("ServiceBusAuthorization", t.as_str()))
            .collect();
        let (head, _) = ws(gw.http, "/$hc/hc1?sb-hc-action=listen", &h).await;
        assert_eq!(head.status, 401);
        assert!(head.reason.contains(want), "{}", head.reason);
    }
}

#[tokio::test]
async fn case_05_listener_with_send_only_token() {
    let gw = Gateway::start("");
    let (head, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("hc1", "SendOnly", 3600))],
    )
    .await;
    assert_eq!(head.status, 403);
    assert!(head.reason.contains("Listen"), "{}", head.reason);
}

#[tokio::test]
async fn case_06_audience_variants() {
    let gw = Gateway::start("");
    let exp = 4_000_000_000;
    for (sr, ok) in [
        ("http://localhost/hc1", true),
        ("http://localhost/hc1/", true),
        ("https://LOCALHOST:443/hc1", true),
        ("http://localhost/", true),
        ("http://127.0.0.1/hc1", true),
        ("http://localhost/other", false),
    ] {
        let t = hybrid::sas::create(sr, ROOT, support::gateway::KEY, exp);
        let (head, _ws) = ws(
            gw.http,
            "/$hc/hc1?sb-hc-action=listen",
            &[("ServiceBusAuthorization", &t)],
        )
        .await;
        assert_eq!(head.status == 101, ok, "{sr}: {head:?}");
    }
    // The probe's token for a foreign host, sent with that host as `Host`:
    // audiences name the namespace or its aliases, never the request's host.
    let t = hybrid::sas::create("http://evil.example/hc1", ROOT, support::gateway::KEY, exp);
    for path in [
        "/$hc/hc1?sb-hc-action=listen",
        "/$hc/hc1?sb-hc-action=connect",
    ] {
        let mut s = TcpStream::connect(gw.http).await.unwrap();
        let req = wsclient::upgrade_request(gw.http, path, &[("ServiceBusAuthorization", &t)])
            .replacen(&format!("Host: {}", gw.http), "Host: evil.example", 1);
        assert!(req.contains("Host: evil.example"), "{req}");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 401"), "{path}: {head}");
    }
}

#[tokio::test]
async fn case_07_bad_action() {
    let gw = Gateway::start("");
    let (head, _) = ws(gw.http, "/$hc/hc1?sb-hc-action=foo", &[]).await;
    assert_eq!(head.status, 400);
    assert!(head.reason.contains("Unsupported action 'foo'"));
}

#[tokio::test]
async fn case_08_connect_without_listener() {
    let gw = Gateway::start("");
    let (head, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=connect",
        &[("ServiceBusAuthorization", &token("hc1", ROOT, 3600))],
    )
    .await;
    assert_eq!(head.status, 404);
    assert!(
        head.reason
            .starts_with("There are no listeners connected for the endpoint. TrackingId:"),
        "{}",
        head.reason
    );
}

#[tokio::test]
async fn case_09_connect_happy_path_accept_shape() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let mut h = auth("hc1");
    h.push(("X-Custom".into(), "custom value".into()));
    h.push(("Sec-WebSocket-Protocol".into(), "chat, superchat".into()));
    let s = sender(
        gw.http,
        "/$hc/hc1/sfx?a=b&sb-hc-action=connect&sb-hc-id=abc".into(),
        h,
    );
    let msg = next_json(&mut ctl).await;
    let obj = msg.as_object().unwrap();
    assert_eq!(obj.len(), 1, "single top-level key");
    let a = &msg["accept"];
    assert_eq!(a["id"], "abc");
    let address = a["address"].as_str().unwrap();
    assert!(
        address.contains("/$hc/hc1/sfx?a=b&") && address.contains("sb-hc-action=accept"),
        "{address}"
    );
    let headers = a["connectHeaders"].as_object().unwrap();
    assert!(headers.values().all(Value::is_string));
    for k in [
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "X-Custom",
        "Host",
    ] {
        assert!(headers.contains_key(k), "{k} missing: {headers:?}");
    }
    assert_eq!(headers["X-Custom"], "custom value");
    assert!(!headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("ServiceBusAuthorization")));
    assert_eq!(a["remoteEndpoint"]["address"], "127.0.0.1");
    assert!(a["remoteEndpoint"]["port"].is_u64());
    let (addr, target) = split_url(address);
    let (lh, _l) = ws(addr, &target, &[("Sec-WebSocket-Protocol", "chat")]).await;
    assert_eq!(lh.status, 101);
    let (sh, _s) = s.await.unwrap();
    assert_eq!(sh.status, 101);
}

#[tokio::test]
async fn case_10_subprotocol_flow() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let mut h = auth("hc1");
    h.push(("Sec-WebSocket-Protocol".into(), "chat, superchat".into()));
    let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), h);
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (lh, _l) = ws(addr, &target, &[("Sec-WebSocket-Protocol", "chat")]).await;
    assert_eq!(lh.header("sec-websocket-protocol"), Some("chat"));
    let (sh, _s) = s.await.unwrap();
    assert_eq!(sh.header("sec-websocket-protocol"), Some("chat"));
    // The accept hash is computed from the sender's key.
    assert_eq!(
        sh.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[tokio::test]
async fn case_11_echo_types_big_frames_fragments() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let (mut s, mut l) = pair(&gw, &mut ctl, "hc1").await;
    send_text(&mut s, "hello ✓").await;
    assert_eq!(
        next(&mut l, SECS).await,
        Some((OpCode::Text, true, "hello ✓".as_bytes().to_vec()))
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    send(&mut l, true, OpCode::Binary, &big).await;
    assert_eq!(
        next(&mut s, SECS).await,
        Some((OpCode::Binary, true, big.clone()))
    );
    // A fragmented message keeps its fragments' order and boundary.
    send(&mut s, false, OpCode::Binary, b"part1-").await;
    send(&mut s, false, OpCode::Continuation, b"part2-").await;
    send(&mut s, true, OpCode::Continuation, b"end").await;
    let mut got = Vec::new();
    loop {
        let (op, fin, data) = next(&mut l, SECS).await.unwrap();
        assert!(
            got.is_empty() && op == OpCode::Binary || !got.is_empty() && op == OpCode::Continuation
        );
        got.extend(data);
        if fin {
            break;
        }
    }
    assert_eq!(got, b"part1-part2-end");
}

#[tokio::test]
async fn case_12_half_close() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let (mut s, l) = pair(&gw, &mut ctl, "hc1").await;
    // Split halves: an unsplit client refuses to read after sending Close.
    let (mut lr, mut lw) = l.split(tokio::io::split);
    lw.write_frame(fastwebsockets::Frame::close(4000, b"bye"))
        .await
        .unwrap();
    let (op, _, data) = next(&mut s, SECS).await.unwrap();
    assert_eq!(op, OpCode::Close);
    assert_eq!(&data[..2], &4000u16.to_be_bytes());
    assert_eq!(&data[2..], b"bye");
    // The sender can still send; the listener still receives.
    send_text(&mut s, "after close").await;
    let mut ignore = |_| async { Ok::<_, std::io::Error>(()) };
    let f = tokio::time::timeout(SECS, lr.read_frame(&mut ignore))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.opcode, f.payload.to_vec()),
        (OpCode::Text, b"after close".to_vec())
    );
    close(&mut s, 1000, "done").await;
    let f = tokio::time::timeout(SECS, lr.read_frame(&mut ignore))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.opcode, &f.payload[..2]),
        (OpCode::Close, &1000u16.to_be_bytes()[..])
    );
}

#[tokio::test]
async fn case_13_abort_propagation() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let (mut s, l) = pair(&gw, &mut ctl, "hc1").await;
    drop(l); // TCP closed without a Close frame
    let r = tokio::time::timeout(SECS, s.read_frame())
        .await
        .expect("sender notices");
    assert!(r.is_err() || r.is_ok_and(|f| f.opcode == OpCode::Close));
}

#[tokio::test]
async fn case_14_listener_reject() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (lh, _) = ws(
        addr,
        &format!("{target}&sb-hc-statusCode=401&sb-hc-statusDescription=Nope+x"),
        &[],
    )
    .await;
    assert_eq!(lh.status, 410);
    let (sh, _) = s.await.unwrap();
    assert_eq!((sh.status, sh.reason.as_str()), (401, "Nope x"));
}

#[tokio::test]
async fn case_15_reject_with_bad_status() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let _s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (lh, _) = ws(addr, &format!("{target}&sb-hc-statusCode=abc"), &[]).await;
    assert_eq!(lh.status, 400);
}

#[tokio::test]
async fn case_16_accept_timeout_and_dead_address() {
    let gw = Gateway::start("[limits]\naccept_timeout = 2\n");
    let mut ctl = listener(&gw, "hc1").await;
    let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let a = next_json(&mut ctl).await;
    let (sh, _) = s.await.unwrap();
    assert_eq!(sh.status, 504);
    assert!(
        sh.reason
            .contains("None of the connected listeners accepted"),
        "{}",
        sh.reason
    );
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (lh, _) = ws(addr, &target, &[]).await;
    assert!([403, 404, 410].contains(&lh.status));
}

#[tokio::test]
async fn case_17_address_single_use() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (first, _l) = ws(addr, &target, &[]).await;
    assert_eq!(first.status, 101);
    let (second, _) = ws(addr, &target, &[]).await;
    assert_eq!(second.status, 403);
    assert_eq!(s.await.unwrap().0.status, 101);
}

#[tokio::test]
async fn case_18_hyco_ws_headers_quirk() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let a = next_json(&mut ctl).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (lh, _l) = ws(
        addr,
        &target,
        &[("0", "Sec-WebSocket-Extensions: permessage-deflate")],
    )
    .await;
    assert_eq!(lh.status, 101);
    assert_eq!(s.await.unwrap().0.status, 101);
}

#[tokio::test]
async fn case_19_unsolicited_pongs_and_pings() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    for _ in 0..3 {
        send(&mut ctl, true, OpCode::Pong, b"").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send(&mut ctl, true, OpCode::Ping, b"p").await;
    let f = tokio::time::timeout(SECS, ctl.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.opcode, f.payload.to_vec()),
        (OpCode::Pong, b"p".to_vec())
    );
    // Still usable.
    let (_s, _l) = pair(&gw, &mut ctl, "hc1").await;
}

#[tokio::test]
async fn case_20_gateway_keepalive_drops_silent_listener() {
    let gw = Gateway::start("[limits]\nping_interval = 1\n");
    let t = token("hc1", ROOT, 3600);
    let (head, ctl) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(head.status, 101);
    // Never read: pings go unanswered. After about three intervals the
    // listener is dropped and no longer selected.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (sh, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=connect",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(sh.status, 404);
    drop(ctl);
}

#[tokio::test]
async fn case_21_renew_token_valid() {
    let gw = Gateway::start("[limits]\ntoken_grace = 0\n");
    // Expired by 28 s (within the 30 s clock skew): without renewal the
    // channel would close about 2 s from now.
    let t = token("hc1", ROOT, -28);
    let (head, ctl) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(head.status, 101);
    let mut ctl = ctl.unwrap();
    // The renewed token names the host the listener connected to (as Node's
    // createRelayToken does), not the namespace host.
    let t127 = hybrid::sas::create(
        "http://127.0.0.1/hc1",
        ROOT,
        support::gateway::KEY,
        4_000_000_000,
    );
    let renew = serde_json::json!({"renewToken": {"token": t127}}).to_string();
    send_text(&mut ctl, &renew).await;
    // No reply, and the channel survives the old expiry.
    assert!(next(&mut ctl, Duration::from_secs(4)).await.is_none());
    let (_s, _l) = pair(&gw, &mut ctl, "hc1").await;
}

#[tokio::test]
async fn case_22_renew_token_invalid() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let bad = hybrid::sas::create("http://localhost/hc1", ROOT, "wrong", 4_000_000_000);
    send_text(
        &mut ctl,
        &serde_json::json!({"renewToken": {"token": bad}}).to_string(),
    )
    .await;
    let (op, _, data) = next(&mut ctl, SECS).await.unwrap();
    assert_eq!(op, OpCode::Close);
    assert_eq!(&data[..2], &1008u16.to_be_bytes());
    assert!(String::from_utf8_lossy(&data[2..]).contains("TrackingId"));
}

#[tokio::test]
async fn case_23_expiry_without_renew() {
    let gw = Gateway::start("[limits]\ntoken_grace = 0\n");
    let t = token("hc1", ROOT, -28);
    let (_, ctl) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    let mut ctl = ctl.unwrap();
    // An established connection is not affected by the listener's expiry.
    let (mut s, mut l) = pair(&gw, &mut ctl, "hc1").await;
    let (op, _, data) = next(&mut ctl, Duration::from_secs(8)).await.unwrap();
    assert_eq!(
        (op, &data[..2]),
        (OpCode::Close, &1008u16.to_be_bytes()[..])
    );
    send_text(&mut s, "still here").await;
    assert_eq!(
        next(&mut l, SECS).await,
        Some((OpCode::Text, true, b"still here".to_vec()))
    );
}

#[tokio::test]
async fn case_24_unknown_listener_command_ignored() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    send_text(&mut ctl, r#"{"foo":{}}"#).await;
    let (_s, _l) = pair(&gw, &mut ctl, "hc1").await;
}

#[tokio::test]
async fn case_25_load_balancing() {
    let gw = Gateway::start("");
    let mut ctls = Vec::new();
    for _ in 0..3 {
        ctls.push(listener(&gw, "hc1").await);
    }
    let mut counts = [0usize; 3];
    for _ in 0..30 {
        let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
        // Whichever listener got the accept answers it.
        let (i, a) = loop {
            let mut found = None;
            for (i, c) in ctls.iter_mut().enumerate() {
                if let Some((OpCode::Text, _, d)) = next(c, Duration::from_millis(50)).await {
                    found = Some((i, serde_json::from_slice::<Value>(&d).unwrap()));
                    break;
                }
            }
            if let Some(f) = found {
                break f;
            }
        };
        counts[i] += 1;
        let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
        let (_, _l) = ws(addr, &target, &[]).await;
        assert_eq!(s.await.unwrap().0.status, 101);
    }
    assert!(counts.iter().all(|c| *c >= 1), "{counts:?}");
    // A closed listener is never chosen.
    let mut dead = ctls.remove(0);
    close(&mut dead, 1000, "bye").await;
    drop(dead);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
        let a = loop {
            let mut found = None;
            for c in ctls.iter_mut() {
                if let Some((OpCode::Text, _, d)) = next(c, Duration::from_millis(50)).await {
                    found = Some(serde_json::from_slice::<Value>(&d).unwrap());
                    break;
                }
            }
            if let Some(f) = found {
                break f;
            }
        };
        let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
        let (_, _l) = ws(addr, &target, &[]).await;
        assert_eq!(s.await.unwrap().0.status, 101);
    }
}

#[tokio::test]
async fn case_26_twenty_sixth_listener_refused() {
    let gw = Gateway::start("");
    let mut held = Vec::new();
    for _ in 0..25 {
        held.push(listener(&gw, "hc1").await);
    }
    let (head, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("hc1", ROOT, 3600))],
    )
    .await;
    assert_eq!(head.status, 403);
    assert!(head.reason.contains("QuotaExceeded"), "{}", head.reason);
    // One leaves; another may join.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _again = listener(&gw, "hc1").await;
}

#[tokio::test]
async fn case_27_allowed_and_disallowed_listeners() {
    let gw = Gateway::start("");
    let t = token("web", ROOT, 3600);
    let mut ids = Vec::new();
    let mut ctls = Vec::new();
    for id in ["aaa", "bbb"] {
        let (h, c) = ws(
            gw.http,
            &format!("/$hc/web?sb-hc-action=listen&sb-hc-id={id}"),
            &[("ServiceBusAuthorization", &t)],
        )
        .await;
        assert_eq!(h.status, 101);
        ids.push(id);
        ctls.push(c.unwrap());
    }
    for _ in 0..5 {
        let req = tokio::spawn({
            let (addr, t) = (gw.http, t.clone());
            async move {
                http(
                    addr,
                    "GET",
                    "/web/x",
                    &[
                        ("ServiceBusAuthorization", &t),
                        ("Microsoft-Relay-AllowedListeners", "bbb"),
                    ],
                    b"",
                )
                .await
            }
        });
        // Only bbb gets it.
        let msg = next_json(&mut ctls[1]).await;
        let r = &msg["request"];
        let reply = serde_json::json!({"response": {"requestId": r["id"], "statusCode": 200, "body": false}}).to_string();
        send_text(&mut ctls[1], &reply).await;
        assert_eq!(req.await.unwrap().0.status, 200);
        assert!(next(&mut ctls[0], Duration::from_millis(50))
            .await
            .is_none());
    }
    let (head, body) = http(
        gw.http,
        "GET",
        "/web/x",
        &[
            ("ServiceBusAuthorization", &t),
            ("Microsoft-Relay-DisallowedListeners", "aaa, bbb"),
        ],
        b"",
    )
    .await;
    assert_eq!(head.status, 404);
    assert!(String::from_utf8_lossy(&body).contains("None of the connected listeners meet"));
}

#[tokio::test]
async fn case_48_java_shaped_accept() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    // No headers beyond the handshake, no sb-hc-id: the shape is still complete.
    let _s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), auth("hc1"));
    let msg = next_json(&mut ctl).await;
    let a = msg["accept"].as_object().unwrap();
    assert!(a["connectHeaders"].is_object() && a["remoteEndpoint"].is_object());
    assert!(a["id"].is_string() && a["address"].is_string());
    assert!(a["connectHeaders"]
        .as_object()
        .unwrap()
        .values()
        .all(Value::is_string));
}

// ---- Relayed HTTP (cases 28-46) ----

fn send_auth(path: &str) -> (String, String) {
    ("ServiceBusAuthorization".into(), token(path, ROOT, 3600))
}

/// Issue an HTTP request in the background.
fn request(
    addr: SocketAddr,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> tokio::task::JoinHandle<(wsclient::Head, Vec<u8>)> {
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        http(addr, method, &target, &h, &body).await
    })
}

/// Answer a request on a WebSocket (control channel or rendezvous).
async fn respond(
    ws: &mut Ws,
    id: &Value,
    status: Value,
    desc: Option<&str>,
    headers: Value,
    body: Option<&[u8]>,
) {
    let mut r = serde_json::json!({"requestId": id, "statusCode": status, "responseHeaders": headers, "body": body.is_some()});
    if let Some(d) = desc {
        r["statusDescription"] = Value::from(d);
    }
    send_text(ws, &serde_json::json!({ "response": r }).to_string()).await;
    if let Some(b) = body {
        send(ws, true, OpCode::Binary, b).await;
    }
}

#[tokio::test]
async fn case_28_http_get_small() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let t = token("hc2", ROOT, 3600);
    let req = request(
        gw.http,
        "GET",
        format!("/hc2/a?x=1&sb-hc-token={}", url_encode(&t)),
        vec![send_auth("hc2"), ("TE".into(), "trailers".into())],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    let r = &msg["request"];
    assert_eq!(r["method"], "GET");
    assert_eq!(r["requestTarget"], "/hc2/a?x=1");
    assert_eq!(r["body"], false);
    let h = r["requestHeaders"].as_object().unwrap();
    assert_eq!(h["Via"], "1.1 localhost");
    assert!(h.contains_key("Host"));
    for gone in [
        "Content-Length",
        "Connection",
        "Te",
        "TE",
        "Upgrade",
        "ServiceBusAuthorization",
    ] {
        assert!(!h.contains_key(gone), "{gone} forwarded: {h:?}");
    }
    assert!(r["address"]
        .as_str()
        .unwrap()
        .contains("sb-hc-action=request"));
    respond(
        &mut ctl,
        &r["id"],
        Value::from(200),
        None,
        serde_json::json!({"Content-Type": "text/plain"}),
        Some(b"hi"),
    )
    .await;
    let (head, body) = req.await.unwrap();
    assert_eq!((head.status, body), (200, b"hi".to_vec()));
    assert_eq!(head.header("via"), Some("1.1 localhost"));
}

#[tokio::test]
async fn case_29_http_post_inline_body() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "POST",
        "/hc2/p".into(),
        vec![send_auth("hc2")],
        b"123456".to_vec(),
    );
    let msg = next_json(&mut ctl).await;
    assert_eq!(msg["request"]["body"], true);
    // The body is the very next message, one binary message.
    let (op, fin, data) = next(&mut ctl, SECS).await.unwrap();
    assert_eq!((op, fin, data), (OpCode::Binary, true, b"123456".to_vec()));
    respond(
        &mut ctl,
        &msg["request"]["id"],
        Value::from(204),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert_eq!(req.await.unwrap().0.status, 204);
}

#[tokio::test]
async fn case_30_query_stripping() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    for (q, want) in [
        ("?sb-hc-id=1&custom=value", "/hc2/q?custom=value"),
        ("?sb-hc-undefined", "/hc2/q?sb-hc-undefined"),
        ("?&&&", "/hc2/q?&&&"),
        ("?SB-HC-ID=1", "/hc2/q"),
        ("?a=1&a=2&", "/hc2/q?a=1&a=2&"),
        (
            "?x=%2B&y=+&z=%2f%3a%3d%26",
            "/hc2/q?x=%2B&y=+&z=%2f%3a%3d%26",
        ),
    ] {
        let req = request(
            gw.http,
            "GET",
            format!("/hc2/q{q}"),
            vec![send_auth("hc2")],
            vec![],
        );
        let msg = next_json(&mut ctl).await;
        assert_eq!(msg["request"]["requestTarget"], want, "{q}");
        respond(
            &mut ctl,
            &msg["request"]["id"],
            Value::from(200),
            None,
            serde_json::json!({}),
            None,
        )
        .await;
        req.await.unwrap();
    }
}

#[tokio::test]
async fn case_31_multi_value_headers() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "GET",
        "/hc2/m".into(),
        vec![
            send_auth("hc2"),
            ("X-A".into(), "1".into()),
            ("X-A".into(), "2".into()),
        ],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    assert_eq!(msg["request"]["requestHeaders"]["X-A"], "1, 2");
    respond(
        &mut ctl,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({"X-B": "3,4"}),
        None,
    )
    .await;
    let (head, _) = req.await.unwrap();
    assert_eq!(head.header("x-b"), Some("3,4"));
}

const AUTH_ENTITIES: &str = r#"
[[hybrid_connection]]
path = "open"
requires_client_authorization = false
[[hybrid_connection]]
path = "closed"
requires_client_authorization = true
"#;

#[tokio::test]
async fn case_32_authorization_header_pass_through() {
    let gw = Gateway::start(AUTH_ENTITIES);
    let mut open = listener(&gw, "open").await;
    let req = request(
        gw.http,
        "GET",
        "/open/x".into(),
        vec![("Authorization".into(), "Bearer x".into())],
        vec![],
    );
    let msg = next_json(&mut open).await;
    assert_eq!(
        msg["request"]["requestHeaders"]["Authorization"],
        "Bearer x"
    );
    respond(
        &mut open,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert_eq!(req.await.unwrap().0.status, 200);
    // With authorization required and no other token, Authorization is the token: consumed and stripped.
    let mut closed = listener(&gw, "closed").await;
    let req = request(
        gw.http,
        "GET",
        "/closed/x".into(),
        vec![("Authorization".into(), token("closed", ROOT, 3600))],
        vec![],
    );
    let msg = next_json(&mut closed).await;
    assert!(msg["request"]["requestHeaders"]
        .get("Authorization")
        .is_none());
    respond(
        &mut closed,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert_eq!(req.await.unwrap().0.status, 200);
}

#[tokio::test]
async fn case_33_anonymous_sender() {
    let gw = Gateway::start(AUTH_ENTITIES);
    let mut open = listener(&gw, "open").await;
    let s = sender(gw.http, "/$hc/open?sb-hc-action=connect".into(), vec![]);
    let a = next_json(&mut open).await;
    let (addr, target) = split_url(a["accept"]["address"].as_str().unwrap());
    let (_, _l) = ws(addr, &target, &[]).await;
    assert_eq!(s.await.unwrap().0.status, 101);
    let req = request(gw.http, "GET", "/open/y".into(), vec![], vec![]);
    let msg = next_json(&mut open).await;
    respond(
        &mut open,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert_eq!(req.await.unwrap().0.status, 200);
    let _closed = listener(&gw, "closed").await;
    let (head, body) = http(gw.http, "GET", "/closed/y", &[], b"").await;
    assert_eq!(head.status, 401);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "TokenMissingOrInvalid");
    assert!(head.header("via").is_none());
    let (head, _) = ws(gw.http, "/$hc/closed?sb-hc-action=connect", &[]).await;
    assert_eq!(head.status, 401);
}

#[tokio::test]
async fn case_34_null_status_description() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "GET",
        "/hc2/c".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    let r = serde_json::json!({"response": {"requestId": msg["request"]["id"], "statusCode": 201, "statusDescription": null, "body": false}});
    send_text(&mut ctl, &r.to_string()).await;
    let (head, _) = req.await.unwrap();
    assert_eq!((head.status, head.reason.as_str()), (201, "Created"));
}

#[tokio::test]
async fn case_35_custom_reasons_and_odd_codes() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    for (code, desc) in [
        (200, "TestStatusDescription"),
        (418, "I'm a teapot"),
        (450, "Blocked"),
        (502, "Listener says bad gateway"),
        (504, "Listener says timeout"),
    ] {
        let req = request(
            gw.http,
            "GET",
            "/hc2/s".into(),
            vec![send_auth("hc2")],
            vec![],
        );
        let msg = next_json(&mut ctl).await;
        // statusCode as a string, as in the docs' example.
        respond(
            &mut ctl,
            &msg["request"]["id"],
            Value::from(code.to_string()),
            Some(desc),
            serde_json::json!({}),
            None,
        )
        .await;
        let (head, _) = req.await.unwrap();
        assert_eq!((head.status, head.reason.as_str()), (code, desc));
        assert!(head.header("via").is_some());
    }
}

#[tokio::test]
async fn case_36_head_and_stray_empty_frame() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "HEAD",
        "/hc2/h".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    respond(
        &mut ctl,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({"Content-Length": "42"}),
        None,
    )
    .await;
    send(&mut ctl, true, OpCode::Binary, b"").await; // hyco-https's stray frame
    let (head, body) = req.await.unwrap();
    assert_eq!(head.status, 200);
    assert!(body.is_empty());
    let req = request(
        gw.http,
        "GET",
        "/hc2/after".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    assert_eq!(msg["request"]["requestTarget"], "/hc2/after");
    respond(
        &mut ctl,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        Some(b"ok"),
    )
    .await;
    assert_eq!(req.await.unwrap().1, b"ok");
}

async fn read_message(ws: &mut Ws) -> (OpCode, Vec<u8>) {
    let (op, mut fin, mut data) = next(ws, SECS).await.unwrap();
    while !fin {
        let (_, f, more) = next(ws, SECS).await.unwrap();
        fin = f;
        data.extend(more);
    }
    (op, data)
}

#[tokio::test]
async fn case_37_large_request_over_rendezvous() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let req = request(
        gw.http,
        "POST",
        "/hc2/big?k=v".into(),
        vec![send_auth("hc2")],
        big.clone(),
    );
    let msg = next_json(&mut ctl).await;
    let r = msg["request"].as_object().unwrap();
    assert!(r.contains_key("address") && r.contains_key("id"));
    assert!(!r.contains_key("method") && !r.contains_key("body"));
    let (addr, target) = split_url(r["address"].as_str().unwrap());
    let (head, rv) = ws(addr, &target, &[]).await;
    assert_eq!(head.status, 101);
    let mut rv = rv.unwrap();
    let full = next_json(&mut rv).await;
    assert_eq!(full["request"]["method"], "POST");
    assert_eq!(full["request"]["requestTarget"], "/hc2/big?k=v");
    assert_eq!(full["request"]["body"], true);
    let (op, data) = read_message(&mut rv).await;
    assert_eq!((op, data.len()), (OpCode::Binary, big.len()));
    assert_eq!(data, big);
    respond(
        &mut rv,
        &full["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        Some(b"got it"),
    )
    .await;
    let (head, body) = req.await.unwrap();
    assert_eq!((head.status, body), (200, b"got it".to_vec()));
}

#[tokio::test]
async fn case_37b_chunked_request_of_unknown_length() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let addr = gw.http;
    let t = token("hc2", ROOT, 3600);
    let client = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!("POST /hc2/chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\nServiceBusAuthorization: {t}\r\nTransfer-Encoding: chunked\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        for part in ["hello ", "chunked ", "world"] {
            s.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                .await
                .unwrap();
        }
        s.write_all(b"0\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    });
    let msg = next_json(&mut ctl).await;
    assert!(msg["request"].get("method").is_none());
    let (a, target) = split_url(msg["request"]["address"].as_str().unwrap());
    let (_, rv) = ws(a, &target, &[]).await;
    let mut rv = rv.unwrap();
    let full = next_json(&mut rv).await;
    let (_, data) = read_message(&mut rv).await;
    assert_eq!(data, b"hello chunked world");
    respond(
        &mut rv,
        &full["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert!(client.await.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn case_38_large_response_over_listener_rendezvous() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "GET",
        "/hc2/large".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    let (addr, target) = split_url(msg["request"]["address"].as_str().unwrap());
    let (_, rv) = ws(addr, &target, &[]).await;
    let mut rv = rv.unwrap();
    let body: Vec<u8> = (0..80_000u32).map(|i| (i % 199) as u8).collect();
    // The gateway does not resend the request here; the listener writes the response.
    respond(
        &mut rv,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        Some(&body),
    )
    .await;
    let (head, got) = req.await.unwrap();
    assert_eq!((head.status, got.len()), (200, body.len()));
    assert_eq!(got, body);
    let (op, _, data) = next(&mut rv, SECS).await.unwrap();
    assert_eq!(
        (op, &data[..2]),
        (OpCode::Close, &1000u16.to_be_bytes()[..])
    );
}

#[tokio::test]
async fn case_39_slow_streamed_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    let t = token("hc2", ROOT, 3600);
    client
        .write_all(
            format!("GET /hc2/slow HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let msg = next_json(&mut ctl).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (addr, target) = split_url(msg["request"]["address"].as_str().unwrap());
    let (_, rv) = ws(addr, &target, &[]).await;
    let mut rv = rv.unwrap();
    send_text(&mut rv, &serde_json::json!({"response": {"requestId": msg["request"]["id"], "statusCode": 200, "body": true}}).to_string()).await;
    send(&mut rv, false, OpCode::Binary, b"first-").await;
    // The first bytes reach the client before the message ends.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("first-") {
        let n = tokio::time::timeout(SECS, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    send(&mut rv, false, OpCode::Continuation, b"second").await;
    send(&mut rv, true, OpCode::Continuation, b"").await;
    while !String::from_utf8_lossy(&got).contains("\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(SECS, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("second"));
}

#[tokio::test]
async fn case_40_listener_timeout() {
    let gw = Gateway::start("[limits]\nrequest_timeout = 2\n");
    let mut ctl = listener(&gw, "hc2").await;
    let start = std::time::Instant::now();
    let req = request(
        gw.http,
        "GET",
        "/hc2/never".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let _ = next_json(&mut ctl).await;
    let (head, body) = req.await.unwrap();
    assert_eq!(head.status, 504);
    assert!(start.elapsed() >= Duration::from_secs(2));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "GatewayTimeout");
    assert!(head.header("via").is_none());
}

#[tokio::test]
async fn case_41_response_body_stall_aborts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start("[limits]\nresponse_idle_timeout = 2\n");
    let mut ctl = listener(&gw, "hc2").await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    let t = token("hc2", ROOT, 3600);
    client
        .write_all(
            format!("GET /hc2/stall HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let msg = next_json(&mut ctl).await;
    send_text(&mut ctl, &serde_json::json!({"response": {"requestId": msg["request"]["id"], "statusCode": 200, "body": true}}).to_string()).await;
    send(&mut ctl, false, OpCode::Binary, b"partial").await;
    // No more: after the idle timeout the client's connection is cut without a final chunk.
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
    assert!(ended.is_ok(), "connection not aborted");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("partial") && !text.contains("\r\n0\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn case_42_http_no_listener_or_unknown_hc() {
    let gw = Gateway::start_with(
        &(support::gateway::BASE_CONFIG.replace(
            "dynamic_hybrid_connections = true",
            "dynamic_hybrid_connections = false",
        ) + AUTH_ENTITIES),
    );
    for path in ["/open/x", "/nope/x"] {
        let (head, body) = http(gw.http, "GET", path, &[], b"").await;
        assert_eq!(head.status, 404, "{path}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "EndpointNotFound");
        assert!(head.header("via").is_none());
    }
}

#[tokio::test]
async fn case_43_listener_drops_mid_request() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let start = std::time::Instant::now();
    let req = request(
        gw.http,
        "GET",
        "/hc2/drop".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let _ = next_json(&mut ctl).await;
    drop(ctl);
    let (head, _) = req.await.unwrap();
    assert!([502, 504].contains(&head.status));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "not prompt: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn case_44_management_get() {
    let gw = Gateway::start(AUTH_ENTITIES);
    let _l1 = listener(&gw, "closed").await;
    let _l2 = listener(&gw, "closed").await;
    let t = token("closed", "ListenOnly", 600);
    let (head, body) = http(
        gw.http,
        "GET",
        "/closed?api-version=2016-07",
        &[("X-PROCESS-AT", "ServiceBus"), ("Authorization", &t)],
        b"",
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head
        .header("content-type")
        .unwrap()
        .starts_with("application/atom+xml;type=entry"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("<ListenerCount>2</ListenerCount>"), "{text}");
    assert!(text.contains("<RequiresClientAuthorization>true</RequiresClientAuthorization>"));
    let order = [
        "CreatedAt",
        "UpdatedAt",
        "RequiresClientAuthorization",
        "UserMetadata",
        "ListenerCount",
    ]
    .map(|e| text.find(&format!("<{e}>")).unwrap());
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    let (head, _) = http(
        gw.http,
        "GET",
        "/closed?api-version=2016-07",
        &[("X-PROCESS-AT", "ServiceBus")],
        b"",
    )
    .await;
    assert_eq!(head.status, 401);
}

#[tokio::test]
async fn case_45_api_version_without_process_at_is_relayed() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc2").await;
    let req = request(
        gw.http,
        "GET",
        "/hc2?api-version=abc".into(),
        vec![send_auth("hc2")],
        vec![],
    );
    let msg = next_json(&mut ctl).await;
    assert_eq!(msg["request"]["requestTarget"], "/hc2?api-version=abc");
    respond(
        &mut ctl,
        &msg["request"]["id"],
        Value::from(200),
        None,
        serde_json::json!({}),
        None,
    )
    .await;
    assert_eq!(req.await.unwrap().0.status, 200);
}

#[tokio::test]
async fn case_46_connect_and_upgrade_on_http_path_refused() {
    let gw = Gateway::start("");
    let _ctl = listener(&gw, "hc1").await;
    let (head, _) = http(gw.http, "CONNECT", "localhost:443", &[], b"").await;
    assert!([400, 405].contains(&head.status), "{head:?}");
    let (head, _) = ws(
        gw.http,
        "/hc1",
        &[("ServiceBusAuthorization", &token("hc1", ROOT, 3600))],
    )
    .await;
    assert!([400, 405].contains(&head.status), "{head:?}");
}

/// The query an accepting listener is handed is rebuilt as the service
/// rebuilds it (the .NET SDK's own tests expect `+` for spaces and
/// lower-case escapes), with the `sb-hc-` parameters removed.
#[tokio::test]
async fn accept_addresses_carry_the_query_as_the_service_encodes_it() {
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let _s = sender(
        gw.http,
        "/$hc/hc1/sub?%20Key%20=%20%20Value%20With%20Space&sb-hc-action=connect&key='value'&k2=%3Cv%3E"
            .into(),
        auth("hc1"),
    );
    let a = next_json(&mut ctl).await;
    let address = a["accept"]["address"].as_str().unwrap();
    let query = address.split_once('?').unwrap().1;
    assert!(
        query.starts_with(
            "+Key+=++Value+With+Space&key=%27value%27&k2=%3cv%3e&sb-hc-action=accept&"
        ),
        "{address}"
    );
}

/// Header names reach the listener as the sender spelled them (the .NET
/// SDK looks them up case-sensitively): on a WebSocket connect's
/// `connectHeaders`, and on relayed HTTP requests, each request of a
/// keep-alive connection with its own spelling, after a body and a chunked
/// body.
#[tokio::test]
async fn header_names_keep_the_senders_spelling() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start("");
    let mut ctl = listener(&gw, "hc1").await;
    let mut h = auth("hc1");
    h.push(("CustomHeader1".into(), "v".into()));
    h.push(("x-lower-case".into(), "w".into()));
    let _s = sender(gw.http, "/$hc/hc1?sb-hc-action=connect".into(), h);
    let a = next_json(&mut ctl).await;
    let headers = a["accept"]["connectHeaders"].as_object().unwrap();
    assert_eq!(
        headers.get("CustomHeader1").and_then(Value::as_str),
        Some("v"),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("x-lower-case").and_then(Value::as_str),
        Some("w"),
        "{headers:?}"
    );

    let t = token("hc2", ROOT, 3600);
    let mut ctl = listener(&gw, "hc2").await;
    let mut client = TcpStream::connect(gw.http).await.unwrap();
    let heads = [
        format!("POST /hc2/1 HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\ncustomHEADER1: a\r\nContent-Length: 26\r\n\r\nX-Not-A-Header: body\r\n\r\n!!"),
        format!("PUT /hc2/2 HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\nCustomHeader1: b\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"),
        format!("GET /hc2/3 HTTP/1.1\r\nHost: x\r\nServiceBusAuthorization: {t}\r\nCUSTOMHEADER1: c\r\n\r\n"),
    ];
    for (i, (head, want)) in heads
        .iter()
        .zip(["customHEADER1", "CustomHeader1", "CUSTOMHEADER1"])
        .enumerate()
    {
        client.write_all(head.as_bytes()).await.unwrap();
        let msg = next_json(&mut ctl).await;
        let r = &msg["request"];
        if let Some(h) = r["requestHeaders"].as_object() {
            assert!(h.keys().any(|n| n == want), "request {i}: {h:?}");
        }
        if r["body"] == true && r.get("method").is_some() {
            let _ = next(&mut ctl, SECS).await;
        }
        let reply = serde_json::json!({"response": {"requestId": r["id"], "statusCode": 200, "body": false}});
        if r.get("method").is_some() {
            send_text(&mut ctl, &reply.to_string()).await;
        } else {
            // Rendezvous form (the chunked body): answer on the rendezvous.
            let (addr, target) = split_url(r["address"].as_str().unwrap());
            let (_, rv) = ws(addr, &target, &[]).await;
            let mut rv = rv.unwrap();
            let req = next_json(&mut rv).await;
            let names: Vec<String> = req["request"]["requestHeaders"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert!(
                names.iter().any(|n| n == want),
                "request {i} (rendezvous): {names:?}"
            );
            let _ = next(&mut rv, SECS).await;
            let reply = serde_json::json!({"response": {"requestId": req["request"]["id"], "statusCode": 200, "body": false}});
            send_text(&mut rv, &reply.to_string()).await;
        }
        let mut buf = [0u8; 1024];
        let n = client.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "request {i}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // Relayed HTTP bytes are counted (inline body 26, chunked body 4).
    let (_, metrics) = http(gw.admin.unwrap(), "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8_lossy(&metrics);
    let want = r#"relay_bytes_transferred_total{namespace="localhost",entity="hc2",frontend="hybrid_http",direction="to_listener"} 30"#;
    assert!(metrics.contains(want), "{metrics}");
}
