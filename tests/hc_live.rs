//! Live tests with the real Hybrid Connections SDKs from the npm registry
//! (hyco-ws 1.0.5, hyco-https 1.4.5; `tests/peers/hc`) and curl: WebSocket
//! echo of text and 200 KB binary messages over `ws://` and `wss://` (with
//! `NODE_EXTRA_CA_CERTS` pointing at the gateway's development CA), balancing
//! across three hyco-ws listeners, a hyco-https listener serving GET and POST
//! with small and 1 MiB bodies, and case 47 of the conformance table (a
//! hyco-ws reconnect storm on a bad token leaves the gateway healthy);
//! websocat as a raw sender; and a burst of pipelined messages through a
//! hyco-ws echo (the gateway's batched writes against a real parser).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::gateway::{Gateway, KEY, ROOT};
use support::hyco::{curl, sender, sha256_hex, Node};

#[test]
fn hyco_ws_echo_over_ws_and_wss() {
    let gw = Gateway::start("");
    let ws_base = format!("ws://{}", gw.http);
    let l = Node::echo(&ws_base, "echo", "plain", None);
    assert_eq!(sender(&ws_base, "echo", "3", None), "ok 3");

    let wss_base = format!("wss://localhost:{}", gw.https.port());
    let ca = gw.ca();
    let lt = Node::echo(&wss_base, "secure", "tls", Some(&ca));
    assert_eq!(sender(&wss_base, "secure", "3", Some(&ca)), "ok 3");
    drop((l, lt));
    gw.stop_clean();
}

#[test]
fn balancing_across_three_hyco_ws_listeners() {
    let gw = Gateway::start("");
    let base = format!("ws://{}", gw.http);
    let listeners: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::spawn("ws-listener.js", &[&base, "lb", ROOT, KEY, n], None))
        .collect();
    for (l, n) in listeners.iter().zip(["a", "b", "c"]) {
        l.wait_for(&format!("listening {n}"), Duration::from_secs(10));
    }
    for _ in 0..24 {
        assert_eq!(sender(&base, "lb", "1", None), "ok 1");
    }
    let counts: Vec<usize> = listeners
        .iter()
        .zip(["a", "b", "c"])
        .map(|(l, n)| l.count(&format!("accepted {n}")))
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 24);
    assert!(counts.iter().all(|c| *c >= 1), "{counts:?}");
}

#[test]
fn hyco_https_listener_serves_curl_over_http_and_https() {
    let gw = Gateway::start("");
    let dir = support::gateway::TempDir::new("curl");
    let big: Vec<u8> = (0..(1 << 20) + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let big_file = dir.0.join("big.bin");
    std::fs::write(&big_file, &big).unwrap();
    let token = support::gateway::token("web", ROOT, 3600);
    let auth = format!("ServiceBusAuthorization: {token}");
    let ca = gw.ca();
    for (listen_base, http_base, ca) in [
        (
            format!("ws://{}", gw.http),
            format!("http://{}", gw.http),
            None,
        ),
        (
            format!("wss://localhost:{}", gw.https.port()),
            format!("https://localhost:{}", gw.https.port()),
            Some(ca.as_path()),
        ),
    ] {
        let l = Node::spawn("https-listener.js", &[&listen_base, "web", ROOT, KEY], ca);
        l.wait_for("listening", Duration::from_secs(10));
        let ca_args: Vec<String> = ca
            .map(|c| vec!["--cacert".to_string(), c.display().to_string()])
            .unwrap_or_default();
        let ca_args: Vec<&str> = ca_args.iter().map(String::as_str).collect();
        // Small GET with a custom header.
        let v: serde_json::Value = serde_json::from_str(&curl(
            &[
                &ca_args[..],
                &[
                    "-H",
                    &auth,
                    "-H",
                    "X-Test: 1",
                    &format!("{http_base}/web/a?x=1"),
                ],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(
            (
                v["method"].as_str(),
                v["url"].as_str(),
                v["header"].as_str()
            ),
            (Some("GET"), Some("/web/a?x=1"), Some("1"))
        );
        // Small POST.
        let v: serde_json::Value = serde_json::from_str(&curl(
            &[
                &ca_args[..],
                &[
                    "-H",
                    &auth,
                    "--data-binary",
                    "hello!",
                    &format!("{http_base}/web/p"),
                ],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(
            (v["length"].as_u64(), v["sha256"].as_str()),
            (Some(6), Some(sha256_hex(b"hello!").as_str()))
        );
        // 1 MiB POST (over a rendezvous).
        let at = format!("@{}", big_file.display());
        let v: serde_json::Value = serde_json::from_str(&curl(
            &[
                &ca_args[..],
                &[
                    "-H",
                    &auth,
                    "--data-binary",
                    &at,
                    &format!("{http_base}/web/upload"),
                ],
            ]
            .concat(),
        ))
        .unwrap();
        assert_eq!(
            (v["length"].as_u64(), v["sha256"].as_str()),
            (Some(big.len() as u64), Some(sha256_hex(&big).as_str()))
        );
        // Bodies around the inline limit: hyco-https sends up to and
        // including 64 KiB as one binary frame on the control channel, which
        // must be accepted whole (it once closed the channel and left the
        // client a clean 200 with an empty body); 1 MiB goes over the
        // listener's own rendezvous.
        for n in [65_535, 65_536, 65_537, 1 << 20] {
            let out = dir.0.join(format!("down-{n}.bin"));
            curl(
                &[
                    &ca_args[..],
                    &[
                        "-H",
                        &auth,
                        "-o",
                        &out.display().to_string(),
                        &format!("{http_base}/web/big?n={n}"),
                    ],
                ]
                .concat(),
            );
            let got = std::fs::read(&out).unwrap();
            assert_eq!(got.len(), n, "a {n}-byte body");
            assert!(got.iter().enumerate().all(|(i, b)| *b as usize == i % 251));
        }
        assert_eq!(
            l.count("listening"),
            1,
            "the control channel was not reopened"
        );
    }
    gw.stop_clean();
}

#[test]
fn case_47_reconnect_storm_leaves_the_gateway_healthy() {
    let gw = Gateway::start("");
    let base = format!("ws://{}", gw.http);
    // hyco-ws reconnects at once on every 401: a storm.
    let storm = Node::spawn(
        "ws-listener.js",
        &[&base, "storm", ROOT, "wrong-key", "storm"],
        None,
    );
    std::thread::sleep(Duration::from_secs(2));
    let refused = gw.log().matches("listen refused").count();
    assert!(refused > 20, "only {refused} refusals logged");
    let _good = Node::echo(&base, "calm", "calm", None);
    assert_eq!(sender(&base, "calm", "2", None), "ok 2");
    drop(storm);
    gw.stop_clean();
}

#[test]
fn hyco_ws_listeners_reconnect_after_the_gateway_restarts() {
    let first = Gateway::start("");
    let keep = support::gateway::TempDir::new("restart");
    let config = first.restart_config(&keep);
    let base = format!("ws://{}", first.http);
    let l = Node::echo(&base, "again", "again", None);
    assert_eq!(sender(&base, "again", "2", None), "ok 2");
    first.stop_clean();
    let second = Gateway::start_with(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while l.count("listening again") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hyco-ws listener did not reconnect"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sender(&base, "again", "2", None), "ok 2");
    drop(l);
    second.stop_clean();
}

#[test]
fn websocat_as_a_raw_sender() {
    let gw = Gateway::start("");
    let base = format!("ws://{}", gw.http);
    let l = Node::echo(&base, "raw", "raw", None);
    let websocat = support::peers().join("tools/bin/websocat");
    assert!(websocat.exists(), "run tests/peers/install.sh");
    let token = support::gateway::token("raw", ROOT, 3600);
    let mut child = Command::new(websocat)
        .args([
            "-t",
            "--no-close",
            &format!("{base}/$hc/raw?sb-hc-action=connect"),
            "-H",
            &format!("ServiceBusAuthorization: {token}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"msg1\nmsg2\n").unwrap();
    }
    let out = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .take(2)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines, ["msg1", "msg2"]);
    assert_eq!(l.count("accepted raw"), 1);
}

/// Many messages written back to back (text and binary, every length form,
/// some in two fragments) reach a hyco-ws echo listener and come back whole
/// and in order: the gateway reads several frames at once and writes them
/// in one go, so this checks the batched path against a real peer's parser.
#[test]
fn pipelined_messages_come_back_whole_from_a_hyco_ws_echo() {
    use fastwebsockets::{Frame, OpCode, Payload};
    let gw = Gateway::start("");
    let base = format!("ws://{}", gw.http);
    let l = Node::echo(&base, "burst", "burst", None);
    let sizes = [1usize, 125, 126, 65535, 65536, 70000, 3];
    let messages: Vec<(bool, Vec<u8>)> = (0..140)
        .map(|i| {
            let n = sizes[i % sizes.len()];
            let text = i % 3 == 0;
            let data = if text {
                vec![b'a' + (i % 26) as u8; n]
            } else {
                (0..n).map(|j| (i * 7 + j) as u8).collect()
            };
            (text, data)
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let target = "/$hc/burst?sb-hc-action=connect".to_owned();
        let (head, ws) = support::hc::sender(gw.http, target, support::hc::auth("burst"))
            .await
            .unwrap();
        assert_eq!(head.status, 101);
        let mut ws = ws.unwrap();
        for (i, (text, data)) in messages.iter().enumerate() {
            let op = if *text { OpCode::Text } else { OpCode::Binary };
            if i % 5 == 0 && data.len() > 1 {
                let (a, b) = data.split_at(data.len() / 2);
                ws.write_frame(Frame::new(false, op, None, Payload::Borrowed(a)))
                    .await
                    .unwrap();
                ws.write_frame(Frame::new(
                    true,
                    OpCode::Continuation,
                    None,
                    Payload::Borrowed(b),
                ))
                .await
                .unwrap();
            } else {
                ws.write_frame(Frame::new(true, op, None, Payload::Borrowed(data)))
                    .await
                    .unwrap();
            }
        }
        for (i, (text, data)) in messages.iter().enumerate() {
            let (mut op, mut got) = (None, Vec::new());
            loop {
                let f = tokio::time::timeout(Duration::from_secs(20), ws.read_frame())
                    .await
                    .expect("an echo in time")
                    .unwrap();
                op = op.or(Some(f.opcode));
                got.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
            let want = if *text { OpCode::Text } else { OpCode::Binary };
            assert_eq!(op, Some(want), "message {i}");
            assert!(
                got == *data,
                "message {i}: {} bytes back, {} sent",
                got.len(),
                data.len()
            );
        }
    });
    assert_eq!(l.count("accepted burst"), 1);
}
