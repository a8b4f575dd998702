//! The properties the fuzz targets check, shared with the regression test
//! that replays every crash kept in `fixtures/wcf/fuzz/`
//! (`wcf/tests/fuzz_regressions.rs`). Each function panics when a property
//! fails; an input the codecs reject is fine as long as nothing panics.

use bytes::BytesMut;
use wcf::framing::preamble::{PreambleConfig, ServerPreamble};
use wcf::framing::{Decoder, Record};
use wcf::nbfx::{self, SessionDictionary};
use wcf::soap::Element;
use wcf::Limits;

fn decode_framing(data: &[u8], split: usize) -> (Vec<Record>, bool) {
    let mut d = Decoder::new(Limits::DEFAULT.with_max_message(4096));
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in [&data[..split], &data[split..]] {
        buf.extend_from_slice(part);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// Framing: the same records whether the input comes whole or in two
/// pieces; the preamble machine takes any record sequence; re-encoded
/// records decode to the same records (non-minimal MB31 lengths, which .NET
/// accepts, come back minimal, so bytes may differ).
pub fn framing(data: &[u8]) {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (whole, whole_err) = decode_framing(data, data.len());
    let (parts, parts_err) = decode_framing(data, split);
    assert_eq!(whole, parts);
    assert_eq!(whole_err, parts_err);
    let mut machine = ServerPreamble::new(PreambleConfig::default());
    for r in &whole {
        if machine.feed(r, 0).is_err() {
            break;
        }
    }
    let mut again = Vec::new();
    for r in &whole {
        r.encode(&mut again);
    }
    let (back, err) = decode_framing(&again, again.len());
    assert!(!err);
    assert_eq!(back, whole);
}

/// Binary XML: reading never panics (plain, session, XML rendering, element
/// tree); a document that reads cleanly re-encodes to bytes that read back to
/// the same bytes again (a fixed point).
pub fn nbfx_reader(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(again) = nbfx::reencode(data, None, limits) {
        let twice = nbfx::reencode(&again, None, limits).expect("re-encoded document must read");
        assert_eq!(twice, again);
    }
    let _ = nbfx::to_xml(data, limits, true);
    let _ = Element::decode(data, None, limits);
    let mut session = SessionDictionary::new(limits.max_session);
    let _ = nbfx::session_to_xml(data, &mut session, limits, false);
}

/// XML to binary XML: never panics, and whatever encodes reads back cleanly,
/// with and without a session dictionary.
pub fn xml_to_nbfx(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::DEFAULT.with_max_message(usize::MAX);
    if let Ok(bin) = nbfx::from_xml(text) {
        nbfx::to_xml(&bin, limits, false).expect("our own encoding must decode");
    }
    let mut session = SessionDictionary::new(2048);
    if let Ok(bin) = nbfx::session_from_xml(text, &mut session) {
        let mut read = SessionDictionary::new(2048);
        nbfx::session_to_xml(&bin, &mut read, limits, false)
            .expect("our own session encoding must decode");
    }
}

/// What `Incoming` made of a document fed in `pieces`: the head, the body
/// bytes, and whether it failed.
fn read_web(data: &[u8], pieces: &[usize]) -> (Option<wcf::soap::Envelope>, Vec<u8>, bool) {
    use wcf::web::{Event, Incoming};
    let mut inc = Incoming::new(Limits::DEFAULT.with_max_message(1 << 16), 4096);
    let (mut head, mut body) = (None, Vec::new());
    let mut at = 0;
    for (i, &len) in pieces.iter().enumerate() {
        let end = (at + len).min(data.len());
        inc.push(&data[at..end]);
        at = end;
        if i + 1 == pieces.len() {
            inc.finish();
        }
        loop {
            match inc.next() {
                Ok(Some(Event::Head(h))) => head = Some(h),
                Ok(Some(Event::Data(d))) => body.extend_from_slice(&d),
                Ok(Some(Event::End)) => return (head, body, false),
                Ok(None) => break,
                Err(_) => return (head, body, true),
            }
        }
    }
    (head, body, !inc.is_done())
}

/// Relayed web envelopes: the streaming reader never panics and reads the
/// same head and body whether the document comes whole, in two pieces or
/// (for short inputs) a byte at a time.
pub fn web_incoming(data: &[u8]) {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let whole = read_web(data, &[data.len()]);
    let two = read_web(data, &[split, data.len() - split]);
    assert_eq!(whole, two);
    if data.len() <= 2048 {
        let bytes = read_web(data, &vec![1; data.len().max(1)]);
        assert_eq!(whole, bytes);
    }
}

/// Session to msbin1 in one pass: never panics, and what it writes reads
/// as the same XML the session document renders to.
pub fn session_transcode(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let mut a = SessionDictionary::new(limits.max_session);
    let Ok(t) = nbfx::transcode::session_to_msbin1(data, &mut a, limits) else {
        return;
    };
    let mut b = SessionDictionary::new(limits.max_session);
    let expected = nbfx::session_to_xml(data, &mut b, limits, false).expect("it read once");
    assert_eq!(
        nbfx::to_xml(&t.doc, limits, false).expect("msbin1 reads"),
        expected
    );
}

/// AMQP frames as a listener's connection drives them, from the protocol
/// headers on (512-byte frames until `open`, then 64 KiB): decoding never
/// panics or recurses without bound: the relay's and the listener's state
/// machines, fed the same bytes, give the same events and the same answers
/// whether the input comes whole or in two pieces.
pub fn amqp(data: &[u8]) {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let whole = read_amqp(data, &[data.len()]);
    let two = read_amqp(data, &[split, data.len() - split]);
    assert_eq!(whole, two);
}

fn read_amqp(data: &[u8], pieces: &[usize]) -> Vec<String> {
    use std::time::{Duration, Instant};
    use wcf::amqp::client::{Client, ClientConfig};
    use wcf::amqp::listener::{Half, ListenerAttach};
    use wcf::amqp::server::{Event, Server, ServerConfig};
    let t = Instant::now();
    let config = ServerConfig {
        container_id: "relay-gateway".into(),
        max_frame: 65_536,
        channel_max: 255,
        idle_time_out: Duration::from_secs(60),
        handshake: Duration::from_secs(10),
        max_links: 16,
    };
    let attach = |half| ListenerAttach::half_of("l", half, "sb://ns/p/").to_attach();
    let mut server = Server::new(config, t);
    let mut client = Client::new(
        ClientConfig {
            container_id: "c".into(),
            hostname: "h".into(),
            attaches: [Half::Out, Half::In].map(attach),
            credit: 10,
        },
        t,
    );
    let (mut seen, mut heard, mut at) = (Vec::new(), Vec::new(), 0);
    for &n in pieces {
        let piece = &data[at..at + n];
        at += n;
        server.feed(piece, t);
        client.feed(piece, t);
        while let Some(e) = server.poll_event(t) {
            if let Event::Attach { channel, attach } = &e {
                server.accept_link(*channel, attach, None);
            }
            seen.push(format!("{e:?}"));
        }
        while let Some(e) = client.poll_event(t) {
            heard.push(format!("{e:?}"));
        }
    }
    let mut out = seen;
    out.extend(heard);
    out.extend(std::iter::from_fn(|| server.poll_transmit()).map(|b| format!("{b:?}")));
    out.extend(std::iter::from_fn(|| client.poll_transmit()).map(|b| format!("{b:?}")));
    out
}

/// The relayed port (9352): the connect preamble, then length-prefixed
/// messages, never panic and read the same whole or split.
pub fn relayed(data: &[u8]) {
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    assert_eq!(read_relayed(data, data.len()), read_relayed(data, split));
}

fn read_relayed(data: &[u8], split: usize) -> Vec<String> {
    use wcf::relay::{read_prefixed, ConnectPreamble};
    let mut out = Vec::new();
    // The preamble, as the server reads it: from a prefix that grows.
    let mut used = 0;
    for end in [split, data.len()] {
        match ConnectPreamble::decode(&data[..end], Limits::DEFAULT) {
            Ok(Some((p, n))) => {
                out.push(format!("{p:?}"));
                used = n;
                break;
            }
            Ok(None) => {}
            Err(e) => {
                out.push(format!("error {e}"));
                return out;
            }
        }
    }
    if used == 0 {
        return out;
    }
    let mut rest = &data[used..];
    while let Ok(Some((msg, n))) = read_prefixed(rest, 1 << 16) {
        out.push(format!("{} bytes", msg.len()));
        let _ = wcf::soap::Envelope::decode(msg, Limits::DEFAULT);
        rest = &rest[n..];
    }
    out
}
