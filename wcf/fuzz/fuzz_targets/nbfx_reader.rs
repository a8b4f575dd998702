//! Fuzz target: see `properties::nbfx_reader`.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::nbfx_reader(data));
