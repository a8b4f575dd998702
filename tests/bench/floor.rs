//! The protocol-shape floor: a relay that keeps the order of messages of a
//! relayed rendezvous and does nothing else, to tell what that order itself
//! costs on this machine from what an implementation adds.
//!
//! The shape, as in `hybrid-connections.md` §3 and `wcf-relay.md` §3: a
//! listener holds a control connection; a sender connects and sends a
//! request head; the relay writes a notice (one line) on the control
//! connection; the listener dials a fresh connection back and sends a head
//! naming the notice; the relay answers both with a `101` head and splices
//! the two; only then may the sender send its first byte (RFC 6455 §4.1: a
//! client waits for the handshake's answer; NetTcpRelay clients wait for
//! RelayedConnectReply alike). No WebSocket framing, token, JSON or HTTP
//! parsing beyond the request line: whatever a real relay does on top only
//! adds to this.
//!
//! The relay runs in its own process (the bench binary re-executed with
//! `RELAY_BENCH_FLOOR=PORT`) on tokio's default multi-threaded runtime, as
//! rathole does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::support::{free_port, Proc};

const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";

/// The relay's state: the listener's control connection and the senders
/// parked until their dial-back arrives.
#[derive(Default)]
struct Relay {
    control: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    parked: Mutex<HashMap<u64, oneshot::Sender<TcpStream>>>,
    next: std::sync::atomic::AtomicU64,
}

/// When this process was started as the floor relay, serve on the port
/// given and never return; otherwise return at once.
pub async fn serve_if_asked() {
    let Some(port) = std::env::var_os("RELAY_BENCH_FLOOR") else {
        return;
    };
    let port: u16 = port.to_str().unwrap().parse().unwrap();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let relay = Arc::new(Relay::default());
    loop {
        let (s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        tokio::spawn(handle(relay.clone(), s));
    }
}

/// Start the floor relay process; returns it and its address.
pub async fn start() -> (Proc, SocketAddr) {
    start_as("RELAY_BENCH_FLOOR").await
}

/// Re-execute this bench binary with `var` set to a free port (the relay
/// serving there); returns the process and its address.
pub async fn start_as(var: &str) -> (Proc, SocketAddr) {
    let port = free_port();
    let proc = Proc(
        Command::new(std::env::current_exe().unwrap())
            .env(var, port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    crate::common::wait_port(port).await;
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Read a head up to its blank line; returns its first line and whatever
/// came after the blank line in the same reads.
async fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let rest = head.split_off(end);
    let line = head.split(|&b| b == b'\r').next()?;
    Some((String::from_utf8_lossy(line).into_owned(), rest))
}

async fn handle(relay: Arc<Relay>, mut s: TcpStream) {
    let Some((line, _)) = read_head(&mut s).await else {
        return;
    };
    let target = line.split(' ').nth(1).unwrap_or("");
    if target == "/listen" {
        if s.write_all(SWITCHING).await.is_ok() {
            let (_read, write) = s.into_split();
            *relay.control.lock().await = Some(write);
        }
    } else if target == "/connect" {
        let id = relay
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        relay.parked.lock().unwrap().insert(id, tx);
        if let Some(c) = relay.control.lock().await.as_mut() {
            let _ = c.write_all(format!("{id}\n").as_bytes()).await;
        }
        let Ok(mut back) = rx.await else { return };
        if back.write_all(SWITCHING).await.is_ok() && s.write_all(SWITCHING).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut s, &mut back).await;
        }
    } else if let Some(id) = target.strip_prefix("/accept/") {
        let parked = id
            .parse()
            .ok()
            .and_then(|id| relay.parked.lock().unwrap().remove(&id));
        if let Some(tx) = parked {
            let _ = tx.send(s);
        }
    }
}

/// The floor's listener, in this process: answers each notice with a dial-
/// back whose far end echoes what it reads, or, with `to`, is a fresh TCP
/// connection to `to` (as `relay-gateway forward` and rathole's client
/// connect to their local service).
pub async fn listener(relay: SocketAddr, to: Option<SocketAddr>) {
    let mut control = TcpStream::connect(relay).await.unwrap();
    control.set_nodelay(true).unwrap();
    control
        .write_all(b"GET /listen HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    read_head(&mut control).await.unwrap();
    tokio::spawn(async move {
        let mut notices = BufReader::new(control).lines();
        while let Ok(Some(id)) = notices.next_line().await {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(relay).await.unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(format!("GET /accept/{id} HTTP/1.1\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                // The sender's first byte may come in the read that ends
                // the relay's answer.
                let (_, early) = read_head(&mut s).await.unwrap();
                match to {
                    None => {
                        s.write_all(&early).await.unwrap();
                        let (mut r, mut w) = s.into_split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                    Some(to) => {
                        let mut local = TcpStream::connect(to).await.unwrap();
                        local.set_nodelay(true).unwrap();
                        local.write_all(&early).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut local).await;
                    }
                }
            });
        }
    });
    // The relay has the control connection once its 101 is read; give its
    // task the moment to store it.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One sender through the floor: connect to the first echoed byte.
pub async fn once(relay: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(relay).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /connect HTTP/1.1\r\n\r\n").await.unwrap();
    read_head(&mut s).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    start.elapsed()
}
