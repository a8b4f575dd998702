//! The admin endpoint (`[listen] admin`, kept off the public ports):
//! `/` a status page (server-rendered HTML, no scripts: every entity with its
//! type, listeners and their identities, active connections, bytes each way,
//! and the recent errors; refreshed by reloading); `/metrics` in the
//! Prometheus text format; `/healthz` answers while the process is alive;
//! `/readyz` answers 200 while every endpoint is bound and the gateway is not
//! draining, and 503 once it is; POST `/reload` re-reads the configuration
//! file ([`crate::reload`]). It keeps serving during the drain so that
//! load balancers see the 503.

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::Secret;
use crate::server::Acceptor;

use crate::frontend::hybrid::reply::{self, Body};
use crate::relay::Relay;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// What the admin endpoint reads.
#[derive(Clone)]
pub struct Admin {
    /// Draining or not.
    pub shutdown: Shutdown,
    /// Metrics and the status store.
    pub metrics: Arc<Metrics>,
    /// The relay core (listeners here and, in a cluster, everywhere).
    pub relay: Relay,
    /// The namespace host.
    pub namespace: String,
    /// Configured entities: path and type.
    pub configured: Arc<Vec<(String, String)>>,
    /// Re-reads the configuration (POST `/reload`).
    pub reloader: crate::reload::Reloader,
    /// `[admin] token`, required on state-changing calls when set.
    pub token: Option<Secret>,
    /// The bound endpoints, by `[listen]` name.
    pub endpoints: Vec<(String, std::net::SocketAddr)>,
    /// When the gateway started serving.
    pub started: std::time::Instant,
}

/// Answer one admin request.
fn handle<B>(req: &Request<B>, admin: &Admin) -> Response<Body> {
    let (shutdown, metrics) = (&admin.shutdown, &admin.metrics);
    match req.uri().path() {
        "/" => {
            let mut r = reply::status(200, "OK");
            *r.body_mut() = reply::full(page(admin));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/metrics" => {
            if let Some(view) = admin.relay.view() {
                metrics.cluster(&view);
            }
            let mut r = reply::status(200, "OK");
            *r.body_mut() = reply::full(metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/reload" if req.method() == hyper::Method::POST => {
            match refusal(req, admin.token.as_ref()) {
                Some(r) => r,
                None => match admin.reloader.reload() {
                    Ok(what) => {
                        tracing::info!(result = %what, "configuration reloaded (admin)");
                        reply::status(200, &what)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "configuration not reloaded; the running one stays");
                        reply::status(400, &e.to_string())
                    }
                },
            }
        }
        "/reload" => reply::status(405, "use POST"),
        "/healthz" => reply::status(200, "ok"),
        "/readyz" if shutdown.is_stopping() => reply::status(503, "draining"),
        // A node that lost the cluster still serves pairs whose listener and
        // client are both here, so it stays in the load balancer's set.
        "/readyz" => match admin.relay.view().and_then(|v| v.problem) {
            Some(why) => reply::status(
                200,
                &format!("ready, alone: {why}; serving this node's listeners only"),
            ),
            None => reply::status(200, "ready"),
        },
        _ => reply::status(404, "not found"),
    }
}

/// Serve the admin endpoint until the process exits. A connection must
/// send each request's head within the handshake time-out in force when it
/// came (an idle keep-alive connection is closed after it too).
pub async fn serve(listener: TcpListener, admin: Admin, max_connections: usize) {
    let mut acceptor = Acceptor::new(&listener, "admin", admin.metrics.clone(), max_connections);
    loop {
        let (tcp, _, slot) = acceptor.next().await;
        let admin = admin.clone();
        let header_timeout = admin
            .reloader
            .live
            .current()
            .hybrid
            .limits
            .handshake_timeout;
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let r = handle(&req, &admin);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            drop(slot);
        });
    }
}

/// Why a state-changing admin call is refused, if it is: any request a web
/// page could have made (an `Origin` header, or `Sec-Fetch-Site` naming
/// another site), and, with `[admin] token`, any without
/// `Authorization: Bearer <token>`.
fn refusal<B>(req: &Request<B>, token: Option<&Secret>) -> Option<Response<Body>> {
    let headers = req.headers();
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if headers.contains_key(hyper::header::ORIGIN) || !matches!(fetch_site, "none" | "same-origin")
    {
        return Some(reply::status(
            403,
            "cross-site requests to the admin endpoint are refused",
        ));
    }
    let token = token?;
    let given = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same_secret(given.trim(), token.expose()) {
        return None;
    }
    let mut r = reply::status(401, "the admin token is missing or wrong");
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

/// Compare two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Escape text for HTML.
fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The type shown for a listener kind.
fn kind_name(kind: &str) -> String {
    match kind.strip_prefix("wcf:").and_then(|k| k.split(':').next()) {
        Some(family) => format!("WCF {family}"),
        None if kind == "hybrid" => "Hybrid Connection".to_owned(),
        None => kind.to_owned(),
    }
}

/// The status page.
fn page(admin: &Admin) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let status = &admin.metrics.status;
    let stats = status.entities();
    // Every configured entity, every path with listeners, every entity with figures.
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for (path, kind) in admin.configured.iter() {
        rows.insert(path.trim_matches('/').to_ascii_lowercase(), kind.clone());
    }
    let registry = &admin.relay.registry;
    let view = admin.relay.view();
    for path in registry.paths() {
        let kind = registry
            .listeners(&path)
            .first()
            .map(|l| kind_name(&l.kind))
            .unwrap_or_default();
        rows.entry(path).or_insert(kind);
    }
    for path in stats.keys().filter(|p| *p != "unknown") {
        rows.entry(path.clone()).or_default();
    }
    for path in view.iter().flat_map(|v| v.listeners.keys()) {
        rows.entry(path.clone()).or_default();
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>relay-gateway: {ns}</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}\
th,td{{border:1px solid #999;padding:.3em .6em;text-align:left}}th{{background:#eee}}td.n{{text-align:right}}</style>\
</head><body><h1>relay-gateway {version}</h1><p>Namespace <b>{ns}</b>{draining}, up {uptime}. \
Endpoints: {endpoints}. Reload the page to refresh; bytes count connections and requests that have ended.</p>\
<h2>Entities</h2><table><tr><th>Entity</th><th>Type</th><th>Listeners</th><th>Listener identities</th>\
<th>Active connections</th><th>Bytes to listeners</th><th>Bytes to senders</th></tr>",
        ns = esc(&admin.namespace),
        draining = if admin.shutdown.is_stopping() { " (draining)" } else { "" },
        version = env!("CARGO_PKG_VERSION"),
        uptime = humantime::format_duration(std::time::Duration::from_secs(
            admin.started.elapsed().as_secs()
        )),
        endpoints = admin
            .endpoints
            .iter()
            .map(|(n, a)| format!("{} {a}", esc(n)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if rows.is_empty() {
        html.push_str("<tr><td colspan=\"7\">No entities yet.</td></tr>");
    }
    for (path, kind) in &rows {
        let listeners = registry.listeners(path);
        let ids: Vec<String> = listeners.iter().map(|l| esc(&l.identity)).collect();
        let s = stats.get(path).copied().unwrap_or_default();
        let count = match &view {
            Some(_) => {
                let n = admin.relay.listener_count(path);
                format!("{} here, {} in the cluster", n.here, n.cluster)
            }
            None => listeners.len().to_string(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(path),
            esc(kind),
            count,
            ids.join("<br>"),
            s.active,
            s.to_listener,
            s.to_sender
        );
    }
    html.push_str("</table>");
    if let Some(v) = &view {
        let _ = write!(
            html,
            "<h2>Cluster</h2><p>This node: <b>{}</b>. NATS: {}. Members seen: {}.</p>",
            esc(&v.node),
            match &v.problem {
                None => "connected".to_owned(),
                Some(why) => format!(
                    "<b>not joined</b> ({}); serving this node's listeners only",
                    esc(why)
                ),
            },
            v.members
                .iter()
                .map(|m| esc(m))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    html.push_str("<h2>Recent errors</h2>");
    let errors = status.errors();
    if errors.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str(
            "<table><tr><th>Time (UTC)</th><th>Entity</th><th>Front end</th><th>What</th></tr>",
        );
        for e in errors {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                humantime::format_rfc3339_seconds(e.at),
                esc(&e.entity),
                esc(&e.frontend),
                esc(&e.what)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}

/// Why `relay-gateway reload` did not reload.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRequestError {
    /// The admin endpoint does not answer.
    #[error("{addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The gateway refused: its answer.
    #[error("{0}")]
    Refused(String),
}

/// `relay-gateway reload`: POST `/reload` to the admin endpoint at `addr`
/// (with the admin `token` when given); the gateway's answer, or why it
/// failed.
pub fn request_reload(addr: &str, token: Option<&str>) -> Result<String, ReloadRequestError> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).map_err(|source| ReloadRequestError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("POST /reload HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let ok = response.starts_with("HTTP/1.1 200");
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    if ok {
        Ok(body)
    } else {
        Err(ReloadRequestError::Refused(if body.is_empty() {
            response
        } else {
            body
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_clients_chose() {
        let metrics = Arc::new(Metrics::new("ns"));
        let relay = crate::relay::Relay::new(crate::config::Limits::default().core());
        let registry = relay.registry.clone();
        let _l = registry
            .register(
                "hc1",
                crate::relay::ListenerInfo {
                    identity: "<script>x</script>".into(),
                    kind: "hybrid".into(),
                },
            )
            .unwrap();
        metrics.token_rejected("hc1", "hybrid", "expired");
        let (_t, shutdown) = crate::shutdown::channel();
        let admin = Admin {
            shutdown,
            metrics,
            relay: relay.clone(),
            namespace: "ns".into(),
            configured: Arc::new(vec![("orders".into(), "WCF NetTcp".into())]),
            reloader: crate::reload::Reloader {
                path: None,
                live: crate::reload::Live::new(crate::reload::Snapshot::of(
                    &crate::config::Config::embedded("k".into()),
                )),
                relay: relay.clone(),
                started: Arc::new(crate::config::Config::embedded("k".into())),
            },
            token: None,
            endpoints: vec![("http".into(), "127.0.0.1:9080".parse().unwrap())],
            started: std::time::Instant::now(),
        };
        let html = page(&admin);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("token rejected: expired"));
        assert!(html.contains("<td>orders</td><td>WCF NetTcp</td>"));
        assert!(html.contains("<td>hc1</td><td>Hybrid Connection</td><td class=\"n\">1</td>"));
        assert!(html.contains(concat!("relay-gateway ", env!("CARGO_PKG_VERSION"))));
        assert!(html.contains("Endpoints: http 127.0.0.1:9080"), "{html}");
    }

    #[test]
    fn cross_site_and_unauthorized_reloads_are_refused() {
        let req = |headers: &[(&str, &str)]| {
            let mut b = Request::post("/reload");
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        let status = |r: Option<Response<Body>>| r.map(|r| r.status().as_u16());
        // The probe's request: a page on another site.
        let evil = req(&[("Origin", "http://evil.example"), ("Host", "evil.example")]);
        assert_eq!(status(refusal(&evil, None)), Some(403));
        let cross = req(&[("Sec-Fetch-Site", "cross-site")]);
        assert_eq!(status(refusal(&cross, None)), Some(403));
        assert_eq!(
            status(refusal(&req(&[("Sec-Fetch-Site", "same-site")]), None)),
            Some(403)
        );
        // curl from the host: allowed without a token, and with the right one.
        assert_eq!(status(refusal(&req(&[]), None)), None);
        let token = Secret::from("s3cret");
        assert_eq!(status(refusal(&req(&[]), Some(&token))), Some(401));
        let wrong = req(&[("Authorization", "Bearer nope")]);
        assert_eq!(status(refusal(&wrong, Some(&token))), Some(401));
        let right = req(&[("Authorization", "Bearer s3cret")]);
        assert_eq!(status(refusal(&right, Some(&token))), None);
        let origin_with_token = req(&[
            ("Authorization", "Bearer s3cret"),
            ("Origin", "http://evil.example"),
        ]);
        assert_eq!(status(refusal(&origin_with_token, Some(&token))), Some(403));
    }
}
