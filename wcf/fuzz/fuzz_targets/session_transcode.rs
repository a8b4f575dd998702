//! Fuzz target: see `properties::session_transcode`.
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::session_transcode(data));
