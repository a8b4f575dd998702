//! What the crate's integration tests share: the recorded conversations in
//! `fixtures/wcf`.

#![allow(clippy::unwrap_used)] // tests are exempt (house habit 5, `src/main.rs`)

use wcf::hexdump;

/// Every byte of one direction of an AMQP capture
/// (`fixtures/wcf/amqp/NAME`), in order.
pub fn amqp_capture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/wcf/amqp/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    hexdump::parse(&text)
        .unwrap()
        .into_iter()
        .flat_map(|c| c.bytes)
        .collect()
}
