//! Typed decode and encode errors shared by every codec in the crate, each
//! with the byte offset (relative to the start of the buffer being decoded)
//! where the problem was found.

use crate::framing::FaultCode;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while reading or writing WCF wire formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The records are individually fine but do not form a valid document or
    /// exchange (for example an attribute after content, or an unbalanced end).
    #[error("offset {offset}: {message}")]
    Structure {
        /// Byte offset of the record that broke the rule.
        offset: usize,
        /// What rule was broken.
        message: String,
    },
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
    /// XML text that could not be parsed or turned into binary XML.
    #[error("xml: {0}")]
    Xml(String),
    /// A SOAP or relay message lacks something it must have.
    #[error("message: {0}")]
    Message(String),
}

impl Error {
    /// Shorthand for a structural error.
    pub fn structure(offset: usize, message: impl Into<String>) -> Self {
        Error::Structure {
            offset,
            message: message.into(),
        }
    }

    /// Return the same error with its offset moved by `base` (used when a
    /// nested buffer is decoded on its own).
    #[must_use]
    pub fn shifted(self, base: usize) -> Self {
        match self {
            Error::BadMbInt { offset } => Error::BadMbInt {
                offset: offset + base,
            },
            Error::TooLarge {
                offset,
                what,
                len,
                limit,
            } => Error::TooLarge {
                offset: offset + base,
                what,
                len,
                limit,
            },
            Error::UnknownRecord { offset, kind, byte } => Error::UnknownRecord {
                offset: offset + base,
                kind,
                byte,
            },
            Error::BadText { offset, what } => Error::BadText {
                offset: offset + base,
                what,
            },
            Error::Truncated { offset, what } => Error::Truncated {
                offset: offset + base,
                what,
            },
            Error::Overrun {
                offset,
                what,
                declared,
                remaining,
            } => Error::Overrun {
                offset: offset + base,
                what,
                declared,
                remaining,
            },
            Error::UnknownDictionaryId { offset, id } => Error::UnknownDictionaryId {
                offset: offset + base,
                id,
            },
            Error::Structure { offset, message } => Error::Structure {
                offset: offset + base,
                message,
            },
            Error::Framing {
                offset,
                fault,
                message,
            } => Error::Framing {
                offset: offset + base,
                fault,
                message,
            },
            other @ (Error::Xml(_) | Error::Message(_)) => other,
        }
    }
}
