//! The binary's command line and lifecycle: the embedded default (no config
//! file) with its generated key and development CA, `token`, configuration
//! errors that name the key, and SIGTERM draining (existing splices go on
//! until the grace period, new connections are refused, exit status 0).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fastwebsockets::OpCode;
use support::gateway::{Gateway, TempDir};
use support::hc::{listener, pair};
use support::wsclient::{http, next, send_text, ws};

#[tokio::test]
async fn embedded_default_needs_no_config() {
    let dir = TempDir::new("embedded");
    let mut child = support::gateway()
        .args(["serve", "--state-dir"])
        .arg(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let _ = child.kill();
        panic!("the embedded default could not bind its ports on 127.0.0.1 (is another gateway running?)");
    }
    assert_eq!(
        line.trim(),
        r#"ready {"admin":"127.0.0.1:9090","amqps":"127.0.0.1:5671","http":"127.0.0.1:9080","https":"127.0.0.1:9443","nettcp":"127.0.0.1:9350","nettcps":"127.0.0.1:9351","relayed":"127.0.0.1:9352"}"#
    );
    for f in ["default-rule.key", "ca.pem", "server.pem", "server.key"] {
        assert!(dir.0.join(f).exists(), "{f}");
    }
    // `token` without a key uses the generated one, which the gateway accepts.
    let out = support::gateway()
        .args(["token", "--uri", "http://localhost/embedded", "--state-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    let t = String::from_utf8(out.stdout).unwrap();
    assert!(
        t.starts_with("SharedAccessSignature sr=http%3A%2F%2Flocalhost%2Fembedded&sig="),
        "{t}"
    );
    let (head, _w) = ws(
        "127.0.0.1:9080".parse().unwrap(),
        "/$hc/embedded?sb-hc-action=listen",
        &[("ServiceBusAuthorization", t.trim())],
    )
    .await;
    assert_eq!(head.status, 101);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn config_errors_name_the_key() {
    let dir = TempDir::new("badcfg");
    let cfg = dir.0.join("bad.toml");
    std::fs::write(
        &cfg,
        "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\nhtpps = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = support::gateway()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("htpps"), "{err}");
    assert!(out.stdout.is_empty(), "no ready line");
}

#[test]
fn example_configs_pass_check_config() {
    let dir = support::root().join("fixtures/config");
    // The examples' TLS files do not exist here: point [tls] at the
    // development certificate (check-config reads the files).
    let gw = Gateway::start("");
    let state = gw.ca().parent().unwrap().to_path_buf();
    let tmp = TempDir::new("examples");
    let mut seen = 0;
    let cluster = dir.join("cluster");
    let examples = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(&cluster).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"));
    for example in examples {
        let text: String = std::fs::read_to_string(&example)
            .unwrap()
            .lines()
            .map(|l| match l.split_once('=').map(|(k, _)| k.trim()) {
                Some("cert") => format!(
                    "cert = {:?}",
                    state.join("server.pem").display().to_string()
                ),
                Some("key") if l.contains(".pem") => {
                    format!("key = {:?}", state.join("server.key").display().to_string())
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = tmp.0.join(example.file_name().unwrap());
        std::fs::write(&path, text).unwrap();
        let out = support::gateway()
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
        seen += 1;
    }
    assert!(seen >= 5, "the two examples and the three cluster nodes");
    // The cluster example's NATS servers and HAProxy, checked by their own
    // programs.
    for i in 1..=3 {
        let conf = cluster.join(format!("nats-{i}.conf"));
        let out = Command::new("/usr/sbin/nats-server")
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .expect("nats-server: run tests/peers/install.sh");
        assert!(out.status.success(), "{}: {out:?}", conf.display());
    }
    let out = Command::new("/usr/sbin/haproxy")
        .args(["-c", "-f"])
        .arg(cluster.join("haproxy.cfg"))
        .output()
        .expect("haproxy: run tests/peers/install.sh");
    assert!(out.status.success(), "haproxy.cfg: {out:?}");
    // A bad one is refused with the key named and status 1.
    let tmp = TempDir::new("check");
    let bad = tmp.0.join("bad.toml");
    std::fs::write(&bad, "[namespace]\nhost = \"h\"\n[limits]\nlisteners = 3\n").unwrap();
    let out = support::gateway()
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listeners"));
}

#[tokio::test]
async fn sigterm_drains_splices_and_refuses_new_connections() {
    let gw = Gateway::start("[limits]\nshutdown_grace = 3\n");
    let mut ctl = listener(&gw, "hc1").await;
    let (mut sw, mut l) = pair(&gw, &mut ctl, "hc1").await;
    let admin = gw.admin.unwrap();
    assert_eq!(http(admin, "GET", "/healthz", &[], b"").await.0.status, 200);
    assert_eq!(http(admin, "GET", "/readyz", &[], b"").await.0.status, 200);
    let pid = gw.pid();
    let http_addr = gw.http;
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    // The listener's control channel is told the gateway is going away.
    let (op, _, data) = next(&mut ctl, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (op, &data[..2]),
        (OpCode::Close, &1001u16.to_be_bytes()[..])
    );
    // While draining, the admin endpoint says so; the process is still alive.
    assert_eq!(http(admin, "GET", "/readyz", &[], b"").await.0.status, 503);
    assert_eq!(http(admin, "GET", "/healthz", &[], b"").await.0.status, 200);
    // The established splice still carries data during the grace period.
    send_text(&mut sw, "during drain").await;
    assert_eq!(
        next(&mut l, Duration::from_secs(2)).await.unwrap().2,
        b"during drain"
    );
    // New connections are refused promptly (the listening sockets close
    // once the accept loops have stopped).
    let refused = loop {
        if tokio::net::TcpStream::connect(http_addr).await.is_err() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(2) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused, "new connections still accepted while draining");
    let status = gw.stop(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() <= Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn metrics_after_a_session() {
    let gw = Gateway::start("");
    let admin = gw.admin.unwrap();
    let mut ctl = listener(&gw, "hc1").await;
    let (mut s, mut l) = pair(&gw, &mut ctl, "hc1").await;
    send_text(&mut s, "12345").await;
    assert_eq!(
        next(&mut l, Duration::from_secs(5)).await.unwrap().2,
        b"12345"
    );
    // Both sides close: the splice ends and its bytes are counted.
    support::wsclient::close(&mut s, 1000, "").await;
    let _ = next(&mut l, Duration::from_secs(5)).await;
    support::wsclient::close(&mut l, 1000, "").await;
    // A refused token and a path without listeners.
    let bad = hybrid::sas::create(
        "http://localhost/hc1",
        support::gateway::ROOT,
        "wrong",
        4_000_000_000,
    );
    let (h, _) = ws(
        gw.http,
        "/$hc/hc1?sb-hc-action=listen",
        &[("ServiceBusAuthorization", &bad)],
    )
    .await;
    assert_eq!(h.status, 401);
    let (h, _) = http(
        gw.http,
        "GET",
        "/nobody/x",
        &[(
            "ServiceBusAuthorization",
            &support::gateway::token("nobody", support::gateway::ROOT, 600),
        )],
        b"",
    )
    .await;
    assert_eq!(h.status, 404);
    let mut text = String::new();
    for _ in 0..50 {
        let (head, body) = http(admin, "GET", "/metrics", &[], b"").await;
        assert_eq!(head.status, 200);
        text = String::from_utf8(body).unwrap();
        if text.contains(r#"direction="to_listener"} 5"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l = r#"namespace="localhost",entity="hc1",frontend="hybrid""#;
    for want in [
        format!("relay_active_listeners{{{l}}} 1"),
        format!(r#"relay_listener_connections_total{{{l},outcome="success"}} 1"#),
        format!(r#"relay_listener_connections_total{{{l},outcome="client_error"}} 1"#),
        format!(r#"relay_sender_connections_total{{{l},outcome="success"}} 1"#),
        format!("relay_rendezvous_seconds_count{{{l}}} 1"),
        format!(r#"relay_bytes_transferred_total{{{l},direction="to_listener"}} 5"#),
        format!("relay_active_connections{{{l}}} 0"),
        format!(r#"relay_rejected_tokens_total{{{l},reason="bad_signature"}} 1"#),
        r#"relay_sender_connections_total{namespace="localhost",entity="unknown",frontend="hybrid_http",outcome="client_error"} 1"#.to_string(),
    ] {
        assert!(text.contains(&want), "missing {want}\n{text}");
    }
    gw.stop_clean();
}

/// `check-config` names what is wrong with the TLS files, in one line:
/// missing, holding no certificate, or a certificate that is not the key's.
#[test]
fn check_config_refuses_tls_files_that_cannot_serve() {
    let gw = Gateway::start("");
    let state = gw.ca().parent().unwrap().to_path_buf();
    let (server_pem, server_key, ca_pem) = (
        state.join("server.pem"),
        state.join("server.key"),
        state.join("ca.pem"),
    );
    let tmp = TempDir::new("tls-check");
    let empty = tmp.0.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let check = |cert: &std::path::Path, key: &std::path::Path| {
        let cfg = tmp.0.join("tls.toml");
        std::fs::write(
            &cfg,
            format!(
                "[namespace]\nhost = \"h\"\n[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .unwrap();
        let out = support::gateway()
            .arg("check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    assert_eq!(check(&server_pem, &server_key).0, Some(0));
    for (cert, key, want) in [
        (tmp.0.join("missing.pem"), server_key.clone(), "missing.pem"),
        (empty.clone(), server_key.clone(), "[tls]"),
        (server_pem.clone(), empty.clone(), "empty.pem"),
        (ca_pem.clone(), server_key.clone(), "[tls]"),
    ] {
        let (code, err) = check(&cert, &key);
        assert_eq!(code, Some(1), "{}: {err}", cert.display());
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{want}: {err}"
        );
    }
    gw.stop_clean();
}

/// `token` and `forward` find their key alike: given, from `--key-file`,
/// or the embedded default's in the state directory, which must exist (a
/// client never makes a new one up). `token` wants a URI with a scheme;
/// `forward` names the address it cannot bind.
#[test]
fn token_and_forward_take_their_key_alike() {
    let run = |args: &[&str]| {
        let out = support::gateway().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    let empty = TempDir::new("nokey");
    let dir = empty.0.display().to_string();
    let (code, _, err) = run(&["token", "--uri", "http://localhost/a", "--state-dir", &dir]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no key in") && err.contains("default-rule.key"),
        "{err}"
    );
    assert!(
        !empty.0.join("default-rule.key").exists(),
        "no key was made up"
    );
    let (code, _, err) = run(&["token", "--uri", "localhost/a", "--key", "k"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--uri must name a scheme"), "{err}");
    let key_file = empty.0.join("key.txt");
    std::fs::write(&key_file, format!("{}\n", support::gateway::KEY)).unwrap();
    let (code, from_file, _) = run(&[
        "token",
        "--uri",
        "http://localhost/a",
        "--key-file",
        &key_file.display().to_string(),
        "--ttl",
        "60",
    ]);
    assert_eq!(code, Some(0));
    let t = hybrid::sas::Token::parse(&from_file).unwrap();
    assert!(t.signed_by(support::gateway::KEY) && t.key_name == support::gateway::ROOT);

    // forward against a gateway whose state directory holds the rule's key:
    // no key on the command line.
    let gw = Gateway::start("");
    let state = gw.ca().parent().unwrap().to_path_buf();
    std::fs::write(state.join("default-rule.key"), support::gateway::KEY).unwrap();
    // (the development CA comes from the same directory).
    let mut keyless = support::gateway();
    keyless
        .args(["forward", "--amqp", &gw.amqps.unwrap().to_string()])
        .args(["--relayed", &gw.relayed.unwrap().to_string()])
        .args(["--state-dir", &state.display().to_string()])
        .args(["--listen", "sb://localhost/keyless", "--to", "127.0.0.1:9"])
        .env("RUST_LOG", "info");
    let (_p, line, _) = support::spawn_ready(&mut keyless, "attached");
    assert!(line.contains("keyless"), "{line}");
    // A --local that is taken is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&[
        "forward",
        "--connect",
        "sb://localhost/keyless",
        "--local",
        &addr,
        "--key",
        "k",
        "--ca",
        &gw.ca().display().to_string(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("binding --local {addr}")), "{err}");
    gw.stop_clean();
}

/// The shipped systemd unit passes `systemd-analyze verify` (with its
/// binary path pointed at the one under test), and the commands the unit and
/// the container file run are ones the binary accepts.
#[test]
fn the_deployment_files_are_valid() {
    let deploy = support::root().join("fixtures/deploy");
    let unit = std::fs::read_to_string(deploy.join("relay-gateway.service")).unwrap();
    let bin = env!("CARGO_BIN_EXE_relay-gateway");
    let tmp = TempDir::new("unit");
    let path = tmp.0.join("relay-gateway.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/relay-gateway", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd) is installed by tests/peers/install.sh");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both run `serve --config FILE` (the unit with --log-format json): the
    // binary takes those arguments (checked with a configuration that binds
    // nothing it could collide with, stopped at once).
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/relay-gateway "))
        .unwrap();
    let docker = std::fs::read_to_string(deploy.join("Dockerfile")).unwrap();
    assert!(docker.contains(
        r#"ENTRYPOINT ["relay-gateway", "serve", "--config", "/etc/relay-gateway/gateway.toml"]"#
    ));
    let cfg = tmp.0.join("gateway.toml");
    std::fs::write(&cfg, support::gateway::BASE_CONFIG).unwrap();
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|a| {
            if a == "/etc/relay-gateway/gateway.toml" {
                cfg.display().to_string()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let mut child = support::gateway()
        .args(&args)
        .arg("--state-dir")
        .arg(tmp.0.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ready {"), "{line:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Before any traffic, `/metrics` shows its families with zero values for
/// the configured entities and the bound endpoints (it once showed only
/// `# EOF`).
#[tokio::test]
async fn metrics_show_zero_values_before_any_traffic() {
    let gw = Gateway::start(
        "[[hybrid_connection]]\npath = \"orders\"\n[[wcf_relay]]\npath = \"calc\"\ntype = \"NetTcp\"\n",
    );
    let (head, body) = http(gw.admin.unwrap(), "GET", "/metrics", &[], b"").await;
    assert_eq!(head.status, 200);
    let text = String::from_utf8_lossy(&body);
    for want in [
        r#"relay_active_listeners{namespace="localhost",entity="orders",frontend="hybrid"} 0"#,
        r#"relay_sender_connections_total{namespace="localhost",entity="orders",frontend="hybrid_http",outcome="success"} 0"#,
        r#"relay_bytes_transferred_total{namespace="localhost",entity="calc",frontend="wcf_relayed",direction="to_listener"} 0"#,
        r#"relay_listener_connections_total{namespace="localhost",entity="calc",frontend="wcf_amqp",outcome="success"} 0"#,
        r#"relay_accept_errors_total{namespace="localhost",endpoint="http"} 0"#,
        r#"relay_accept_errors_total{namespace="localhost",endpoint="admin"} 0"#,
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    gw.stop_clean();
}
