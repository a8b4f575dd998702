//! Typed decode and encode errors shared by every codec in the crate, each
//! with the byte offset (relative to the start of the buffer being decoded)
//! where the problem was found.

use std::sync::Arc;

use crate::framing::FaultCode;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while reading or writing WCF wire formats.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A multi-byte int31 had more than five bytes or a value above `0x7FFF_FFFF`.
    #[error("offset {offset}: invalid multi-byte int31")]
    BadMbInt {
        /// Byte offset of the first byte of the integer.
        offset: usize,
    },
    /// A length read off the wire is larger than the limit in force.
    #[error("offset {offset}: {what} of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Byte offset of the length field.
        offset: usize,
        /// Which field carried the length.
        what: &'static str,
        /// The declared length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// An unknown or invalid record type byte.
    #[error("offset {offset}: unknown {kind} record type 0x{byte:02x}")]
    UnknownRecord {
        /// Byte offset of the record type.
        offset: usize,
        /// `"framing"` or `"nbfx"`.
        kind: &'static str,
        /// The offending byte.
        byte: u8,
    },
    /// Bytes that should be UTF-8 (or UTF-16) text are not.
    #[error("offset {offset}: {what} is not valid text")]
    BadText {
        /// Byte offset of the string's first byte.
        offset: usize,
        /// Which field was being read.
        what: &'static str,
    },
    /// The input ended in the middle of a value that cannot be incomplete
    /// (whole-buffer decoders only; incremental decoders return `Ok(None)`).
    #[error("offset {offset}: input ends inside {what}")]
    Truncated {
        /// Byte offset where the input ended.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A record declares a length that runs past the end of the input
    /// (cut short, or a wrong length: whole-buffer readers cannot tell).
    #[error("offset {offset}: {what} declares {declared} bytes but only {remaining} remain")]
    Overrun {
        /// Byte offset where the declared bytes start.
        offset: usize,
        /// Which field was being read.
        what: &'static str,
        /// The declared length.
        declared: usize,
        /// What the input still held.
        remaining: usize,
    },
    /// A dictionary string id that no dictionary defines.
    #[error("offset {offset}: dictionary string id {id} is not defined")]
    UnknownDictionaryId {
        /// Byte offset of the id.
        offset: usize,
        /// The wire id (even: static, odd: session).
        id: u32,
    },
    /// The records are individually fine but break a rule of the format
    /// where they stand (an attribute after content, an unbalanced end, a
    /// header that is not a protocol's).
    #[error("offset {offset}: {rule}")]
    Misplaced {
        /// Byte offset of the record that broke the rule.
        offset: usize,
        /// The rule, as a phrase.
        rule: &'static str,
    },
    /// An attribute or namespace declaration after its element's start tag.
    #[error("offset {offset}: {what} outside a start tag")]
    OutsideStartTag {
        /// Byte offset of the record.
        offset: usize,
        /// Which kind of record.
        what: &'static str,
    },
    /// A record that has no place where it stands, by its type byte.
    #[error("offset {offset}: {}", .place.describe(*.byte))]
    Unexpected {
        /// Byte offset of the record.
        offset: usize,
        /// Where it was found.
        place: Place,
        /// Its type byte.
        byte: u8,
    },
    /// A length or count that is negative.
    #[error("offset {offset}: negative {what}")]
    Negative {
        /// Byte offset of the value.
        offset: usize,
        /// Which field.
        what: &'static str,
    },
    /// A BoolText record whose value is neither 0 nor 1.
    #[error("offset {offset}: BoolText value {value}")]
    BoolValue {
        /// Byte offset of the value.
        offset: usize,
        /// The value.
        value: u8,
    },
    /// A QName record whose prefix index is past `z`.
    #[error("offset {offset}: QName prefix index {index}")]
    PrefixIndex {
        /// Byte offset of the index.
        offset: usize,
        /// The index.
        index: u8,
    },
    /// A prefix used without a declaration in scope.
    #[error("offset {offset}: prefix '{prefix}' is not declared")]
    UndeclaredPrefix {
        /// Byte offset of the element.
        offset: usize,
        /// The prefix.
        prefix: String,
    },
    /// The relayed port's preamble does not start with the word `connect`.
    #[error("offset {offset}: preamble word length {len}, expected 7")]
    PreambleWord {
        /// Byte offset of the length.
        offset: usize,
        /// The length sent.
        len: u32,
    },
    /// An AMQP frame whose size field is below the header's 8 bytes.
    #[error("offset {offset}: frame size {size} below 8")]
    FrameSize {
        /// Byte offset of the frame.
        offset: usize,
        /// The size sent.
        size: u32,
    },
    /// An AMQP frame whose data offset points outside it.
    #[error("offset {offset}: data offset {doff} out of range")]
    DataOffset {
        /// Byte offset of the field.
        offset: usize,
        /// The data offset, in bytes.
        doff: usize,
    },
    /// An AMQP frame type other than AMQP (0) and SASL (1).
    #[error("offset {offset}: unknown frame type {kind}")]
    FrameType {
        /// Byte offset of the field.
        offset: usize,
        /// The type sent.
        kind: u8,
    },
    /// An AMQP value whose encoding breaks a rule checked before decoding.
    #[error("offset {offset}: AMQP decode error: {problem}")]
    AmqpValue {
        /// Byte offset of the frame body.
        offset: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// An AMQP value the decoder refused.
    #[error("offset {offset}: AMQP decode error: {source}")]
    AmqpDecode {
        /// Byte offset of the frame body.
        offset: usize,
        /// The decoder's error.
        #[source]
        source: Arc<serde_amqp::Error>,
    },
    /// An AMQP value that could not be encoded.
    #[error("AMQP encode error: {0}")]
    AmqpEncode(#[source] Arc<serde_amqp::Error>),
    /// A .NET Message Framing peer violated the preamble protocol; the fault
    /// says which framing Fault record to answer with.
    #[error("offset {offset}: framing fault {fault:?}: {message}")]
    Framing {
        /// Byte offset in the stream.
        offset: usize,
        /// The framing fault to send back.
        fault: FaultCode,
        /// Human-readable detail.
        message: String,
    },
    /// XML text that could not be parsed.
    #[error("xml: at byte {pos}: {source}")]
    Xml {
        /// Byte position in the text.
        pos: u64,
        /// The parser's error.
        #[source]
        source: Arc<quick_xml::Error>,
    },
    /// XML text that ends inside an element.
    #[error("xml: input ends inside element <{local}>")]
    XmlUnclosed {
        /// The element's local name.
        local: String,
    },
    /// XML text without a root element.
    #[error("xml: no root element")]
    XmlNoRoot,
    /// A document whose root is not a SOAP 1.2 envelope.
    #[error("message: root element is {{{ns}}}{local}, not a SOAP 1.2 Envelope")]
    NotAnEnvelope {
        /// The root's namespace.
        ns: String,
        /// The root's local name.
        local: String,
    },
    /// A message with another action than the one expected.
    #[error("message: expected action {expected}, got {}", .got.as_deref().unwrap_or("none"))]
    WrongAction {
        /// The action expected.
        expected: String,
        /// The action sent, if any.
        got: Option<String>,
    },
    /// A message whose action the reader does not know.
    #[error("message: unexpected action {0}")]
    UnknownAction(String),
    /// A message whose body element is not the one expected.
    #[error("message: body is not {{{ns}}}{local}")]
    WrongBody {
        /// The namespace expected.
        ns: String,
        /// The local name expected.
        local: String,
    },
    /// A message that lacks a part it must have.
    #[error("message: {whole} has no {part}")]
    Missing {
        /// What lacks it.
        whole: String,
        /// What is missing.
        part: String,
    },
    /// A value that is not what its field holds.
    #[error("message: {what} is not {expected}")]
    Invalid {
        /// The field (and the value, where it helps).
        what: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A number outside its field's range.
    #[error("message: {0} is out of range")]
    OutOfRange(String),
    /// An HTTP relay message's BodyFormat that is not one of the four.
    #[error("message: unknown BodyFormat '{0}'")]
    UnknownBodyFormat(String),
    /// A relayed HTTP body's part larger than the limit in force.
    #[error("message: {what} is larger than {limit} bytes")]
    Oversized {
        /// Which part.
        what: &'static str,
        /// The limit in force.
        limit: usize,
    },
    /// A relayed HTTP body's base64 text that does not decode.
    #[error("message: body base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// The peer answered with a framing fault (its text, when whole).
    #[error("message: the peer sent a framing fault: {}", .0.as_deref().unwrap_or("(cut short)"))]
    PeerFault(Option<String>),
    /// An envelope given to a writer that needs its body empty.
    #[error("message: open_envelope needs an envelope with an empty body")]
    BodyNotEmpty,
    /// Text that is not a hex dump where one was expected.
    #[error("message: not a readable hex dump: {0}")]
    HexDump(#[source] crate::hexdump::HexError),
}

/// Where an [`Error::Unexpected`] record was found, which says how it is
/// described.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// As an attribute's value, which must be plain text.
    AttributeValue,
    /// Inside an array's start tag.
    ArrayStartTag,
    /// As an array's value type.
    ArrayValueType,
    /// Inside a relayed HTTP body.
    RelayedBody,
    /// Where the Envelope's end must be.
    EnvelopeEnd,
    /// Where an UnsizedEnvelope record must be.
    UnsizedEnvelope,
    /// As the relayed port preamble's TLS flag.
    TlsFlag,
}

impl Place {
    fn describe(self, byte: u8) -> String {
        match self {
            Place::AttributeValue => {
                format!("attribute value record 0x{byte:02x} is not a plain text record")
            }
            Place::ArrayStartTag => format!("record 0x{byte:02x} inside an array's start tag"),
            Place::ArrayValueType => format!("array value type 0x{byte:02x}"),
            Place::RelayedBody => {
                format!("record 0x{byte:02X} cannot be part of a relayed body")
            }
            Place::EnvelopeEnd => format!("expected the Envelope's end, found record 0x{byte:02X}"),
            Place::UnsizedEnvelope => {
                format!("expected an UnsizedEnvelope, found record 0x{byte:02X}")
            }
            Place::TlsFlag => format!("TLS flag byte 0x{byte:02x}"),
        }
    }
}

impl Error {
    /// `whole` has no `part`.
    pub(crate) fn missing(whole: &str, part: &str) -> Self {
        Error::Missing {
            whole: whole.to_owned(),
            part: part.to_owned(),
        }
    }

    /// `what` is not `expected`.
    pub(crate) fn invalid(what: impl Into<String>, expected: &'static str) -> Self {
        Error::Invalid {
            what: what.into(),
            expected,
        }
    }

    /// Return the same error with its offset moved by `base` (used when a
    /// nested buffer is decoded on its own).
    #[must_use]
    pub fn shifted(mut self, base: usize) -> Self {
        if let Some(offset) = self.offset_mut() {
            *offset += base;
        }
        self
    }

    /// The byte offset the error names, if it names one.
    fn offset_mut(&mut self) -> Option<&mut usize> {
        match self {
            Error::BadMbInt { offset }
            | Error::TooLarge { offset, .. }
            | Error::UnknownRecord { offset, .. }
            | Error::BadText { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::Overrun { offset, .. }
            | Error::UnknownDictionaryId { offset, .. }
            | Error::Misplaced { offset, .. }
            | Error::OutsideStartTag { offset, .. }
            | Error::Unexpected { offset, .. }
            | Error::Negative { offset, .. }
            | Error::BoolValue { offset, .. }
            | Error::PrefixIndex { offset, .. }
            | Error::UndeclaredPrefix { offset, .. }
            | Error::PreambleWord { offset, .. }
            | Error::FrameSize { offset, .. }
            | Error::DataOffset { offset, .. }
            | Error::FrameType { offset, .. }
            | Error::AmqpValue { offset, .. }
            | Error::AmqpDecode { offset, .. }
            | Error::Framing { offset, .. } => Some(offset),
            Error::AmqpEncode(_)
            | Error::Xml { .. }
            | Error::XmlUnclosed { .. }
            | Error::XmlNoRoot
            | Error::NotAnEnvelope { .. }
            | Error::WrongAction { .. }
            | Error::UnknownAction(_)
            | Error::WrongBody { .. }
            | Error::Missing { .. }
            | Error::Invalid { .. }
            | Error::OutOfRange(_)
            | Error::UnknownBodyFormat(_)
            | Error::Oversized { .. }
            | Error::Base64(_)
            | Error::PeerFault(_)
            | Error::BodyNotEmpty
            | Error::HexDump(_) => None,
        }
    }
}
