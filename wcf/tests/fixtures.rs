//! Replay of `fixtures/wcf`: every captured net.tcp stream and spec vector is
//! decoded in every split (chunk invariance), re-encoded byte for byte where
//! the encoding is canonical, and the relay messages captured from the real
//! SDK decode to their typed values (and, for RelayedAccept, re-encode to the
//! exact 286 bytes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

use std::path::PathBuf;

use bytes::BytesMut;
use wcf::framing::{Decoder, Record, ENCODING_MSBINSESSION1};
use wcf::hexdump::{self, Direction};
use wcf::nbfx::{self, SessionDictionary};
use wcf::relay::{self, Hello, RelayedAccept};
use wcf::soap::Envelope;
use wcf::Limits;

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "fixtures", "wcf", name]
        .iter()
        .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stream(name: &str, dir: Direction) -> Vec<u8> {
    hexdump::stream(&hexdump::parse(&fixture(name)).unwrap(), dir)
}

const NMF_STREAMS: [&str; 5] = [
    "mono-nettcp-echo.hex.txt",
    "mono-nettcp-oneway.hex.txt",
    "mono-nettcp-streamed.hex.txt",
    "pynettcp-to-mono.hex.txt",
    "spec5-echo-request.hex.txt",
];

fn records_with_step(bytes: &[u8], split: impl Fn(usize) -> bool) -> Vec<Record> {
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        if split(i) || i + 1 == bytes.len() {
            while let Some(r) = d.decode(&mut buf).unwrap() {
                out.push(r);
            }
        }
    }
    assert!(buf.is_empty(), "left over bytes");
    out
}

#[test]
fn framing_is_chunk_invariant_and_reencodes_exactly() {
    for name in NMF_STREAMS {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let bytes = stream(name, dir);
            if bytes.is_empty() {
                continue;
            }
            let whole = records_with_step(&bytes, |_| false);
            // One byte at a time.
            assert_eq!(
                records_with_step(&bytes, |_| true),
                whole,
                "{name} {dir:?} byte by byte"
            );
            // Every single split point.
            for cut in 0..bytes.len() {
                assert_eq!(
                    records_with_step(&bytes, |i| i == cut),
                    whole,
                    "{name} {dir:?} cut {cut}"
                );
            }
            let mut again = Vec::new();
            for r in &whole {
                r.encode(&mut again);
            }
            assert_eq!(again, bytes, "{name} {dir:?} re-encode");
        }
    }
}

/// Every envelope of a stream, with its session table read (per direction).
fn envelopes(name: &str, dir: Direction) -> Vec<(Vec<u8>, bool)> {
    let c2s = records_with_step(&stream(name, Direction::ClientToServer), |_| false);
    let session = c2s
        .iter()
        .any(|r| *r == Record::KnownEncoding(ENCODING_MSBINSESSION1));
    let recs = records_with_step(&stream(name, dir), |_| false);
    let mut out = Vec::new();
    let mut streamed = Vec::new();
    for r in recs {
        match r {
            Record::SizedEnvelope(p) => out.push((p.to_vec(), session)),
            Record::EnvelopeChunk(c) => streamed.extend_from_slice(&c),
            Record::UnsizedEnvelopeEnd => out.push((std::mem::take(&mut streamed), session)),
            _ => {}
        }
    }
    out
}

#[test]
fn every_captured_envelope_reencodes_byte_for_byte() {
    let mut count = 0;
    for name in NMF_STREAMS {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            let mut dict = SessionDictionary::new(2048);
            for (payload, session) in envelopes(name, dir) {
                let (doc, table_len) = if session {
                    let used = dict.read_table(&payload).unwrap();
                    (&payload[used..], used)
                } else {
                    (&payload[..], 0)
                };
                let again = nbfx::reencode(doc, session.then_some(&dict), Limits::DEFAULT).unwrap();
                assert_eq!(again, doc, "{name} {dir:?}");
                assert!(table_len <= payload.len());
                count += 1;
            }
        }
    }
    for name in [
        "nbfs-example.envelope.hex.txt",
        "wstrust-rst.envelope.hex.txt",
    ] {
        let doc = stream(name, Direction::ClientToServer);
        assert_eq!(
            nbfx::reencode(&doc, None, Limits::DEFAULT).unwrap(),
            doc,
            "{name}"
        );
        count += 1;
    }
    assert!(count >= 14, "only {count} envelopes checked");
}

#[test]
fn nbfse_spec_example_tables_and_document() {
    let payload = stream("nbfse-example.session.hex.txt", Direction::ClientToServer);
    let mut dict = SessionDictionary::new(2048);
    let used = dict.read_table(&payload).unwrap();
    assert_eq!(dict.strings(), ["action", "Inventory"]);
    let xml = nbfx::xml::to_xml(
        &mut nbfx::Reader::new(&payload[used..], Some(&dict), Limits::DEFAULT, 0),
        false,
    )
    .unwrap();
    assert!(
        xml.contains("<a:Action s:mustUnderstand=\"1\">action</a:Action>"),
        "{xml}"
    );
    assert!(xml.contains("<Inventory>0</Inventory>"), "{xml}");
}

#[test]
fn spec5_request_through_the_session_writer() {
    // Our writer, given the worked example's XML, must reproduce the synthesized .NET
    // request payload of spec section 5 byte for byte.
    let bytes = stream("spec5-echo-request.hex.txt", Direction::ClientToServer);
    let recs = records_with_step(&bytes, |_| false);
    let Some(Record::SizedEnvelope(payload)) =
        recs.iter().find(|r| matches!(r, Record::SizedEnvelope(_)))
    else {
        panic!("no envelope")
    };
    let mut read = SessionDictionary::new(2048);
    let env = Envelope::decode_session(payload, &mut read, Limits::DEFAULT).unwrap();
    assert_eq!(
        env.action().as_deref(),
        Some("http://tempuri.org/IEchoService/Echo")
    );
    assert_eq!(
        env.message_id().as_deref(),
        Some("urn:uuid:d493b25d-0bbc-47a5-b9dc-cb2f140fd0c3")
    );
    assert_eq!(env.reply_to().as_deref(), Some(wcf::soap::WSA_ANONYMOUS));
    let mut write = SessionDictionary::new(2048);
    let xml = nbfx::session_to_xml(
        payload,
        &mut SessionDictionary::new(2048),
        Limits::DEFAULT,
        false,
    )
    .unwrap();
    let ours = nbfx::session_from_xml(&xml, &mut write).unwrap();
    // [MC-NBFS]'s table lists "text" last (id 9); element names and the action
    // and To texts are announced in first-use order, as here.
    assert_eq!(
        ours,
        payload.to_vec(),
        "\nours: {ours:02x?}\nspec: {:02x?}",
        &payload[..]
    );
}

#[test]
fn sdk_relayed_accept_is_rebuilt_byte_for_byte() {
    let bytes = stream(
        "sdk5-listener-9352-relayedaccept.hex.txt",
        Direction::ClientToServer,
    );
    let (msg, used) = relay::read_prefixed(&bytes, relay::MAX_PREFIXED_MESSAGE)
        .unwrap()
        .unwrap();
    assert_eq!((msg.len(), used), (286, 290));
    let env = Envelope::decode(msg, Limits::DEFAULT).unwrap();
    let Hello::Accept(accept) = Hello::from_envelope(&env).unwrap() else {
        panic!("not an accept")
    };
    assert_eq!(accept.id, "5e854c76-2121-45bd-baf3-04094dc28386");
    let rebuilt = RelayedAccept { id: accept.id }.to_envelope().to_msbin1();
    assert_eq!(rebuilt, msg);
}

#[test]
fn sdk_relayed_connect_decodes_with_its_token() {
    let bytes = stream(
        "sdk5-client-9352-relayedconnect.hex.txt",
        Direction::ClientToServer,
    );
    let (msg, _) = relay::read_prefixed(&bytes, relay::MAX_PREFIXED_MESSAGE)
        .unwrap()
        .unwrap();
    let env = Envelope::decode(msg, Limits::DEFAULT).unwrap();
    let Hello::Connect(c) = Hello::from_envelope(&env).unwrap() else {
        panic!("not a connect")
    };
    assert_eq!(c.uri, "sb://contoso.servicebus.windows.net/echo/");
    assert_eq!(
        c.tracking_id.as_deref(),
        Some("183dd199-985e-4c90-a668-d628b80d324c")
    );
    let token = c.token.clone().unwrap();
    assert!(
        token.starts_with(
            "SharedAccessSignature sr=http%3a%2f%2fcontoso.servicebus.windows.net%2fecho%2f&sig="
        ),
        "{token}"
    );
    assert!(token.ends_with("&skn=RootManageSharedAccessKey"));
    // Our own encoding of the same message decodes to the same values.
    let ours = Envelope::decode(&c.to_envelope().to_msbin1(), Limits::DEFAULT).unwrap();
    assert_eq!(Hello::from_envelope(&ours).unwrap(), Hello::Connect(c));
}

#[test]
fn sdk_preambles_decode() {
    for (name, via) in [
        (
            "sdk5-client-9352-preamble.hex.txt",
            "sb://contoso.servicebus.windows.net/echo/",
        ),
        (
            "sdk5-listener-9352-preamble.hex.txt",
            "sb://contoso.servicebus.windows.net/echo/",
        ),
    ] {
        let bytes = stream(name, Direction::ClientToServer);
        for cut in 0..bytes.len().min(60) {
            assert_eq!(
                relay::ConnectPreamble::decode(&bytes[..cut], Limits::DEFAULT).unwrap(),
                None
            );
        }
        let (p, used) = relay::ConnectPreamble::decode(&bytes, Limits::DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!(p.via, via);
        assert!(p.tls);
        let mut again = Vec::new();
        p.encode(&mut again);
        assert_eq!(again, bytes[..used]);
    }
}

#[test]
fn relay_reply_accepted_by_sdk_matches_our_reply() {
    let bytes = stream(
        "sdk5-relay-reply-accepted.hex.txt",
        Direction::ClientToServer,
    );
    let ours = relay::any_type_reply(relay::ACTION_RELAYED_CONNECT_REPLY).to_msbin1();
    assert_eq!(ours, bytes);
}

#[test]
fn relay_fault_the_sdk_mapped_reads_as_ours_does() {
    let bytes = stream(
        "sdk5-fault-endpointnotfound.envelope.hex.txt",
        Direction::ClientToServer,
    );
    assert_eq!(bytes.len(), 442);
    let theirs = Envelope::decode(&bytes, Limits::DEFAULT)
        .unwrap()
        .fault()
        .unwrap();
    let code = relay::RelayFault::from_code(&theirs.code.0, &theirs.code.1);
    assert_eq!(code, Some(relay::RelayFault::EndpointNotFound));
    let ours = relay::RelayFault::EndpointNotFound
        .envelope(&theirs.reason, None)
        .to_msbin1();
    let ours = Envelope::decode(&ours, Limits::DEFAULT)
        .unwrap()
        .fault()
        .unwrap();
    assert_eq!(
        (ours.code, ours.subcode, ours.reason),
        (theirs.code, theirs.subcode, theirs.reason)
    );
}
