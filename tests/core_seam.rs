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
