//! [MC-NMF] .NET Message Framing (wcf/PROTOCOL.md §12.1): the thirteen record
//! types, their encoder, an incremental chunk-invariant [`Decoder`], and the
//! server side of the preamble ([`preamble::ServerPreamble`]).

mod decoder;
pub mod preamble;

pub use decoder::Decoder;

use bytes::Bytes;

use crate::mbint;

/// The prefix shared by every standard framing fault URI.
pub const FAULT_PREFIX: &str = "http://schemas.microsoft.com/ws/2006/05/framing/faults/";

/// Upgrade protocol name for TLS (`application/ssl-tls`).
pub const UPGRADE_TLS: &str = "application/ssl-tls";
/// Upgrade protocol name for [MS-NNS] NegotiateStream (`application/negotiate`).
pub const UPGRADE_NEGOTIATE: &str = "application/negotiate";

/// The communication mode carried by a Mode record (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0x01: one message per preamble, as an UnsizedEnvelope (Streamed transfer).
    SingletonUnsized,
    /// 0x02: many SizedEnvelopes in both directions (NetTcpBinding's normal mode).
    Duplex,
    /// 0x03: SizedEnvelopes in one direction, no PreambleEnd or Ack.
    Simplex,
    /// 0x04: the preamble, then raw octets until close (net.msmq).
    SingletonSized,
    /// Any other byte; the preamble machine answers it with `UnsupportedMode`.
    Other(u8),
}

impl Mode {
    /// Wire value.
    pub fn byte(self) -> u8 {
        match self {
            Mode::SingletonUnsized => 1,
            Mode::Duplex => 2,
            Mode::Simplex => 3,
            Mode::SingletonSized => 4,
            Mode::Other(b) => b,
        }
    }

    /// From the wire value.
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => Mode::SingletonUnsized,
            2 => Mode::Duplex,
            3 => Mode::Simplex,
            4 => Mode::SingletonSized,
            other => Mode::Other(other),
        }
    }
}

/// Known encodings (§1.3): value and content type.
pub const KNOWN_ENCODINGS: [(u8, &str); 9] = [
    (0x00, "text/xml; charset=utf-8"),
    (0x01, "text/xml; charset=utf16"),
    (0x02, "text/xml; charset=unicodeFFFE"),
    (0x03, "application/soap+xml; charset=utf-8"),
    (0x04, "application/soap+xml; charset=utf16"),
    (0x05, "application/soap+xml; charset=unicodeFFFE"),
    (0x06, "multipart/related"),
    (0x07, "application/soap+msbin1"),
    (0x08, "application/soap+msbinsession1"),
];

/// Known encoding 0x07, binary XML without a session dictionary.
pub const ENCODING_MSBIN1: u8 = 0x07;
/// Known encoding 0x08, binary XML with the in-band session dictionary.
pub const ENCODING_MSBINSESSION1: u8 = 0x08;

/// Content type of a known encoding value, if it is one.
pub fn known_encoding_name(value: u8) -> Option<&'static str> {
    KNOWN_ENCODINGS
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, name)| *name)
}

/// The standard framing faults (§1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// The encoding is not supported.
    ContentTypeInvalid,
    /// The ExtensibleEncoding content type exceeds its quota.
    ContentTypeTooLong,
    /// The connection could not be dispatched (also used here for records that
    /// arrive out of order during the preamble).
    ConnectionDispatchFailed,
    /// No endpoint listens at the Via.
    EndpointNotFound,
    /// The endpoint exists but is not available.
    EndpointUnavailable,
    /// A message exceeds the maximum message size.
    MaxMessageSizeExceeded,
    /// The server is too busy.
    ServerTooBusy,
    /// The service could not be activated.
    ServiceActivationFailed,
    /// The Mode record names an unsupported mode.
    UnsupportedMode,
    /// The Version record is not 1.x (or the stream is not NMF at all).
    UnsupportedVersion,
    /// The requested upgrade protocol is not supported.
    UpgradeInvalid,
    /// The Via exceeds its quota.
    ViaTooLong,
}

impl FaultCode {
    const ALL: [FaultCode; 12] = [
        FaultCode::ContentTypeInvalid,
        FaultCode::ContentTypeTooLong,
        FaultCode::ConnectionDispatchFailed,
        FaultCode::EndpointNotFound,
        FaultCode::EndpointUnavailable,
        FaultCode::MaxMessageSizeExceeded,
        FaultCode::ServerTooBusy,
        FaultCode::ServiceActivationFailed,
        FaultCode::UnsupportedMode,
        FaultCode::UnsupportedVersion,
        FaultCode::UpgradeInvalid,
        FaultCode::ViaTooLong,
    ];

    /// The last segment of the fault URI.
    pub fn name(self) -> &'static str {
        match self {
            FaultCode::ContentTypeInvalid => "ContentTypeInvalid",
            FaultCode::ContentTypeTooLong => "ContentTypeTooLong",
            FaultCode::ConnectionDispatchFailed => "ConnectionDispatchFailed",
            FaultCode::EndpointNotFound => "EndpointNotFound",
            FaultCode::EndpointUnavailable => "EndpointUnavailable",
            FaultCode::MaxMessageSizeExceeded => "MaxMessageSizeExceededFault",
            FaultCode::ServerTooBusy => "ServerTooBusy",
            FaultCode::ServiceActivationFailed => "ServiceActivationFailed",
            FaultCode::UnsupportedMode => "UnsupportedMode",
            FaultCode::UnsupportedVersion => "UnsupportedVersion",
            FaultCode::UpgradeInvalid => "UpgradeInvalid",
            FaultCode::ViaTooLong => "ViaTooLong",
        }
    }

    /// The full fault URI carried in a Fault record.
    pub fn uri(self) -> String {
        format!("{FAULT_PREFIX}{}", self.name())
    }

    /// Recognise a standard fault URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let name = uri.strip_prefix(FAULT_PREFIX)?;
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The Fault record for this code.
    pub fn record(self) -> Record {
        Record::Fault(self.uri())
    }
}

/// One .NET Message Framing record. An UnsizedEnvelope is reported as its
/// start, each chunk, and its terminator, so that a streamed message never has
/// to be held whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// 0x00 Version (major, minor).
    Version {
        /// Major version (1).
        major: u8,
        /// Minor version (0).
        minor: u8,
    },
    /// 0x01 Mode.
    Mode(Mode),
    /// 0x02 Via.
    Via(String),
    /// 0x03 KnownEncoding.
    KnownEncoding(u8),
    /// 0x04 ExtensibleEncoding (a MIME content type).
    ExtensibleEncoding(String),
    /// 0x05, the start of an UnsizedEnvelope.
    UnsizedEnvelopeStart,
    /// One chunk of an UnsizedEnvelope.
    EnvelopeChunk(Bytes),
    /// The zero-size chunk that ends an UnsizedEnvelope.
    UnsizedEnvelopeEnd,
    /// 0x06 SizedEnvelope.
    SizedEnvelope(Bytes),
    /// 0x07 End.
    End,
    /// 0x08 Fault, with its URI.
    Fault(String),
    /// 0x09 UpgradeRequest, with the protocol name.
    UpgradeRequest(String),
    /// 0x0A UpgradeResponse; the upgraded stream starts right after it.
    UpgradeResponse,
    /// 0x0B PreambleAck.
    PreambleAck,
    /// 0x0C PreambleEnd.
    PreambleEnd,
}

impl Record {
    /// The standard preamble of a client: Version 1.0, Mode, Via,
    /// KnownEncoding (without PreambleEnd, so upgrades can follow).
    pub fn preamble(mode: Mode, via: &str, encoding: u8) -> [Record; 4] {
        [
            Record::Version { major: 1, minor: 0 },
            Record::Mode(mode),
            Record::Via(via.to_owned()),
            Record::KnownEncoding(encoding),
        ]
    }

    /// Append the wire form of this record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, ty: u8, s: &str) {
            out.push(ty);
            mbint::encode(u32::try_from(s.len()).unwrap_or(mbint::MAX), out);
            out.extend_from_slice(s.as_bytes());
        }
        match self {
            Record::Version { major, minor } => out.extend_from_slice(&[0x00, *major, *minor]),
            Record::Mode(m) => out.extend_from_slice(&[0x01, m.byte()]),
            Record::Via(v) => string(out, 0x02, v),
            Record::KnownEncoding(e) => out.extend_from_slice(&[0x03, *e]),
            Record::ExtensibleEncoding(c) => string(out, 0x04, c),
            Record::UnsizedEnvelopeStart => out.push(0x05),
            Record::EnvelopeChunk(b) => {
                mbint::encode(u32::try_from(b.len()).unwrap_or(mbint::MAX), out);
                out.extend_from_slice(b);
            }
            Record::UnsizedEnvelopeEnd => out.push(0x00),
            Record::SizedEnvelope(b) => {
                out.push(0x06);
                mbint::encode(u32::try_from(b.len()).unwrap_or(mbint::MAX), out);
                out.extend_from_slice(b);
            }
            Record::End => out.push(0x07),
            Record::Fault(f) => string(out, 0x08, f),
            Record::UpgradeRequest(p) => string(out, 0x09, p),
            Record::UpgradeResponse => out.push(0x0A),
            Record::PreambleAck => out.push(0x0B),
            Record::PreambleEnd => out.push(0x0C),
        }
    }

    /// The wire form of this record as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// A one-line description, as used by the `decode` transcript.
    pub fn describe(&self) -> String {
        match self {
            Record::Version { major, minor } => format!("Version {major}.{minor}"),
            Record::Mode(m) => format!("Mode {} ({m:?})", m.byte()),
            Record::Via(v) => format!("Via {v}"),
            Record::KnownEncoding(e) => match known_encoding_name(*e) {
                Some(name) => format!("KnownEncoding 0x{e:02x} ({name})"),
                None => format!("KnownEncoding 0x{e:02x}"),
            },
            Record::ExtensibleEncoding(c) => format!("ExtensibleEncoding {c}"),
            Record::UnsizedEnvelopeStart => "UnsizedEnvelope".to_owned(),
            Record::EnvelopeChunk(b) => format!("  chunk {} bytes", b.len()),
            Record::UnsizedEnvelopeEnd => "  end of UnsizedEnvelope".to_owned(),
            Record::SizedEnvelope(b) => format!("SizedEnvelope {} bytes", b.len()),
            Record::End => "End".to_owned(),
            Record::Fault(f) => format!("Fault {f}"),
            Record::UpgradeRequest(p) => format!("UpgradeRequest {p}"),
            Record::UpgradeResponse => "UpgradeResponse".to_owned(),
            Record::PreambleAck => "PreambleAck".to_owned(),
            Record::PreambleEnd => "PreambleEnd".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_uris_round_trip() {
        for f in FaultCode::ALL {
            assert_eq!(FaultCode::from_uri(&f.uri()), Some(f));
        }
        assert_eq!(
            FaultCode::MaxMessageSizeExceeded.uri(),
            "http://schemas.microsoft.com/ws/2006/05/framing/faults/MaxMessageSizeExceededFault"
        );
    }

    #[test]
    fn spec_duplex_preamble_bytes() {
        let mut out = Vec::new();
        for r in Record::preamble(Mode::Duplex, "net.tcp://localhost:808/EchoService/", 8) {
            r.encode(&mut out);
        }
        Record::PreambleEnd.encode(&mut out);
        assert_eq!(out.len(), 46);
        assert_eq!(&out[..7], &[0x00, 0x01, 0x00, 0x01, 0x02, 0x02, 0x24]);
        assert_eq!(&out[43..], &[0x03, 0x08, 0x0C]);
    }
}
