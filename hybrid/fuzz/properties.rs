//! The properties the `hybrid` fuzz targets check. Each function panics
//! when a property fails; input the parsers reject is fine as long as
//! nothing panics.

use hybrid::control::{parse_command, parse_relay_message, ListenerCommand, RelayMessage};
use hybrid::sas::{audience_covers, create, Token};

/// SAS tokens: parsing any text never panics, nor do the checks on what it
/// parsed; a token made for any resource text parses back to that resource
/// and verifies with its key.
pub fn sas_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = Token::parse(&text) {
        let _ = t.signed_by("key");
        let _ = t.expired(u64::MAX, u64::MAX);
        let _ = audience_covers(&t.resource, "http://host/path");
        let _ = audience_covers("http://host/path", &t.resource);
    }
    let made = create(&text, "rule", "key", 4_000_000_000);
    let t = Token::parse(&made).expect("a token made here parses");
    assert_eq!(t.resource, text);
    assert_eq!(t.key_name, "rule");
    assert!(t.signed_by("key"));
    assert!(!t.signed_by("other"));
}

/// Control-channel messages both ways: parsing any text never panics; a
/// `response` always has a status code between 100 and 999; whatever
/// parses, written out again, parses back to the same value (a listener's
/// `response` as the relay reads it, the relay's `accept` and `request` as
/// a listener reads them).
pub fn control_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(ListenerCommand::Response(r)) = parse_command(&text) {
        assert!((100..=999).contains(&r.status_code));
        let again = parse_command(&r.to_json());
        assert_eq!(again, Ok(ListenerCommand::Response(r)));
    }
    match parse_relay_message(&text) {
        Ok(RelayMessage::Accept(a)) => {
            let again = parse_relay_message(&a.to_json());
            assert_eq!(again, Ok(RelayMessage::Accept(a)));
        }
        Ok(RelayMessage::Request(r)) => {
            let again = parse_relay_message(&r.to_json());
            assert_eq!(again, Ok(RelayMessage::Request(r)));
        }
        _ => {}
    }
}
