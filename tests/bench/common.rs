//! Shared pieces of the benchmarks: statistics, finding the baseline tools,
//! TCP echo and sink servers, a rathole tunnel (plain or TLS) to compare
//! against, an in-process Hybrid Connections listener and a WCF relayed
//! client connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use wcf::relay::{ConnectPreamble, RelayedConnect};
use wcf::soap::Envelope;

use crate::support::gateway::{token, ROOT};
use crate::support::wsclient::{split_url, ws};
use crate::support::{free_port, Proc};

/// The median.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// p50 and p99.
pub fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A TCP echo server.
pub async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A TCP sink: reads `total` bytes, then answers one byte.
pub async fn tcp_sink(total: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let mut got = 0;
                while got < total {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let _ = s.write_all(b"k").await;
            });
        }
    });
    addr
}

/// Write `total` bytes on `s` and wait for the sink's answer; Gbit/s.
pub async fn pump<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S, total: usize) -> f64 {
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.write_all(&chunk[..n]).await.unwrap();
        sent += n;
    }
    s.flush().await.unwrap();
    let mut k = [0u8; 1];
    s.read_exact(&mut k).await.unwrap();
    (total as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

/// `n` round trips of `size` bytes on `s`; the per-trip times.
pub async fn round_trips<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    s: &mut S,
    size: usize,
    n: usize,
) -> Vec<Duration> {
    let msg = vec![7u8; size];
    let mut back = vec![0u8; size];
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        s.write_all(&msg).await.unwrap();
        s.flush().await.unwrap();
        s.read_exact(&mut back).await.unwrap();
        v.push(start.elapsed());
    }
    v
}

/// One TCP connect to the first echoed byte.
pub async fn tcp_once(addr: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    start.elapsed()
}

/// Connection setup latencies of several contenders, measured interleaved:
/// each of `rounds` rounds times one connection of every contender, in an
/// order that rotates from round to round, so that a noisy moment of the
/// machine falls on all of them alike. Returns each contender's (p50, p99).
pub async fn interleaved<F, Fut>(
    rounds: usize,
    contenders: usize,
    mut once: F,
) -> Vec<(Duration, Duration)>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut times = vec![Vec::with_capacity(rounds); contenders];
    for r in 0..rounds {
        for k in 0..contenders {
            let c = (r + k) % contenders;
            times[c].push(once(c).await);
        }
    }
    times.into_iter().map(percentiles).collect()
}

/// Print setup latencies, a row per contender, names aligned.
pub fn latency_rows(rows: &[(&str, (Duration, Duration))]) {
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, (p50, p99)) in rows {
        println!(
            "   {name:<width$} p50 {:7.3} ms  p99 {:7.3} ms",
            ms(*p50),
            ms(*p99)
        );
    }
}

/// A baseline tool from `$RELAY_BENCH_TOOLS/bin` or PATH.
pub fn tool(name: &str) -> Option<PathBuf> {
    let from_env =
        std::env::var_os("RELAY_BENCH_TOOLS").map(|d| PathBuf::from(d).join("bin").join(name));
    from_env.filter(|p| p.exists()).or_else(|| {
        let out = Command::new("which").arg(name).output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

/// Wait until a local port accepts connections.
pub async fn wait_port(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("port {port} never opened");
}

/// TLS material for rathole's TLS transport: a PKCS#12 identity made with
/// `openssl` from a PEM certificate and key, and the CA that signed it.
pub struct RatholeTls<'a> {
    /// Certificate chain (PEM).
    pub cert: &'a Path,
    /// Private key (PEM).
    pub key: &'a Path,
    /// The CA (PEM).
    pub ca: &'a Path,
}

/// A rathole server and client tunnelling a local port to `target`; the
/// tunnel between them is TLS when `tls` is given.
pub async fn rathole(
    bin: &PathBuf,
    target: SocketAddr,
    tls: Option<RatholeTls<'_>>,
) -> (Proc, Proc, u16) {
    let dir = crate::support::gateway::TempDir::new("rathole");
    let (control, public) = (free_port(), free_port());
    let server = dir.0.join("server.toml");
    let client = dir.0.join("client.toml");
    let (server_tls, client_tls) = match &tls {
        None => (String::new(), String::new()),
        Some(t) => {
            let pfx = dir.0.join("identity.pfx");
            let ok = Command::new("openssl")
                .args(["pkcs12", "-export", "-passout", "pass:bench", "-out"])
                .arg(&pfx)
                .arg("-inkey")
                .arg(t.key)
                .arg("-in")
                .arg(t.cert)
                .status()
                .unwrap()
                .success();
            assert!(ok, "openssl pkcs12 failed");
            (
                format!("[server.transport]\ntype = \"tls\"\n[server.transport.tls]\npkcs12 = \"{}\"\npkcs12_password = \"bench\"\n", pfx.display()),
                format!("[client.transport]\ntype = \"tls\"\n[client.transport.tls]\ntrusted_root = \"{}\"\nhostname = \"localhost\"\n", t.ca.display()),
            )
        }
    };
    std::fs::write(&server, format!("[server]\nbind_addr = \"127.0.0.1:{control}\"\ndefault_token = \"bench\"\n{server_tls}[server.services.svc]\nbind_addr = \"127.0.0.1:{public}\"\nnodelay = true\n")).unwrap();
    std::fs::write(&client, format!("[client]\nremote_addr = \"localhost:{control}\"\ndefault_token = \"bench\"\n{client_tls}[client.services.svc]\nlocal_addr = \"{target}\"\nnodelay = true\n")).unwrap();
    let spawn = |flag: &str, cfg: &Path| {
        Proc(
            Command::new(bin)
                .arg(flag)
                .arg(cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let s = spawn("-s", &server);
    wait_port(control).await;
    let c = spawn("-c", &client);
    wait_port(public).await;
    // The service is up once the client has registered.
    tokio::time::sleep(Duration::from_millis(800)).await;
    std::mem::forget(dir);
    (s, c, public)
}

/// Pin every thread of process `pid` to `cpu` (with `taskset`).
pub fn pin(pid: u32, cpus: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

/// WebSocket messages of the throughput runs.
pub const MSG: usize = 64 * 1024;
/// Bytes per throughput run.
pub const THROUGHPUT_BYTES: usize = 256 << 20;

/// A WebSocket to `target` at `addr`, with a `bench` token when it goes
/// through the gateway.
pub async fn connect(
    addr: SocketAddr,
    target: &str,
    through_gateway: bool,
) -> WebSocket<TcpStream> {
    let t = token("bench", ROOT, 36000);
    let headers: Vec<(&str, &str)> = if through_gateway {
        vec![("ServiceBusAuthorization", &t)]
    } else {
        vec![]
    };
    let (h, w) = ws(addr, target, &headers).await;
    assert_eq!(h.status, 101, "{h:?}");
    let mut w = w.unwrap();
    w.set_auto_close(true);
    w
}

/// Send THROUGHPUT_BYTES in 64 KiB messages, then wait for the sink's ack: Gbit/s.
pub async fn throughput(addr: SocketAddr, target: &str, gw: bool) -> f64 {
    let mut w = connect(addr, target, gw).await;
    let data = vec![0x5Au8; MSG];
    let start = Instant::now();
    for _ in 0..THROUGHPUT_BYTES / MSG {
        w.write_frame(Frame::binary(Payload::Borrowed(&data)))
            .await
            .unwrap();
    }
    w.write_frame(Frame::text(Payload::Borrowed(b"done")))
        .await
        .unwrap();
    // Wait for the sink's acknowledgement (its type may change in a relay).
    loop {
        let f = w.read_frame().await.unwrap();
        if &f.payload[..] == b"ack" {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (THROUGHPUT_BYTES as f64 * 8.0) / secs / 1e9
}

/// One sender connect through the gateway to the first echoed byte.
pub async fn rendezvous_once(gw: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut w = connect(gw, "/$hc/bench/echo?sb-hc-action=connect", true).await;
    w.write_frame(Frame::binary(Payload::Borrowed(b"x")))
        .await
        .unwrap();
    let _ = w.read_frame().await.unwrap();
    let took = start.elapsed();
    let _ = w.write_frame(Frame::close(1000, b"")).await;
    took
}

/// A gateway for a benchmark: the test namespace plus `limits` (a `[limits]`
/// body), logging at `$RELAY_BENCH_GATEWAY_LOG` or `info`, as in production.
pub fn bench_gateway(limits: &str) -> crate::support::gateway::Gateway {
    crate::support::gateway::Gateway::start_logging(
        &format!(
            "{}\n[limits]\n{limits}",
            crate::support::gateway::BASE_CONFIG
        ),
        &std::env::var("RELAY_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
    )
}

/// `relay-gateway forward --listen sb://localhost/PATH --to TO` with `extra`
/// options against `gw`, once it has attached.
pub fn forward_listener(
    gw: &crate::support::gateway::Gateway,
    path: &str,
    to: SocketAddr,
    extra: &[&str],
) -> Proc {
    let uri = format!("sb://localhost/{path}");
    let to = to.to_string();
    let mut args = vec!["--listen", uri.as_str(), "--to", to.as_str()];
    args.extend_from_slice(extra);
    crate::support::spawn_ready(
        &mut crate::support::relayed::forward(
            gw.amqps.unwrap(),
            gw.relayed.unwrap(),
            &gw.ca(),
            &args,
        ),
        "attached",
    )
    .0
}

/// Print the benchmark's title line; returns whether a phase is selected
/// (`RELAY_BENCH_PHASES`, a comma-separated list, default `all`).
pub fn start(title: &str, all: &str) -> impl Fn(&str) -> bool {
    println!(
        "{title} ({} cores, loopback)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let phases = std::env::var("RELAY_BENCH_PHASES").unwrap_or_else(|_| all.to_owned());
    move |p: &str| phases.split(',').any(|x| x.trim() == p)
}

/// What the far end does with a connection: `sink` counts bytes and answers
/// a final text "done" with "ack"; anything else echoes every message.
pub async fn serve(mut ws: WebSocket<TcpStream>, sink: bool) {
    ws.set_auto_close(true);
    loop {
        let Ok(f) = ws.read_frame().await else { return };
        match f.opcode {
            OpCode::Close => return,
            // The end marker (relays such as websocat --binary may turn text into binary).
            OpCode::Text | OpCode::Binary if sink && &f.payload[..] == b"done" => {
                ws.write_frame(Frame::binary(Payload::Borrowed(b"ack")))
                    .await
                    .unwrap();
            }
            OpCode::Binary | OpCode::Text | OpCode::Continuation if !sink => {
                let op = f.opcode;
                let data = f.payload.to_vec();
                if ws
                    .write_frame(Frame::new(true, op, None, Payload::Owned(data)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// An in-process listener on the gateway: every accept is answered, and the
/// rendezvous served as a sink or an echo depending on the sender's path;
/// aborting the returned task closes its control channel.
pub async fn gateway_listener(gw_addr: SocketAddr, path: &str) -> tokio::task::JoinHandle<()> {
    let (h, ctl) = ws(
        gw_addr,
        &format!("/$hc/{path}?sb-hc-action=listen"),
        &[("ServiceBusAuthorization", &token(path, ROOT, 36000))],
    )
    .await;
    assert_eq!(h.status, 101);
    let mut ctl = ctl.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok(f) = ctl.read_frame().await else {
                return;
            };
            if f.opcode != OpCode::Text {
                continue;
            }
            let msg: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
            let address = msg["accept"]["address"].as_str().unwrap().to_owned();
            tokio::spawn(async move {
                let (addr, target) = split_url(&address);
                if let (_, Some(l)) = ws(addr, &target, &[]).await {
                    serve(l, address.contains("/sink")).await;
                }
            });
        }
    })
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client's relayed connection to `path`, ready for its own bytes.
pub async fn relayed(gw: SocketAddr, path: &str, tls: Option<&TlsConnector>) -> Box<dyn Io> {
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let uri = format!("sb://localhost/{path}/");
    let mut pre = Vec::new();
    ConnectPreamble {
        via: uri.clone(),
        tls: tls.is_some(),
    }
    .encode(&mut pre);
    let msg = RelayedConnect {
        tracking_id: None,
        token: Some(token(path, ROOT, 3600)),
        uri,
    }
    .to_envelope()
    .to_msbin1();
    // As `forward --connect` does: one write when plain.
    let mut s: Box<dyn Io> = match tls {
        None => {
            wcf::relay::write_prefixed(&msg, &mut pre);
            tcp.write_all(&pre).await.unwrap();
            Box::new(tcp)
        }
        Some(c) => {
            tcp.write_all(&pre).await.unwrap();
            let mut s = c
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let mut framed = Vec::new();
            wcf::relay::write_prefixed(&msg, &mut framed);
            s.write_all(&framed).await.unwrap();
            s.flush().await.unwrap();
            Box::new(s)
        }
    };
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut reply).await.unwrap();
    let reply = Envelope::decode(&reply, wcf::Limits::DEFAULT).unwrap();
    assert!(
        reply.fault().is_none(),
        "the gateway refused: {:?}",
        reply.fault()
    );
    s
}
