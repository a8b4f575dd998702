//! Cross-checks of the `wcf` crate's binary XML with the independent Python
//! implementations PyPI `wcf` 0.5.5 and `pynettcp` 0.1.0, in both directions,
//! through `tests/peers/nbfx_crosscheck.py`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use std::time::Duration;

#[test]
fn binary_xml_agrees_with_python_wcf_and_pynettcp() {
    let mut cases: Vec<_> = std::fs::read_dir(support::root().join("fixtures/wcf/xml"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8);
    let out = support::run_with_timeout(
        std::process::Command::new(support::peer_python())
            .arg(support::root().join("tests/peers/nbfx_crosscheck.py"))
            .arg(env!("CARGO_BIN_EXE_relay-gateway"))
            .args(&cases),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
}
