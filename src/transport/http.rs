//! HTTP pieces below both the relayed-HTTP front ends and `forward`'s
//! HTTP listener: the body type of every response, bodies fed piece by
//! piece through a channel (whole only once their `End` has come, so a cut
//! is an aborted message, never a short complete one), and the hop-by-hop
//! headers a relay never passes on (RFC 9110 §7.6.1, plus the relay's own
//! credentials).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// Request headers never forwarded to a listener.
pub const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "content-length",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "close",
    "keep-alive",
    "proxy-connection",
    "servicebusauthorization",
    "expect",
];

/// Response headers never passed back to the client.
pub const RESPONSE_HOP_BY_HOP: [&str; 7] = [
    "connection",
    "content-length",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
];

/// The response body type of every endpoint.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A piece of a relayed body passed through a channel. A body is whole
/// only once its `End` has come: a channel closed before it (the listener's
/// control channel or rendezvous dropped, a frame refused, a task ended)
/// fails the body, so the HTTP peer sees an aborted message, never a short
/// one that looks complete.
#[derive(Debug)]
pub enum BodyPart {
    /// The next bytes.
    Data(Bytes),
    /// The body is complete.
    End,
}

/// The receiving end of a relayed body.
pub type BodyRx = mpsc::Receiver<std::io::Result<BodyPart>>;
/// The sending end of a relayed body.
pub type BodyTx = mpsc::Sender<std::io::Result<BodyPart>>;

/// The error of a body whose channel closed before its end.
pub fn cut() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the body ended before it was complete",
    )
}

/// The bytes a body carried, reported once when it is done with (whole,
/// failed or dropped by the client).
struct Tally<F: FnOnce(u64)> {
    bytes: u64,
    report: Option<F>,
}

impl<F: FnOnce(u64)> Drop for Tally<F> {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            report(self.bytes);
        }
    }
}

/// A body fed by a channel, failing when no data comes for `idle` or the
/// channel closes before the body's `End`; `done` is told how many bytes
/// it carried.
pub fn channel_body(
    rx: BodyRx,
    idle: Duration,
    done: impl FnOnce(u64) + Send + Sync + 'static,
) -> Body {
    let tally = Tally {
        bytes: 0,
        report: Some(done),
    };
    let stream = futures_util::stream::unfold(Some((rx, tally)), move |state| async move {
        let (mut rx, mut tally) = state?;
        let item = match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(Ok(BodyPart::Data(b)))) => {
                tally.bytes += b.len() as u64;
                Ok(Frame::data(b))
            }
            Ok(Some(Ok(BodyPart::End))) => return None,
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(cut()),
            Err(_) => Err(std::io::Error::other("response body idle timeout")),
        };
        let next = item.is_ok().then_some((rx, tally));
        Some((item, next))
    });
    BodyExt::boxed(StreamBody::new(stream))
}
