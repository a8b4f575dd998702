//! The relay's end of a listener's control channel (§2.1 to §2.4, §4): `accept` and `request` messages out (a request and its body back to
//! back), `renewToken` and `response` commands in (unknown ones ignored, a
//! message that is not a one-key JSON object closed with 1008, one larger
//! than the limit with 1009), response bodies passed on frame by frame,
//! pings after each quiet interval and the channel dropped with 1011 after
//! three silent ones, and a close with 1008 once the token has run out.
//!
//! The driver reads WebSocket frames and gives each to [`Server::frame`],
//! answers each [`Event`] from [`Server::poll_event`], writes what
//! [`Server::poll_transmit`] gives, and calls [`Server::handle_timeout`]
//! at [`Server::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Opcode, Outgoing, Text, TooLarge};
use crate::control::{parse_command, Accept, ListenerCommand, Request, Response};

/// What the relay's end enforces.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest control message a listener may send, in bytes.
    pub max_message: usize,
    /// How long the channel may be quiet before a ping (at least a second);
    /// three such intervals without a frame end it.
    pub ping_interval: Duration,
    /// The listener's tracking id, quoted in close reasons.
    pub tracking_id: String,
}

/// What the application must look at, in order.
#[derive(Debug)]
pub enum Event {
    /// A `renewToken`: answer with [`Server::renewed`] or
    /// [`Server::refuse_renewal`].
    RenewToken(String),
    /// A `response`; when it has a body, [`Event::Body`] pieces follow.
    Response {
        /// The response.
        response: Response,
        /// The message as the listener sent it.
        text: String,
    },
    /// A piece of the current response's body; `last` ends it.
    Body {
        /// The bytes.
        data: Bytes,
        /// Whether this is the body's last frame.
        last: bool,
    },
    /// The channel is over: write what is left (its Close) and stop.
    Ended(End),
}

/// Why a control channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The listener closed it.
    ByListener,
    /// A control message over the limit (1009).
    TooLarge,
    /// A message that is not a command (1008).
    NotACommand,
    /// A renewal token was refused (1008).
    RenewalRefused,
    /// Three ping intervals without a frame (1011).
    KeepAlive,
    /// The token ran out (1008).
    TokenExpired,
    /// The hybrid connection was removed (1001).
    Removed,
    /// The relay is shutting down (1001).
    Shutdown,
}

impl End {
    /// A short phrase for logs.
    pub fn reason(self) -> &'static str {
        match self {
            End::ByListener => "closed by listener",
            End::TooLarge => "oversized control message",
            End::NotACommand => "invalid command",
            End::RenewalRefused => "renewToken refused",
            End::KeepAlive => "keep-alive timeout",
            End::TokenExpired => "token expired",
            End::Removed => "entity removed",
            End::Shutdown => "gateway shutting down",
        }
    }
}

/// The relay's end of one listener control channel.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    /// The text message being assembled.
    text: Text,
    /// Whether a response body is arriving.
    in_body: bool,
    last_seen: Instant,
    next_ping: Instant,
    /// When the token runs out, with any grace.
    expires: Option<Instant>,
    events: VecDeque<Event>,
    output: VecDeque<Outgoing>,
    ended: bool,
}

impl Server {
    /// A channel just upgraded, whose token runs out at `expires`.
    pub fn new(mut config: ServerConfig, expires: Option<Instant>, now: Instant) -> Self {
        config.ping_interval = config.ping_interval.max(Duration::from_secs(1));
        Server {
            next_ping: now + config.ping_interval,
            config,
            text: Text::default(),
            in_body: false,
            last_seen: now,
            expires,
            events: VecDeque::new(),
            output: VecDeque::new(),
            ended: false,
        }
    }

    /// Take one frame the listener sent.
    pub fn frame(&mut self, opcode: Opcode, fin: bool, data: Bytes, now: Instant) {
        if self.ended {
            return;
        }
        self.last_seen = now;
        match opcode {
            Opcode::Text => self.text_piece(fin, &data, now),
            Opcode::Continuation if !self.in_body => self.text_piece(fin, &data, now),
            Opcode::Binary | Opcode::Continuation => {
                if self.in_body {
                    self.in_body = !fin;
                    self.events.push_back(Event::Body { data, last: fin });
                }
            }
            Opcode::Close => self.end(End::ByListener, 1000, "Normal Closure".into()),
            Opcode::Ping | Opcode::Pong => {}
        }
    }

    fn text_piece(&mut self, fin: bool, data: &[u8], now: Instant) {
        let text = match self.text.piece(data, fin, self.config.max_message) {
            Ok(Some(text)) => text,
            Ok(None) => return,
            Err(TooLarge) => {
                return self.end(End::TooLarge, 1009, "control message too large".into())
            }
        };
        match parse_command(&text) {
            Ok(ListenerCommand::RenewToken(token)) => {
                self.events.push_back(Event::RenewToken(token));
            }
            Ok(ListenerCommand::Response(response)) => {
                self.in_body = response.body;
                self.events.push_back(Event::Response { response, text });
            }
            Ok(ListenerCommand::Unknown(_)) => {}
            Err(e) => return self.end(End::NotACommand, 1008, e.to_string()),
        }
        self.next_ping = now + self.config.ping_interval;
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame to write. A request and its body come one after the
    /// other: the driver writes them without anything in between.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.output.pop_front()
    }

    /// When [`Server::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        Some(
            self.expires
                .map_or(self.next_ping, |e| e.min(self.next_ping)),
        )
    }

    /// Act on the deadlines that have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.expires.is_some_and(|e| now >= e) {
            let reason = format!(
                "The token is expired. TrackingId:{}",
                self.config.tracking_id
            );
            return self.end(End::TokenExpired, 1008, reason);
        }
        if now >= self.next_ping {
            if now.duration_since(self.last_seen) > self.config.ping_interval * 3 {
                return self.end(End::KeepAlive, 1011, "keep-alive timeout".into());
            }
            self.output.push_back(Outgoing::Ping);
            self.next_ping = now + self.config.ping_interval;
        }
    }

    /// Offer a connection to the listener.
    pub fn accept(&mut self, accept: &Accept) {
        if !self.ended {
            self.output.push_back(Outgoing::Text(accept.to_json()));
        }
    }

    /// Send a request, with its inline body as the next message.
    pub fn request(&mut self, request: &Request, body: Option<Bytes>) {
        if self.ended {
            return;
        }
        self.output.push_back(Outgoing::Text(request.to_json()));
        if let Some(body) = body {
            self.output.push_back(Outgoing::Binary(body));
        }
    }

    /// The renewal token was accepted; the channel now lasts until `expires`.
    pub fn renewed(&mut self, expires: Option<Instant>) {
        self.expires = expires;
    }

    /// The renewal token was refused for `reason`: the channel ends.
    pub fn refuse_renewal(&mut self, reason: &str) {
        let reason = format!("{reason}. TrackingId:{}", self.config.tracking_id);
        self.end(End::RenewalRefused, 1008, reason);
    }

    /// End the channel for a reason of the relay's own
    /// ([`End::Removed`] or [`End::Shutdown`]).
    pub fn close(&mut self, end: End) {
        let reason = match end {
            End::Removed => "The hybrid connection was deleted",
            _ => "Shutdown",
        };
        self.end(end, 1001, reason.into());
    }

    fn end(&mut self, end: End, code: u16, reason: String) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.output.push_back(Outgoing::Close(code, reason));
        self.events.push_back(Event::Ended(end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Instant) -> Server {
        let config = ServerConfig {
            max_message: 64,
            ping_interval: Duration::from_secs(10),
            tracking_id: "t1".into(),
        };
        Server::new(config, Some(now + Duration::from_secs(100)), now)
    }

    fn drain(s: &mut Server) -> (Vec<String>, Vec<Outgoing>) {
        let events = std::iter::from_fn(|| s.poll_event())
            .map(|e| format!("{e:?}"))
            .collect();
        (events, std::iter::from_fn(|| s.poll_transmit()).collect())
    }

    #[test]
    fn commands_arrive_whole_and_a_response_body_follows_its_response() {
        let t = Instant::now();
        let mut s = session(t);
        s.frame(
            Opcode::Text,
            false,
            Bytes::from_static(b"{\"renewToken\":"),
            t,
        );
        assert!(s.poll_event().is_none());
        s.frame(
            Opcode::Continuation,
            true,
            Bytes::from_static(b"{\"token\":\"x\"}}"),
            t,
        );
        let r = br#"{"response":{"requestId":"r","statusCode":200,"body":true}}"#;
        s.frame(Opcode::Text, true, Bytes::from_static(r), t);
        s.frame(Opcode::Binary, false, Bytes::from_static(b"he"), t);
        s.frame(Opcode::Continuation, true, Bytes::from_static(b"llo"), t);
        // A stray binary frame with no response waiting is dropped.
        s.frame(Opcode::Binary, true, Bytes::from_static(b"stray"), t);
        s.frame(
            Opcode::Text,
            true,
            Bytes::from_static(br#"{"future":{}}"#),
            t,
        );
        let (events, out) = drain(&mut s);
        assert_eq!(events.len(), 4, "{events:?}");
        assert_eq!(events[0], "RenewToken(\"x\")");
        assert!(events[1].starts_with("Response {"));
        assert_eq!(events[2], "Body { data: b\"he\", last: false }");
        assert_eq!(events[3], "Body { data: b\"llo\", last: true }");
        assert!(out.is_empty());
    }

    #[test]
    fn bad_and_oversized_messages_close_with_their_codes() {
        let t = Instant::now();
        let mut s = session(t);
        s.frame(Opcode::Text, true, Bytes::from_static(b"[1,2]"), t);
        let (events, out) = drain(&mut s);
        assert_eq!(events, ["Ended(NotACommand)"]);
        assert!(matches!(&out[..], [Outgoing::Close(1008, _)]));
        let mut s = session(t);
        s.frame(Opcode::Text, false, Bytes::from(vec![b' '; 40]), t);
        s.frame(Opcode::Continuation, false, Bytes::from(vec![b' '; 40]), t);
        let (events, out) = drain(&mut s);
        assert_eq!(events, ["Ended(TooLarge)"]);
        assert!(matches!(&out[..], [Outgoing::Close(1009, _)]));
        // Nothing more comes out of an ended channel.
        s.frame(Opcode::Text, true, Bytes::from_static(b"{}"), t);
        s.accept(&Accept {
            address: "a".into(),
            id: "i".into(),
            connect_headers: Default::default(),
            remote_endpoint: crate::control::RemoteEndpoint {
                address: "127.0.0.1".into(),
                port: 1,
            },
        });
        assert_eq!(drain(&mut s), (Vec::new(), Vec::new()));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn pings_follow_quiet_intervals_and_silence_or_expiry_ends_the_channel() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let mut s = session(t);
        assert_eq!(s.poll_timeout(), Some(at(10)));
        s.handle_timeout(at(10));
        assert_eq!(drain(&mut s).1, [Outgoing::Ping]);
        // A command moves the next ping a whole interval on.
        s.frame(
            Opcode::Text,
            true,
            Bytes::from_static(br#"{"x":{}}"#),
            at(15),
        );
        assert_eq!(s.poll_timeout(), Some(at(25)));
        for due in [25, 35, 45] {
            s.handle_timeout(at(due));
            assert_eq!(drain(&mut s).1, [Outgoing::Ping], "at {due}");
        }
        // 46 s after the last frame (15 s): more than three intervals.
        s.handle_timeout(at(55));
        let (events, out) = drain(&mut s);
        assert_eq!(events, ["Ended(KeepAlive)"]);
        assert_eq!(out, [Outgoing::Close(1011, "keep-alive timeout".into())]);
        // A token runs out: 1008 naming the tracking id; a renewal moves it.
        let mut s = session(t);
        s.renewed(Some(at(105)));
        s.frame(Opcode::Pong, true, Bytes::new(), at(95));
        for due in [10, 20, 30, 40, 50, 60, 70, 80, 90, 100] {
            s.frame(Opcode::Pong, true, Bytes::new(), at(due));
            s.handle_timeout(at(due));
        }
        assert_eq!(s.poll_timeout(), Some(at(105)));
        s.handle_timeout(at(105));
        let (events, out) = drain(&mut s);
        assert_eq!(events, ["Ended(TokenExpired)"]);
        assert_eq!(
            out.last(),
            Some(&Outgoing::Close(
                1008,
                "The token is expired. TrackingId:t1".into()
            ))
        );
    }

    #[test]
    fn a_request_and_its_body_go_back_to_back() {
        let t = Instant::now();
        let mut s = session(t);
        let r = Request {
            address: "wss://h/$hc/p?sb-hc-action=request".into(),
            id: "1".into(),
            head: None,
        };
        s.request(&r, Some(Bytes::from_static(b"body")));
        s.close(End::Shutdown);
        let (events, out) = drain(&mut s);
        assert_eq!(events, ["Ended(Shutdown)"]);
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0], Outgoing::Text(j) if j.contains("\"request\"")));
        assert_eq!(out[1], Outgoing::Binary(Bytes::from_static(b"body")));
        assert_eq!(out[2], Outgoing::Close(1001, "Shutdown".into()));
    }
}
