//! Header names as the client spelled them. The relay service hands a
//! listener each request header under the name the sender wrote
//! (`CustomHeader1`, not `customheader1`), and the .NET SDK looks names up
//! case-sensitively. hyper lower-cases names and keeps the original case to
//! itself, so [`Watched`] wraps a connection's stream and reads every request
//! head as hyper reads it: the names of each head are queued, in order, for
//! the service to take with its request ([`Spellings::next`]). Bodies are
//! skipped by their `Content-Length` or chunked framing; after an upgrade
//! request, a head over the size limit or anything that does not parse, the
//! watch stops and later requests on the connection fall back to
//! [`canonical`] names.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The names of one request head, as written.
#[derive(Debug, Clone, Default)]
pub struct Names(Vec<String>);

impl Names {
    /// The spelling of `name` (any case) in this head, else [`canonical`].
    pub fn spell(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|n| n.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| canonical(name))
    }
}

/// `sec-websocket-key` → `Sec-WebSocket-Key`: the spelling used when the
/// sender's own is not known.
pub fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| match p {
            "websocket" => "WebSocket".to_owned(),
            _ => {
                let mut c = p.chars();
                c.next().map_or_else(String::new, |f| {
                    std::iter::once(f.to_ascii_uppercase()).chain(c).collect()
                })
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The heads a connection's watch has read and the service has not yet taken.
#[derive(Clone, Default)]
pub struct Spellings(Arc<Mutex<VecDeque<Names>>>);

impl Spellings {
    /// The names of the next request's head (`None` once the watch stopped).
    pub fn next(&self) -> Option<Names> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    fn push(&self, names: Names) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(names);
    }
}

/// Where the watch is in the byte stream.
#[derive(Debug)]
enum State {
    /// Reading a request head (bytes so far).
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// In a chunked body: reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// In a chunked body: skipping chunk data and its CRLF.
    ChunkData(u64),
    /// After the last chunk: reading trailer lines up to the empty one.
    Trailer(Vec<u8>),
    /// Not watching any more.
    Off,
}

/// Largest request head the watch follows (a larger one stops it).
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line the watch follows.
const MAX_LINE: usize = 4096;

/// The watch over one connection's request heads.
struct Watch {
    state: State,
    max_head: usize,
    out: Spellings,
}

impl Watch {
    /// Follow `data`, the next bytes read off the connection.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Off);
            let (state, used) = self.step(state, data);
            self.state = state;
            data = data.get(used..).unwrap_or_default();
        }
    }

    /// One step: the next state and how many bytes of `data` it used.
    fn step(&self, state: State, data: &[u8]) -> (State, usize) {
        match state {
            State::Off => (State::Off, data.len()),
            State::Body(n) => skip(n, data, State::Head(Vec::new())),
            State::ChunkData(n) => skip(n, data, State::ChunkSize(Vec::new())),
            State::Head(buf) => self.head(buf, data),
            State::ChunkSize(line) => {
                let (line, used, done) = take_line(line, data);
                match done {
                    false if line.len() > MAX_LINE => (State::Off, used),
                    false => (State::ChunkSize(line), used),
                    true => match chunk_size(&line) {
                        // An empty line is the CRLF after the previous chunk's data.
                        None if line.trim_ascii().is_empty() => {
                            (State::ChunkSize(Vec::new()), used)
                        }
                        None => (State::Off, used),
                        Some(0) => (State::Trailer(Vec::new()), used),
                        Some(n) => (State::ChunkData(n), used),
                    },
                }
            }
            State::Trailer(line) => {
                let (line, used, done) = take_line(line, data);
                match done {
                    false if line.len() > MAX_LINE => (State::Off, used),
                    false => (State::Trailer(line), used),
                    true if line.trim_ascii().is_empty() => (State::Head(Vec::new()), used),
                    true => (State::Trailer(Vec::new()), used),
                }
            }
        }
    }

    /// Gather a head up to its blank line, record its names and find how
    /// its body is framed.
    fn head(&self, mut buf: Vec<u8>, data: &[u8]) -> (State, usize) {
        let before = buf.len();
        buf.extend_from_slice(data);
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let end = match req.parse(&buf) {
            Ok(httparse::Status::Complete(end)) => end,
            Ok(httparse::Status::Partial) if buf.len() <= self.max_head => {
                return (State::Head(buf), data.len())
            }
            _ => return (State::Off, data.len()),
        };
        let used = end.saturating_sub(before);
        let mut names = Vec::with_capacity(req.headers.len());
        let (mut length, mut chunked, mut upgrade) = (None, false, false);
        for h in req.headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
            if !names
                .iter()
                .any(|n: &String| n.eq_ignore_ascii_case(h.name))
            {
                names.push(h.name.to_owned());
            }
        }
        self.out.push(Names(names));
        let next = match (upgrade, chunked, length) {
            // The connection may become something else: stop watching.
            (true, _, _) => State::Off,
            (_, true, _) => State::ChunkSize(Vec::new()),
            (_, _, Some(n)) if n > 0 => State::Body(n),
            _ => State::Head(Vec::new()),
        };
        (next, used)
    }
}

/// Skip up to `n` bytes of `data`; `then` once all `n` are skipped.
fn skip(n: u64, data: &[u8], then: State) -> (State, usize) {
    let used = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
    match n - used as u64 {
        0 => (then, used),
        left => (
            match then {
                State::ChunkSize(_) => State::ChunkData(left),
                _ => State::Body(left),
            },
            used,
        ),
    }
}

/// Add `data` to `line` up to and including a LF: the line, the bytes
/// used, and whether it is complete.
fn take_line(mut line: Vec<u8>, data: &[u8]) -> (Vec<u8>, usize, bool) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => {
            line.extend_from_slice(data.get(..i).unwrap_or_default());
            (line, i + 1, true)
        }
        None => {
            line.extend_from_slice(data);
            (line, data.len(), false)
        }
    }
}

/// The size of a chunk-size line (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text.split(';').next()?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// A connection's stream with its request heads watched.
pub struct Watched<S> {
    io: S,
    watch: Watch,
}

impl<S> Watched<S> {
    /// Watch `io`'s request heads; the service takes their names from the
    /// returned [`Spellings`].
    pub fn new(io: S) -> (Self, Spellings) {
        let out = Spellings::default();
        let watch = Watch {
            state: State::Head(Vec::new()),
            max_head: MAX_HEAD,
            out: out.clone(),
        };
        (Watched { io, watch }, out)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if !matches!(this.watch.state, State::Off) {
            if let Some(new) = buf.filled().get(before..) {
                this.watch.feed(new);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(max_head: usize) -> (Watch, Spellings) {
        let out = Spellings::default();
        let w = Watch {
            state: State::Head(Vec::new()),
            max_head,
            out: out.clone(),
        };
        (w, out)
    }

    const STREAM: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nCustomHeader1: v\r\n\r\n\
POST /b HTTP/1.1\r\nhost: x\r\nContent-Length: 27\r\nX-Two: 2\r\n\r\n\
X-Fake: not a header\r\n\r\n!!!\
PUT /c HTTP/1.1\r\nHOST: x\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nX-No:\r\n0\r\nTrailer-Field: t\r\n\r\n\
GET /d HTTP/1.1\r\nMiXeD-Case: 1\r\nUpgrade: websocket\r\n\r\nnot http at all\r\n\r\n";

    fn expected() -> Vec<Vec<&'static str>> {
        vec![
            vec!["Host", "CustomHeader1"],
            vec!["host", "Content-Length", "X-Two"],
            vec!["HOST", "Transfer-Encoding"],
            vec!["MiXeD-Case", "Upgrade"],
        ]
    }

    fn drain(out: &Spellings) -> Vec<Vec<String>> {
        std::iter::from_fn(|| out.next()).map(|n| n.0).collect()
    }

    #[test]
    fn heads_are_recorded_in_order_across_bodies_at_every_split() {
        for split in 0..=STREAM.len() {
            let (mut w, out) = watch(8192);
            w.feed(&STREAM[..split]);
            w.feed(&STREAM[split..]);
            assert_eq!(drain(&out), expected(), "split at {split}");
            assert!(matches!(w.state, State::Off));
        }
        // Byte by byte.
        let (mut w, out) = watch(8192);
        for b in STREAM {
            w.feed(std::slice::from_ref(b));
        }
        assert_eq!(drain(&out), expected());
    }

    #[test]
    fn names_are_spelled_as_written_else_canonically() {
        let names = Names(vec!["CustomHeader1".into(), "x-lower".into()]);
        assert_eq!(names.spell("customheader1"), "CustomHeader1");
        assert_eq!(names.spell("x-lower"), "x-lower");
        assert_eq!(names.spell("sec-websocket-key"), "Sec-WebSocket-Key");
        assert_eq!(canonical("content-type"), "Content-Type");
    }

    #[test]
    fn an_oversized_or_broken_head_stops_the_watch() {
        let (mut w, out) = watch(64);
        w.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ");
        w.feed(&[b'a'; 100]);
        assert!(matches!(w.state, State::Off));
        assert!(out.next().is_none());
        let (mut w, out) = watch(8192);
        w.feed(b"\x16\x03\x01 not http\r\n\r\n");
        assert!(matches!(w.state, State::Off));
        assert!(out.next().is_none());
    }
}
