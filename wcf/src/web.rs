//! HTTP requests and replies carried over a `RelayedHttp` rendezvous
//! (`spec/wcf-relay.md` §9, §11.3): the SOAP 1.2 wrapper the relay sends
//! for each HTTP request (method as `a:Action`, `HttpAddress`, one
//! `.../web` header element per HTTP header, `BodyFormat`), the reply the
//! listener sends back (`StatusCode`, `FaultReason`, `.../web` headers,
//! `BodyFormat`), and the body in each format.
//!
//! Bodies stream: [`open_envelope`] gives an envelope's bytes up to its
//! open `s:Body`, [`BodyWriter`] appends body bytes as Bytes records and
//! closes the document, and [`Incoming`] reads a document as it arrives,
//! yielding the head (a complete [`Envelope`] without body) as soon as it is
//! whole and then the body's bytes record by record, never holding more than
//! one text record (binary formats) or the bounded body (`Xml`).
//!
//! Header names: an HTTP header whose name is not a valid XML name is not
//! carried ([`is_xml_name`]); repeated request headers travel as one element
//! with the values joined by ", " (RFC 9110 §5.3); repeated reply elements
//! become repeated response headers (as `Set-Cookie` needs).

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};

use crate::nbfx::record::Width;
use crate::nbfx::{Reader, Record, Text};
use crate::soap::{must_understand, Element, Envelope, Node, NS_WSA10};
use crate::{mbint, Error, Limits, Result};

/// Namespace of `HttpAddress`, `FaultReason` and the HTTP header elements.
pub const NS_WEB: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/web";
/// Namespace of `BodyFormat`.
pub const NS_BODY: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/body";
/// Namespace of `StatusCode`.
pub const NS_STATUS: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/statuscode";
/// Namespace of the `Action` header of `AddressingVersion.None` messages.
pub const NS_ADDRESSING_NONE: &str = "http://schemas.microsoft.com/ws/2005/05/addressing/none";
/// The NMF encoding of the exchange (`application/soap+msbin1`, §11.3).
pub const ENCODING_MSBIN1: u8 = 0x07;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the body of a request or reply is carried (`BodyFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The SDK's `Default` (treated like `Xml`).
    Default,
    /// The XML itself as the body's content.
    Xml,
    /// JSON bytes in one `Binary` element.
    Json,
    /// Any bytes in one `Binary` element.
    Raw,
    /// A SOAP 1.1 text envelope's bytes directly under `s:Body`.
    WrappedSoap11,
    /// A SOAP 1.2 text envelope's bytes directly under `s:Body`.
    WrappedSoap12,
}

const FORMATS: [(BodyFormat, &str); 6] = [
    (BodyFormat::Default, "Default"),
    (BodyFormat::Xml, "Xml"),
    (BodyFormat::Json, "Json"),
    (BodyFormat::Raw, "Raw"),
    (BodyFormat::WrappedSoap11, "WrappedSoap11"),
    (BodyFormat::WrappedSoap12, "WrappedSoap12"),
];

impl BodyFormat {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("Raw", |(_, n)| n)
    }

    /// From the name on the wire.
    pub fn parse(name: &str) -> Option<BodyFormat> {
        FORMATS
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(f, _)| *f)
    }

    /// The format of an HTTP request body: `WrappedSoap12` for
    /// `application/soap+xml`, `WrappedSoap11` for `text/xml` with a
    /// `SOAPAction`, `Xml` for other XML types, `Json` for JSON, else `Raw`.
    pub fn for_request(content_type: Option<&str>, soap_action: bool) -> BodyFormat {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match mime.as_str() {
            "application/soap+xml" => BodyFormat::WrappedSoap12,
            "text/xml" if soap_action => BodyFormat::WrappedSoap11,
            "text/xml" | "application/xml" => BodyFormat::Xml,
            m if m.ends_with("+xml") => BodyFormat::Xml,
            "application/json" | "text/json" => BodyFormat::Json,
            m if m.ends_with("+json") => BodyFormat::Json,
            _ => BodyFormat::Raw,
        }
    }

    /// Whether the body is a wrapped SOAP text envelope.
    pub fn wrapped(self) -> bool {
        matches!(self, BodyFormat::WrappedSoap11 | BodyFormat::WrappedSoap12)
    }

    /// Whether the body is bytes inside a `Binary` element.
    pub fn binary(self) -> bool {
        matches!(self, BodyFormat::Raw | BodyFormat::Json)
    }
}

/// Whether `name` can be an element's local name (an XML NCName, ASCII
/// only, as HTTP header names are).
pub fn is_xml_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A header name in the case HTTP/1.1 usually shows (`content-type` as
/// `Content-Type`), for element names read by case-sensitive peers.
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn web_element(ns: &str, local: &str, value: &str) -> Element {
    Element::new("", local, ns).with_xmlns("", ns).text(value)
}

fn header_pairs(env: &Envelope) -> Vec<(String, String)> {
    env.headers()
        .into_iter()
        .flat_map(Element::elements)
        .filter(|e| e.ns == NS_WEB && e.local != "HttpAddress" && e.local != "FaultReason")
        .map(|e| (e.local.clone(), e.text_content()))
        .collect()
}

fn body_format(env: &Envelope) -> Result<Option<BodyFormat>> {
    env.find_header("BodyFormat", NS_BODY)
        .map(|e| {
            let name = e.text_content();
            BodyFormat::parse(&name)
                .ok_or_else(|| Error::Message(format!("unknown BodyFormat '{name}'")))
        })
        .transpose()
}

/// The head of a relayed HTTP request (§11.3 "Request envelope").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The HTTP method (`a:Action`).
    pub method: String,
    /// The full request URL with its query (`HttpAddress`, also `a:To`).
    pub address: String,
    /// HTTP headers in order; names must be XML names.
    pub headers: Vec<(String, String)>,
    /// How the body is carried.
    pub format: BodyFormat,
    /// `a:MessageID` (`urn:uuid:...`).
    pub message_id: String,
}

impl RequestHead {
    /// The envelope with an empty body, headers in the order the SDK's own
    /// converter writes them.
    pub fn to_envelope(&self) -> Envelope {
        let mut env = Envelope::with_action(&self.method).header(web_element(
            NS_WEB,
            "HttpAddress",
            &self.address,
        ));
        for (name, value) in self.headers.iter().filter(|(n, _)| is_xml_name(n)) {
            env = env.header(web_element(NS_WEB, name, value));
        }
        env.header(web_element(NS_BODY, "BodyFormat", self.format.name()))
            .header(must_understand(
                Element::new("a", "To", NS_WSA10).text(&self.address),
            ))
            .header(Element::new("a", "MessageID", NS_WSA10).text(&self.message_id))
            .header(Element::new("a", "ReplyTo", NS_WSA10).child(
                Element::new("a", "Address", NS_WSA10).text(crate::nbfx::writer::WSA_ANONYMOUS),
            ))
    }

    /// Read a request head (the body is ignored).
    pub fn from_envelope(env: &Envelope) -> Result<RequestHead> {
        let method = env
            .action()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| Error::Message("the request has no a:Action (method)".into()))?;
        let address = env
            .find_header("HttpAddress", NS_WEB)
            .map(Element::text_content)
            .or_else(|| env.to())
            .ok_or_else(|| Error::Message("the request has no HttpAddress".into()))?;
        Ok(RequestHead {
            method,
            address,
            headers: header_pairs(env),
            format: body_format(env)?.unwrap_or(BodyFormat::Default),
            message_id: env.message_id().unwrap_or_default(),
        })
    }
}

/// The head of a listener's reply (§11.3 "Reply envelope").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyHead {
    /// `a:Action` (`<METHOD>Response` from WebHttp services).
    pub action: Option<String>,
    /// `StatusCode`, if present and not 0 (Mono's "unset").
    pub status: Option<u16>,
    /// `FaultReason`: the status description.
    pub reason: Option<String>,
    /// The response headers, repeated names kept apart.
    pub headers: Vec<(String, String)>,
    /// `BodyFormat`, if present.
    pub format: Option<BodyFormat>,
}

impl ReplyHead {
    /// The envelope with an empty body.
    pub fn to_envelope(&self) -> Envelope {
        let mut env = match &self.action {
            Some(a) => Envelope::with_action(a),
            None => Envelope::new(),
        };
        for (name, value) in self.headers.iter().filter(|(n, _)| is_xml_name(n)) {
            env = env.header(web_element(NS_WEB, name, value));
        }
        if let Some(s) = self.status {
            env = env.header(web_element(NS_STATUS, "StatusCode", &s.to_string()));
        }
        if let Some(r) = &self.reason {
            env = env.header(web_element(NS_WEB, "FaultReason", r));
        }
        if let Some(f) = self.format {
            env = env.header(web_element(NS_BODY, "BodyFormat", f.name()));
        }
        env
    }

    /// Read a reply head (the body is ignored).
    pub fn from_envelope(env: &Envelope) -> Result<ReplyHead> {
        let status = match env.find_header("StatusCode", NS_STATUS) {
            Some(e) => {
                let text = e.text_content();
                let code: u16 = text
                    .trim()
                    .parse()
                    .map_err(|_| Error::Message(format!("StatusCode '{text}' is not a number")))?;
                match code {
                    0 => None,
                    100..=999 => Some(code),
                    _ => return Err(Error::Message(format!("StatusCode {code} is out of range"))),
                }
            }
            None => None,
        };
        Ok(ReplyHead {
            action: env.action(),
            status,
            reason: env
                .find_header("FaultReason", NS_WEB)
                .map(Element::text_content)
                .filter(|r| !r.is_empty()),
            headers: header_pairs(env),
            format: body_format(env)?,
        })
    }
}

/// The envelope's msbin1 bytes up to and including its open `s:Body`:
/// the body's content and the two end records are for the caller
/// ([`BodyWriter`]). `env`'s body must be empty.
pub fn open_envelope(env: &Envelope) -> Result<Vec<u8>> {
    let mut doc = env.to_msbin1();
    if env.body().is_some_and(|b| !b.children.is_empty()) || !doc.ends_with(&[0x01, 0x01]) {
        return Err(Error::Message(
            "open_envelope needs an envelope with an empty body".into(),
        ));
    }
    doc.truncate(doc.len() - 2);
    Ok(doc)
}

/// Writes a body after [`open_envelope`]'s bytes: for `Raw` and `Json`
/// the bytes go in one `Binary` element (opened with the first byte, so an
/// empty body stays an empty `s:Body`), for the wrapped formats directly
/// under `s:Body`, each piece as one Bytes record.
#[derive(Debug)]
pub struct BodyWriter {
    format: BodyFormat,
    opened: bool,
}

impl BodyWriter {
    /// A writer for a body in `format`.
    pub fn new(format: BodyFormat) -> Self {
        BodyWriter {
            format,
            opened: false,
        }
    }

    /// Append `data` (any size; split into records of at most 16 MiB).
    pub fn data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for piece in data.chunks(16 << 20) {
            if !self.opened && self.format.binary() {
                out.extend_from_slice(b"\x40\x06Binary");
            }
            self.opened = true;
            Text::Bytes(piece, Width::for_len(piece.len())).encode(false, out);
        }
    }

    /// Append `data` (under 16 MiB) as one chunk of an UnsizedEnvelope.
    pub fn data_chunk(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut records = Vec::with_capacity(data.len() + 16);
        self.data(data, &mut records);
        chunk(&records, out);
    }

    /// Close the body and the envelope as the UnsizedEnvelope's last chunk,
    /// then its zero-size chunk and the End record.
    pub fn finish_framed(self, out: &mut Vec<u8>) {
        let mut tail = Vec::new();
        self.finish(&mut tail);
        chunk(&tail, out);
        out.extend_from_slice(&[0x00, 0x07]);
    }

    /// Close the body and the envelope.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.opened && self.format.binary() {
            out.push(0x01);
        }
        out.extend_from_slice(&[0x01, 0x01]);
    }
}

/// An XML body as the records of the body's content (`Xml` format); an
/// XML declaration and surrounding whitespace are dropped.
pub fn xml_body(xml: &str) -> Result<Vec<u8>> {
    crate::nbfx::from_xml(xml.trim_start_matches('\u{feff}'))
}

/// Insert `<Action xmlns="…/addressing/none" s:mustUnderstand="1">` with
/// `action` into a SOAP 1.1 text envelope, the "inject SOAPAction"
/// behaviour of §11.3's BasicHttp caveat: without it the SDK dispatched
/// nothing. It goes first in the existing `Header`, or in a new one right
/// after the `Envelope` start tag. `None` if the text has no SOAP 1.1
/// `Envelope` start tag to anchor on.
pub fn inject_soap11_action(envelope: &str, action: &str) -> Option<String> {
    let action = action.trim().trim_matches('"');
    let env_start = find_tag(envelope, "Envelope", 0)?;
    let prefix = env_start.prefix;
    let header = quick_xml::escape::escape(action);
    let element = format!(
        "<Action {prefix}mustUnderstand=\"1\" xmlns=\"{NS_ADDRESSING_NONE}\">{header}</Action>",
        prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        }
    );
    let mut out = String::with_capacity(envelope.len() + element.len() + 32);
    match find_tag(envelope, "Header", env_start.end) {
        Some(h) if !h.self_closing => {
            out.push_str(envelope.get(..h.end)?);
            out.push_str(&element);
            out.push_str(envelope.get(h.end..)?);
        }
        _ => {
            let qual = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}:")
            };
            out.push_str(envelope.get(..env_start.end)?);
            out.push_str(&format!("<{qual}Header>{element}</{qual}Header>"));
            out.push_str(envelope.get(env_start.end..)?);
        }
    }
    Some(out)
}

struct Tag<'a> {
    prefix: &'a str,
    /// Offset just past the tag's `>`.
    end: usize,
    self_closing: bool,
}

/// The first start tag named `local` (any prefix) at or after `from`.
fn find_tag<'a>(text: &'a str, local: &str, from: usize) -> Option<Tag<'a>> {
    let mut at = from;
    loop {
        let rel = text.get(at..)?.find('<')?;
        let start = at + rel + 1;
        let rest = text.get(start..)?;
        let name_len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = rest.get(..name_len)?;
        let (prefix, l) = name.split_once(':').unwrap_or(("", name));
        if l == local {
            let close = rest.find('>')?;
            return Some(Tag {
                prefix,
                end: start + close + 1,
                self_closing: rest.get(..close)?.ends_with('/'),
            });
        }
        at = start;
    }
}

/// Whether a SOAP text envelope's body starts with a `Fault`; `None` when
/// `prefix` (the envelope's first bytes) does not reach that far yet.
pub fn is_soap_fault(prefix: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(prefix);
    let body = find_tag(&text, "Body", 0)?;
    if body.self_closing {
        return Some(false);
    }
    let rest = text.get(body.end..)?.trim_start();
    let inner = rest.strip_prefix('<')?;
    let name_len = inner.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
    let name = inner.get(..name_len)?;
    Some(name.rsplit(':').next() == Some("Fault"))
}

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
                return Err(Error::Message(format!(
                    "the envelope's head is larger than {} bytes",
                    self.max_head
                )));
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
                None if self.buf.len() > self.max_head => Err(Error::Message(format!(
                    "a body element's start is larger than {} bytes",
                    self.max_head
                ))),
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
                    return Err(Error::Message(format!(
                        "a body text record is larger than {} bytes",
                        self.limits.max_message
                    )));
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
            other => Err(Error::structure(
                self.offset,
                format!("record 0x{other:02X} cannot be part of a relayed body"),
            )),
        }
    }

    /// The length of the element record and its attributes at the front of
    /// the buffer, and whether it is `Binary`; `None` if incomplete.
    fn element_end(&self) -> Result<Option<(usize, bool)>> {
        let mut reader = Reader::new(&self.buf, None, self.limits, self.offset);
        let binary = match reader.next() {
            Ok(Some(Record::Element(e))) => e.name.text == "Binary",
            Ok(_) => return Err(Error::structure(self.offset, "expected an element")),
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
            .map_err(|e| Error::Message(format!("body base64: {e}")))?;
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
            return Err(Error::Message(format!(
                "an XML body is larger than {} bytes",
                self.limits.max_message
            )));
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
            Some(other) => Err(Error::structure(
                self.offset,
                format!("expected the Envelope's end, found record 0x{other:02X}"),
            )),
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
        let before = reader.offset();
        match reader.next() {
            Ok(Some(Record::Element(e))) if reader.depth() == 2 && e.name.text == "Body" => {
                return attributes_end(&mut reader, 0);
            }
            Ok(Some(_)) => {
                if !matches!(reader.peek_type(), None | Some(0x04..=0x3F)) {
                    *scan = Scan {
                        pos: reader.offset(),
                        depth: reader.depth(),
                    };
                }
            }
            Ok(None) => return Err(Error::structure(before, "the envelope has no s:Body")),
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
                        return Err(Error::Message(format!(
                            "the peer sent a framing fault: {}",
                            fault.as_deref().unwrap_or("(cut short)")
                        )));
                    }
                    Some(other) => {
                        return Err(Error::Message(format!(
                            "expected an UnsizedEnvelope, found record 0x{other:02X}"
                        )))
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

/// Append `payload` as one chunk of an UnsizedEnvelope.
pub fn chunk(payload: &[u8], out: &mut Vec<u8>) {
    if payload.is_empty() {
        return;
    }
    mbint::encode(u32::try_from(payload.len()).unwrap_or(mbint::MAX), out);
    out.extend_from_slice(payload);
}
