//! SOAP text helpers for the wrapped body formats (`wcf/PROTOCOL.md`
//! §11.3): the `inject-soap11-action` behaviour for SOAP 1.1 requests and
//! the fault check that turns a wrapped reply without `StatusCode` into 500.
//! They look at tags only; the text is passed on as it is otherwise.

use super::NS_ADDRESSING_NONE;

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
