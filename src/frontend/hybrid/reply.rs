//! Responses the gateway itself produces, worded as the service words them
//! (`hybrid/PROTOCOL.md` §2.1, §3.3, §4.5): status with a reason
//! phrase (which .NET surfaces as the exception message), and the JSON error
//! body of relayed HTTP requests. Service-generated errors carry no `Via`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::ext::ReasonPhrase;
use hyper::Response;
use tokio::sync::mpsc;

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

/// A fresh tracking id in the service's `<guid>_G0` shape.
pub fn tracking_id() -> String {
    format!("{}_G0", crate::relay::Guid::random())
}

/// `TrackingId:…, SystemTracker:sb://{host}/{path}, Timestamp:…`.
pub fn tracker(host: &str, path: &str) -> String {
    format!(
        "TrackingId:{}, SystemTracker:sb://{host}/{}, Timestamp:{}",
        tracking_id(),
        path.trim_matches('/'),
        humantime::format_rfc3339_seconds(SystemTime::now())
    )
}

/// A reason phrase made safe for a status line.
fn reason(text: &str) -> Option<ReasonPhrase> {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' || c == '\t' {
                c
            } else {
                '?'
            }
        })
        .take(512)
        .collect();
    ReasonPhrase::try_from(clean.into_bytes()).ok()
}

/// A response with `code`, `text` as the reason phrase and as a plain body.
pub fn status(code: u16, text: &str) -> Response<Body> {
    let mut r = Response::new(full(text.to_owned()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(p) = reason(text) {
        r.extensions_mut().insert(p);
    }
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A relayed-HTTP error: JSON `{"error":{"code","message"}}`.
pub fn json_error(code: u16, error_code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": error_code, "message": message}}).to_string();
    let mut r = status(code, message);
    *r.body_mut() = full(body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Set a custom reason phrase on a response.
pub fn set_reason(r: &mut Response<Body>, text: &str) {
    if let Some(p) = reason(text) {
        r.extensions_mut().insert(p);
    }
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
