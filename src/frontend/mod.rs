//! Front ends: the only code that imports both the relay core and a
//! protocol crate. Each owns its sockets and TLS (`design.md`, "Seams").

use crate::config::{self, Rule};

pub mod hybrid;
pub mod wcf;

/// What a front end needs from the configuration: the namespace and its
/// entities of type `E` (reloaded as a whole, see `crate::reload`).
pub struct Settings<E> {
    /// The namespace host.
    pub host: String,
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
    /// the audience may name the namespace host or `host`, the host the
    /// peer addressed (a port on it is ignored). `grace` extends expiry.
    pub fn check_token(
        &self,
        token: Option<&str>,
        path: &str,
        rules: &[Rule],
        host: Option<&str>,
        right: config::Right,
        grace: u64,
    ) -> Result<::hybrid::sas::Token, ::hybrid::sas::TokenError> {
        let host = host.map(|h| {
            h.rsplit_once(':')
                .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                .map_or(h, |(h, _)| h)
        });
        let hosts: Vec<&str> = std::iter::once(self.host.as_str()).chain(host).collect();
        crate::auth::check(token, path, &hosts, rules, &self.rules, right, grace)
    }
}
pub mod websocket;

/// A fresh random GUID in its usual text form.
pub fn guid() -> String {
    use rand::RngCore;
    let hex = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(hex(byte >> 4));
        s.push(hex(byte & 0x0f));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn guids_have_the_usual_shape() {
        let g = super::guid();
        let parts: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(g.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(g, super::guid());
    }
}
