//! Fuzz the [MC-NBFX] reader (with and without a session table), the XML
//! renderer and the element tree: no input may panic, and every document
//! that reads cleanly re-encodes to exactly its own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wcf::nbfx::{self, SessionDictionary};
use wcf::soap::Element;
use wcf::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::DEFAULT;
    if let Ok(again) = nbfx::reencode(data, None, limits) {
        assert_eq!(again, data);
    }
    let _ = nbfx::to_xml(data, limits, true);
    let _ = Element::decode(data, None, limits);
    let mut session = SessionDictionary::new(limits.max_session);
    let _ = nbfx::session_to_xml(data, &mut session, limits, false);
});
