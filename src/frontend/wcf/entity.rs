//! WCF relay entities and their tokens (`wcf/PROTOCOL.md` §2.1, §6.2,
//! §6.3, §7): a listener's address resolves to a configured `[[wcf_relay]]`
//! or, where it asks for dynamic registration and the namespace allows it,
//! to a dynamic relay; a client's address resolves by longest whole-segment
//! prefix to a path with live listeners (or a configured relay). Listeners
//! on one path must agree on their family and flags; that agreement is kept
//! in the core's listener kind.

use hybrid::sas::TokenError;
use wcf::amqp::listener::{ListenerAttach, ListenerType};

use crate::config::{self, Right, Rule};
use crate::relay::Relay;

/// The WCF relay front end's settings.
pub type Settings = crate::frontend::Settings<config::WcfRelay>;

/// A resolved relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The relay path, without surrounding slashes.
    pub path: String,
    /// Entity-level rules.
    pub rules: Vec<Rule>,
    /// Whether clients need a Send token (`None`: the listeners decide).
    pub requires_auth: Option<bool>,
}

/// Why a listener cannot register (each maps to an AMQP condition, §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such relay and dynamic registration is not possible.
    NotFound(String),
    /// The relay serves another binding, or listeners disagree on flags.
    InUse(String),
}

/// The core's listener kind for a WCF listener: family and the two flags
/// (listeners sharing a path must agree on all three, §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `NetTcp`, `NetOneway`, `NetEvent` or `Http`.
    pub family: &'static str,
    /// `transport-security-required`.
    pub transport_security: bool,
    /// `client-authentication-required`.
    pub client_auth: bool,
}

const FAMILIES: [&str; 4] = ["NetTcp", "NetOneway", "NetEvent", "Http"];

impl Kind {
    /// The kind a listener's attach asks for.
    pub fn of(a: &ListenerAttach, t: ListenerType) -> Kind {
        Kind {
            family: t.family(),
            transport_security: a.transport_security,
            client_auth: a.client_auth,
        }
    }

    /// As the core stores it.
    pub fn label(&self) -> String {
        format!(
            "wcf:{}:{}:{}",
            self.family,
            u8::from(self.transport_security),
            u8::from(self.client_auth)
        )
    }

    /// Read a stored kind back (`None` for other front ends' listeners).
    pub fn parse(label: &str) -> Option<Kind> {
        let mut it = label.strip_prefix("wcf:")?.split(':');
        let name = it.next()?;
        let family = FAMILIES.into_iter().find(|f| *f == name)?;
        let flag = |s: Option<&str>| s.map(|s| s == "1");
        Some(Kind {
            family,
            transport_security: flag(it.next())?,
            client_auth: flag(it.next())?,
        })
    }
}

/// The path of an `sb://host/path/` (or `http(s)://`) address, and its host.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    Some((host, path.trim_matches('/')))
}

fn same_path(a: &str, b: &str) -> bool {
    a.trim_matches('/')
        .eq_ignore_ascii_case(b.trim_matches('/'))
}

impl Settings {
    /// The NetTcp relay at `path` if it is configured to take Hybrid
    /// Connections senders (and listeners beside its WCF ones).
    pub fn takes_hybrid_senders(&self, path: &str) -> Option<Entity> {
        self.configured(path)
            .filter(|e| e.kind == config::WcfRelayType::NetTcp && e.accept_hybrid_senders)
            .map(|_| self.entity(path))
    }

    fn configured(&self, path: &str) -> Option<&config::WcfRelay> {
        self.entities.iter().find(|e| same_path(&e.path, path))
    }

    fn entity(&self, path: &str) -> Entity {
        match self.configured(path) {
            Some(e) => Entity {
                path: e.path.trim_matches('/').to_owned(),
                rules: e.rule.clone(),
                requires_auth: Some(e.requires_client_authorization),
            },
            None => Entity {
                path: path.to_owned(),
                rules: Vec::new(),
                requires_auth: None,
            },
        }
    }

    /// The relay a listener registers on, or why it cannot.
    pub fn resolve_listener(
        &self,
        path: &str,
        kind: Kind,
        dynamic: bool,
        relay: &Relay,
    ) -> Result<Entity, Refused> {
        if path.is_empty() {
            return Err(Refused::NotFound("the address names no relay".into()));
        }
        match self.configured(path) {
            Some(e) if e.kind.name() != kind.family => {
                return Err(Refused::InUse(format!(
                    "the relay at '{path}' is a {} relay; this listener is {}",
                    e.kind.name(),
                    kind.family
                )))
            }
            Some(_) => {}
            None if !self.dynamic => {
                return Err(Refused::NotFound(format!(
                    "no relay is configured at '{path}'"
                )))
            }
            None if !dynamic => {
                return Err(Refused::NotFound(format!(
                "no relay exists at '{path}' and the listener did not ask for dynamic registration"
            )))
            }
            None => {}
        }
        // A relay that takes Hybrid Connections senders shares its path with
        // their listeners (kinds that are not WCF ones).
        let bridged = self
            .configured(path)
            .is_some_and(|e| e.accept_hybrid_senders);
        let live = relay.listeners(path);
        if let Some(other) = live
            .iter()
            .filter(|l| !(bridged && Kind::parse(&l.kind).is_none()))
            .find(|l| l.kind != kind.label())
        {
            return Err(Refused::InUse(format!(
                "the address is in use by a listener of another kind ({})",
                other.kind
            )));
        }
        Ok(self.entity(path))
    }

    /// The relay a client's address reaches: the longest whole-segment prefix
    /// with live listeners of `family`, with the kind they registered.
    pub fn resolve_client(
        &self,
        path: &str,
        family: &str,
        relay: &Relay,
    ) -> Option<(Entity, Kind)> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        (1..=segments.len()).rev().find_map(|n| {
            let candidate = segments.get(..n)?.join("/");
            let kind = relay
                .listeners(&candidate)
                .iter()
                .find_map(|l| Kind::parse(&l.kind))
                .filter(|k| k.family == family)?;
            Some((self.entity(&candidate), kind))
        })
    }

    /// The HTTP relay a request path reaches: the longest whole-segment
    /// prefix with live `RelayedHttp` listeners (and their kind), else the
    /// longest configured `type = "Http"` relay, which has no listener now.
    pub fn resolve_http(&self, path: &str, relay: &Relay) -> Option<(Entity, Option<Kind>)> {
        if let Some((e, k)) = self.resolve_client(path, "Http", relay) {
            return Some((e, Some(k)));
        }
        let path = path.trim_matches('/');
        self.entities
            .iter()
            .filter(|e| e.kind == config::WcfRelayType::Http)
            .filter(|e| {
                let p = e.path.trim_matches('/');
                path.len() >= p.len()
                    && path
                        .get(..p.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(p))
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            })
            .max_by_key(|e| e.path.trim_matches('/').len())
            .map(|e| (self.entity(e.path.trim_matches('/')), None))
    }

    /// Check `token` for `right` on `entity`. `grace` extends expiry
    /// (listener renewals).
    pub fn authorize(
        &self,
        token: Option<&str>,
        entity: &Entity,
        right: Right,
        grace: u64,
    ) -> Result<u64, TokenError> {
        self.check_token(token, &entity.path, &entity.rules, right, grace)
            .map(|t| t.expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::ListenerInfo;

    fn settings(dynamic: bool) -> Settings {
        Settings {
            host: "ns".into(),
            aliases: Vec::new(),
            rules: Vec::new(),
            entities: vec![config::WcfRelay {
                path: "fixed".into(),
                kind: config::WcfRelayType::NetTcp,
                requires_client_authorization: true,
                rule: Vec::new(),
                inject_soap11_action: true,
                accept_hybrid_senders: false,
            }],
            dynamic,
            limits: config::Limits::default(),
        }
    }

    const NETTCP: Kind = Kind {
        family: "NetTcp",
        transport_security: true,
        client_auth: true,
    };

    #[test]
    fn kinds_round_trip_and_ignore_other_front_ends() {
        for family in FAMILIES {
            let k = Kind { family, ..NETTCP };
            assert_eq!(Kind::parse(&k.label()), Some(k));
        }
        assert_eq!(Kind::parse("hybrid"), None);
    }

    #[test]
    fn addresses_split_into_host_and_path() {
        assert_eq!(
            split_address("sb://ns.example:9352/a/b/"),
            Some(("ns.example", "a/b"))
        );
        assert_eq!(split_address("sb://ns/"), Some(("ns", "")));
    }

    #[test]
    fn listeners_resolve_by_configuration_and_dynamic_flags() {
        let relay = crate::relay::Relay::new(crate::config::Limits::default().core());
        let s = settings(false);
        assert!(s.resolve_listener("fixed", NETTCP, false, &relay).is_ok());
        let oneway = Kind {
            family: "NetOneway",
            ..NETTCP
        };
        assert!(matches!(
            s.resolve_listener("fixed", oneway, true, &relay),
            Err(Refused::InUse(_))
        ));
        assert!(matches!(
            s.resolve_listener("other", NETTCP, true, &relay),
            Err(Refused::NotFound(_))
        ));
        let s = settings(true);
        assert!(matches!(
            s.resolve_listener("other", NETTCP, false, &relay),
            Err(Refused::NotFound(_))
        ));
        assert!(s.resolve_listener("other", NETTCP, true, &relay).is_ok());
    }

    #[test]
    fn clients_reach_the_longest_live_prefix_and_flag_disagreement_is_refused() {
        let relay = crate::relay::Relay::new(crate::config::Limits::default().core());
        let reg = &relay.registry;
        let s = settings(true);
        let info = |k: &Kind| ListenerInfo {
            identity: "l".into(),
            kind: k.label(),
        };
        let _a = reg.register("a", info(&NETTCP)).unwrap();
        let _b = reg.register("a/b", info(&NETTCP)).unwrap();
        assert_eq!(
            s.resolve_client("a/b/c", "NetTcp", &relay).unwrap().0.path,
            "a/b"
        );
        assert_eq!(
            s.resolve_client("a/x", "NetTcp", &relay).unwrap().0.path,
            "a"
        );
        assert!(s.resolve_client("a/x", "NetOneway", &relay).is_none());
        assert!(s.resolve_client("zzz", "NetTcp", &relay).is_none());
        let open = Kind {
            client_auth: false,
            ..NETTCP
        };
        assert!(matches!(
            s.resolve_listener("a", open, true, &relay),
            Err(Refused::InUse(_))
        ));
    }
}
