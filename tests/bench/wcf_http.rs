//! HTTP relay benchmark (issue "WCF HTTP relay bindings", item 5), in one
//! run on loopback: small GETs from wrk through the gateway and
//! `relay-gateway forward --listen --http` to a local HTTP server (hyper, in
//! this process, answering "hello"), against the same wrk load straight to
//! that server. Requests per second and p50/p99 latency with one connection
//! (latency) and with sixteen (throughput); the relay both plain (http://
//! client leg, `--plain` dial-back) and with TLS (https:// client leg kept
//! alive, a TLS dial-back per request). The per-request rendezvous (notice
//! over AMQP to the listener's dial-back with RelayedAccept) is taken from
//! the gateway's `relay_rendezvous_seconds` metric; the rest of the added
//! time is the NMF exchange and the listener's request to the server.
//! Target: added p50 latency under 2 ms.
//!
//! Run: `cargo bench --bench wcf_http` (needs `wrk`; `RELAY_BENCH_SECONDS`
//! sets each run's length, default 5).

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

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;

use bytes::Bytes;
use common::{bench_gateway, tool};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::gateway::{token, Gateway, ROOT};
use support::{spawn_ready, Proc};

/// The local server: "hello" to everything, keep-alive.
fn origin() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn forward_http(gw: &Gateway, path: &str, to: SocketAddr, extra: &[&str]) -> Proc {
    let uri = format!("sb://localhost/{path}");
    let to = format!("http://{to}/");
    let mut args = vec!["--listen", uri.as_str(), "--http", "--to", to.as_str()];
    args.extend_from_slice(extra);
    spawn_ready(
        &mut support::relayed::forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &args),
        "attached",
    )
    .0
}

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn millis(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap());
    let n: f64 = num.parse().unwrap();
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        other => panic!("unit {other}"),
    }
}

fn wrk(url: &str, connections: usize, headers: &[String]) -> Run {
    let wrk = tool("wrk").expect("wrk is needed for this benchmark");
    let secs = std::env::var("RELAY_BENCH_SECONDS").unwrap_or_else(|_| "5".into());
    let mut c = Command::new(wrk);
    c.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("Non-2xx"), "errors from {url}:\n{text}");
    let find = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
    };
    Run {
        rps: find("Requests/sec:").parse().unwrap(),
        p50_ms: millis(&find("50%")),
        p99_ms: millis(&find("99%")),
    }
}

/// The mean of the gateway's HTTP relay rendezvous histogram so far, ms.
fn mean_rendezvous_ms(gw: &Gateway, path: &str) -> (f64, f64) {
    let mut s = std::net::TcpStream::connect(gw.admin.unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains(&format!("entity=\"{path}\""))
                    && l.contains("frontend=\"wcf_http\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    (
        value("relay_rendezvous_seconds_sum") * 1000.0,
        value("relay_rendezvous_seconds_count"),
    )
}

fn row(name: &str, r: Run, base: Run) {
    println!(
        "  {name:<34} {:>9.0} req/s ({:.2}x)  p50 {:.3} ms (+{:.3})  p99 {:.3} ms",
        r.rps,
        r.rps / base.rps,
        r.p50_ms,
        r.p50_ms - base.p50_ms,
        r.p99_ms
    );
}

fn main() {
    let _ = common::start("HTTP relay benchmark", "all");
    let server = origin();
    let gw = bench_gateway("");
    let _tls = forward_http(&gw, "web", server, &[]);
    let _plain = forward_http(&gw, "plain", server, &["--plain", "--no-client-auth"]);
    let auth = vec![format!(
        "ServiceBusAuthorization: {}",
        token("web", ROOT, 3600)
    )];
    let direct_url = format!("http://{server}/hello");
    let plain_url = format!("http://localhost:{}/plain/hello", gw.http.port());
    let tls_url = format!("https://localhost:{}/web/hello", gw.https.port());
    // wrk does not check certificates; the name still selects the namespace.
    for connections in [1, 16] {
        println!("small GETs, {connections} connection(s), wrk -t1:");
        let direct = wrk(&direct_url, connections, &[]);
        let (s0, n0) = mean_rendezvous_ms(&gw, "plain");
        let plain = wrk(&plain_url, connections, &[]);
        let (s1, n1) = mean_rendezvous_ms(&gw, "plain");
        let (t0, m0) = mean_rendezvous_ms(&gw, "web");
        let tls = wrk(&tls_url, connections, &auth);
        let (t1, m1) = mean_rendezvous_ms(&gw, "web");
        println!(
            "  {:<34} {:>9.0} req/s          p50 {:.3} ms          p99 {:.3} ms",
            "direct to the server", direct.rps, direct.p50_ms, direct.p99_ms
        );
        row("gateway, plain (http, --plain)", plain, direct);
        row("gateway, TLS (https, TLS dial-back)", tls, direct);
        let rv_plain = (s1 - s0) / (n1 - n0).max(1.0);
        let rv_tls = (t1 - t0) / (m1 - m0).max(1.0);
        println!(
            "  rendezvous (notice -> dial-back accepted), mean: plain {rv_plain:.3} ms, TLS {rv_tls:.3} ms;"
        );
        println!(
            "  rest of the added p50 (NMF exchange, listener -> server): plain {:.3} ms, TLS {:.3} ms",
            plain.p50_ms - direct.p50_ms - rv_plain,
            tls.p50_ms - direct.p50_ms - rv_tls
        );
        if connections == 1 {
            let added = tls.p50_ms - direct.p50_ms;
            println!(
                "  target: added p50 under 2 ms: {} (TLS {added:.3} ms, plain {:.3} ms)",
                if added < 2.0 { "met" } else { "NOT met" },
                plain.p50_ms - direct.p50_ms
            );
        }
    }
    drop(gw);
}
