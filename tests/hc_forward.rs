//! `relay-gateway forward --hc` (issue 19 item 2) against the gateway and
//! the unmodified Hybrid Connections SDK for Node.js: `--connect` in front of
//! a hyco-ws echo listener; `--listen` serving a hyco-ws sender from a TCP
//! echo service; the two forwarders as a pair (as `azbridge -L` and `-R`)
//! carrying 10 MB each way with half-close, over `ws://` and `wss://`; a
//! refused service rejecting the accept; token renewal on the control
//! channel; `--hc --listen --http` serving curl from a local web server
//! (inline and rendezvous requests, 1 MiB each way).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::gateway::{Gateway, KEY, ROOT};
use support::hyco::Node;
use support::{run_with_timeout, spawn_ready, Proc};

/// A TCP echo service that echoes until the client's end of stream, then
/// ends its own (a half-close both ways).
fn echo_service() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// `forward --hc` with the all-rights key and `args`.
fn forward_hc(args: &[&str]) -> Command {
    let mut c = support::gateway();
    c.args(["forward", "--hc", "--key-name", ROOT, "--key", KEY])
        .args(args)
        .env("RUST_LOG", "info");
    c
}

/// Send `data`, end the sending side, and read everything back.
fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = s.try_clone().unwrap();
    let got = std::thread::spawn(move || {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        got
    });
    s.write_all(data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    got.join().unwrap()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// A listener forwarder for `url`'s path to `to`, once listening.
fn listener(url: &str, to: SocketAddr, extra: &[&str]) -> (Proc, String) {
    let to = to.to_string();
    let mut args = vec!["--listen", url, "--to", to.as_str()];
    args.extend_from_slice(extra);
    let (p, line, _) = spawn_ready(&mut forward_hc(&args), "listening");
    (p, line)
}

/// A connecting forwarder for `url`, once ready; its local address.
fn connector(url: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--connect", url, "--local", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (p, line, _) = spawn_ready(&mut forward_hc(&args), "ready");
    (p, line.trim_start_matches("ready ").trim().parse().unwrap())
}

#[test]
fn a_pair_of_forwarders_carries_tcp_both_ways_with_half_close_over_ws_and_wss() {
    let gw = Gateway::start("");
    let echo = echo_service();
    let ca = gw.ca().display().to_string();
    for (url, extra) in [
        (format!("ws://127.0.0.1:{}/bridge", gw.http.port()), vec![]),
        (
            format!("wss://localhost:{}/secure", gw.https.port()),
            vec!["--ca", ca.as_str()],
        ),
    ] {
        let (_l, line) = listener(&url, echo, &extra);
        assert!(line.ends_with(url.rsplit('/').next().unwrap()), "{line}");
        let (_c, local) = connector(&url, &extra);
        let data = pattern(10_000_000);
        let started = Instant::now();
        let got = round_trip(local, &data);
        assert!(
            got == data,
            "{url}: {} of {} bytes came back",
            got.len(),
            data.len()
        );
        eprintln!("{url}: 10 MB each way in {:?}", started.elapsed());
        // Several at once.
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    let data = pattern(100_000 + i);
                    round_trip(local, &data) == data
                })
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    }
    gw.stop_clean();
}

#[test]
fn forward_hc_connect_reaches_an_unmodified_hyco_ws_listener() {
    let gw = Gateway::start("");
    let base = format!("ws://127.0.0.1:{}", gw.http.port());
    let l = Node::echo(&base, "hyco", "hyco", None);
    let (_c, local) = connector(&format!("{base}/hyco"), &[]);
    // Bytes go as binary messages; hyco-ws echoes them as binary.
    let mut s = TcpStream::connect(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let data = pattern(300_000);
    s.write_all(&data).unwrap();
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == data);
    drop(s);
    assert_eq!(l.count("accepted hyco"), 1);
    gw.stop_clean();
}

#[test]
fn forward_hc_listen_serves_an_unmodified_hyco_ws_sender_and_rejects_when_the_service_is_down() {
    let gw = Gateway::start("");
    let base = format!("ws://127.0.0.1:{}", gw.http.port());
    let echo = echo_service();
    let (_l, _) = listener(&format!("{base}/served"), echo, &[]);
    // hyco-ws's own sender: 200 KB binary, echoed by the TCP service.
    let script = r#"
const hyco = require("hyco-ws"), [base, path, keyName, key] = process.argv.slice(1);
const token = hyco.createRelayToken(`http://${new URL(base).hostname}/${path}`, keyName, key);
const blob = require("crypto").randomBytes(200 * 1024);
const ws = hyco.relayedConnect(`${base}/$hc/${path}?sb-hc-action=connect`, token, () => ws.send(blob, { binary: true }));
let got = [];
ws.on("message", (m) => { got.push(Buffer.from(m)); const all = Buffer.concat(got);
  if (all.length >= blob.length) { console.log(all.equals(blob) ? "ok" : "differs"); process.exit(0); } });
ws.on("error", (e) => { console.log("fail: " + e.message); process.exit(1); });
setTimeout(() => { console.log("timeout"); process.exit(1); }, 20000);
"#;
    let run = |path: &str| {
        let out = run_with_timeout(
            Command::new("node")
                .current_dir(support::root().join("tests/peers/hc"))
                .args(["-e", script, &base, path, ROOT, KEY]),
            Duration::from_secs(30),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(run("served"), "ok");
    // A service that refuses: the forwarder rejects the accept, and the
    // sender hears the 502 at once instead of waiting out the timeout.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_down, _) = listener(&format!("{base}/down"), closed, &[]);
    let started = Instant::now();
    let out = run("down");
    assert!(out.contains("502"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop_clean();
}

#[test]
fn forward_hc_listen_renews_its_token_on_the_control_channel() {
    let gw = Gateway::start("[limits]\ntoken_grace = 1\n");
    let echo = echo_service();
    let url = format!("ws://127.0.0.1:{}/renewed", gw.http.port());
    // Tokens of 3 s, renewed every 1.5 s; past 4 s the gateway would close
    // a channel whose token was not renewed.
    let (l, _) = listener(&url, echo, &["--token-ttl", "3"]);
    std::thread::sleep(Duration::from_secs(7));
    let (_c, local) = connector(&url, &[]);
    assert_eq!(round_trip(local, b"still here"), b"still here");
    assert!(
        gw.log().matches("token renewed").count() >= 3,
        "{}",
        gw.log()
    );
    assert!(
        !gw.log().contains("token expired"),
        "the channel was never closed for its token"
    );
    drop(l);
    gw.stop_clean();
}

#[test]
fn forward_hc_listen_http_serves_curl_from_a_local_web_server() {
    let gw = Gateway::start("");
    let (_origin, port) = support::http_origin();
    let url = format!("ws://127.0.0.1:{}/web", gw.http.port());
    let to = format!("http://127.0.0.1:{port}/");
    let (_l, _, _) = spawn_ready(
        &mut forward_hc(&["--listen", &url, "--http", "--to", &to]),
        "listening",
    );
    let auth = format!(
        "ServiceBusAuthorization: {}",
        support::gateway::token("web", ROOT, 600)
    );
    let base = format!("http://127.0.0.1:{}/web", gw.http.port());
    let curl = |args: &[&str]| {
        let out = run_with_timeout(
            Command::new("curl")
                .args(["-sS", "--max-time", "30", "-H", &auth])
                .args(args),
            Duration::from_secs(40),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    // Inline: a small GET, and a small POST whose body rides with it.
    assert_eq!(curl(&[&format!("{base}/hello")]), b"hello");
    assert_eq!(
        curl(&[
            "--data-binary",
            "ping",
            "-H",
            "Content-Type: text/plain",
            &format!("{base}/echo")
        ]),
        b"ping"
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&curl(&["-H", "X-Test: 1", &format!("{base}/headers?q=1")]))
            .unwrap();
    assert_eq!(seen["path"], "/headers?q=1");
    // Over a rendezvous: a 1 MiB upload, and a 1 MiB download.
    let dir = support::gateway::TempDir::new("hc-http");
    let big = pattern(1 << 20);
    let file = dir.0.join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let up = String::from_utf8(curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/upload"),
    ]))
    .unwrap();
    assert!(up.starts_with(&format!("{} ", big.len())), "{up}");
    let down = curl(&[&format!("{base}/download/{}", 1 << 20)]);
    assert_eq!(down.len(), 1 << 20);
    assert!(down.iter().enumerate().all(|(i, b)| *b as usize == i % 251));
    // The status and reason phrase of the local server come back.
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "30", "-H", &auth])
            .arg(format!("{base}/status/418/Short+And+Stout")),
        Duration::from_secs(40),
    );
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 418"), "{head}");
    gw.stop_clean();
}
