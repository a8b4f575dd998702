//! The MultiByteInt31 shared by [MC-NMF], [MC-NBFX] and [MC-NBFSE]
//! (wcf/PROTOCOL.md §12.1): 7-bit groups, least significant first, at most
//! five bytes, value at most `0x7FFF_FFFF`; the encoder always writes the
//! minimal form.

use crate::{Error, Result};

/// Largest value a MultiByteInt31 can carry.
pub const MAX: u32 = 0x7FFF_FFFF;

/// Decode an MB31 at the start of `buf`. Returns `Ok(None)` when `buf` ends
/// before the integer does, otherwise the value and the bytes it used.
/// `offset` is only used for error reporting.
pub fn decode(buf: &[u8], offset: usize) -> Result<Option<(u32, usize)>> {
    let mut value: u32 = 0;
    for (i, &b) in buf.iter().enumerate().take(5) {
        if i == 4 && b & 0xF8 != 0 {
            return Err(Error::BadMbInt { offset });
        }
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 5 {
        Err(Error::BadMbInt { offset })
    } else {
        Ok(None)
    }
}

/// Append the minimal MB31 encoding of `value` (which must be at most [`MAX`];
/// larger values are clamped, since no caller can produce them from a length
/// that fits in memory limits of this crate).
pub fn encode(value: u32, out: &mut Vec<u8>) {
    let mut v = value.min(MAX);
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Number of bytes [`encode`] writes for `value`.
pub fn encoded_len(value: u32) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0xFFF_FFFF => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let cases: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x01]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x80, 0x80, 0x01]),
            (0xB0, &[0xB0, 0x01]),
            (0x7FFF_FFFF, &[0xFF, 0xFF, 0xFF, 0xFF, 0x07]),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            encode(*v, &mut out);
            assert_eq!(&out, bytes, "encode {v:#x}");
            assert_eq!(encoded_len(*v), bytes.len());
            assert_eq!(decode(bytes, 0).unwrap(), Some((*v, bytes.len())));
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut], 0).unwrap(), None);
            }
        }
    }

    #[test]
    fn rejects_out_of_range() {
        assert!(decode(&[0xFF, 0xFF, 0xFF, 0xFF, 0x08], 3).is_err());
        assert!(decode(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trip(v in 0u32..=MAX) {
            let mut out = Vec::new();
            encode(v, &mut out);
            proptest::prop_assert_eq!(decode(&out, 0).unwrap(), Some((v, out.len())));
        }
    }
}
