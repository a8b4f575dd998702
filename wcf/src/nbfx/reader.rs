//! Pull reader for [MC-NBFX] documents (wcf/PROTOCOL.md §12.2–§2.5).
//!
//! It works on one whole envelope (framing delivers envelopes whole), borrows
//! strings and bytes from it, resolves dictionary ids against the static
//! dictionary and an optional session dictionary, and checks structure as it
//! goes: attributes only right after an element, balanced ends, a bounded
//! depth and bounded array sizes. Every length is checked against what is
//! left of the input before it is used.

use super::record::{array_item_size, Array, Attribute, Element, Prefix, Record, Str, Text, Width};
use super::{dictionary, SessionDictionary};
use crate::error::Place;
use crate::{mbint, Error, Limits, Result};

/// Reads records one at a time from a binary XML document.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    session: Option<&'a SessionDictionary>,
    limits: Limits,
    depth: usize,
    /// Whether attribute records may appear next.
    in_start_tag: bool,
    in_list: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`. `base` is added to offsets in errors (the offset
    /// of `buf` within whatever the caller is decoding).
    pub fn new(
        buf: &'a [u8],
        session: Option<&'a SessionDictionary>,
        limits: Limits,
        base: usize,
    ) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            session,
            limits,
            depth: 0,
            in_start_tag: false,
            in_list: false,
        }
    }

    /// Resume reading inside `depth` open elements, at a record boundary
    /// that is neither inside a start tag nor inside a list (an incremental
    /// caller's restart point).
    #[must_use]
    pub fn at_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Whether a StartListText is open (an incremental caller must not
    /// restart inside a list).
    pub fn in_list(&self) -> bool {
        self.in_list
    }

    /// Current element depth.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Offset (including `base`) of the next record.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The type byte of the next record, if any input is left.
    pub fn peek_type(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The next record, or `None` at a well-formed end of input.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Result<Option<Record<'a>>> {
        if self.pos >= self.buf.len() {
            if self.depth > 0 {
                return Err(Error::Truncated {
                    offset: self.offset(),
                    what: "an open element",
                });
            }
            return Ok(None);
        }
        let at = self.offset();
        let ty = self.u8("record type")?;
        let record = match ty {
            0x01 => {
                self.close_element(at)?;
                Record::EndElement
            }
            0x02 => {
                self.in_start_tag = false;
                Record::Comment(self.string("comment")?)
            }
            0x03 => Record::Array(Box::new(self.array(at)?)),
            0x04..=0x07 | 0x0C..=0x3F => {
                self.expect_start_tag(at, "attribute")?;
                Record::Attribute(self.attribute(ty)?)
            }
            0x08..=0x0B => {
                self.expect_start_tag(at, "namespace declaration")?;
                Record::Xmlns(self.xmlns(ty)?)
            }
            0x40..=0x77 => {
                let e = self.element(ty)?;
                self.open_element(at)?;
                Record::Element(e)
            }
            0x80..=0xBD => {
                let end_element = ty % 2 == 1;
                let value = self.text(ty & !1, at)?;
                self.in_start_tag = false;
                match value {
                    Text::StartList if self.in_list => {
                        return Err(Error::Misplaced {
                            offset: at,
                            rule: "lists do not nest",
                        })
                    }
                    Text::StartList => self.in_list = true,
                    Text::EndList if !self.in_list => {
                        return Err(Error::Misplaced {
                            offset: at,
                            rule: "EndListText without StartListText",
                        })
                    }
                    Text::EndList => self.in_list = false,
                    _ => {}
                }
                if end_element {
                    if matches!(value, Text::StartList) {
                        return Err(Error::Misplaced {
                            offset: at,
                            rule: "StartListText cannot end an element",
                        });
                    }
                    self.close_element(at)?;
                }
                Record::Text { value, end_element }
            }
            other => {
                return Err(Error::UnknownRecord {
                    offset: at,
                    kind: "nbfx",
                    byte: other,
                })
            }
        };
        Ok(Some(record))
    }

    #[inline]
    fn open_element(&mut self, at: usize) -> Result<()> {
        if self.in_list {
            return Err(Error::Misplaced {
                offset: at,
                rule: "element inside a text list",
            });
        }
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::TooLarge {
                offset: at,
                what: "element depth",
                len: self.depth,
                limit: self.limits.max_depth,
            });
        }
        self.in_start_tag = true;
        Ok(())
    }

    #[inline]
    fn close_element(&mut self, at: usize) -> Result<()> {
        if self.depth == 0 {
            return Err(Error::Misplaced {
                offset: at,
                rule: "end of element with no element open",
            });
        }
        if self.in_list {
            return Err(Error::Misplaced {
                offset: at,
                rule: "element ends inside a text list",
            });
        }
        self.depth -= 1;
        self.in_start_tag = false;
        Ok(())
    }

    fn expect_start_tag(&self, at: usize, what: &'static str) -> Result<()> {
        if self.in_start_tag {
            Ok(())
        } else {
            Err(Error::OutsideStartTag { offset: at, what })
        }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.overrun(n, what)),
        }
    }

    #[cold]
    fn overrun(&self, n: usize, what: &'static str) -> Error {
        Error::Overrun {
            offset: self.offset(),
            what,
            declared: n,
            remaining: self.buf.len().saturating_sub(self.pos),
        }
    }

    #[inline]
    fn array_n<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    #[inline]
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.overrun(1, what)),
        }
    }

    #[inline]
    fn mb31(&mut self, what: &'static str) -> Result<u32> {
        // Fast path: one byte, the common case for names and small lengths.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u32::from(b));
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match mbint::decode(rest, self.offset())? {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(Error::Truncated {
                offset: self.offset(),
                what,
            }),
        }
    }

    #[inline]
    fn utf8(&self, bytes: &'a [u8], at: usize, what: &'static str) -> Result<&'a str> {
        std::str::from_utf8(bytes).map_err(|_| Error::BadText { offset: at, what })
    }

    #[inline]
    fn string(&mut self, what: &'static str) -> Result<&'a str> {
        let len = self.mb31(what)? as usize;
        let at = self.offset();
        let bytes = self.take(len, what)?;
        self.utf8(bytes, at, what)
    }

    #[inline]
    fn dict_string(&mut self, what: &'static str) -> Result<Str<'a>> {
        let at = self.offset();
        let id = self.mb31(what)?;
        let text = if id % 2 == 0 {
            dictionary::lookup(id)
        } else {
            self.session.and_then(|s| s.lookup(id))
        };
        match text {
            Some(text) => Ok(Str {
                text,
                dict: Some(id),
            }),
            None => Err(Error::UnknownDictionaryId { offset: at, id }),
        }
    }

    #[inline]
    fn name(&mut self, dict: bool, what: &'static str) -> Result<Str<'a>> {
        if dict {
            self.dict_string(what)
        } else {
            Ok(Str::inline(self.string(what)?))
        }
    }

    #[inline]
    fn element(&mut self, ty: u8) -> Result<Element<'a>> {
        let (prefix, dict) = match ty {
            0x40 => (Prefix::None, false),
            0x41 => (Prefix::Explicit(self.string("element prefix")?), false),
            0x42 => (Prefix::None, true),
            0x43 => (Prefix::Explicit(self.string("element prefix")?), true),
            0x44..=0x5D => (Prefix::Letter(ty - 0x44), true),
            _ => (Prefix::Letter(ty - 0x5E), false),
        };
        Ok(Element {
            prefix,
            name: self.name(dict, "element name")?,
        })
    }

    #[inline]
    fn attribute(&mut self, ty: u8) -> Result<Attribute<'a>> {
        let (prefix, dict) = match ty {
            0x04 => (Prefix::None, false),
            0x05 => (Prefix::Explicit(self.string("attribute prefix")?), false),
            0x06 => (Prefix::None, true),
            0x07 => (Prefix::Explicit(self.string("attribute prefix")?), true),
            0x0C..=0x25 => (Prefix::Letter(ty - 0x0C), true),
            _ => (Prefix::Letter(ty - 0x26), false),
        };
        let name = self.name(dict, "attribute name")?;
        let at = self.offset();
        let vty = self.u8("attribute value type")?;
        if !(0x80..=0xBD).contains(&vty) || vty % 2 == 1 || vty == 0xA4 || vty == 0xA6 {
            return Err(Error::Unexpected {
                offset: at,
                place: Place::AttributeValue,
                byte: vty,
            });
        }
        let value = self.text(vty, at)?;
        Ok(Attribute {
            prefix,
            name,
            value,
        })
    }

    fn xmlns(&mut self, ty: u8) -> Result<super::record::Xmlns<'a>> {
        let prefix = if ty == 0x09 || ty == 0x0B {
            Some(self.string("xmlns prefix")?)
        } else {
            None
        };
        let ns = self.name(ty >= 0x0A, "namespace")?;
        Ok(super::record::Xmlns { prefix, ns })
    }

    #[inline]
    fn width_len(&mut self, w: Width, what: &'static str) -> Result<usize> {
        Ok(match w {
            Width::W8 => self.u8(what)? as usize,
            Width::W16 => u16::from_le_bytes(self.array_n(what)?) as usize,
            Width::W32 => {
                let at = self.offset();
                let v = i32::from_le_bytes(self.array_n(what)?);
                usize::try_from(v).map_err(|_| Error::Negative { offset: at, what })?
            }
        })
    }

    #[inline]
    fn text(&mut self, ty: u8, at: usize) -> Result<Text<'a>> {
        let width = |base: u8| match ty - base {
            0 => Width::W8,
            2 => Width::W16,
            _ => Width::W32,
        };
        Ok(match ty {
            0x80 => Text::Zero,
            0x82 => Text::One,
            0x84 => Text::False,
            0x86 => Text::True,
            0x88 => Text::Int8(i8::from_le_bytes(self.array_n("Int8Text")?)),
            0x8A => Text::Int16(i16::from_le_bytes(self.array_n("Int16Text")?)),
            0x8C => Text::Int32(i32::from_le_bytes(self.array_n("Int32Text")?)),
            0x8E => Text::Int64(i64::from_le_bytes(self.array_n("Int64Text")?)),
            0x90 => Text::Float(f32::from_le_bytes(self.array_n("FloatText")?)),
            0x92 => Text::Double(f64::from_le_bytes(self.array_n("DoubleText")?)),
            0x94 => Text::Decimal(self.array_n("DecimalText")?),
            0x96 => Text::DateTime(u64::from_le_bytes(self.array_n("DateTimeText")?)),
            0x98 | 0x9A | 0x9C => {
                let w = width(0x98);
                let len = self.width_len(w, "chars length")?;
                let start = self.offset();
                let bytes = self.take(len, "chars text")?;
                Text::Chars(self.utf8(bytes, start, "chars text")?, w)
            }
            0x9E | 0xA0 | 0xA2 => {
                let w = width(0x9E);
                let len = self.width_len(w, "bytes length")?;
                Text::Bytes(self.take(len, "bytes text")?, w)
            }
            0xA4 => Text::StartList,
            0xA6 => Text::EndList,
            0xA8 => Text::Empty,
            0xAA => Text::Dict(self.dict_string("dictionary text")?),
            0xAC => Text::UniqueId(self.array_n("UniqueIdText")?),
            0xAE => Text::TimeSpan(i64::from_le_bytes(self.array_n("TimeSpanText")?)),
            0xB0 => Text::Guid(self.array_n("GuidText")?),
            0xB2 => Text::UInt64(u64::from_le_bytes(self.array_n("UInt64Text")?)),
            0xB4 => {
                let b = self.u8("BoolText")?;
                if b > 1 {
                    return Err(Error::BoolValue {
                        offset: at,
                        value: b,
                    });
                }
                Text::Bool(b == 1)
            }
            0xB6 | 0xB8 | 0xBA => {
                let w = width(0xB6);
                let len = self.width_len(w, "unicode length")?;
                let start = self.offset();
                let bytes = self.take(len, "unicode text")?;
                if len % 2 != 0
                    || char::decode_utf16(super::text::utf16le_units(bytes)).any(|c| c.is_err())
                {
                    return Err(Error::BadText {
                        offset: start,
                        what: "unicode text",
                    });
                }
                Text::Unicode(bytes, w)
            }
            0xBC => {
                let p = self.u8("QName prefix")?;
                if p > 25 {
                    return Err(Error::PrefixIndex {
                        offset: at,
                        index: p,
                    });
                }
                Text::QName(p, self.dict_string("QName name")?)
            }
            other => {
                return Err(Error::UnknownRecord {
                    offset: at,
                    kind: "nbfx",
                    byte: other,
                })
            }
        })
    }

    fn array(&mut self, at: usize) -> Result<Array<'a>> {
        if self.in_list {
            return Err(Error::Misplaced {
                offset: at,
                rule: "array inside a text list",
            });
        }
        let ety = self.u8("array element")?;
        if !(0x40..=0x77).contains(&ety) {
            return Err(Error::Misplaced {
                offset: at,
                rule: "array does not start with an element record",
            });
        }
        let element = self.element(ety)?;
        let mut attributes = Vec::new();
        loop {
            let rat = self.offset();
            let ty = self.u8("array attributes")?;
            match ty {
                0x01 => break,
                0x04..=0x07 | 0x0C..=0x3F => {
                    attributes.push(Record::Attribute(self.attribute(ty)?))
                }
                0x08..=0x0B => attributes.push(Record::Xmlns(self.xmlns(ty)?)),
                other => {
                    return Err(Error::Unexpected {
                        offset: rat,
                        place: Place::ArrayStartTag,
                        byte: other,
                    })
                }
            }
        }
        let tat = self.offset();
        let value_type = self.u8("array value type")?;
        let size = array_item_size(value_type).ok_or(Error::Unexpected {
            offset: tat,
            place: Place::ArrayValueType,
            byte: value_type,
        })?;
        let count = self.mb31("array count")? as usize;
        if count > self.limits.max_array_items {
            return Err(Error::TooLarge {
                offset: tat,
                what: "array item count",
                len: count,
                limit: self.limits.max_array_items,
            });
        }
        let values = self.take(count.saturating_mul(size), "array values")?;
        self.in_start_tag = false;
        Ok(Array {
            element,
            attributes,
            value_type,
            count,
            values,
        })
    }
}
