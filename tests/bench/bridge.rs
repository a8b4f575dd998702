//! The bridge benchmark (issue 19 item 5): a NetTcpRelay client on a
//! hybrid connection with `accept_wcf_clients`, answered by a Hybrid
//! Connections listener, against the two native paths in the same run: a
//! WCF client with a WCF listener (`forward --listen --plain` in front of a
//! TCP echo or sink) and a Hybrid Connections sender with a Hybrid
//! Connections listener (in-process). All TLS off, one gateway, loopback.
//!
//! 1. Setup: connect to the first echoed byte, 1,000 of each, interleaved.
//! 2. Bulk throughput: 256 MiB one way to a sink that answers when it has
//!    them all, median of 5 alternated runs.
//!
//! Target: the bridged path within 1.1x of the slower native path on both
//! (latency at most 1.1x its p50; throughput at least 1/1.1 of its rate).
//! `RELAY_BENCH_PHASES=1,2` selects phases.

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
    bench_gateway, forward_listener, gateway_listener, interleaved, latency_rows, median, ms, pump,
    relayed, rendezvous_once, tcp_echo, tcp_sink, throughput, MSG, THROUGHPUT_BYTES,
};
use fastwebsockets::{Frame, OpCode, Payload};
use support::gateway::{token, ROOT};
use support::wsclient::{split_url, ws};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 1000;
const RUNS: usize = 5;

/// One WCF relayed connect (TLS off) to `path`, to the first echoed byte.
async fn wcf_once(relay: SocketAddr, path: &str) -> Duration {
    let start = Instant::now();
    let mut s = relayed(relay, path, None).await;
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    start.elapsed()
}

/// A Hybrid Connections listener for WCF clients on `path`: each
/// rendezvous echoes, or when the path ends in `-sink`, counts
/// `THROUGHPUT_BYTES` and answers one byte, as the TCP sink does.
async fn bridged_listener(gw: SocketAddr, path: &str) {
    let (h, ctl) = ws(
        gw,
        &format!("/$hc/{path}?sb-hc-action=listen"),
        &[("ServiceBusAuthorization", &token(path, ROOT, 36000))],
    )
    .await;
    assert_eq!(h.status, 101);
    let mut ctl = ctl.unwrap();
    tokio::spawn(async move {
        while let Ok(f) = ctl.read_frame().await {
            if f.opcode != OpCode::Text {
                continue;
            }
            let msg: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
            let address = msg["accept"]["address"].as_str().unwrap().to_owned();
            tokio::spawn(async move {
                let (addr, target) = split_url(&address);
                let (_, Some(mut l)) = ws(addr, &target, &[]).await else {
                    return;
                };
                let sink = address.contains("-sink?");
                let mut got = 0usize;
                while let Ok(f) = l.read_frame().await {
                    match f.opcode {
                        OpCode::Binary | OpCode::Continuation if sink => {
                            got += f.payload.len();
                            if got >= THROUGHPUT_BYTES {
                                let k = Frame::binary(Payload::Borrowed(b"k"));
                                let _ = l.write_frame(k).await;
                            }
                        }
                        OpCode::Binary | OpCode::Continuation => {
                            let data = f.payload.to_vec();
                            let echo = Frame::binary(Payload::Owned(data));
                            if l.write_frame(echo).await.is_err() {
                                return;
                            }
                        }
                        OpCode::Close => return,
                        _ => {}
                    }
                }
            });
        }
    });
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let gw = bench_gateway(
        "listener_queue = 1024\npending_per_path = 8192\npending_total = 16384\n\
         [[hybrid_connection]]\npath = \"bridged-echo\"\naccept_wcf_clients = true\n\
         [[hybrid_connection]]\npath = \"bridged-sink\"\naccept_wcf_clients = true\n",
    );
    let relay = gw.relayed.unwrap();
    let (echo, sink) = (tcp_echo().await, tcp_sink(THROUGHPUT_BYTES).await);
    let _wcf_echo = forward_listener(&gw, "wcfecho", echo, &["--plain"]);
    let _wcf_sink = forward_listener(&gw, "wcfsink", sink, &["--plain"]);
    let _hc = gateway_listener(gw.http, "bench").await;
    bridged_listener(gw.http, "bridged-echo").await;
    bridged_listener(gw.http, "bridged-sink").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = common::start(
        "Bridge benchmark: WCF clients on a Hybrid Connections path",
        "1,2",
    );

    if run("1") {
        let p = interleaved(CONNECTIONS, 3, |c| async move {
            match c {
                0 => wcf_once(relay, "wcfecho").await,
                1 => rendezvous_once(gw.http).await,
                _ => wcf_once(relay, "bridged-echo").await,
            }
        })
        .await;
        println!(
            "\n1. Connect to the first echoed byte, {CONNECTIONS} each, interleaved, TLS off:"
        );
        latency_rows(&[
            ("WCF client, WCF listener", p[0]),
            ("HC sender, HC listener", p[1]),
            ("WCF client, HC listener (bridged)", p[2]),
        ]);
        let slower = ms(p[0].0).max(ms(p[1].0));
        println!(
            "   bridged p50 / slower native p50 = {:.2}x (target <= 1.1x)",
            ms(p[2].0) / slower
        );
    }

    if run("2") {
        let (mut w, mut h, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            w.push(pump(&mut relayed(relay, "wcfsink", None).await, THROUGHPUT_BYTES).await);
            h.push(throughput(gw.http, "/$hc/bench/sink?sb-hc-action=connect", true).await);
            b.push(
                pump(
                    &mut relayed(relay, "bridged-sink", None).await,
                    THROUGHPUT_BYTES,
                )
                .await,
            );
        }
        let (w, h, b) = (median(w.clone()), median(h.clone()), median(b.clone()));
        println!(
            "\n2. Bulk throughput, {} MiB one way, median of {RUNS} alternated runs (HC in {} KiB messages):",
            THROUGHPUT_BYTES >> 20,
            MSG >> 10
        );
        println!("   WCF client, WCF listener            {w:6.2} Gbit/s");
        println!("   HC sender, HC listener              {h:6.2} Gbit/s");
        println!("   WCF client, HC listener (bridged)   {b:6.2} Gbit/s");
        println!(
            "   bridged / slower native = {:.2}x (target >= {:.2}x)",
            b / w.min(h),
            1.0 / 1.1
        );
    }
}
