//! A protocol-neutral leg: a connection that yields and accepts chunks, each
//! bytes plus an end-of-message flag (and whether the message is text), so
//! that WebSocket message boundaries survive a splice and byte streams need
//! none; and a half-close carrying an optional code and reason.

use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::Bytes;

/// A boxed future, as legs return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One piece of a message (or of a byte stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes.
    pub data: Bytes,
    /// Whether this piece ends a message (always true for byte streams).
    pub end: bool,
    /// Whether the message is text (WebSocket text frames).
    pub text: bool,
}

/// Why and how a side closed its sending direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// A close code (WebSocket close codes; byte streams ignore it).
    pub code: u16,
    /// A reason.
    pub reason: String,
}

/// What reading a leg yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// Data.
    Chunk(Chunk),
    /// The peer closed its sending direction (half-close).
    Closed(Option<CloseInfo>),
}

/// The receiving half of a leg.
pub trait LegReader: Send {
    /// The next event; an error means the connection broke (abort).
    fn read(&mut self) -> BoxFuture<'_, io::Result<LegEvent>>;

    /// The next event if it is already at hand (read earlier along with
    /// others), without waiting or reading; `None` otherwise.
    fn read_buffered(&mut self) -> Option<io::Result<LegEvent>> {
        None
    }
}

/// The sending half of a leg.
pub trait LegWriter: Send {
    /// Send a chunk.
    fn write(&mut self, chunk: Chunk) -> BoxFuture<'_, io::Result<()>>;

    /// Send chunks in order, in as few writes as the leg can.
    fn write_batch(&mut self, chunks: Vec<Chunk>) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            for chunk in chunks {
                self.write(chunk).await?;
            }
            Ok(())
        })
    }
    /// Close the sending direction, passing the close on.
    fn close(&mut self, info: Option<CloseInfo>) -> BoxFuture<'_, io::Result<()>>;
}

/// Both halves of a connection.
pub struct Leg {
    /// Receiving half.
    pub reader: Box<dyn LegReader>,
    /// Sending half.
    pub writer: Box<dyn LegWriter>,
}
