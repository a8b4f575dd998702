//! Hybrid Connections steps shared by the black-box tests: open a listener
//! control channel, start a sender, and connect a sender and a listener
//! rendezvous through the gateway.

use std::net::SocketAddr;

use fastwebsockets::WebSocket;
use tokio::net::TcpStream;

use super::gateway::{token, Gateway, ROOT};
use super::wsclient::{self, next_json, split_url, ws};

/// A client WebSocket.
pub type Ws = WebSocket<TcpStream>;

/// A listener control channel on `path` (all-rights token; must get 101).
pub async fn listener(gw: &Gateway, path: &str) -> Ws {
    let t = token(path, ROOT, 3600);
    let (head, ws) = ws(
        gw.http,
        &format!("/$hc/{path}?sb-hc-action=listen"),
        &[("ServiceBusAuthorization", &t)],
    )
    .await;
    assert_eq!(head.status, 101, "{head:?}");
    ws.unwrap()
}

/// The `ServiceBusAuthorization` header of an all-rights token for `path`.
pub fn auth(path: &str) -> Vec<(String, String)> {
    vec![("ServiceBusAuthorization".into(), token(path, ROOT, 3600))]
}

/// Start a sender connect in the background (it completes once the listener accepts).
pub fn sender(
    addr: SocketAddr,
    target: String,
    headers: Vec<(String, String)>,
) -> tokio::task::JoinHandle<(wsclient::Head, Option<Ws>)> {
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        ws(addr, &target, &h).await
    })
}

/// A connected sender and listener rendezvous on `path`, the listener's
/// control channel being `ctl`.
pub async fn pair(gw: &Gateway, ctl: &mut Ws, path: &str) -> (Ws, Ws) {
    let s = sender(
        gw.http,
        format!("/$hc/{path}?sb-hc-action=connect"),
        auth(path),
    );
    let accept = next_json(ctl).await;
    let (addr, target) = split_url(accept["accept"]["address"].as_str().unwrap());
    let (head, lws) = ws(addr, &target, &[]).await;
    assert_eq!(head.status, 101);
    let (shead, sws) = s.await.unwrap();
    assert_eq!(shead.status, 101, "{shead:?}");
    (sws.unwrap(), lws.unwrap())
}
