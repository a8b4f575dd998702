//! The core never names a protocol (`src/main.rs`, "Design"): no file under
//! `src/relay/` mentions the protocol crates, the WebSocket or HTTP
//! libraries, or the front ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

#[test]
fn relay_core_names_no_protocol_type() {
    let dir = support::root().join("src/relay");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for forbidden in [
            "wcf::",
            "hybrid::",
            "fastwebsockets",
            "hyper",
            "frontend::",
            "tokio_rustls",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}",
                path.display()
            );
        }
        files += 1;
    }
    assert!(files >= 5);
}

/// Every `.rs` file under `src/{dir}`.
fn sources(dir: &str) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![support::root().join("src").join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

#[test]
fn the_cluster_names_no_protocol_and_client_and_server_are_siblings() {
    // The cluster's routes are as protocol-neutral as the core.
    let cluster = sources("cluster");
    assert!(cluster.len() >= 3);
    for (path, text) in &cluster {
        for forbidden in ["wcf::", "hybrid::", "fastwebsockets", "hyper", "frontend::"] {
            assert!(
                !text.contains(forbidden),
                "{} mentions {forbidden}",
                path.display()
            );
        }
    }
    // The pieces below both the front ends and `forward` know neither.
    for (path, text) in sources("transport") {
        for forbidden in ["crate::frontend", "crate::forward", "super::super"] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
    }
    // The relay client reaches the front ends' internals only for the
    // NMF session it shares with the one-way front end.
    for (path, text) in sources("forward") {
        for line in text.lines().filter(|l| l.contains("crate::frontend")) {
            assert!(
                line.contains("frontend::wcf::nmf::Session"),
                "{}: {line}",
                path.display()
            );
        }
    }
}
