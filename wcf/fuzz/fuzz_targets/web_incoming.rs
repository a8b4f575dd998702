//! Fuzz target: see `properties::web_incoming`.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::web_incoming(data));
