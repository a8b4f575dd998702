//! Hybrid Connections addresses and query parameters
//! (`hybrid/PROTOCOL.md` §1): the `$hc` prefix (case-insensitive),
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

/// The query an accepting listener sees in its `accept` address, rebuilt as
/// the service rebuilds it: parsed as .NET's `HttpUtility.ParseQueryString`
/// parses (pairs split at `&` and the first `=`, names and values
/// form-decoded: `+` is a space, `%XX` a UTF-8 byte, `%uXXXX` a UTF-16
/// unit; a segment without `=` is a value without a name), the `sb-hc-*`
/// names removed (case-insensitive), then written as `ToString()` writes the
/// collection: names grouped case-insensitively in order of first
/// appearance, each value as `name=value` (a nameless one bare), joined by
/// `&`, names and values form-encoded (`HttpUtility.UrlEncode`: letters,
/// digits and `-_.!*()` kept, a space as `+`, every other UTF-8 byte as
/// `%xx` in lower case). So `? Key =  a b` arrives as `+Key+=++a+b`, `'` as
/// `%27` and `<` as `%3c`. `None` when nothing remains. (Relayed HTTP
/// requests keep the sender's query, [`filter_query`]: the service passes
/// those through.)
pub fn service_query(query: &str) -> Option<String> {
    // (name, values) in order of first appearance; `None` is the nameless group.
    let mut groups: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let query = query.strip_prefix('?').unwrap_or(query);
    // Every `&` ends a segment, a trailing one included (ParseQueryString
    // adds a nameless empty value for it), as `split` does.
    for (k, v) in segments(query).filter(|_| !query.is_empty()) {
        let (name, value) = match v {
            Some(v) => (Some(form_decode(k)), form_decode(v)),
            None => (None, form_decode(k)),
        };
        if name
            .as_deref()
            .and_then(|n| n.get(..6))
            .is_some_and(|p| p.eq_ignore_ascii_case("sb-hc-"))
        {
            continue;
        }
        let same = |g: &Option<String>| match (g, &name) {
            (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
            (None, None) => true,
            _ => false,
        };
        match groups.iter_mut().find(|(g, _)| same(g)) {
            Some((_, values)) => values.push(value),
            None => groups.push((name, vec![value])),
        }
    }
    let mut out: Vec<String> = Vec::new();
    for (name, values) in &groups {
        let prefix = name.as_deref().map(|n| format!("{}=", form_encode(n)));
        for v in values {
            out.push(format!(
                "{}{}",
                prefix.as_deref().unwrap_or(""),
                form_encode(v)
            ));
        }
    }
    let joined = out.join("&");
    (!groups.is_empty()).then_some(joined)
}

/// Decode one query name or value as form data, as `HttpUtility.UrlDecode`
/// with UTF-8 does: `+` is a space, `%XX` a byte, `%uXXXX` a UTF-16 unit;
/// invalid escapes are kept as they are and bytes that are not UTF-8
/// become U+FFFD.
pub fn form_decode(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' if bytes.get(i + 1).is_some_and(|c| matches!(c, b'u' | b'U')) => {
                let unit = (2..6).try_fold(0u32, |acc, k| Some(acc * 16 + hex(bytes.get(i + k))?));
                match unit {
                    Some(u) => {
                        let c = char::from_u32(u).unwrap_or('\u{FFFD}');
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i += 6;
                        continue;
                    }
                    None => out.push(b),
                }
            }
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encode as `HttpUtility.UrlEncode` with UTF-8.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'*'
            | b'('
            | b')' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
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
    fn accept_queries_are_rebuilt_as_the_service_rebuilds_them() {
        let rows = [
            // The three the .NET SDK's tests expect from the service.
            (
                "%20Key%20=%20%20Value%20With%20Space",
                Some("+Key+=++Value+With+Space"),
            ),
            ("key='value'", Some("key=%27value%27")),
            ("key=<value>", Some("key=%3cvalue%3e")),
            ("key=%3Cvalue%3E", Some("key=%3cvalue%3e")),
            // Stripping, as for HTTP requests, on decoded names.
            ("sb-hc-id=1&custom=value", Some("custom=value")),
            ("SB-HC-ID=1", None),
            ("sb%2Dhc-id=1&a=b", Some("a=b")),
            ("sb-hc-undefined", Some("sb-hc-undefined")),
            // Empty segments and a trailing `&` survive as nameless values.
            ("&&&", Some("&&&")),
            ("a=1&a=2&", Some("a=1&a=2&")),
            ("", None),
            // Names group case-insensitively, in order of first appearance.
            ("a=1&b=2&A=3", Some("a=1&a=3&b=2")),
            ("x&a=1&y", Some("x&y&a=1")),
            // Decoding and encoding: `+` and `%2B`, %u escapes, UTF-8, safe marks.
            ("q=a+b%2Bc", Some("q=a+b%2bc")),
            ("q=%u00e9%C3%A9", Some("q=%c3%a9%c3%a9")),
            ("q=-_.!*()~'", Some("q=-_.!*()%7e%27")),
            ("q=%zz%", Some("q=%25zz%25")),
            ("k==v", Some("k=%3dv")),
        ];
        for (q, want) in rows {
            assert_eq!(service_query(q).as_deref(), want, "{q:?}");
        }
    }

    #[test]
    fn query_stripping_table() {
        // The .NET SDK's HybridRequestTests.QueryString rows (PROTOCOL.md §1.2, case 30).
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
