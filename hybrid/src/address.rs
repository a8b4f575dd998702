//! Hybrid Connections addresses and query parameters
//! (`spec/hybrid-connections.md` §1): the `$hc` prefix (case-insensitive),
//! the `sb-hc-*` parameters, the filtering rule for what listeners see, and
//! entity resolution by whole-segment, case-insensitive prefix.

/// The action of a WebSocket request (`sb-hc-action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A listener's control channel.
    Listen,
    /// A sender's connection (also the default when the parameter is missing).
    Connect,
    /// A listener answering an `accept`.
    Accept,
    /// A listener opening a request rendezvous.
    Request,
}

impl Action {
    /// Parse the parameter value; `None` for anything unknown.
    pub fn parse(value: Option<&str>) -> Option<Action> {
        match value {
            None => Some(Action::Connect),
            Some(v) if v.eq_ignore_ascii_case("listen") => Some(Action::Listen),
            Some(v) if v.eq_ignore_ascii_case("connect") => Some(Action::Connect),
            Some(v) if v.eq_ignore_ascii_case("accept") => Some(Action::Accept),
            Some(v) if v.eq_ignore_ascii_case("request") => Some(Action::Request),
            Some(_) => None,
        }
    }
}

/// Strip the `/$hc/` prefix (case-insensitive) from a request path.
pub fn strip_hc(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    first.eq_ignore_ascii_case("$hc").then_some(tail)
}

/// Decode one query value as form data (`+` is a space).
pub fn form_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The raw query split into `key=value` segments, as NET does: on `&` and
/// the first `=`; a segment without `=` has no value.
pub fn segments(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query.split('&').map(|seg| match seg.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (seg, None),
    })
}

/// The form-decoded value of the first parameter named `name` (exact,
/// case-insensitive).
pub fn param(query: &str, name: &str) -> Option<String> {
    segments(query)
        .find(|(k, v)| v.is_some() && k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.map(form_decode))
}

/// The query the listener sees: every `key=value` whose key starts with
/// `sb-hc-` (case-insensitive) removed, even with an empty value; a bare
/// `sb-hc-…` without `=` kept; everything else verbatim, in order. `None`
/// when nothing remains.
pub fn filter_query(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|seg| match seg.split_once('=') {
            Some((k, _)) => !k.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("sb-hc-")),
            None => true,
        })
        .collect();
    let joined = kept.join("&");
    (!joined.is_empty()).then_some(joined)
}

/// Match `path` (without `$hc`, no leading slash) against entity names by
/// whole-segment, case-insensitive prefix; the longest match wins. Returns
/// the index of the entity and the suffix (with its leading `/`, or "").
pub fn resolve<'p, S: AsRef<str>>(path: &'p str, entities: &[S]) -> Option<(usize, &'p str)> {
    let path = path.trim_start_matches('/');
    entities
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let name = name.as_ref().trim_matches('/');
            let head = path.get(..name.len())?;
            let rest = path.get(name.len()..)?;
            (head.eq_ignore_ascii_case(name) && (rest.is_empty() || rest.starts_with('/')))
                .then_some((i, name.len(), rest))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(i, _, rest)| (i, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_stripping_table() {
        // NET-TEST HybridRequestTests.QueryString rows (spec §1.2, case 30).
        let rows = [
            ("sb-hc-id=1&custom=value", Some("custom=value")),
            ("sb-hc-whatever=&foo=bar", Some("foo=bar")),
            ("sb-hc-undefined", Some("sb-hc-undefined")),
            ("&&&", Some("&&&")),
            ("a=1&a=2", Some("a=1&a=2")),
            ("a=1&a=2&", Some("a=1&a=2&")),
            ("SB-HC-ID=1", None),
            ("x=%2B&y=+&z=%2f%3a%3d%26", Some("x=%2B&y=+&z=%2f%3a%3d%26")),
            ("api-version=abc", Some("api-version=abc")),
            ("sb-hc-action=connect&sb-hc-token=abc", None),
        ];
        for (q, want) in rows {
            assert_eq!(filter_query(q).as_deref(), want, "{q}");
        }
    }

    #[test]
    fn params_and_actions() {
        assert_eq!(
            param("a=1&sb-hc-token=Shared+Access%3D", "sb-hc-token").as_deref(),
            Some("Shared Access=")
        );
        assert_eq!(
            Action::parse(param("sb-hc-action=LISTEN", "sb-hc-action").as_deref()),
            Some(Action::Listen)
        );
        assert_eq!(Action::parse(None), Some(Action::Connect));
        assert_eq!(Action::parse(Some("foo")), None);
        assert_eq!(strip_hc("/$HC/a/b"), Some("a/b"));
        assert_eq!(strip_hc("/a/b"), None);
    }

    #[test]
    fn entity_resolution_by_whole_segment() {
        let names = ["hc1", "a/b", "A/B/c"];
        assert_eq!(resolve("hc1/sfx", &names), Some((0, "/sfx")));
        assert_eq!(resolve("HC1", &names), Some((0, "")));
        assert_eq!(resolve("hc10", &names), None);
        assert_eq!(resolve("a/b/c/d", &names), Some((2, "/d")));
        assert_eq!(resolve("a/bc", &names), None);
    }
}
