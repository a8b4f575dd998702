//! [MC-NBFX] records as values (wcf/PROTOCOL.md §12.2): what the reader
//! yields and what the raw encoder writes back byte for byte. Each record
//! keeps the exact form it had on the wire (dictionary or inline string,
//! one-letter prefix form or explicit prefix, text width), so decoding then
//! re-encoding reproduces the input.

use crate::mbint;

/// A name, namespace or text string together with how it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str<'a> {
    /// The resolved text.
    pub text: &'a str,
    /// The dictionary wire id when it was written as a DictionaryString
    /// (even: static, odd: session); `None` for an inline string.
    pub dict: Option<u32>,
}

impl<'a> Str<'a> {
    /// An inline string.
    pub fn inline(text: &'a str) -> Self {
        Str { text, dict: None }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self.dict {
            Some(id) => mbint::encode(id, out),
            None => write_string(self.text, out),
        }
    }
}

/// Append an inline NBFX string: MB31 byte length, then UTF-8.
pub fn write_string(text: &str, out: &mut Vec<u8>) {
    mbint::encode(u32::try_from(text.len()).unwrap_or(mbint::MAX), out);
    out.extend_from_slice(text.as_bytes());
}

/// How an element or attribute prefix was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix<'a> {
    /// No prefix (the Short forms).
    None,
    /// A one-letter prefix `a`..=`z` folded into the record type (index 0..=25).
    Letter(u8),
    /// An explicit prefix string.
    Explicit(&'a str),
}

const LETTERS: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z",
];

/// The one-letter prefix string for index 0..=25.
pub fn letter(index: u8) -> &'static str {
    LETTERS.get(index as usize).copied().unwrap_or("")
}

impl Prefix<'_> {
    /// The prefix text ("" for none).
    pub fn as_str(&self) -> &str {
        match self {
            Prefix::None => "",
            Prefix::Letter(i) => letter(*i),
            Prefix::Explicit(p) => p,
        }
    }
}

/// Byte width of a length-prefixed text record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// uint8 length.
    W8,
    /// uint16 length.
    W16,
    /// int32 length.
    W32,
}

impl Width {
    /// The narrowest width that can carry `len`.
    pub fn for_len(len: usize) -> Width {
        if len <= 0xFF {
            Width::W8
        } else if len <= 0xFFFF {
            Width::W16
        } else {
            Width::W32
        }
    }

    fn offset(self) -> u8 {
        match self {
            Width::W8 => 0,
            Width::W16 => 2,
            Width::W32 => 4,
        }
    }

    fn write_len(self, len: usize, out: &mut Vec<u8>) {
        match self {
            Width::W8 => out.push(u8::try_from(len).unwrap_or(u8::MAX)),
            Width::W16 => {
                out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes())
            }
            Width::W32 => {
                out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_le_bytes())
            }
        }
    }
}

/// A text record's value (§2.2, 0x80..=0xBD).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Text<'a> {
    /// "0"
    Zero,
    /// "1"
    One,
    /// "false"
    False,
    /// "true"
    True,
    /// Int8Text.
    Int8(i8),
    /// Int16Text.
    Int16(i16),
    /// Int32Text.
    Int32(i32),
    /// Int64Text.
    Int64(i64),
    /// FloatText.
    Float(f32),
    /// DoubleText.
    Double(f64),
    /// DecimalText: the 16 bytes of a .NET decimal.
    Decimal([u8; 16]),
    /// DateTimeText: `DateTime.ToBinary()`.
    DateTime(u64),
    /// Chars8/16/32Text (UTF-8).
    Chars(&'a str, Width),
    /// Bytes8/16/32Text.
    Bytes(&'a [u8], Width),
    /// StartListText.
    StartList,
    /// EndListText.
    EndList,
    /// EmptyText.
    Empty,
    /// DictionaryText.
    Dict(Str<'a>),
    /// UniqueIdText (Guid byte layout).
    UniqueId([u8; 16]),
    /// TimeSpanText (ticks).
    TimeSpan(i64),
    /// GuidText (Guid byte layout).
    Guid([u8; 16]),
    /// UInt64Text.
    UInt64(u64),
    /// BoolText.
    Bool(bool),
    /// UnicodeChars8/16/32Text: raw UTF-16LE bytes.
    Unicode(&'a [u8], Width),
    /// QNameDictionaryText: prefix index and local name.
    QName(u8, Str<'a>),
}

impl Text<'_> {
    /// The even record type byte (the form without end element).
    pub fn type_byte(&self) -> u8 {
        match self {
            Text::Zero => 0x80,
            Text::One => 0x82,
            Text::False => 0x84,
            Text::True => 0x86,
            Text::Int8(_) => 0x88,
            Text::Int16(_) => 0x8A,
            Text::Int32(_) => 0x8C,
            Text::Int64(_) => 0x8E,
            Text::Float(_) => 0x90,
            Text::Double(_) => 0x92,
            Text::Decimal(_) => 0x94,
            Text::DateTime(_) => 0x96,
            Text::Chars(_, w) => 0x98 + w.offset(),
            Text::Bytes(_, w) => 0x9E + w.offset(),
            Text::StartList => 0xA4,
            Text::EndList => 0xA6,
            Text::Empty => 0xA8,
            Text::Dict(_) => 0xAA,
            Text::UniqueId(_) => 0xAC,
            Text::TimeSpan(_) => 0xAE,
            Text::Guid(_) => 0xB0,
            Text::UInt64(_) => 0xB2,
            Text::Bool(_) => 0xB4,
            Text::Unicode(_, w) => 0xB6 + w.offset(),
            Text::QName(..) => 0xBC,
        }
    }

    /// Append the record: type byte (plus one when `end_element`), then body.
    pub fn encode(&self, end_element: bool, out: &mut Vec<u8>) {
        out.push(self.type_byte() + u8::from(end_element));
        match self {
            Text::Zero
            | Text::One
            | Text::False
            | Text::True
            | Text::StartList
            | Text::EndList
            | Text::Empty => {}
            Text::Int8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Int16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Int32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Int64(v) | Text::TimeSpan(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Float(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::DateTime(v) | Text::UInt64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Text::Decimal(b) | Text::UniqueId(b) | Text::Guid(b) => out.extend_from_slice(b),
            Text::Chars(s, w) => {
                w.write_len(s.len(), out);
                out.extend_from_slice(s.as_bytes());
            }
            Text::Bytes(b, w) | Text::Unicode(b, w) => {
                w.write_len(b.len(), out);
                out.extend_from_slice(b);
            }
            Text::Dict(s) => s.encode(out),
            Text::Bool(b) => out.push(u8::from(*b)),
            Text::QName(p, s) => {
                out.push(*p);
                s.encode(out);
            }
        }
    }
}

/// An element record (0x40..=0x77).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// The prefix form.
    pub prefix: Prefix<'a>,
    /// The local name.
    pub name: Str<'a>,
}

impl Element<'_> {
    /// Append the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let dict = self.name.dict.is_some();
        match self.prefix {
            Prefix::None => out.push(if dict { 0x42 } else { 0x40 }),
            Prefix::Letter(i) => out.push(if dict { 0x44 } else { 0x5E } + i),
            Prefix::Explicit(p) => {
                out.push(if dict { 0x43 } else { 0x41 });
                write_string(p, out);
            }
        }
        self.name.encode(out);
    }
}

/// An attribute record (0x04..=0x07, 0x0C..=0x3F).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attribute<'a> {
    /// The prefix form.
    pub prefix: Prefix<'a>,
    /// The local name.
    pub name: Str<'a>,
    /// The value.
    pub value: Text<'a>,
}

impl Attribute<'_> {
    /// Append the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let dict = self.name.dict.is_some();
        match self.prefix {
            Prefix::None => out.push(if dict { 0x06 } else { 0x04 }),
            Prefix::Letter(i) => out.push(if dict { 0x0C } else { 0x26 } + i),
            Prefix::Explicit(p) => {
                out.push(if dict { 0x07 } else { 0x05 });
                write_string(p, out);
            }
        }
        self.name.encode(out);
        self.value.encode(false, out);
    }
}

/// A namespace declaration record (0x08..=0x0B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xmlns<'a> {
    /// The declared prefix (`None` for the default namespace).
    pub prefix: Option<&'a str>,
    /// The namespace URI.
    pub ns: Str<'a>,
}

impl Xmlns<'_> {
    /// Append the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let dict = self.ns.dict.is_some();
        match self.prefix {
            None => out.push(if dict { 0x0A } else { 0x08 }),
            Some(p) => {
                out.push(if dict { 0x0B } else { 0x09 });
                write_string(p, out);
            }
        }
        self.ns.encode(out);
    }
}

/// An Array record (0x03): `count` repetitions of one element with one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<'a> {
    /// The repeated element.
    pub element: Element<'a>,
    /// Its attributes and namespace declarations, in wire order (only
    /// [`Record::Attribute`] and [`Record::Xmlns`]).
    pub attributes: Vec<Record<'a>>,
    /// The value type byte (a WithEndElement text type).
    pub value_type: u8,
    /// Number of values.
    pub count: usize,
    /// The packed values.
    pub values: &'a [u8],
}

/// Size of one packed array item for a value type, if arrays may use it.
pub fn array_item_size(value_type: u8) -> Option<usize> {
    match value_type {
        0xB5 => Some(1),
        0x8B => Some(2),
        0x8D | 0x91 => Some(4),
        0x8F | 0x93 | 0x97 | 0xAF => Some(8),
        0x95 | 0xB1 => Some(16),
        _ => None,
    }
}

/// One binary XML record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    /// 0x01 EndElement.
    EndElement,
    /// 0x02 Comment.
    Comment(&'a str),
    /// 0x03 Array (boxed: rare, and large next to the other records).
    Array(Box<Array<'a>>),
    /// An attribute.
    Attribute(Attribute<'a>),
    /// A namespace declaration.
    Xmlns(Xmlns<'a>),
    /// An element start.
    Element(Element<'a>),
    /// A text record; `end_element` for the odd WithEndElement form.
    Text {
        /// The value.
        value: Text<'a>,
        /// Whether the record also closes the current element.
        end_element: bool,
    },
}

impl Record<'_> {
    /// Append the record exactly as it was read.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::EndElement => out.push(0x01),
            Record::Comment(c) => {
                out.push(0x02);
                write_string(c, out);
            }
            Record::Array(a) => {
                out.push(0x03);
                a.element.encode(out);
                for at in &a.attributes {
                    at.encode(out);
                }
                out.push(0x01);
                out.push(a.value_type);
                mbint::encode(u32::try_from(a.count).unwrap_or(mbint::MAX), out);
                out.extend_from_slice(a.values);
            }
            Record::Attribute(a) => a.encode(out),
            Record::Xmlns(x) => x.encode(out),
            Record::Element(e) => e.encode(out),
            Record::Text { value, end_element } => value.encode(*end_element, out),
        }
    }
}
