//! One-way relay benchmark (issue "One-way and event relays", item 6), in one
//! run on loopback: 1 KiB one-way messages per second from one sender
//! (an SDK-shaped net.tcp session: Connect, then messages, each answered by
//! the gateway; up to WINDOW answers outstanding) through the gateway to one
//! Unicast listener and to ten Multicast listeners (`relay-gateway forward
//! --listen --oneway|--event` in front of a net.tcp sink), against the same
//! sender writing the same messages to the net.tcp sink directly. Every
//! sink decodes every message. Target: to one listener, at least half the
//! direct rate.
//!
//! Run: `cargo bench --bench wcf_oneway`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)] // bench code

#[path = "../support/mod.rs"]
mod support;

#[path = "common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{bench_gateway, forward_listener};
use support::gateway::{token, Gateway, ROOT};
use support::Proc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use wcf::framing::{Decoder, Mode, Record, ENCODING_MSBINSESSION1};
use wcf::nbfx::SessionDictionary;
use wcf::relay::Connect;
use wcf::soap::{must_understand, Element, Envelope, NS_WSA10};
use wcf::Limits;

const WINDOW: usize = 256;

/// Messages per run (`RELAY_BENCH_MESSAGES`, default 20,000).
fn messages() -> usize {
    std::env::var("RELAY_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
const NS: &str = "urn:relay-gateway:test";

struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    fn new(rd: OwnedReadHalf) -> Self {
        Reader {
            rd,
            buf: BytesMut::with_capacity(1 << 16),
            decoder: Decoder::new(Limits::DEFAULT.with_max_message(1 << 22)),
        }
    }
    async fn record(&mut self) -> Option<Record> {
        loop {
            if let Some(r) = self.decoder.decode(&mut self.buf).unwrap() {
                return Some(r);
            }
            if self.rd.read_buf(&mut self.buf).await.unwrap() == 0 {
                return None;
            }
        }
    }
}

/// A net.tcp sink: acknowledges the preamble, decodes every message, counts.
async fn sink(count: Arc<AtomicUsize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut r = Reader::new(rd);
                let mut dict = SessionDictionary::new(2048);
                while let Some(rec) = r.record().await {
                    match rec {
                        Record::PreambleEnd => wr.write_all(&[0x0b]).await.unwrap(),
                        Record::SizedEnvelope(p) => {
                            Envelope::decode_session(&p, &mut dict, Limits::DEFAULT).unwrap();
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Record::End => return,
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

/// A sender session: preamble, then (through the gateway) Connect.
struct Sender {
    r: Reader,
    wr: OwnedWriteHalf,
    dict: SessionDictionary,
    replies: SessionDictionary,
    n: u64,
}

impl Sender {
    async fn open(addr: SocketAddr, via: &str) -> Sender {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (rd, mut wr) = s.into_split();
        let mut out = Vec::new();
        for r in Record::preamble(Mode::Duplex, via, ENCODING_MSBINSESSION1) {
            r.encode(&mut out);
        }
        Record::PreambleEnd.encode(&mut out);
        wr.write_all(&out).await.unwrap();
        let mut r = Reader::new(rd);
        assert_eq!(r.record().await, Some(Record::PreambleAck));
        Sender {
            r,
            wr,
            dict: SessionDictionary::new(2048),
            replies: SessionDictionary::new(2048),
            n: 0,
        }
    }

    fn frame(&mut self, env: &Envelope) -> Vec<u8> {
        Record::SizedEnvelope(Bytes::from(env.to_session(&mut self.dict))).to_bytes()
    }

    async fn connect(&mut self, path: &str) {
        let env = Connect {
            message_id: "urn:uuid:connect".into(),
            token: Some(token(path, ROOT, 3600)),
            uri: format!("sb://localhost/{path}/"),
        }
        .to_envelope(&format!("sb://localhost/{path}/"));
        let f = self.frame(&env);
        self.wr.write_all(&f).await.unwrap();
        self.reply().await;
    }

    fn message(&mut self, to: &str) -> Vec<u8> {
        self.n += 1;
        let env = Envelope::with_action(&format!("{NS}/ICalc/Note"))
            .header(
                Element::new("a", "MessageID", NS_WSA10)
                    .text(&format!("urn:uuid:00000000-0000-4000-8000-{:012x}", self.n)),
            )
            .header(must_understand(Element::new("a", "To", NS_WSA10).text(to)))
            .body_child(
                Element::new("", "Note", NS)
                    .with_xmlns("", NS)
                    .child(Element::new("", "text", NS).text(&"x".repeat(1024))),
            );
        self.frame(&env)
    }

    /// Read one reply; panics on a fault (no message may be refused).
    async fn reply(&mut self) {
        match self.r.record().await {
            Some(Record::SizedEnvelope(p)) => {
                let env = Envelope::decode_session(&p, &mut self.replies, Limits::DEFAULT).unwrap();
                assert!(env.fault().is_none(), "refused: {:?}", env.fault());
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// Send messages() through the gateway (each answered, WINDOW outstanding)
/// and wait until `count` reaches `expect` (or stops growing for a second:
/// Multicast listeners with full queues miss messages); messages per second
/// (over the time to the last delivery) and deliveries.
async fn through_gateway(
    gw: SocketAddr,
    path: &str,
    count: &AtomicUsize,
    expect: usize,
) -> (f64, usize) {
    let mut s = Sender::open(gw, &format!("net.tcp://localhost:{}/{path}/", gw.port())).await;
    s.connect(path).await;
    let base = count.load(Ordering::Relaxed);
    let start = Instant::now();
    let to = format!("sb://localhost/{path}/");
    let mut outstanding = 0;
    for _ in 0..messages() {
        if outstanding == WINDOW {
            s.reply().await;
            outstanding -= 1;
        }
        let m = s.message(&to);
        s.wr.write_all(&m).await.unwrap();
        outstanding += 1;
    }
    for _ in 0..outstanding {
        s.reply().await;
    }
    let (mut seen, mut last_change) = (0, Instant::now());
    let mut done_at = start.elapsed();
    while seen < expect && last_change.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = count.load(Ordering::Relaxed) - base;
        if now != seen {
            (seen, last_change, done_at) = (now, Instant::now(), start.elapsed());
        }
    }
    (messages() as f64 / done_at.as_secs_f64(), seen)
}

/// The same messages written straight to the sink.
async fn direct(sink: SocketAddr, count: &AtomicUsize) -> f64 {
    let mut s = Sender::open(sink, &format!("net.tcp://{sink}/calc")).await;
    let base = count.load(Ordering::Relaxed);
    let start = Instant::now();
    let to = format!("net.tcp://{sink}/calc");
    for _ in 0..messages() {
        let m = s.message(&to);
        s.wr.write_all(&m).await.unwrap();
    }
    while count.load(Ordering::Relaxed) - base < messages() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    messages() as f64 / start.elapsed().as_secs_f64()
}

fn listener(gw: &Gateway, path: &str, to: SocketAddr, role: &str) -> Proc {
    let via = format!("net.tcp://{to}/calc");
    forward_listener(gw, path, to, &["--via", &via, role, "--plain"])
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let gw = bench_gateway("listener_queue = 1024\n");
    let nettcp = gw.nettcp.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let sink_addr = sink(count.clone()).await;
    let _unicast = listener(&gw, "one", sink_addr, "--oneway");
    let _multicast: Vec<Proc> = (0..10)
        .map(|_| listener(&gw, "ten", sink_addr, "--event"))
        .collect();
    println!(
        "One-way relay benchmark ({} cores, loopback): {} messages of 1 KiB per run, median of 3 alternated runs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        messages()
    );
    let (mut d, mut one, mut ten) = (Vec::new(), Vec::new(), Vec::new());
    let mut ten_delivered = Vec::new();
    for _ in 0..3 {
        d.push(direct(sink_addr, &count).await);
        let (rate, got) = through_gateway(nettcp, "one", &count, messages()).await;
        assert_eq!(got, messages(), "every Unicast message is delivered");
        one.push(rate);
        let (rate, got) = through_gateway(nettcp, "ten", &count, 10 * messages()).await;
        ten.push(rate);
        ten_delivered.push(got);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (dm, om, tm) = (med(d.clone()), med(one.clone()), med(ten.clone()));
    println!("   direct to a net.tcp service        {dm:9.0} msg/s   (runs {d:.0?})");
    println!("   gateway, one Unicast listener      {om:9.0} msg/s   {:.2}x direct (target >= 0.5)   (runs {one:.0?})", om / dm);
    println!("   gateway, ten Multicast listeners   {tm:9.0} msg/s   {:.2}x direct; deliveries per run {ten_delivered:?} of {} (a full listener queue misses messages)   (runs {ten:.0?})", tm / dm, 10 * messages());
    drop((_unicast, _multicast));
    gw.stop(Duration::from_secs(15));
}
