//! Fuzz target: see `properties::listener_session`.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::listener_session(data));
