//! Incremental [MC-NMF] record decoder (wcf/PROTOCOL.md §12.1, §1.4, §1.7).
//!
//! Feed it a growing buffer; it consumes one whole record at a time and
//! returns `Ok(None)` until the next record is complete, so the records it
//! yields never depend on how the stream was split. Every declared length is
//! checked against [`Limits`] before anything is buffered for it.

use bytes::{Buf, BytesMut};

use super::{FaultCode, Mode, Record};
use crate::{mbint, Error, Limits, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Records,
    /// Inside an UnsizedEnvelope; the total received so far.
    Unsized(usize),
    /// An upgrade was requested or granted: the rest is the upgraded protocol.
    Upgraded,
}

/// Decodes one direction of a .NET Message Framing stream.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    state: State,
    consumed: usize,
}

impl Decoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: State::Records,
            consumed: 0,
        }
    }

    /// Bytes consumed so far (the stream offset of the next record).
    pub fn offset(&self) -> usize {
        self.consumed
    }

    /// True once an UpgradeRequest or UpgradeResponse has been decoded: what
    /// follows in this direction belongs to the upgrade protocol (TLS or
    /// NegotiateStream), not to framing.
    pub fn is_upgraded(&self) -> bool {
        self.state == State::Upgraded
    }

    /// Resume decoding records, on the plaintext inside a finished upgrade.
    pub fn resume_after_upgrade(&mut self) {
        self.state = State::Records;
        self.consumed = 0;
    }

    /// Decode the next record from the front of `buf`, removing its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Record>> {
        let record = match self.state {
            State::Upgraded => return Ok(None),
            State::Unsized(total) => self.decode_chunk(buf, total)?,
            State::Records => self.decode_record(buf)?,
        };
        if let Some(r) = &record {
            match r {
                Record::UnsizedEnvelopeStart => self.state = State::Unsized(0),
                Record::UnsizedEnvelopeEnd => self.state = State::Records,
                Record::EnvelopeChunk(b) => {
                    if let State::Unsized(total) = self.state {
                        self.state = State::Unsized(total + b.len());
                    }
                }
                Record::UpgradeRequest(_) | Record::UpgradeResponse => {
                    self.state = State::Upgraded;
                }
                _ => {}
            }
        }
        Ok(record)
    }

    fn decode_chunk(&mut self, buf: &mut BytesMut, total: usize) -> Result<Option<Record>> {
        let Some((len, n)) = mbint::decode(buf, self.consumed)? else {
            return Ok(None);
        };
        let len = len as usize;
        if len == 0 {
            self.advance(buf, n);
            return Ok(Some(Record::UnsizedEnvelopeEnd));
        }
        if total.saturating_add(len) > self.limits.max_message {
            return Err(Error::Framing {
                offset: self.consumed,
                fault: FaultCode::MaxMessageSizeExceeded,
                message: format!(
                    "unsized envelope grows past {} bytes (limit {})",
                    total.saturating_add(len),
                    self.limits.max_message
                ),
            });
        }
        if buf.len() < n + len {
            buf.reserve(n + len - buf.len());
            return Ok(None);
        }
        self.advance(buf, n);
        let chunk = buf.split_to(len).freeze();
        self.consumed += len;
        Ok(Some(Record::EnvelopeChunk(chunk)))
    }

    fn decode_record(&mut self, buf: &mut BytesMut) -> Result<Option<Record>> {
        let Some(&ty) = buf.first() else {
            return Ok(None);
        };
        let fixed = |len: usize, buf: &BytesMut| buf.len() >= len;
        let record = match ty {
            0x00 => {
                if !fixed(3, buf) {
                    return Ok(None);
                }
                let r = Record::Version {
                    major: buf.get(1).copied().unwrap_or(0),
                    minor: buf.get(2).copied().unwrap_or(0),
                };
                self.advance(buf, 3);
                r
            }
            0x01 | 0x03 => {
                if !fixed(2, buf) {
                    return Ok(None);
                }
                let v = buf.get(1).copied().unwrap_or(0);
                self.advance(buf, 2);
                if ty == 0x01 {
                    Record::Mode(Mode::from_byte(v))
                } else {
                    Record::KnownEncoding(v)
                }
            }
            0x02 => match self.string(buf, "via", self.limits.max_via, FaultCode::ViaTooLong)? {
                Some(s) => Record::Via(s),
                None => return Ok(None),
            },
            0x04 => match self.string(
                buf,
                "content type",
                self.limits.max_content_type,
                FaultCode::ContentTypeTooLong,
            )? {
                Some(s) => Record::ExtensibleEncoding(s),
                None => return Ok(None),
            },
            0x08 => match self.string(
                buf,
                "fault",
                self.limits.max_fault,
                FaultCode::ConnectionDispatchFailed,
            )? {
                Some(s) => Record::Fault(s),
                None => return Ok(None),
            },
            0x09 => match self.string(
                buf,
                "upgrade protocol",
                self.limits.max_fault,
                FaultCode::UpgradeInvalid,
            )? {
                Some(s) => Record::UpgradeRequest(s),
                None => return Ok(None),
            },
            0x05 => {
                self.advance(buf, 1);
                Record::UnsizedEnvelopeStart
            }
            0x06 => {
                let rest = buf.get(1..).unwrap_or_default();
                let Some((len, n)) = mbint::decode(rest, self.consumed + 1)? else {
                    return Ok(None);
                };
                let len = len as usize;
                if len > self.limits.max_message {
                    return Err(Error::Framing {
                        offset: self.consumed,
                        fault: FaultCode::MaxMessageSizeExceeded,
                        message: format!(
                            "sized envelope of {len} bytes exceeds the limit of {}",
                            self.limits.max_message
                        ),
                    });
                }
                if buf.len() < 1 + n + len {
                    buf.reserve(1 + n + len - buf.len());
                    return Ok(None);
                }
                self.advance(buf, 1 + n);
                let payload = buf.split_to(len).freeze();
                self.consumed += len;
                Record::SizedEnvelope(payload)
            }
            0x07 | 0x0A | 0x0B | 0x0C => {
                self.advance(buf, 1);
                match ty {
                    0x07 => Record::End,
                    0x0A => Record::UpgradeResponse,
                    0x0B => Record::PreambleAck,
                    _ => Record::PreambleEnd,
                }
            }
            other => {
                return Err(Error::Framing {
                    offset: self.consumed,
                    fault: if self.consumed == 0 {
                        FaultCode::UnsupportedVersion
                    } else {
                        FaultCode::ConnectionDispatchFailed
                    },
                    message: format!("unknown framing record type 0x{other:02x}"),
                })
            }
        };
        Ok(Some(record))
    }

    /// A type byte, an MB31 length and that many UTF-8 bytes.
    fn string(
        &mut self,
        buf: &mut BytesMut,
        what: &'static str,
        limit: usize,
        fault: FaultCode,
    ) -> Result<Option<String>> {
        let rest = buf.get(1..).unwrap_or_default();
        let Some((len, n)) = mbint::decode(rest, self.consumed + 1)? else {
            return Ok(None);
        };
        let len = len as usize;
        if len > limit {
            return Err(Error::Framing {
                offset: self.consumed,
                fault,
                message: format!("{what} of {len} bytes exceeds the limit of {limit}"),
            });
        }
        let Some(bytes) = buf.get(1 + n..1 + n + len) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::BadText {
                offset: self.consumed + 1 + n,
                what,
            })?
            .to_owned();
        self.advance(buf, 1 + n + len);
        Ok(Some(text))
    }

    fn advance(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.consumed += n;
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn all(bytes: &[u8], step: usize) -> Result<Vec<Record>> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            buf.extend_from_slice(chunk);
            while let Some(r) = d.decode(&mut buf)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn every_record_type_round_trips_in_every_split() {
        let records = vec![
            Record::Version { major: 1, minor: 0 },
            Record::Mode(Mode::SingletonUnsized),
            Record::Via("net.tcp://h/p".into()),
            Record::KnownEncoding(7),
            Record::ExtensibleEncoding("application/soap+msbin1+gzip".into()),
            Record::PreambleEnd,
            Record::PreambleAck,
            Record::UnsizedEnvelopeStart,
            Record::EnvelopeChunk(Bytes::from(vec![1u8; 200])),
            Record::EnvelopeChunk(Bytes::from_static(b"xyz")),
            Record::UnsizedEnvelopeEnd,
            Record::SizedEnvelope(Bytes::from(vec![9u8; 300])),
            Record::Fault(FaultCode::EndpointNotFound.uri()),
            Record::End,
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode(&mut bytes);
        }
        for step in 1..=bytes.len() {
            assert_eq!(all(&bytes, step).unwrap(), records, "step {step}");
        }
    }

    #[test]
    fn upgrade_stops_record_decoding() {
        let mut bytes = Record::UpgradeRequest(super::super::UPGRADE_TLS.into()).to_bytes();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]);
        let mut d = Decoder::default();
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            d.decode(&mut buf).unwrap(),
            Some(Record::UpgradeRequest(_))
        ));
        assert!(d.is_upgraded());
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], &[0x16, 0x03, 0x01]);
    }

    #[test]
    fn declared_lengths_are_bounded_before_buffering() {
        // A SizedEnvelope declaring 2 GiB: rejected from its 6 header bytes.
        let mut buf = BytesMut::from(&[0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x07][..]);
        let err = Decoder::default().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            Error::Framing {
                fault: FaultCode::MaxMessageSizeExceeded,
                ..
            }
        ));
        assert!(buf.capacity() < 1024);
        // A Via over 2048 bytes.
        let mut buf = BytesMut::from(&[0x02, 0x81, 0x10][..]);
        let err = Decoder::default().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            Error::Framing {
                fault: FaultCode::ViaTooLong,
                ..
            }
        ));
    }

    #[test]
    fn unknown_record_type_is_a_fault() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let err = Decoder::default().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            Error::Framing {
                fault: FaultCode::UnsupportedVersion,
                offset: 0,
                ..
            }
        ));
    }
}
