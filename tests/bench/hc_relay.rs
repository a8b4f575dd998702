//! Hybrid Connections benchmark, everything in one run on loopback, each
//! figure next to its baseline (issue "Relay core and the Hybrid Connections
//! front end", item 6):
//!
//! 1. WebSocket throughput sender -> listener, 64 KiB binary messages:
//!    through the gateway, directly, and through websocat as a plain
//!    WebSocket-to-WebSocket relay (when `websocat` is on PATH or in
//!    `$RELAY_BENCH_TOOLS/bin`). Target: gateway >= 0.75x direct.
//! 2. 1 KiB message round trips per second, gateway vs direct.
//! 3. Rendezvous latency, sender connect to first echoed byte, p50/p99 over
//!    1,000 sequential connections, vs a direct TCP connect-and-echo and vs
//!    a rathole TCP tunnel (when `rathole` is available). Target: p50 no
//!    slower than rathole's. Also timed: the protocol-shape floor
//!    (`floor.rs`) and a lean relay doing the real protocol work for the
//!    same clients as the gateway (`lean.rs`).
//! 4. Gateway RSS with 5,000 idle spliced connections. Target: under 16 KiB
//!    per connection.
//!
//! Run: `cargo bench --bench hc_relay` (phases can be picked with
//! `RELAY_BENCH_PHASES=1,3`; phase 4 needs more than 10,000 open files per
//! process). The clients, the
//! in-process listener and the baselines share the machine's cores with the
//! gateway, as in the reference figures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)] // bench code

#[path = "common.rs"]
mod common;
#[path = "floor.rs"]
mod floor;
#[path = "lean.rs"]
mod lean;
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    bench_gateway, connect, gateway_listener, interleaved, latency_rows, median, ms, rathole,
    rendezvous_once, serve, tcp_echo, tcp_once, throughput, tool, wait_port, THROUGHPUT_BYTES,
};
use fastwebsockets::{Frame, Payload, Role, WebSocket};
use sha1::Digest;
use support::gateway::{token, ROOT};
use support::{free_port, rss_kib, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Throughput runs per contender, alternated; medians are reported.
const THROUGHPUT_RUNS: usize = 5;

/// A plain WebSocket server (the direct baseline), sink or echo by path.
async fn direct_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap()
                    .trim()
                    .to_owned();
                let accept = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(
                    format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
                ));
                s.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes()).await.unwrap();
                serve(
                    WebSocket::after_handshake(s, Role::Server),
                    text.starts_with("GET /sink"),
                )
                .await;
            });
        }
    });
    addr
}

/// 1 KiB echo round trips per second over one connection.
async fn round_trips(addr: SocketAddr, target: &str, gw: bool, n: usize) -> f64 {
    let mut w = connect(addr, target, gw).await;
    let data = vec![7u8; 1024];
    let start = Instant::now();
    for _ in 0..n {
        w.write_frame(Frame::binary(Payload::Borrowed(&data)))
            .await
            .unwrap();
        let f = w.read_frame().await.unwrap();
        assert_eq!(f.payload.len(), 1024);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// websocat as a plain WebSocket-to-WebSocket relay from a free port to
/// `target` (a `ws://` base; the client's path is appended), when available.
async fn websocat(target: &str) -> Option<(Proc, u16)> {
    let bin = tool("websocat")?;
    let port = free_port();
    let proc = Proc(
        Command::new(&bin)
            .args([
                "--binary",
                "-B",
                "1048576",
                &format!("ws-l:127.0.0.1:{port}"),
                &format!("{target}/sink"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port).await;
    Some((proc, port))
}

/// One Node.js sender run (`tests/peers/wsnode/sender.js`): Gbit/s.
fn node_send(dir: &Path, url: &str, token: Option<&str>) -> f64 {
    let out = Command::new("node")
        .arg(dir.join("sender.js"))
        .args([url, &THROUGHPUT_BYTES.to_string()])
        .args(token)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "sender.js {url} failed");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Phase 1 again with Node.js `ws` 8 endpoints (native bufferutil masking),
/// the WebSocket stack of the Node SDKs' users and, by its websocat
/// figure, the kind of endpoint behind the reference ratios: the
/// same sink served directly and as a Hybrid Connections listener, plus the
/// reference's minimal Node `ws` relay and websocat, alternated runs.
async fn node_throughput(gw: SocketAddr) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/wsnode");
    if !dir.join("node_modules/bufferutil").exists() {
        println!("\n   Node.js endpoints: not installed (run tests/peers/install.sh)");
        return;
    }
    let t = token("bench-node", ROOT, 36000);
    let (_sink, line, _) = support::spawn_ready(
        Command::new("node").arg(dir.join("sink.js")).args([
            &format!("ws://{gw}"),
            "bench-node",
            &t,
        ]),
        "ready",
    );
    let direct = format!("ws://127.0.0.1:{}", &line["ready ".len()..]);
    let (_relay, line, _) = support::spawn_ready(
        Command::new("node").arg(dir.join("relay.js")).arg(&direct),
        "ready",
    );
    let relay = format!("ws://127.0.0.1:{}/sink", &line["ready ".len()..]);
    let gateway = format!("ws://{gw}/$hc/bench-node?sb-hc-action=connect");
    let (mut gws, mut directs, mut relays) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..THROUGHPUT_RUNS {
        gws.push(node_send(&dir, &gateway, Some(&t)));
        directs.push(node_send(&dir, &format!("{direct}/sink"), None));
        relays.push(node_send(&dir, &relay, None));
    }
    let (via_gw, straight, via_relay) = (
        median(gws.clone()),
        median(directs.clone()),
        median(relays.clone()),
    );
    println!("\n   The same with Node.js ws 8 + bufferutil endpoints (sender and sink processes):");
    println!("   direct            {straight:6.2} Gbit/s   (runs {directs:.1?})");
    println!(
        "   gateway           {via_gw:6.2} Gbit/s   ratio {:.2}x direct (target >= 0.75x)   (runs {gws:.1?})",
        via_gw / straight
    );
    println!(
        "   Node ws relay     {via_relay:6.2} Gbit/s   ratio {:.2}x direct   (runs {relays:.1?})",
        via_relay / straight
    );
    if let Some((_w, port)) = websocat(&direct).await {
        let via_ws = node_send(&dir, &format!("ws://127.0.0.1:{port}/sink"), None);
        println!(
            "   websocat relay    {via_ws:6.2} Gbit/s   ratio {:.2}x direct",
            via_ws / straight
        );
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("RELAY_BENCH_LEAN").is_some() {
        let _ = std::thread::spawn(lean::serve_if_asked).join();
    }
    floor::serve_if_asked().await;
    let gw = bench_gateway(
        "listeners_per_path = 25\nlistener_queue = 1024\npending_per_path = 8192\npending_total = 16384\n",
    );
    gateway_listener(gw.http, "bench").await;
    let direct = direct_server().await;
    let run = common::start("Hybrid Connections benchmark", "1,2,3,4");

    // 1. Throughput.
    if run("1") {
        // Direct loopback throughput is bimodal on two cores (it depends on
        // where the scheduler puts sender and sink), so alternate the runs and
        // compare medians.
        let (mut gws, mut directs) = (Vec::new(), Vec::new());
        for _ in 0..THROUGHPUT_RUNS {
            gws.push(throughput(gw.http, "/$hc/bench/sink?sb-hc-action=connect", true).await);
            directs.push(throughput(direct, "/sink", false).await);
        }
        let (via_gw, straight) = (median(gws.clone()), median(directs.clone()));
        println!(
            "\n1. WebSocket throughput, 64 KiB binary messages, {} MiB per run, median of {THROUGHPUT_RUNS} alternated runs:",
            THROUGHPUT_BYTES >> 20
        );
        println!("   direct            {straight:6.2} Gbit/s   (runs {directs:.1?})");
        println!(
            "   gateway           {via_gw:6.2} Gbit/s   ratio {:.2}x direct (target >= 0.75x)   (runs {gws:.1?})",
            via_gw / straight
        );
        match websocat(&format!("ws://{direct}")).await {
            Some((_w, port)) => {
                let via_ws =
                    throughput(format!("127.0.0.1:{port}").parse().unwrap(), "/sink", false).await;
                println!("   websocat relay    {via_ws:6.2} Gbit/s   ratio {:.2}x direct; gateway/websocat {:.2}x", via_ws / straight, via_gw / via_ws);
            }
            None => println!("   websocat relay    (websocat not found: set RELAY_BENCH_TOOLS)"),
        }
        node_throughput(gw.http).await;
    }

    // 2. Round trips.
    if run("2") {
        let n = 20_000;
        let rt_gw = round_trips(gw.http, "/$hc/bench/echo?sb-hc-action=connect", true, n).await;
        let rt_direct = round_trips(direct, "/echo", false, n).await;
        println!("\n2. 1 KiB round trips over one connection ({n}):");
        println!("   direct            {rt_direct:8.0} /s");
        println!(
            "   gateway           {rt_gw:8.0} /s   ratio {:.2}x direct",
            rt_gw / rt_direct
        );
    }

    // 3. Rendezvous latency, the contenders interleaved connection by connection.
    if run("3") {
        let n = 1000;
        let echo = tcp_echo().await;
        let rathole = match tool("rathole") {
            Some(bin) => Some(rathole(&bin, echo, None).await),
            None => None,
        };
        let tunnel: Option<SocketAddr> = rathole
            .as_ref()
            .map(|(_, _, port)| format!("127.0.0.1:{port}").parse().unwrap());
        let (_floor, floor_addr) = floor::start().await;
        floor::listener(floor_addr, None).await;
        let (_lean, lean_addr) = lean::start().await;
        gateway_listener(lean_addr, "bench").await;
        let contenders = if tunnel.is_some() { 5 } else { 4 };
        // The clients run in a task (not on the runtime's blocked main
        // thread, which every readiness would have to wake).
        let gw_http = gw.http;
        let p = tokio::spawn(async move {
            interleaved(n, contenders, |c| async move {
                match (c, tunnel) {
                    (0, _) => tcp_once(echo).await,
                    (1, _) => rendezvous_once(gw_http).await,
                    (2, _) => floor::once(floor_addr).await,
                    (3, _) => rendezvous_once(lean_addr).await,
                    (_, Some(t)) => tcp_once(t).await,
                    _ => unreachable!(),
                }
            })
            .await
        })
        .await
        .unwrap();
        println!(
            "\n3. Connect to first echoed byte, {n} sequential connections each, interleaved:"
        );
        let mut rows = vec![
            ("direct TCP", p[0]),
            ("gateway rendezvous", p[1]),
            ("protocol-shape floor", p[2]),
            ("lean relay", p[3]),
        ];
        rows.extend(p.get(4).map(|&r| ("rathole tunnel", r)));
        latency_rows(&rows);
        match p.get(4) {
            Some(r) => println!(
                "   gateway p50 / rathole p50 = {:.2} (target <= 1); floor p50 / rathole p50 = {:.2}; lean relay p50 / rathole p50 = {:.2}",
                ms(p[1].0) / ms(r.0),
                ms(p[2].0) / ms(r.0),
                ms(p[3].0) / ms(r.0)
            ),
            None => println!("   rathole tunnel: not found (set RELAY_BENCH_TOOLS)"),
        }
    }

    // 4. Memory with idle spliced connections.
    if run("4") {
        let n = 5000;
        let before = rss_kib(gw.pid());
        let mut held = Vec::with_capacity(n);
        for chunk in 0..n / 100 {
            let mut batch = Vec::new();
            for _ in 0..100 {
                batch.push(tokio::spawn(connect(
                    gw.http,
                    "/$hc/bench/echo?sb-hc-action=connect",
                    true,
                )));
            }
            for b in batch {
                held.push(b.await.unwrap());
            }
            let _ = chunk;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(gw.pid());
        println!("\n4. Gateway RSS with {n} idle spliced connections (each a sender and a listener rendezvous):");
        println!("   before {before} KiB, after {after} KiB: {:.1} KiB per spliced connection (target < 16 KiB)", (after.saturating_sub(before)) as f64 / n as f64);
        drop(held);
    }
    println!("\ngateway pid {}", gw.pid());
    gw.stop_clean();
}
