//! The README's quickstart, run as written: the block between the
//! `<!-- quickstart -->` markers goes to bash line for line, except its two
//! install lines: `cargo install` is replaced by the binary under test, and
//! `npm install --prefix tests/peers/hc` is what `tests/peers/install.sh`
//! already ran. It binds the embedded default's fixed ports, so it has
//! a test binary of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::process::Command;
use std::time::Duration;

use support::gateway::TempDir;

#[test]
fn the_quickstart_runs_as_written() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let block = readme
        .split_once("<!-- quickstart -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /quickstart -->"))
        .map(|(block, _)| block)
        .expect("the README marks its quickstart");
    let lines: Vec<&str> = block.lines().filter(|l| !l.starts_with("```")).collect();
    assert!(
        lines.len() <= 15,
        "the quickstart has {} lines",
        lines.len()
    );
    let home = TempDir::new("quickstart");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_relay-gateway"))
        .parent()
        .unwrap()
        .to_path_buf();
    let node_modules = support::root().join("tests/peers/hc/node_modules");
    // The harness's own lines: stop on the first failure, and never leave
    // the gateway running.
    let mut script = String::from("set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    let mut replaced = 0;
    for line in &lines {
        if line.starts_with("cargo install ") {
            script.push_str(&format!("export PATH={}:$PATH\n", bin.display()));
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
    assert_eq!(replaced, 2, "{block}");
    let out = support::run_with_timeout(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(support::root())
            .env("HOME", &home.0)
            .env_remove("RELAY_GATEWAY_STATE")
            .env_remove("XDG_STATE_HOME"),
        Duration::from_secs(60),
    );
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
