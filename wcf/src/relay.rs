//! The Azure Relay's own SOAP messages as typed values (`wcf/PROTOCOL.md`
//! §2.2, §3, §5, §6.1, §7.3 and what §11 observed of the real SDK), each
//! encoded to and decoded from msbin1 envelopes; the `connect`/via/flag
//! preamble and the 4-byte little-endian length-prefixed framing of port 9352.

use std::net::Ipv4Addr;

use crate::error::Place;
use crate::soap::{must_understand, Element, Envelope, Fault, Node, NS_SOAP12, NS_WSA10};
use crate::{Error, Limits, Result};

/// `.../servicebus/connect` (Connect, RelayedAccept, Redirect, RelayVia, RelayAccessToken).
pub const NS_CONNECT: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect";
/// `.../servicebus/relayedconnect` (the notice to listeners).
pub const NS_RELAYEDCONNECT: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/relayedconnect";
/// `.../servicebus/relay`, the namespace of relay fault codes.
pub const NS_RELAY: &str = "http://schemas.microsoft.com/netservices/2009/05/servicebus/relay";
/// Namespace of the `TrackingId` header.
pub const NS_PROTOCOL: &str = "http://schemas.microsoft.com/servicebus/2010/08/protocol/";
/// DataContract serialization namespace (`z:anyType`).
pub const NS_SERIALIZATION: &str = "http://schemas.microsoft.com/2003/10/Serialization/";
/// XML Schema instance namespace.
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// WS-Security extension namespace.
pub const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Security utility namespace.
pub const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// `ValueType` of a simple web token.
pub const SWT_VALUE_TYPE: &str = "http://schemas.xmlsoap.org/ws/2009/11/swt-token-profile-1.0";
/// `EncodingType` Base64Binary.
pub const BASE64_ENCODING_TYPE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
/// The 2005/12 anonymous address the SDK uses in RelayedAccept and Connect.
pub const ANONYMOUS_2005_12: &str =
    "http://schemas.microsoft.com/2005/12/ServiceModel/Addressing/Anonymous";

/// Action of a client's RelayedConnect on 9352 (a bare string).
pub const ACTION_RELAYED_CONNECT: &str = "RelayedConnect";
/// Action of a listener's RelayedAccept on 9352.
pub const ACTION_RELAYED_ACCEPT: &str = "RelayedAccept";
/// Action of the reply to a RelayedAccept.
pub const ACTION_RELAYED_ACCEPT_REPLY: &str = "RelayedAcceptReply";
/// Action of the reply to a RelayedConnect.
pub const ACTION_RELAYED_CONNECT_REPLY: &str = "RelayedConnectReply";
/// Action of a redirect.
pub const ACTION_REDIRECT: &str = "Redirect";
/// Action of the wrapper delivered to listeners over AMQP.
pub const ACTION_ONEWAY_SEND: &str = "OnewaySend";
/// Action of the notice a listener receives for a new client.
pub const ACTION_NOTICE: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/relayedconnect/RelayedConnect";
/// Action of a one-way sender's Connect.
pub const ACTION_CONNECT: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect/Connect";
/// Action of a one-way sender's keep-alive.
pub const ACTION_ONEWAY_PING: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect/OnewayPing";
/// Action of the success reply to a one-way Connect.
pub const ACTION_CONNECT_REPLY: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect/ConnectReply";
/// Action of the acknowledgement of a one-way message.
pub const ACTION_SEND_REPLY: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect/SendReply";
/// Action of the reply to a one-way ping.
pub const ACTION_ONEWAY_PING_REPLY: &str =
    "http://schemas.microsoft.com/netservices/2009/05/servicebus/connect/OnewayPingReply";

/// Largest message on the 9352 framing (`SocketMessageHelper`).
pub const MAX_PREFIXED_MESSAGE: usize = 65536;

fn header_text(env: &Envelope, local: &str, ns: &str) -> Option<String> {
    env.find_header(local, ns).map(Element::text_content)
}

fn require(env: &Envelope, action: &str) -> Result<()> {
    match env.action() {
        Some(a) if a == action => Ok(()),
        got => Err(Error::WrongAction {
            expected: action.to_owned(),
            got,
        }),
    }
}

fn body_named<'e>(env: &'e Envelope, local: &str, ns: &str) -> Result<&'e Element> {
    env.body_element()
        .filter(|e| e.local == local && e.ns == ns)
        .ok_or_else(|| Error::WrongBody {
            ns: ns.to_owned(),
            local: local.to_owned(),
        })
}

fn child_text(e: &Element, local: &str) -> Result<String> {
    e.find(local, &e.ns)
        .map(Element::text_content)
        .ok_or_else(|| Error::missing(&e.local, local))
}

/// A DataContract body element in `ns` with `xmlns:i`, as WCF writes them.
fn contract(local: &str, ns: &str) -> Element {
    Element::new("", local, ns)
        .with_xmlns("", ns)
        .with_xmlns("i", NS_XSI)
}

/// The `z:anyType` body the relay's replies carry.
fn any_type() -> Element {
    Element::new("z", "anyType", NS_SERIALIZATION).with_xmlns("z", NS_SERIALIZATION)
}

/// The `RelayAccessToken` header carrying a token as a BinarySecurityToken
/// with binary content (§7.3, §11.1).
pub fn token_header(token: &str, id: &str) -> Element {
    Element::new("", "RelayAccessToken", NS_CONNECT)
        .with_xmlns("", NS_CONNECT)
        .child(
            Element::new("wsse", "BinarySecurityToken", NS_WSSE)
                .with_attr("wsu", "Id", NS_WSU, id)
                .with_attr("", "ValueType", "", SWT_VALUE_TYPE)
                .with_attr("", "EncodingType", "", BASE64_ENCODING_TYPE)
                .with_xmlns("wsse", NS_WSSE)
                .with_xmlns("wsu", NS_WSU)
                .with(Node::Bytes(token.as_bytes().to_vec())),
        )
}

/// The token string of a `RelayAccessToken` header, if present: binary text
/// records joined, or base64 characters decoded, as UTF-8.
pub fn access_token(env: &Envelope) -> Result<Option<String>> {
    let Some(header) = env.find_header("RelayAccessToken", NS_CONNECT) else {
        return Ok(None);
    };
    let bst = header
        .find("BinarySecurityToken", NS_WSSE)
        .ok_or_else(|| Error::missing("RelayAccessToken", "BinarySecurityToken"))?;
    let bytes = bst
        .binary_content()
        .ok_or_else(|| Error::invalid("BinarySecurityToken", "base64"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::invalid("token", "UTF-8"))
}

/// A client's RelayedConnect on 9352 (§3.1, §11.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedConnect {
    /// The `TrackingId` header (a GUID string).
    pub tracking_id: Option<String>,
    /// The Send token, if the client sent one.
    pub token: Option<String>,
    /// `Connect/Uri`: the relay address the client wants.
    pub uri: String,
}

impl RelayedConnect {
    /// Build the envelope the SDK sends.
    pub fn to_envelope(&self) -> Envelope {
        let mut env = Envelope::with_action(ACTION_RELAYED_CONNECT);
        if let Some(t) = &self.tracking_id {
            env = env.header(
                Element::new("", "TrackingId", NS_PROTOCOL)
                    .with_xmlns("", NS_PROTOCOL)
                    .text(t),
            );
        }
        if let Some(tok) = &self.token {
            let id = format!("uuid:{}", self.tracking_id.as_deref().unwrap_or("0"));
            env = env.header(token_header(tok, &id));
        }
        let c = contract("Connect", NS_CONNECT);
        let uri = c.sibling("Uri").text(&self.uri);
        env.body_child(c.child(uri))
    }

    /// Read one from an envelope.
    pub fn from_envelope(env: &Envelope) -> Result<Self> {
        require(env, ACTION_RELAYED_CONNECT)?;
        let body = body_named(env, "Connect", NS_CONNECT)?;
        Ok(RelayedConnect {
            tracking_id: header_text(env, "TrackingId", NS_PROTOCOL),
            token: access_token(env)?,
            uri: child_text(body, "Uri")?,
        })
    }
}

/// A listener's RelayedAccept on 9352 (§3.3, §11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedAccept {
    /// The rendezvous id from the notice.
    pub id: String,
}

impl RelayedAccept {
    /// Build the envelope the SDK sends (286 bytes for a GUID id).
    pub fn to_envelope(&self) -> Envelope {
        let c = contract("RelayedAccept", NS_CONNECT);
        let id = c.sibling("Id").text(&self.id);
        Envelope::with_action(ACTION_RELAYED_ACCEPT)
            .header(must_understand(
                Element::new("a", "To", NS_WSA10).text(ANONYMOUS_2005_12),
            ))
            .body_child(c.child(id))
    }

    /// Read one from an envelope.
    pub fn from_envelope(env: &Envelope) -> Result<Self> {
        require(env, ACTION_RELAYED_ACCEPT)?;
        let body = body_named(env, "RelayedAccept", NS_CONNECT)?;
        Ok(RelayedAccept {
            id: child_text(body, "Id")?,
        })
    }
}

/// The first message on a 9352 connection: a client or a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A client asking to be connected.
    Connect(RelayedConnect),
    /// A listener answering a notice.
    Accept(RelayedAccept),
}

impl Hello {
    /// Tell the two apart by Action (never by the via, §11.2).
    pub fn from_envelope(env: &Envelope) -> Result<Hello> {
        match env.action().as_deref() {
            Some(ACTION_RELAYED_CONNECT) => RelayedConnect::from_envelope(env).map(Hello::Connect),
            Some(ACTION_RELAYED_ACCEPT) => RelayedAccept::from_envelope(env).map(Hello::Accept),
            Some(other) => Err(Error::UnknownAction(other.to_owned())),
            None => Err(Error::missing("message", "action")),
        }
    }
}

/// A reply with Action `action` and a `z:anyType` body: RelayedAcceptReply and
/// RelayedConnectReply (§3.1, §3.3).
pub fn any_type_reply(action: &str) -> Envelope {
    Envelope::with_action(action).body_child(any_type())
}

/// A correlated reply (RelatesTo) with a `z:anyType` body: ConnectReply,
/// SendReply, OnewayPingReply for one-way senders (§5.1, §11.4).
pub fn correlated_reply(action: &str, relates_to: &str) -> Envelope {
    Envelope::with_action(action)
        .header(Element::new("a", "RelatesTo", NS_WSA10).text(relates_to))
        .body_child(any_type())
}

/// [`correlated_reply`] written straight into a msbinsession1 payload with
/// `session` (the writing side's dictionary): the same bytes as
/// `correlated_reply(action, relates_to).to_session(session)` without the
/// tree (a one-way sender gets one per message).
pub fn correlated_reply_session(
    action: &str,
    relates_to: &str,
    session: &mut crate::nbfx::SessionDictionary,
) -> Vec<u8> {
    use crate::nbfx::{Vocab, Writer};
    let mut w = Writer::with_session(session);
    w.start_element("s", "Envelope", Vocab::Soap);
    w.xmlns("s", NS_SOAP12, Vocab::Soap);
    w.xmlns("a", NS_WSA10, Vocab::Soap);
    w.start_element("s", "Header", Vocab::Soap);
    w.start_element("a", "Action", Vocab::Soap);
    w.attribute_str("s", "mustUnderstand", Vocab::Soap, "1");
    w.element_text(NS_WSA10, "Action", action);
    w.end_element();
    w.start_element("a", "RelatesTo", Vocab::Soap);
    w.element_text(NS_WSA10, "RelatesTo", relates_to);
    w.end_element();
    w.end_element();
    w.start_element("s", "Body", Vocab::Soap);
    w.start_element("z", "anyType", Vocab::Plain);
    w.xmlns("z", NS_SERIALIZATION, Vocab::Plain);
    w.end_element();
    w.end_element();
    w.end_element();
    w.finish()
}

/// The RelayedConnect notice sent to a listener (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The listener URI (`a:To`).
    pub to: String,
    /// The rendezvous id.
    pub id: String,
    /// Address the listener dials back (IPv4).
    pub ip: Ipv4Addr,
    /// Port for the TCP dial-back (9352).
    pub ip_port: u16,
    /// HTTP address and port.
    pub http: (Ipv4Addr, u16),
    /// HTTPS address and port.
    pub https: (Ipv4Addr, u16),
    /// DNS name of the gateway instance holding the client.
    pub instance_dns: Option<String>,
}

/// .NET's `IPAddress.Address`: the four octets read as a little-endian int.
pub fn ip_to_long(ip: Ipv4Addr) -> i64 {
    i64::from(u32::from_le_bytes(ip.octets()))
}

/// Inverse of [`ip_to_long`].
pub fn long_to_ip(v: i64) -> Option<Ipv4Addr> {
    u32::try_from(v)
        .ok()
        .map(|v| Ipv4Addr::from(v.to_le_bytes()))
}

impl Notice {
    /// Build the inner envelope.
    pub fn to_envelope(&self) -> Envelope {
        let c =
            Element::new("", "RelayedConnect", NS_RELAYEDCONNECT).with_xmlns("", NS_RELAYEDCONNECT);
        let int = |name: &str, v: i64| c.sibling(name).with(Node::Int(v));
        let mut body = c
            .clone()
            .child(c.sibling("Id").text(&self.id))
            .child(int("IpAddress", ip_to_long(self.ip)))
            .child(int("IpPort", i64::from(self.ip_port)))
            .child(int("HttpAddress", ip_to_long(self.http.0)))
            .child(int("HttpPort", i64::from(self.http.1)))
            .child(int("HttpsAddress", ip_to_long(self.https.0)))
            .child(int("HttpsPort", i64::from(self.https.1)));
        if let Some(dns) = &self.instance_dns {
            body = body.child(c.sibling("InstanceDnsAddress").text(dns));
        }
        Envelope::with_action(ACTION_NOTICE)
            .header(must_understand(
                Element::new("a", "To", NS_WSA10).text(&self.to),
            ))
            .body_child(body)
    }

    /// Read one from an inner envelope.
    pub fn from_envelope(env: &Envelope) -> Result<Self> {
        require(env, ACTION_NOTICE)?;
        let body = body_named(env, "RelayedConnect", NS_RELAYEDCONNECT)?;
        let num = |name: &str| -> Result<i64> {
            child_text(body, name)?
                .trim()
                .parse()
                .map_err(|_| Error::invalid(name, "an integer"))
        };
        let ip = |name: &str| -> Result<Ipv4Addr> {
            long_to_ip(num(name)?).ok_or_else(|| Error::invalid(name, "an IPv4 address"))
        };
        let port = |name: &str| -> Result<u16> {
            u16::try_from(num(name)?).map_err(|_| Error::invalid(name, "a port"))
        };
        Ok(Notice {
            to: env.to().unwrap_or_default(),
            id: child_text(body, "Id")?,
            ip: ip("IpAddress")?,
            ip_port: port("IpPort")?,
            http: (ip("HttpAddress")?, port("HttpPort")?),
            https: (ip("HttpsAddress")?, port("HttpsPort")?),
            instance_dns: body
                .find("InstanceDnsAddress", NS_RELAYEDCONNECT)
                .map(Element::text_content),
        })
    }
}

/// The OnewaySend wrapper delivered to listeners over AMQP (§2.2, §11.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnewaySend {
    /// `RelayVia` and `a:To`: the listener URI.
    pub via: String,
    /// `a:MessageID`.
    pub message_id: String,
    /// The inner msbin1 envelope.
    pub inner: Vec<u8>,
}

impl OnewaySend {
    /// Build the wrapper; the inner envelope travels as binary text.
    pub fn to_envelope(&self) -> Envelope {
        self.clone().into_envelope()
    }

    /// [`OnewaySend::to_envelope`] without copying the inner envelope.
    pub fn into_envelope(self) -> Envelope {
        Envelope::with_action(ACTION_ONEWAY_SEND)
            .header(
                Element::new("", "RelayVia", NS_CONNECT)
                    .with_xmlns("", NS_CONNECT)
                    .text(&self.via),
            )
            .header(Element::new("a", "MessageID", NS_WSA10).text(&self.message_id))
            .header(must_understand(
                Element::new("a", "To", NS_WSA10).text(&self.via),
            ))
            .body_bytes(self.inner)
    }

    /// The wrapper's msbin1 bytes written straight from its parts, the
    /// same bytes as `into_envelope().to_msbin1()` without building the tree
    /// (the one-way relay writes one per delivered message).
    pub fn write_msbin1(via: &str, message_id: &[u8; 16], inner: &[u8]) -> Vec<u8> {
        use crate::nbfx::{Text, Vocab, Writer};
        let mut w = Writer::new();
        let must_understand = |w: &mut Writer<'_>| {
            w.attribute_str("s", "mustUnderstand", Vocab::Soap, "1");
        };
        w.start_element("s", "Envelope", Vocab::Soap);
        w.xmlns("s", NS_SOAP12, Vocab::Soap);
        w.xmlns("a", NS_WSA10, Vocab::Soap);
        w.start_element("s", "Header", Vocab::Soap);
        w.start_element("a", "Action", Vocab::Soap);
        must_understand(&mut w);
        w.element_text(NS_WSA10, "Action", ACTION_ONEWAY_SEND);
        w.end_element();
        w.start_element("", "RelayVia", Vocab::Plain);
        w.xmlns("", NS_CONNECT, Vocab::Plain);
        w.element_text(NS_CONNECT, "RelayVia", via);
        w.end_element();
        w.start_element("a", "MessageID", Vocab::Soap);
        w.text(&Text::UniqueId(*message_id));
        w.end_element();
        w.start_element("a", "To", Vocab::Soap);
        must_understand(&mut w);
        w.element_text(NS_WSA10, "To", via);
        w.end_element();
        w.end_element();
        w.start_element("s", "Body", Vocab::Soap);
        w.bytes(inner);
        w.end_element();
        w.end_element();
        w.finish()
    }

    /// The inner envelope of a wrapper in one pass over its records (the
    /// Bytes records directly in `s:Body`), without building a tree; `None`
    /// when the body holds something else (base64 text: use
    /// [`OnewaySend::from_envelope`]).
    pub fn inner_of(doc: &[u8], limits: Limits) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
        use std::borrow::Cow;
        let mut reader = crate::nbfx::Reader::new(doc, None, limits, 0);
        let mut in_body = false;
        let mut inner: Option<Cow<'_, [u8]>> = None;
        while let Some(rec) = reader.next()? {
            match rec {
                crate::nbfx::Record::Element(e) if reader.depth() == 2 => {
                    in_body = e.name.text == "Body";
                }
                crate::nbfx::Record::Text {
                    value: crate::nbfx::Text::Bytes(b, _),
                    ..
                } if in_body => {
                    inner = Some(match inner.take() {
                        None => Cow::Borrowed(b),
                        Some(prev) => Cow::Owned([prev.as_ref(), b].concat()),
                    });
                }
                crate::nbfx::Record::Text { .. } | crate::nbfx::Record::Element(_) if in_body => {
                    return Ok(None)
                }
                _ => {}
            }
        }
        Ok(inner)
    }

    /// Read one; the body may be binary text or base64 characters.
    pub fn from_envelope(env: &Envelope) -> Result<Self> {
        require(env, ACTION_ONEWAY_SEND)?;
        let inner = env
            .body()
            .and_then(Element::binary_content)
            .ok_or_else(|| Error::invalid("OnewaySend body", "binary"))?;
        Ok(OnewaySend {
            via: header_text(env, "RelayVia", NS_CONNECT).unwrap_or_default(),
            message_id: env.message_id().unwrap_or_default(),
            inner,
        })
    }
}

/// A one-way sender's Connect (§5.1, §11.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `a:MessageID`, which the reply must relate to.
    pub message_id: String,
    /// The Send token, if any.
    pub token: Option<String>,
    /// `Connect/Uri`.
    pub uri: String,
}

impl Connect {
    /// Read one.
    pub fn from_envelope(env: &Envelope) -> Result<Self> {
        require(env, ACTION_CONNECT)?;
        let body = body_named(env, "Connect", NS_CONNECT)?;
        Ok(Connect {
            message_id: env
                .message_id()
                .ok_or_else(|| Error::missing("Connect", "MessageID"))?,
            token: access_token(env)?,
            uri: child_text(body, "Uri")?,
        })
    }

    /// Build the envelope the SDK sends.
    pub fn to_envelope(&self, to: &str) -> Envelope {
        let mut env = Envelope::with_action(ACTION_CONNECT)
            .header(Element::new("a", "MessageID", NS_WSA10).text(&self.message_id))
            .header(
                Element::new("a", "ReplyTo", NS_WSA10)
                    .child(Element::new("a", "Address", NS_WSA10).text(ANONYMOUS_2005_12)),
            );
        if let Some(tok) = &self.token {
            env = env.header(token_header(tok, &format!("uuid:{}", self.message_id)));
        }
        let c = contract("Connect", NS_CONNECT);
        let uri = c.sibling("Uri").text(&self.uri);
        env.header(must_understand(Element::new("a", "To", NS_WSA10).text(to)))
            .body_child(c.child(uri))
    }
}

/// A redirect (§3.1, §5.1).
pub fn redirect(uri: &str, relates_to: Option<&str>) -> Envelope {
    let c = contract("Redirect", NS_CONNECT);
    let u = c.sibling("Uri").text(uri);
    let mut env = Envelope::with_action(ACTION_REDIRECT);
    if let Some(id) = relates_to {
        env = env.header(Element::new("a", "RelatesTo", NS_WSA10).text(id));
    }
    env.body_child(c.child(u))
}

/// The relay fault codes the SDK maps to exceptions (§6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFault {
    /// No listener for the address.
    EndpointNotFound,
    /// Missing, invalid or expired token, or a missing claim.
    AuthorizationFailed,
    /// Conflicting registration.
    AddressAlreadyInUse,
    /// Address not found.
    AddressNotFound,
    /// Address replaced.
    AddressReplaced,
    /// A static relay that is not provisioned.
    RelayNotFound,
    /// The listener requires TLS but the client did not use it.
    NoTransportSecurity,
    /// A malformed request.
    InvalidRequest,
    /// The listener did not answer the rendezvous.
    ConnectionFailed,
    /// A quota was exceeded.
    QuotaExceeded,
    /// Any other server error.
    ServerError,
}

impl RelayFault {
    const ALL: [RelayFault; 11] = [
        RelayFault::EndpointNotFound,
        RelayFault::AuthorizationFailed,
        RelayFault::AddressAlreadyInUse,
        RelayFault::AddressNotFound,
        RelayFault::AddressReplaced,
        RelayFault::RelayNotFound,
        RelayFault::NoTransportSecurity,
        RelayFault::InvalidRequest,
        RelayFault::ConnectionFailed,
        RelayFault::QuotaExceeded,
        RelayFault::ServerError,
    ];

    /// The code's local name in [`NS_RELAY`].
    pub fn code(self) -> &'static str {
        match self {
            RelayFault::EndpointNotFound => "EndpointNotFoundFault",
            RelayFault::AuthorizationFailed => "AuthorizationFailedFault",
            RelayFault::AddressAlreadyInUse => "AddressAlreadyInUseFault",
            RelayFault::AddressNotFound => "AddressNotFoundFault",
            RelayFault::AddressReplaced => "AddressReplacedFault",
            RelayFault::RelayNotFound => "RelayNotFoundFault",
            RelayFault::NoTransportSecurity => "NoTransportSecurityFault",
            RelayFault::InvalidRequest => "InvalidRequestFault",
            RelayFault::ConnectionFailed => "ConnectionFailedFault",
            RelayFault::QuotaExceeded => "QuotaExceededFault",
            RelayFault::ServerError => "ServerErrorFault",
        }
    }

    /// Recognise a code.
    pub fn from_code(ns: &str, local: &str) -> Option<Self> {
        (ns == NS_RELAY)
            .then(|| Self::ALL.into_iter().find(|f| f.code() == local))
            .flatten()
    }

    /// The SOAP fault, with the relay code as the top-level `s:Value` (the
    /// layout the SDK maps, §11.4).
    pub fn fault(self, reason: &str) -> Fault {
        Fault {
            code: (NS_RELAY.into(), self.code().into()),
            subcode: None,
            reason: reason.into(),
            detail: None,
        }
    }

    /// The fault as a message.
    pub fn envelope(self, reason: &str, relates_to: Option<&str>) -> Envelope {
        self.fault(reason).to_envelope(relates_to)
    }
}

/// The `connect`/via/flag preamble of port 9352 (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPreamble {
    /// The via URI.
    pub via: String,
    /// Whether TLS follows (flag byte 0x01).
    pub tls: bool,
}

impl ConnectPreamble {
    /// Encode it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&7u32.to_le_bytes());
        out.extend_from_slice(b"connect");
        out.extend_from_slice(
            &u32::try_from(self.via.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(self.via.as_bytes());
        out.push(u8::from(self.tls));
    }

    /// Decode it from the front of `buf`: `Ok(None)` until complete, else the
    /// preamble and the bytes it used. The via is bounded by `limits.max_via`.
    pub fn decode(buf: &[u8], limits: Limits) -> Result<Option<(ConnectPreamble, usize)>> {
        let le32 = |at: usize| -> Option<u32> { le32_at(buf, at) };
        let Some(n) = le32(0) else { return Ok(None) };
        if n != 7 {
            return Err(Error::PreambleWord { offset: 0, len: n });
        }
        let Some(word) = buf.get(4..11) else {
            return Ok(None);
        };
        if word != b"connect" {
            return Err(Error::Misplaced {
                offset: 4,
                rule: "preamble word is not \"connect\"",
            });
        }
        let Some(len) = le32(11) else { return Ok(None) };
        let len = len as usize;
        if len > limits.max_via {
            return Err(Error::TooLarge {
                offset: 11,
                what: "via",
                len,
                limit: limits.max_via,
            });
        }
        let Some(via) = buf.get(15..15 + len) else {
            return Ok(None);
        };
        let via = std::str::from_utf8(via)
            .map_err(|_| Error::BadText {
                offset: 15,
                what: "via",
            })?
            .to_owned();
        let Some(&flag) = buf.get(15 + len) else {
            return Ok(None);
        };
        if flag > 1 {
            return Err(Error::Unexpected {
                offset: 15 + len,
                place: Place::TlsFlag,
                byte: flag,
            });
        }
        Ok(Some((
            ConnectPreamble {
                via,
                tls: flag == 1,
            },
            16 + len,
        )))
    }
}

/// Append a message with its 4-byte little-endian length prefix.
pub fn write_prefixed(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(msg);
}

/// Split one length-prefixed message off the front of `buf`: `Ok(None)`
/// until complete, else the message and the bytes used. Lengths over `max`
/// are refused before anything is buffered.
pub fn read_prefixed(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>> {
    let Some(len) = le32_at(buf, 0) else {
        return Ok(None);
    };
    let len = len as usize;
    if len > max {
        return Err(Error::TooLarge {
            offset: 0,
            what: "length-prefixed message",
            len,
            limit: max,
        });
    }
    Ok(buf.get(4..4 + len).map(|m| (m, 4 + len)))
}

fn le32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(env: &Envelope) -> Envelope {
        Envelope::decode(&env.to_msbin1(), Limits::DEFAULT).unwrap()
    }

    #[test]
    fn relay_faults_round_trip_with_top_level_codes() {
        for f in RelayFault::ALL {
            let env = round_trip(&f.envelope(
                "No service is hosted at the specified address.",
                Some("urn:uuid:1"),
            ));
            assert_eq!(env.action().as_deref(), Some(crate::soap::ACTION_FAULT));
            assert_eq!(env.relates_to().as_deref(), Some("urn:uuid:1"));
            let fault = env.fault().unwrap();
            assert_eq!(RelayFault::from_code(&fault.code.0, &fault.code.1), Some(f));
            assert_eq!(
                fault.reason,
                "No service is hosted at the specified address."
            );
            assert!(fault.subcode.is_none());
        }
        // The code prefix is declared on s:Value, as the SDK needs (PROTOCOL.md §11.4).
        let xml = crate::nbfx::to_xml(
            &RelayFault::QuotaExceeded.envelope("x", None).to_msbin1(),
            Limits::DEFAULT,
            false,
        )
        .unwrap();
        assert!(
            xml.contains(&format!(
                "<s:Value xmlns:r=\"{NS_RELAY}\">r:QuotaExceededFault</s:Value>"
            )),
            "{xml}"
        );
        assert!(
            xml.contains("<s:Text xml:lang=\"en-US\">x</s:Text>"),
            "{xml}"
        );
    }

    #[test]
    fn notice_round_trips_with_little_endian_addresses() {
        let n = Notice {
            to: "sb://contoso.servicebus.windows.net/echo/".into(),
            id: "5e854c76-2121-45bd-baf3-04094dc28386".into(),
            ip: Ipv4Addr::new(127, 0, 0, 1),
            ip_port: 9352,
            http: (Ipv4Addr::new(20, 25, 211, 163), 80),
            https: (Ipv4Addr::new(127, 0, 0, 1), 443),
            instance_dns: Some("gw.example.com".into()),
        };
        assert_eq!(ip_to_long(Ipv4Addr::new(127, 0, 0, 1)), 16_777_343);
        assert_eq!(ip_to_long(Ipv4Addr::new(20, 25, 211, 163)), 2_748_520_724);
        assert_eq!(
            Notice::from_envelope(&round_trip(&n.to_envelope())).unwrap(),
            n
        );
        // Wrapped for the listener, the inner envelope travels as binary text.
        let wrapped = OnewaySend {
            via: n.to.clone(),
            message_id: "urn:uuid:c41af08a-6271-47df-80df-4e129eedd776".into(),
            inner: n.to_envelope().to_msbin1(),
        };
        let back = OnewaySend::from_envelope(&round_trip(&wrapped.to_envelope())).unwrap();
        assert_eq!(back, wrapped);
        let doc = wrapped.to_envelope().to_msbin1();
        let id = crate::nbfx::text::parse_guid(&wrapped.message_id[9..]).unwrap();
        assert_eq!(
            OnewaySend::write_msbin1(&wrapped.via, &id, &wrapped.inner),
            doc
        );
        assert_eq!(
            OnewaySend::inner_of(&doc, Limits::DEFAULT)
                .unwrap()
                .as_deref(),
            Some(wrapped.inner.as_slice())
        );
        let inner = Envelope::decode(&back.inner, Limits::DEFAULT).unwrap();
        assert_eq!(Notice::from_envelope(&inner).unwrap(), n);
    }

    #[test]
    fn correlated_replies_written_directly_match_the_tree() {
        let (mut a, mut b) = (
            crate::nbfx::SessionDictionary::new(2048),
            crate::nbfx::SessionDictionary::new(2048),
        );
        for id in [
            "urn:uuid:c41af08a-6271-47df-80df-4e129eedd776",
            "urn:uuid:00000000-0000-0000-0000-000000000001",
            "not-a-uuid",
        ] {
            assert_eq!(
                correlated_reply_session(ACTION_SEND_REPLY, id, &mut a),
                correlated_reply(ACTION_SEND_REPLY, id).to_session(&mut b)
            );
        }
    }

    #[test]
    fn oneway_connect_and_redirect_round_trip() {
        let c = Connect {
            message_id: "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            token: Some("SharedAccessSignature sr=a&sig=b&se=1&skn=k".into()),
            uri: "sb://ns/path/".into(),
        };
        let env = round_trip(&c.to_envelope("sb://ns/path/"));
        assert_eq!(Connect::from_envelope(&env).unwrap(), c);
        assert_eq!(env.reply_to().as_deref(), Some(ANONYMOUS_2005_12));
        let r = round_trip(&redirect("net.tcp://other:9351/path/", Some(&c.message_id)));
        assert_eq!(r.action().as_deref(), Some(ACTION_REDIRECT));
        assert_eq!(
            r.body_element()
                .unwrap()
                .find("Uri", NS_CONNECT)
                .unwrap()
                .text_content(),
            "net.tcp://other:9351/path/"
        );
        let ack = round_trip(&correlated_reply(ACTION_SEND_REPLY, &c.message_id));
        assert_eq!(ack.relates_to(), Some(c.message_id.clone()));
        assert!(ack.fault().is_none());
    }

    #[test]
    fn hello_rejects_other_actions_and_bad_shapes() {
        assert!(Hello::from_envelope(&Envelope::with_action("Bogus")).is_err());
        assert!(Hello::from_envelope(&Envelope::with_action(ACTION_RELAYED_ACCEPT)).is_err());
        assert!(Hello::from_envelope(&Envelope::new()).is_err());
    }

    #[test]
    fn prefixed_framing_bounds_lengths() {
        let mut out = Vec::new();
        write_prefixed(b"abc", &mut out);
        assert_eq!(read_prefixed(&out, 10).unwrap(), Some((&b"abc"[..], 7)));
        assert_eq!(read_prefixed(&out[..5], 10).unwrap(), None);
        assert!(read_prefixed(&[0xff, 0xff, 0xff, 0x7f], MAX_PREFIXED_MESSAGE).is_err());
        assert!(ConnectPreamble::decode(b"\x08\0\0\0connect!", Limits::DEFAULT).is_err());
        let mut big = 7u32.to_le_bytes().to_vec();
        big.extend_from_slice(b"connect");
        big.extend_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(
            ConnectPreamble::decode(&big, Limits::DEFAULT),
            Err(Error::TooLarge { .. })
        ));
    }
}
