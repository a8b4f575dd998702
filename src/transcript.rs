//! `relay-gateway decode`: turn captured WCF bytes into a readable
//! transcript (one line per framing record, each envelope as indented XML),
//! in the layout of the fixtures' `*.transcript` files.
//!
//! Input is detected: a conversation hex dump (both directions, each with its
//! own framing decoder and session dictionary), or the raw bytes of one
//! direction. Each direction is recognised by its first bytes: the 9352
//! `connect` preamble, a 4-byte length-prefixed msbin1 message, a bare msbin1
//! envelope, or .NET Message Framing. Bytes after a TLS flag or an upgrade are
//! reported as opaque.

use bytes::BytesMut;
use wcf::framing::{Decoder, Record, ENCODING_MSBIN1, ENCODING_MSBINSESSION1};
use wcf::hexdump::{self, Direction};
use wcf::nbfx::{self, SessionDictionary};
use wcf::relay::{self, ConnectPreamble, MAX_PREFIXED_MESSAGE};
use wcf::Limits;

/// A decode failure: which direction (`"C>S "` style prefix, empty for
/// single-direction input), then the error with its byte offset within that
/// direction's stream.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{label}{error}")]
pub struct DecodeError {
    label: String,
    error: wcf::Error,
}

/// How to read an envelope given with `--envelope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// msbin1.
    Plain,
    /// msbinsession1 (starts with a StringTable).
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unknown,
    Nmf,
    RelayPreamble,
    Prefixed,
    Envelope,
    Opaque,
}

struct Side {
    label: &'static str,
    kind: Kind,
    buf: BytesMut,
    offset: usize,
    framing: Decoder,
    session: SessionDictionary,
    encoding: Option<u8>,
    streamed: Option<Vec<u8>>,
    streamed_at: usize,
    opaque: usize,
    limits: Limits,
}

impl Side {
    fn new(label: &'static str, limits: Limits) -> Self {
        Side {
            label,
            kind: Kind::Unknown,
            buf: BytesMut::new(),
            offset: 0,
            framing: Decoder::new(limits),
            session: SessionDictionary::new(limits.max_session),
            encoding: None,
            streamed: None,
            streamed_at: 0,
            opaque: 0,
            limits,
        }
    }

    /// `e` as a decode error, its offset moved by `base` (where the buffer it
    /// was decoded from starts in this direction's stream).
    fn err(&self, base: usize, e: wcf::Error) -> DecodeError {
        DecodeError {
            label: if self.label.is_empty() {
                String::new()
            } else {
                format!("{} ", self.label)
            },
            error: e.shifted(base),
        }
    }

    fn line(&self, out: &mut String, text: &str) {
        if self.label.is_empty() {
            out.push_str(text);
        } else {
            out.push_str(&format!("[{}] {text}", self.label));
        }
        out.push('\n');
    }

    fn detect(&mut self) -> bool {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return false;
        };
        self.kind = if b.starts_with(&[7, 0, 0, 0])
            || (b.len() < 4 && b.iter().zip([7u8, 0, 0, 0]).all(|(x, y)| *x == y))
        {
            if b.len() < 4 {
                return false;
            }
            Kind::RelayPreamble
        } else if (0x40..=0x77).contains(&first) {
            Kind::Envelope
        } else if b.len() >= 5
            && b.get(4).is_some_and(|x| (0x40..=0x77).contains(x))
            && first > 0x0C
        {
            Kind::Prefixed
        } else if b.len() < 5 && first > 0x0C {
            return false;
        } else {
            Kind::Nmf
        };
        true
    }

    fn envelope(
        &mut self,
        payload: &[u8],
        session: bool,
        at: usize,
        out: &mut String,
    ) -> Result<(), DecodeError> {
        let xml = if session {
            nbfx::session_to_xml(payload, &mut self.session, self.limits, true)
        } else {
            nbfx::to_xml(payload, self.limits, true)
        }
        .map_err(|e| self.err(at, e))?;
        for l in xml.lines() {
            out.push_str("    ");
            out.push_str(l);
            out.push('\n');
        }
        Ok(())
    }

    fn feed(&mut self, bytes: &[u8], out: &mut String) -> Result<(), DecodeError> {
        if self.kind == Kind::Opaque {
            self.opaque += bytes.len();
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        if self.kind == Kind::Unknown && !self.detect() {
            return Ok(());
        }
        loop {
            let progressed = match self.kind {
                Kind::Nmf => self.step_nmf(out)?,
                Kind::RelayPreamble => self.step_preamble(out)?,
                Kind::Prefixed => self.step_prefixed(out)?,
                Kind::Envelope | Kind::Unknown => false,
                Kind::Opaque => {
                    self.opaque += self.buf.len();
                    self.buf.clear();
                    false
                }
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn step_nmf(&mut self, out: &mut String) -> Result<bool, DecodeError> {
        let rec = match self.framing.decode(&mut self.buf) {
            Ok(Some(r)) => r,
            Ok(None) => {
                if self.framing.is_upgraded() {
                    self.kind = Kind::Opaque;
                    return Ok(true);
                }
                return Ok(false);
            }
            Err(e) => return Err(self.err(0, e)),
        };
        match &rec {
            Record::KnownEncoding(e) => self.encoding = Some(*e),
            Record::SizedEnvelope(p) => {
                self.line(out, &rec.describe());
                let payload = p.clone();
                let start = self.framing.offset() - payload.len();
                return self.payload(&payload, start, out).map(|()| true);
            }
            Record::UnsizedEnvelopeStart => {
                self.streamed = Some(Vec::new());
                self.streamed_at = self.framing.offset();
            }
            Record::EnvelopeChunk(c) => {
                if let Some(u) = self.streamed.as_mut() {
                    u.extend_from_slice(c);
                }
            }
            Record::UnsizedEnvelopeEnd => {
                self.line(out, &rec.describe());
                // Offsets inside a streamed envelope count its bytes only
                // (chunk headers are not part of the envelope).
                let body = self.streamed.take().unwrap_or_default();
                return self.payload(&body, self.streamed_at, out).map(|()| true);
            }
            _ => {}
        }
        self.line(out, &rec.describe());
        Ok(true)
    }

    fn payload(&mut self, payload: &[u8], at: usize, out: &mut String) -> Result<(), DecodeError> {
        match self.encoding {
            Some(ENCODING_MSBINSESSION1) => self.envelope(payload, true, at, out),
            Some(ENCODING_MSBIN1) => self.envelope(payload, false, at, out),
            _ => {
                out.push_str(&format!(
                    "    ({} bytes in a non-binary encoding)\n",
                    payload.len()
                ));
                Ok(())
            }
        }
    }

    fn step_preamble(&mut self, out: &mut String) -> Result<bool, DecodeError> {
        match ConnectPreamble::decode(&self.buf, self.limits) {
            Ok(Some((p, used))) => {
                let _ = self.buf.split_to(used);
                self.offset += used;
                self.line(
                    out,
                    &format!("RelayPreamble connect via {} tls={}", p.via, p.tls),
                );
                self.kind = if p.tls { Kind::Opaque } else { Kind::Prefixed };
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(self.err(self.offset, e)),
        }
    }

    fn step_prefixed(&mut self, out: &mut String) -> Result<bool, DecodeError> {
        let (msg, used) = match relay::read_prefixed(&self.buf, MAX_PREFIXED_MESSAGE) {
            Ok(Some((m, used))) => (m.to_vec(), used),
            Ok(None) => return Ok(false),
            Err(e) => return Err(self.err(self.offset, e)),
        };
        let at = self.offset + 4;
        self.line(out, &format!("LengthPrefixedMessage {} bytes", msg.len()));
        let _ = self.buf.split_to(used);
        self.offset += used;
        self.envelope(&msg, false, at, out)?;
        Ok(true)
    }

    fn finish(&mut self, out: &mut String) -> Result<(), DecodeError> {
        match self.kind {
            Kind::Envelope => {
                let doc = std::mem::take(&mut self.buf);
                self.line(out, &format!("Envelope {} bytes", doc.len()));
                self.envelope(&doc, false, 0, out)?;
            }
            Kind::Opaque => {
                self.opaque += self.buf.len();
                self.buf.clear();
                if self.opaque > 0 {
                    self.line(
                        out,
                        &format!("({} bytes of TLS or upgraded stream, opaque)", self.opaque),
                    );
                }
            }
            Kind::Unknown if !self.buf.is_empty() => {
                return Err(self.err(
                    0,
                    wcf::Error::Truncated {
                        offset: 0,
                        what: "a recognisable stream start",
                    },
                ));
            }
            _ if !self.buf.is_empty() => {
                let offset = self.framing.offset().max(self.offset);
                return Err(self.err(
                    0,
                    wcf::Error::Truncated {
                        offset,
                        what: "a record",
                    },
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Decode a conversation or one direction's bytes into a transcript.
pub fn decode(input: &[u8], limits: Limits) -> Result<String, DecodeError> {
    let mut out = String::new();
    let text = std::str::from_utf8(input)
        .ok()
        .filter(|t| hexdump::looks_like(t));
    let Some(text) = text else {
        let mut side = Side::new("", limits);
        side.feed(input, &mut out)?;
        side.finish(&mut out)?;
        return Ok(out);
    };
    let chunks = hexdump::parse(text).map_err(hex_error)?;
    let two_way = chunks
        .iter()
        .any(|c| c.direction == Direction::ServerToClient);
    let mut c2s = Side::new(if two_way { "C>S" } else { "" }, limits);
    let mut s2c = Side::new("S>C", limits);
    for chunk in &chunks {
        match chunk.direction {
            Direction::ClientToServer => c2s.feed(&chunk.bytes, &mut out)?,
            Direction::ServerToClient => {
                // Only the client announces the encoding; the server answers in it.
                s2c.encoding = s2c.encoding.or(c2s.encoding);
                s2c.feed(&chunk.bytes, &mut out)?;
            }
        }
    }
    c2s.finish(&mut out)?;
    s2c.finish(&mut out)?;
    Ok(out)
}

/// Bytes of input that may be a hex dump of one direction, or raw.
pub fn raw_or_hex(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match std::str::from_utf8(input)
        .ok()
        .filter(|t| hexdump::looks_like(t))
    {
        Some(text) => hexdump::parse(text)
            .map(|chunks| chunks.into_iter().flat_map(|c| c.bytes).collect())
            .map_err(hex_error),
        None => Ok(input.to_vec()),
    }
}

/// Decode one envelope given on its own (`decode --envelope`).
pub fn decode_envelope(
    input: &[u8],
    kind: EnvelopeKind,
    limits: Limits,
) -> Result<String, DecodeError> {
    let bytes = raw_or_hex(input)?;
    let result = match kind {
        EnvelopeKind::Plain => nbfx::to_xml(&bytes, limits, true),
        EnvelopeKind::Session => {
            let mut s = SessionDictionary::new(limits.max_session);
            nbfx::session_to_xml(&bytes, &mut s, limits, true)
        }
    };
    result.map_err(|error| DecodeError {
        label: String::new(),
        error,
    })
}

fn hex_error(e: hexdump::HexError) -> DecodeError {
    DecodeError {
        label: String::new(),
        error: wcf::Error::HexDump(e),
    }
}
