//! Fuzz target: see `properties::xml_to_nbfx`.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::xml_to_nbfx(data));
