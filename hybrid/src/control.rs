//! Control-channel messages (`hybrid/PROTOCOL.md` §2.2, §2.3, §4):
//! what the gateway sends a listener (`accept`, `request` in its inline and
//! rendezvous forms) and what a listener sends (`renewToken`, `response`).
//! Every message is a JSON object with exactly one top-level key; keys may
//! come in any order and with `\/` escapes, so messages are parsed, never
//! matched as text.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

/// `{address, port}` of the peer that started the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteEndpoint {
    /// IP address as text.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

/// `{"accept": {...}}`: shaped for the strictest SDK (Java): `connectHeaders`
/// and `remoteEndpoint` are always present and every header value is a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The single-use rendezvous address.
    pub address: String,
    /// The sender's `sb-hc-id`, or a generated one.
    pub id: String,
    /// The sender's headers (repeated ones joined with `", "`).
    pub connect_headers: BTreeMap<String, String>,
    /// The sender's address.
    pub remote_endpoint: RemoteEndpoint,
}

impl Accept {
    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serialized straight from borrowed fields (no `Value` tree), keys in
        // the sorted order `json!` gives.
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            address: &'a str,
            connect_headers: &'a BTreeMap<String, String>,
            id: &'a str,
            remote_endpoint: &'a RemoteEndpoint,
        }
        #[derive(Serialize)]
        struct Message<'a> {
            accept: Body<'a>,
        }
        let message = Message {
            accept: Body {
                address: &self.address,
                connect_headers: &self.connect_headers,
                id: &self.id,
                remote_endpoint: &self.remote_endpoint,
            },
        };
        // Strings, a string map and a number always serialize.
        serde_json::to_string(&message).unwrap_or_default()
    }
}

/// The HTTP request metadata of a `request` message (§4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Absolute path including the entity path, plus the filtered query.
    pub request_target: String,
    /// The method.
    pub method: String,
    /// Headers, repeated ones joined with `", "`.
    pub request_headers: BTreeMap<String, String>,
    /// The sender's address.
    pub remote_endpoint: RemoteEndpoint,
    /// Whether a body (one binary message) follows.
    pub body: bool,
}

/// `{"request": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where the listener may open (or must open, without `head`) a rendezvous.
    pub address: String,
    /// The request id, echoed as `response.requestId`.
    pub id: String,
    /// The full request (inline form, and on a rendezvous); `None` for the
    /// rendezvous announcement, which carries no `method` and no `body`.
    pub head: Option<RequestHead>,
}

impl Request {
    /// The JSON text.
    pub fn to_json(&self) -> String {
        let mut inner = Map::new();
        inner.insert("address".into(), Value::from(self.address.clone()));
        inner.insert("id".into(), Value::from(self.id.clone()));
        if let Some(h) = &self.head {
            inner.insert(
                "requestTarget".into(),
                Value::from(h.request_target.clone()),
            );
            inner.insert("method".into(), Value::from(h.method.clone()));
            inner.insert("remoteEndpoint".into(), json!(h.remote_endpoint));
            inner.insert("requestHeaders".into(), json!(h.request_headers));
            inner.insert("body".into(), Value::from(h.body));
        }
        json!({ "request": inner }).to_string()
    }
}

/// A listener's `response` (§4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request it answers.
    pub request_id: String,
    /// The status code (a number, or a numeric string as in the docs).
    pub status_code: u16,
    /// The reason phrase, if given and not null.
    pub status_description: Option<String>,
    /// Response headers.
    pub response_headers: Vec<(String, String)>,
    /// Whether a body (one binary message) follows.
    pub body: bool,
}

/// What a listener sent on a control channel or rendezvous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerCommand {
    /// `renewToken` with the new token.
    RenewToken(String),
    /// `response`.
    Response(Response),
    /// A well-formed command the gateway does not know (ignored, §2.2).
    Unknown(String),
}

/// Why a listener message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not JSON, not an object, or not exactly one top-level key.
    #[error("command messages must be a JSON object with exactly one key")]
    NotACommand,
    /// A known command without the fields it needs.
    #[error("'{0}' command is missing or has an invalid '{1}'")]
    BadField(&'static str, &'static str),
}

fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The one key of a control message and what it holds (§2.2: every
/// message is a JSON object with exactly one top-level key).
fn one_key(message: &str) -> Result<(String, Value), CommandError> {
    let Ok(Value::Object(top)) = serde_json::from_str::<Value>(message) else {
        return Err(CommandError::NotACommand);
    };
    if top.len() != 1 {
        return Err(CommandError::NotACommand);
    }
    top.into_iter().next().ok_or(CommandError::NotACommand)
}

/// Parse one text message from a listener.
pub fn parse_command(text: &str) -> Result<ListenerCommand, CommandError> {
    let (key, inner) = one_key(text)?;
    match key.as_str() {
        "renewToken" => inner
            .get("token")
            .and_then(Value::as_str)
            .map(|t| ListenerCommand::RenewToken(t.to_owned()))
            .ok_or(CommandError::BadField("renewToken", "token")),
        "response" => {
            let status = match inner.get("statusCode") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=999).contains(n))
            .ok_or(CommandError::BadField("response", "statusCode"))?;
            Ok(ListenerCommand::Response(Response {
                request_id: inner
                    .get("requestId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                status_code: status,
                status_description: inner
                    .get("statusDescription")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                response_headers: string_map(inner.get("responseHeaders")),
                body: inner.get("body").and_then(Value::as_bool).unwrap_or(false),
            }))
        }
        _ => Ok(ListenerCommand::Unknown(key)),
    }
}

impl Response {
    /// The `response` message a listener sends.
    pub fn to_json(&self) -> String {
        let headers: Map<String, Value> = self
            .response_headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::from(v.clone())))
            .collect();
        json!({ "response": {
            "requestId": self.request_id,
            "statusCode": self.status_code,
            "statusDescription": self.status_description,
            "responseHeaders": headers,
            "body": self.body,
        }})
        .to_string()
    }
}

/// The `renewToken` message a listener sends with a fresh `token` (§2.2).
pub fn renew_token(token: &str) -> String {
    json!({ "renewToken": { "token": token } }).to_string()
}

/// What the relay sent a listener: on its control channel, or as the first
/// message of an HTTP request's rendezvous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// `accept`: a sender waits at the address.
    Accept(Accept),
    /// `request`: whole (with its head), or announced for a rendezvous.
    Request(Request),
    /// A well-formed message a listener does not know (ignored).
    Unknown(String),
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn remote_endpoint(v: Option<&Value>) -> RemoteEndpoint {
    RemoteEndpoint {
        address: text(v.and_then(|e| e.get("address"))).unwrap_or_default(),
        port: v
            .and_then(|e| e.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
    }
}

/// Parse one text message from the relay, as a listener reads it.
pub fn parse_relay_message(message: &str) -> Result<RelayMessage, CommandError> {
    let (key, inner) = one_key(message)?;
    match key.as_str() {
        "accept" => Ok(RelayMessage::Accept(Accept {
            address: text(inner.get("address"))
                .ok_or(CommandError::BadField("accept", "address"))?,
            id: text(inner.get("id")).unwrap_or_default(),
            connect_headers: string_map(inner.get("connectHeaders"))
                .into_iter()
                .collect(),
            remote_endpoint: remote_endpoint(inner.get("remoteEndpoint")),
        })),
        "request" => Ok(RelayMessage::Request(Request {
            address: text(inner.get("address"))
                .ok_or(CommandError::BadField("request", "address"))?,
            id: text(inner.get("id")).unwrap_or_default(),
            head: text(inner.get("method")).map(|method| RequestHead {
                request_target: text(inner.get("requestTarget")).unwrap_or_default(),
                method,
                request_headers: string_map(inner.get("requestHeaders"))
                    .into_iter()
                    .collect(),
                remote_endpoint: remote_endpoint(inner.get("remoteEndpoint")),
                body: inner.get("body").and_then(Value::as_bool).unwrap_or(false),
            }),
        })),
        _ => Ok(RelayMessage::Unknown(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_java_shaped() {
        let mut h = BTreeMap::new();
        h.insert("Sec-WebSocket-Key".to_string(), "k".to_string());
        let a = Accept {
            address: "wss://h/$hc/p?sb-hc-action=accept&sb-hc-id=1".into(),
            id: "1".into(),
            connect_headers: h,
            remote_endpoint: RemoteEndpoint {
                address: "127.0.0.1".into(),
                port: 5,
            },
        };
        let v: Value = serde_json::from_str(&a.to_json()).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(v["accept"]["connectHeaders"]["Sec-WebSocket-Key"], "k");
        assert_eq!(v["accept"]["remoteEndpoint"]["port"], 5);
        assert_eq!(
            a.to_json(),
            r#"{"accept":{"address":"wss://h/$hc/p?sb-hc-action=accept&sb-hc-id=1","connectHeaders":{"Sec-WebSocket-Key":"k"},"id":"1","remoteEndpoint":{"address":"127.0.0.1","port":5}}}"#
        );
    }

    #[test]
    fn what_the_relay_writes_a_listener_reads_back() {
        let mut h = BTreeMap::new();
        h.insert("Sec-WebSocket-Key".to_string(), "k".to_string());
        let endpoint = RemoteEndpoint {
            address: "10.0.0.1".into(),
            port: 4711,
        };
        let accept = Accept {
            address: "wss://h/$hc/p?sb-hc-action=accept&sb-hc-id=1".into(),
            id: "1".into(),
            connect_headers: h.clone(),
            remote_endpoint: endpoint.clone(),
        };
        assert_eq!(
            parse_relay_message(&accept.to_json()),
            Ok(RelayMessage::Accept(accept))
        );
        for head in [
            None,
            Some(RequestHead {
                request_target: "/p/x?y=1".into(),
                method: "POST".into(),
                request_headers: h.clone(),
                remote_endpoint: endpoint.clone(),
                body: true,
            }),
        ] {
            let r = Request {
                address: "wss://h/$hc/p?sb-hc-action=request".into(),
                id: "2".into(),
                head,
            };
            assert_eq!(
                parse_relay_message(&r.to_json()),
                Ok(RelayMessage::Request(r))
            );
        }
        assert_eq!(
            parse_relay_message(r#"{"later":{}}"#),
            Ok(RelayMessage::Unknown("later".into()))
        );
        assert!(parse_relay_message(r#"{"accept":{}}"#).is_err());
        assert!(parse_relay_message("[]").is_err());
    }

    #[test]
    fn what_a_listener_writes_the_relay_reads_back() {
        let r = Response {
            request_id: "2".into(),
            status_code: 201,
            status_description: Some("Created".into()),
            response_headers: vec![("X-A".into(), "1".into())],
            body: true,
        };
        assert_eq!(
            parse_command(&r.to_json()),
            Ok(ListenerCommand::Response(r))
        );
        assert_eq!(
            parse_command(&renew_token("SharedAccessSignature sr=x")),
            Ok(ListenerCommand::RenewToken(
                "SharedAccessSignature sr=x".into()
            ))
        );
    }

    #[test]
    fn request_forms() {
        let r = Request {
            address: "a".into(),
            id: "i".into(),
            head: None,
        };
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v["request"].get("method").is_none() && v["request"].get("body").is_none());
    }

    #[test]
    fn listener_commands() {
        assert_eq!(
            parse_command(r#"{"renewToken":{"token":"t"}}"#),
            Ok(ListenerCommand::RenewToken("t".into()))
        );
        let ListenerCommand::Response(r) = parse_command(r#"{"response":{"body":true,"requestId":"x","statusCode":"201","statusDescription":null,"responseHeaders":{"A":"1","B":["2","3"]}}}"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.status_code, r.status_description, r.body),
            (201, None, true)
        );
        assert_eq!(
            r.response_headers,
            vec![("A".into(), "1".into()), ("B".into(), "2,3".into())]
        );
        assert_eq!(
            parse_command(r#"{"foo":{}}"#),
            Ok(ListenerCommand::Unknown("foo".into()))
        );
        assert_eq!(
            parse_command(r#"{"a":1,"b":2}"#),
            Err(CommandError::NotACommand)
        );
        assert_eq!(parse_command("[1]"), Err(CommandError::NotACommand));
        assert_eq!(parse_command("nope"), Err(CommandError::NotACommand));
        assert!(parse_command(r#"{"response":{"statusCode":"abc"}}"#).is_err());
    }
}
