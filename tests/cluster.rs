//! Several gateway nodes sharing relays over NATS (issue 18), with the real
//! parts: Debian's nats-server (one, or three in a NATS cluster), gateway
//! nodes on loopback, HAProxy in front, and the real peers (hyco-ws,
//! hyco-https, curl, Mono WCF through `forward`, rhea). Each test says what
//! crosses nodes and what must keep working when a part fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::time::{Duration, Instant};

use std::collections::HashMap;

use support::cluster::{admin_get, eventually, readyz, wait_joined, Haproxy, Nats, Nodes};
use support::gateway::{token, Gateway, KEY, ROOT};
use support::hc;
use support::hyco::{curl, sender, sha256_hex, Node};
use support::nettcp::DuplexClient;
use support::oneway::{self, connect, delivered_text, send_note, via};
use support::relayed::{forward, Rhea};
use support::wsclient::{self, next_json, split_url};
use support::{mono_client, mono_relay_host, spawn_ready};

fn ws_base(gw: &Gateway) -> String {
    format!("ws://{}", gw.http)
}

/// The management GET's `ListenerCount` for `path` at `gw`.
fn listener_count(gw: &Gateway, path: &str) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = token(path, ROOT, 600);
    let (head, body) = rt.block_on(wsclient::http(
        gw.http,
        "GET",
        &format!("/{path}?api-version=2016-07"),
        &[
            ("X-PROCESS-AT", "ServiceBus"),
            ("ServiceBusAuthorization", &t),
        ],
        b"",
    ));
    assert_eq!(head.status, 200, "{}", String::from_utf8_lossy(&body));
    let body = String::from_utf8_lossy(&body);
    body.split("<ListenerCount>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_hyco_ws_listener_on_one_node_serves_senders_on_the_others() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 3, "");
    let (a, b, c) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    let _l = Node::echo(&ws_base(a), "echo", "on-a", None);
    // hyco-ws senders on B and C: text and 200 KB binary, byte for byte.
    assert_eq!(sender(&ws_base(c), "echo", "3", None), "ok 3");
    assert_eq!(sender(&ws_base(b), "echo", "2", None), "ok 2");
    // The management GET on a node without listeners counts the cluster's.
    assert_eq!(listener_count(c, "echo"), 1);
    // No listener anywhere: the front end's 404 at once, not a timeout.
    let started = Instant::now();
    let out = sender(&ws_base(b), "nobody", "1", None);
    assert!(out.contains("404"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The status page and /metrics show the cluster.
    let page = admin_get(c, "/");
    assert!(page.contains("0 here, 1 in the cluster"), "{page}");
    assert!(page.contains("Members seen: a, b, c"), "{page}");
    let metrics = admin_get(c, "/metrics");
    assert!(
        metrics.contains("relay_cluster_members{namespace=\"localhost\",node=\"c\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_cluster_listeners{namespace=\"localhost\",entity=\"echo\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_hyco_https_listener_on_one_node_answers_curl_on_another() {
    // Small requests and answers go inline (carried over NATS between the
    // nodes); 1 MiB ones take a rendezvous on the sender's node.
    let nats = Nats::single();
    let n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let l = Node::spawn("https-listener.js", &[&ws_base(a), "web", ROOT, KEY], None);
    l.wait_for("listening", Duration::from_secs(10));
    let auth = format!("ServiceBusAuthorization: {}", token("web", ROOT, 3600));
    let base = format!("http://{}", b.http);
    let v: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        &auth,
        "-H",
        "X-Test: 1",
        &format!("{base}/web/a?x=1"),
    ]))
    .unwrap();
    assert_eq!(
        (
            v["method"].as_str(),
            v["url"].as_str(),
            v["header"].as_str()
        ),
        (Some("GET"), Some("/web/a?x=1"), Some("1"))
    );
    // A small POST: its body goes inline, over NATS, and so does the answer.
    let v: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        &auth,
        "--data-binary",
        "hello!",
        &format!("{base}/web/p"),
    ]))
    .unwrap();
    assert_eq!(
        (v["length"].as_u64(), v["sha256"].as_str()),
        (Some(6), Some(sha256_hex(b"hello!").as_str()))
    );
    // 1 MiB up and down.
    let dir = support::gateway::TempDir::new("cluster-curl");
    let big: Vec<u8> = (0..(1u32 << 20) + 17)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let file = dir.0.join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let v: serde_json::Value = serde_json::from_str(&curl(&[
        "-H",
        &auth,
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/web/upload"),
    ]))
    .unwrap();
    assert_eq!(
        (v["length"].as_u64(), v["sha256"].as_str()),
        (Some(big.len() as u64), Some(sha256_hex(&big).as_str()))
    );
    for size in [6, 1 << 20] {
        let out = dir.0.join(format!("down-{size}.bin"));
        curl(&[
            "-H",
            &auth,
            "-o",
            &out.display().to_string(),
            &format!("{base}/web/big?n={size}"),
        ]);
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), size);
        assert!(got.iter().enumerate().all(|(i, b)| *b as usize == i % 251));
    }
}

/// Accept `count` connects on a raw listener control channel, opening each
/// rendezvous; returns how many it accepted.
async fn accept_all(mut ctl: hc::Ws, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut n = 0;
    loop {
        let mut stop = stop.clone();
        let accept = tokio::select! {
            a = next_json(&mut ctl) => a,
            _ = stop.wait_for(|s| *s) => return n,
        };
        let (addr, target) = split_url(accept["accept"]["address"].as_str().unwrap());
        let (head, ws) = wsclient::ws(addr, &target, &[]).await;
        assert_eq!(head.status, 101);
        drop(ws);
        n += 1;
    }
}

#[test]
fn connects_balance_per_listener_and_the_listener_cap_holds_across_nodes() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 3, "");
    let (a, b, c) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Two listeners on A, one on B: balancing is per listener, not per node.
    let tasks: Vec<_> = [a, a, b]
        .iter()
        .map(|gw| {
            let ctl = rt.block_on(hc::listener(gw, "spread"));
            rt.spawn(accept_all(ctl, stopped.clone()))
        })
        .collect();
    eventually(Duration::from_secs(10), "three listeners seen", || {
        listener_count(c, "spread") == 3
    });
    const CONNECTS: usize = 200;
    rt.block_on(async {
        for _ in 0..CONNECTS {
            let s = hc::sender(
                c.http,
                "/$hc/spread?sb-hc-action=connect".into(),
                hc::auth("spread"),
            );
            let (head, _) = s.await.unwrap();
            assert_eq!(head.status, 101);
        }
    });
    stop.send(true).unwrap();
    let counts: Vec<usize> = tasks.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    eprintln!("200 connects from C over listeners A1 A2 B: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), CONNECTS);
    let share = CONNECTS as f64 / 3.0;
    for n in &counts {
        assert!(
            (*n as f64 - share).abs() <= 0.2 * share,
            "{counts:?} is not within ±20 % of {share:.0} each"
        );
    }
    // The cap (25 per path, as the service) across nodes: 13 on A and 12
    // on B fill it; the 26th is refused wherever it comes.
    let mut held = Vec::new();
    for (gw, count) in [(a, 13), (b, 12)] {
        for _ in 0..count {
            held.push(rt.block_on(hc::listener(gw, "capped")));
        }
    }
    eventually(Duration::from_secs(10), "25 listeners seen", || {
        listener_count(c, "capped") == 25
    });
    for gw in [a, b, c] {
        let t = token("capped", ROOT, 600);
        let (head, _) = rt.block_on(wsclient::ws(
            gw.http,
            "/$hc/capped?sb-hc-action=listen",
            &[("ServiceBusAuthorization", &t)],
        ));
        assert_eq!(head.status, 403, "{head:?}");
    }
    // One leaves; its slot is free again for a listener on any node.
    drop(held.pop());
    eventually(Duration::from_secs(10), "the freed slot is taken", || {
        let t = token("capped", ROOT, 600);
        let (head, ws) = rt.block_on(wsclient::ws(
            c.http,
            "/$hc/capped?sb-hc-action=listen",
            &[("ServiceBusAuthorization", &t)],
        ));
        if let Some(ws) = ws {
            held.push(ws);
        }
        head.status == 101
    });
}

#[test]
fn a_killed_node_loses_only_its_own_and_its_listeners_expire_within_the_bound() {
    let nats = Nats::single();
    let mut n = Nodes::start(&nats, 3, "");
    let _on_a = Node::echo(&ws_base(&n.nodes[0]), "stays", "on-a", None);
    let _on_b = Node::echo(&ws_base(&n.nodes[1]), "goes", "on-b", None);
    let b = n.nodes.remove(1);
    let c = &n.nodes[1];
    eventually(Duration::from_secs(10), "both listeners seen", || {
        listener_count(c, "stays") == 1 && listener_count(c, "goes") == 1
    });
    // A splice between A's listener and a sender on C, open across the kill.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut open = rt.block_on(async {
        let s = hc::sender(
            c.http,
            "/$hc/stays?sb-hc-action=connect".into(),
            hc::auth("stays"),
        );
        let (head, ws) = s.await.unwrap();
        assert_eq!(head.status, 101);
        ws.unwrap()
    });
    let killed = Instant::now();
    drop(b); // SIGKILL
    rt.block_on(async {
        wsclient::send_text(&mut open, "still here").await;
        let (_, _, data) = wsclient::next(&mut open, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(data, b"still here");
    });
    assert_eq!(sender(&ws_base(c), "stays", "1", None), "ok 1");
    // B's listener leaves every node's view within the bound (15 s).
    eventually(Duration::from_secs(20), "B's listener expires", || {
        listener_count(c, "goes") == 0
    });
    let expired = killed.elapsed();
    eprintln!("a SIGKILLed node's listener expired from the cluster after {expired:?}");
    assert!(expired <= Duration::from_secs(16), "{expired:?}");
    // Its listener reconnects through another node and is served again.
    let _again = Node::echo(&ws_base(&n.nodes[0]), "goes", "back", None);
    assert_eq!(sender(&ws_base(c), "goes", "1", None), "ok 1");
}

#[test]
fn without_nats_nodes_serve_their_own_pairs_and_rejoin_by_themselves() {
    let mut nats = Nats::single();
    let mut n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let _l = Node::echo(&ws_base(a), "local", "on-a", None);
    eventually(Duration::from_secs(10), "the listener is seen on B", || {
        listener_count(b, "local") == 1
    });
    nats.servers[0].kill();
    eventually(Duration::from_secs(10), "readyz says why", || {
        readyz(a).contains("alone")
    });
    // Local pairs still work; a cross-node connect is refused at once.
    assert_eq!(sender(&ws_base(a), "local", "1", None), "ok 1");
    let started = Instant::now();
    let out = sender(&ws_base(b), "local", "1", None);
    assert!(out.contains("404"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A node started while NATS is down serves its own pairs.
    let late = n.add();
    let _late_l = Node::echo(&ws_base(late), "late", "on-c", None);
    assert_eq!(sender(&ws_base(late), "late", "1", None), "ok 1");
    // NATS returns: every node rejoins, and listeners registered meanwhile
    // are claimed, so connects cross nodes again.
    nats.servers[0].restart();
    for gw in &n.nodes {
        wait_joined(gw, Duration::from_secs(20));
    }
    eventually(Duration::from_secs(20), "both listeners seen on B", || {
        listener_count(&n.nodes[1], "local") == 1 && listener_count(&n.nodes[1], "late") == 1
    });
    assert_eq!(sender(&ws_base(&n.nodes[1]), "local", "1", None), "ok 1");
    assert_eq!(sender(&ws_base(&n.nodes[1]), "late", "1", None), "ok 1");
}

#[test]
fn losing_one_nats_server_of_three_changes_nothing_and_haproxy_fronts_the_nodes() {
    let mut nats = Nats::trio();
    let n = Nodes::start(&nats, 3, "");
    let lb = Haproxy::start(&n.nodes.iter().map(|g| g.http).collect::<Vec<_>>());
    let via_lb = format!("ws://{}", lb.addr);
    // Listeners and senders both come through the load balancer (round
    // robin: they land on different nodes); rendezvous addresses name the
    // node holding the sender, not the load balancer.
    let _l = Node::echo(&via_lb, "lb", "via-lb", None);
    for _ in 0..3 {
        assert_eq!(sender(&via_lb, "lb", "1", None), "ok 1");
    }
    nats.servers[0].kill();
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..3 {
        assert_eq!(sender(&via_lb, "lb", "1", None), "ok 1");
    }
    for gw in &n.nodes {
        wait_joined(gw, Duration::from_secs(20));
    }
}

#[test]
fn mono_wcf_through_forward_with_the_listener_on_one_node_and_the_client_on_another() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let ca = n.ca();
    let (_host, ports) = mono_relay_host();
    let mut forwards = Vec::new();
    for (name, (local, public)) in ["calc", "blob"].iter().zip(&ports) {
        let uri = format!("sb://localhost/{name}");
        let to = format!("127.0.0.1:{local}");
        let listen = ["--listen", uri.as_str(), "--to", to.as_str()];
        let (l, _, _) = spawn_ready(
            &mut forward(a.amqps.unwrap(), a.relayed.unwrap(), &ca, &listen),
            "attached",
        );
        let at = format!("127.0.0.1:{public}");
        let connect = ["--connect", uri.as_str(), "--local", at.as_str()];
        let (c, _, _) = spawn_ready(
            &mut forward(b.amqps.unwrap(), b.relayed.unwrap(), &ca, &connect),
            "ready",
        );
        forwards.push((l, c));
    }
    let metric = |path: &str| {
        format!("relay_cluster_listeners{{namespace=\"localhost\",entity=\"{path}\"}} 1")
    };
    eventually(Duration::from_secs(10), "B sees A's listeners", || {
        let m = admin_get(b, "/metrics");
        m.contains(&metric("calc")) && m.contains(&metric("blob"))
    });
    assert_eq!(
        mono_client(&["calc", &format!("net.tcp://127.0.0.1:{}/calc", ports[0].1)]),
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );
    let blob = mono_client(&[
        "blob",
        &format!("net.tcp://127.0.0.1:{}/blob", ports[1].1),
        "10000000",
    ]);
    assert!(blob.starts_with("blob 10000000 "), "{blob}");
}

/// The Notes each rhea link received: (link index, text) -> count.
fn received(rhea: &Rhea, count: usize, path: &str) -> HashMap<(u64, String), usize> {
    let mut seen = HashMap::new();
    for _ in 0..count {
        let m = rhea.next_of("message");
        let data = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            m["data"].as_str().unwrap(),
        )
        .unwrap();
        *seen
            .entry((m["index"].as_u64().unwrap(), delivered_text(&data, path)))
            .or_default() += 1;
    }
    seen
}

#[test]
fn events_reach_every_multicast_listener_in_the_cluster_once_and_unicast_balances() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 3, "");
    let (a, b, c) = (&n.nodes[0], &n.nodes[1], &n.nodes[2]);
    let ca = n.ca();
    let on_a = oneway::listeners(a.amqps.unwrap(), &ca, "news", "Multicast", 2, true);
    let on_c = oneway::listeners(c.amqps.unwrap(), &ca, "news", "Multicast", 1, true);
    let u_a = oneway::listeners(a.amqps.unwrap(), &ca, "jobs", "Unicast", 1, true);
    let u_c = oneway::listeners(c.amqps.unwrap(), &ca, "jobs", "Unicast", 1, true);
    eventually(Duration::from_secs(10), "B sees every listener", || {
        let m = admin_get(b, "/metrics");
        m.contains("entity=\"news\"} 3") && m.contains("entity=\"jobs\"} 2")
    });
    let port = b.nettcp.unwrap().port();
    let mut sender = DuplexClient::connect(&b.nettcp.unwrap().to_string(), &via(port, "news"));
    connect(&mut sender, "news", Some(token("news", ROOT, 600)));
    const N: usize = 20;
    for i in 0..N {
        let ack = send_note(&mut sender, "news", &format!("event {i}"));
        assert!(ack.fault().is_none(), "{ack:?}");
    }
    let at_a = received(&on_a, 2 * N, "news");
    let at_c = received(&on_c, N, "news");
    assert!(
        on_a.quiet_for(Duration::from_millis(500)),
        "no duplicates on A"
    );
    assert!(
        on_c.quiet_for(Duration::from_millis(100)),
        "no duplicates on C"
    );
    for i in 0..N {
        let text = format!("event {i}");
        for link in 0..2 {
            assert_eq!(at_a.get(&(link, text.clone())), Some(&1), "A{link} {text}");
        }
        assert_eq!(at_c.get(&(0, text.clone())), Some(&1), "C {text}");
    }
    sender.close();
    // Unicast: each message to one listener, balanced over the nodes.
    let mut sender = DuplexClient::connect(&b.nettcp.unwrap().to_string(), &via(port, "jobs"));
    connect(&mut sender, "jobs", Some(token("jobs", ROOT, 600)));
    const M: usize = 40;
    for i in 0..M {
        let ack = send_note(&mut sender, "jobs", &format!("job {i}"));
        assert!(ack.fault().is_none(), "{ack:?}");
    }
    sender.close();
    // Both listeners' messages, until neither has had one for a second.
    let mut texts = Vec::new();
    let mut per = Vec::new();
    for r in [&u_a, &u_c] {
        let got: Vec<String> = r
            .messages_until_quiet(Duration::from_secs(1))
            .iter()
            .map(|data| delivered_text(data, "jobs"))
            .collect();
        per.push(got.len());
        texts.extend(got);
    }
    texts.sort();
    let mut want: Vec<String> = (0..M).map(|i| format!("job {i}")).collect();
    want.sort();
    assert_eq!(texts, want, "every job once, none twice");
    eprintln!("{M} Unicast messages from B over listeners on A and C: {per:?}");
    assert!(per.iter().all(|n| *n >= M / 5), "{per:?}");
}

/// Publish `payload` on `subject` with a bare NATS client on `port`.
fn nats_publish(port: u16, subject: &str, payload: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    write!(
        s,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .unwrap();
    s.write_all(payload).unwrap();
    s.write_all(b"\r\nPING\r\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "PONG", "the server took the message");
}

#[test]
fn malformed_and_oversized_messages_on_nats_are_dropped_and_counted() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let _l = Node::echo(&ws_base(a), "guarded", "on-a", None);
    eventually(Duration::from_secs(10), "B sees the listener", || {
        listener_count(b, "guarded") == 1
    });
    let port = nats.servers[0].port;
    let path_token: String = b"guarded".iter().map(|c| format!("{c:02x}")).collect();
    // On the path's Multicast subject, which A's listener serves: not JSON,
    // then JSON of the wrong shape, then 300 KB (over the 256 KiB bound).
    let events = format!("relay.e.{path_token}");
    nats_publish(port, &events, b"\xff\xfe not json");
    nats_publish(port, &events, br#"{"filter":{},"request":{"id":"x"}}"#);
    nats_publish(port, &events, &vec![b'{'; 300 * 1024]);
    // A listener slot whose value is not a slot, in the cluster's bucket.
    nats_publish(port, "$KV.relay-listeners.l.70.0", b"garbage");
    let dropped = |reason: &str, n: u32| {
        format!("relay_cluster_messages_dropped_total{{namespace=\"localhost\",reason=\"{reason}\"}} {n}")
    };
    eventually(Duration::from_secs(10), "A counts what it dropped", || {
        let m = admin_get(a, "/metrics");
        m.contains(&dropped("malformed", 3)) && m.contains(&dropped("oversized", 1))
    });
    // Nothing else changed: the listener is served from either node.
    assert_eq!(sender(&ws_base(b), "guarded", "1", None), "ok 1");
    assert_eq!(sender(&ws_base(a), "guarded", "1", None), "ok 1");
    assert_eq!(listener_count(b, "guarded"), 1);
}

#[test]
fn nodes_authenticate_to_nats_and_a_refused_password_is_named() {
    let nats = Nats::single_with(&["--user", "relay", "--pass", "s3cret-pass"]);
    let mut n = Nodes::start(&nats, 0, "");
    n.add_with("[cluster.auth]\nuser = \"relay\"\npassword = \"s3cret-pass\"\n");
    n.add_with("[cluster.auth]\nuser = \"relay\"\npassword = \"wrong\"\n");
    wait_joined(&n.nodes[0], Duration::from_secs(20));
    let refused = &n.nodes[1];
    eventually(Duration::from_secs(20), "readyz names the refusal", || {
        let r = readyz(refused);
        r.contains("alone") && r.to_lowercase().contains("authorization")
    });
    // The refused node still serves its own pairs.
    let _l = Node::echo(&ws_base(refused), "solo", "solo", None);
    assert_eq!(sender(&ws_base(refused), "solo", "1", None), "ok 1");
    assert!(!refused.log().contains("s3cret-pass"));
}

#[test]
fn listeners_of_a_killed_node_reconnect_through_the_load_balancer_and_are_served_again() {
    let nats = Nats::single();
    let mut n = Nodes::start(&nats, 2, "");
    let lb = Haproxy::start(&n.nodes.iter().map(|g| g.http).collect::<Vec<_>>());
    let via_lb = format!("ws://{}", lb.addr);
    let l = Node::echo(&via_lb, "moving", "mover", None);
    assert_eq!(sender(&via_lb, "moving", "1", None), "ok 1");
    let holder = n
        .nodes
        .iter()
        .position(|g| admin_get(g, "/").contains(">1 here, "))
        .expect("one node holds the listener");
    drop(n.nodes.remove(holder)); // SIGKILL
    let survivor = &n.nodes[0];
    // hyco-ws reconnects on its own; HAProxy's health check has taken the
    // dead node out, so it lands on the survivor.
    // (hyco-ws may open more than one control channel while reconnecting.)
    let served_here = |g: &Gateway| {
        let page = admin_get(g, "/");
        page.contains(" here, ") && !page.contains(">0 here, ")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(l.count("listening mover") >= 2 && served_here(survivor)) {
        if Instant::now() > deadline {
            panic!(
                "the listener is not back: {} listening lines\n{}\n{}",
                l.count("listening mover"),
                admin_get(survivor, "/"),
                survivor.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sender(&via_lb, "moving", "2", None), "ok 2");
}

#[test]
fn a_wcf_client_on_one_node_reaches_a_hybrid_listener_on_another_over_a_bridged_path() {
    let nats = Nats::single();
    let bridged = "[[hybrid_connection]]\npath = \"calc\"\naccept_wcf_clients = true\n";
    let n = Nodes::start(&nats, 2, bridged);
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let (_host, ports) = mono_relay_host();
    let (local, public) = ports[0];
    let url = format!("ws://127.0.0.1:{}/calc", a.http.port());
    let to = format!("127.0.0.1:{local}");
    let mut hc = support::gateway();
    hc.args(["forward", "--hc", "--key-name", ROOT, "--key", KEY])
        .args(["--listen", &url, "--to", &to]);
    let (_l, _, _) = spawn_ready(&mut hc, "listening");
    eventually(Duration::from_secs(10), "B sees A's listener", || {
        listener_count(b, "calc") == 1
    });
    let at = format!("127.0.0.1:{public}");
    let connect = ["--connect", "sb://localhost/calc", "--local", at.as_str()];
    let (_c, _, _) = spawn_ready(
        &mut forward(b.amqps.unwrap(), b.relayed.unwrap(), &n.ca(), &connect),
        "ready",
    );
    assert_eq!(
        mono_client(&["calc", &format!("net.tcp://127.0.0.1:{public}/calc")]),
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );
}

#[test]
fn a_sender_on_another_node_hears_at_once_when_its_listener_goes() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ctl = rt.block_on(hc::listener(a, "leaving"));
    eventually(Duration::from_secs(10), "B sees the listener", || {
        listener_count(b, "leaving") == 1
    });
    let started = Instant::now();
    let status = rt.block_on(async {
        let s = hc::sender(
            b.http,
            "/$hc/leaving?sb-hc-action=connect".into(),
            hc::auth("leaving"),
        );
        // The accept arrives; the listener goes without answering it.
        let accept = next_json(&mut ctl).await;
        assert!(accept["accept"]["address"].is_string(), "{accept}");
        drop(ctl);
        s.await.unwrap().0.status
    });
    // The listener-gone answer, not the 30 s accept timeout.
    assert_eq!(status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_wcf_client_on_another_node_hears_at_once_when_its_listener_goes() {
    let nats = Nats::single();
    let n = Nodes::start(&nats, 2, "");
    let (a, b) = (&n.nodes[0], &n.nodes[1]);
    let ca = n.ca();
    // A rhea listener on A that takes the notice and never dials back.
    let rhea = oneway::listeners(a.amqps.unwrap(), &ca, "quits", "RelayedConnection", 1, true);
    eventually(Duration::from_secs(10), "B sees the listener", || {
        admin_get(b, "/metrics").contains("entity=\"quits\"} 1")
    });
    let relayed = b.relayed.unwrap();
    let client_ca = ca.clone();
    let started = Instant::now();
    let client = std::thread::spawn(move || {
        let tls = support::relayed::tls_config(&client_ca);
        let (_s, reply) = support::relayed::connect(
            relayed,
            Some((&tls, "localhost")),
            "sb://localhost/quits/",
            Some(token("quits", ROOT, 600)),
        );
        support::relayed::fault_code(&reply)
    });
    rhea.next_of("message"); // the notice
    drop(rhea); // the listener goes without dialing back
    let code = client.join().unwrap();
    assert_eq!(code.as_deref(), Some("ConnectionFailedFault"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
