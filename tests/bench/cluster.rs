//! The cluster benchmark (issue 18): two gateway nodes on one nats-server,
//! all on loopback, each figure against its baseline in the same run.
//!
//! 1. Hybrid Connections rendezvous, connect to the first echoed byte, the
//!    listener on node A and the sender on A (same node) or B (cross-node),
//!    interleaved. Target: cross-node p50 at most 1.3x same-node.
//! 2. The same for a WCF relayed connect (TLS off), `forward --listen` on A
//!    in front of a TCP echo. Target as 1.
//! 3. WebSocket throughput, 64 KiB messages to a sink listener on A, the
//!    sender on A or B, alternated runs, medians. Target: cross-node at
//!    least 0.95x same-node (the data path is the same).
//! 4. Rendezvous rate of one node with 64 concurrent senders (each connect,
//!    echo one byte, close, again), node A with its listener on A and node
//!    B reaching it across, against rathole's new-connection rate through
//!    its tunnel at the same concurrency.
//!
//! 5. A small relayed HTTP request (GET, a JSON answer of about 200 bytes)
//!    to a hyco-https listener, inline on the control channel: through a
//!    single gateway, through the listener's cluster node, and through the
//!    other node (request and response carried over NATS).
//!
//! `RELAY_BENCH_PHASES=1,2,3,4,5` selects phases; `RELAY_BENCH_TOOLS=DIR` finds
//! rathole in `DIR/bin` (`cargo install --root DIR rathole`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)] // benchmarks are exempt (house habit 5, `src/main.rs`)

#[path = "common.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    gateway_listener, interleaved, latency_rows, median, ms, rathole, relayed, rendezvous_once,
    tcp_echo, tcp_once, throughput, tool,
};
use support::cluster::{Nats, Nodes};
use support::gateway::{token, KEY, ROOT};
use support::hyco::Node;
use support::relayed::forward;
use support::spawn_ready;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMITS: &str = "[limits]\nlisteners_per_path = 25\nlistener_queue = 1024\npending_per_path = 8192\npending_total = 16384\n";
const CONNECTIONS: usize = 1000;
const THROUGHPUT_RUNS: usize = 5;
const CONCURRENCY: usize = 64;
const RATE_CONNECTS: usize = 3000;
const HTTP_REQUESTS: usize = 300;

/// One WCF relayed connect (TLS off) to the first echoed byte.
async fn wcf_once(relay: SocketAddr, path: &str) -> Duration {
    let start = Instant::now();
    let mut s = relayed(relay, path, None).await;
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    start.elapsed()
}

/// Connects per second with `CONCURRENCY` tasks doing `once` until
/// `RATE_CONNECTS` are done.
async fn rate<F, Fut>(once: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let once = once.clone();
            tokio::spawn(async move {
                for _ in 0..RATE_CONNECTS / CONCURRENCY {
                    once().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (RATE_CONNECTS / CONCURRENCY * CONCURRENCY) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nats = Nats::single();
    let n = Nodes::start_logging(&nats, 2, LIMITS, "info");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let _listener = gateway_listener(a.http, "bench").await;
    let run = common::start("Cluster benchmark: two nodes, one nats-server", "1,2,3,4");
    // Let B's directory see A's listener.
    tokio::time::sleep(Duration::from_millis(500)).await;

    if run("1") {
        let p = interleaved(CONNECTIONS, 2, |c| {
            rendezvous_once(if c == 0 { a.http } else { b.http })
        })
        .await;
        println!("\n1. Hybrid Connections rendezvous, connect to first echoed byte, {CONNECTIONS} each, interleaved:");
        latency_rows(&[("same node (A to A)", p[0]), ("cross-node (B to A)", p[1])]);
        println!(
            "   cross / same p50 = {:.2}x (target <= 1.3x); p99 {:.2}x",
            ms(p[1].0) / ms(p[0].0),
            ms(p[1].1) / ms(p[0].1)
        );
    }

    if run("2") {
        let echo = tcp_echo().await;
        let to = echo.to_string();
        let args = [
            "--listen",
            "sb://localhost/wcfbench",
            "--to",
            to.as_str(),
            "--plain",
        ];
        let (_fw, _, _) = spawn_ready(
            &mut forward(a.amqps.unwrap(), a.relayed.unwrap(), &n.ca(), &args),
            "attached",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ra, rb) = (a.relayed.unwrap(), b.relayed.unwrap());
        let p = interleaved(CONNECTIONS, 2, |c| {
            wcf_once(if c == 0 { ra } else { rb }, "wcfbench")
        })
        .await;
        println!("\n2. WCF relayed connect (TLS off), connect to first echoed byte, {CONNECTIONS} each, interleaved:");
        latency_rows(&[("same node (A to A)", p[0]), ("cross-node (B to A)", p[1])]);
        println!(
            "   cross / same p50 = {:.2}x (target <= 1.3x); p99 {:.2}x",
            ms(p[1].0) / ms(p[0].0),
            ms(p[1].1) / ms(p[0].1)
        );
    }

    if run("3") {
        let target = "/$hc/bench/sink?sb-hc-action=connect";
        let (mut same, mut cross) = (Vec::new(), Vec::new());
        for _ in 0..THROUGHPUT_RUNS {
            same.push(throughput(a.http, target, true).await);
            cross.push(throughput(b.http, target, true).await);
        }
        let (s, c) = (median(same.clone()), median(cross.clone()));
        println!("\n3. WebSocket throughput to a sink listener on A, 64 KiB messages, median of {THROUGHPUT_RUNS} alternated runs:");
        println!("   same node (A to A)   {s:6.2} Gbit/s   (runs {same:.1?})");
        println!("   cross-node (B to A)  {c:6.2} Gbit/s   (runs {cross:.1?})");
        println!("   cross / same = {:.2}x (target >= 0.95x)", c / s);
    }

    if run("4") {
        let (ah, bh) = (a.http, b.http);
        let same = rate(move || rendezvous_once(ah)).await;
        let cross = rate(move || rendezvous_once(bh)).await;
        println!("\n4. Rendezvous rate, {CONCURRENCY} concurrent senders, {RATE_CONNECTS} connects in all:");
        println!("   node A, listener on A      {same:8.0} /s");
        println!("   node B, listener on A      {cross:8.0} /s");
        match tool("rathole") {
            Some(bin) => {
                let echo = tcp_echo().await;
                let (_s, _c, port) = rathole(&bin, echo, None).await;
                let tunnel: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                let rh = rate(move || tcp_once(tunnel)).await;
                println!("   rathole tunnel             {rh:8.0} /s");
                println!(
                    "   node A / rathole = {:.2}x; node B / rathole = {:.2}x",
                    same / rh,
                    cross / rh
                );
            }
            None => println!("   rathole tunnel: not found (set RELAY_BENCH_TOOLS)"),
        }
    }

    if run("5") {
        let single = common::bench_gateway("listener_queue = 1024\n");
        let mut listeners = Vec::new();
        for gw in [&single, a] {
            let l = Node::spawn(
                "https-listener.js",
                &[&format!("ws://{}", gw.http), "web", ROOT, KEY],
                None,
            );
            l.wait_for("listening", Duration::from_secs(10));
            listeners.push(l);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = token("web", ROOT, 36000);
        let targets = [single.http, a.http, b.http];
        let p = interleaved(HTTP_REQUESTS, 3, |k| {
            let t = t.clone();
            async move {
                let start = Instant::now();
                let (head, _) = support::wsclient::http(
                    targets[k],
                    "GET",
                    "/web/x",
                    &[("ServiceBusAuthorization", &t)],
                    b"",
                )
                .await;
                assert_eq!(head.status, 200);
                start.elapsed()
            }
        })
        .await;
        println!("\n5. Small relayed HTTP GET to a hyco-https listener, {HTTP_REQUESTS} each, interleaved:");
        latency_rows(&[
            ("single node", p[0]),
            ("cluster, listener's node", p[1]),
            ("cluster, other node", p[2]),
        ]);
        println!(
            "   p50: listener's node / single {:.2}x, other node / single {:.2}x",
            ms(p[1].0) / ms(p[0].0),
            ms(p[2].0) / ms(p[0].0)
        );
    }
}
