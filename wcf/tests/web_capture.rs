//! The relayed web envelopes of the real SDK's HTTP relay captures
//! (`fixtures/wcf/http/sdk5-http-*.txt`, `wcf/PROTOCOL.md` §11.3): our
//! request builder writes the envelopes the SDK listener dispatched, and our
//! incremental reader turns the SDK's replies into the right status, reason,
//! headers and body, fed whole and one byte at a time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::BytesMut;
use wcf::framing::{Decoder, Record};
use wcf::hexdump::{parse_steps, stream, Direction};
use wcf::nbfx;
use wcf::soap::Envelope;
use wcf::web::{
    inject_soap11_action, is_soap_fault, open_envelope, BodyFormat, BodyWriter, Event, Incoming,
    ReplyHead, RequestHead,
};
use wcf::Limits;

const LIMITS: Limits = Limits::DEFAULT.with_max_message(1 << 20);

/// The bytes of a capture, per direction: (relay to listener, listener to relay).
fn capture(name: &str) -> (Vec<u8>, Vec<u8>) {
    let path = format!("{}/../fixtures/wcf/http/{name}", env!("CARGO_MANIFEST_DIR"));
    let chunks = parse_steps(&std::fs::read_to_string(&path).unwrap(), "relay (fake").unwrap();
    (
        stream(&chunks, Direction::ClientToServer),
        stream(&chunks, Direction::ServerToClient),
    )
}

/// The envelope carried in a stream's UnsizedEnvelope.
fn envelope_bytes(stream: &[u8]) -> Vec<u8> {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    while let Some(r) = decoder.decode(&mut buf).unwrap() {
        if let Record::EnvelopeChunk(c) = r {
            out.extend_from_slice(&c);
        }
    }
    out
}

/// Read a document with `Incoming`, `step` bytes at a time.
fn read(doc: &[u8], step: usize) -> (Envelope, Vec<u8>) {
    let mut inc = Incoming::new(LIMITS, 64 * 1024);
    let mut head = None;
    let mut body = Vec::new();
    let mut chunks = doc.chunks(step).peekable();
    loop {
        match inc.next().unwrap() {
            Some(Event::Head(h)) => head = Some(h),
            Some(Event::Data(d)) => body.extend_from_slice(&d),
            Some(Event::End) => break,
            None => match chunks.next() {
                Some(c) => {
                    inc.push(c);
                    if chunks.peek().is_none() {
                        inc.finish();
                    }
                }
                None => panic!("more input wanted after the end"),
            },
        }
    }
    assert!(inc.is_done());
    (head.expect("a head"), body)
}

fn xml(doc: &[u8]) -> String {
    nbfx::to_xml(doc, LIMITS, true).unwrap()
}

fn reply(name: &str) -> (ReplyHead, Vec<u8>) {
    let (_, listener) = capture(name);
    let doc = envelope_bytes(&listener);
    let (whole_head, whole_body) = read(&doc, doc.len());
    let (head, body) = read(&doc, 1);
    assert_eq!((&whole_head, &whole_body), (&head, &body), "{name}");
    (ReplyHead::from_envelope(&head).unwrap(), body)
}

fn request(name: &str) -> (RequestHead, Vec<u8>, Vec<u8>) {
    let (relay, _) = capture(name);
    let doc = envelope_bytes(&relay);
    let (head, body) = read(&doc, 1);
    (RequestHead::from_envelope(&head).unwrap(), body, doc)
}

/// Our bytes for `head` and `body`, as the gateway writes them.
fn build(head: &RequestHead, body: &[u8]) -> Vec<u8> {
    let mut doc = open_envelope(&head.to_envelope()).unwrap();
    let mut w = BodyWriter::new(head.format);
    if head.format == BodyFormat::Xml {
        doc.extend_from_slice(&wcf::web::xml_body(std::str::from_utf8(body).unwrap()).unwrap());
    } else {
        w.data(body, &mut doc);
    }
    w.finish(&mut doc);
    doc
}

#[test]
fn the_mirror_shaped_request_is_rebuilt_byte_for_byte_as_xml() {
    let (head, body, doc) = request("sdk5-http-get-mirror-shape.txt");
    assert_eq!(head.method, "GET");
    assert_eq!(
        head.address,
        "http://contoso.servicebus.windows.net/web/hello/mirror?y=2"
    );
    assert_eq!(head.format, BodyFormat::Raw);
    assert_eq!(
        head.headers,
        [
            ("Host", "contoso.servicebus.windows.net"),
            ("User-Agent", "curl/8.0"),
            ("Accept", "*/*")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(body.is_empty());
    assert_eq!(xml(&build(&head, &body)), xml(&doc));
}

#[test]
fn requests_with_bodies_decode_and_rebuild_to_the_same_envelopes() {
    for (name, format, body) in [
        ("sdk5-http-post-json.txt", BodyFormat::Json, &b"\"hi json\""[..]),
        (
            "sdk5-http-post-xml.txt",
            BodyFormat::Xml,
            b"<string xmlns=\"http://schemas.microsoft.com/2003/10/Serialization/\">hi there</string>",
        ),
    ] {
        let (head, got, doc) = request(name);
        assert_eq!(head.format, format, "{name}");
        assert_eq!(got, body, "{name}");
        // The capture has no MessageID/ReplyTo (optional under the SDK);
        // ours adds them, so compare everything else.
        let ours = xml(&build(&head, &got));
        let theirs = xml(&doc);
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.contains("MessageID") && !l.contains("ReplyTo") && !l.contains("a:Address"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&ours), strip(&theirs), "{name}");
    }
}

#[test]
fn wrapped_soap_requests_carry_the_text_envelope_directly_under_the_body() {
    let (head, body, _) = request("sdk5-http-ws2007-wrappedsoap12.txt");
    assert_eq!(head.format, BodyFormat::WrappedSoap12);
    assert!(body.starts_with(b"<s:Envelope"));
    let (head, body, _) = request("sdk5-http-basic-wrappedsoap11.txt");
    assert_eq!(head.format, BodyFormat::WrappedSoap11);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("<Action s:mustUnderstand=\"1\" xmlns=\"http://schemas.microsoft.com/ws/2005/05/addressing/none\">urn:relaytest/IBasic/Echo</Action>"));
    // The behaviour that made that capture work, rebuilt from the actionless one.
    let (head, body, _) = request("sdk5-http-basic-actionless-fault.txt");
    let soap_action = head
        .headers
        .iter()
        .find(|(n, _)| n == "SOAPAction")
        .unwrap()
        .1
        .clone();
    let injected = inject_soap11_action(std::str::from_utf8(&body).unwrap(), &soap_action).unwrap();
    assert_eq!(injected, text.replace("hi basic5", "hi basic"));
}

#[test]
fn web_replies_give_status_reason_headers_and_body() {
    let (head, body) = reply("sdk5-http-get-web-https-auth.txt");
    assert_eq!(head.status, None, "Mono's StatusCode 0 means unset: 200");
    assert_eq!(head.action.as_deref(), Some("GETResponse"));
    assert_eq!(head.format, Some(BodyFormat::Xml));
    assert!(head
        .headers
        .contains(&("X-Test".to_owned(), "abc".to_owned())));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "<string xmlns=\"http://schemas.microsoft.com/2003/10/Serialization/\">hello world</string>"
    );
    let (head, _) = reply("sdk5-http-post-json.txt");
    assert_eq!(head.status, Some(201));
    assert_eq!(head.reason.as_deref(), Some("made it"));
    let (head, body) = reply("sdk5-http-get-404.txt");
    assert_eq!((head.status, head.format), (Some(404), None));
    assert!(body.is_empty());
    let (head, body) = reply("sdk5-http-get-without-end-record.txt");
    assert_eq!(head.status, None);
    assert!(body.ends_with(b"</string>"));
}

#[test]
fn wrapped_replies_lose_their_bom_and_faults_are_recognised() {
    let (head, body) = reply("sdk5-http-ws2007-wrappedsoap12.txt");
    assert_eq!(head.format, Some(BodyFormat::WrappedSoap12));
    assert_eq!(
        head.action.as_deref(),
        Some("urn:relaytest/IBasic/EchoResponse")
    );
    assert!(body.starts_with(b"<?xml"));
    assert_eq!(is_soap_fault(&body), Some(false));
    let (head, body) = reply("sdk5-http-basic-actionless-fault.txt");
    assert_eq!(head.format, Some(BodyFormat::WrappedSoap11));
    assert!(body.starts_with(b"<?xml"));
    assert_eq!(is_soap_fault(&body), Some(true));
    assert_eq!(is_soap_fault(&body[..40]), None);
}

#[test]
fn streamed_binary_bodies_round_trip_in_many_records() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let head = ReplyHead {
        action: Some("POSTResponse".into()),
        status: Some(207),
        reason: Some("Multi".into()),
        headers: vec![
            ("Set-Cookie".into(), "a=1".into()),
            ("Set-Cookie".into(), "b=2".into()),
        ],
        format: Some(BodyFormat::Raw),
    };
    let mut doc = open_envelope(&head.to_envelope()).unwrap();
    let mut w = BodyWriter::new(BodyFormat::Raw);
    for piece in data.chunks(70_000) {
        w.data(piece, &mut doc);
    }
    w.finish(&mut doc);
    for step in [doc.len(), 4096, 777] {
        let (env, body) = read(&doc, step);
        assert_eq!(ReplyHead::from_envelope(&env).unwrap(), head);
        assert_eq!(body, data);
    }
    // An empty Raw body is an empty s:Body.
    let mut doc = open_envelope(&head.to_envelope()).unwrap();
    BodyWriter::new(BodyFormat::Raw).finish(&mut doc);
    assert!(read(&doc, 3).1.is_empty());
}

#[test]
fn malformed_documents_are_errors_not_hangs() {
    let mut inc = Incoming::new(LIMITS, 64);
    inc.push(&[0x56, 0x02, 0x0b, 0x01, 0x73, 0x04]);
    assert!(inc.next().unwrap().is_none());
    inc.push(&[0u8; 100]);
    assert!(inc.next().is_err(), "a head past its bound is refused");
    let head = ReplyHead::default();
    let mut doc = open_envelope(&head.to_envelope()).unwrap();
    doc.push(0x9E); // Bytes8 without its length
    let mut inc = Incoming::new(LIMITS, 4096);
    inc.push(&doc);
    inc.finish();
    assert!(matches!(inc.next().unwrap(), Some(Event::Head(_))));
    assert!(inc.next().is_err(), "input ending inside a record");
    let mut doc = open_envelope(&head.to_envelope()).unwrap();
    doc.push(0x86); // TrueText is no body
    let mut inc = Incoming::new(LIMITS, 4096);
    inc.push(&doc);
    assert!(matches!(inc.next().unwrap(), Some(Event::Head(_))));
    assert!(inc.next().is_err());
}

#[test]
fn request_formats_follow_the_content_type() {
    let f = BodyFormat::for_request;
    assert_eq!(
        f(Some("application/soap+xml; charset=utf-8"), false),
        BodyFormat::WrappedSoap12
    );
    assert_eq!(
        f(Some("text/xml; charset=utf-8"), true),
        BodyFormat::WrappedSoap11
    );
    assert_eq!(f(Some("text/xml"), false), BodyFormat::Xml);
    assert_eq!(f(Some("application/atom+xml"), false), BodyFormat::Xml);
    assert_eq!(f(Some("application/json"), false), BodyFormat::Json);
    assert_eq!(f(Some("image/png"), false), BodyFormat::Raw);
    assert_eq!(f(None, false), BodyFormat::Raw);
    assert_eq!(wcf::web::title_case("content-type"), "Content-Type");
    assert_eq!(wcf::web::title_case("soapaction"), "SOAPAction");
    assert!(wcf::web::is_xml_name("X-Custom_1.a"));
    assert!(
        !wcf::web::is_xml_name("1abc")
            && !wcf::web::is_xml_name("a!b")
            && !wcf::web::is_xml_name("")
    );
}
