//! The relay listener's side of AMQP (`wcf/PROTOCOL.md` §2.1, §6.2, §8,
//! §11.2): the `:out`/`:in` attach pair and its `com.microsoft:*`
//! properties, the token carried on flows, and the error conditions the SDK
//! maps to exceptions.

use fe2o3_amqp_types::definitions::{Error as AmqpError, ErrorCondition, Fields, Role};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::{Attach, Flow};
use serde_amqp::primitives::Symbol;
use serde_amqp::Value;

/// Attach and flow property: the token.
pub const PROP_SWT: &str = "com.microsoft:swt";
/// Attach property: the listener type.
pub const PROP_LISTENER_TYPE: &str = "com.microsoft:listener-type";
/// Attach property: whether the relay is created on listen.
pub const PROP_DYNAMIC_RELAY: &str = "com.microsoft:dynamic-relay";
/// Attach property, sent only when false.
pub const PROP_TRANSPORT_SECURITY: &str = "com.microsoft:transport-security-required";
/// Attach property, sent only when false.
pub const PROP_CLIENT_AUTH: &str = "com.microsoft:client-authentication-required";
/// Attach property: the SDK's agent string.
pub const PROP_CLIENT_AGENT: &str = "com.microsoft:client-agent";
/// Attach property: a tracking id.
pub const PROP_TRACKING_ID: &str = "com.microsoft:tracking-id";
/// Attach property: a display name.
pub const PROP_DISPLAY_NAME: &str = "com.microsoft:display-name";

/// Error condition: the relay does not exist (the SDK does not retry).
pub const RELAY_NOT_FOUND: &str = "com.microsoft:relay-not-found";
/// Error condition: the token is missing, invalid or lacks Listen.
pub const AUTH_FAILED: &str = "com.microsoft:auth-failed";
/// Error condition: an incompatible registration exists (no retry).
pub const ADDRESS_IN_USE: &str = "com.microsoft:address-already-in-use";
/// Error condition: a quota (the listener cap) is exhausted.
pub const RESOURCE_LIMIT: &str = "amqp:resource-limit-exceeded";
/// Error condition: a malformed or unexpected frame.
pub const DECODE_ERROR: &str = "amqp:decode-error";
/// Error condition: an action the relay does not allow.
pub const NOT_ALLOWED: &str = "amqp:not-allowed";
/// Error condition: the peer fell silent past the idle time-out.
pub const IDLE_TIMEOUT: &str = RESOURCE_LIMIT;

/// `ListenerType` (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerType {
    /// NetTcpRelayBinding, relayed mode.
    RelayedConnection,
    /// NetTcpRelayBinding, hybrid mode (`DirectConnection` on the wire).
    DirectConnection,
    /// The other name of hybrid mode.
    HybridConnection,
    /// NetOnewayRelayBinding.
    Unicast,
    /// NetEventRelayBinding.
    Multicast,
    /// The HTTP relay bindings.
    RelayedHttp,
}

impl ListenerType {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ListenerType::RelayedConnection => "RelayedConnection",
            ListenerType::DirectConnection => "DirectConnection",
            ListenerType::HybridConnection => "HybridConnection",
            ListenerType::Unicast => "Unicast",
            ListenerType::Multicast => "Multicast",
            ListenerType::RelayedHttp => "RelayedHttp",
        }
    }

    /// Parse a wire name (`RoutedHttp` and `Junction` are not served).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ListenerType::RelayedConnection,
            ListenerType::DirectConnection,
            ListenerType::HybridConnection,
            ListenerType::Unicast,
            ListenerType::Multicast,
            ListenerType::RelayedHttp,
        ]
        .into_iter()
        .find(|t| t.name() == s)
    }

    /// Types that serve the same clients: the two hybrid names and relayed
    /// NetTcp share one entity kind.
    pub fn family(self) -> &'static str {
        match self {
            ListenerType::RelayedConnection
            | ListenerType::DirectConnection
            | ListenerType::HybridConnection => "NetTcp",
            ListenerType::Unicast => "NetOneway",
            ListenerType::Multicast => "NetEvent",
            ListenerType::RelayedHttp => "Http",
        }
    }
}

/// Which half of the duplex link an attach opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// `{LinkName}:out`: the listener's sender (it never sends, §2.3).
    Out,
    /// `{LinkName}:in`: the listener's receiver, where notices go.
    In,
}

/// What a listener's attach asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAttach {
    /// The link name.
    pub name: String,
    /// The listener's handle.
    pub handle: u32,
    /// Which half.
    pub half: Half,
    /// The relay address (`sb://ns/path/`).
    pub address: String,
    /// The token (`com.microsoft:swt`), if sent.
    pub token: Option<String>,
    /// The listener type; `None` when absent or not one the relay serves.
    pub listener_type: Option<ListenerType>,
    /// The raw listener type string, for errors.
    pub listener_type_name: Option<String>,
    /// `dynamic-relay` (default true, §11.2).
    pub dynamic: bool,
    /// `transport-security-required` (default true).
    pub transport_security: bool,
    /// `client-authentication-required` (default true).
    pub client_auth: bool,
    /// `client-agent`.
    pub client_agent: Option<String>,
    /// `tracking-id`.
    pub tracking_id: Option<String>,
    /// `display-name`.
    pub display_name: Option<String>,
}

fn prop<'a>(props: Option<&'a Fields>, key: &str) -> Option<&'a Value> {
    props.and_then(|p| p.get(&Symbol::from(key)))
}

fn prop_str(props: Option<&Fields>, key: &str) -> Option<String> {
    match prop(props, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Symbol(s) => Some(s.0.clone()),
        _ => None,
    }
}

fn prop_bool(props: Option<&Fields>, key: &str, default: bool) -> bool {
    match prop(props, key) {
        Some(Value::Bool(b)) => *b,
        _ => default,
    }
}

/// The token a flow carries for renewal (§8), if any.
pub fn flow_token(flow: &Flow) -> Option<String> {
    prop_str(flow.properties.as_ref(), PROP_SWT)
}

impl ListenerAttach {
    /// One half of the link pair `link` as the SDK attaches it (`:out` on
    /// handle 0, `:in` on handle 1) for `address`, with every option at the
    /// SDK's default and no token, type or identity yet.
    pub fn half_of(link: &str, half: Half, address: &str) -> ListenerAttach {
        let (suffix, handle) = match half {
            Half::Out => ("out", 0),
            Half::In => ("in", 1),
        };
        ListenerAttach {
            name: format!("{link}:{suffix}"),
            handle,
            half,
            address: address.to_owned(),
            token: None,
            listener_type: None,
            listener_type_name: None,
            dynamic: true,
            transport_security: true,
            client_auth: true,
            client_agent: None,
            tracking_id: None,
            display_name: None,
        }
    }

    /// Read a listener's attach; `Err` names what is missing.
    pub fn parse(attach: &Attach) -> crate::Result<ListenerAttach> {
        let (half, address) = match attach.role {
            Role::Sender => (
                Half::Out,
                match attach.target.as_deref() {
                    Some(TargetArchetype::Target(t)) => t.address.clone(),
                    _ => None,
                },
            ),
            Role::Receiver => (
                Half::In,
                attach.source.as_ref().and_then(|s| s.address.clone()),
            ),
        };
        let address =
            address.ok_or_else(|| crate::Error::missing("the attach", "relay address"))?;
        let props = attach.properties.as_ref();
        let listener_type_name = prop_str(props, PROP_LISTENER_TYPE);
        Ok(ListenerAttach {
            name: attach.name.clone(),
            handle: attach.handle.0,
            half,
            address,
            token: prop_str(props, PROP_SWT),
            listener_type: listener_type_name.as_deref().and_then(ListenerType::parse),
            listener_type_name,
            dynamic: prop_bool(props, PROP_DYNAMIC_RELAY, true),
            transport_security: prop_bool(props, PROP_TRANSPORT_SECURITY, true),
            client_auth: prop_bool(props, PROP_CLIENT_AUTH, true),
            client_agent: prop_str(props, PROP_CLIENT_AGENT),
            tracking_id: prop_str(props, PROP_TRACKING_ID),
            display_name: prop_str(props, PROP_DISPLAY_NAME),
        })
    }

    /// The attach the SDK sends for this half (used by the gateway's own
    /// listener, `forward --listen`), with properties in the SDK's order.
    pub fn to_attach(&self) -> Attach {
        let mut props = Fields::default();
        let mut put = |k: &str, v: Value| {
            props.insert(Symbol::from(k), v);
        };
        if let Some(t) = &self.token {
            put(PROP_SWT, Value::String(t.clone()));
        }
        if let Some(a) = &self.client_agent {
            put(PROP_CLIENT_AGENT, Value::String(a.clone()));
        }
        put(PROP_DYNAMIC_RELAY, Value::Bool(self.dynamic));
        if let Some(t) = &self.listener_type_name {
            put(PROP_LISTENER_TYPE, Value::String(t.clone()));
        }
        if !self.transport_security {
            put(PROP_TRANSPORT_SECURITY, Value::Bool(false));
        }
        if !self.client_auth {
            put(PROP_CLIENT_AUTH, Value::Bool(false));
        }
        if let Some(t) = &self.tracking_id {
            put(PROP_TRACKING_ID, Value::String(t.clone()));
        }
        let address = Some(self.address.clone());
        let (role, source, target) = match self.half {
            Half::Out => (
                Role::Sender,
                Some(Box::new(Source::default())),
                Some(Box::new(TargetArchetype::Target(Target {
                    address,
                    ..Target::default()
                }))),
            ),
            Half::In => (
                Role::Receiver,
                Some(Box::new(Source {
                    address,
                    ..Source::default()
                })),
                Some(Box::new(TargetArchetype::Target(Target::default()))),
            ),
        };
        Attach {
            name: self.name.clone(),
            handle: self.handle.into(),
            role,
            snd_settle_mode: Default::default(),
            rcv_settle_mode: Default::default(),
            source,
            target,
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (self.half == Half::Out).then_some(0),
            max_message_size: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: Some(props),
        }
    }
}

/// The relay's answer to an attach: the same link seen from the other end.
/// A refusal carries no terminus, as AMQP requires before the detach.
pub fn answer_attach(attach: &Attach, handle: u32, accept: bool) -> Attach {
    let we_send = attach.role == Role::Receiver;
    let role = if we_send {
        Role::Sender
    } else {
        Role::Receiver
    };
    Attach {
        name: attach.name.clone(),
        handle: handle.into(),
        role,
        snd_settle_mode: attach.snd_settle_mode.clone(),
        rcv_settle_mode: attach.rcv_settle_mode.clone(),
        source: if accept { attach.source.clone() } else { None },
        target: if accept { attach.target.clone() } else { None },
        unsettled: None,
        incomplete_unsettled: false,
        initial_delivery_count: we_send.then_some(0),
        max_message_size: None,
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// An AMQP error with a condition (custom or standard) and a description.
pub fn error(condition: &str, description: &str) -> AmqpError {
    AmqpError {
        condition: ErrorCondition::Custom(Symbol::from(condition)),
        description: Some(description.to_owned()),
        info: None,
    }
}

/// The condition of an error as a string.
pub fn condition(e: &AmqpError) -> String {
    match &e.condition {
        ErrorCondition::Custom(s) => s.0.clone(),
        other => serde_amqp::to_vec(other)
            .ok()
            .and_then(|b| serde_amqp::from_slice::<Symbol>(&b).ok())
            .map(|s| s.0)
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// A flow that renews the token on a link (§8).
pub fn renewal_flow(mut flow: Flow, token: &str) -> Flow {
    let mut props = Fields::default();
    props.insert(Symbol::from(PROP_SWT), Value::String(token.to_owned()));
    flow.properties = Some(props);
    flow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(half: Half) -> ListenerAttach {
        ListenerAttach {
            name: "RelayLink_1:in".into(),
            handle: 1,
            half,
            address: "sb://contoso.servicebus.windows.net/echo/".into(),
            token: Some("SharedAccessSignature sr=x".into()),
            listener_type: Some(ListenerType::RelayedConnection),
            listener_type_name: Some("RelayedConnection".into()),
            dynamic: true,
            transport_security: false,
            client_auth: true,
            client_agent: Some("ServiceBus/3.0.51272.9;".into()),
            tracking_id: Some("t".into()),
            display_name: None,
        }
    }

    #[test]
    fn attach_properties_round_trip_through_the_wire_encoding() {
        for half in [Half::In, Half::Out] {
            let a = sample(half);
            let bytes = serde_amqp::to_vec(&a.to_attach()).unwrap();
            let back: Attach = serde_amqp::from_slice(&bytes).unwrap();
            assert_eq!(ListenerAttach::parse(&back).unwrap(), a);
        }
    }

    #[test]
    fn custom_conditions_survive_encoding() {
        let e = error(AUTH_FAILED, "bad token");
        let bytes = serde_amqp::to_vec(&e).unwrap();
        let back: AmqpError = serde_amqp::from_slice(&bytes).unwrap();
        assert_eq!(condition(&back), AUTH_FAILED);
    }
}
