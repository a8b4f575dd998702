//! The admin endpoint (`[listen] admin`, kept off the public ports):
//! `/metrics` in the Prometheus text format; `/healthz` answers while the
//! process is alive; `/readyz` answers 200 while every endpoint is bound and
//! the gateway is not draining, and 503 once it is. It keeps serving during
//! the drain so that load balancers see the 503.

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::frontend::hybrid::reply::{self, Body};
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// Answer one admin request.
fn handle<B>(req: &Request<B>, shutdown: &Shutdown, metrics: &Metrics) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let mut r = reply::status(200, "OK");
            *r.body_mut() = reply::full(metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => reply::status(200, "ok"),
        "/readyz" if shutdown.is_stopping() => reply::status(503, "draining"),
        "/readyz" => reply::status(200, "ready"),
        _ => reply::status(404, "not found"),
    }
}

/// Serve the admin endpoint until the process exits.
pub async fn serve(listener: TcpListener, shutdown: Shutdown, metrics: Arc<Metrics>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (shutdown, metrics) = (shutdown.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let r = handle(&req, &shutdown, &metrics);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
