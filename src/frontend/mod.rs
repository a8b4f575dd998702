//! Front ends: the only code that imports both the relay core and a
//! protocol crate. Each owns its sockets and TLS (`src/main.rs`, "Design").

use crate::config::{self, Rule};

pub mod bridge;
pub mod hybrid;
pub mod wcf;

/// What a front end needs from the configuration: the namespace and its
/// entities of type `E` (reloaded as a whole, see `crate::reload`).
pub struct Settings<E> {
    /// The namespace host.
    pub host: String,
    /// Its aliases (`[namespace] aliases`).
    pub aliases: Vec<String>,
    /// Namespace-wide rules.
    pub rules: Vec<Rule>,
    /// Configured entities.
    pub entities: Vec<E>,
    /// Accept entities created by listeners (dynamic registration).
    pub dynamic: bool,
    /// Limits and timeouts.
    pub limits: config::Limits,
}

impl<E> Settings<E> {
    /// Check `token` for `right` on the entity at `path` with its `rules`:
    /// the audience must name the namespace host or one of its aliases
    /// (scheme and port ignored), whatever host the request addressed.
    /// `grace` extends expiry.
    pub fn check_token(
        &self,
        token: Option<&str>,
        path: &str,
        rules: &[Rule],
        right: config::Right,
        grace: u64,
    ) -> Result<::hybrid::sas::Token, ::hybrid::sas::TokenError> {
        let hosts: Vec<&str> = std::iter::once(self.host.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .collect();
        crate::auth::check(token, path, &hosts, rules, &self.rules, right, grace)
    }
}
pub mod spelling;
