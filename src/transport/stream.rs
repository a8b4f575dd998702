//! Byte-stream plumbing for the WCF relay front end: [`Rewind`] gives back
//! bytes read ahead of a TLS handshake or a splice; [`Conn`] reads and writes
//! the 4-byte length-prefixed messages of port 9352 (`wcf/PROTOCOL.md`
//! §3.1) over plain TCP or any other stream; [`splice`] joins two of them,
//! in the kernel when both are plain TCP, else through core legs ([`leg`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

use tokio::net::TcpStream;

use crate::relay::leg::BoxFuture;
use crate::relay::splice::SpliceStats;
use crate::relay::{Chunk, CloseInfo, Leg, LegEvent, LegReader, LegWriter, SpliceLimits};

/// A bidirectional byte stream (TCP, TLS, or a WebSocket adapter).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A boxed stream.
pub type BoxIo = Box<dyn Io>;

/// A stream that first yields bytes already read from it.
pub struct Rewind<S> {
    head: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, preceded by `head`.
    pub fn new(head: Bytes, inner: S) -> Self {
        Rewind { head, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            let head = self.head.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Plain TCP (which can be spliced in the kernel) or any other stream.
pub enum Transport {
    /// A plain TCP socket.
    Tcp(TcpStream),
    /// TLS, a WebSocket, or anything else.
    Other(BoxIo),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            Transport::Other(o) => Pin::new(o).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            Transport::Other(o) => Pin::new(o).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(t) => Pin::new(t).poll_flush(cx),
            Transport::Other(o) => Pin::new(o).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            Transport::Other(o) => Pin::new(o).poll_shutdown(cx),
        }
    }
}

/// A stream with a read buffer, for the relay's handshake messages.
pub struct Conn {
    io: Transport,
    buf: BytesMut,
    /// Whether each write becomes its own message (WebSocket), so that the
    /// length prefix and the envelope must be written apart.
    per_write: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Conn {
    /// Wrap a stream whose first bytes are `head`.
    pub fn new(io: BoxIo, head: BytesMut) -> Self {
        Conn {
            io: Transport::Other(io),
            buf: head,
            per_write: false,
        }
    }

    /// Wrap a plain TCP socket whose first bytes are `head`.
    pub fn tcp(tcp: TcpStream, head: BytesMut) -> Self {
        Conn {
            io: Transport::Tcp(tcp),
            buf: head,
            per_write: false,
        }
    }

    /// Wrap a stream whose every write is one message (a WebSocket).
    pub fn message_per_write(io: BoxIo) -> Self {
        Conn {
            io: Transport::Other(io),
            buf: BytesMut::new(),
            per_write: true,
        }
    }

    /// The plain TCP socket, if that is what this is and nothing was read
    /// ahead; else the connection back.
    pub fn into_tcp(self) -> Result<TcpStream, Conn> {
        match self.io {
            Transport::Tcp(t) if self.buf.is_empty() => Ok(t),
            io => Err(Conn { io, ..self }),
        }
    }

    /// Read more into the buffer; an error at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(4096);
        if self.io.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            ));
        }
        Ok(())
    }

    /// Read one length-prefixed message of at most `max` bytes.
    pub async fn read_message(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            match wcf::relay::read_prefixed(&self.buf, max).map_err(|e| invalid(e.to_string()))? {
                Some((msg, used)) => {
                    let msg = msg.to_vec();
                    self.buf.advance(used);
                    return Ok(msg);
                }
                None => self.fill().await?,
            }
        }
    }

    /// Write one length-prefixed message: in one write on a byte stream,
    /// as two messages over WebSocket (§11.5).
    pub async fn write_message(&mut self, msg: &[u8]) -> io::Result<()> {
        let len = u32::try_from(msg.len()).map_err(|_| invalid("message too large".into()))?;
        if self.per_write {
            self.io.write_all(&len.to_le_bytes()).await?;
            self.io.write_all(msg).await?;
        } else {
            let mut framed = Vec::with_capacity(4 + msg.len());
            wcf::relay::write_prefixed(msg, &mut framed);
            self.io.write_all(&framed).await?;
        }
        self.io.flush().await
    }

    /// Close the sending direction.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// The stream, with any bytes read ahead given back first.
    pub fn into_io(self) -> BoxIo {
        if self.buf.is_empty() {
            Box::new(self.io)
        } else {
            Box::new(Rewind::new(self.buf.freeze(), self.io))
        }
    }
}

/// Largest chunk a stream leg reads at once.
const READ_CHUNK: usize = 64 * 1024;

struct Reader {
    rd: ReadHalf<BoxIo>,
    buf: BytesMut,
}

impl LegReader for Reader {
    fn read(&mut self) -> BoxFuture<'_, io::Result<LegEvent>> {
        Box::pin(async move {
            if self.buf.capacity() < READ_CHUNK / 4 {
                self.buf = BytesMut::with_capacity(READ_CHUNK);
            }
            let n = match self.rd.read_buf(&mut self.buf).await {
                // A TLS peer that closes TCP without close_notify, as Mono's
                // and .NET's SslStream may, has ended its stream: the NMF
                // session inside frames its own end, so nothing is cut.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                r => r?,
            };
            match n {
                0 => Ok(LegEvent::Closed(None)),
                _ => Ok(LegEvent::Chunk(Chunk {
                    data: self.buf.split().freeze(),
                    end: true,
                    text: false,
                })),
            }
        })
    }
}

struct Writer {
    wr: WriteHalf<BoxIo>,
}

impl LegWriter for Writer {
    fn write(&mut self, chunk: Chunk) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.wr.write_all(&chunk.data).await?;
            self.wr.flush().await
        })
    }
    fn close(&mut self, _info: Option<CloseInfo>) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move { self.wr.shutdown().await })
    }
}

/// Splice two connections: in the kernel when both are plain TCP with
/// nothing read ahead (Linux), else through core legs.
pub async fn splice(
    a: Conn,
    b: Conn,
    limits: SpliceLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> SpliceStats {
    #[cfg(target_os = "linux")]
    let (a, b) = match (a.into_tcp(), b.into_tcp()) {
        (Ok(a), Ok(b)) => return crate::relay::zerocopy::splice_tcp(a, b, limits, shutdown).await,
        (a, b) => (
            a.map_or_else(|c| c, |t| Conn::tcp(t, BytesMut::new())),
            b.map_or_else(|c| c, |t| Conn::tcp(t, BytesMut::new())),
        ),
    };
    crate::relay::splice(leg(a.into_io()), leg(b.into_io()), limits, shutdown).await
}

/// A byte stream as a core leg: chunks as they arrive, end of stream as a
/// half-close passed on with `shutdown`.
pub fn leg(io: BoxIo) -> Leg {
    let (rd, wr) = tokio::io::split(io);
    Leg {
        reader: Box::new(Reader {
            rd,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }),
        writer: Box::new(Writer { wr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_and_read_ahead_survive_into_the_stream() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut conn = Conn::new(Box::new(a), BytesMut::from(&b"\x02\x00\x00\x00hi"[..]));
        assert_eq!(conn.read_message(16).await.unwrap(), b"hi");
        b.write_all(b"\x03\x00\x00\x00abcTAIL").await.unwrap();
        assert_eq!(conn.read_message(16).await.unwrap(), b"abc");
        let mut io = conn.into_io();
        let mut tail = [0u8; 4];
        io.read_exact(&mut tail).await.unwrap();
        assert_eq!(&tail, b"TAIL");
        b.write_all(b"\xff\xff\x00\x00").await.unwrap();
        let mut conn = Conn::new(io, BytesMut::new());
        assert!(conn.read_message(16).await.is_err(), "oversize is refused");
    }
}
