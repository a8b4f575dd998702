//! A raw WebSocket and HTTP client for conformance tests: the handshake is
//! written and read by hand (so status lines, reason phrases and headers can
//! be checked), frames go through fastwebsockets in client role.

use std::net::SocketAddr;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers (names lower-cased).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_head(s: &mut TcpStream) -> Head {
    // Peek, then consume no more than the head, so frames the server sends
    // right after it stay in the socket for the WebSocket reader (a byte per
    // read would cost a system call per byte on the timed paths).
    let mut buf = Vec::new();
    let mut peeked = [0u8; 2048];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.peek(&mut peeked).await.unwrap();
        assert!(
            n > 0,
            "connection closed inside the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        // The head may end inside what is peeked; its "\r\n\r\n" may
        // straddle what was consumed before.
        let tail = &buf[buf.len().saturating_sub(3)..];
        let window: Vec<u8> = tail.iter().chain(&peeked[..n]).copied().collect();
        let take = window
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(n, |p| p + 4 - tail.len());
        let start = buf.len();
        buf.resize(start + take, 0);
        s.read_exact(&mut buf[start..]).await.unwrap();
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    parts.next();
    let status = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap_or("").to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Head {
        status,
        reason,
        headers,
    }
}

/// The head of a WebSocket upgrade request to `path_and_query` on `addr`.
pub fn upgrade_request(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Open a WebSocket to `path_and_query` with `headers`; the socket is
/// returned only on 101.
pub async fn ws(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (Head, Option<WebSocket<TcpStream>>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(upgrade_request(addr, path_and_query, headers).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    if head.status != 101 {
        return (head, None);
    }
    let mut ws = WebSocket::after_handshake(s, Role::Client);
    ws.set_auto_close(false);
    ws.set_auto_pong(true);
    (head, Some(ws))
}

/// Read the next data or close frame (pings answered), as (opcode, fin, bytes).
pub async fn next(
    ws: &mut WebSocket<TcpStream>,
    limit: Duration,
) -> Option<(OpCode, bool, Vec<u8>)> {
    loop {
        let f = tokio::time::timeout(limit, ws.read_frame())
            .await
            .ok()?
            .ok()?;
        match f.opcode {
            OpCode::Ping | OpCode::Pong => continue,
            op => return Some((op, f.fin, f.payload.to_vec())),
        }
    }
}

/// Read the next text message as JSON.
pub async fn next_json(ws: &mut WebSocket<TcpStream>) -> serde_json::Value {
    let (op, _, data) = next(ws, Duration::from_secs(10)).await.expect("a message");
    assert_eq!(
        op,
        OpCode::Text,
        "expected text, got {op:?} {:?}",
        String::from_utf8_lossy(&data)
    );
    serde_json::from_slice(&data).unwrap()
}

/// Send a text message.
pub async fn send_text(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
        .unwrap();
}

/// Send a frame.
pub async fn send(ws: &mut WebSocket<TcpStream>, fin: bool, op: OpCode, data: &[u8]) {
    ws.write_frame(Frame::new(fin, op, None, Payload::Borrowed(data)))
        .await
        .unwrap();
}

/// Send a close frame.
pub async fn close(ws: &mut WebSocket<TcpStream>, code: u16, reason: &str) {
    ws.write_frame(Frame::close(code, reason.as_bytes()))
        .await
        .unwrap();
}

/// `ws://…` address split into host:port and path+query.
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.split_once("://").unwrap().1;
    let (hostport, path) = rest.split_once('/').unwrap();
    (hostport.parse().unwrap(), format!("/{path}"))
}

/// A plain HTTP/1.1 exchange with `Connection: close`: the head and the
/// whole body (content-length, chunked or to end of stream).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Head, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let head = read_head(&mut s).await;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    let body = if head
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(&rest)
    } else {
        rest
    };
    (head, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..pos])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        data = &data[pos + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}
