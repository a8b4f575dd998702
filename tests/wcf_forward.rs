//! End to end with real WCF through `relay-gateway forward` (issue 4's
//! tests): Mono's NetTcpBinding client -> `forward --connect` -> gateway ->
//! `forward --listen` -> Mono's NetTcpBinding host behind the relay (the
//! `relayhost` mode of `tests/peers/MonoPeer.cs`):
//! request/reply, one-way, a duplex callback and a Streamed 10 MB transfer,
//! pynettcp over the same path, with TLS on every relayed hop (and without,
//! with `--plain`); token renewal on the control channel; and listeners that
//! reconnect after the gateway restarts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::BufRead;
use std::time::{Duration, Instant};

use support::gateway::Gateway;
use support::relayed::forward;
use support::{
    free_port, mono, mono_calls, mono_client, mono_relay_host, run_with_timeout, spawn_ready, Proc,
};

/// A `forward --listen` for `path` to the local port, and a
/// `forward --connect` accepting on the public port.
fn forwards(gw: &Gateway, path: &str, local: u16, public: u16, extra: &[&str]) -> (Proc, Proc) {
    let (amqps, relayed, ca) = (gw.amqps.unwrap(), gw.relayed.unwrap(), gw.ca());
    let uri = format!("sb://localhost/{path}");
    let to = format!("127.0.0.1:{local}");
    let mut args = vec!["--listen", &uri, "--to", &to];
    args.extend_from_slice(extra);
    let (l, line, _) = spawn_ready(&mut forward(amqps, relayed, &ca, &args), "attached");
    assert_eq!(line, format!("attached {uri}/"));
    let at = format!("127.0.0.1:{public}");
    let mut args = vec!["--connect", &uri, "--local", &at];
    args.extend_from_slice(extra);
    let (c, _, _) = spawn_ready(&mut forward(amqps, relayed, &ca, &args), "ready");
    (l, c)
}

fn calc_uri(public: u16) -> String {
    format!("net.tcp://127.0.0.1:{public}/calc")
}

#[test]
fn mono_and_pynettcp_reach_a_mono_host_through_the_relay_with_tls_on_every_hop() {
    let gw = Gateway::start("");
    let (_host, ports) = mono_relay_host();
    let names = ["calc", "blob", "chat"];
    let _fw: Vec<(Proc, Proc)> = names
        .iter()
        .zip(&ports)
        .map(|(n, (l, p))| forwards(&gw, n, *l, *p, &[]))
        .collect();
    mono_calls(&ports, "the relay");
    let out = run_with_timeout(
        std::process::Command::new(support::peer_python())
            .arg(support::root().join("tests/peers/pynettcp_calc.py"))
            .arg(calc_uri(ports[0].1)),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Echo ok") && text.contains("hello from pynettcp"),
        "{text}"
    );
    assert!(text.contains("Add ok") && text.contains(">42<"), "{text}");
    drop(_fw);
    gw.stop_clean();
}

#[test]
fn plain_relayed_hops_work_when_the_listener_waives_transport_security() {
    let gw = Gateway::start("");
    let (_host, ports) = mono_relay_host();
    let _fw = forwards(&gw, "calc", ports[0].0, ports[0].1, &["--plain"]);
    assert_eq!(
        mono_client(&["calc", &calc_uri(ports[0].1)]),
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );
    assert!(gw.log().contains("tls=false"));
    drop(_fw);
    gw.stop_clean();
}

#[test]
fn listener_tokens_are_renewed_and_an_unrenewed_one_is_detached() {
    let gw = Gateway::start("[limits]\ntoken_grace = 0\n");
    let (_host, ports) = mono_relay_host();
    // Signed tokens of 4 s, renewed every 2 s: still serving after 8 s.
    let _fw = forwards(&gw, "calc", ports[0].0, ports[0].1, &["--token-ttl", "4"]);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        mono_client(&["calc", &calc_uri(ports[0].1)]),
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );
    assert!(gw.log().contains("listener token renewed"));
    // A fixed token that expires is detached with auth-failed, which the
    // listener takes as final (§6.2).
    let short = support::gateway::token("fixed", support::gateway::ROOT, 3);
    let mut cmd = support::gateway();
    cmd.arg("forward")
        .args(["--amqp", &gw.amqps.unwrap().to_string(), "--ca"])
        .arg(gw.ca())
        .args([
            "--listen",
            "sb://localhost/fixed",
            "--to",
            "127.0.0.1:9",
            "--token",
            &short,
        ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("com.microsoft:auth-failed"), "{err}");
    drop(_fw);
    gw.stop_clean();
}

#[test]
fn forward_listeners_reconnect_after_the_gateway_restarts() {
    let first = Gateway::start("");
    // The second gateway takes the first one's ports and certificate.
    let keep = support::gateway::TempDir::new("restart");
    let config = first.restart_config(&keep);
    let (_host, ports) = mono_relay_host();
    let (mut listen, _connect) = {
        let (amqps, relayed) = (first.amqps.unwrap(), first.relayed.unwrap());
        let uri = "sb://localhost/calc";
        let to = format!("127.0.0.1:{}", ports[0].0);
        let at = format!("127.0.0.1:{}", ports[0].1);
        let ca = keep.0.join("ca.pem");
        let (l, _, out) = spawn_ready(
            &mut forward(amqps, relayed, &ca, &["--listen", uri, "--to", &to]),
            "attached",
        );
        let (c, _, _) = spawn_ready(
            &mut forward(amqps, relayed, &ca, &["--connect", uri, "--local", &at]),
            "ready",
        );
        ((l, out), c)
    };
    assert!(mono_client(&["calc", &calc_uri(ports[0].1)]).starts_with("Echo hello from mono"));
    first.stop_clean();
    let second = Gateway::start_with(&config);
    let mut line = String::new();
    listen.1.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "attached sb://localhost/calc/",
        "the listener reattached"
    );
    assert!(mono_client(&["calc", &calc_uri(ports[0].1)]).starts_with("Echo hello from mono"));
    drop(listen);
    second.stop_clean();
}

/// The LastNote of a Mono host, polled until it is `want` (delivery is
/// asynchronous) or 10 s pass.
fn wait_for_note(calc: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = mono_client(&["lastnote", calc]);
        if got.trim() == format!("LastNote {want}") || Instant::now() > deadline {
            return got.trim().to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A Mono host (calc on a free port) and its net.tcp address.
fn plain_host() -> (Proc, String) {
    let (calc, blob) = (free_port(), free_port());
    let (host, _, _) = spawn_ready(
        &mut mono(&["host", &calc.to_string(), &blob.to_string()]),
        "ready",
    );
    (host, format!("net.tcp://127.0.0.1:{calc}/calc"))
}

fn oneway_forwards(
    gw: &Gateway,
    path: &str,
    hosts: &[&str],
    event: bool,
    plain: bool,
) -> (Vec<Proc>, u16) {
    let (amqps, relayed, ca) = (gw.amqps.unwrap(), gw.relayed.unwrap(), gw.ca());
    let uri = format!("sb://localhost/{path}");
    let role = if event { "--event" } else { "--oneway" };
    let mut procs = Vec::new();
    for calc in hosts {
        let to = calc
            .trim_start_matches("net.tcp://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut args = vec!["--listen", &uri, "--to", &to, "--via", calc, role];
        if plain {
            args.push("--plain");
        }
        procs.push(spawn_ready(&mut forward(amqps, relayed, &ca, &args), "attached").0);
    }
    let public = free_port();
    let at = format!("127.0.0.1:{public}");
    let nettcp = if plain {
        gw.nettcp.unwrap()
    } else {
        gw.nettcps.unwrap()
    }
    .to_string();
    let mut args = vec!["--connect", &uri, "--local", &at, role, "--nettcp", &nettcp];
    if plain {
        args.push("--plain");
    }
    procs.push(spawn_ready(&mut forward(amqps, relayed, &ca, &args), "ready").0);
    (procs, public)
}

#[test]
fn a_mono_one_way_client_reaches_a_mono_one_way_service_through_the_relay() {
    let gw = Gateway::start("");
    let (_host, calc) = plain_host();
    let (_fw, public) = oneway_forwards(&gw, "notes", &[&calc], false, true);
    let sent = mono_client(&[
        "note",
        &format!("net.tcp://127.0.0.1:{public}/calc"),
        "hello one-way",
    ]);
    assert_eq!(sent.trim(), "sent");
    assert_eq!(
        wait_for_note(&calc, "hello one-way"),
        "LastNote hello one-way"
    );
    drop(_fw);
    gw.stop_clean();
}

#[test]
fn a_mono_event_reaches_every_subscribed_mono_service_over_the_tls_upgrade() {
    let gw = Gateway::start("");
    let (_a, calc_a) = plain_host();
    let (_b, calc_b) = plain_host();
    let (_fw, public) = oneway_forwards(&gw, "feed", &[&calc_a, &calc_b], true, false);
    let sent = mono_client(&[
        "note",
        &format!("net.tcp://127.0.0.1:{public}/calc"),
        "to everyone",
    ]);
    assert_eq!(sent.trim(), "sent");
    assert_eq!(
        wait_for_note(&calc_a, "to everyone"),
        "LastNote to everyone"
    );
    assert_eq!(
        wait_for_note(&calc_b, "to everyone"),
        "LastNote to everyone"
    );
    assert!(
        gw.log().contains("secure=true"),
        "the sender used the TLS upgrade"
    );
    drop(_fw);
    gw.stop_clean();
}

/// `forward --listen` answers a notice on a dial-back it opened beforehand
/// (`src/forward/spare.rs`); a spare the gateway has closed meanwhile (its
/// handshake timeout here 1 s, under the spare's 4 s) costs a fresh dial,
/// not the client's connection.
#[test]
fn rendezvous_use_spare_dial_backs_and_survive_ones_the_gateway_closed() {
    use std::io::{Read, Write};
    let gw = Gateway::start("[limits]\nhandshake_timeout = 1\n");
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = echo.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (amqps, relayed, ca) = (gw.amqps.unwrap(), gw.relayed.unwrap(), gw.ca());
    let uri = "sb://localhost/spare";
    let _listen = spawn_ready(
        &mut forward(
            amqps,
            relayed,
            &ca,
            &["--listen", uri, "--to", &to, "--plain"],
        ),
        "attached",
    );
    let round = |n: u8| {
        let token = support::gateway::token("spare", support::gateway::ROOT, 60);
        let (mut s, reply) =
            support::relayed::connect(relayed, None, &format!("{uri}/"), Some(token));
        assert_eq!(support::relayed::fault_code(&reply), None, "round {n}");
        s.write_all(&[n; 3]).unwrap();
        let mut back = [0u8; 3];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, [n; 3], "round {n}");
    };
    round(1);
    round(2);
    // The spare opened after round 2 outlives the gateway's patience.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(gw
        .log()
        .contains("relayed connection sent no message in time"));
    round(3);
    round(4);
    gw.stop_clean();
}
