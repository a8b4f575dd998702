//! WCF relay benchmark (issue "WCF relay front end", item 5), everything in
//! one run on loopback, each figure next to its baselines:
//!
//! 1. Bulk throughput, client -> gateway (relayed connect) -> listener
//!    (`relay-gateway forward --listen`) -> sink, with TLS off (`--plain`,
//!    flag 0x00) and on, against the same client and sink connected
//!    directly and against a rathole tunnel (server and client, plain TCP or
//!    TLS transport) carrying the same traffic. Targets: plaintext >= 1.2x
//!    rathole's plain tunnel; TLS >= rathole's TLS transport.
//! 2. Relay setup latency, RelayedConnect sent to the first spliced byte
//!    back, p50/p99 over 1,000 sequential connections, against a direct TCP
//!    connect-and-echo and a rathole tunnel. Target: p50 no slower than
//!    rathole's.
//! 3. 64-byte ping-pong round trips on one connection, every process pinned
//!    to the same core (CPU 0), so that no hop is a cross-core wake-up: the
//!    issue's reference figures (direct 14 us, rathole 56 us) are of that
//!    kind, and alternating cores made every hop one (rathole ~190 us
//!    here). Target: p50 no worse than rathole's.
//!
//! Run: `cargo bench --bench wcf_relay` (`RELAY_BENCH_PHASES=1,2,3` picks
//! phases; rathole from `$RELAY_BENCH_TOOLS/bin` or PATH).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)] // bench code

#[path = "../support/mod.rs"]
mod support;

#[path = "common.rs"]
mod common;
#[path = "floor.rs"]
mod floor;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    bench_gateway, forward_listener, interleaved, latency_rows, median, ms, percentiles, pin, pump,
    rathole, relayed, round_trips, tcp_echo, tcp_once, tcp_sink, tool, Io, RatholeTls,
};
use support::gateway::Gateway;
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const TOTAL: usize = 1 << 30;
const RUNS: usize = 3;
const CONNECTIONS: usize = 1000;
const TRIPS: usize = 10_000;

fn connector(ca: &std::path::Path) -> TlsConnector {
    TlsConnector::from(support::relayed::tls_config(ca))
}

fn listener(gw: &Gateway, path: &str, to: SocketAddr, plain: bool) -> Proc {
    let plain: &[&str] = if plain { &["--plain"] } else { &[] };
    forward_listener(gw, path, to, plain)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    floor::serve_if_asked().await;
    let gw =
        bench_gateway("pending_per_path = 8192\npending_total = 16384\nlistener_queue = 1024\n");
    let relay = gw.relayed.unwrap();
    let tls = connector(&gw.ca());
    let (sink, echo) = (tcp_sink(TOTAL).await, tcp_echo().await);
    let fw = [
        listener(&gw, "sink-plain", sink, true),
        listener(&gw, "sink-tls", sink, false),
        listener(&gw, "echo-plain", echo, true),
        listener(&gw, "echo-tls", echo, false),
    ];
    let rathole_bin = tool("rathole");
    let state = gw.dir.0.join("state");
    let (cert, key, ca) = (
        state.join("server.pem"),
        state.join("server.key"),
        state.join("ca.pem"),
    );
    let rathole_tls = || RatholeTls {
        cert: &cert,
        key: &key,
        ca: &ca,
    };
    let run = common::start(
        "WCF relay benchmark, contenders alternating, medians reported",
        "1,2,3",
    );

    if run("1") {
        let rh = match &rathole_bin {
            Some(bin) => Some((
                rathole(bin, sink, None).await,
                rathole(bin, sink, Some(rathole_tls())).await,
            )),
            None => None,
        };
        let mut r: [Vec<f64>; 5] = Default::default();
        for _ in 0..RUNS {
            r[0].push(pump(&mut TcpStream::connect(sink).await.unwrap(), TOTAL).await);
            r[1].push(pump(&mut relayed(relay, "sink-plain", None).await, TOTAL).await);
            r[2].push(pump(&mut relayed(relay, "sink-tls", Some(&tls)).await, TOTAL).await);
            if let Some(((_, _, plain), (_, _, secure))) = &rh {
                r[3].push(
                    pump(
                        &mut TcpStream::connect(("127.0.0.1", *plain)).await.unwrap(),
                        TOTAL,
                    )
                    .await,
                );
                r[4].push(
                    pump(
                        &mut TcpStream::connect(("127.0.0.1", *secure)).await.unwrap(),
                        TOTAL,
                    )
                    .await,
                );
            }
        }
        let m: Vec<f64> = r
            .iter()
            .map(|v| {
                if v.is_empty() {
                    f64::NAN
                } else {
                    median(v.clone())
                }
            })
            .collect();
        println!(
            "\n1. Bulk throughput, {} MiB per run, {RUNS} runs:",
            TOTAL >> 20
        );
        println!(
            "   direct TCP              {:6.2} Gbit/s   (runs {:.1?})",
            m[0], r[0]
        );
        println!("   gateway, TLS off        {:6.2} Gbit/s   {:.2}x direct; {:.2}x rathole plain (target >= 1.2)   (runs {:.1?})", m[1], m[1] / m[0], m[1] / m[3], r[1]);
        println!("   gateway, TLS on         {:6.2} Gbit/s   {:.2}x direct; {:.2}x rathole TLS (target >= 1.0)   (runs {:.1?})", m[2], m[2] / m[0], m[2] / m[4], r[2]);
        println!(
            "   rathole, plain tunnel   {:6.2} Gbit/s   {:.2}x direct   (runs {:.1?})",
            m[3],
            m[3] / m[0],
            r[3]
        );
        println!(
            "   rathole, TLS tunnel     {:6.2} Gbit/s   {:.2}x direct   (runs {:.1?})",
            m[4],
            m[4] / m[0],
            r[4]
        );
    }

    let rh_echo = match &rathole_bin {
        Some(bin) if run("2") || run("3") => Some(rathole(bin, echo, None).await),
        _ => None,
    };
    if run("2") {
        // Contenders interleaved connection by connection; for the gateway,
        // also the part up to the RelayedConnectReply (notice, dial-back,
        // replies); the rest is the first byte's trip.
        let tunnel: Option<SocketAddr> = rh_echo
            .as_ref()
            .map(|(_, _, port)| format!("127.0.0.1:{port}").parse().unwrap());
        let (_floor, floor_addr) = floor::start().await;
        floor::listener(floor_addr, Some(echo)).await;
        let to_reply = std::sync::Arc::new(std::sync::Mutex::new([Vec::new(), Vec::new()]));
        let contenders = if tunnel.is_some() { 5 } else { 4 };
        // The clients run in a task (not on the runtime's blocked main
        // thread, which every readiness would have to wake).
        let (tls, replies) = (tls.clone(), to_reply.clone());
        let p = tokio::spawn(async move {
            interleaved(CONNECTIONS, contenders, |c| {
                let (tls, replies) = (tls.clone(), replies.clone());
                async move {
                    match (c, tunnel) {
                        (0, _) => tcp_once(echo).await,
                        (1 | 2, _) => {
                            let start = Instant::now();
                            let (path, t) = if c == 2 {
                                ("echo-tls", Some(&tls))
                            } else {
                                ("echo-plain", None)
                            };
                            let mut s = relayed(relay, path, t).await;
                            replies.lock().unwrap()[c - 1].push(start.elapsed());
                            s.write_all(b"x").await.unwrap();
                            s.flush().await.unwrap();
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b).await.unwrap();
                            start.elapsed()
                        }
                        (3, _) => floor::once(floor_addr).await,
                        (_, Some(t)) => tcp_once(t).await,
                        _ => unreachable!(),
                    }
                }
            })
            .await
        })
        .await
        .unwrap();
        let to_reply = std::mem::take(&mut *to_reply.lock().unwrap());
        let [g_reply, t_reply] = to_reply.map(|v| percentiles(v).0);
        println!(
            "\n2. Relay setup, connect to first echoed byte, {CONNECTIONS} sequential connections each, interleaved:"
        );
        let mut rows = vec![
            ("direct TCP", p[0]),
            ("gateway, TLS off", p[1]),
            ("gateway, TLS on", p[2]),
            ("protocol-shape floor", p[3]),
        ];
        rows.extend(p.get(4).map(|&r| ("rathole tunnel", r)));
        latency_rows(&rows);
        println!(
            "   of which up to the RelayedConnectReply (p50): TLS off {:.3} ms, TLS on {:.3} ms",
            ms(g_reply),
            ms(t_reply)
        );
        match p.get(4) {
            Some(r) => println!(
                "   gateway (TLS off) p50 / rathole p50 = {:.2} (target <= 1); floor p50 / rathole p50 = {:.2}",
                ms(p[1].0) / ms(r.0),
                ms(p[3].0) / ms(r.0)
            ),
            None => println!("   rathole tunnel: not found (set RELAY_BENCH_TOOLS)"),
        }
    }

    if run("3") {
        pin(std::process::id(), "0");
        pin(gw.pid(), "0");
        for f in &fw {
            pin(f.0.id(), "0");
        }
        if let Some((s, c, _)) = &rh_echo {
            pin(s.0.id(), "0");
            pin(c.0.id(), "0");
        }
        // One connection per contender; rounds of TRIPS / ROUNDS trips
        // alternate between contenders; the median of the rounds' p50s.
        const ROUNDS: usize = 5;
        let mut conns: Vec<(&str, Box<dyn Io>)> = vec![
            ("direct TCP", {
                let s = TcpStream::connect(echo).await.unwrap();
                s.set_nodelay(true).unwrap();
                Box::new(s)
            }),
            ("gateway, TLS off", relayed(relay, "echo-plain", None).await),
            (
                "gateway, TLS on",
                relayed(relay, "echo-tls", Some(&tls)).await,
            ),
        ];
        if let Some((_, _, port)) = &rh_echo {
            let s = TcpStream::connect(("127.0.0.1", *port)).await.unwrap();
            s.set_nodelay(true).unwrap();
            conns.push(("rathole tunnel", Box::new(s)));
        }
        let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); conns.len()];
        for _ in 0..ROUNDS {
            for (i, (_, c)) in conns.iter_mut().enumerate() {
                let v = round_trips(c, 64, TRIPS / ROUNDS).await;
                p50s[i].push(percentiles(v).0.as_secs_f64() * 1e6);
            }
        }
        let m: Vec<f64> = p50s.iter().map(|v| median(v.clone())).collect();
        println!("\n3. 64-byte ping-pong on one connection per contender, all processes pinned to CPU 0, median p50 of {ROUNDS} alternated rounds of {} trips:", TRIPS / ROUNDS);
        for (i, (name, _)) in conns.iter().enumerate() {
            let note = match (name.starts_with("rathole"), m.get(1)) {
                (true, Some(gw)) => format!(
                    "   gateway (TLS off) / rathole = {:.2} (target <= 1)",
                    gw / m[i]
                ),
                _ => String::new(),
            };
            println!(
                "   {name:<22}  p50 {:7.1} us{note}   (rounds {:.1?})",
                m[i], p50s[i]
            );
        }
        if rh_echo.is_none() {
            println!("   rathole tunnel          (rathole not found: set RELAY_BENCH_TOOLS)");
        }
        for pid in [std::process::id(), gw.pid()] {
            pin(pid, "0,1");
        }
    }
    if let Ok(path) = std::env::var("RELAY_BENCH_GATEWAY_LOG_FILE") {
        std::fs::write(path, gw.log()).unwrap();
    }
    drop((fw, rh_echo));
    gw.stop(Duration::from_secs(15));
}
