//! One path, both protocols (issue 19 item 1): NetTcpRelayBinding clients on
//! a hybrid connection with `accept_wcf_clients`, answered by Hybrid
//! Connections listeners. Mono's NetTcpBinding client -> `forward --connect`
//! (the WCF relay client) -> gateway -> bridged path -> `forward --hc
//! --listen`, or the unmodified hyco-ws as listener (`ws-to-tcp.js`) ->
//! Mono's net.tcp host (request/reply, duplex callback, 10 MB Streamed);
//! the accept a listener sees, bytes and closes both ways; and the
//! refusals: no listener, a wrong token, a listener whose service refuses.
//! The other way round (`accept_hybrid_senders`): Mono's client through
//! `forward --hc --connect` to a Mono host behind `forward --listen`, and
//! the Hybrid Connections answers for no listener and a bad token. And both
//! kinds of listener on one bridged path, each kind of client balanced over
//! both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::time::{Duration, Instant};

use support::gateway::{Gateway, KEY, ROOT};
use support::hyco::Node;
use support::relayed::forward;
use support::{mono_calls, mono_relay_host, spawn_ready, Proc};

const BRIDGED: &str = r#"
[[hybrid_connection]]
path = "calc"
accept_wcf_clients = true
[[hybrid_connection]]
path = "blob"
accept_wcf_clients = true
[[hybrid_connection]]
path = "chat"
accept_wcf_clients = true
[[hybrid_connection]]
path = "closed"
"#;

/// `forward --hc --listen` for `path` to the local port `to`.
fn hc_listener(gw: &Gateway, path: &str, to: u16) -> Proc {
    let url = format!("ws://127.0.0.1:{}/{path}", gw.http.port());
    let to = format!("127.0.0.1:{to}");
    let mut c = support::gateway();
    c.args(["forward", "--hc", "--key-name", ROOT, "--key", KEY])
        .args(["--listen", &url, "--to", &to]);
    spawn_ready(&mut c, "listening").0
}

/// `forward --connect` (the WCF relay client) for `path`, on `public`.
fn wcf_client(gw: &Gateway, path: &str, public: u16, extra: &[&str]) -> Proc {
    let uri = format!("sb://localhost/{path}");
    let at = format!("127.0.0.1:{public}");
    let mut args = vec!["--connect", uri.as_str(), "--local", at.as_str()];
    args.extend_from_slice(extra);
    spawn_ready(
        &mut forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &args),
        "ready",
    )
    .0
}

#[test]
fn mono_wcf_clients_reach_a_mono_host_behind_a_hybrid_connections_listener() {
    let gw = Gateway::start(BRIDGED);
    let (_host, ports) = mono_relay_host();
    let mut procs = Vec::new();
    for (name, (local, public)) in ["calc", "blob", "chat"].iter().zip(&ports) {
        procs.push(hc_listener(&gw, name, *local));
        procs.push(wcf_client(&gw, name, *public, &[]));
    }
    mono_calls(&ports, "the bridged path");
    drop(procs);
    gw.stop_clean();
}

#[test]
fn mono_wcf_clients_reach_a_mono_host_behind_an_unmodified_hyco_ws_listener() {
    let gw = Gateway::start(BRIDGED);
    let (_host, ports) = mono_relay_host();
    let base = format!("ws://127.0.0.1:{}", gw.http.port());
    let mut listeners = Vec::new();
    let mut clients = Vec::new();
    for (name, (local, public)) in ["calc", "blob", "chat"].iter().zip(&ports) {
        let to = format!("127.0.0.1:{local}");
        let l = Node::spawn("ws-to-tcp.js", &[&base, name, ROOT, KEY, &to], None);
        l.wait_for("listening", Duration::from_secs(10));
        listeners.push(l);
        clients.push(wcf_client(&gw, name, *public, &[]));
    }
    mono_calls(&ports, "the bridged path");
    drop((listeners, clients));
    gw.stop_clean();
}

/// A RelayedConnect for `path` on the relayed port (TLS) with `token`: the
/// stream and the gateway's reply.
fn relayed_connect(
    gw: &Gateway,
    path: &str,
    token: Option<String>,
) -> (Box<dyn support::relayed::Stream>, wcf::soap::Envelope) {
    let tls = support::relayed::tls_config(&gw.ca());
    support::relayed::connect(
        gw.relayed.unwrap(),
        Some((&tls, "localhost")),
        &format!("sb://localhost/{path}/"),
        token,
    )
}

#[test]
fn a_wcf_clients_connect_is_an_accept_with_its_address_and_tracking_id_then_bytes_and_closes_map() {
    use std::io::{Read, Write};
    let gw = Gateway::start(BRIDGED);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ctl = rt.block_on(support::hc::listener(&gw, "calc"));
    let token = Some(support::gateway::token("calc", ROOT, 600));
    let gw_relayed = gw.relayed.unwrap();
    let ca = gw.ca();
    let client = std::thread::spawn(move || {
        let tls = support::relayed::tls_config(&ca);
        support::relayed::connect(
            gw_relayed,
            Some((&tls, "localhost")),
            "sb://localhost/calc/",
            token,
        )
    });
    let mut rendezvous = rt.block_on(async {
        let accept = support::wsclient::next_json(&mut ctl).await;
        let a = &accept["accept"];
        // The tracking id the client sent, and its address.
        assert_eq!(a["id"], "11111111-2222-4333-8444-555555555555", "{accept}");
        assert_eq!(a["remoteEndpoint"]["address"], "127.0.0.1", "{accept}");
        // The headers of a WebSocket upgrade, which SDK listeners check.
        let headers = &a["connectHeaders"];
        assert_eq!(headers["Sec-WebSocket-Version"], "13", "{accept}");
        assert_eq!(headers["Sec-WebSocket-Key"].as_str().unwrap().len(), 24);
        let (addr, target) = support::wsclient::split_url(a["address"].as_str().unwrap());
        let (head, ws) = support::wsclient::ws(addr, &target, &[]).await;
        assert_eq!(head.status, 101);
        ws.unwrap()
    });
    let (mut s, reply) = client.join().unwrap();
    assert_eq!(support::relayed::fault_code(&reply), None, "{reply:?}");
    s.write_all(b"ping").unwrap();
    s.flush().unwrap();
    rt.block_on(async {
        let (op, _, data) = support::wsclient::next(&mut rendezvous, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            (op, &data[..]),
            (fastwebsockets::OpCode::Binary, &b"ping"[..])
        );
        support::wsclient::send(
            &mut rendezvous,
            true,
            fastwebsockets::OpCode::Binary,
            b"pong",
        )
        .await;
    });
    let mut pong = [0u8; 4];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    // The listener closes: the client reads the end of the stream.
    rt.block_on(support::wsclient::close(&mut rendezvous, 1000, "done"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    gw.stop_clean();
}

#[test]
fn wcf_clients_of_a_bridged_path_get_their_own_protocols_faults() {
    let gw = Gateway::start(BRIDGED);
    let token = |path: &str| Some(support::gateway::token(path, ROOT, 600));
    let code = |path: &str, token: Option<String>| {
        let (_s, reply) = relayed_connect(&gw, path, token);
        support::relayed::fault_code(&reply)
    };
    // No listener of either kind.
    assert_eq!(
        code("calc", token("calc")).as_deref(),
        Some("EndpointNotFoundFault")
    );
    // A listener whose service refuses: the rejection fails the client at once.
    let _l = hc_listener(&gw, "blob", support::free_port());
    let started = Instant::now();
    assert_eq!(
        code("blob", token("blob")).as_deref(),
        Some("ConnectionFailedFault")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A wrong token, and none.
    let _l2 = hc_listener(&gw, "chat", support::free_port());
    let wrong = support::gateway::token("other", ROOT, 600);
    assert_eq!(
        code("chat", Some(wrong)).as_deref(),
        Some("AuthorizationFailedFault")
    );
    assert_eq!(
        code("chat", None).as_deref(),
        Some("AuthorizationFailedFault")
    );
    // A hybrid connection without accept_wcf_clients stays closed to them.
    let _l3 = hc_listener(&gw, "closed", support::free_port());
    assert_eq!(
        code("closed", token("closed")).as_deref(),
        Some("EndpointNotFoundFault")
    );
    gw.stop_clean();
}

const WCF_BRIDGED: &str = r#"
[[wcf_relay]]
path = "calc"
type = "NetTcp"
accept_hybrid_senders = true
[[wcf_relay]]
path = "blob"
type = "NetTcp"
accept_hybrid_senders = true
[[wcf_relay]]
path = "chat"
type = "NetTcp"
accept_hybrid_senders = true
[[wcf_relay]]
path = "closed"
type = "NetTcp"
"#;

/// `forward --hc --connect` for `path`, on `public`.
fn hc_client(gw: &Gateway, path: &str, public: u16, extra: &[&str]) -> Proc {
    let url = format!("ws://127.0.0.1:{}/{path}", gw.http.port());
    let at = format!("127.0.0.1:{public}");
    let mut c = support::gateway();
    c.args(["forward", "--hc", "--key-name", ROOT, "--key", KEY])
        .args(["--connect", &url, "--local", &at])
        .args(extra);
    spawn_ready(&mut c, "ready").0
}

#[test]
fn hybrid_senders_reach_a_mono_host_behind_a_wcf_relay_listener() {
    let gw = Gateway::start(WCF_BRIDGED);
    let (_host, ports) = mono_relay_host();
    let mut procs = Vec::new();
    for (name, (local, public)) in ["calc", "blob", "chat"].iter().zip(&ports) {
        let uri = format!("sb://localhost/{name}");
        let to = format!("127.0.0.1:{local}");
        let listen = ["--listen", uri.as_str(), "--to", to.as_str()];
        procs.push(
            spawn_ready(
                &mut forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &listen),
                "attached",
            )
            .0,
        );
        procs.push(hc_client(&gw, name, *public, &[]));
    }
    mono_calls(&ports, "the bridged path");
    drop(procs);
    gw.stop_clean();
}

#[test]
fn hybrid_senders_of_a_bridged_relay_get_their_own_protocols_answers() {
    let gw = Gateway::start(WCF_BRIDGED);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = |path: &str, token: String| {
        rt.block_on(async {
            let (head, _) = support::wsclient::ws(
                gw.http,
                &format!("/$hc/{path}?sb-hc-action=connect"),
                &[("ServiceBusAuthorization", &token)],
            )
            .await;
            head.status
        })
    };
    let token = |path: &str| support::gateway::token(path, ROOT, 600);
    // No listener of either kind: the Hybrid Connections 404.
    assert_eq!(status("calc", token("calc")), 404);
    // With a WCF listener: a wrong token is refused as Hybrid Connections
    // refuses it; a relay without accept_hybrid_senders stays closed.
    let mut listeners = Vec::new();
    for path in ["calc", "closed"] {
        let uri = format!("sb://localhost/{path}");
        let to = format!("127.0.0.1:{}", support::free_port());
        let listen = ["--listen", uri.as_str(), "--to", to.as_str()];
        listeners.push(
            spawn_ready(
                &mut forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &listen),
                "attached",
            )
            .0,
        );
    }
    assert_eq!(status("calc", token("other")), 401);
    assert_eq!(status("closed", token("closed")), 404);
    drop(listeners);
    gw.stop_clean();
}

/// A Hybrid Connections listener and a WCF listener on `path`, each in
/// front of a service that answers with its own tag (`H`, `W`).
fn both_kinds(gw: &Gateway, path: &str) -> (Proc, Proc) {
    let hc = hc_listener(gw, path, tag_service(b'H'));
    let uri = format!("sb://localhost/{path}");
    let to = format!("127.0.0.1:{}", tag_service(b'W'));
    let listen = ["--listen", uri.as_str(), "--to", to.as_str()];
    let (wcf, _, _) = spawn_ready(
        &mut forward(gw.amqps.unwrap(), gw.relayed.unwrap(), &gw.ca(), &listen),
        "attached",
    );
    (hc, wcf)
}

/// Both listeners of [`both_kinds`] served a fair share of the clients
/// (`seen`: tag -> count).
fn both_served(who: &str, seen: &std::collections::HashMap<u8, usize>) {
    let (h, w) = (
        seen.get(&b'H').copied().unwrap_or(0),
        seen.get(&b'W').copied().unwrap_or(0),
    );
    eprintln!("{who}: {h} to the HC listener, {w} to the WCF listener");
    assert!(h >= 5 && w >= 5, "{seen:?}");
}

/// A TCP service that answers whatever it reads with its `tag` byte.
fn tag_service(tag: u8) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&[tag]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn wcf_clients_of_a_bridged_path_are_balanced_over_listeners_of_both_kinds() {
    use std::io::{Read, Write};
    let gw = Gateway::start(BRIDGED);
    let _listeners = both_kinds(&gw, "calc");
    let mut seen = std::collections::HashMap::new();
    for _ in 0..30 {
        let (mut s, reply) = relayed_connect(
            &gw,
            "calc",
            Some(support::gateway::token("calc", ROOT, 600)),
        );
        assert_eq!(support::relayed::fault_code(&reply), None, "{reply:?}");
        s.write_all(b"x").unwrap();
        s.flush().unwrap();
        let mut tag = [0u8; 1];
        s.read_exact(&mut tag).unwrap();
        *seen.entry(tag[0]).or_insert(0) += 1;
    }
    both_served("30 WCF clients", &seen);
    gw.stop_clean();
}

#[test]
fn hybrid_senders_of_a_bridged_relay_are_balanced_over_listeners_of_both_kinds() {
    let gw = Gateway::start(WCF_BRIDGED);
    let _listeners = both_kinds(&gw, "calc");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..30 {
        let tag = rt.block_on(async {
            let t = support::gateway::token("calc", ROOT, 600);
            let (head, ws) = support::wsclient::ws(
                gw.http,
                "/$hc/calc?sb-hc-action=connect",
                &[("ServiceBusAuthorization", &t)],
            )
            .await;
            assert_eq!(head.status, 101, "{head:?}");
            let mut ws = ws.unwrap();
            support::wsclient::send(&mut ws, true, fastwebsockets::OpCode::Binary, b"x").await;
            let (_, _, data) = support::wsclient::next(&mut ws, Duration::from_secs(10))
                .await
                .unwrap();
            data[0]
        });
        *seen.entry(tag).or_insert(0) += 1;
    }
    both_served("30 HC senders", &seen);
    gw.stop_clean();
}
