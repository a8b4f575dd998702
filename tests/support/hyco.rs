//! The Node.js Hybrid Connections SDKs (hyco-ws, hyco-https; installed in
//! `tests/peers/hc`) as processes, and curl, for the black-box tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gateway::{KEY, ROOT};

/// A Node.js process, killed on drop; its stdout lines are collected.
pub struct Node {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Run `script` of `tests/peers/hc` with `args`, trusting `ca`.
    pub fn spawn(script: &str, args: &[&str], ca: Option<&std::path::Path>) -> Node {
        let dir = super::root().join("tests/peers/hc");
        assert!(
            dir.join("node_modules/hyco-ws").exists(),
            "run tests/peers/install.sh"
        );
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ca) = ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = cmd.spawn().expect("node");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        Node { child, lines }
    }

    /// A hyco-ws echo listener (`ws-listener.js`, root key) on `path`
    /// at `base`, once its control channel is open.
    pub fn echo(base: &str, path: &str, name: &str, ca: Option<&std::path::Path>) -> Node {
        let l = Node::spawn("ws-listener.js", &[base, path, ROOT, KEY, name], ca);
        l.wait_for(&format!("listening {name}"), Duration::from_secs(10));
        l
    }

    pub fn wait_for(&self, line: &str, limit: Duration) {
        let start = Instant::now();
        while !self.lines.lock().unwrap().iter().any(|l| l == line) {
            if start.elapsed() > limit {
                let lines = self.lines.lock().unwrap();
                panic!(
                    "no {line:?} from node; first lines: {:?}",
                    &lines[..lines.len().min(5)]
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn count(&self, line: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sender(base: &str, path: &str, rounds: &str, ca: Option<&std::path::Path>) -> String {
    let mut cmd = Command::new("node");
    cmd.current_dir(super::root().join("tests/peers/hc")).args([
        "ws-sender.js",
        base,
        path,
        ROOT,
        KEY,
        rounds,
    ]);
    if let Some(ca) = ca {
        cmd.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let out = super::run_with_timeout(&mut cmd, Duration::from_secs(40));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn curl(args: &[&str]) -> String {
    let out = super::run_with_timeout(
        Command::new("curl")
            .args(["-sS", "--max-time", "30"])
            .args(args),
        Duration::from_secs(40),
    );
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
