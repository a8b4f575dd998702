//! WebSocket connections as relay legs (RFC 6455 §5), server side, and
//! client side for `forward --hc` (which reads unmasked frames and masks
//! what it writes, §5.3); server side: frames
//! read with a buffer that stays tiny until data arrives, so idle
//! connections cost little memory, and written unmasked (FIN flag kept, no
//! automatic Close echo), several frames in one vectored write when a
//! splice has them at hand; plus the small helpers the front ends share:
//! send text, ping, close with a code and reason.
//!
//! Frames map onto [`Chunk`]s, so message boundaries, text or binary type
//! and fragmentation survive a splice. A frame up to [`MAX_WHOLE_FRAME`]
//! bytes is taken whole and written on as one frame; a larger one is passed
//! on in pieces of at most [`MAX_READ`] bytes as they arrive (unmasked on the
//! fly, each piece written as a fragment of the same message), so a leg's
//! read buffer never holds more than [`MAX_WHOLE_FRAME`] plus a header,
//! whatever length a frame declares. Every frame is checked as a
//! server must (RFC 6455 §5.1-§5.5): masked, no reserved bits, a length
//! without its top bit, control frames whole and at most 125 bytes,
//! continuations only inside a message; a breach closes with 1002 (1009
//! over the limit, 1007 for bad UTF-8) and a Close frame. Pings are
//! answered per hop; pongs are swallowed; a Close becomes a half-close
//! ([`LegEvent::Closed`]) that the splice passes on instead of echoing.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};
use hybrid::listener::{Opcode, Outgoing};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::relay::leg::BoxFuture;
use crate::relay::{Chunk, CloseInfo, Leg, LegEvent, LegReader, LegWriter};

/// The stream under an upgraded HTTP connection.
pub type Io = TokioIo<Upgraded>;
/// Writing half, shared (pongs are sent from the reading side).
pub type WsWrite = Arc<Mutex<FrameWriter>>;

/// A frame that breaks the protocol, with the close code it earns.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame over the message limit (1009).
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u64),
    /// A complete text frame that is not UTF-8 (1007).
    #[error("text frame is not valid UTF-8")]
    InvalidUtf8,
    /// Anything else RFC 6455 forbids (1002).
    #[error("{0}")]
    Protocol(&'static str),
}

/// Largest frame header (2 + 8 length + 4 mask).
const MAX_HEADER: usize = 14;
/// Read size before any frame has been seen: just a header's worth.
const FIRST_READ: usize = 64;
/// Cap on the read size learnt from earlier frames (what a busy
/// connection's buffer grows to), and the size of a large frame's pieces.
const MAX_READ: usize = 64 * 1024;
/// The largest frame held whole; larger ones are passed on in pieces.
pub const MAX_WHOLE_FRAME: usize = 1 << 20;

/// Reading half: parses frames off the stream. Its buffer starts empty and
/// grows to the frames it sees (up to [`MAX_READ`] ahead).
pub struct WsRead {
    io: ReadHalf<Io>,
    /// Whether this end is the client (frames arrive unmasked).
    client: bool,
    buf: BytesMut,
    max_message: usize,
    /// How much to ask for when the buffer is empty.
    read_size: usize,
    /// Whether a fragmented message has started and not yet ended.
    in_message: bool,
    /// The rest of a large frame being passed on in pieces.
    streaming: Option<Streaming>,
}

/// A frame over [`MAX_WHOLE_FRAME`] whose payload is passed on as it arrives.
struct Streaming {
    /// Payload bytes still to come.
    left: u64,
    /// Its mask, rotated to where the next byte falls.
    mask: [u8; 4],
    /// Its FIN flag (given to its last piece).
    fin: bool,
    /// The opcode of its next piece (its own first, then Continuation).
    opcode: OpCode,
}

fn protocol(msg: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, FrameError::Protocol(msg))
}

/// XOR `data` with the 4-byte `mask`, 8 bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(b) ^ word).to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

impl WsRead {
    /// Read until the buffer holds `n` bytes.
    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            // Memory follows the bytes that arrive, not a declared length.
            let want = (n - self.buf.len()).clamp(self.read_size, 1 << 20);
            self.buf.reserve(want);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
        }
        Ok(())
    }

    /// The next frame off the wire (pings included). Nothing is consumed
    /// until the whole frame is buffered, so a cancelled call loses nothing.
    async fn next_frame(&mut self) -> std::io::Result<WsFrame> {
        loop {
            match self.parse()? {
                Parsed::Frame(f) => return Ok(f),
                Parsed::Need(n) => self.fill(n).await?,
            }
        }
    }

    /// A data or Close frame already whole in the buffer (or the next piece
    /// of a large frame), taken without reading. Pings, which need an answer
    /// written, and frames that break the protocol, which need a Close, are
    /// left for [`read_frame`].
    fn buffered_frame(&mut self) -> Option<WsFrame> {
        let ping = self.buf.first().is_some_and(|b| b & 0x0F == 0x9);
        if ping && self.streaming.is_none() {
            return None;
        }
        match self.parse() {
            Ok(Parsed::Frame(f)) => Some(f),
            Ok(Parsed::Need(_)) | Err(_) => None,
        }
    }

    /// Take the frame at the head of the buffer if it is whole, or say how
    /// many bytes it needs; protocol errors as soon as the header shows them.
    fn parse(&mut self) -> std::io::Result<Parsed> {
        if let Some(st) = self.streaming.as_mut() {
            let piece = st.piece(&mut self.buf);
            if st.left == 0 {
                self.streaming = None;
            }
            return Ok(piece);
        }
        let (b0, b1) = match self.buf.get(..2) {
            Some(&[b0, b1]) => (b0, b1),
            _ => return Ok(Parsed::Need(2)),
        };
        if b0 & 0x70 != 0 {
            return Err(protocol("reserved bits are set"));
        }
        let opcode = match b0 & 0x0F {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return Err(protocol("unknown opcode")),
        };
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        if masked == self.client {
            return Err(protocol(if self.client {
                "server frames must not be masked"
            } else {
                "client frames must be masked"
            }));
        }
        let extra = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header = 2 + extra + if masked { 4 } else { 0 };
        let Some(mut head) = self.buf.get(2..header) else {
            return Ok(Parsed::Need(header));
        };
        let len: u64 = match extra {
            2 => u64::from(head.get_u16()),
            8 => head.get_u64(),
            _ => u64::from(b1 & 0x7F),
        };
        let mask = if masked {
            head.get_u32().to_be_bytes()
        } else {
            [0; 4]
        };
        if len >> 63 != 0 {
            return Err(protocol("the frame length has its top bit set"));
        }
        let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
        if control && (!fin || len > 125) {
            return Err(protocol(
                "control frames must be whole and at most 125 bytes",
            ));
        }
        match (opcode, self.in_message) {
            (OpCode::Continuation, false) => {
                return Err(protocol("a continuation frame with no message to continue"))
            }
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(protocol("a new message began before the last one ended"))
            }
            _ => {}
        }
        if usize::try_from(len).map_or(true, |l| l > self.max_message) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                FrameError::TooLarge(len),
            ));
        }
        // `len` fits in usize (checked above against max_message).
        let len = len as usize;
        if len > MAX_WHOLE_FRAME {
            self.in_message = !fin;
            self.read_size = MAX_READ + MAX_HEADER;
            self.buf.advance(header);
            let mut st = Streaming {
                left: len as u64,
                mask,
                fin,
                opcode,
            };
            let first = st.piece(&mut self.buf);
            self.streaming = Some(st);
            return Ok(first);
        }
        self.read_size = (len + MAX_HEADER).clamp(FIRST_READ, MAX_READ);
        if self.buf.len() < header + len {
            return Ok(Parsed::Need(header + len));
        }
        if !control {
            self.in_message = !fin;
        }
        self.buf.advance(header);
        let mut payload = self.buf.split_to(len);
        unmask(&mut payload, mask);
        if opcode == OpCode::Text && fin && std::str::from_utf8(&payload).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                FrameError::InvalidUtf8,
            ));
        }
        Ok(Parsed::Frame(WsFrame {
            fin,
            opcode,
            data: payload.freeze(),
        }))
    }
}

impl Streaming {
    /// The next piece of the frame from what the buffer holds (at most
    /// [`MAX_READ`] bytes), or how much to wait for.
    fn piece(&mut self, buf: &mut BytesMut) -> Parsed {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(MAX_READ);
        let n = want.min(buf.len());
        if n == 0 {
            return Parsed::Need(want.clamp(1, FIRST_READ));
        }
        let mut data = buf.split_to(n);
        unmask(&mut data, self.mask);
        self.mask.rotate_left(n % 4);
        self.left -= n as u64;
        let opcode = std::mem::replace(&mut self.opcode, OpCode::Continuation);
        Parsed::Frame(WsFrame {
            fin: self.fin && self.left == 0,
            opcode,
            data: data.freeze(),
        })
    }
}

/// What the buffer holds: a whole frame, or not yet this many bytes.
enum Parsed {
    Frame(WsFrame),
    Need(usize),
}

/// Writing half: frames go out unmasked, as a server sends them, or
/// masked with a fresh key each, as a client must; after a Close nothing
/// more is sent.
pub struct FrameWriter {
    io: WriteHalf<Io>,
    client: bool,
    closed: bool,
}

/// A frame header (at most 14 bytes), with `mask` when given.
fn header(fin: bool, opcode: OpCode, len: usize, mask: Option<[u8; 4]>) -> BytesMut {
    let mut h = BytesMut::with_capacity(MAX_HEADER);
    h.put_u8(u8::from(fin) << 7 | opcode as u8);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => h.put_u8(bit | len as u8),
        126..=0xFFFF => {
            h.put_u8(bit | 126);
            h.put_u16(len as u16);
        }
        _ => {
            h.put_u8(bit | 127);
            h.put_u64(len as u64);
        }
    }
    if let Some(mask) = mask {
        h.put_slice(&mask);
    }
    h
}

impl FrameWriter {
    /// Send one frame.
    pub async fn write_frame(&mut self, frame: Frame<'_>) -> std::io::Result<()> {
        self.write_frames(&[(frame.fin, frame.opcode, &frame.payload[..])])
            .await
    }

    /// Send frames (FIN flag, opcode, payload) in as few writes as the
    /// socket takes.
    async fn write_frames(&mut self, frames: &[(bool, OpCode, &[u8])]) -> std::io::Result<()> {
        if self.closed {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.closed = frames.iter().any(|f| f.1 == OpCode::Close);
        // A client's payloads go out masked: copies, each with its key.
        let masked: Vec<([u8; 4], BytesMut)> = if self.client {
            frames
                .iter()
                .map(|f| {
                    let key: [u8; 4] = rand::random();
                    let mut data = BytesMut::from(f.2);
                    unmask(&mut data, key);
                    (key, data)
                })
                .collect()
        } else {
            Vec::new()
        };
        let heads: Vec<BytesMut> = frames
            .iter()
            .enumerate()
            .map(|(i, &(fin, op, p))| header(fin, op, p.len(), masked.get(i).map(|m| m.0)))
            .collect();
        let mut slices: Vec<IoSlice<'_>> = heads
            .iter()
            .zip(frames.iter().enumerate())
            .flat_map(|(h, (i, f))| {
                let payload = masked.get(i).map_or(f.2, |m| &m.1[..]);
                [IoSlice::new(h), IoSlice::new(payload)]
            })
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = self.io.write_vectored(rest).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }
}

/// Split an upgraded connection (the gateway as server) into halves: Close
/// frames are passed on, not echoed; pings are answered; frames are bounded
/// by `max_message`.
pub fn split(io: Io, max_message: usize) -> (WsRead, WsWrite) {
    split_as(io, max_message, false)
}

/// The same for this end as the client (`forward --hc`).
pub fn split_client(io: Io, max_message: usize) -> (WsRead, WsWrite) {
    split_as(io, max_message, true)
}

fn split_as(io: Io, max_message: usize, client: bool) -> (WsRead, WsWrite) {
    let (r, w) = tokio::io::split(io);
    let read = WsRead {
        io: r,
        client,
        buf: BytesMut::new(),
        max_message,
        read_size: FIRST_READ,
        in_message: false,
        streaming: None,
    };
    let write = FrameWriter {
        io: w,
        client,
        closed: false,
    };
    (read, Arc::new(Mutex::new(write)))
}

/// The close code for a protocol error from [`read_frame`] (1009 for a
/// message over the limit, 1007 for invalid UTF-8, 1002 for other protocol
/// errors); `None` for transport errors, where no Close can be sent.
pub fn close_code(e: &std::io::Error) -> Option<u16> {
    match e.get_ref()?.downcast_ref::<FrameError>()? {
        FrameError::TooLarge(_) => Some(1009),
        FrameError::InvalidUtf8 => Some(1007),
        FrameError::Protocol(_) => Some(1002),
    }
}

/// A frame as read: FIN flag, opcode and payload.
pub struct WsFrame {
    /// Whether this frame ends its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The payload (no copy for frames read off the wire).
    pub data: Bytes,
}

/// Read the next frame, answering pings on `write`; a frame that breaks the
/// protocol is answered with a Close carrying its code, then returned as the
/// error.
pub async fn read_frame(read: &mut WsRead, write: &WsWrite) -> std::io::Result<WsFrame> {
    loop {
        let frame = match read.next_frame().await {
            Ok(f) => f,
            Err(e) => {
                if let Some(code) = close_code(&e) {
                    let _ = send_close(write, code, &e.to_string()).await;
                }
                return Err(e);
            }
        };
        if frame.opcode != OpCode::Ping {
            return Ok(frame);
        }
        let pong = Frame::pong(Payload::Borrowed(&frame.data));
        write.lock().await.write_frame(pong).await?;
    }
}

/// Code and reason of a Close frame's payload.
pub fn close_info(data: &[u8]) -> Option<CloseInfo> {
    let code: [u8; 2] = data.get(..2)?.try_into().ok()?;
    let reason = data.get(2..).unwrap_or_default();
    Some(CloseInfo {
        code: u16::from_be_bytes(code),
        reason: String::from_utf8_lossy(reason).into_owned(),
    })
}

/// Send a text message.
pub async fn send_text(write: &WsWrite, text: &str) -> std::io::Result<()> {
    write
        .lock()
        .await
        .write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
        .await
}

/// Send a Close frame.
pub async fn send_close(write: &WsWrite, code: u16, reason: &str) -> std::io::Result<()> {
    write
        .lock()
        .await
        .write_frame(close_frame(code, reason))
        .await
}

/// Write the frames a control-channel state machine queued (`next` gives
/// them), under one lock: a request and its body go out back to back.
pub async fn send_queued(
    write: &WsWrite,
    mut next: impl FnMut() -> Option<Outgoing>,
) -> std::io::Result<()> {
    let mut w = write.lock().await;
    while let Some(out) = next() {
        let frame = match &out {
            Outgoing::Text(t) => Frame::text(Payload::Borrowed(t.as_bytes())),
            Outgoing::Binary(b) => Frame::binary(Payload::Borrowed(b)),
            Outgoing::Ping => Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"")),
            Outgoing::Close(code, reason) => close_frame(*code, reason),
        };
        w.write_frame(frame).await?;
    }
    Ok(())
}

/// A frame's opcode as the control-channel state machines take it.
pub fn opcode(op: OpCode) -> Opcode {
    match op {
        OpCode::Text => Opcode::Text,
        OpCode::Binary => Opcode::Binary,
        OpCode::Continuation => Opcode::Continuation,
        OpCode::Close => Opcode::Close,
        OpCode::Ping => Opcode::Ping,
        OpCode::Pong => Opcode::Pong,
    }
}

/// A Close frame, its reason cut to fit (control frame payloads are at most
/// 125 bytes).
pub fn close_frame(code: u16, reason: &str) -> Frame<'_> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Frame::close(code, reason.get(..end).unwrap_or_default().as_bytes())
}

struct Reader {
    read: WsRead,
    write: WsWrite,
    text: bool,
}

impl Reader {
    /// The leg event a frame makes (`None` for pings and pongs).
    fn event(&mut self, frame: WsFrame) -> Option<LegEvent> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if frame.opcode != OpCode::Continuation {
                    self.text = frame.opcode == OpCode::Text;
                }
                Some(LegEvent::Chunk(Chunk {
                    data: frame.data,
                    end: frame.fin,
                    text: self.text,
                }))
            }
            OpCode::Close => Some(LegEvent::Closed(close_info(&frame.data))),
            OpCode::Ping | OpCode::Pong => None,
        }
    }
}

impl LegReader for Reader {
    fn read(&mut self) -> BoxFuture<'_, std::io::Result<LegEvent>> {
        Box::pin(async move {
            loop {
                let frame = read_frame(&mut self.read, &self.write).await?;
                if let Some(event) = self.event(frame) {
                    return Ok(event);
                }
            }
        })
    }

    fn read_buffered(&mut self) -> Option<std::io::Result<LegEvent>> {
        loop {
            let frame = self.read.buffered_frame()?;
            if let Some(event) = self.event(frame) {
                return Some(Ok(event));
            }
        }
    }
}

struct Writer {
    write: WsWrite,
    in_message: bool,
}

impl LegWriter for Writer {
    fn write(&mut self, chunk: Chunk) -> BoxFuture<'_, std::io::Result<()>> {
        self.write_batch(vec![chunk])
    }

    fn write_batch(&mut self, chunks: Vec<Chunk>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let frames: Vec<(bool, OpCode, &[u8])> = chunks
                .iter()
                .map(|chunk| {
                    let opcode = match (self.in_message, chunk.text) {
                        (true, _) => OpCode::Continuation,
                        (false, true) => OpCode::Text,
                        (false, false) => OpCode::Binary,
                    };
                    self.in_message = !chunk.end;
                    (chunk.end, opcode, &chunk.data[..])
                })
                .collect();
            self.write.lock().await.write_frames(&frames).await
        })
    }

    fn close(&mut self, info: Option<CloseInfo>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let frame = match &info {
                Some(i) => Frame::close(i.code, i.reason.as_bytes()),
                None => Frame::close_raw(Payload::Owned(Vec::new())),
            };
            self.write.lock().await.write_frame(frame).await
        })
    }
}

/// A WebSocket as a relay leg.
pub fn leg(read: WsRead, write: WsWrite) -> Leg {
    Leg {
        reader: Box::new(Reader {
            read,
            write: write.clone(),
            text: false,
        }),
        writer: Box::new(Writer {
            write,
            in_message: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{header, unmask, OpCode};

    #[test]
    fn headers_use_the_shortest_length_form() {
        // RFC 6455 §5.7's examples (unmasked, and masked as a client
        // sends them), and the 64-bit form.
        assert_eq!(&header(true, OpCode::Text, 5, None)[..], [0x81, 0x05]);
        assert_eq!(
            &header(true, OpCode::Text, 5, Some([0x37, 0xfa, 0x21, 0x3d]))[..],
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]
        );
        assert_eq!(
            &header(true, OpCode::Binary, 256, None)[..],
            [0x82, 0x7E, 0x01, 0x00]
        );
        assert_eq!(
            &header(true, OpCode::Binary, 65536, None)[..],
            [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            &header(false, OpCode::Continuation, 125, None)[..],
            [0x00, 125]
        );
        assert_eq!(&header(true, OpCode::Close, 0, None)[..], [0x88, 0x00]);
    }

    #[test]
    fn unmasking_matches_the_byte_by_byte_rule() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 1, 7, 8, 9, 63, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }
}
