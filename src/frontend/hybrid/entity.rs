//! Entities and authorization for Hybrid Connections
//! (`hybrid/PROTOCOL.md` §1.1, §5): resolve a request path to a
//! configured hybrid connection by longest whole-segment, case-insensitive
//! prefix (or, where dynamic registration is on, to a path with live
//! listeners, or the path itself for a listener); find the token where each
//! operation carries it; check it.

use hybrid::address;
use hybrid::sas::TokenError;
use hyper::HeaderMap;

use crate::config::{self, Right, Rule};
use crate::relay::Relay;

/// The Hybrid Connections front end's settings.
pub type Settings = crate::frontend::Settings<config::HybridConnection>;

/// A resolved entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The entity path, as configured (or as first used, for dynamic ones).
    pub path: String,
    /// What follows the entity path (with its leading `/`, or "").
    pub suffix: String,
    /// Whether senders need a Send token.
    pub requires_auth: bool,
    /// Entity-level rules.
    pub rules: Vec<Rule>,
    /// Whether NetTcpRelay clients may connect (`accept_wcf_clients`).
    pub wcf_clients: bool,
}

/// Where a token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// WebSocket listen and connect: `ServiceBusAuthorization`, else `sb-hc-token`.
    WebSocket,
    /// Relayed HTTP: `sb-hc-token`, else `ServiceBusAuthorization`, else
    /// `Authorization` (which is then consumed).
    Http,
}

impl Settings {
    /// Resolve `path` (without `/$hc/`). A listener on an unknown path gets a
    /// dynamic entity for its whole path when dynamic registration is on.
    pub fn resolve(&self, path: &str, relay: &Relay, for_listener: bool) -> Option<Entity> {
        let path = path.trim_start_matches('/');
        if let Some((i, suffix)) = address::resolve(
            path,
            &self
                .entities
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
        ) {
            let e = self.entities.get(i)?;
            return Some(Entity {
                path: e.path.trim_matches('/').to_owned(),
                suffix: suffix.to_owned(),
                requires_auth: e.requires_client_authorization,
                rules: e.rule.clone(),
                wcf_clients: e.accept_wcf_clients,
            });
        }
        if !self.dynamic {
            return None;
        }
        let live = relay.paths();
        let (path, suffix) = match address::resolve(path, &live) {
            Some((i, suffix)) if !for_listener => (live.get(i)?.clone(), suffix.to_owned()),
            _ => (path.trim_end_matches('/').to_owned(), String::new()),
        };
        (!path.is_empty()).then_some(Entity {
            path,
            suffix,
            requires_auth: true,
            rules: Vec::new(),
            wcf_clients: false,
        })
    }

    /// The token for `source` from headers and query; with `consumed_authorization`
    /// set when the `Authorization` header was the one used.
    pub fn find_token(
        source: TokenSource,
        headers: &HeaderMap,
        query: &str,
        requires_auth: bool,
    ) -> (Option<String>, bool) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let from_query = address::param(query, "sb-hc-token");
        match source {
            TokenSource::WebSocket => (header("ServiceBusAuthorization").or(from_query), false),
            TokenSource::Http => match from_query.or_else(|| header("ServiceBusAuthorization")) {
                Some(t) => (Some(t), false),
                None if requires_auth => {
                    let a = header("Authorization");
                    let used = a.is_some();
                    (a, used)
                }
                None => (None, false),
            },
        }
    }

    /// Check a token for `right` on `entity`.
    pub fn authorize(
        &self,
        token: Option<&str>,
        entity: &Entity,
        right: Right,
        grace: u64,
    ) -> Result<(), TokenError> {
        self.check_token(token, &entity.path, &entity.rules, right, grace)
            .map(|_| ())
    }
}

/// The status for a token failure: 401 for missing, malformed, bad or
/// expired tokens and a wrong audience; 403 for a missing right
/// (`hybrid/PROTOCOL.md` §5.4).
pub fn token_status(e: &TokenError) -> u16 {
    match e {
        TokenError::MissingRight(_) => 403,
        _ => 401,
    }
}
