//! Shared helpers of the black-box tests: where the binary, the fixtures and
//! the installed peers are, and running a command with a deadline.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod gateway;
/// The gateway's own GUID type, to read and write ids as the SDKs do.
#[path = "../../src/relay/id.rs"]
#[allow(unused_imports)] // its unit tests also run here, in microseconds
pub mod guid;
pub mod hc;
pub mod hyco;
pub mod nettcp;
pub mod oneway;
pub mod relayed;
pub mod wsclient;

/// The gateway binary under test.
pub fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay-gateway"))
}

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where `tests/peers/install.sh` put the peers.
pub fn peers() -> PathBuf {
    root().join("target/peers")
}

/// The Python of the peers' virtual environment (panics with the fix if absent).
pub fn peer_python() -> PathBuf {
    let py = peers().join("venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run tests/peers/install.sh (or tests/run)",
        py.display()
    );
    py
}

/// Run `cmd` to completion, killing it after `limit`, with everything it
/// started (it leads its own process group, so that a script's background
/// jobs cannot keep its output open). Output is drained by threads as it
/// comes, so a chatty child cannot block on a full pipe.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} timed out after {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` and wait for its first stdout line (a readiness line), which
/// must start with `expect`; returns the process, the line, and the rest of
/// its stdout.
pub fn spawn_ready(cmd: &mut Command, expect: &str) -> (Proc, String, BufReader<ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let proc = Proc(child);
    assert!(
        line.starts_with(expect),
        "{cmd:?} printed {line:?}, expected {expect:?}"
    );
    (proc, line.trim().to_owned(), out)
}

/// The Mono WCF peer (`tests/peers/MonoPeer.exe`) with `args`.
pub fn mono(args: &[&str]) -> Command {
    let mut c = Command::new("mono");
    c.arg(peers().join("MonoPeer.exe")).args(args);
    c
}

/// The plain HTTP origin server of `tests/peers/http_origin.py` on a free
/// port, once ready; the process and its port.
pub fn http_origin() -> (Proc, u16) {
    let port = free_port();
    let script = root().join("tests/peers/http_origin.py");
    let (p, _, _) = spawn_ready(
        Command::new("python3").arg(script).arg(port.to_string()),
        "ready",
    );
    (p, port)
}

/// The Mono host behind the relay (`relayhost` mode); returns it and, per
/// service (calc, blob, chat), the local port it listens on and its public port.
pub fn mono_relay_host() -> (Proc, Vec<(u16, u16)>) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let args: Vec<String> = ports.iter().map(|(l, p)| format!("{l}:{p}")).collect();
    let (host, _, _) = spawn_ready(
        &mut mono(&["relayhost", &args[0], &args[1], &args[2]]),
        "ready",
    );
    (host, ports)
}

/// What a Mono client run (`MonoPeer.exe` with `args`) printed.
pub fn mono_client(args: &[&str]) -> String {
    let out = run_with_timeout(&mut mono(args), Duration::from_secs(60));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Mono client's calls through the public ports of
/// [`mono_relay_host`]'s services (calc, blob, chat) over `route`:
/// request/reply, a duplex callback, and 10 MB Streamed.
pub fn mono_calls(ports: &[(u16, u16)], route: &str) {
    let uri = |i: usize, name: &str| format!("net.tcp://127.0.0.1:{}/{name}", ports[i].1);
    assert_eq!(
        mono_client(&["calc", &uri(0, "calc")]),
        "Echo hello from mono\nAdd 42\nLastNote noted by mono\n"
    );
    assert_eq!(mono_client(&["chat", &uri(2, "chat")]), "Heard heard hi\n");
    let started = Instant::now();
    let blob = mono_client(&["blob", &uri(1, "blob"), "10000000"]);
    assert!(blob.starts_with("blob 10000000 "), "{blob}");
    eprintln!("10 MB streamed through {route} in {:?}", started.elapsed());
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} for process {pid}"))
}

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// How many descriptors a process has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768 and up on these machines),
    // so that no connection's source port and no port-0 bind can take it
    // between this check and its use (with many processes connecting at
    // once, an ephemeral one was taken so); and away from the fixed ports
    // of the README's walkthroughs (9080-9443, 10xxx-12xxx, 14222-16234).
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..4000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20000 + (start.wrapping_add(n) % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 31999")
}
