//! Conversion between [MC-NBFX] records and XML text (`wcf/PROTOCOL.md §12`
//! §2.3), parsing and escaping through quick-xml.
//!
//! Binary to text keeps prefixes and namespace declarations as written,
//! joins adjacent text records of one element, prints list items separated by
//! single spaces and expands arrays into repeated elements.
//!
//! Text to binary resolves namespaces to apply the writer's dictionary rule
//! (see [`super::writer`]): names and declarations in the SOAP 1.1/1.2 and
//! WS-Addressing namespaces are [`Vocab::Soap`], the rest [`Vocab::Plain`];
//! element text follows [`Writer::element_text`] (WCF's header choices).
//! Text nodes that are only whitespace (indentation) are dropped.

use quick_xml::escape::{escape, partial_escape};
use quick_xml::events::Event;
use quick_xml::name::{PrefixDeclaration, ResolveResult};
use quick_xml::NsReader;

use super::record::{array_item_size, Array, Attribute, Element, Record, Text};
use super::text::write_text;
use super::writer::{Vocab, Writer};
use super::Reader;
use crate::{Error, Result};

/// Namespaces whose names WCF writes from the static dictionary.
pub const SOAP_NAMESPACES: [&str; 4] = [
    "http://www.w3.org/2003/05/soap-envelope",
    "http://schemas.xmlsoap.org/soap/envelope/",
    "http://www.w3.org/2005/08/addressing",
    "http://schemas.xmlsoap.org/ws/2004/08/addressing",
];

#[derive(Default)]
struct XmlOut {
    out: String,
    indent: bool,
    /// Open elements: qualified name and whether it has child elements.
    stack: Vec<(String, bool)>,
    open_tag: bool,
    in_list: bool,
    list_first: bool,
}

impl XmlOut {
    fn close_tag(&mut self) {
        if self.open_tag {
            self.out.push('>');
            self.open_tag = false;
        }
    }

    fn newline(&mut self, depth: usize) {
        if self.indent && !self.out.is_empty() {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', depth));
        }
    }

    fn element(&mut self, e: &Element<'_>) {
        self.close_tag();
        if let Some(parent) = self.stack.last_mut() {
            parent.1 = true;
        }
        self.newline(self.stack.len());
        let prefix = e.prefix.as_str();
        let qname = if prefix.is_empty() {
            e.name.text.to_owned()
        } else {
            format!("{prefix}:{}", e.name.text)
        };
        self.out.push('<');
        self.out.push_str(&qname);
        self.stack.push((qname, false));
        self.open_tag = true;
    }

    fn attribute(&mut self, a: &Attribute<'_>) {
        let mut value = String::new();
        write_text(&a.value, &mut value);
        self.out.push(' ');
        let prefix = a.prefix.as_str();
        if !prefix.is_empty() {
            self.out.push_str(prefix);
            self.out.push(':');
        }
        self.out.push_str(a.name.text);
        self.out.push_str("=\"");
        self.out.push_str(&escape(value.as_str()));
        self.out.push('"');
    }

    fn xmlns(&mut self, prefix: Option<&str>, ns: &str) {
        self.out.push_str(" xmlns");
        if let Some(p) = prefix {
            self.out.push(':');
            self.out.push_str(p);
        }
        self.out.push_str("=\"");
        self.out.push_str(&escape(ns));
        self.out.push('"');
    }

    fn text(&mut self, t: &Text<'_>) {
        self.close_tag();
        match t {
            Text::StartList => {
                self.in_list = true;
                self.list_first = true;
                return;
            }
            Text::EndList => {
                self.in_list = false;
                return;
            }
            _ => {}
        }
        if self.in_list {
            if !self.list_first {
                self.out.push(' ');
            }
            self.list_first = false;
        }
        let mut s = String::new();
        write_text(t, &mut s);
        self.out.push_str(&partial_escape(s.as_str()));
    }

    fn end(&mut self) {
        if let Some((qname, children)) = self.stack.pop() {
            if self.open_tag {
                self.out.push('>');
                self.open_tag = false;
            } else if children {
                self.newline(self.stack.len());
            }
            self.out.push_str("</");
            self.out.push_str(&qname);
            self.out.push('>');
        }
    }

    fn record(&mut self, r: &Record<'_>) -> Result<()> {
        match r {
            Record::Element(e) => self.element(e),
            Record::Attribute(a) => self.attribute(a),
            Record::Xmlns(x) => self.xmlns(x.prefix, x.ns.text),
            Record::Text { value, end_element } => {
                self.text(value);
                if *end_element {
                    self.end();
                }
            }
            Record::EndElement => self.end(),
            Record::Comment(c) => {
                self.close_tag();
                self.out.push_str("<!--");
                self.out.push_str(c);
                self.out.push_str("-->");
            }
            Record::Array(a) => self.array(a)?,
        }
        Ok(())
    }

    fn array(&mut self, a: &Array<'_>) -> Result<()> {
        let size = array_item_size(a.value_type).unwrap_or(1);
        for item in a.values.chunks_exact(size) {
            self.element(&a.element);
            for at in &a.attributes {
                self.record(at)?;
            }
            let value = array_value(a.value_type, item)?;
            self.text(&value);
            self.end();
        }
        Ok(())
    }
}

fn array_value(ty: u8, item: &[u8]) -> Result<Text<'static>> {
    let fixed = |n: usize| -> Result<[u8; 16]> {
        let mut b = [0u8; 16];
        b.get_mut(..n)
            .zip(item.get(..n))
            .map(|(d, s)| d.copy_from_slice(s))
            .ok_or(Error::Misplaced {
                offset: 0,
                rule: "short array item",
            })?;
        Ok(b)
    };
    let le8 = |b: [u8; 16]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    Ok(match ty {
        0xB5 => Text::Bool(fixed(1)?[0] != 0),
        0x8B => {
            let b = fixed(2)?;
            Text::Int16(i16::from_le_bytes([b[0], b[1]]))
        }
        0x8D => {
            let b = fixed(4)?;
            Text::Int32(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        0x91 => {
            let b = fixed(4)?;
            Text::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        0x8F => Text::Int64(i64::from_le_bytes(le8(fixed(8)?))),
        0x93 => Text::Double(f64::from_le_bytes(le8(fixed(8)?))),
        0x97 => Text::DateTime(u64::from_le_bytes(le8(fixed(8)?))),
        0xAF => Text::TimeSpan(i64::from_le_bytes(le8(fixed(8)?))),
        0x95 => Text::Decimal(fixed(16)?),
        _ => Text::Guid(fixed(16)?),
    })
}

/// Append the XML text of one packed array item of value type `ty`.
pub fn write_array_item(ty: u8, item: &[u8], out: &mut String) -> Result<()> {
    write_text(&array_value(ty, item)?, out);
    Ok(())
}

/// Render every record of `reader` as XML text; `indent` puts each element on
/// its own line, indented by depth.
pub fn to_xml(reader: &mut Reader<'_>, indent: bool) -> Result<String> {
    let mut x = XmlOut {
        indent,
        ..XmlOut::default()
    };
    while let Some(r) = reader.next()? {
        x.record(&r)?;
    }
    Ok(x.out)
}

fn xml_err(e: impl Into<quick_xml::Error>, pos: u64) -> Error {
    Error::Xml {
        pos,
        source: std::sync::Arc::new(e.into()),
    }
}

/// Parse XML text and write it through `writer` (see the module docs).
pub fn from_xml(xml: &str, writer: &mut Writer<'_>) -> Result<()> {
    let mut reader = NsReader::from_str(xml);
    // Open elements: (namespace, local name), for the text rule.
    let mut open: Vec<(String, String)> = Vec::new();
    let mut depth_seen = false;
    loop {
        let pos = reader.buffer_position();
        let (ns, event) = reader.read_resolved_event().map_err(|e| xml_err(e, pos))?;
        let ns_is = |list: &[&str]| match &ns {
            ResolveResult::Bound(n) => list.iter().any(|u| u.as_bytes() == n.as_ref()),
            _ => false,
        };
        let soap = ns_is(&SOAP_NAMESPACES);
        let ns_text = match &ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                depth_seen = true;
                let name = e.name();
                let prefix = name
                    .prefix()
                    .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                    .unwrap_or_default();
                let local = String::from_utf8_lossy(name.local_name().as_ref()).into_owned();
                writer.start_element(
                    &prefix,
                    &local,
                    if soap { Vocab::Soap } else { Vocab::Plain },
                );
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| xml_err(e, pos))?;
                    let value = attr
                        .unescape_value()
                        .map_err(|e| xml_err(e, pos))?
                        .into_owned();
                    let vocab_of = |v: &str| {
                        if SOAP_NAMESPACES.contains(&v) {
                            Vocab::Soap
                        } else {
                            Vocab::Plain
                        }
                    };
                    match attr.key.as_namespace_binding() {
                        Some(PrefixDeclaration::Default) => {
                            writer.xmlns("", &value, vocab_of(&value));
                        }
                        Some(PrefixDeclaration::Named(p)) => {
                            let p = String::from_utf8_lossy(p).into_owned();
                            writer.xmlns(&p, &value, vocab_of(&value));
                        }
                        None => {
                            let (ans, alocal) = reader.resolve_attribute(attr.key);
                            let avocab = match ans {
                                ResolveResult::Bound(n) => {
                                    vocab_of(&String::from_utf8_lossy(n.as_ref()))
                                }
                                _ => Vocab::Plain,
                            };
                            let aprefix = attr
                                .key
                                .prefix()
                                .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                                .unwrap_or_default();
                            let alocal = String::from_utf8_lossy(alocal.as_ref()).into_owned();
                            writer.attribute_str(&aprefix, &alocal, avocab, &value);
                        }
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    writer.end_element();
                } else {
                    open.push((ns_text, local));
                }
            }
            Event::End(_) => {
                open.pop();
                writer.end_element();
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| xml_err(e, pos))?;
                if text.trim().is_empty() {
                    continue;
                }
                let (ens, elocal) = open
                    .last()
                    .map(|(n, l)| (n.as_str(), l.as_str()))
                    .unwrap_or_default();
                writer.element_text(ens, elocal, &text);
            }
            Event::CData(c) => {
                let text = String::from_utf8_lossy(&c).into_owned();
                writer.text_str(&text);
            }
            Event::Comment(c) => {
                let text = String::from_utf8_lossy(&c).into_owned();
                writer.comment(&text);
            }
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some((_, local)) = open.last() {
        return Err(Error::XmlUnclosed {
            local: local.to_owned(),
        });
    }
    if !depth_seen {
        return Err(Error::XmlNoRoot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::nbfx;

    #[test]
    fn unclosed_elements_are_an_error() {
        // Regression: fuzz crash a82d1bf8 (truncated end tags were encoded
        // into a document the reader then rejected).
        let err = nbfx::from_xml("<a><b>text</b>").unwrap_err();
        assert!(err.to_string().contains("inside element <a>"), "{err}");
        assert!(nbfx::from_xml("<a><b></a>").is_err());
        assert!(nbfx::from_xml("   ").is_err());
    }
}
