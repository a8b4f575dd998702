//! The README's walkthroughs, run as written: the block between the
//! `<!-- quickstart -->` markers goes to bash line for line, except its two
//! install lines: `cargo install` is replaced by the binary under test, and
//! `npm install --prefix tests/peers/hc` is what `tests/peers/install.sh`
//! already ran; the block between the `<!-- cluster -->` markers ("Running a
//! cluster") runs with the binary under test and Debian's `/usr/sbin` on
//! the PATH. Both bind fixed ports (the embedded default's, and the
//! cluster example's), so they have a test binary of their own and take
//! turns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use support::gateway::TempDir;

/// The walkthroughs bind the same ports: one at a time.
static PORTS: Mutex<()> = Mutex::new(());

/// The lines of the README block between `<!-- name -->` markers.
fn block(name: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    readme
        .split_once(&format!("<!-- {name} -->"))
        .and_then(|(_, rest)| rest.split_once(&format!("<!-- /{name} -->")))
        .map(|(block, _)| block)
        .unwrap_or_else(|| panic!("the README marks its {name} block"))
        .lines()
        .filter(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// Run `script` with bash from the top of the checkout, `HOME` in `home`,
/// stopping on the first failure and never leaving a job running.
fn run(script: &str, home: &TempDir, limit: Duration) -> Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_relay-gateway"))
        .parent()
        .unwrap()
        .to_path_buf();
    let script = format!(
        "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nexport PATH={}:$PATH:/usr/sbin\n{script}",
        bin.display()
    );
    support::run_with_timeout(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(support::root())
            .env("HOME", &home.0)
            .env_remove("RELAY_GATEWAY_STATE")
            .env_remove("XDG_STATE_HOME"),
        limit,
    )
}

#[test]
fn the_quickstart_runs_as_written() {
    let _turn = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let lines = block("quickstart");
    assert!(
        lines.len() <= 15,
        "the quickstart has {} lines",
        lines.len()
    );
    let home = TempDir::new("quickstart");
    let node_modules = support::root().join("tests/peers/hc/node_modules");
    let mut script = String::new();
    let mut replaced = 0;
    for line in &lines {
        if line.starts_with("cargo install ") {
            // The binary under test is on the PATH.
            replaced += 1;
        } else if line.starts_with("npm install ") {
            // tests/peers/install.sh ran this very command.
            assert!(node_modules.join("hyco-ws").is_dir());
            replaced += 1;
        } else {
            script.push_str(line);
            script.push('\n');
        }
    }
    assert_eq!(replaced, 2, "{lines:?}");
    let out = run(&script, &home, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("echoed: hello"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(home
        .0
        .join(".local/state/relay-gateway/default-rule.key")
        .exists());
}

#[test]
fn the_cluster_walkthrough_runs_as_written() {
    let _turn = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let home = TempDir::new("cluster-walkthrough");
    let out = run(&block("cluster").join("\n"), &home, Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("echoed: hello")
            && stdout.contains("relay_cluster_members{namespace=\"localhost\",node=\"c\"} 3"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string("/tmp/relay-cluster/a.out").unwrap_or_default()
    );
}
