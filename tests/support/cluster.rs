//! A cluster on loopback for black-box tests: nats-server processes with
//! JetStream (one, or three routed into a NATS cluster), gateway nodes that
//! share one TLS certificate (so that a client trusting one node's CA trusts
//! every node a listener is told to dial), and HAProxy in front.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::gateway::{Gateway, TempDir, BASE_CONFIG};

/// A nats-server, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    /// Client port.
    pub port: u16,
    args: Vec<String>,
}

impl NatsServer {
    fn spawn(args: Vec<String>, port: u16) -> NatsServer {
        let nats = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nats-server is missing: run tests/peers/install.sh (or tests/run)");
        let child = Command::new(nats)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = NatsServer {
            child: Some(child),
            port,
            args,
        };
        s.wait_listening();
        s
    }

    fn wait_listening(&self) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again with the same ports and store.
    pub fn restart(&mut self) {
        self.kill();
        *self = NatsServer::spawn(std::mem::take(&mut self.args), self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NATS servers with JetStream, and their store directory.
pub struct Nats {
    /// The servers.
    pub servers: Vec<NatsServer>,
    _dir: TempDir,
}

impl Nats {
    /// One server.
    pub fn single() -> Nats {
        Self::single_with(&[])
    }

    /// One server with `extra` options (`--user`, `--pass`, ...).
    pub fn single_with(extra: &[&str]) -> Nats {
        let dir = TempDir::new("nats");
        let port = free_port();
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        args.extend([
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.0.display().to_string(),
        ]);
        Nats {
            servers: vec![NatsServer::spawn(args, port)],
            _dir: dir,
        }
    }

    /// Three servers routed into one NATS cluster with JetStream.
    pub fn trio() -> Nats {
        let dir = TempDir::new("nats");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let args = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                    "-n".into(),
                    format!("nats-{i}"),
                    "-js".into(),
                    "-sd".into(),
                    dir.0.join(format!("n{i}")).display().to_string(),
                    "--cluster_name".into(),
                    "relay-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    routes.clone(),
                ];
                NatsServer::spawn(args, *port)
            })
            .collect();
        Nats { servers, _dir: dir }
    }

    /// Every server's URL, as a TOML array.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("\"{}\"", s.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }
}

/// The configuration of node `name`: [`BASE_CONFIG`], `[tls]` with the
/// shared certificate in `tls`, `[cluster]` on `nats` (a TOML array), and `extra`.
pub fn node_config(name: &str, nats: &str, tls: &TempDir, extra: &str) -> String {
    format!(
        "{BASE_CONFIG}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n[cluster]\nnats = {nats}\nnode = \"{name}\"\n",
        tls.0.join("server.pem").display(),
        tls.0.join("server.key").display(),
    )
}

/// Gateway nodes on one NATS, sharing the first node's certificate.
pub struct Nodes {
    /// The nodes, in start order (`a`, `b`, `c`, ...).
    pub nodes: Vec<Gateway>,
    /// The shared certificate and its CA.
    pub tls: TempDir,
    nats: String,
    extra: String,
    level: String,
}

impl Nodes {
    /// `count` nodes named `a`, `b`, ... on `nats`, each with `extra`
    /// config, logging at debug; returns once every node has joined.
    pub fn start(nats: &Nats, count: usize, extra: &str) -> Nodes {
        Self::start_logging(nats, count, extra, "debug")
    }

    /// The same, logging at `level` (benchmarks run at `info`).
    pub fn start_logging(nats: &Nats, count: usize, extra: &str, level: &str) -> Nodes {
        let tls = TempDir::new("cluster-tls");
        // A gateway without [tls] makes the development certificate; the
        // nodes share it.
        let maker = Gateway::start("");
        for f in ["ca.pem", "server.pem", "server.key"] {
            std::fs::copy(maker.dir.0.join("state").join(f), tls.0.join(f)).unwrap();
        }
        drop(maker);
        let mut n = Nodes {
            nodes: Vec::new(),
            tls,
            nats: nats.urls(),
            extra: extra.to_owned(),
            level: level.to_owned(),
        };
        for _ in 0..count {
            n.add();
        }
        for node in &n.nodes {
            wait_joined(node, Duration::from_secs(20));
        }
        n
    }

    /// Start one more node (not waiting for it to join).
    pub fn add(&mut self) -> &Gateway {
        self.add_with("")
    }

    /// The same, with `cluster` appended to its `[cluster]` table (such as
    /// `[cluster.auth]`).
    pub fn add_with(&mut self, cluster: &str) -> &Gateway {
        let name = ((b'a' + self.nodes.len() as u8) as char).to_string();
        let config = node_config(&name, &self.nats, &self.tls, &self.extra) + cluster;
        self.nodes
            .push(Gateway::start_logging(&config, &self.level));
        self.nodes.last().unwrap()
    }

    /// The shared CA.
    pub fn ca(&self) -> PathBuf {
        self.tls.0.join("ca.pem")
    }
}

/// `GET /readyz` of `gw`'s admin endpoint: the body.
pub fn readyz(gw: &Gateway) -> String {
    admin_get(gw, "/readyz")
}

/// `GET path` of `gw`'s admin endpoint: the body.
pub fn admin_get(gw: &Gateway, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(gw.admin.unwrap()) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

/// Wait until `gw` says it has joined the cluster.
pub fn wait_joined(gw: &Gateway, limit: Duration) {
    let start = Instant::now();
    loop {
        let r = readyz(gw);
        if r.trim() == "ready" {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "the node did not join: {r:?}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll `f` every 50 ms until it holds, for at most `limit`; the time it took.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// HAProxy in TCP mode, round robin over `backends`, killed on drop.
pub struct Haproxy {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Haproxy {
    /// Front `backends` on a fresh loopback port.
    pub fn start(backends: &[SocketAddr]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, a)| format!("    server node{i} {a} check inter 300ms fall 2 rise 2\n"))
            .collect();
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1m\n    timeout server 1m\n\
frontend public\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
backend nodes\n    balance roundrobin\n{servers}"
        );
        let path = dir.0.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("haproxy is missing: run tests/peers/install.sh (or tests/run)");
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually(Duration::from_secs(10), "haproxy listens", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
