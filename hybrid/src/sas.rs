//! SharedAccessSignature tokens (`hybrid/PROTOCOL.md` §5,
//! `wcf/PROTOCOL.md` §7): `SharedAccessSignature sr=…&sig=…&se=…&skn=…`,
//! fields in any order. The signature is HMAC-SHA256 over `sr` exactly as it
//! appears in the token (still URL-encoded), a newline and `se`, keyed with
//! the UTF-8 bytes of the key string; compared in constant time. Audiences
//! match by whole path segment, ignoring scheme, port, host case and a
//! trailing slash.

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// The scheme word that starts every token.
pub const PREFIX: &str = "SharedAccessSignature ";

/// Why a token is not acceptable. The display strings follow the service's
/// wording where clients surface it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("RelaySecurityTokenRequired: a SharedAccessSignature token is required")]
    Missing,
    /// The token is not a SAS token or lacks a field.
    #[error("The token is malformed: {0}")]
    Malformed(&'static str),
    /// `skn` names no known rule.
    #[error("The token has an invalid signature (unknown key name)")]
    UnknownKey,
    /// The signature does not verify with any key of the rule.
    #[error("The token has an invalid signature")]
    BadSignature,
    /// `se` is in the past.
    #[error("The token is expired. Expiration time: '{0}'")]
    Expired(u64),
    /// The audience does not cover the resource.
    #[error("The token audience does not match the resource")]
    WrongAudience,
    /// The rule lacks the right the operation needs.
    #[error("Authorization failed for specified action: {0}")]
    MissingRight(&'static str),
}

/// A parsed token. `sr_raw` is kept exactly as received, for the signature,
/// which its `Debug` never shows.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// `sr` as it appears in the token (URL-encoded).
    pub sr_raw: String,
    /// `sr` decoded.
    pub resource: String,
    /// `sig`, decoded from URL encoding (still base64).
    pub signature: String,
    /// `se`, Unix seconds.
    pub expiry: u64,
    /// `skn`, decoded.
    pub key_name: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("sr_raw", &self.sr_raw)
            .field("resource", &self.resource)
            .field("signature", &"(secret)")
            .field("expiry", &self.expiry)
            .field("key_name", &self.key_name)
            .finish()
    }
}

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

impl Token {
    /// Parse `SharedAccessSignature k=v&…`.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX.trim_end())
            .map(str::trim_start)
            .ok_or(TokenError::Malformed("not a SharedAccessSignature"))?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in body.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sr" => sr = Some(v),
                "sig" => sig = Some(v),
                "se" => se = Some(v),
                "skn" => skn = Some(v),
                _ => {}
            }
        }
        let sr_raw = sr.ok_or(TokenError::Malformed("no sr"))?;
        Ok(Token {
            sr_raw: sr_raw.to_owned(),
            resource: form_decode(sr_raw),
            signature: form_decode(sig.ok_or(TokenError::Malformed("no sig"))?),
            expiry: se
                .ok_or(TokenError::Malformed("no se"))?
                .parse()
                .map_err(|_| TokenError::Malformed("se is not a number"))?,
            key_name: form_decode(skn.ok_or(TokenError::Malformed("no skn"))?),
        })
    }

    /// Whether `key` signed this token (constant-time comparison).
    pub fn signed_by(&self, key: &str) -> bool {
        let expected = signature(key, &self.sr_raw, self.expiry);
        let (a, b) = (expected.as_bytes(), self.signature.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether the token is expired at `now` (allowing `skew` seconds).
    pub fn expired(&self, now: u64, skew: u64) -> bool {
        self.expiry.saturating_add(skew) <= now
    }
}

/// base64(HMAC-SHA256(key, `sr` + "\n" + `se`)).
pub fn signature(key: &str, sr_raw: &str, expiry: u64) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(sr_raw.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// What `encodeURIComponent` leaves alone.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Build a token for `resource` the way the Node SDKs do (`createRelayToken`).
pub fn create(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let sr = utf8_percent_encode(resource, COMPONENT).to_string();
    let sig = signature(key, &sr, expiry);
    format!(
        "{PREFIX}sr={sr}&sig={}&se={expiry}&skn={}",
        utf8_percent_encode(&sig, COMPONENT),
        utf8_percent_encode(key_name, COMPONENT)
    )
}

/// Host and path segments of an audience or resource URI, lower-cased, with
/// scheme, port, query and trailing slash dropped.
fn host_and_segments(uri: &str) -> (String, Vec<String>) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or("");
    // Drop a port: digits after the last colon, unless that colon is inside
    // an IPv6 literal.
    let host = match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    };
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    (host.to_ascii_lowercase(), segments)
}

/// Whether a token for `audience` covers `resource` (`http://host/path`): same
/// host, and the audience path is the resource path or a whole-segment
/// prefix of it.
pub fn audience_covers(audience: &str, resource: &str) -> bool {
    let (ah, asegs) = host_and_segments(audience);
    let (rh, rsegs) = host_and_segments(resource);
    ah == rh && asegs.len() <= rsegs.len() && asegs.iter().zip(&rsegs).all(|(a, r)| a == r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_signature() {
        let text = create("http://h/p", "rule", "key", 4_000_000_000);
        let t = Token::parse(&text).unwrap();
        let shown = format!("{t:?} {t:#?}");
        assert!(!shown.contains(&t.signature), "{shown}");
        assert!(
            shown.contains("rule") && shown.contains("(secret)"),
            "{shown}"
        );
    }

    #[test]
    fn sdk5_captured_token_verifies() {
        // From the real Microsoft.ServiceBus.dll 5.0.0 capture (wcf/PROTOCOL.md §11.1): the
        // key is the test relay's, and the signature covers the lower-case
        // escaped sr as sent.
        let t = create(
            "http://contoso.servicebus.windows.net/echo/",
            "RootManageSharedAccessKey",
            "k3y",
            1_795_706_447,
        );
        let parsed = Token::parse(&t).unwrap();
        assert!(parsed.signed_by("k3y"));
        assert!(!parsed.signed_by("other"));
        assert_eq!(
            parsed.resource,
            "http://contoso.servicebus.windows.net/echo/"
        );
        // .NET encodes with lower-case escapes; the signature covers that text.
        let sr = "http%3a%2f%2fcontoso.servicebus.windows.net%2fecho%2f";
        let dotnet = format!(
            "SharedAccessSignature sr={sr}&sig={}&se=10&skn=k",
            utf8_percent_encode(&signature("key", sr, 10), COMPONENT)
        );
        let p = Token::parse(&dotnet).unwrap();
        assert!(p.signed_by("key"));
        assert_eq!(p.resource, "http://contoso.servicebus.windows.net/echo/");
    }

    #[test]
    fn fields_in_any_order_and_form_encoding() {
        let t = Token::parse("SharedAccessSignature skn=a+b&se=5&sig=x%2By&sr=http%3A%2F%2Fh%2Fp")
            .unwrap();
        assert_eq!(t.key_name, "a b");
        assert_eq!(t.signature, "x+y");
        assert_eq!(t.expiry, 5);
        assert!(Token::parse("Bearer x").is_err());
        assert!(Token::parse("SharedAccessSignature sr=a&sig=b&skn=c").is_err());
        assert!(t.expired(5, 0));
        assert!(!t.expired(4, 0));
    }

    #[test]
    fn audience_rules() {
        let r = "http://host/hc1";
        for ok in [
            "http://host/hc1",
            "http://host/hc1/",
            "https://HOST:443/hc1",
            "http://host/",
            "sb://host",
            "http://host:9080/HC1",
        ] {
            assert!(audience_covers(ok, r), "{ok}");
        }
        for bad in [
            "http://host/other",
            "http://host/hc",
            "http://otherhost/hc1",
            "http://host/hc1/deeper",
        ] {
            assert!(!audience_covers(bad, r), "{bad}");
        }
        assert!(audience_covers("http://host/a/b", "http://host/a/b/c"));
    }
}
