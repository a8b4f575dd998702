//! Token checks for the namespace and its entities (`hybrid/PROTOCOL.md`
//! §5, `wcf/PROTOCOL.md` §7): the rule is found by `skn` among the entity's
//! rules and the namespace's, the signature is tried with the primary then
//! the secondary key, expiry is checked with a small clock skew, and the
//! audience must cover `http://{host}/{entity}` for the namespace host or the
//! host the client addressed (port ignored).

use std::time::{SystemTime, UNIX_EPOCH};

use hybrid::sas::{audience_covers, Token, TokenError};

use crate::config::{Right, Rule};

/// Seconds of clock skew allowed on expiry.
pub const CLOCK_SKEW: u64 = 30;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn right_name(r: Right) -> &'static str {
    match r {
        Right::Listen => "Listen",
        Right::Send => "Send",
        Right::Manage => "Manage",
    }
}

/// Check `token` for `right` on `entity`, trying `entity_rules` then
/// `namespace_rules`. `hosts` are the host names the audience may name.
/// `grace` extends the expiry (for listener renewals).
pub fn check(
    token: Option<&str>,
    entity: &str,
    hosts: &[&str],
    entity_rules: &[Rule],
    namespace_rules: &[Rule],
    right: Right,
    grace: u64,
) -> Result<Token, TokenError> {
    let text = token
        .filter(|t| !t.trim().is_empty())
        .ok_or(TokenError::Missing)?;
    let t = Token::parse(text)?;
    let rule = entity_rules
        .iter()
        .chain(namespace_rules)
        .find(|r| r.name == t.key_name)
        .ok_or(TokenError::UnknownKey)?;
    if !(t.signed_by(rule.key.expose())
        || rule
            .secondary_key
            .as_ref()
            .is_some_and(|k| t.signed_by(k.expose())))
    {
        return Err(TokenError::BadSignature);
    }
    if t.expired(now(), CLOCK_SKEW + grace) {
        return Err(TokenError::Expired(t.expiry));
    }
    let entity = entity.trim_matches('/');
    if !hosts
        .iter()
        .any(|h| audience_covers(&t.resource, &format!("http://{h}/{entity}")))
    {
        return Err(TokenError::WrongAudience);
    }
    if !rule.grants(right) {
        return Err(TokenError::MissingRight(right_name(right)));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrid::sas::create;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                name: "all".into(),
                key: "k1".into(),
                secondary_key: Some("k2".into()),
                rights: vec![Right::Manage],
            },
            Rule {
                name: "send".into(),
                key: "s".into(),
                secondary_key: None,
                rights: vec![Right::Send],
            },
        ]
    }

    #[test]
    fn checks() {
        let future = now() + 3600;
        let hosts = ["localhost", "127.0.0.1"];
        let ok = |t: &str, r| check(Some(t), "hc1", &hosts, &[], &rules(), r, 0);
        assert!(ok(
            &create("http://127.0.0.1/hc1", "all", "k1", future),
            Right::Listen
        )
        .is_ok());
        assert!(ok(
            &create("https://LOCALHOST:9443/hc1/", "all", "k2", future),
            Right::Send
        )
        .is_ok());
        assert!(ok(
            &create("sb://localhost/", "all", "k1", future),
            Right::Listen
        )
        .is_ok());
        assert_eq!(
            ok(
                &create("http://localhost/hc2", "all", "k1", future),
                Right::Listen
            )
            .err(),
            Some(TokenError::WrongAudience)
        );
        assert_eq!(
            ok(
                &create("http://localhost/hc1", "all", "bad", future),
                Right::Listen
            )
            .err(),
            Some(TokenError::BadSignature)
        );
        assert_eq!(
            ok(
                &create("http://localhost/hc1", "nobody", "k1", future),
                Right::Listen
            )
            .err(),
            Some(TokenError::UnknownKey)
        );
        assert_eq!(
            ok(
                &create("http://localhost/hc1", "all", "k1", now() - 100),
                Right::Listen
            )
            .err(),
            Some(TokenError::Expired(now() - 100))
        );
        assert_eq!(
            ok(
                &create("http://localhost/hc1", "send", "s", future),
                Right::Listen
            )
            .err(),
            Some(TokenError::MissingRight("Listen"))
        );
        assert_eq!(
            check(None, "hc1", &hosts, &[], &rules(), Right::Send, 0).err(),
            Some(TokenError::Missing)
        );
        // Grace lets a just-expired token through.
        assert!(check(
            Some(&create("http://localhost/hc1", "all", "k1", now() - 100)),
            "hc1",
            &hosts,
            &[],
            &rules(),
            Right::Listen,
            300
        )
        .is_ok());
    }
}
