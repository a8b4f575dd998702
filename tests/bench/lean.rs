//! A lean Hybrid Connections relay: the real protocol work of a WebSocket
//! rendezvous (`hybrid-connections.md` §2-§3) and nothing else, to tell what
//! that work costs from what the gateway's own layers add.
//!
//! It parses the request heads, checks the SAS token (signature, expiry,
//! audience, with the `hybrid` crate), answers with `Sec-WebSocket-Accept`,
//! writes `accept` as JSON in a WebSocket text frame on the listener's
//! control channel, and splices the two legs frame by frame, unmasking and
//! re-framing as the gateway does. It has no hyper, no task beyond one per
//! accepted socket, no tracing, metrics, limits, timeouts, TLS, balancing or
//! error replies, and runs on one thread (tokio's current-thread runtime).
//! The bench's own sender and listener, the ones timed against the gateway,
//! are its clients.
//!
//! It runs in its own process (the bench binary re-executed with
//! `RELAY_BENCH_LEAN=PORT`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use base64::Engine;
use sha1::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::support::Proc;

/// Listeners' control channels by entity, and senders parked by id until
/// their listener's rendezvous arrives (with its `Sec-WebSocket-Key`).
#[derive(Default)]
struct Relay {
    port: u16,
    control: RefCell<HashMap<String, Rc<tokio::sync::Mutex<OwnedWriteHalf>>>>,
    parked: RefCell<HashMap<String, oneshot::Sender<(TcpStream, String)>>>,
    next: Cell<u64>,
}

/// When this process was started as the lean relay, serve on the port given
/// and never return; otherwise return at once. Call it outside any runtime.
pub fn serve_if_asked() {
    let Some(port) = std::env::var_os("RELAY_BENCH_LEAN") else {
        return;
    };
    let port: u16 = port.to_str().unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let relay = Rc::new(Relay {
            port,
            ..Default::default()
        });
        loop {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::task::spawn_local(handle(relay.clone(), s));
        }
    });
}

/// Start the lean relay process; returns it and its address.
pub async fn start() -> (Proc, SocketAddr) {
    crate::floor::start_as("RELAY_BENCH_LEAN").await
}

/// A request head: its target and headers.
struct Head {
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read and parse a `GET` head (up to 16 KiB).
async fn read_head(s: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 16384 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    if first.next()? != "GET" {
        return None;
    }
    let target = first.next()?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head { target, headers })
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `101` answering a WebSocket handshake with `key`.
fn switching(key: &str) -> Vec<u8> {
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(format!(
        "{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    )));
    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes()
}

/// Whether the head carries a valid token for `entity` (the bench's key).
fn authorized(h: &Head, entity: &str) -> bool {
    let Some(Ok(token)) = h
        .header("ServiceBusAuthorization")
        .map(hybrid::sas::Token::parse)
    else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    token.signed_by(crate::support::gateway::KEY)
        && !token.expired(now, 0)
        && hybrid::sas::audience_covers(&token.resource, &format!("http://localhost/{entity}"))
}

/// An unmasked text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

async fn handle(relay: Rc<Relay>, mut s: TcpStream) {
    let Some(h) = read_head(&mut s).await else {
        return;
    };
    let Some(key) = h.header("Sec-WebSocket-Key").map(str::to_owned) else {
        return;
    };
    let (path, query) = h.target.split_once('?').unwrap_or((&h.target, ""));
    let Some(path) = path.strip_prefix("/$hc/") else {
        return;
    };
    let entity = path.split('/').next().unwrap_or("").to_owned();
    match param(query, "sb-hc-action") {
        Some("listen") => {
            if !authorized(&h, &entity) || s.write_all(&switching(&key)).await.is_err() {
                return;
            }
            let (mut read, write) = s.into_split();
            let write = Rc::new(tokio::sync::Mutex::new(write));
            relay.control.borrow_mut().insert(entity, write);
            let mut ignored = [0u8; 256];
            while matches!(read.read(&mut ignored).await, Ok(n) if n > 0) {}
        }
        Some("connect") => {
            if !authorized(&h, &entity) {
                return;
            }
            let Some(control) = relay.control.borrow().get(&entity).cloned() else {
                return;
            };
            let id = format!("{:016x}", relay.next.get());
            relay.next.set(relay.next.get() + 1);
            let (tx, rx) = oneshot::channel();
            relay.parked.borrow_mut().insert(id.clone(), tx);
            let remote = s.peer_addr().unwrap();
            let accept = serde_json::json!({"accept": {
                "address": format!("ws://127.0.0.1:{}/$hc/{path}?sb-hc-action=accept&sb-hc-id={id}", relay.port),
                "id": id,
                "connectHeaders": {"Sec-WebSocket-Key": key},
                "remoteEndpoint": {"address": remote.ip().to_string(), "port": remote.port()},
            }})
            .to_string();
            let frame = text_frame(accept.as_bytes());
            if control.lock().await.write_all(&frame).await.is_err() {
                return;
            }
            let Ok((mut back, back_key)) = rx.await else {
                return;
            };
            let (back_101, sender_101) = (switching(&back_key), switching(&key));
            let (a, b) = tokio::join!(back.write_all(&back_101), s.write_all(&sender_101));
            if a.is_ok() && b.is_ok() {
                let ((sr, sw), (br, bw)) = (s.into_split(), back.into_split());
                tokio::join!(pump(sr, bw), pump(br, sw));
            }
        }
        Some("accept") => {
            let parked =
                param(query, "sb-hc-id").and_then(|id| relay.parked.borrow_mut().remove(id));
            if let Some(tx) = parked {
                let _ = tx.send((s, key));
            }
        }
        _ => {}
    }
}

/// Frames in, the same frames unmasked out, until a Close has gone through.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut closed = false;
        while let Some((b0, len, mask, head)) = frame_header(&buf) {
            if buf.len() < head + len {
                break;
            }
            out.push(b0);
            if len < 126 {
                out.push(len as u8);
            } else if len < 65536 {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
            let start = out.len();
            out.extend_from_slice(&buf[head..head + len]);
            if let Some(m) = mask {
                for (i, b) in out[start..].iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            buf.drain(..head + len);
            if b0 & 0x0F == 0x8 {
                closed = true;
                break;
            }
        }
        if !out.is_empty() && to.write_all(&out).await.is_err() || closed {
            return;
        }
    }
}

/// A buffered frame's first byte, payload length, mask and header length,
/// once its header is whole.
fn frame_header(buf: &[u8]) -> Option<(u8, usize, Option<[u8; 4]>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, ext) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            2,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            8,
        ),
        l => (l as usize, 0),
    };
    let masked = b1 & 0x80 != 0;
    let head = 2 + ext + if masked { 4 } else { 0 };
    let mask = if masked {
        Some(buf.get(2 + ext..head)?.try_into().ok()?)
    } else {
        None
    };
    Some((b0, len, mask, head))
}
