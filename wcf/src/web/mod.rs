//! HTTP requests and replies carried over a `RelayedHttp` rendezvous
//! (`wcf/PROTOCOL.md` §9, §11.3): the SOAP 1.2 wrapper the relay sends
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
//! Submodules: [`incoming`] reads relayed envelopes as they arrive
//! ([`Incoming`], [`Unframe`]); [`soap11`] holds the SOAP text helpers
//! of the wrapped formats.
//!
//! Header names: an HTTP header whose name is not a valid XML name is not
//! carried ([`is_xml_name`]); repeated request headers travel as one element
//! with the values joined by ", " (RFC 9110 §5.3); repeated reply elements
//! become repeated response headers (as `Set-Cookie` needs).

pub mod incoming;
pub mod soap11;

pub use incoming::{Event, Incoming, Unframe};
pub use soap11::{inject_soap11_action, is_soap_fault};

use crate::nbfx::record::Width;
use crate::nbfx::Text;
use crate::soap::{must_understand, Element, Envelope, NS_WSA10};
use crate::{mbint, Error, Result};

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
/// `Content-Type`, `soapaction` as `SOAPAction`), for element names read
/// by case-sensitive peers.
pub fn title_case(name: &str) -> String {
    const IRREGULAR: [&str; 5] = [
        "SOAPAction",
        "ETag",
        "WWW-Authenticate",
        "Content-MD5",
        "DNT",
    ];
    if let Some(known) = IRREGULAR.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return (*known).to_owned();
    }
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

pub(crate) fn header_pairs(env: &Envelope) -> Vec<(String, String)> {
    env.headers()
        .into_iter()
        .flat_map(Element::elements)
        .filter(|e| e.ns == NS_WEB && e.local != "HttpAddress" && e.local != "FaultReason")
        .map(|e| (e.local.clone(), e.text_content()))
        .collect()
}

pub(crate) fn body_format(env: &Envelope) -> Result<Option<BodyFormat>> {
    env.find_header("BodyFormat", NS_BODY)
        .map(|e| {
            let name = e.text_content();
            BodyFormat::parse(&name).ok_or_else(|| Error::UnknownBodyFormat(name.to_owned()))
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
            .ok_or_else(|| Error::missing("the request", "a:Action (method)"))?;
        let address = env
            .find_header("HttpAddress", NS_WEB)
            .map(Element::text_content)
            .or_else(|| env.to())
            .ok_or_else(|| Error::missing("the request", "HttpAddress"))?;
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
                    .map_err(|_| Error::invalid(format!("StatusCode '{text}'"), "a number"))?;
                match code {
                    0 => None,
                    100..=999 => Some(code),
                    _ => return Err(Error::OutOfRange(format!("StatusCode {code}"))),
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
        return Err(Error::BodyNotEmpty);
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

/// Append `payload` as one chunk of an UnsizedEnvelope.
pub fn chunk(payload: &[u8], out: &mut Vec<u8>) {
    if payload.is_empty() {
        return;
    }
    mbint::encode(u32::try_from(payload.len()).unwrap_or(mbint::MAX), out);
    out.extend_from_slice(payload);
}
