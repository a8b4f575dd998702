//! A listener's control channel (§2, §4) as sans-IO state machines for
//! both ends: [`server`] is the relay's, [`client`] a listener's. Both take
//! the WebSocket frames their transport read ([`Opcode`]), queue whole
//! frames to write ([`Outgoing`]) and assemble text messages within a bound
//! (`Text`); WebSocket framing, masking and pongs stay with the transport.

use bytes::{Bytes, BytesMut};

pub mod client;
pub mod server;

/// A WebSocket frame's kind, as the transport read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// A text frame: the start of a control message.
    Text,
    /// A binary frame: the start of a response body.
    Binary,
    /// The next piece of the message in progress.
    Continuation,
    /// The listener closes.
    Close,
    /// A ping (the transport answers it).
    Ping,
    /// A pong.
    Pong,
}

/// A frame to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A whole text message.
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping.
    Ping,
    /// A close with its code and reason; nothing follows it.
    Close(u16, String),
}

/// A text message assembled from its frames, within a bound.
#[derive(Debug, Default)]
pub(crate) struct Text {
    buf: BytesMut,
}

/// A text message grew past its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

impl Text {
    /// Add a frame's piece; the whole message once `fin`.
    pub(crate) fn piece(
        &mut self,
        data: &[u8],
        fin: bool,
        max: usize,
    ) -> Result<Option<String>, TooLarge> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > max {
            return Err(TooLarge);
        }
        if !fin {
            return Ok(None);
        }
        let message = std::mem::take(&mut self.buf);
        Ok(Some(String::from_utf8_lossy(&message).into_owned()))
    }
}
