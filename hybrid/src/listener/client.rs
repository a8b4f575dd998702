//! A listener's end of its control channel (§2.1 to §2.4, §4), as the SDKs
//! speak it: `accept` and `request` messages in (an inline request's body
//! taken from the binary message that follows it, within its bound), a
//! `renewToken` due at each renewal interval, `response` messages out (a
//! listener's answer to a request it does not serve), and the relay's close.
//!
//! The driver gives each WebSocket frame to [`Client::frame`], answers each
//! [`Event`] from [`Client::poll_event`], writes what
//! [`Client::poll_transmit`] gives, and calls [`Client::handle_timeout`] at
//! [`Client::poll_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Opcode, Outgoing, Text, TooLarge};
use crate::control::{parse_relay_message, renew_token, Accept, RelayMessage, Request, Response};

/// What a listener's end accepts and when it renews.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The largest text message taken from the relay, in bytes.
    pub max_message: usize,
    /// The largest inline request body (the relay sends at most 64 KiB
    /// inline).
    pub max_inline_body: usize,
    /// How often the token is renewed, if it runs out at all.
    pub renew_every: Option<Duration>,
}

/// What the driver must look at, in order.
#[derive(Debug)]
pub enum Event {
    /// A sender waits at the accept's address.
    Accept(Accept),
    /// A request: `body` is its inline body (empty when it has none), or
    /// `None` when it was only announced and is read on its rendezvous.
    Request {
        /// The request.
        request: Request,
        /// Its inline body.
        body: Option<Bytes>,
    },
    /// The token is due for renewal: answer with [`Client::renew`].
    RenewDue,
    /// The channel is over.
    Ended(Ending),
}

/// Why a listener's control channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The relay closed it, with this code and reason.
    Closed {
        /// The close code, if one was sent.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
    /// The relay sent a message a listener cannot read.
    Unreadable(String),
    /// A message or inline body beyond its bound.
    TooLarge,
}

/// A listener's end of one control channel.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    text: Text,
    /// An inline request whose body is arriving.
    inline: Option<(Request, BytesMut)>,
    next_renewal: Option<Instant>,
    events: VecDeque<Event>,
    output: VecDeque<Outgoing>,
    ended: bool,
}

impl Client {
    /// A channel just opened.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        Client {
            next_renewal: config.renew_every.map(|every| now + every),
            config,
            text: Text::default(),
            inline: None,
            events: VecDeque::new(),
            output: VecDeque::new(),
            ended: false,
        }
    }

    /// Take one frame the relay sent.
    pub fn frame(&mut self, opcode: Opcode, fin: bool, data: Bytes) {
        if self.ended {
            return;
        }
        match opcode {
            Opcode::Text => {
                // The body comes right after its request; a request left
                // waiting for one is dropped.
                self.inline = None;
                self.text_piece(fin, &data);
            }
            Opcode::Continuation if self.inline.is_none() => self.text_piece(fin, &data),
            Opcode::Binary | Opcode::Continuation => self.body_piece(fin, &data),
            Opcode::Close => {
                let code = data
                    .get(..2)
                    .and_then(|c| <[u8; 2]>::try_from(c).ok())
                    .map(u16::from_be_bytes);
                let reason = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
                self.end(Ending::Closed {
                    code,
                    reason: reason.into_owned(),
                });
            }
            Opcode::Ping | Opcode::Pong => {}
        }
    }

    fn text_piece(&mut self, fin: bool, data: &[u8]) {
        let text = match self.text.piece(data, fin, self.config.max_message) {
            Ok(Some(text)) => text,
            Ok(None) => return,
            Err(TooLarge) => return self.end(Ending::TooLarge),
        };
        match parse_relay_message(&text) {
            Ok(RelayMessage::Accept(accept)) => self.events.push_back(Event::Accept(accept)),
            Ok(RelayMessage::Request(request)) => match &request.head {
                Some(head) if head.body => self.inline = Some((request, BytesMut::new())),
                Some(_) => self.events.push_back(Event::Request {
                    request,
                    body: Some(Bytes::new()),
                }),
                None => self.events.push_back(Event::Request {
                    request,
                    body: None,
                }),
            },
            Ok(RelayMessage::Unknown(_)) => {}
            Err(e) => self.end(Ending::Unreadable(e.to_string())),
        }
    }

    /// A piece of the inline body after a request; stray binary frames are
    /// dropped.
    fn body_piece(&mut self, fin: bool, data: &[u8]) {
        let Some((_, body)) = self.inline.as_mut() else {
            return;
        };
        if body.len() + data.len() > self.config.max_inline_body {
            return self.end(Ending::TooLarge);
        }
        body.extend_from_slice(data);
        if fin {
            if let Some((request, body)) = self.inline.take() {
                let body = Some(body.freeze());
                self.events.push_back(Event::Request { request, body });
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.output.pop_front()
    }

    /// When [`Client::handle_timeout`] is next due: the next renewal.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_renewal.filter(|_| !self.ended)
    }

    /// Say when a renewal is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some(at), Some(every)) = (self.next_renewal, self.config.renew_every) {
            if now >= at && !self.ended {
                self.next_renewal = Some(now + every);
                self.events.push_back(Event::RenewDue);
            }
        }
    }

    /// Send a renewed token.
    pub fn renew(&mut self, token: &str) {
        if !self.ended {
            self.output.push_back(Outgoing::Text(renew_token(token)));
        }
    }

    /// Answer a request on the control channel (a listener that does not
    /// serve it).
    pub fn respond(&mut self, response: &Response) {
        if !self.ended {
            self.output.push_back(Outgoing::Text(response.to_json()));
        }
    }

    fn end(&mut self, ending: Ending) {
        if !self.ended {
            self.ended = true;
            self.events.push_back(Event::Ended(ending));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::control::{parse_command, ListenerCommand, RemoteEndpoint, RequestHead};
    use crate::listener::server::{End, Server, ServerConfig};

    fn config() -> ClientConfig {
        ClientConfig {
            max_message: 1024,
            max_inline_body: 64,
            renew_every: Some(Duration::from_secs(60)),
        }
    }

    fn request(body: bool) -> Request {
        Request {
            address: "wss://h/$hc/p?sb-hc-action=request&sb-hc-id=1".into(),
            id: "1".into(),
            head: Some(RequestHead {
                request_target: "/p".into(),
                method: "POST".into(),
                request_headers: BTreeMap::new(),
                remote_endpoint: RemoteEndpoint {
                    address: "127.0.0.1".into(),
                    port: 1,
                },
                body,
            }),
        }
    }

    /// The relay's end writes; the listener's end reads the same frames.
    fn relay_to_listener(server: &mut Server, client: &mut Client) -> Vec<String> {
        while let Some(out) = server.poll_transmit() {
            match out {
                Outgoing::Text(t) => client.frame(Opcode::Text, true, t.into()),
                Outgoing::Binary(b) => client.frame(Opcode::Binary, true, b),
                Outgoing::Ping => client.frame(Opcode::Ping, true, Bytes::new()),
                Outgoing::Close(code, reason) => {
                    let mut data = code.to_be_bytes().to_vec();
                    data.extend_from_slice(reason.as_bytes());
                    client.frame(Opcode::Close, true, data.into());
                }
            }
        }
        std::iter::from_fn(|| client.poll_event())
            .map(|e| format!("{e:?}"))
            .collect()
    }

    #[test]
    fn what_the_relays_end_sends_the_listeners_end_reads() {
        let t = Instant::now();
        let server_config = ServerConfig {
            max_message: 1024,
            ping_interval: Duration::from_secs(30),
            tracking_id: "t1".into(),
        };
        let mut server = Server::new(server_config, None, t);
        let mut client = Client::new(config(), t);
        let accept = Accept {
            address: "wss://h/$hc/p?sb-hc-action=accept".into(),
            id: "a".into(),
            connect_headers: BTreeMap::new(),
            remote_endpoint: RemoteEndpoint {
                address: "127.0.0.1".into(),
                port: 2,
            },
        };
        server.accept(&accept);
        server.request(&request(true), Some(Bytes::from_static(b"body")));
        server.request(&request(false), None);
        let announced = Request {
            head: None,
            ..request(false)
        };
        server.request(&announced, None);
        let seen = relay_to_listener(&mut server, &mut client);
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen[0].starts_with("Accept("));
        assert!(seen[1].ends_with("body: Some(b\"body\") }"), "{}", seen[1]);
        assert!(seen[2].ends_with("body: Some(b\"\") }"), "{}", seen[2]);
        assert!(seen[3].contains("head: None") && seen[3].ends_with("body: None }"));
        // The relay closing for good reaches the listener with its reason.
        server.close(End::Shutdown);
        let seen = relay_to_listener(&mut server, &mut client);
        assert_eq!(
            seen,
            ["Ended(Closed { code: Some(1001), reason: \"Shutdown\" })"]
        );
    }

    #[test]
    fn renewals_fall_due_and_bounds_end_the_channel() {
        let t = Instant::now();
        let mut c = Client::new(config(), t);
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(60)));
        c.handle_timeout(t + Duration::from_secs(60));
        assert!(matches!(c.poll_event(), Some(Event::RenewDue)));
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(120)));
        c.renew("SharedAccessSignature sr=x");
        let Some(Outgoing::Text(t1)) = c.poll_transmit() else {
            panic!("a renewToken")
        };
        assert_eq!(
            parse_command(&t1),
            Ok(ListenerCommand::RenewToken(
                "SharedAccessSignature sr=x".into()
            ))
        );
        // An inline body past its bound ends the channel.
        c.frame(Opcode::Text, true, request(true).to_json().into());
        c.frame(Opcode::Binary, false, Bytes::from(vec![0u8; 60]));
        c.frame(Opcode::Continuation, true, Bytes::from(vec![0u8; 10]));
        assert!(matches!(
            c.poll_event(),
            Some(Event::Ended(Ending::TooLarge))
        ));
        assert_eq!(c.poll_timeout(), None);
        // So does a message that is not the relay's.
        let mut c = Client::new(config(), t);
        c.frame(Opcode::Text, true, Bytes::from_static(b"hello"));
        assert!(matches!(
            c.poll_event(),
            Some(Event::Ended(Ending::Unreadable(_)))
        ));
    }
}
