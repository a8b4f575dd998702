//! Test support for the WCF relay: a blocking client of the relayed-connect
//! port built on the `wcf` crate (preamble, TLS trusting the gateway's
//! development CA, length-prefixed envelopes), the dial-back a listener makes
//! for a notice, and the rhea AMQP listener (`tests/peers/amqp/listener.js`)
//! driven as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use wcf::relay::{ConnectPreamble, Notice, OnewaySend, RelayedAccept, RelayedConnect};
use wcf::soap::Envelope;
use wcf::Limits;

use super::guid::Guid;

/// A blocking stream (plain or TLS).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A client config trusting the CA in `ca` (PEM).
pub fn tls_config(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Open a relayed connection: preamble with `via`, then TLS for `host` when
/// `tls` is given.
pub fn open(
    addr: SocketAddr,
    via: &str,
    tls: Option<(&Arc<ClientConfig>, &str)>,
) -> Box<dyn Stream> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut pre = Vec::new();
    ConnectPreamble {
        via: via.into(),
        tls: tls.is_some(),
    }
    .encode(&mut pre);
    tcp.write_all(&pre).unwrap();
    match tls {
        None => Box::new(tcp),
        Some((config, host)) => {
            let name = ServerName::try_from(host.to_owned()).unwrap();
            let conn = ClientConnection::new(config.clone(), name).unwrap();
            Box::new(StreamOwned::new(conn, tcp))
        }
    }
}

/// Write one length-prefixed message.
pub fn send(s: &mut dyn Stream, msg: &[u8]) {
    s.write_all(&(msg.len() as u32).to_le_bytes()).unwrap();
    s.write_all(msg).unwrap();
    s.flush().unwrap();
}

/// Read one length-prefixed envelope (`None` if the stream ended first).
pub fn receive(s: &mut dyn Stream) -> Option<Envelope> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut msg).ok()?;
    Some(Envelope::decode(&msg, Limits::DEFAULT).unwrap())
}

/// A client's RelayedConnect for `uri` with `token`, and the gateway's reply.
pub fn connect(
    addr: SocketAddr,
    tls: Option<(&Arc<ClientConfig>, &str)>,
    uri: &str,
    token: Option<String>,
) -> (Box<dyn Stream>, Envelope) {
    let mut s = open(addr, uri, tls);
    let msg = RelayedConnect {
        tracking_id: Some("11111111-2222-4333-8444-555555555555".into()),
        token,
        uri: uri.into(),
    }
    .to_envelope()
    .to_msbin1();
    send(&mut *s, &msg);
    let reply = receive(&mut *s).expect("a reply to RelayedConnect");
    (s, reply)
}

/// The notice inside a delivered data section.
pub fn notice(data: &[u8]) -> Notice {
    let wrapper =
        OnewaySend::from_envelope(&Envelope::decode(data, Limits::DEFAULT).unwrap()).unwrap();
    Notice::from_envelope(&Envelope::decode(&wrapper.inner, Limits::DEFAULT).unwrap()).unwrap()
}

/// The RelayedAccept the real SDK's listener answers `notice` with: it
/// reads the notice `Id` as a `System.Guid` and writes it back with
/// `Guid.ToString()` (hyphenated, lower case). An id that is not a GUID
/// fails the test, as it makes the SDK throw.
pub fn sdk_accept(notice: &Notice) -> RelayedAccept {
    let id = Guid::parse(&notice.id).expect("the notice id is a GUID");
    RelayedAccept { id: id.to_string() }
}

/// A listener's dial-back for `notice` (TLS for `host`), and the reply.
pub fn dial_back(
    notice: &Notice,
    config: &Arc<ClientConfig>,
    host: &str,
    via: &str,
) -> (Box<dyn Stream>, Envelope) {
    let addr = SocketAddr::from((notice.ip, notice.ip_port));
    let mut s = open(addr, via, Some((config, host)));
    let msg = sdk_accept(notice).to_envelope().to_msbin1();
    send(&mut *s, &msg);
    let reply = receive(&mut *s).expect("a reply to RelayedAccept");
    (s, reply)
}

/// The relay fault code of an envelope, if it is one.
pub fn fault_code(env: &Envelope) -> Option<String> {
    env.fault().map(|f| f.code.1)
}

/// The rhea listener process.
pub struct Rhea {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<serde_json::Value>,
}

impl Rhea {
    /// Start `count` link pairs on `address` with `token` against the
    /// gateway's AMQP endpoint; `extra` adds or overrides attach properties.
    pub fn start(
        amqps: SocketAddr,
        ca: &Path,
        address: &str,
        token: &str,
        count: usize,
        extra: serde_json::Value,
    ) -> Rhea {
        Self::spawn(amqps, false, ca, address, token, count, extra)
    }

    /// The same over WebSocket (`wsrelayedamqp`) on the HTTPS endpoint.
    pub fn over_websocket(
        https: SocketAddr,
        ca: &Path,
        address: &str,
        token: &str,
        extra: serde_json::Value,
    ) -> Rhea {
        Self::spawn(https, true, ca, address, token, 1, extra)
    }

    fn spawn(
        addr: SocketAddr,
        ws: bool,
        ca: &Path,
        address: &str,
        token: &str,
        count: usize,
        extra: serde_json::Value,
    ) -> Rhea {
        let script = super::root().join("tests/peers/amqp/listener.js");
        assert!(
            super::root()
                .join("tests/peers/amqp/node_modules/rhea")
                .exists(),
            "rhea is missing: run tests/peers/install.sh (or tests/run)"
        );
        let mut child = Command::new("node")
            .arg(script)
            .env("HOST", addr.ip().to_string())
            .env("PORT", addr.port().to_string())
            .env("WS", if ws { "1" } else { "" })
            .env("CA", ca)
            .env("ADDRESS", address)
            .env("TOKEN", token)
            .env("COUNT", count.to_string())
            .env("EXTRA", extra.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, events) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Rhea {
            child,
            stdin,
            events,
        }
    }

    /// The next event (panics after 20 s).
    pub fn next(&self) -> serde_json::Value {
        self.events
            .recv_timeout(Duration::from_secs(20))
            .expect("an event from the rhea listener")
    }

    /// The next event of kind `event`, skipping others.
    pub fn next_of(&self, event: &str) -> serde_json::Value {
        loop {
            let v = self.next();
            if v["event"] == event {
                return v;
            }
        }
    }

    /// The data section of the next delivered message.
    pub fn next_message(&self) -> Vec<u8> {
        let v = self.next_of("message");
        base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap()
    }

    /// The data of every message that arrives until none has for `quiet`.
    pub fn messages_until_quiet(&self, quiet: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(v) = self.events.recv_timeout(quiet) {
            if v["event"] == "message" {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(v["data"].as_str().unwrap())
                        .unwrap(),
                );
            }
        }
        out
    }

    /// Whether an event arrives within `wait`.
    pub fn quiet_for(&self, wait: Duration) -> bool {
        self.events.recv_timeout(wait).is_err()
    }
}

impl Drop for Rhea {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `relay-gateway forward` with the options for `gw` (its AMQP and relayed
/// endpoints, its CA, the all-rights rule) plus `args`.
pub fn forward(amqps: SocketAddr, relayed: SocketAddr, ca: &Path, args: &[&str]) -> Command {
    let mut c = super::gateway();
    c.arg("forward")
        .args([
            "--amqp",
            &amqps.to_string(),
            "--relayed",
            &relayed.to_string(),
        ])
        .args([
            "--key-name",
            super::gateway::ROOT,
            "--key",
            super::gateway::KEY,
        ])
        .arg("--ca")
        .arg(ca)
        .args(args)
        .env("RUST_LOG", "info");
    c
}
