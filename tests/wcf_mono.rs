//! Live interop of the `wcf` crate with Mono's WCF (`tests/peers/MonoPeer.cs`,
//! NetTcpBinding, SecurityMode.None):
//! * our client against the Mono host: a duplex msbinsession1 session with
//!   request/reply and one-way calls, and a singleton-unsized msbin1 Streamed call;
//! * the Mono client against a net.tcp service built on our crate's server
//!   preamble machine and codecs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{free_port, mono, spawn_ready, Proc};

use support::nettcp::{result, serve_calc, streamed_call, DuplexClient};

fn mono_host() -> (Proc, u16, u16) {
    let (calc, blob) = (free_port(), free_port());
    let (host, _, _) = spawn_ready(
        &mut mono(&["host", &calc.to_string(), &blob.to_string()]),
        "ready",
    );
    (host, calc, blob)
}

#[test]
fn our_client_against_the_mono_host() {
    let (_host, calc, blob) = mono_host();
    let addr = format!("127.0.0.1:{calc}");
    let mut c = DuplexClient::connect(&addr, &format!("net.tcp://127.0.0.1:{calc}/calc"));
    assert_eq!(
        result(&c.call("Echo", &[("text", "hello mono")]), "Echo"),
        "hello mono"
    );
    assert_eq!(
        result(&c.call("Add", &[("a", "20"), ("b", "22")]), "Add"),
        "42"
    );
    // Session strings accumulate per direction: the same operations again.
    assert_eq!(
        result(&c.call("Echo", &[("text", "ünïcødé <&>")]), "Echo"),
        "ünïcødé <&>"
    );
    c.notify("Note", &[("text", "one-way from rust")]);
    assert_eq!(
        result(&c.call("LastNote", &[]), "LastNote"),
        "one-way from rust"
    );
    c.close();

    // TransferMode.Streamed: singleton-unsized, msbin1, chunked reply.
    let reply = streamed_call(
        &format!("127.0.0.1:{blob}"),
        &format!("net.tcp://127.0.0.1:{blob}/blob"),
        "Get",
        &[("n", "100000")],
    );
    let data = reply
        .body_element()
        .unwrap()
        .find_local("GetResult")
        .unwrap()
        .binary_content()
        .unwrap();
    assert_eq!(data.len(), 100_000);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, b)| *b == ((i * 7) % 256) as u8));
}

#[test]
fn mono_client_against_our_service() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_calc(listener);
    let out = support::run_with_timeout(
        &mut mono(&["calc", &format!("net.tcp://127.0.0.1:{port}/calc")]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );

    // A wrong via gets the EndpointNotFound framing fault; Mono raises it as a
    // FaultException carrying the fault URI.
    let out = support::run_with_timeout(
        &mut mono(&["calc", &format!("net.tcp://127.0.0.1:{port}/elsewhere")]),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.starts_with("FAILED FaultException: http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound"), "{stdout}");
}
