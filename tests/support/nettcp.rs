//! Test support: a net.tcp client and a minimal net.tcp echo service built on
//! the `wcf` crate with blocking sockets, for live tests against Mono's WCF.
//! The service drives `wcf::framing::preamble::ServerPreamble`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use wcf::framing::preamble::{PreambleConfig, ServerPreamble, Step};
use wcf::framing::{Decoder, FaultCode, Mode, Record, ENCODING_MSBIN1, ENCODING_MSBINSESSION1};
use wcf::nbfx::SessionDictionary;
use wcf::soap::{must_understand, Element, Envelope, Node, NS_WSA10, WSA_ANONYMOUS};
use wcf::Limits;

/// The contract namespace of `tests/peers/MonoPeer.cs`.
pub const NS: &str = "urn:relay-gateway:test";

/// A fresh `urn:uuid:` message id.
pub fn message_id() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "urn:uuid:6f1d0000-0000-4000-8000-{:012x}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A DataContract-style operation element: `<op xmlns=NS><name>value</name>…</op>`.
pub fn operation(op: &str, params: &[(&str, &str)]) -> Element {
    let mut e = Element::new("", op, NS).with_xmlns("", NS);
    for (name, value) in params {
        e = e.child(Element::new("", name, NS).text(value));
    }
    e
}

/// A request envelope as WCF builds it for a two-way operation.
pub fn request(action: &str, to: &str, body: Element) -> Envelope {
    Envelope::with_action(action)
        .header(Element::new("a", "MessageID", NS_WSA10).text(&message_id()))
        .header(
            Element::new("a", "ReplyTo", NS_WSA10)
                .child(Element::new("a", "Address", NS_WSA10).text(WSA_ANONYMOUS)),
        )
        .header(must_understand(Element::new("a", "To", NS_WSA10).text(to)))
        .body_child(body)
}

/// Reads framing records off a blocking stream.
pub struct RecordReader {
    decoder: Decoder,
    buf: BytesMut,
}

impl RecordReader {
    /// A reader with generous limits (for streamed replies).
    pub fn new() -> Self {
        RecordReader {
            decoder: Decoder::new(Limits::DEFAULT.with_max_message(1 << 30)),
            buf: BytesMut::new(),
        }
    }

    /// The next record; `None` at end of stream.
    pub fn next(&mut self, stream: &mut dyn Read) -> Option<(usize, Record)> {
        loop {
            let at = self.decoder.offset();
            if let Some(r) = self.decoder.decode(&mut self.buf).expect("framing") {
                return Some((at, r));
            }
            let mut chunk = [0u8; 16384];
            let n = stream.read(&mut chunk).expect("read");
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A duplex msbinsession1 client session.
pub struct DuplexClient {
    stream: Box<dyn super::relayed::Stream>,
    reader: RecordReader,
    write_dict: SessionDictionary,
    read_dict: SessionDictionary,
    /// The Via, also used as `a:To`.
    pub via: String,
}

impl DuplexClient {
    /// Connect and complete the preamble.
    pub fn connect(addr: &str, via: &str) -> Self {
        Self::connect_with(addr, via, None)
    }

    /// Connect with the NMF `application/ssl-tls` upgrade (TLS for `host`,
    /// trusting `config`) and complete the preamble inside TLS.
    pub fn connect_tls(
        addr: &str,
        via: &str,
        config: &std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
        host: &str,
    ) -> Self {
        Self::connect_with(addr, via, Some((config, host)))
    }

    fn connect_with(
        addr: &str,
        via: &str,
        tls: Option<(&std::sync::Arc<tokio_rustls::rustls::ClientConfig>, &str)>,
    ) -> Self {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        for r in Record::preamble(Mode::Duplex, via, ENCODING_MSBINSESSION1) {
            r.encode(&mut out);
        }
        let mut stream: Box<dyn super::relayed::Stream> = Box::new(tcp);
        let mut reader = RecordReader::new();
        if let Some((config, host)) = tls {
            Record::UpgradeRequest(wcf::framing::UPGRADE_TLS.into()).encode(&mut out);
            stream.write_all(&out).unwrap();
            out.clear();
            // Read byte by byte up to UpgradeResponse, so no TLS byte is taken.
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).unwrap();
            assert_eq!(b[0], 0x0a, "expected UpgradeResponse");
            let name =
                tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
            let conn = tokio_rustls::rustls::ClientConnection::new(config.clone(), name).unwrap();
            stream = Box::new(tokio_rustls::rustls::StreamOwned::new(conn, stream));
        }
        Record::PreambleEnd.encode(&mut out);
        stream.write_all(&out).unwrap();
        stream.flush().unwrap();
        match reader.next(&mut stream) {
            Some((_, Record::PreambleAck)) => {}
            other => panic!("expected PreambleAck, got {other:?}"),
        }
        DuplexClient {
            stream,
            reader,
            write_dict: SessionDictionary::new(2048),
            read_dict: SessionDictionary::new(2048),
            via: via.into(),
        }
    }

    /// Send one envelope.
    pub fn send(&mut self, env: &Envelope) {
        let payload = env.to_session(&mut self.write_dict);
        self.stream
            .write_all(&Record::SizedEnvelope(Bytes::from(payload)).to_bytes())
            .unwrap();
        self.stream.flush().unwrap();
    }

    /// The payload size `env` would have as the next message.
    pub fn size_of(&self, env: &Envelope) -> usize {
        env.to_session(&mut self.write_dict.clone()).len()
    }

    /// Receive one envelope.
    pub fn receive(&mut self) -> Envelope {
        match self.reader.next(&mut self.stream) {
            Some((_, Record::SizedEnvelope(p))) => {
                Envelope::decode_session(&p, &mut self.read_dict, Limits::DEFAULT)
                    .expect("reply envelope")
            }
            other => panic!("expected a SizedEnvelope, got {other:?}"),
        }
    }

    /// A two-way call: returns the reply, checking its correlation.
    pub fn call(&mut self, op: &str, params: &[(&str, &str)]) -> Envelope {
        let req = request(
            &format!("{NS}/ICalc/{op}"),
            &self.via.clone(),
            operation(op, params),
        );
        self.send(&req);
        let reply = self.receive();
        assert_eq!(reply.relates_to(), req.message_id(), "reply correlation");
        reply
    }

    /// A one-way call (no MessageID, no reply).
    pub fn notify(&mut self, op: &str, params: &[(&str, &str)]) {
        let env = Envelope::with_action(&format!("{NS}/ICalc/{op}"))
            .header(must_understand(
                Element::new("a", "To", NS_WSA10).text(&self.via.clone()),
            ))
            .body_child(operation(op, params));
        self.send(&env);
    }

    /// Send End and expect the peer's End.
    pub fn close(mut self) {
        self.stream.write_all(&Record::End.to_bytes()).unwrap();
        match self.reader.next(&mut self.stream) {
            Some((_, Record::End)) | None => {}
            other => panic!("expected End, got {other:?}"),
        }
    }
}

/// The text of `<{op}Result>` in a reply.
pub fn result(reply: &Envelope, op: &str) -> String {
    reply
        .body_element()
        .and_then(|b| b.find_local(&format!("{op}Result")))
        .map(Element::text_content)
        .unwrap_or_else(|| panic!("no {op}Result in {reply:?}"))
}

/// One Streamed call (singleton-unsized, msbin1): the reply envelope.
pub fn streamed_call(addr: &str, via: &str, op: &str, params: &[(&str, &str)]) -> Envelope {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = Vec::new();
    for r in Record::preamble(Mode::SingletonUnsized, via, ENCODING_MSBIN1) {
        r.encode(&mut out);
    }
    Record::PreambleEnd.encode(&mut out);
    stream.write_all(&out).unwrap();
    let mut reader = RecordReader::new();
    assert!(matches!(
        reader.next(&mut stream),
        Some((_, Record::PreambleAck))
    ));
    let body = request(&format!("{NS}/IBlob/{op}"), via, operation(op, params)).to_msbin1();
    let mut out = Record::UnsizedEnvelopeStart.to_bytes();
    for chunk in body.chunks(100) {
        Record::EnvelopeChunk(Bytes::copy_from_slice(chunk)).encode(&mut out);
    }
    Record::UnsizedEnvelopeEnd.encode(&mut out);
    Record::End.encode(&mut out);
    stream.write_all(&out).unwrap();
    let mut reply = Vec::new();
    loop {
        match reader.next(&mut stream) {
            Some((_, Record::UnsizedEnvelopeStart)) => {}
            Some((_, Record::EnvelopeChunk(c))) => reply.extend_from_slice(&c),
            Some((_, Record::UnsizedEnvelopeEnd)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    Envelope::decode(&reply, Limits::DEFAULT.with_max_message(1 << 30)).expect("streamed reply")
}

/// Serve the ICalc contract on `listener` (one thread per connection) until
/// the process ends: the server side of the preamble, then replies built with
/// the `wcf` crate. Vias other than `/calc` get the EndpointNotFound fault.
pub fn serve_calc(listener: TcpListener) {
    std::thread::spawn(move || {
        let last_note = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            let last_note = last_note.clone();
            std::thread::spawn(move || serve_connection(stream, &last_note));
        }
    });
}

fn serve_connection(mut stream: TcpStream, last_note: &std::sync::Mutex<String>) {
    let mut reader = RecordReader::new();
    let mut preamble = ServerPreamble::new(PreambleConfig::default());
    loop {
        let Some((at, rec)) = reader.next(&mut stream) else {
            return;
        };
        match preamble.feed(&rec, at) {
            Ok(Step::Continue) => {}
            Ok(Step::Upgrade(_)) => unreachable!("no upgrades configured"),
            Ok(Step::Complete(p)) => {
                if !p.via.ends_with("/calc") {
                    let _ = stream.write_all(&FaultCode::EndpointNotFound.record().to_bytes());
                    return;
                }
                stream.write_all(&Record::PreambleAck.to_bytes()).unwrap();
                break;
            }
            Err(wcf::Error::Framing { fault, .. }) => {
                let _ = stream.write_all(&fault.record().to_bytes());
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut read_dict = SessionDictionary::new(2048);
    let mut write_dict = SessionDictionary::new(2048);
    loop {
        match reader.next(&mut stream) {
            Some((_, Record::SizedEnvelope(p))) => {
                let req =
                    Envelope::decode_session(&p, &mut read_dict, Limits::DEFAULT).expect("request");
                let body = req.body_element().expect("body").clone();
                let arg = |name: &str| {
                    body.find_local(name)
                        .map(Element::text_content)
                        .unwrap_or_default()
                };
                let result = match body.local.as_str() {
                    "Echo" => Node::Text(arg("text")),
                    "Add" => Node::Int(
                        arg("a").parse::<i64>().unwrap_or(0) + arg("b").parse::<i64>().unwrap_or(0),
                    ),
                    "Note" => {
                        *last_note.lock().unwrap() = arg("text");
                        continue;
                    }
                    "LastNote" => Node::Text(last_note.lock().unwrap().clone()),
                    other => panic!("unknown operation {other}"),
                };
                let op = body.local.clone();
                let reply =
                    Envelope::with_action(&format!("{}Response", req.action().unwrap_or_default()))
                        .header(
                            Element::new("a", "RelatesTo", NS_WSA10)
                                .text(&req.message_id().unwrap_or_default()),
                        )
                        .body_child(
                            Element::new("", &format!("{op}Response"), NS)
                                .with_xmlns("", NS)
                                .child(Element::new("", &format!("{op}Result"), NS).with(result)),
                        );
                let payload = reply.to_session(&mut write_dict);
                stream
                    .write_all(&Record::SizedEnvelope(Bytes::from(payload)).to_bytes())
                    .unwrap();
            }
            Some((_, Record::End)) => {
                let _ = stream.write_all(&Record::End.to_bytes());
                return;
            }
            None => return,
            Some((_, other)) => panic!("unexpected {other:?}"),
        }
    }
}
