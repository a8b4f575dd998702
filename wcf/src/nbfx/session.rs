//! [MC-NBFSE] in-band session dictionaries (wcf/PROTOCOL.md §12.4): the
//! StringTable that prefixes every msbinsession1 envelope, one table per
//! direction for the life of a framing session, odd wire ids `2i+1`, and the
//! `MaxSessionSize` quota (2048 bytes of MB31 length plus UTF-8, cumulative).

use std::collections::HashMap;

use super::fnv::BuildFnv;

use crate::{mbint, Error, Result};

/// The strings one side has announced so far in a session.
#[derive(Debug, Clone, Default)]
pub struct SessionDictionary {
    strings: Vec<String>,
    index: HashMap<String, u32, BuildFnv>,
    size: usize,
    max: usize,
    broken: bool,
}

impl SessionDictionary {
    /// An empty dictionary with the given quota in bytes.
    pub fn new(max: usize) -> Self {
        SessionDictionary {
            max,
            ..SessionDictionary::default()
        }
    }

    /// The string for an odd wire id.
    pub fn lookup(&self, wire_id: u32) -> Option<&str> {
        if wire_id % 2 != 1 {
            return None;
        }
        self.strings.get((wire_id / 2) as usize).map(String::as_str)
    }

    /// The odd wire id of a string already announced.
    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.index.get(text).copied()
    }

    /// Strings announced so far, in id order.
    pub fn strings(&self) -> &[String] {
        &self.strings
    }

    /// Read the StringTable at the start of an msbinsession1 envelope, adding
    /// its strings; returns the bytes it used. After any error the dictionary
    /// refuses further tables, as .NET's reader session does.
    pub fn read_table(&mut self, buf: &[u8]) -> Result<usize> {
        if self.broken {
            return Err(Error::Misplaced {
                offset: 0,
                rule: "session dictionary is invalid after an earlier error",
            });
        }
        let result = self.read_table_inner(buf);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn read_table_inner(&mut self, buf: &[u8]) -> Result<usize> {
        let (size, n) = mbint::decode(buf, 0)?.ok_or(Error::Truncated {
            offset: 0,
            what: "session string table size",
        })?;
        let size = size as usize;
        if self.size.saturating_add(size) > self.max {
            return Err(Error::TooLarge {
                offset: 0,
                what: "session string table",
                len: self.size.saturating_add(size),
                limit: self.max,
            });
        }
        let end = n + size;
        let table = buf.get(n..end).ok_or(Error::Truncated {
            offset: buf.len(),
            what: "session string table",
        })?;
        let mut pos = 0;
        while pos < table.len() {
            let rest = table.get(pos..).unwrap_or_default();
            let (len, m) = mbint::decode(rest, n + pos)?.ok_or(Error::Truncated {
                offset: n + pos,
                what: "session string length",
            })?;
            let len = len as usize;
            let bytes = rest.get(m..m + len).ok_or(Error::Truncated {
                offset: n + table.len(),
                what: "session string",
            })?;
            let text = std::str::from_utf8(bytes).map_err(|_| Error::BadText {
                offset: n + pos + m,
                what: "session string",
            })?;
            self.push(text.to_owned());
            pos += m + len;
        }
        self.size += size;
        Ok(end)
    }

    fn push(&mut self, text: String) -> u32 {
        let id = u32::try_from(self.strings.len())
            .unwrap_or(u32::MAX / 2)
            .saturating_mul(2)
            .saturating_add(1);
        self.index.entry(text.clone()).or_insert(id);
        self.strings.push(text);
        id
    }

    /// Writer side: the id of `text`, announcing it (into `announced`) when it
    /// is new and the quota allows; `None` when it must be written inline.
    pub fn announce(&mut self, text: &str, announced: &mut Vec<String>) -> Option<u32> {
        if let Some(id) = self.id_of(text) {
            return Some(id);
        }
        let cost = mbint::encoded_len(u32::try_from(text.len()).ok()?) + text.len();
        if self.size + cost > self.max {
            return None;
        }
        self.size += cost;
        announced.push(text.to_owned());
        Some(self.push(text.to_owned()))
    }

    /// Encode a StringTable for `strings` (the ones announced by one message).
    pub fn write_table(strings: &[String], out: &mut Vec<u8>) {
        let size: usize = strings
            .iter()
            .map(|s| mbint::encoded_len(u32::try_from(s.len()).unwrap_or(mbint::MAX)) + s.len())
            .sum();
        mbint::encode(u32::try_from(size).unwrap_or(mbint::MAX), out);
        for s in strings {
            mbint::encode(u32::try_from(s.len()).unwrap_or(mbint::MAX), out);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_table() {
        let bytes = [
            0x11, 0x06, b'a', b'c', b't', b'i', b'o', b'n', 0x09, b'I', b'n', b'v', b'e', b'n',
            b't', b'o', b'r', b'y', 0x56,
        ];
        let mut d = SessionDictionary::new(2048);
        assert_eq!(d.read_table(&bytes).unwrap(), 18);
        assert_eq!(d.lookup(1), Some("action"));
        assert_eq!(d.lookup(3), Some("Inventory"));
        let mut out = Vec::new();
        SessionDictionary::write_table(d.strings(), &mut out);
        assert_eq!(&out[..], &bytes[..18]);
    }

    #[test]
    fn quota_is_cumulative_and_breaks_the_session() {
        let mut d = SessionDictionary::new(10);
        assert!(d.read_table(&[0x05, 0x04, b'a', b'b', b'c', b'd']).is_ok());
        assert!(d
            .read_table(&[0x06, 0x05, b'a', b'b', b'c', b'd', b'e'])
            .is_err());
        assert!(d.read_table(&[0x00]).is_err());
    }

    #[test]
    fn writer_degrades_to_inline_when_full() {
        let mut d = SessionDictionary::new(8);
        let mut ann = Vec::new();
        assert_eq!(d.announce("abc", &mut ann), Some(1));
        assert_eq!(d.announce("abc", &mut ann), Some(1));
        assert_eq!(d.announce("xyz", &mut ann), None.or(Some(3)));
        assert_eq!(d.announce("toolong", &mut ann), None);
        assert_eq!(ann, vec!["abc".to_string(), "xyz".to_string()]);
    }
}
