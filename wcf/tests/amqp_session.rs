//! The control channel's state machines (`wcf::amqp::{server, client}`)
//! driven without sockets or clocks: the real SDK listener's captured bytes
//! into the relay's end at every split point, both ends against each other,
//! and every deadline with time moved by hand (heartbeats, the peer's
//! silence, the handshake, a token that runs out).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // tests are exempt (house habit 5, `src/main.rs`)

mod support;

use support::amqp_capture;

use std::time::{Duration, Instant};

use wcf::amqp::client::{Client, ClientConfig, ClientEvent};
use wcf::amqp::connection::LinkId;
use wcf::amqp::frame::{self, Body, Sasl, AMQP_HEADER, SASL_HEADER};
use wcf::amqp::listener::{self as props, Half, ListenerAttach, AUTH_FAILED, RELAY_NOT_FOUND};
use wcf::amqp::server::{Ending, Event, Server, ServerConfig};
use wcf::amqp::types::definitions::Error as AmqpError;
use wcf::amqp::types::performatives::{Attach, Performative};

fn config() -> ServerConfig {
    ServerConfig {
        container_id: "relay-gateway".into(),
        max_frame: 65_536,
        channel_max: 255,
        idle_time_out: Duration::from_secs(60),
        handshake: Duration::from_secs(10),
        max_links: 4,
    }
}

/// Everything a machine queued, as protocol headers and decoded frames.
fn written(out: impl FnMut() -> Option<Vec<u8>>) -> Vec<String> {
    std::iter::from_fn(out)
        .map(|bytes| {
            if bytes == SASL_HEADER || bytes == AMQP_HEADER {
                return format!("header {}", bytes[4]);
            }
            let (f, n) = frame::decode(&bytes, 1 << 20).unwrap().unwrap();
            assert_eq!(n, bytes.len(), "one frame per write");
            match f.body {
                Body::Empty => "heartbeat".into(),
                Body::Sasl(Sasl::Mechanisms(_)) => "sasl-mechanisms".into(),
                Body::Sasl(Sasl::Outcome(o)) => format!("sasl-outcome {:?}", o.code),
                Body::Sasl(_) => "sasl".into(),
                Body::Amqp(p, payload) => match *p {
                    Performative::Open(o) => format!("open idle={:?}", o.idle_time_out),
                    Performative::Attach(a) => {
                        format!("attach {} terminus={}", a.handle.0, a.source.is_some())
                    }
                    Performative::Transfer(t) => format!(
                        "transfer {} {}",
                        t.delivery_id.unwrap(),
                        String::from_utf8_lossy(frame::data_section(&payload).unwrap())
                    ),
                    Performative::Detach(d) => format!(
                        "detach {} {}",
                        d.handle.0,
                        d.error.map(|e| props::condition(&e)).unwrap_or_default()
                    ),
                    Performative::Close(c) => format!(
                        "close {}",
                        c.error.map(|e| props::condition(&e)).unwrap_or_default()
                    ),
                    other => format!("{other:?}").split('(').next().unwrap().to_owned(),
                },
            }
        })
        .collect()
}

#[test]
fn the_sdk_listeners_bytes_drive_the_relays_end_alike_at_every_split() {
    let bytes = amqp_capture("sdk5-listener-amqp-plaintext-L2R.hex.txt");
    let t = Instant::now();
    let mut first = None;
    for split in 0..=bytes.len() {
        let mut server = Server::new(config(), t);
        let mut seen = Vec::new();
        for part in [&bytes[..split], &bytes[split..]] {
            server.feed(part, t);
            while let Some(e) = server.poll_event(t) {
                match e {
                    Event::Opened { hostname, .. } => seen.push(format!("opened {hostname:?}")),
                    Event::Attach { channel, attach } => {
                        let a = ListenerAttach::parse(&attach).unwrap();
                        seen.push(format!("attach {:?} {}", a.half, a.address));
                        server.accept_link(channel, &attach, None);
                    }
                    other => seen.push(format!("{other:?}")),
                }
            }
        }
        let notices = LinkId {
            channel: 0,
            handle: 1,
        };
        assert!(server.can_send(notices), "the SDK's flow granted credit");
        assert!(!server.can_send(LinkId {
            channel: 0,
            handle: 0
        }));
        assert!(server.send_message(notices, b"notice"));
        seen.extend(written(|| server.poll_transmit()));
        match &first {
            None => first = Some(seen),
            Some(f) => assert_eq!(&seen, f, "split at {split}"),
        }
    }
    assert_eq!(
        first.unwrap(),
        [
            "opened Some(\"contoso-relay.servicebus.windows.net\")",
            "attach Out sb://contoso.servicebus.windows.net/echo/",
            "attach In sb://contoso.servicebus.windows.net/echo/",
            "header 3",
            "sasl-mechanisms",
            "sasl-outcome Ok",
            "header 0",
            "open idle=Some(60000)",
            "Begin",
            "attach 0 terminus=true",
            "attach 1 terminus=true",
            "transfer 0 notice",
        ]
    );
}

fn attaches(token: &str) -> [Attach; 2] {
    [Half::Out, Half::In].map(|half| {
        ListenerAttach {
            token: Some(token.into()),
            listener_type_name: Some("RelayedConnection".into()),
            ..ListenerAttach::half_of("RelayLink_1", half, "sb://localhost/echo/")
        }
        .to_attach()
    })
}

/// Both ends in memory, with the relay admitting every link (its token
/// running out at `expires`) and a clock moved by hand.
struct Pair {
    server: Server,
    client: Client,
    now: Instant,
    admit: Admit,
    server_events: Vec<String>,
    client_events: Vec<ClientEvent>,
    /// Everything the relay wrote, decoded.
    server_wrote: Vec<String>,
}

/// How the relay answers every attach.
#[derive(Clone)]
enum Admit {
    /// Accepted, the token running out at this time (or never).
    Until(Option<Instant>),
    /// Refused with this error.
    Refuse(AmqpError),
}

impl Pair {
    /// A pair whose links are admitted with tokens lasting `expires_after`.
    fn new(expires_after: Option<Duration>) -> Pair {
        let now = Instant::now();
        Pair::with(Admit::Until(expires_after.map(|d| now + d)), now)
    }

    fn with(admit: Admit, now: Instant) -> Pair {
        let client = Client::new(
            ClientConfig {
                container_id: "RelayConnection_1".into(),
                hostname: "localhost-relay".into(),
                attaches: attaches("SharedAccessSignature sr=first"),
                credit: 1000,
            },
            now,
        );
        let mut pair = Pair {
            server: Server::new(config(), now),
            client,
            now,
            admit,
            server_events: Vec::new(),
            client_events: Vec::new(),
            server_wrote: Vec::new(),
        };
        pair.pump();
        pair
    }

    /// Move bytes both ways until neither end has more to say.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.server.feed(&b, self.now);
                moved = true;
            }
            while let Some(e) = self.server.poll_event(self.now) {
                match e {
                    Event::Attach { channel, attach } => match self.admit.clone() {
                        Admit::Until(expires) => self.server.accept_link(channel, &attach, expires),
                        Admit::Refuse(e) => self.server.refuse_link(channel, &attach, e),
                    },
                    Event::Renewal { link, token } => {
                        self.server_events
                            .push(format!("renewal {} {token}", link.handle));
                        self.server.renew(link, None);
                    }
                    other => self.server_events.push(format!("{other:?}")),
                }
            }
            while let Some(b) = self.server.poll_transmit() {
                self.server_wrote.extend(written({
                    let mut once = Some(b.clone());
                    move || once.take()
                }));
                self.client.feed(&b, self.now);
                moved = true;
            }
            while let Some(e) = self.client.poll_event(self.now) {
                self.client_events.push(e);
            }
            if !self.client.has_frame() {
                self.client.settle();
            }
            if !moved {
                return;
            }
        }
    }

    /// Move the clock to `t` and let both ends act on their deadlines.
    fn advance_to(&mut self, t: Instant) {
        self.now = t;
        self.server.handle_timeout(t);
        self.client.handle_timeout(t);
        self.pump();
    }

    fn deliveries(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        self.client_events.retain(|e| match e {
            ClientEvent::Delivery(d) => {
                out.push(String::from_utf8_lossy(d).into_owned());
                false
            }
            _ => true,
        });
        out
    }
}

const IN: LinkId = LinkId {
    channel: 0,
    handle: 1,
};

#[test]
fn both_ends_attach_deliver_past_the_first_credit_and_renew() {
    let mut p = Pair::new(None);
    assert!(matches!(
        p.client_events.as_slice(),
        [ClientEvent::Attached]
    ));
    p.client_events.clear();
    // 1,200 notices: more than the first credit of 1,000, so the listener's
    // renewal of credit at half is what lets the last ones through.
    let mut sent = 0;
    while sent < 1200 {
        if !p
            .server
            .send_message(IN, format!("notice {sent}").as_bytes())
        {
            p.pump();
            assert!(p.server.can_send(IN), "credit renewed after {sent}");
            continue;
        }
        sent += 1;
    }
    p.pump();
    let got = p.deliveries();
    assert_eq!(got.len(), 1200);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, d)| *d == format!("notice {i}")));
    assert!(p.client_events.is_empty());
    p.client.renew("SharedAccessSignature sr=second");
    p.pump();
    assert_eq!(
        p.server_events,
        [
            "Opened { container_id: \"RelayConnection_1\", hostname: Some(\"localhost-relay\") }",
            "renewal 1 SharedAccessSignature sr=second",
            "renewal 0 SharedAccessSignature sr=second",
        ]
    );
}

#[test]
fn heartbeats_keep_a_quiet_pair_alive_and_silence_closes_it() {
    let mut p = Pair::new(None);
    let t0 = p.now;
    assert_eq!(p.server.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    assert_eq!(p.client.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    // Ten minutes of heartbeats both ways: nothing closes.
    for step in 1..=20 {
        p.server_wrote.clear();
        p.advance_to(t0 + Duration::from_secs(30 * step));
        assert_eq!(p.server_wrote, ["heartbeat"], "at {step}");
        assert!(!p.server.is_closed());
    }
    // A listener that falls silent is closed after twice the idle time-out:
    // only the relay's deadlines run from here.
    let mut p = Pair::new(None);
    let (t0, mut now) = (p.now, p.now);
    let server = &mut p.server;
    let silence = t0 + Duration::from_secs(120);
    while let Some(t) = server.poll_timeout().filter(|t| *t <= silence) {
        now = t;
        server.handle_timeout(now);
    }
    assert!(server.is_closed());
    let Some(Event::Closed(Ending::Closed(e))) = server.poll_event(now) else {
        panic!("closed for silence")
    };
    assert_eq!(props::condition(&e), props::IDLE_TIMEOUT);
    let wrote = written(|| server.poll_transmit());
    assert_eq!(wrote.last().unwrap(), "close amqp:resource-limit-exceeded");
    assert_eq!(wrote.iter().filter(|w| *w == "heartbeat").count(), 3);
}

#[test]
fn a_token_that_runs_out_detaches_its_link_and_the_listener_gives_up() {
    let mut p = Pair::new(Some(Duration::from_secs(45)));
    let t0 = p.now;
    assert_eq!(p.server.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    p.advance_to(t0 + Duration::from_secs(30));
    assert_eq!(p.server.poll_timeout(), Some(t0 + Duration::from_secs(45)));
    p.advance_to(t0 + Duration::from_secs(45));
    let detached: Vec<&String> = p
        .server_events
        .iter()
        .filter(|e| e.starts_with("Detached"))
        .collect();
    assert_eq!(detached.len(), 2, "both links: {:?}", p.server_events);
    assert!(detached.iter().all(|e| e.contains(AUTH_FAILED)));
    match p.client_events.last() {
        Some(ClientEvent::Ended(e)) => {
            assert!(e.fatal, "{e:?}");
            assert!(e.message.contains(AUTH_FAILED), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    // With no link left the handshake deadline runs again.
    assert_eq!(p.server.poll_timeout(), Some(t0 + Duration::from_secs(55)));
    p.advance_to(t0 + Duration::from_secs(55));
    assert!(p.server.is_closed());
    assert_eq!(
        p.server_wrote.last().unwrap(),
        "close com.microsoft:auth-failed"
    );
}

#[test]
fn a_refused_attach_and_a_stalled_handshake_end_as_the_sdk_expects() {
    let t = Instant::now();
    let refusal = props::error(RELAY_NOT_FOUND, "no relay");
    let mut p = Pair::with(Admit::Refuse(refusal), t);
    let ended = p.client_events.pop();
    match ended {
        Some(ClientEvent::Ended(e)) => {
            assert!(e.fatal);
            assert_eq!(
                e.message,
                "attach refused: com.microsoft:relay-not-found no relay"
            );
        }
        other => panic!("{other:?}"),
    }
    // Silence before `open`: abandoned at the handshake time-out, unanswered.
    let mut server = Server::new(config(), t);
    server.feed(&SASL_HEADER, t);
    assert!(server.poll_event(t).is_none());
    assert_eq!(server.poll_timeout(), Some(t + Duration::from_secs(10)));
    server.handle_timeout(t + Duration::from_secs(10));
    assert!(matches!(
        server.poll_event(t),
        Some(Event::Closed(Ending::Abandoned(_)))
    ));
    // A header that is not AMQP's is answered with ours and abandoned.
    let mut server = Server::new(config(), t);
    server.feed(b"GET / HTTP/1.1\r\n", t);
    assert!(matches!(
        server.poll_event(t),
        Some(Event::Closed(Ending::Abandoned(_)))
    ));
    assert_eq!(written(|| server.poll_transmit()), ["header 3"]);
}

#[test]
fn a_connection_holds_a_bounded_number_of_links() {
    let mut p = Pair::new(None);
    // Three more links on the listener's session: two fit the bound of
    // four, the last is refused without the application being asked.
    for handle in 2..5 {
        let extra = ListenerAttach {
            handle,
            ..ListenerAttach::half_of(&format!("RelayLink_{handle}"), Half::Out, "sb://h/p/")
        };
        let bytes = frame::encode(0, &Performative::Attach(extra.to_attach()), &[]).unwrap();
        p.server.feed(&bytes, p.now);
    }
    p.server_wrote.clear();
    p.pump();
    assert_eq!(
        p.server_wrote,
        [
            "attach 2 terminus=true",
            "attach 3 terminus=true",
            "attach 4 terminus=false",
            "detach 4 amqp:resource-limit-exceeded",
        ]
    );
}
