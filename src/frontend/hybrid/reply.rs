//! Responses the gateway itself produces, worded as the service words them
//! (`hybrid/PROTOCOL.md` §2.1, §3.3, §4.5): status with a reason
//! phrase (which .NET surfaces as the exception message), and the JSON error
//! body of relayed HTTP requests. Service-generated errors carry no `Via`.

use std::time::SystemTime;

use hyper::ext::ReasonPhrase;
use hyper::Response;

pub use crate::transport::http::{channel_body, empty, full, Body, BodyPart, BodyRx, BodyTx};

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
