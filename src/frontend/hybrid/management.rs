//! The management GET the .NET SDK sends (`hybrid/PROTOCOL.md` §7):
//! `GET /{entity}?api-version=…` with `X-PROCESS-AT: ServiceBus`, answered
//! with an Atom entry holding the HybridConnectionDescription (ListenerCount
//! of live listeners, RequiresClientAuthorization). Any valid token with
//! Listen, Send or Manage for the entity is accepted.

use hyper::{Method, Request, Response};

use super::entity::{Settings, TokenSource};
use super::reply::{self, Body};
use super::Hybrid;
use crate::config::Right;

/// Whether a request is a management GET.
pub fn is_management<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get("X-PROCESS-AT")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("ServiceBus"))
}

fn error(code: u16, what: &str, detail: &str) -> Response<Body> {
    let mut r = reply::status(code, detail);
    *r.body_mut() = reply::full(format!(
        "<Error><Code>{code}</Code><Detail>{what}: {detail}</Detail></Error>"
    ));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    r
}

/// Answer a management GET.
pub fn get<B>(h: &Hybrid, req: &Request<B>, path: &str) -> Response<Body> {
    let s = &h.settings;
    let Some(entity) = s
        .resolve(path, &h.relay, false)
        .filter(|e| e.suffix.is_empty())
    else {
        return error(
            404,
            "EndpointNotFound",
            &format!("Endpoint does not exist. {}", reply::tracker(&s.host, path)),
        );
    };
    let query = req.uri().query().unwrap_or("");
    let (token, _) = Settings::find_token(TokenSource::Http, req.headers(), query, true);
    let allowed = [Right::Listen, Right::Send, Right::Manage]
        .into_iter()
        .map(|r| s.authorize(token.as_deref(), &entity, r, 0))
        .find(Result::is_ok)
        .unwrap_or_else(|| s.authorize(token.as_deref(), &entity, Right::Listen, 0));
    if let Err(e) = allowed {
        return error(
            401,
            "Unauthorized",
            &format!("{e}. {}", reply::tracker(&s.host, &entity.path)),
        );
    }
    let count = h.relay.listener_count(&entity.path).cluster;
    let now = httpdate_rfc3339();
    let body = format!(
        concat!(
            r#"<entry xmlns="http://www.w3.org/2005/Atom"><id>https://{host}/{path}</id><title type="text">{path}</title>"#,
            r#"<updated>{now}</updated><content type="application/xml">"#,
            r#"<HybridConnectionDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<CreatedAt>{now}</CreatedAt><UpdatedAt>{now}</UpdatedAt><RequiresClientAuthorization>{auth}</RequiresClientAuthorization>"#,
            r#"<UserMetadata></UserMetadata><ListenerCount>{count}</ListenerCount></HybridConnectionDescription></content></entry>"#
        ),
        host = s.host,
        path = entity.path,
        now = now,
        auth = entity.requires_auth,
        count = count,
    );
    let mut r = reply::status(200, "OK");
    *r.body_mut() = reply::full(body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/atom+xml;type=entry;charset=utf-8"),
    );
    r
}

/// Now as an xs:dateTime (UTC, seconds).
fn httpdate_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
