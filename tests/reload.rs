//! Live reload (issue "Operating the gateway", item 3): the configuration
//! file is rewritten and reloaded through `relay-gateway reload` and then
//! SIGHUP. A rotated key takes effect for new connections, an added entity
//! accepts listeners, a removed entity's listeners are closed the way each
//! protocol closes a deleted entity (Hybrid Connections 1001, WCF
//! relay-not-found), an established splice carries on, and an invalid file
//! is refused with an error naming the problem while the running
//! configuration stays.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::time::Duration;

use fastwebsockets::OpCode;
use serde_json::json;
use support::gateway::{token, Gateway, KEY, ROOT};
use support::hc::{listener, pair};
use support::relayed::Rhea;
use support::wsclient::{next, next_json, send, split_url, ws};

const WAIT: Duration = Duration::from_secs(10);

fn config(rotating_key: &str, entities: &[&str]) -> String {
    let mut c = format!(
        r#"
[namespace]
host = "localhost"
[[namespace.rule]]
name = "{ROOT}"
key = "{KEY}"
rights = ["Listen", "Send", "Manage"]
[[namespace.rule]]
name = "Rotating"
key = "{rotating_key}"
rights = ["Send"]
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
admin = "127.0.0.1:0"
amqps = "127.0.0.1:0"
"#
    );
    for e in entities {
        if let Some(path) = e.strip_prefix("wcf:") {
            c.push_str(&format!(
                "[[wcf_relay]]\npath = \"{path}\"\ntype = \"NetTcp\"\n"
            ));
        } else {
            c.push_str(&format!("[[hybrid_connection]]\npath = \"{e}\"\n"));
        }
    }
    c
}

fn rotating(path: &str, key: &str) -> String {
    hybrid::sas::create(
        &format!("http://localhost/{path}"),
        "Rotating",
        key,
        4_000_000_000,
    )
}

fn reload(gw: &Gateway) -> (bool, String) {
    let out = support::gateway()
        .args(["reload", "--admin", &gw.admin.unwrap().to_string()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A sender connect with `token` to a listening `path` (the listener does not accept).
async fn connect_status(gw: &Gateway, path: &str, token: &str) -> u16 {
    let (head, _) = ws(
        gw.http,
        &format!("/$hc/{path}?sb-hc-action=connect"),
        &[("ServiceBusAuthorization", token)],
    )
    .await;
    head.status
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_rotates_keys_adds_and_removes_entities_and_keeps_established_splices() {
    let gw = Gateway::start_with(&config("old-key", &["keep", "drop", "wcf:wcfdrop"]));
    let file = gw.dir.0.join("gateway.toml");
    let mut keep_ctl = listener(&gw, "keep").await;
    let mut drop_ctl = listener(&gw, "drop").await;
    let (amqps, ca) = (gw.amqps.unwrap(), gw.ca());
    let rhea = tokio::task::spawn_blocking(move || {
        let r = Rhea::start(
            amqps,
            &ca,
            "sb://localhost/wcfdrop/",
            &token("wcfdrop", ROOT, 600),
            1,
            json!({}),
        );
        r.next_of("attached");
        r
    })
    .await
    .unwrap();
    let (mut sender, mut rendezvous) = pair(&gw, &mut keep_ctl, "keep").await;
    // Before the reload the new key is not yet valid.
    assert_eq!(
        connect_status(&gw, "keep", &rotating("keep", "new-key")).await,
        401
    );

    // Rotate the key, add "added", remove "drop" and "wcfdrop".
    std::fs::write(&file, config("new-key", &["keep", "added"])).unwrap();
    let (ok, text) = reload(&gw);
    assert!(ok, "{text}");
    assert!(text.contains("drop") && text.contains("wcfdrop"), "{text}");
    assert!(!text.contains("restart"), "{text}");
    let (op, _, data) = next(&mut drop_ctl, WAIT).await.expect("a close");
    assert_eq!(op, OpCode::Close);
    assert_eq!(u16::from_be_bytes([data[0], data[1]]), 1001);
    let rhea = tokio::task::spawn_blocking(move || {
        let e = rhea.next_of("error");
        assert_eq!(e["condition"], "com.microsoft:relay-not-found", "{e}");
        rhea
    })
    .await
    .unwrap();
    // The established splice carries on.
    send(&mut sender, true, OpCode::Binary, b"still spliced").await;
    assert_eq!(
        next(&mut rendezvous, WAIT).await.unwrap().2,
        b"still spliced"
    );
    // New connections see the new key and entities.
    assert_eq!(
        connect_status(&gw, "keep", &rotating("keep", "old-key")).await,
        401
    );
    let s = support::hc::sender(
        gw.http,
        "/$hc/keep?sb-hc-action=connect".into(),
        vec![(
            "ServiceBusAuthorization".into(),
            rotating("keep", "new-key"),
        )],
    );
    let accept = next_json(&mut keep_ctl).await;
    let (addr, target) = split_url(accept["accept"]["address"].as_str().unwrap());
    assert_eq!(ws(addr, &target, &[]).await.0.status, 101);
    assert_eq!(
        s.await.unwrap().0.status,
        101,
        "the rotated key is accepted"
    );
    let (head, added) = ws(
        gw.http,
        "/$hc/added?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("added", ROOT, 600))],
    )
    .await;
    assert_eq!(head.status, 101);
    let (head, _) = ws(
        gw.http,
        "/$hc/drop?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("drop", ROOT, 600))],
    )
    .await;
    assert_eq!(head.status, 404, "a removed entity takes no listeners");

    // An invalid file is refused with the key it names; the running configuration stays.
    std::fs::write(
        &file,
        config("new-key", &["keep"]) + "[limits]\nlisteners = 3\n",
    )
    .unwrap();
    let (ok, text) = reload(&gw);
    assert!(!ok && text.contains("listeners"), "{text}");
    let (head, _) = ws(
        gw.http,
        "/$hc/added?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &token("added", ROOT, 600))],
    )
    .await;
    assert_eq!(
        head.status, 101,
        "the previous configuration is still in force"
    );

    // A new bind address is reported as waiting for a restart; the rest applies.
    std::fs::write(
        &file,
        config("new-key", &["keep", "added"]).replace(
            "amqps = \"127.0.0.1:0\"\n",
            "amqps = \"127.0.0.1:0\"\nrelayed = \"127.0.0.1:0\"\n",
        ),
    )
    .unwrap();
    let (ok, text) = reload(&gw);
    assert!(
        ok && text.contains("[listen] changed: restart to apply"),
        "{text}"
    );
    // So is the one limit the gateway took at start (the accept loops'
    // connection cap); the others apply at once and are not mentioned.
    std::fs::write(
        &file,
        config("new-key", &["keep", "added"])
            + "[limits]\nmax_connections = 100\npending_total = 100\naccept_timeout = 7\nhandshake_timeout = 3\nshutdown_grace = 4\n",
    )
    .unwrap();
    let (ok, text) = reload(&gw);
    assert!(ok, "{text}");
    assert!(
        text.contains("limits.max_connections changed: restart to apply")
            && !text.contains("pending_total")
            && !text.contains("accept_timeout")
            && !text.contains("handshake_timeout")
            && !text.contains("shutdown_grace"),
        "{text}"
    );

    // SIGHUP does the same: removing "added" closes its listener.
    std::fs::write(&file, config("new-key", &["keep"])).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    let mut added = added.unwrap();
    let (op, _, data) = next(&mut added, WAIT).await.expect("a close");
    assert_eq!(
        (op, u16::from_be_bytes([data[0], data[1]])),
        (OpCode::Close, 1001)
    );
    // The listener is closed during the reload, before its log line, which
    // the capture thread may read a moment later.
    let logged = std::time::Instant::now();
    while !gw.log().contains("configuration reloaded (SIGHUP)") {
        assert!(logged.elapsed() < WAIT, "{}", gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    drop((sender, rendezvous, keep_ctl));
    tokio::task::spawn_blocking(move || {
        drop(rhea);
        gw.stop_clean();
    })
    .await
    .unwrap();
}

/// The admin endpoint's state-changing call from a web page is refused (the
/// probe's `Origin: http://evil.example` reload got 200), a configured
/// `[admin] token` is required by `relay-gateway reload`, and a connection
/// that sends no request head (slowloris, or an idle keep-alive) is closed
/// after `handshake_timeout` (the probe's stayed open past 70 s).
#[test]
fn admin_refuses_cross_site_reloads_needs_its_token_and_closes_idle_connections() {
    use std::io::{Read, Write};
    let gw = Gateway::start("[admin]\ntoken = \"adm1n\"\n[limits]\nhandshake_timeout = 2\n");
    let admin = gw.admin.unwrap();
    let post = |extra: &str| {
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!("POST /reload HTTP/1.1\r\nHost: {admin}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let r = post("Origin: http://evil.example\r\nAuthorization: Bearer adm1n\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = post("Sec-Fetch-Site: cross-site\r\nAuthorization: Bearer adm1n\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = post("");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let (ok, text) = reload(&gw);
    assert!(!ok, "{text}");
    let out = support::gateway()
        .args(["reload", "--admin", &admin.to_string(), "--token", "adm1n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Silence, a head that never ends, and a keep-alive connection idle
    // after its first request: each closed in about 2 s.
    let keep_alive = format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\n\r\n");
    for first in [
        &b""[..],
        &b"GET /healthz HTTP/1.1\r\nX-Slow: "[..],
        keep_alive.as_bytes(),
    ] {
        let started = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(first).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(6), "open for {took:?}");
    }
    gw.stop_clean();
}
