//! `wcf`: the wire formats WCF relay traffic is made of, as sans-IO codecs.
//!
//! * [`framing`]: [MC-NMF] .NET Message Framing records, an incremental decoder,
//!   an encoder and the server-side preamble state machine (wcf/PROTOCOL.md §12.1).
//! * [`nbfx`]: [MC-NBFX] binary XML with the [MC-NBFS] static dictionary and the
//!   [MC-NBFSE] in-band session dictionary, plus conversion to and from XML text
//!   (wcf/PROTOCOL.md §12.2–§4).
//! * [`soap`]: a small element tree over binary XML, SOAP envelope access and
//!   SOAP 1.2 faults, including the relay fault codes (`wcf/PROTOCOL.md` §6).
//! * [`hexdump`]: the conversation hex-dump format of the captures and fixtures.
//! * [`relay`]: the Azure Relay's own SOAP messages and the 4-byte length
//!   prefixed framing used on port 9352 (`wcf/PROTOCOL.md` §2–§5, §11).
//!
//! * [`web`]: HTTP requests and replies over a `RelayedHttp` rendezvous (`wcf/PROTOCOL.md` §11.3).
//! * [`amqp`]: the AMQP 1.0 frames and attach properties of the listener
//!   control channel, and its connection, session and link state machines
//!   for the relay's end and a listener's (`wcf/PROTOCOL.md` §2, §8, §11.2).
//!
//! Nothing here opens a socket, spawns a task or reads a clock: bytes go in,
//! values or bytes come out, "need more bytes" is `Ok(None)`, and the state
//! machines are given `now` and say when they next need it.

pub mod amqp;
pub mod error;
pub mod framing;
pub mod hexdump;
pub mod limits;
pub mod mbint;
pub mod nbfx;
pub mod relay;
pub mod soap;
pub mod web;

pub use error::{Error, Result};
pub use limits::Limits;
