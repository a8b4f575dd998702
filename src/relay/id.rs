//! GUIDs as the relay SDKs read and write them: every id the gateway hands a
//! peer that may come back (the WCF notice `Id`, the Hybrid Connections
//! rendezvous and request ids, tracking ids) is a random version-4 GUID
//! written in the hyphenated lower-case form, and an id a peer sends back
//! is compared by its 128-bit value, parsed from any text form
//! `System.Guid` accepts: 32 digits, hyphenated, in braces or in
//! parentheses, either case, with surrounding white space ignored. The
//! .NET SDKs parse the id they are given into a `Guid` and write it back with
//! `Guid.ToString()`, so the text that returns is not always the text sent.
//! (The hexadecimal-structure form `{0x…,0x…,…}` is not accepted; no SDK
//! writes it.)

use std::fmt;

use rand::RngCore;

/// A 128-bit GUID, held in the order its text form shows the digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(u128);

impl Guid {
    /// A fresh random GUID (version 4, RFC 4122 variant), as `Guid.NewGuid()`.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        let v = u128::from_be_bytes(b);
        // Version nibble 4 (bits 76..80), variant bits 10 (bits 62..64).
        let v = (v & !(0xF << 76)) | (0x4 << 76);
        Guid((v & !(0x3 << 62)) | (0x2 << 62))
    }

    /// Parse any text form `System.Guid` reads (see the module doc);
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let inner = match (t.as_bytes().first(), t.as_bytes().last()) {
            (Some(b'{'), Some(b'}')) | (Some(b'('), Some(b')')) => t.get(1..t.len() - 1)?,
            _ => t,
        };
        let digits: Vec<u8> = match inner.len() {
            32 if inner.len() == t.len() => inner.bytes().collect(),
            36 => {
                let groups: Vec<&str> = inner.split('-').collect();
                if groups.iter().map(|g| g.len()).ne([8, 4, 4, 4, 12]) {
                    return None;
                }
                groups.concat().into_bytes()
            }
            _ => return None,
        };
        let mut v: u128 = 0;
        for d in digits {
            v = (v << 4) | u128::from(char::from(d).to_digit(16)?);
        }
        Some(Guid(v))
    }
}

impl fmt::Display for Guid {
    /// The hyphenated lower-case form, as `Guid.ToString()` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xFFFF,
            (v >> 64) & 0xFFFF,
            (v >> 48) & 0xFFFF,
            v & 0xFFFF_FFFF_FFFF
        )
    }
}

/// On the cluster's bus a GUID is its hyphenated text.
impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Guid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Guid::parse(&text).ok_or_else(|| serde::de::Error::custom("not a GUID"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Guid;

    #[test]
    fn random_guids_are_version_4_in_the_hyphenated_form() {
        let g = Guid::random();
        let s = g.to_string();
        let parts: Vec<usize> = s.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(s
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f' | b'-')));
        assert_eq!(s.as_bytes()[14], b'4');
        assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(g, Guid::random());
        assert_eq!(Guid::parse(&s), Some(g));
    }

    #[test]
    fn every_dotnet_text_form_parses_to_the_same_value() {
        let d = "954138b9-fb45-44a4-2d1c-df7aa347bce3";
        let g = Guid::parse(d).unwrap();
        for form in [
            "954138b9fb4544a42d1cdf7aa347bce3",
            "954138B9FB4544A42D1CDF7AA347BCE3",
            "954138B9-FB45-44A4-2D1C-DF7AA347BCE3",
            "{954138b9-fb45-44a4-2d1c-df7aa347bce3}",
            "(954138B9-fb45-44a4-2d1c-df7aa347bce3)",
            "  954138b9-fb45-44a4-2d1c-df7aa347bce3\t",
        ] {
            assert_eq!(Guid::parse(form), Some(g), "{form}");
        }
        assert_eq!(g.to_string(), d);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "954138b9fb4544a42d1cdf7aa347bce",
            "954138b9fb4544a42d1cdf7aa347bce3a",
            "954138b9-fb4544a4-2d1c-df7aa347bce3",
            "954138b9-fb45-44a4-2d1c-df7aa347bcez",
            "{954138b9fb4544a42d1cdf7aa347bce3}",
            "{954138b9-fb45-44a4-2d1c-df7aa347bce3)",
            "+954138b-fb45-44a4-2d1c-df7aa347bce3",
            "954138b9-fb45-44a4-2d1c-df7aa347bce3_G0",
        ] {
            assert_eq!(Guid::parse(bad), None, "{bad:?}");
        }
    }
}
