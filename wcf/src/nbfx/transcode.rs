//! One-pass re-encoding of a msbinsession1 envelope as plain msbin1
//! (wcf/PROTOCOL.md §12.4; `wcf/PROTOCOL.md` §5.2: one-way messages go to
//! listeners as msbin1): record by record, with every session-dictionary
//! string written inline and everything else as it was, so no element tree
//! is built. On the way it notes the `Action` and `MessageID` header texts,
//! which is all the one-way relay needs to read from an application message.

use super::record::{Attribute, Element, Record, Str, Text, Width, Xmlns};
use super::{Reader, SessionDictionary};
use crate::{Limits, Result};

/// A re-encoded envelope and the header texts noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcoded {
    /// The msbin1 document.
    pub doc: Vec<u8>,
    /// The text of the first `Action` element directly under the header.
    pub action: Option<String>,
    /// The text of the first `MessageID` element directly under the header.
    pub message_id: Option<String>,
}

fn unsession<'a>(s: Str<'a>) -> Str<'a> {
    match s.dict {
        Some(id) if id % 2 == 1 => Str::inline(s.text),
        _ => s,
    }
}

/// Append `value` as a text record (or an attribute's value), with
/// session strings inline: a session DictionaryText becomes Chars, a session
/// QName becomes its `prefix:name` as Chars.
fn write_text(value: Text<'_>, end_element: bool, attr: Option<&Attribute<'_>>, out: &mut Vec<u8>) {
    let owned;
    let value = match value {
        Text::Dict(s) if s.dict.is_some_and(|id| id % 2 == 1) => {
            Text::Chars(s.text, Width::for_len(s.text.len()))
        }
        Text::QName(p, s) if s.dict.is_some_and(|id| id % 2 == 1) => {
            owned = format!("{}:{}", super::record::letter(p), s.text);
            Text::Chars(&owned, Width::for_len(owned.len()))
        }
        other => other,
    };
    match attr {
        Some(a) => Attribute {
            prefix: a.prefix,
            name: unsession(a.name),
            value,
        }
        .encode(out),
        None => value.encode(end_element, out),
    }
}

/// What is done with a header's text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    Action,
    MessageId,
    /// The `To` header, whose text is being replaced.
    Replace,
}

/// Re-encode `payload` (a msbinsession1 envelope: StringTable, then the
/// document), reading its StringTable into `session` (the reading side's
/// dictionary for this framing session).
pub fn session_to_msbin1(
    payload: &[u8],
    session: &mut SessionDictionary,
    limits: Limits,
) -> Result<Transcoded> {
    let used = session.read_table(payload)?;
    let doc = payload.get(used..).unwrap_or_default();
    let mut out = Vec::with_capacity(doc.len() + doc.len() / 4);
    let (action, message_id, _) = pass(
        Reader::new(doc, Some(session), limits, used),
        None,
        &mut out,
    )?;
    Ok(Transcoded {
        doc: out,
        action,
        message_id,
    })
}

/// Append `doc` (msbin1) to `out` with the text of its `To` header replaced
/// by `to`, in one pass; `false` when it has no `To` header (`out` then
/// holds the document unchanged).
pub fn replace_to(doc: &[u8], to: &str, limits: Limits, out: &mut Vec<u8>) -> Result<bool> {
    out.reserve(doc.len() + to.len());
    let (_, _, replaced) = pass(Reader::new(doc, None, limits, 0), Some(to), out)?;
    Ok(replaced)
}

/// Copy every record from `reader` to `out` with session strings inline,
/// the `To` header's text replaced by `to` when given; returns the Action
/// and MessageID texts and whether a `To` was replaced.
fn pass(
    mut reader: Reader<'_>,
    to: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(Option<String>, Option<String>, bool)> {
    let (mut action, mut message_id, mut replaced) = (None, None, false);
    // The header element's depth once it is open, and what is being captured.
    let mut header_depth = None;
    let mut capture: Option<(Capture, usize, String)> = None;
    let new_to = |end: bool, out: &mut Vec<u8>| {
        let v = to.unwrap_or_default();
        Text::Chars(v, Width::for_len(v.len())).encode(end, out);
    };
    while let Some(rec) = reader.next()? {
        let depth = reader.depth();
        match rec {
            Record::Element(e) => {
                let name = e.name.text;
                if depth == 2 && name == "Header" {
                    header_depth = Some(depth);
                } else if header_depth.is_some_and(|h| depth == h + 1) {
                    let which = match name {
                        "Action" if action.is_none() => Some(Capture::Action),
                        "MessageID" if message_id.is_none() => Some(Capture::MessageId),
                        "To" if to.is_some() && !replaced => Some(Capture::Replace),
                        _ => None,
                    };
                    capture = which.map(|w| (w, depth, String::new()));
                }
                Record::Element(Element {
                    prefix: e.prefix,
                    name: unsession(e.name),
                })
                .encode(out);
            }
            Record::Attribute(a) => write_text(a.value, false, Some(&a), out),
            Record::Xmlns(x) => Record::Xmlns(Xmlns {
                prefix: x.prefix,
                ns: unsession(x.ns),
            })
            .encode(out),
            Record::Text { value, end_element } => match capture.as_mut() {
                Some((Capture::Replace, _, _)) => {
                    if end_element {
                        new_to(true, out);
                    }
                }
                Some((_, _, text)) => {
                    super::text::write_text(&value, text);
                    write_text(value, end_element, None, out);
                }
                None => write_text(value, end_element, None, out),
            },
            Record::Array(a) => {
                out.push(0x03);
                Element {
                    prefix: a.element.prefix,
                    name: unsession(a.element.name),
                }
                .encode(out);
                for r in &a.attributes {
                    match r {
                        Record::Attribute(at) => write_text(at.value, false, Some(at), out),
                        Record::Xmlns(x) => Xmlns {
                            prefix: x.prefix,
                            ns: unsession(x.ns),
                        }
                        .encode(out),
                        other => other.encode(out),
                    }
                }
                out.push(0x01);
                out.push(a.value_type);
                crate::mbint::encode(u32::try_from(a.count).unwrap_or(crate::mbint::MAX), out);
                out.extend_from_slice(a.values);
            }
            Record::EndElement => {
                if matches!(&capture, Some((Capture::Replace, at, _)) if depth < *at) {
                    new_to(false, out);
                }
                out.push(0x01);
            }
            Record::Comment(_) => rec.encode(out),
        }
        // An element closed (by EndElement or a WithEndElement text).
        if let Some((which, at, _)) = &capture {
            if reader.depth() < *at {
                let (which, text) = (*which, capture.take().map(|c| c.2).unwrap_or_default());
                match which {
                    Capture::Action => action = Some(text),
                    Capture::MessageId => message_id = Some(text),
                    Capture::Replace => replaced = true,
                }
            }
        }
        if header_depth.is_some_and(|h| reader.depth() < h) {
            header_depth = None;
        }
    }
    Ok((action, message_id, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::{must_understand, Element as El, Envelope, NS_WSA10};

    #[test]
    fn session_envelopes_become_the_msbin1_the_tree_writes() {
        let env = Envelope::with_action("urn:test/IFace/Op")
            .header(
                El::new("a", "MessageID", NS_WSA10)
                    .text("urn:uuid:0d7c1c3c-21a6-4a1f-9a3e-5d2f3b8c9e01"),
            )
            .header(must_understand(
                El::new("a", "To", NS_WSA10).text("sb://ns/path/"),
            ))
            .body_child(
                El::new("", "Op", "urn:test")
                    .with_xmlns("", "urn:test")
                    .child(El::new("", "text", "urn:test").text("hello"))
                    .child(El::new("", "text", "urn:test").text("again")),
            );
        let mut writer_side = SessionDictionary::new(2048);
        let mut reader_side = SessionDictionary::new(2048);
        for _ in 0..2 {
            // The second message reuses strings announced by the first.
            let payload = env.to_session(&mut writer_side);
            let t = session_to_msbin1(&payload, &mut reader_side, Limits::DEFAULT).unwrap();
            assert_eq!(t.doc, env.to_msbin1());
            assert_eq!(t.action.as_deref(), Some("urn:test/IFace/Op"));
            assert_eq!(
                t.message_id.as_deref(),
                Some("urn:uuid:0d7c1c3c-21a6-4a1f-9a3e-5d2f3b8c9e01")
            );
        }
    }

    #[test]
    fn the_to_header_is_readdressed_in_place() {
        let with_to = |to: &str| {
            Envelope::with_action("urn:a")
                .header(must_understand(El::new("a", "To", NS_WSA10).text(to)))
                .body_child(El::new("", "Op", "urn:test").with_xmlns("", "urn:test"))
        };
        let doc = with_to("sb://ns/path/").to_msbin1();
        let mut out = Vec::new();
        assert!(replace_to(&doc, "net.tcp://127.0.0.1:9/svc", Limits::DEFAULT, &mut out).unwrap());
        let env = Envelope::decode(&out, Limits::DEFAULT).unwrap();
        assert_eq!(env, with_to("net.tcp://127.0.0.1:9/svc"));
        let none = Envelope::with_action("urn:a").to_msbin1();
        out.clear();
        assert!(!replace_to(&none, "x", Limits::DEFAULT, &mut out).unwrap());
        assert_eq!(out, none);
    }
}
