//! Soak: does the gateway's memory stay flat under churn? Not part of the
//! tests (it runs for minutes): `cargo bench --bench soak`.
//!
//! * `hc`: 8 workers, each in a loop: connect a Hybrid Connections sender,
//!   echo 1 KiB through the in-process listener, close. The listener's
//!   control channel is replaced every 10 s (a new one opens, then the old
//!   one closes).
//! * `wcf`: 8 workers, each in a loop: a plain relayed connect (as
//!   `forward --connect` makes it), 1 KiB echoed by a TCP echo server behind
//!   `relay-gateway forward --listen --plain`, close. The forward listener
//!   is restarted every 10 s.
//!
//! Each phase runs `RELAY_SOAK_MINUTES` (default 10) minutes; the gateway's
//! RSS and open descriptors are printed every minute, then the ratio of the
//! last minute's RSS to minute 3's (target: at most 1.10) and the
//! descriptors once the load has stopped against those before it (target:
//! back to the baseline). Phases: `RELAY_BENCH_PHASES=hc,wcf`.

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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_gateway, forward_listener, gateway_listener, relayed, tcp_echo};
use fastwebsockets::{Frame, OpCode, Payload};
use support::gateway::{token, Gateway, ROOT};
use support::wsclient::ws;
use support::{open_fds as fds, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKERS: usize = 8;
const RESTART: Duration = Duration::from_secs(10);
const MESSAGE: usize = 1024;

/// Counts of one phase.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Run `work` on WORKERS tasks until `end`, sampling the gateway each
/// minute; `restart` runs every RESTART meanwhile. Prints the samples and
/// the verdict.
async fn soak<W, WF, R, RF>(name: &str, gw: &Gateway, minutes: u64, work: W, mut restart: R)
where
    W: Fn() -> WF + Clone + Send + 'static,
    WF: std::future::Future<Output = bool> + Send,
    R: FnMut() -> RF,
    RF: std::future::Future<Output = ()>,
{
    let pid = gw.pid();
    let (rss0, fds0) = (rss_kib(pid), fds(pid));
    println!("{name}: before the load: RSS {rss0} KiB, {fds0} descriptors");
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + Duration::from_secs(60 * minutes);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (work, counts) = (work.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < end {
                let ok = tokio::time::timeout(Duration::from_secs(10), work())
                    .await
                    .unwrap_or(false);
                let c = if ok { &counts.ok } else { &counts.failed };
                c.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut samples = Vec::new();
    let mut next_sample = Instant::now() + Duration::from_secs(60);
    let mut next_restart = Instant::now() + RESTART;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if Instant::now() >= next_restart {
            restart().await;
            next_restart += RESTART;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(60);
            let (rss, n) = (rss_kib(pid), fds(pid));
            samples.push(rss);
            println!(
                "{name}: minute {:>2}: RSS {rss} KiB, {n} descriptors, {} echoes, {} failed",
                samples.len(),
                counts.ok.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed)
            );
        }
    }
    for w in workers {
        let _ = w.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));
    println!("{name}: after the load: RSS {rss_end} KiB, {fds_end} descriptors (before: {fds0})");
    if let (Some(m3), Some(last)) = (samples.get(2), samples.last()) {
        let ratio = *last as f64 / *m3 as f64;
        println!(
            "{name}: RSS at minute {} / minute 3 = {ratio:.3} (target <= 1.10): {}",
            samples.len(),
            if ratio <= 1.10 { "met" } else { "NOT met" }
        );
    }
}

/// One Hybrid Connections round: connect, echo 1 KiB, close.
async fn hc_round(gw: SocketAddr, t: Arc<String>) -> bool {
    let (h, w) = ws(
        gw,
        "/$hc/soak/echo?sb-hc-action=connect",
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    let (101, Some(mut w)) = (h.status, w) else {
        return false;
    };
    let data = vec![7u8; MESSAGE];
    if w.write_frame(Frame::binary(Payload::Borrowed(&data)))
        .await
        .is_err()
    {
        return false;
    }
    let mut got = 0;
    while got < MESSAGE {
        match w.read_frame().await {
            Ok(f) if f.opcode == OpCode::Binary || f.opcode == OpCode::Continuation => {
                got += f.payload.len();
            }
            _ => return false,
        }
    }
    let _ = w.write_frame(Frame::close(1000, b"")).await;
    true
}

/// One WCF relayed round: connect, echo 1 KiB, close.
async fn wcf_round(relay: SocketAddr) -> bool {
    let mut s = relayed(relay, "soak", None).await;
    let data = vec![7u8; MESSAGE];
    if s.write_all(&data).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; MESSAGE];
    s.read_exact(&mut back).await.is_ok() && back == data
}

#[tokio::main]
async fn main() {
    let selected = common::start("Soak", "hc,wcf");
    let minutes: u64 = std::env::var("RELAY_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    if selected("hc") {
        let gw = bench_gateway("");
        let addr = gw.http;
        let current = Arc::new(std::sync::Mutex::new(gateway_listener(addr, "soak").await));
        let t = Arc::new(token("soak", ROOT, 36000));
        soak(
            "hc",
            &gw,
            minutes,
            move || hc_round(addr, t.clone()),
            || {
                let current = current.clone();
                async move {
                    let new = gateway_listener(addr, "soak").await;
                    let old = std::mem::replace(&mut *current.lock().unwrap(), new);
                    old.abort();
                }
            },
        )
        .await;
    }
    if selected("wcf") {
        let gw = bench_gateway("");
        let echo = tcp_echo().await;
        let relay = gw.relayed.unwrap();
        let mut current = Some(forward_listener(&gw, "soak", echo, &["--plain"]));
        soak(
            "wcf",
            &gw,
            minutes,
            move || wcf_round(relay),
            || {
                let new = forward_listener(&gw, "soak", echo, &["--plain"]);
                drop(current.replace(new));
                async {}
            },
        )
        .await;
    }
}
