//! Replay of the real SDK listener's AMQP conversation
//! (`fixtures/wcf/amqp/sdk5-listener-amqp-plaintext-*.hex.txt`): every frame
//! both ways decodes, the attach pair yields the properties §11.2 lists, the
//! first flow grants credit on `:in`, the relay's notice unwraps to a
//! RelayedConnect notice, and both directions decode the same split at
//! every byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use support::amqp_capture;

use wcf::amqp::frame::{self, Body, Sasl, AMQP_HEADER, SASL_HEADER};
use wcf::amqp::listener::{flow_token, Half, ListenerAttach, ListenerType};
use wcf::amqp::types::performatives::Performative;
use wcf::relay::{Notice, OnewaySend};
use wcf::soap::Envelope;
use wcf::Limits;

/// Split a captured direction into its frames, skipping the two headers.
fn frames(bytes: &[u8]) -> Vec<frame::Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.starts_with(&SASL_HEADER) || rest.starts_with(&AMQP_HEADER) {
            at += 8;
            continue;
        }
        let (f, n) = frame::decode(rest, 65536)
            .unwrap_or_else(|e| panic!("frame at {at}: {e}"))
            .unwrap_or_else(|| panic!("truncated frame at {at}"));
        out.push(f);
        at += n;
    }
    out
}

#[test]
fn the_sdk_listener_frames_decode_with_the_properties_of_11_2() {
    let frames = frames(&amqp_capture("sdk5-listener-amqp-plaintext-L2R.hex.txt"));
    assert!(matches!(&frames[0].body, Body::Sasl(Sasl::Init(i)) if i.mechanism.0 == "EXTERNAL"));
    let Body::Amqp(open, _) = &frames[1].body else {
        panic!()
    };
    let Performative::Open(open) = &**open else {
        panic!()
    };
    assert!(open.container_id.starts_with("RelayConnection_"));
    assert_eq!(
        open.hostname.as_deref(),
        Some("contoso-relay.servicebus.windows.net")
    );
    let attaches: Vec<ListenerAttach> = frames
        .iter()
        .filter_map(|f| match &f.body {
            Body::Amqp(p, _) => match &**p {
                Performative::Attach(a) => Some(ListenerAttach::parse(a).unwrap()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(attaches.len(), 2);
    assert_eq!(attaches[0].half, Half::Out);
    assert!(attaches[0].name.ends_with(":out"));
    assert_eq!(attaches[1].half, Half::In);
    for a in &attaches {
        assert_eq!(a.address, "sb://contoso.servicebus.windows.net/echo/");
        assert_eq!(a.listener_type, Some(ListenerType::RelayedConnection));
        assert!(a.dynamic && a.transport_security && a.client_auth);
        assert!(a
            .token
            .as_deref()
            .unwrap()
            .starts_with("SharedAccessSignature "));
        assert_eq!(a.client_agent.as_deref(), Some("ServiceBus/3.0.51272.9;"));
    }
    let flows: Vec<_> = frames
        .iter()
        .filter_map(|f| match &f.body {
            Body::Amqp(p, _) => match &**p {
                Performative::Flow(fl) => Some(fl.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(flows[0].link_credit, Some(1000));
    assert_eq!(
        flows[0].handle.clone().map(|h| h.0),
        Some(1),
        "credit goes on :in"
    );
    assert!(
        flows.iter().all(|f| flow_token(f).is_none()),
        "no renewal yet"
    );
    assert!(frames.iter().any(|f| matches!(&f.body, Body::Amqp(p, _)
        if matches!(&**p, Performative::Disposition(d) if d.settled))));
}

#[test]
fn the_relay_notice_unwraps_to_a_relayed_connect() {
    let frames = frames(&amqp_capture("sdk5-listener-amqp-plaintext-R2L.hex.txt"));
    let payload = frames
        .iter()
        .find_map(|f| match &f.body {
            Body::Amqp(p, payload) if matches!(&**p, Performative::Transfer(_)) => {
                Some(payload.clone())
            }
            _ => None,
        })
        .expect("a transfer");
    let data = frame::data_section(&payload).unwrap();
    let wrapper =
        OnewaySend::from_envelope(&Envelope::decode(data, Limits::DEFAULT).unwrap()).unwrap();
    assert_eq!(wrapper.via, "sb://contoso.servicebus.windows.net/echo/");
    let notice =
        Notice::from_envelope(&Envelope::decode(&wrapper.inner, Limits::DEFAULT).unwrap()).unwrap();
    assert_eq!(notice.ip_port, 9352);
    assert!(!notice.id.is_empty());
}

/// Take the whole frames (and protocol headers) at the front of `buf`,
/// as the gateway's reader does: `Ok(None)` from the decoder means wait.
fn take_frames(buf: &mut Vec<u8>, out: &mut Vec<String>) {
    loop {
        if buf.len() >= 8 && (buf.starts_with(&SASL_HEADER) || buf.starts_with(&AMQP_HEADER)) {
            buf.drain(..8);
            continue;
        }
        if buf.len() < 8 && (SASL_HEADER.starts_with(buf) || AMQP_HEADER.starts_with(buf)) {
            return;
        }
        match frame::decode(buf, 65536).unwrap() {
            Some((f, n)) => {
                out.push(format!("{f:?}"));
                buf.drain(..n);
            }
            None => return,
        }
    }
}

#[test]
fn the_capture_decodes_the_same_at_every_split_point() {
    for name in [
        "sdk5-listener-amqp-plaintext-L2R.hex.txt",
        "sdk5-listener-amqp-plaintext-R2L.hex.txt",
    ] {
        let bytes = amqp_capture(name);
        let whole: Vec<String> = frames(&bytes).iter().map(|f| format!("{f:?}")).collect();
        for split in 0..=bytes.len() {
            let (mut buf, mut got) = (bytes[..split].to_vec(), Vec::new());
            take_frames(&mut buf, &mut got);
            buf.extend_from_slice(&bytes[split..]);
            take_frames(&mut buf, &mut got);
            assert!(buf.is_empty(), "{name}: bytes left over at split {split}");
            assert_eq!(got, whole, "{name}: split at {split}");
        }
    }
}
