//! [MC-NBFX] .NET Binary XML with the [MC-NBFS] static dictionary and the
//! [MC-NBFSE] session dictionary (wcf/PROTOCOL.md §12.2–§4): a pull
//! [`Reader`], a [`Writer`] that makes .NET's record choices, the raw record
//! values, XML text conversion, and envelope-level helpers for msbin1 and
//! msbinsession1 payloads.

pub mod dictionary;
pub mod fnv;
pub mod reader;
pub mod record;
pub mod session;
pub mod text;
pub mod transcode;
pub mod writer;
pub mod xml;

pub use reader::Reader;
pub use record::{Record, Str, Text};
pub use session::SessionDictionary;
pub use writer::{Vocab, Writer};

use crate::{Limits, Result};

/// Render a msbin1 document (no session dictionary) as XML.
pub fn to_xml(doc: &[u8], limits: Limits, indent: bool) -> Result<String> {
    xml::to_xml(&mut Reader::new(doc, None, limits, 0), indent)
}

/// Render a msbinsession1 payload as XML: read its StringTable into
/// `session` (the reading side's dictionary for this framing session), then
/// the document.
pub fn session_to_xml(
    payload: &[u8],
    session: &mut SessionDictionary,
    limits: Limits,
    indent: bool,
) -> Result<String> {
    let used = session.read_table(payload)?;
    let doc = payload.get(used..).unwrap_or_default();
    xml::to_xml(&mut Reader::new(doc, Some(session), limits, used), indent)
}

/// Encode XML text as a msbin1 document.
pub fn from_xml(xml_text: &str) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    xml::from_xml(xml_text, &mut w)?;
    Ok(w.finish())
}

/// Encode XML text as a msbinsession1 payload, announcing new strings in
/// `session` (the writing side's dictionary for this framing session).
pub fn session_from_xml(xml_text: &str, session: &mut SessionDictionary) -> Result<Vec<u8>> {
    let mut w = Writer::with_session(session);
    xml::from_xml(xml_text, &mut w)?;
    Ok(w.finish())
}

/// Decode every record of a document and encode them again, byte for byte.
pub fn reencode(
    doc: &[u8],
    session: Option<&SessionDictionary>,
    limits: Limits,
) -> Result<Vec<u8>> {
    let mut r = Reader::new(doc, session, limits, 0);
    let mut out = Vec::with_capacity(doc.len());
    while let Some(rec) = r.next()? {
        rec.encode(&mut out);
    }
    Ok(out)
}
