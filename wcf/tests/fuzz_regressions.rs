//! Every fuzz crash, kept in `fixtures/wcf/fuzz/TARGET-HASH.bin`, replayed
//! through the same property its fuzz target checks (`wcf/fuzz/properties.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

#[path = "../fuzz/properties.rs"]
mod properties;

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wcf/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        match name.split('-').next() {
            Some("framing") => properties::framing(&data),
            Some("nbfx_reader") => properties::nbfx_reader(&data),
            Some("xml_to_nbfx") => properties::xml_to_nbfx(&data),
            Some("web_incoming") => properties::web_incoming(&data),
            Some("session_transcode") => properties::session_transcode(&data),
            Some("amqp") => properties::amqp(&data),
            Some("relayed") => properties::relayed(&data),
            _ => continue,
        }
        seen += 1;
    }
    assert!(seen >= 3);
}
