//! What nodes say to each other on NATS (`crate::cluster`): JSON documents,
//! each bounded before it is parsed. A message that is too large or does
//! not parse is dropped by the receiver and counted under its [`Drop`]
//! reason; it never reaches a listener.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::relay::{Filter, ListenerInfo, Origin, Request};

/// The largest message a node accepts: a one-way message (64 KiB) in
/// base64 and its envelope fit with room to spare.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// A request routed to one listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    /// What the listener is asked.
    pub request: Request,
    /// How long the owner may wait for room in the listener's queue (ms).
    pub wait_ms: u64,
}

/// A message for every listener of a path (Multicast).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Which listeners take it.
    pub filter: Filter,
    /// The message.
    pub request: Request,
}

/// A listener's answer for a client held by the receiving node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The request it answers.
    pub id: crate::relay::Guid,
    /// The answer.
    pub answer: crate::relay::Forwarded,
}

/// A listener's slot in the directory (the value of `l.{path}.{n}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The path (normalized).
    pub path: String,
    /// The node the listener is connected to.
    pub node: String,
    /// The subject the node serves the listener's requests on.
    pub subject: String,
    /// The listener's identity and kind, for filters.
    pub info: ListenerInfo,
}

/// A member's announcement (the value of `n.{node}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// How parties reach the node.
    pub origin: Origin,
}

/// The owner's answer to a [`Routed`] request.
pub mod reply {
    /// Queued for the listener.
    pub const OK: &[u8] = b"ok";
    /// The listener's queue is full.
    pub const BUSY: &[u8] = b"busy";
    /// The listener is gone.
    pub const GONE: &[u8] = b"gone";
    /// The request was not understood.
    pub const BAD: &[u8] = b"bad";
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drop {
    /// Larger than [`MAX_MESSAGE`].
    Oversized,
    /// Not the document expected.
    Malformed,
    /// A Multicast message found the listener's queue full.
    ListenerQueue,
}

impl Drop {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Oversized => "oversized",
            Drop::Malformed => "malformed",
            Drop::ListenerQueue => "listener_queue",
        }
    }

    /// Every reason, in label order.
    pub const ALL: [Drop; 3] = [Drop::Oversized, Drop::Malformed, Drop::ListenerQueue];
}

/// The document, as sent.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    // Derived `Serialize` of strings, maps and numbers does not fail.
    serde_json::to_vec(value).unwrap_or_default().into()
}

/// The document in `bytes`, if it is within bounds and well formed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Drop> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Drop::Oversized);
    }
    serde_json::from_slice(bytes).map_err(|_| Drop::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{Ask, Caller, Guid};

    #[test]
    fn documents_round_trip_and_bad_ones_are_named() {
        let routed = Routed {
            request: Request {
                id: Guid::random(),
                origin: Some(Box::new(Origin {
                    node: "a".into(),
                    http: Some("127.0.0.1:9080".parse().unwrap()),
                    ..Origin::default()
                })),
                ask: Ask::Connect(Box::new(Caller {
                    tracking: "t".into(),
                    headers: [("X-Name".to_owned(), "v".to_owned())].into(),
                    ..Caller::default()
                })),
            },
            wait_ms: 0,
        };
        assert_eq!(decode::<Routed>(&encode(&routed)), Ok(routed));
        let message = Event {
            filter: Filter::default(),
            request: Request {
                id: Guid::random(),
                origin: None,
                ask: Ask::Message(bytes::Bytes::from_static(&[0, 1, 255])),
            },
        };
        let text = encode(&message);
        assert!(std::str::from_utf8(&text).unwrap().contains("\"AAH/\""));
        assert_eq!(decode::<Event>(&text), Ok(message));
        assert_eq!(decode::<Routed>(b"{\"request\":1}"), Err(Drop::Malformed));
        assert_eq!(decode::<Routed>(b"\xff"), Err(Drop::Malformed));
        let huge = vec![b' '; MAX_MESSAGE + 1];
        assert_eq!(decode::<Routed>(&huge), Err(Drop::Oversized));
    }
}
