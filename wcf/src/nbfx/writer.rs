//! Binary XML writer that picks the records .NET's `XmlBinaryWriter` picks
//! (wcf/PROTOCOL.md §12.2, §4), so that envelopes built here match WCF's
//! byte for byte where WCF's choice is known:
//!
//! * names and namespaces of the SOAP and WS-Addressing vocabulary
//!   ([`Vocab::Soap`]) use the static dictionary when it has them, as WCF's
//!   message writer does (it passes `XmlDictionaryString`s from
//!   `ServiceModelStringsVersion1`);
//! * every other name ([`Vocab::Plain`]) is written inline, as .NET does for
//!   plain strings, or announced in the session dictionary when the writer
//!   has one (as WCF does for DataContract names under msbinsession1), falling
//!   back to inline once the session quota is spent;
//! * one-letter prefixes `a`..`z` use the prefix-letter records;
//! * strings: `""` EmptyText, `"0"`/`"1"` Zero/OneText, otherwise Chars8/16/32
//!   by UTF-8 length, or UnicodeChars when UTF-8 is more than twice the UTF-16
//!   length; integers take the narrowest integer record;
//! * the last text before an end tag takes the WithEndElement form.

use super::record::{write_string, Attribute, Element, Prefix, Str, Text, Width, Xmlns};
use super::text::parse_guid;
use super::{dictionary, SessionDictionary};

/// WS-Addressing 1.0 namespace.
pub const WSA10: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Addressing 1.0 anonymous address.
pub const WSA_ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// Which dictionary a name may come from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocab {
    /// SOAP / WS-Addressing structure: the static dictionary.
    Soap,
    /// Application names: the session dictionary, if any, else inline.
    Plain,
}

/// Writes one binary XML document.
#[derive(Debug)]
pub struct Writer<'s> {
    out: Vec<u8>,
    session: Option<&'s mut SessionDictionary>,
    announced: Vec<String>,
    /// Position of the type byte of a text record that may still take the
    /// WithEndElement form.
    open_text: Option<usize>,
}

impl Default for Writer<'static> {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer<'static> {
    /// A writer for msbin1 (no session dictionary).
    pub fn new() -> Self {
        Writer {
            out: Vec::with_capacity(256),
            session: None,
            announced: Vec::new(),
            open_text: None,
        }
    }
}

impl<'s> Writer<'s> {
    /// A writer for msbinsession1 that announces new strings in `session`
    /// (the writer side's dictionary for this framing session).
    pub fn with_session(session: &'s mut SessionDictionary) -> Self {
        Writer {
            out: Vec::with_capacity(256),
            session: Some(session),
            announced: Vec::new(),
            open_text: None,
        }
    }

    fn name<'t>(&mut self, text: &'t str, vocab: Vocab) -> Str<'t> {
        let dict = match vocab {
            Vocab::Soap => dictionary::id_of(text),
            Vocab::Plain => match self.session.as_deref_mut() {
                Some(s) => s.announce(text, &mut self.announced),
                None => None,
            },
        };
        Str { text, dict }
    }

    fn prefix(p: &str) -> Prefix<'_> {
        match p.as_bytes() {
            [] => Prefix::None,
            [c @ b'a'..=b'z'] => Prefix::Letter(c - b'a'),
            _ => Prefix::Explicit(p),
        }
    }

    /// Start an element.
    pub fn start_element(&mut self, prefix: &str, local: &str, vocab: Vocab) {
        self.open_text = None;
        let name = self.name(local, vocab);
        Element {
            prefix: Self::prefix(prefix),
            name,
        }
        .encode(&mut self.out);
    }

    /// Declare a namespace (`prefix` "" for the default namespace).
    pub fn xmlns(&mut self, prefix: &str, ns: &str, vocab: Vocab) {
        self.open_text = None;
        let ns = self.name(ns, vocab);
        Xmlns {
            prefix: (!prefix.is_empty()).then_some(prefix),
            ns,
        }
        .encode(&mut self.out);
    }

    /// An attribute with a typed value.
    pub fn attribute(&mut self, prefix: &str, local: &str, vocab: Vocab, value: &Text<'_>) {
        self.open_text = None;
        let name = self.name(local, vocab);
        Attribute {
            prefix: Self::prefix(prefix),
            name,
            value: *value,
        }
        .encode(&mut self.out);
    }

    /// An attribute with a string value (chosen like [`Writer::text_str`]).
    pub fn attribute_str(&mut self, prefix: &str, local: &str, vocab: Vocab, value: &str) {
        with_string_text(value, |t| self.attribute(prefix, local, vocab, t));
    }

    /// A text record with a typed value.
    pub fn text(&mut self, value: &Text<'_>) {
        self.open_text = Some(self.out.len());
        value.encode(false, &mut self.out);
    }

    /// A string, as .NET writes a plain string.
    pub fn text_str(&mut self, value: &str) {
        with_string_text(value, |t| self.text(t));
    }

    /// A string that WCF writes as an `XmlDictionaryString`: DictionaryText
    /// from the static dictionary, else from the session dictionary (when this
    /// writer has one), else as a plain string.
    pub fn text_dict(&mut self, value: &str) {
        let id = dictionary::id_of(value).or_else(|| match self.session.as_deref_mut() {
            Some(s) => s.announce(value, &mut self.announced),
            None => None,
        });
        match id {
            Some(id) => self.text(&Text::Dict(Str {
                text: value,
                dict: Some(id),
            })),
            None => self.text_str(value),
        }
    }

    /// The text content of an element named `{ns}local`, as WCF writes it
    /// in message headers: `wsa:Action` and `wsa:To` text and the
    /// WS-Addressing anonymous URI as dictionary strings ([`Writer::text_dict`]),
    /// `urn:uuid:` identifiers in WS-Addressing elements as UniqueIdText,
    /// anything else as a plain string.
    pub fn element_text(&mut self, ns: &str, local: &str, value: &str) {
        let wsa = ns == WSA10;
        if wsa && (local == "Action" || local == "To") || value == WSA_ANONYMOUS {
            self.text_dict(value);
        } else if let Some(id) = value
            .strip_prefix("urn:uuid:")
            .filter(|_| wsa)
            .and_then(parse_guid)
        {
            self.text(&Text::UniqueId(id));
        } else {
            self.text_str(value);
        }
    }

    /// An integer in the narrowest record .NET uses.
    pub fn int(&mut self, v: i64) {
        self.text(&int_text(v));
    }

    /// Binary data (Bytes8/16/32Text; EmptyText when empty).
    pub fn bytes(&mut self, data: &[u8]) {
        if data.is_empty() {
            self.text(&Text::Empty);
        } else {
            self.text(&Text::Bytes(data, Width::for_len(data.len())));
        }
    }

    /// A comment.
    pub fn comment(&mut self, text: &str) {
        self.open_text = None;
        self.out.push(0x02);
        write_string(text, &mut self.out);
    }

    /// End the current element.
    pub fn end_element(&mut self) {
        match self.open_text.take() {
            Some(pos) => {
                if let Some(b) = self.out.get_mut(pos) {
                    *b += 1;
                }
            }
            None => self.out.push(0x01),
        }
    }

    /// The finished document; under a session, prefixed by the StringTable of
    /// the strings this document announced.
    pub fn finish(self) -> Vec<u8> {
        if self.session.is_none() {
            return self.out;
        }
        let mut doc = Vec::with_capacity(self.out.len() + 16);
        SessionDictionary::write_table(&self.announced, &mut doc);
        doc.extend_from_slice(&self.out);
        doc
    }
}

/// Call `f` with the text record .NET writes for a plain string (the
/// UnicodeChars form needs the UTF-16 bytes built on the spot).
pub fn with_string_text<R>(value: &str, f: impl FnOnce(&Text<'_>) -> R) -> R {
    match value {
        "" => f(&Text::Empty),
        "0" => f(&Text::Zero),
        "1" => f(&Text::One),
        _ => {
            let utf16 = value.encode_utf16().count();
            if value.len() > 2 * utf16 {
                let bytes: Vec<u8> = value.encode_utf16().flat_map(u16::to_le_bytes).collect();
                f(&Text::Unicode(&bytes, Width::for_len(bytes.len())))
            } else {
                f(&Text::Chars(value, Width::for_len(value.len())))
            }
        }
    }
}

/// The narrowest integer record for `v` (§2.4).
pub fn int_text(v: i64) -> Text<'static> {
    match v {
        0 => Text::Zero,
        1 => Text::One,
        _ => {
            if let Ok(b) = i8::try_from(v) {
                Text::Int8(b)
            } else if let Ok(s) = i16::try_from(v) {
                Text::Int16(s)
            } else if let Ok(i) = i32::try_from(v) {
                Text::Int32(i)
            } else {
                Text::Int64(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nbfs_spec_example() {
        // [MC-NBFS] §3 example, built through the writer.
        let mut w = Writer::new();
        w.start_element("s", "Envelope", Vocab::Soap);
        w.xmlns("a", "http://www.w3.org/2005/08/addressing", Vocab::Soap);
        w.xmlns("s", "http://www.w3.org/2003/05/soap-envelope", Vocab::Soap);
        w.start_element("s", "Header", Vocab::Soap);
        w.start_element("a", "Action", Vocab::Soap);
        w.attribute_str("s", "mustUnderstand", Vocab::Soap, "1");
        w.text_str("action");
        w.end_element();
        w.end_element();
        w.start_element("s", "Body", Vocab::Soap);
        w.start_element("", "Inventory", Vocab::Plain);
        w.text_str("0");
        w.end_element();
        w.end_element();
        w.end_element();
        let expect = [
            0x56, 0x02, 0x0b, 0x01, 0x61, 0x06, 0x0b, 0x01, 0x73, 0x04, 0x56, 0x08, 0x44, 0x0a,
            0x1e, 0x00, 0x82, 0x99, 0x06, 0x61, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x01, 0x56, 0x0e,
            0x40, 0x09, 0x49, 0x6e, 0x76, 0x65, 0x6e, 0x74, 0x6f, 0x72, 0x79, 0x81, 0x01, 0x01,
        ];
        assert_eq!(w.finish(), expect);
    }

    #[test]
    fn session_writer_announces_plain_names_once() {
        let mut dict = SessionDictionary::new(2048);
        let first = {
            let mut w = Writer::with_session(&mut dict);
            w.start_element("", "Inventory", Vocab::Plain);
            w.end_element();
            w.finish()
        };
        assert_eq!(
            first,
            [0x0a, 0x09, b'I', b'n', b'v', b'e', b'n', b't', b'o', b'r', b'y', 0x42, 0x01, 0x01]
        );
        let second = {
            let mut w = Writer::with_session(&mut dict);
            w.start_element("", "Inventory", Vocab::Plain);
            w.end_element();
            w.finish()
        };
        assert_eq!(second, [0x00, 0x42, 0x01, 0x01]);
    }
}
