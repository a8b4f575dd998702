//! WebSocket connections as relay legs, on fastwebsockets (RFC 6455 frames
//! with their FIN flag, no automatic Close echo), plus the small helpers the
//! front ends share: accept an upgrade with a chosen sub-protocol, send text,
//! close with a code and reason.
//!
//! Frames map one to one onto [`Chunk`]s, so message boundaries, text or
//! binary type and fragmentation survive a splice, and no message is held
//! whole. Pings are answered per hop; pongs are swallowed; a Close becomes a
//! half-close ([`LegEvent::Closed`]) that the splice passes on instead of
//! echoing.

use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{
    after_handshake_split, Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead,
    WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use crate::relay::leg::BoxFuture;
use crate::relay::{Chunk, CloseInfo, Leg, LegEvent, LegReader, LegWriter};

/// The stream under an upgraded HTTP connection.
pub type Io = TokioIo<Upgraded>;
/// Reading half.
pub type WsRead = WebSocketRead<ReadHalf<Io>>;
/// Writing half, shared (pongs are sent from the reading side).
pub type WsWrite = Arc<Mutex<WebSocketWrite<WriteHalf<Io>>>>;

/// Split an upgraded connection into halves: no auto-close (Close frames are
/// passed on, not echoed), pings answered, messages bounded by `max_message`.
pub fn split(io: Io, role: Role, max_message: usize) -> (WsRead, WsWrite) {
    let (r, w) = tokio::io::split(io);
    let (mut read, mut write) = after_handshake_split(r, w, role);
    read.set_auto_close(false);
    read.set_auto_pong(true);
    read.set_max_message_size(max_message);
    write.set_auto_apply_mask(true);
    (read, Arc::new(Mutex::new(write)))
}

fn io_err(e: WebSocketError) -> std::io::Error {
    match e {
        WebSocketError::IoError(e) => e,
        other => std::io::Error::other(other),
    }
}

/// The close code for a protocol error from [`read_frame`] (1009 for a
/// message over the limit, 1007 for invalid UTF-8, 1002 for other protocol
/// errors); `None` for transport errors, where no Close can be sent.
pub fn close_code(e: &std::io::Error) -> Option<u16> {
    match e.get_ref()?.downcast_ref::<WebSocketError>()? {
        WebSocketError::FrameTooLarge => Some(1009),
        WebSocketError::InvalidUTF8 => Some(1007),
        WebSocketError::IoError(_)
        | WebSocketError::UnexpectedEOF
        | WebSocketError::ConnectionClosed => None,
        _ => Some(1002),
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

/// Read the next frame, answering pings on `write`.
pub async fn read_frame(read: &mut WsRead, write: &WsWrite) -> std::io::Result<WsFrame> {
    let w = write.clone();
    let mut send = move |frame: Frame<'_>| {
        let w = w.clone();
        let owned = Frame::new(
            frame.fin,
            frame.opcode,
            None,
            Payload::Owned(frame.payload.to_vec()),
        );
        async move { w.lock().await.write_frame(owned).await }
    };
    let frame = read.read_frame(&mut send).await.map_err(io_err)?;
    let (fin, opcode) = (frame.fin, frame.opcode);
    let data = match frame.payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    };
    Ok(WsFrame { fin, opcode, data })
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
        .map_err(io_err)
}

/// Send a Close frame.
pub async fn send_close(write: &WsWrite, code: u16, reason: &str) -> std::io::Result<()> {
    // Control frame payloads are at most 125 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    write
        .lock()
        .await
        .write_frame(Frame::close(
            code,
            reason.get(..end).unwrap_or_default().as_bytes(),
        ))
        .await
        .map_err(io_err)
}

/// Send a Ping.
pub async fn send_ping(write: &WsWrite) -> std::io::Result<()> {
    write
        .lock()
        .await
        .write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b"")))
        .await
        .map_err(io_err)
}

struct Reader {
    read: WsRead,
    write: WsWrite,
    text: bool,
}

impl LegReader for Reader {
    fn read(&mut self) -> BoxFuture<'_, std::io::Result<LegEvent>> {
        Box::pin(async move {
            loop {
                let frame = read_frame(&mut self.read, &self.write).await?;
                match frame.opcode {
                    OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                        if frame.opcode != OpCode::Continuation {
                            self.text = frame.opcode == OpCode::Text;
                        }
                        return Ok(LegEvent::Chunk(Chunk {
                            data: frame.data,
                            end: frame.fin,
                            text: self.text,
                        }));
                    }
                    OpCode::Close => return Ok(LegEvent::Closed(close_info(&frame.data))),
                    OpCode::Ping | OpCode::Pong => {}
                }
            }
        })
    }
}

struct Writer {
    write: WsWrite,
    in_message: bool,
}

impl LegWriter for Writer {
    fn write(&mut self, chunk: Chunk) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let opcode = match (self.in_message, chunk.text) {
                (true, _) => OpCode::Continuation,
                (false, true) => OpCode::Text,
                (false, false) => OpCode::Binary,
            };
            self.in_message = !chunk.end;
            let frame = Frame::new(chunk.end, opcode, None, Payload::Borrowed(&chunk.data));
            self.write
                .lock()
                .await
                .write_frame(frame)
                .await
                .map_err(io_err)
        })
    }

    fn close(&mut self, info: Option<CloseInfo>) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            let frame = match &info {
                Some(i) => Frame::close(i.code, i.reason.as_bytes()),
                None => Frame::close_raw(Payload::Owned(Vec::new())),
            };
            self.write
                .lock()
                .await
                .write_frame(frame)
                .await
                .map_err(io_err)
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
