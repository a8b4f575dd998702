//! The admin status page as a person sees it (issue "Operating the gateway",
//! item 1): headless Chromium (Debian's `chromium`, started with the flags the
//! machine notes give for headless use as root) loads `/` on the admin
//! endpoint while a Hybrid Connections listener with a spliced connection, a
//! WCF relay listener and a refused sender exist; the rendered page must
//! show each entity with its type, listener count and identity, the active
//! connection and its bytes, and the refusal under recent errors. A
//! screenshot is kept as a test artifact in `target/test-artifacts/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fastwebsockets::OpCode;
use serde_json::json;
use support::gateway::{token, Gateway, ROOT};
use support::hc::{listener, pair};
use support::relayed::Rhea;
use support::wsclient::{close, next, send, ws};

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium is missing: run tests/peers/install.sh (or tests/run)");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    support::run_with_timeout(&mut cmd, Duration::from_secs(60))
}

/// The text a person reads: the DOM without its tags.
fn visible_text(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_entities_listeners_connections_and_errors() {
    let gw = Gateway::start("[[wcf_relay]]\npath = \"orders\"\ntype = \"NetTcp\"\n");
    // A Hybrid Connections listener: one connection that carried 1000 bytes
    // and ended, and one still open.
    let mut ctl = listener(&gw, "inventory").await;
    let (mut sender, mut rendezvous) = pair(&gw, &mut ctl, "inventory").await;
    send(&mut sender, true, OpCode::Binary, &[7u8; 1000]).await;
    assert_eq!(
        next(&mut rendezvous, Duration::from_secs(10))
            .await
            .unwrap()
            .2
            .len(),
        1000
    );
    close(&mut sender, 1000, "").await;
    assert_eq!(
        next(&mut rendezvous, Duration::from_secs(10))
            .await
            .unwrap()
            .0,
        OpCode::Close
    );
    close(&mut rendezvous, 1000, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sender, rendezvous) = pair(&gw, &mut ctl, "inventory").await;
    // A WCF relay listener (rhea, as the SDK attaches) on the configured relay.
    let (amqps, ca) = (gw.amqps.unwrap(), gw.ca());
    let rhea = tokio::task::spawn_blocking(move || {
        let r = Rhea::start(
            amqps,
            &ca,
            "sb://localhost/orders/",
            &token("orders", ROOT, 600),
            1,
            json!({"com.microsoft:tracking-id": "orders-listener-1"}),
        );
        r.next_of("attached");
        r
    })
    .await
    .unwrap();
    // A sender with a wrong key.
    let bad = hybrid::sas::create("http://localhost/inventory", ROOT, "wrong", 4_000_000_000);
    let (head, _) = ws(
        gw.http,
        "/$hc/inventory?sb-hc-action=connect",
        &[("ServiceBusAuthorization", &bad)],
    )
    .await;
    assert_eq!(head.status, 401);

    let url = format!("http://{}/", gw.admin.unwrap());
    let profile = support::gateway::TempDir::new("chromium");
    let dom = chromium(&["--dump-dom", &url], &profile.0);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let text = visible_text(&String::from_utf8_lossy(&dom.stdout));
    for want in [
        "Namespace localhost",
        "inventory Hybrid Connection 1",
        "1 1000 0 orders",
        "orders WCF NetTcp 1 orders-listener-1 0 0 0",
        "inventory hybrid token rejected: bad_signature",
        concat!("relay-gateway ", env!("CARGO_PKG_VERSION")),
        &format!("Endpoints: http {}", gw.http),
    ] {
        assert!(
            text.contains(want),
            "the page does not show {want:?}:\n{text}"
        );
    }
    // One row per failure: the refused sender is not listed a second time.
    assert!(!text.contains("sender refused (401)"), "{text}");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,800",
            &url,
        ],
        &profile.0,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot ({} bytes)",
        png.len()
    );

    drop((sender, rendezvous, ctl));
    tokio::task::spawn_blocking(move || {
        drop(rhea);
        gw.stop_clean();
    })
    .await
    .unwrap();
}
