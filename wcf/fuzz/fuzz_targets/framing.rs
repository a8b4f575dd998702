//! Fuzz the [MC-NMF] decoder and the server preamble machine: no input may
//! panic, records must be identical whether the input arrives whole or in
//! two pieces, and decoded records re-encode to the bytes they came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wcf::framing::preamble::{PreambleConfig, ServerPreamble};
use wcf::framing::{Decoder, Record};
use wcf::Limits;

fn decode(data: &[u8], split: usize) -> (Vec<Record>, bool) {
    let mut d = Decoder::new(Limits::DEFAULT.with_max_message(4096));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (whole, whole_err) = decode(data, data.len());
    let (parts, parts_err) = decode(data, split);
    assert_eq!(whole, parts);
    assert_eq!(whole_err, parts_err);
    let mut machine = ServerPreamble::new(PreambleConfig::default());
    for r in &whole {
        if machine.feed(r, 0).is_err() {
            break;
        }
    }
    if !whole_err {
        let mut again = Vec::new();
        for r in &whole {
            r.encode(&mut again);
        }
        // Whole records only; a trailing partial record is not re-encoded.
        assert_eq!(&data[..again.len()], &again[..]);
    }
});
