//! Reading a relayed web envelope as it arrives (`wcf/PROTOCOL.md`
//! §11.3): [`Unframe`] takes the UnsizedEnvelope off the NMF stream without
//! holding whole chunks, and [`Incoming`] yields the head (a complete
//! [`Envelope`] without body) once it is whole and then the body's bytes
//! record by record, holding at most one text record (binary formats) or
//! the bounded body (`Xml`).

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};

use super::{body_format, BodyFormat};
use crate::error::Place;
use crate::nbfx::{Reader, Record};
use crate::soap::{Element, Envelope, Node};
use crate::{mbint, Error, Limits, Result};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`Incoming`] has read.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The envelope without its body, once the head is complete.
    Head(Envelope),
    /// Body bytes (for `Xml`, the body's XML text in one piece).
    Data(Bytes),
    /// The document ended.
    End,
}

#[derive(Debug)]
enum State {
    Head,
    /// Directly under `s:Body` (depth 0) or inside `Binary` (depth 1).
    Body {
        depth: u8,
    },
    /// In the payload of a Bytes record: bytes left, and whether the
    /// record ends its element.
    Bytes {
        depth: u8,
        left: usize,
        end_element: bool,
    },
    /// The body is XML: collected until the document is complete.
    Xml,
    /// After the body's end: the Envelope's end is next.
    Closing,
    /// The document is read; `End` is next.
    End,
    Done,
}

/// Reads a relayed web envelope as it arrives (see the module docs).
#[derive(Debug)]
pub struct Incoming {
    buf: BytesMut,
    state: State,
    limits: Limits,
    max_head: usize,
    /// The head's bytes, kept for an `Xml` body's conversion.
    head: Vec<u8>,
    /// How far the head has been read.
    scan: Scan,
    format: Option<BodyFormat>,
    /// Base64 characters not yet decoded (a multiple of 4 is decoded).
    base64: Vec<u8>,
    /// Wrapped bodies: bytes held back while a BOM may still be forming.
    bom: Option<Vec<u8>>,
    /// Total bytes read, for error offsets.
    offset: usize,
    finished: bool,
}

fn need_more(e: &Error) -> bool {
    matches!(e, Error::Truncated { .. } | Error::Overrun { .. })
}

impl Incoming {
    /// A reader whose head may take `max_head` bytes and whose buffered
    /// (`Xml`) body and largest text record may take `limits.max_message`.
    pub fn new(limits: Limits, max_head: usize) -> Self {
        Incoming {
            buf: BytesMut::new(),
            state: State::Head,
            limits,
            max_head,
            head: Vec::new(),
            scan: Scan::default(),
            format: None,
            base64: Vec::new(),
            bom: None,
            offset: 0,
            finished: false,
        }
    }

    /// Add bytes of the document.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Say that no more bytes will come.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether the document has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The next event; `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event>> {
        loop {
            let step = match self.state {
                State::Head => self.head_step()?,
                State::Body { depth } => self.body_step(depth)?,
                State::Bytes {
                    depth,
                    left,
                    end_element,
                } => self.bytes_step(depth, left, end_element),
                State::Xml => self.xml_step()?,
                State::Closing => self.closing_step()?,
                State::End => {
                    self.state = State::Done;
                    return Ok(Some(Event::End));
                }
                State::Done => return Ok(None),
            };
            match step {
                Step::Event(e) => return Ok(Some(e)),
                Step::Again => {}
                Step::More if self.finished => {
                    return Err(Error::Truncated {
                        offset: self.offset + self.buf.len(),
                        what: "a relayed web envelope",
                    })
                }
                Step::More => return Ok(None),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n;
    }

    fn head_step(&mut self) -> Result<Step> {
        let Some(end) = head_end(&self.buf, self.limits, &mut self.scan)? else {
            if self.buf.len() > self.max_head {
                return Err(Error::Oversized {
                    what: "the envelope's head",
                    limit: self.max_head,
                });
            }
            return Ok(Step::More);
        };
        let mut doc = self.buf.get(..end).unwrap_or_default().to_vec();
        self.consume(end);
        self.head = doc.clone();
        doc.extend_from_slice(&[0x01, 0x01]);
        let env = Envelope::decode(&doc, self.limits)?;
        self.format = body_format(&env)?;
        if self.format.is_some_and(BodyFormat::wrapped) {
            self.bom = Some(Vec::new());
        }
        self.state = if matches!(self.format, Some(BodyFormat::Xml | BodyFormat::Default)) {
            State::Xml
        } else {
            State::Body { depth: 0 }
        };
        Ok(Step::Event(Event::Head(env)))
    }

    fn body_step(&mut self, depth: u8) -> Result<Step> {
        let Some(&ty) = self.buf.first() else {
            return Ok(Step::More);
        };
        let close = |depth: u8| {
            if depth == 0 {
                State::Closing
            } else {
                State::Body { depth: depth - 1 }
            }
        };
        match ty {
            0x01 => {
                self.consume(1);
                self.state = close(depth);
                self.flush_base64()
            }
            0x40..=0x77 if depth == 0 => match self.element_end()? {
                None if self.buf.len() > self.max_head => Err(Error::Oversized {
                    what: "a body element's start",
                    limit: self.max_head,
                }),
                None => Ok(Step::More),
                Some((len, true)) if self.format.is_none_or(BodyFormat::binary) => {
                    self.consume(len);
                    self.state = State::Body { depth: 1 };
                    Ok(Step::Again)
                }
                // Any other element: the body is XML after all.
                Some(_) => {
                    self.state = State::Xml;
                    Ok(Step::Again)
                }
            },
            0xA8 | 0xA9 => {
                self.consume(1);
                if ty == 0xA9 {
                    self.state = close(depth);
                }
                self.flush_base64()
            }
            0x9E..=0xA3 => {
                let Some((head, left)) = text_len(&self.buf, 0x9E) else {
                    return Ok(Step::More);
                };
                self.consume(head);
                self.state = State::Bytes {
                    depth,
                    left,
                    end_element: ty % 2 == 1,
                };
                Ok(Step::Again)
            }
            0x98..=0x9D => {
                let Some((head, len)) = text_len(&self.buf, 0x98) else {
                    return Ok(Step::More);
                };
                if len > self.limits.max_message {
                    return Err(Error::Oversized {
                        what: "a body text record",
                        limit: self.limits.max_message,
                    });
                }
                let Some(text) = self.buf.get(head..head + len) else {
                    return Ok(Step::More);
                };
                let text = text.trim_ascii().to_vec();
                self.consume(head + len);
                self.base64.extend_from_slice(&text);
                if ty % 2 == 1 {
                    self.state = close(depth);
                }
                self.decode_base64(false)
            }
            byte => Err(Error::Unexpected {
                offset: self.offset,
                place: Place::RelayedBody,
                byte,
            }),
        }
    }

    /// The length of the element record and its attributes at the front of
    /// the buffer, and whether it is `Binary`; `None` if incomplete.
    fn element_end(&self) -> Result<Option<(usize, bool)>> {
        let mut reader = Reader::new(&self.buf, None, self.limits, self.offset);
        let binary = match reader.next() {
            Ok(Some(Record::Element(e))) => e.name.text == "Binary",
            Ok(_) => {
                return Err(Error::Misplaced {
                    offset: self.offset,
                    rule: "expected an element",
                })
            }
            Err(e) if need_more(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        match attributes_end(&mut reader, self.offset)? {
            Some(end) => Ok(Some((end, binary))),
            None => Ok(None),
        }
    }

    fn bytes_step(&mut self, depth: u8, left: usize, end_element: bool) -> Step {
        if left == 0 {
            self.state = if end_element {
                if depth == 0 {
                    State::Closing
                } else {
                    State::Body { depth: depth - 1 }
                }
            } else {
                State::Body { depth }
            };
            return Step::Again;
        }
        if self.buf.is_empty() {
            return Step::More;
        }
        let n = left.min(self.buf.len());
        let data = self.buf.split_to(n).freeze();
        self.offset += n;
        self.state = State::Bytes {
            depth,
            left: left - n,
            end_element,
        };
        match self.emit(data) {
            Some(d) => Step::Event(Event::Data(d)),
            None => Step::Again,
        }
    }

    /// Pass body bytes on, holding back a wrapped body's first three bytes
    /// until it is clear whether they are a BOM.
    fn emit(&mut self, data: Bytes) -> Option<Bytes> {
        let Some(mut held) = self.bom.take() else {
            return (!data.is_empty()).then_some(data);
        };
        held.extend_from_slice(&data);
        if held.len() < BOM.len() && BOM.starts_with(&held) {
            self.bom = Some(held);
            return None;
        }
        let start = if held.starts_with(BOM) { BOM.len() } else { 0 };
        let out = Bytes::from(held).slice(start..);
        (!out.is_empty()).then_some(out)
    }

    fn decode_base64(&mut self, all: bool) -> Result<Step> {
        let whole = if all {
            self.base64.len()
        } else {
            self.base64.len() / 4 * 4
        };
        if whole == 0 {
            return Ok(Step::Again);
        }
        let chars: Vec<u8> = self.base64.drain(..whole).collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(&chars)
            .map_err(Error::Base64)?;
        Ok(match self.emit(Bytes::from(data)) {
            Some(d) => Step::Event(Event::Data(d)),
            None => Step::Again,
        })
    }

    fn flush_base64(&mut self) -> Result<Step> {
        self.decode_base64(true)
    }

    fn xml_step(&mut self) -> Result<Step> {
        if self.buf.len() > self.limits.max_message {
            return Err(Error::Oversized {
                what: "an XML body",
                limit: self.limits.max_message,
            });
        }
        if !self.finished {
            return Ok(Step::More);
        }
        let mut doc = std::mem::take(&mut self.head);
        doc.extend_from_slice(&self.buf);
        self.consume(self.buf.len());
        let env = Envelope::decode(&doc, self.limits)?;
        self.state = State::End;
        let mut xml = String::new();
        for child in env.body().into_iter().flat_map(Element::elements) {
            let child = with_inherited_xmlns(child.clone(), &env.root.xmlns);
            xml.push_str(&crate::nbfx::to_xml(
                &child.to_msbin1(),
                self.limits,
                false,
            )?);
        }
        if xml.is_empty() {
            return Ok(Step::Again);
        }
        Ok(Step::Event(Event::Data(Bytes::from(xml))))
    }

    fn closing_step(&mut self) -> Result<Step> {
        match self.buf.first() {
            None => Ok(Step::More),
            Some(0x01) => {
                self.consume(1);
                self.state = State::End;
                Ok(match self.bom.take().filter(|h| !h.is_empty()) {
                    Some(held) => Step::Event(Event::Data(Bytes::from(held))),
                    None => Step::Again,
                })
            }
            Some(byte) => Err(Error::Unexpected {
                offset: self.offset,
                place: Place::EnvelopeEnd,
                byte: *byte,
            }),
        }
    }
}

/// What one step of [`Incoming::next`] came to.
enum Step {
    Event(Event),
    Again,
    More,
}

/// The header length and data length of the Bytes (`base` 0x9E) or Chars
/// (`base` 0x98) record at the front of `buf`; `None` if incomplete.
fn text_len(buf: &[u8], base: u8) -> Option<(usize, usize)> {
    let ty = *buf.first()?;
    let n = [1usize, 2, 4]
        .get(usize::from(ty.checked_sub(base)? / 2))
        .copied()?;
    let mut le = [0u8; 8];
    le.get_mut(..n)?.copy_from_slice(buf.get(1..1 + n)?);
    Some((1 + n, usize::try_from(u64::from_le_bytes(le)).ok()?))
}

/// How far a head has been read: a record boundary outside any start tag
/// and the element depth there, so that each attempt reads only new records.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    pos: usize,
    depth: usize,
}

/// Where the head ends: the offset of the first record of the body's
/// content; `None` if the buffer does not reach it yet (`scan` then says
/// where to go on from).
fn head_end(buf: &[u8], limits: Limits, scan: &mut Scan) -> Result<Option<usize>> {
    let rest = buf.get(scan.pos..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    let mut reader = Reader::new(rest, None, limits, scan.pos).at_depth(scan.depth);
    loop {
        match reader.next() {
            Ok(Some(Record::Element(e))) if reader.depth() == 2 && e.name.text == "Body" => {
                return attributes_end(&mut reader, 0);
            }
            Ok(Some(_)) => {
                if !reader.in_list() && !matches!(reader.peek_type(), None | Some(0x04..=0x3F)) {
                    *scan = Scan {
                        pos: reader.offset(),
                        depth: reader.depth(),
                    };
                }
            }
            // The input ran out between records: more may come (a document
            // without a body is caught by the head's bound or at its end).
            Ok(None) => return Ok(None),
            Err(e) if need_more(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// After an element record: the offset (less `base`) of the first record
/// that is not one of its attributes; `None` until that record's first byte
/// is in the buffer.
fn attributes_end(reader: &mut Reader<'_>, base: usize) -> Result<Option<usize>> {
    loop {
        let at = reader.offset() - base;
        match reader.peek_type() {
            None => return Ok(None),
            Some(0x04..=0x3F) => match reader.next() {
                Ok(_) => {}
                Err(e) if need_more(&e) => return Ok(None),
                Err(e) => return Err(e),
            },
            Some(_) => return Ok(Some(at)),
        }
    }
}

/// `e` with the declarations of `inherited` it relies on added, so that it
/// stands alone as a document.
fn with_inherited_xmlns(mut e: Element, inherited: &[(String, String)]) -> Element {
    let mut used = Vec::new();
    prefixes(&e, &mut used);
    let missing: Vec<(String, String)> = inherited
        .iter()
        .filter(|(p, _)| used.contains(&p.as_str()) && !e.xmlns.iter().any(|(q, _)| q == p))
        .cloned()
        .collect();
    e.xmlns.extend(missing);
    e
}

fn prefixes<'a>(e: &'a Element, out: &mut Vec<&'a str>) {
    out.push(&e.prefix);
    out.extend(e.attrs.iter().map(|a| a.prefix.as_str()));
    for c in &e.children {
        if let Node::Element(c) = c {
            prefixes(c, out);
        }
    }
}

/// Takes an UnsizedEnvelope (§11.3: `05`, chunks, `00`) off an NMF byte
/// stream and passes its payload to an [`Incoming`] without holding whole
/// chunks, so chunk sizes need no bound.
#[derive(Debug, Default)]
pub struct Unframe {
    state: Unframing,
    offset: usize,
}

#[derive(Debug, Default, Clone, Copy)]
enum Unframing {
    #[default]
    Start,
    Len,
    Data(usize),
    Done,
}

impl Unframe {
    /// Move what is available from the front of `buf` into `incoming`;
    /// `true` once the zero-size chunk that ends the envelope was read
    /// (`incoming` is then finished). A Fault or End record instead of an
    /// envelope is an error naming it.
    pub fn take(&mut self, buf: &mut BytesMut, incoming: &mut Incoming) -> Result<bool> {
        loop {
            match self.state {
                Unframing::Done => return Ok(true),
                Unframing::Start => match buf.first() {
                    None => return Ok(false),
                    Some(0x05) => {
                        buf.advance(1);
                        self.offset += 1;
                        self.state = Unframing::Len;
                    }
                    Some(0x08) => {
                        let fault = mbint::decode(buf, self.offset + 1)?
                            .and_then(|(len, n)| buf.get(1 + n..1 + n + len as usize))
                            .map(|b| String::from_utf8_lossy(b).into_owned());
                        return Err(Error::PeerFault(fault));
                    }
                    Some(other) => {
                        return Err(Error::Unexpected {
                            offset: self.offset,
                            place: Place::UnsizedEnvelope,
                            byte: *other,
                        })
                    }
                },
                Unframing::Len => match mbint::decode(buf, self.offset)? {
                    None => return Ok(false),
                    Some((len, n)) => {
                        buf.advance(n);
                        self.offset += n;
                        self.state = if len == 0 {
                            incoming.finish();
                            Unframing::Done
                        } else {
                            Unframing::Data(len as usize)
                        };
                    }
                },
                Unframing::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(buf.len());
                    incoming.push(buf.get(..n).unwrap_or_default());
                    buf.advance(n);
                    self.offset += n;
                    self.state = if n == left {
                        Unframing::Len
                    } else {
                        Unframing::Data(left - n)
                    };
                    return Ok(false);
                }
            }
        }
    }
}
