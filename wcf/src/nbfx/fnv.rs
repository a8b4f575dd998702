//! FNV-1a, the hash of the dictionaries' string maps: short strings, looked
//! up for every name written, where SipHash showed in profiles. The maps
//! are small and bounded (487 static strings; a session dictionary holds
//! at most `max_session` bytes), so crafted collisions cannot cost much.

use std::hash::{BuildHasherDefault, Hasher};

/// The FNV-1a 64-bit state.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` hasher builder for [`Fnv`].
pub type BuildFnv = BuildHasherDefault<Fnv>;
