//! A gateway process for black-box tests: started from a config with every
//! endpoint on port 0, addresses read from its `ready` line, stopped with
//! SIGTERM (and required to exit 0).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key of every rule in test configs.
pub const KEY: &str = "dGVzdGtleQ==";
/// The all-rights rule.
pub const ROOT: &str = "RootManageSharedAccessKey";

/// The namespace part of every test config: host `localhost`, rules
/// `RootManageSharedAccessKey` (all), `SendOnly`, `ListenOnly`, all with [`KEY`];
/// dynamic hybrid connections and WCF relays; every endpoint on port 0.
pub const BASE_CONFIG: &str = r#"
[namespace]
host = "localhost"
aliases = ["127.0.0.1"]
dynamic_hybrid_connections = true
dynamic_wcf_relays = true
[[namespace.rule]]
name = "RootManageSharedAccessKey"
key = "dGVzdGtleQ=="
rights = ["Listen", "Send", "Manage"]
[[namespace.rule]]
name = "SendOnly"
key = "dGVzdGtleQ=="
rights = ["Send"]
[[namespace.rule]]
name = "ListenOnly"
key = "dGVzdGtleQ=="
rights = ["Listen"]
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
admin = "127.0.0.1:0"
amqps = "127.0.0.1:0"
relayed = "127.0.0.1:0"
nettcp = "127.0.0.1:0"
nettcps = "127.0.0.1:0"
"#;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "relay-gateway-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running gateway.
pub struct Gateway {
    child: Option<Child>,
    /// The plain HTTP/WS endpoint.
    pub http: SocketAddr,
    /// The HTTPS/WSS endpoint.
    pub https: SocketAddr,
    /// The admin endpoint, when configured.
    pub admin: Option<SocketAddr>,
    /// The AMQP endpoint of WCF listeners, when configured.
    pub amqps: Option<SocketAddr>,
    /// The relayed-connect endpoint, when configured.
    pub relayed: Option<SocketAddr>,
    /// net.tcp for one-way senders, plain and with the TLS upgrade.
    pub nettcp: Option<SocketAddr>,
    /// net.tcp with the TLS upgrade.
    pub nettcps: Option<SocketAddr>,
    /// Its state directory (holds the development CA).
    pub dir: TempDir,
    log: Arc<Mutex<String>>,
}

impl Gateway {
    /// Start with [`BASE_CONFIG`] plus `extra` (more sections, or `[limits]`).
    pub fn start(extra: &str) -> Gateway {
        Self::start_with(&format!("{BASE_CONFIG}\n{extra}"))
    }

    /// Start with exactly `config`, logging at debug level.
    pub fn start_with(config: &str) -> Gateway {
        Self::start_logging(config, "debug")
    }

    /// Start with exactly `config`, logging at `level` (benchmarks run at
    /// `info`, as a production gateway does).
    pub fn start_logging(config: &str, level: &str) -> Gateway {
        let dir = TempDir::new("gw");
        let cfg = dir.0.join("gateway.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = super::gateway()
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.0.join("state"))
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let json = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("no ready line: {line:?}\n{}", log.lock().unwrap()));
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        let addr = |k: &str| v[k].as_str().map(|s| s.parse().unwrap());
        Gateway {
            http: addr("http").unwrap(),
            https: addr("https").unwrap_or_else(|| "127.0.0.1:1".parse().unwrap()),
            admin: addr("admin"),
            amqps: addr("amqps"),
            relayed: addr("relayed"),
            nettcp: addr("nettcp"),
            nettcps: addr("nettcps"),
            child: Some(child),
            dir,
            log,
        }
    }

    /// A configuration for a second gateway that takes this one's ports and
    /// certificate (copied into `keep`), as after a restart: [`BASE_CONFIG`]
    /// with the bound addresses and a `[tls]` section.
    pub fn restart_config(&self, keep: &TempDir) -> String {
        for f in ["ca.pem", "server.pem", "server.key"] {
            std::fs::copy(self.dir.0.join("state").join(f), keep.0.join(f)).unwrap();
        }
        let mut config = BASE_CONFIG.to_owned();
        for (name, addr) in [
            ("http", Some(self.http)),
            ("https", Some(self.https)),
            ("admin", self.admin),
            ("amqps", self.amqps),
            ("relayed", self.relayed),
            ("nettcp", self.nettcp),
            ("nettcps", self.nettcps),
        ] {
            config = config.replace(
                &format!("{name} = \"127.0.0.1:0\""),
                &format!("{name} = \"{}\"", addr.unwrap()),
            );
        }
        config.push_str(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            keep.0.join("server.pem").display(),
            keep.0.join("server.key").display()
        ));
        config
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Path of the development CA (when https is on).
    pub fn ca(&self) -> PathBuf {
        self.dir.0.join("state/ca.pem")
    }

    /// Send SIGTERM and wait (at most `limit`) for the exit status.
    pub fn stop(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                panic!("gateway did not stop within {limit:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop and require a clean exit within 15 s, and a log (at debug
    /// level) that never printed a key, a token or a signature.
    pub fn stop_clean(self) {
        let log = self.log.clone();
        let status = self.stop(Duration::from_secs(15));
        let log = log.lock().unwrap();
        assert!(status.success(), "gateway exit {status:?}\n{log}");
        for secret in [KEY, "SharedAccessSignature sr=", "sig="] {
            assert!(
                !log.contains(secret),
                "the gateway log contains {secret:?}:\n{log}"
            );
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A token for `http://localhost/{path}` by `rule`, valid `ttl` seconds
/// (negative for already expired).
pub fn token(path: &str, rule: &str, ttl: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    hybrid::sas::create(
        &format!("http://localhost/{path}"),
        rule,
        KEY,
        (now + ttl) as u64,
    )
}
