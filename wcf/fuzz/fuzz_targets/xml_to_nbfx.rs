//! Fuzz XML text to binary XML: no input may panic, and whatever encodes
//! must read back cleanly through the binary reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wcf::nbfx::{self, SessionDictionary};
use wcf::Limits;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bin) = nbfx::from_xml(text) {
        nbfx::to_xml(&bin, Limits::DEFAULT.with_max_message(usize::MAX), false)
            .expect("our own encoding must decode");
    }
    let mut session = SessionDictionary::new(2048);
    if let Ok(bin) = nbfx::session_from_xml(text, &mut session) {
        let mut read = SessionDictionary::new(2048);
        nbfx::session_to_xml(&bin, &mut read, Limits::DEFAULT, false).expect("our own session encoding must decode");
    }
});
