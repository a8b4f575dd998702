//! SOAP over binary XML (wcf/PROTOCOL.md §12.5, `wcf/PROTOCOL.md` §6):
//! a small element tree built from an NBFX [`Reader`] with namespaces
//! resolved, envelope access (Action, To, MessageID, RelatesTo, ReplyTo, any
//! header, the body), an envelope builder that writes through the
//! .NET-choice [`Writer`], and SOAP 1.2 faults including the relay codes.

use crate::nbfx::record::{Record, Text};
use crate::nbfx::text::write_text;
use crate::nbfx::xml::SOAP_NAMESPACES;
use crate::nbfx::{Reader, SessionDictionary, Vocab, Writer};
use crate::{Error, Limits, Result};

/// SOAP 1.2 envelope namespace.
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub use crate::nbfx::writer::{WSA10 as NS_WSA10, WSA_ANONYMOUS};
/// The standard SOAP fault action of WS-Addressing 1.0.
pub const ACTION_FAULT: &str = "http://www.w3.org/2005/08/addressing/soap/fault";
/// The XML namespace (for `xml:lang`).
pub const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// A child of an element.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Character data (adjacent text records joined).
    Text(String),
    /// Binary data from Bytes text records (adjacent records joined).
    Bytes(Vec<u8>),
    /// An integer, written with the narrowest integer record.
    Int(i64),
}

/// An attribute with its namespace resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Prefix as written ("" for none).
    pub prefix: String,
    /// Local name.
    pub local: String,
    /// Namespace URI ("" for none).
    pub ns: String,
    /// Value as text.
    pub value: String,
}

/// An element with its namespace resolved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// Prefix as written ("" for none).
    pub prefix: String,
    /// Local name.
    pub local: String,
    /// Namespace URI ("" for none).
    pub ns: String,
    /// Namespace declarations on this element: (prefix, URI), "" prefix for
    /// the default namespace.
    pub xmlns: Vec<(String, String)>,
    /// Attributes.
    pub attrs: Vec<Attr>,
    /// Children.
    pub children: Vec<Node>,
}

impl Element {
    /// A new element; `prefix` "" means the default namespace.
    pub fn new(prefix: &str, local: &str, ns: &str) -> Self {
        Element {
            prefix: prefix.into(),
            local: local.into(),
            ns: ns.into(),
            ..Element::default()
        }
    }

    /// Declare a namespace on this element.
    #[must_use]
    pub fn with_xmlns(mut self, prefix: &str, ns: &str) -> Self {
        self.xmlns.push((prefix.into(), ns.into()));
        self
    }

    /// Add an attribute.
    #[must_use]
    pub fn with_attr(mut self, prefix: &str, local: &str, ns: &str, value: &str) -> Self {
        self.attrs.push(Attr {
            prefix: prefix.into(),
            local: local.into(),
            ns: ns.into(),
            value: value.into(),
        });
        self
    }

    /// Add a child node.
    #[must_use]
    pub fn with(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    /// Add a child element.
    #[must_use]
    pub fn child(self, e: Element) -> Self {
        self.with(Node::Element(e))
    }

    /// Add a text child.
    #[must_use]
    pub fn text(self, t: &str) -> Self {
        self.with(Node::Text(t.into()))
    }

    /// An element in the same namespace and with the same prefix as `self`,
    /// for building children of a DataContract.
    pub fn sibling(&self, local: &str) -> Element {
        Element::new(&self.prefix, local, &self.ns)
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The first child element with this local name and namespace.
    pub fn find(&self, local: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.local == local && e.ns == ns)
    }

    /// The first child element with this local name, in any namespace.
    pub fn find_local(&self, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.local == local)
    }

    /// The concatenated text of this element's text children (binary data
    /// is rendered as base64, integers in decimal).
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Bytes(b) => {
                    write_text(&Text::Bytes(b, crate::nbfx::record::Width::W32), &mut s)
                }
                Node::Int(i) => s.push_str(&i.to_string()),
                Node::Element(_) => {}
            }
        }
        s
    }

    /// The binary content of this element: Bytes records as they are, or
    /// base64 text decoded.
    pub fn binary_content(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let mut bytes = Vec::new();
        let mut text = String::new();
        for n in &self.children {
            match n {
                Node::Bytes(b) => bytes.extend_from_slice(b),
                Node::Text(t) => text.push_str(t),
                _ => {}
            }
        }
        if !text.trim().is_empty() {
            return base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok();
        }
        Some(bytes)
    }

    /// The value of an attribute by local name and namespace.
    pub fn attr(&self, local: &str, ns: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.local == local && a.ns == ns)
            .map(|a| a.value.as_str())
    }

    /// Parse one element (and its subtree) from binary XML.
    pub fn decode(
        doc: &[u8],
        session: Option<&SessionDictionary>,
        limits: Limits,
    ) -> Result<Element> {
        let mut reader = Reader::new(doc, session, limits, 0);
        let mut b = TreeBuilder::default();
        while let Some(r) = reader.next()? {
            b.record(&r, reader.offset())?;
        }
        b.finish(reader.offset())
    }

    /// Write this element through `w`.
    pub fn write(&self, w: &mut Writer<'_>) {
        let vocab = |ns: &str| {
            if SOAP_NAMESPACES.contains(&ns) {
                Vocab::Soap
            } else {
                Vocab::Plain
            }
        };
        w.start_element(&self.prefix, &self.local, vocab(&self.ns));
        for (p, ns) in &self.xmlns {
            w.xmlns(p, ns, vocab(ns));
        }
        for a in &self.attrs {
            w.attribute_str(&a.prefix, &a.local, vocab(&a.ns), &a.value);
        }
        for n in &self.children {
            match n {
                Node::Element(e) => e.write(w),
                Node::Text(t) => w.element_text(&self.ns, &self.local, t),
                Node::Bytes(b) => w.bytes(b),
                Node::Int(i) => w.int(*i),
            }
        }
        w.end_element();
    }

    /// Encode as a msbin1 document.
    pub fn to_msbin1(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }
}

/// Builds an [`Element`] tree from records, resolving prefixes.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Element>,
    /// In-scope declarations: (prefix, URI), innermost last, with the stack
    /// depth they belong to.
    scopes: Vec<(usize, String, String)>,
    /// Unresolved prefixes of the open element and its attributes.
    pending: Vec<Attr>,
    root: Option<Element>,
    in_list: bool,
    /// The innermost element's start tag is still open (its prefixes are
    /// not resolved yet).
    unsealed: bool,
}

impl TreeBuilder {
    fn resolve(&self, prefix: &str) -> Option<String> {
        if prefix == "xml" {
            return Some(NS_XML.into());
        }
        self.scopes
            .iter()
            .rev()
            .find(|(_, p, _)| p == prefix)
            .map(|(_, _, ns)| ns.clone())
    }

    /// Resolve the open element's own prefix and its attributes' once its
    /// start tag is complete.
    fn seal_start_tag(&mut self, offset: usize) -> Result<()> {
        let Some(top) = self.stack.last() else {
            return Ok(());
        };
        if !self.unsealed {
            return Ok(());
        }
        self.unsealed = false;
        let prefix = top.prefix.clone();
        let ns = match self.resolve(&prefix) {
            Some(ns) => ns,
            None if prefix.is_empty() => String::new(),
            None => return Err(Error::UndeclaredPrefix { offset, prefix }),
        };
        let mut attrs = std::mem::take(&mut self.pending);
        for a in &mut attrs {
            if !a.prefix.is_empty() {
                a.ns = self
                    .resolve(&a.prefix)
                    .ok_or_else(|| Error::UndeclaredPrefix {
                        offset,
                        prefix: a.prefix.clone(),
                    })?;
            }
        }
        if let Some(top) = self.stack.last_mut() {
            top.ns = ns;
            top.attrs = attrs;
        }
        Ok(())
    }

    fn push_node(&mut self, node: Node) {
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        match (top.children.last_mut(), node) {
            (Some(Node::Text(prev)), Node::Text(t)) => prev.push_str(&t),
            (Some(Node::Bytes(prev)), Node::Bytes(b)) => prev.extend_from_slice(&b),
            (_, node) => top.children.push(node),
        }
    }

    fn record(&mut self, r: &Record<'_>, offset: usize) -> Result<()> {
        match r {
            Record::Element(e) => {
                self.seal_start_tag(offset)?;
                self.stack
                    .push(Element::new(e.prefix.as_str(), e.name.text, ""));
                self.unsealed = true;
            }
            Record::Xmlns(x) => {
                let p = x.prefix.unwrap_or("").to_owned();
                self.scopes
                    .push((self.stack.len(), p.clone(), x.ns.text.to_owned()));
                if let Some(top) = self.stack.last_mut() {
                    top.xmlns.push((p, x.ns.text.to_owned()));
                }
            }
            Record::Attribute(a) => {
                let mut value = String::new();
                write_text(&a.value, &mut value);
                self.pending.push(Attr {
                    prefix: a.prefix.as_str().to_owned(),
                    local: a.name.text.to_owned(),
                    ns: String::new(),
                    value,
                });
            }
            Record::Text { value, end_element } => {
                self.seal_start_tag(offset)?;
                match value {
                    Text::StartList => self.in_list = true,
                    Text::EndList => self.in_list = false,
                    Text::Bytes(b, _) => self.push_node(Node::Bytes(b.to_vec())),
                    other => {
                        let mut s = String::new();
                        if self.in_list
                            && matches!(
                                self.stack.last().and_then(|e| e.children.last()),
                                Some(Node::Text(_))
                            )
                        {
                            s.push(' ');
                        }
                        write_text(other, &mut s);
                        self.push_node(Node::Text(s));
                    }
                }
                if *end_element {
                    self.end(offset)?;
                }
            }
            Record::EndElement => {
                self.seal_start_tag(offset)?;
                self.end(offset)?;
            }
            Record::Comment(_) => self.seal_start_tag(offset)?,
            Record::Array(a) => {
                self.seal_start_tag(offset)?;
                let size = crate::nbfx::record::array_item_size(a.value_type).unwrap_or(1);
                for item in a.values.chunks_exact(size) {
                    self.record(&Record::Element(a.element), offset)?;
                    for at in &a.attributes {
                        self.record(at, offset)?;
                    }
                    let mut s = String::new();
                    crate::nbfx::xml::write_array_item(a.value_type, item, &mut s)?;
                    self.seal_start_tag(offset)?;
                    self.push_node(Node::Text(s));
                    self.end(offset)?;
                }
            }
        }
        Ok(())
    }

    fn end(&mut self, offset: usize) -> Result<()> {
        let depth = self.stack.len();
        self.scopes.retain(|(d, _, _)| *d < depth);
        let done = self.stack.pop().ok_or(Error::Misplaced {
            offset,
            rule: "end of element with no element open",
        })?;
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(done)),
            None => {
                if self.root.is_some() {
                    return Err(Error::Misplaced {
                        offset,
                        rule: "more than one root element",
                    });
                }
                self.root = Some(done);
            }
        }
        Ok(())
    }

    fn finish(self, offset: usize) -> Result<Element> {
        self.root.ok_or(Error::Misplaced {
            offset,
            rule: "document has no root element",
        })
    }
}

/// A SOAP 1.2 envelope with WS-Addressing 1.0 headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The `s:Envelope` element.
    pub root: Element,
}

impl Envelope {
    /// An envelope with `xmlns:s`, `xmlns:a`, an empty header and body.
    pub fn new() -> Self {
        Envelope {
            root: Element::new("s", "Envelope", NS_SOAP12)
                .with_xmlns("s", NS_SOAP12)
                .with_xmlns("a", NS_WSA10)
                .child(Element::new("s", "Header", NS_SOAP12))
                .child(Element::new("s", "Body", NS_SOAP12)),
        }
    }

    /// An envelope whose first header is `a:Action` (mustUnderstand) = `action`.
    pub fn with_action(action: &str) -> Self {
        Envelope::new().header(must_understand(
            Element::new("a", "Action", NS_WSA10).text(action),
        ))
    }

    /// Append a header.
    #[must_use]
    pub fn header(mut self, h: Element) -> Self {
        if let Some(header) = self.part_mut("Header") {
            header.children.push(Node::Element(h));
        }
        self
    }

    /// Replace the headers named like `h` (local name and namespace) with
    /// `h`, or append it when there is none.
    #[must_use]
    pub fn replace_header(mut self, h: Element) -> Self {
        if let Some(header) = self.part_mut("Header") {
            header
                .children
                .retain(|n| !matches!(n, Node::Element(e) if e.local == h.local && e.ns == h.ns));
            header.children.push(Node::Element(h));
        }
        self
    }

    /// Append a body child.
    #[must_use]
    pub fn body_child(mut self, e: Element) -> Self {
        if let Some(body) = self.part_mut("Body") {
            body.children.push(Node::Element(e));
        }
        self
    }

    /// Set the body to binary content (as the OnewaySend wrapper carries it).
    #[must_use]
    pub fn body_bytes(mut self, bytes: Vec<u8>) -> Self {
        if let Some(body) = self.part_mut("Body") {
            body.children = vec![Node::Bytes(bytes)];
        }
        self
    }

    fn part_mut(&mut self, local: &str) -> Option<&mut Element> {
        self.root.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.local == local && e.ns == NS_SOAP12 => Some(e),
            _ => None,
        })
    }

    /// Parse a msbin1 envelope.
    pub fn decode(doc: &[u8], limits: Limits) -> Result<Envelope> {
        Self::from_root(Element::decode(doc, None, limits)?)
    }

    /// Parse a msbinsession1 payload, reading its StringTable into `session`.
    pub fn decode_session(
        payload: &[u8],
        session: &mut SessionDictionary,
        limits: Limits,
    ) -> Result<Envelope> {
        let used = session.read_table(payload)?;
        let doc = payload.get(used..).unwrap_or_default();
        Element::decode(doc, Some(session), limits)
            .map_err(|e| e.shifted(used))
            .and_then(Self::from_root)
    }

    /// Check that `root` is a SOAP 1.2 envelope.
    pub fn from_root(root: Element) -> Result<Envelope> {
        if root.local != "Envelope" || root.ns != NS_SOAP12 {
            return Err(Error::NotAnEnvelope {
                ns: root.ns,
                local: root.local,
            });
        }
        Ok(Envelope { root })
    }

    /// Encode as msbin1.
    pub fn to_msbin1(&self) -> Vec<u8> {
        self.root.to_msbin1()
    }

    /// Encode as a msbinsession1 payload, announcing new strings in `session`.
    pub fn to_session(&self, session: &mut SessionDictionary) -> Vec<u8> {
        let mut w = Writer::with_session(session);
        self.root.write(&mut w);
        w.finish()
    }

    /// The `s:Header` element.
    pub fn headers(&self) -> Option<&Element> {
        self.root.find("Header", NS_SOAP12)
    }

    /// The `s:Body` element.
    pub fn body(&self) -> Option<&Element> {
        self.root.find("Body", NS_SOAP12)
    }

    /// The first element inside the body.
    pub fn body_element(&self) -> Option<&Element> {
        self.body()?.elements().next()
    }

    /// A header by local name and namespace.
    pub fn find_header(&self, local: &str, ns: &str) -> Option<&Element> {
        self.headers()?.find(local, ns)
    }

    fn wsa(&self, local: &str) -> Option<String> {
        self.find_header(local, NS_WSA10).map(Element::text_content)
    }

    /// `a:Action`.
    pub fn action(&self) -> Option<String> {
        self.wsa("Action")
    }

    /// `a:To`.
    pub fn to(&self) -> Option<String> {
        self.wsa("To")
    }

    /// `a:MessageID`.
    pub fn message_id(&self) -> Option<String> {
        self.wsa("MessageID")
    }

    /// `a:RelatesTo`.
    pub fn relates_to(&self) -> Option<String> {
        self.wsa("RelatesTo")
    }

    /// `a:ReplyTo/a:Address`.
    pub fn reply_to(&self) -> Option<String> {
        self.find_header("ReplyTo", NS_WSA10)?
            .find("Address", NS_WSA10)
            .map(Element::text_content)
    }

    /// The fault in the body, if this is a fault message.
    pub fn fault(&self) -> Option<Fault> {
        Fault::parse(self.body_element()?)
    }
}

impl Default for Envelope {
    fn default() -> Self {
        Envelope::new()
    }
}

/// Mark a header `s:mustUnderstand="1"`.
pub fn must_understand(e: Element) -> Element {
    e.with_attr("s", "mustUnderstand", NS_SOAP12, "1")
}

/// A SOAP 1.2 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Top-level code: (namespace, local name).
    pub code: (String, String),
    /// Optional subcode: (namespace, local name).
    pub subcode: Option<(String, String)>,
    /// The reason text.
    pub reason: String,
    /// The detail element's text, if any.
    pub detail: Option<String>,
}

impl Fault {
    /// Read a `s:Fault` element.
    pub fn parse(fault: &Element) -> Option<Fault> {
        if fault.local != "Fault" || fault.ns != NS_SOAP12 {
            return None;
        }
        let code_el = fault.find("Code", NS_SOAP12)?;
        let qname = |value: &Element| -> (String, String) {
            let text = value.text_content();
            let text = text.trim();
            match text.split_once(':') {
                Some((p, local)) => (
                    lookup_prefix(value, fault, p).unwrap_or_default(),
                    local.into(),
                ),
                None => (String::new(), text.into()),
            }
        };
        let code = qname(code_el.find("Value", NS_SOAP12)?);
        let subcode = code_el
            .find("Subcode", NS_SOAP12)
            .and_then(|s| s.find("Value", NS_SOAP12))
            .map(qname);
        let reason = fault
            .find("Reason", NS_SOAP12)
            .and_then(|r| r.find("Text", NS_SOAP12))
            .map(Element::text_content)
            .unwrap_or_default();
        let detail = fault.find("Detail", NS_SOAP12).map(Element::text_content);
        Some(Fault {
            code,
            subcode,
            reason,
            detail,
        })
    }

    /// The `s:Fault` element, declaring the code's prefix on `s:Value`.
    pub fn to_element(&self) -> Element {
        let value = |(ns, local): &(String, String), prefix: &str| {
            let v = Element::new("s", "Value", NS_SOAP12);
            if ns.is_empty() {
                v.text(local)
            } else {
                v.with_xmlns(prefix, ns).text(&format!("{prefix}:{local}"))
            }
        };
        let mut code = Element::new("s", "Code", NS_SOAP12)
            .child(value(&self.code, code_prefix(&self.code.0)));
        if let Some(sub) = &self.subcode {
            code = code.child(
                Element::new("s", "Subcode", NS_SOAP12).child(value(sub, code_prefix(&sub.0))),
            );
        }
        let mut fault = Element::new("s", "Fault", NS_SOAP12).child(code).child(
            Element::new("s", "Reason", NS_SOAP12).child(
                Element::new("s", "Text", NS_SOAP12)
                    .with_attr("xml", "lang", NS_XML, "en-US")
                    .text(&self.reason),
            ),
        );
        if let Some(d) = &self.detail {
            fault = fault.child(Element::new("s", "Detail", NS_SOAP12).text(d));
        }
        fault
    }

    /// A complete fault message, correlated to `relates_to` when given.
    pub fn to_envelope(&self, relates_to: Option<&str>) -> Envelope {
        let mut env = Envelope::with_action(ACTION_FAULT);
        if let Some(id) = relates_to {
            env = env.header(Element::new("a", "RelatesTo", NS_WSA10).text(id));
        }
        env.body_child(self.to_element())
    }
}

fn code_prefix(ns: &str) -> &'static str {
    if ns == NS_SOAP12 {
        "s"
    } else {
        "r"
    }
}

/// Resolve a prefix used in element text, looking at the element itself and
/// then at the fault element (the only scopes a relay fault uses), and the
/// conventional `s` for SOAP 1.2.
fn lookup_prefix(value: &Element, fault: &Element, prefix: &str) -> Option<String> {
    let find = |e: &Element| {
        e.xmlns
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| ns.clone())
    };
    find(value)
        .or_else(|| find(fault))
        .or_else(|| (prefix == value.prefix).then(|| value.ns.clone()))
        .or_else(|| (prefix == "s").then(|| NS_SOAP12.to_owned()))
}
