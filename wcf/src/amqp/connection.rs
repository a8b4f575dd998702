//! What both ends of the relay's AMQP connection share (`wcf/PROTOCOL.md`
//! §2, §8; AMQP 1.0 part 2.4): bytes in, protocol headers and frames taken
//! from them one at a time under the frame size in force, frames queued for
//! the driver to write, and the heartbeat clock (part 2.4.5). Time is never
//! read here: every call that needs it is given `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use fe2o3_amqp_types::definitions::Handle;
use fe2o3_amqp_types::performatives::{Begin, Performative};

use super::frame::{self, Frame, Header, Sasl, HEARTBEAT};
use crate::Result;

/// A link: the session's channel and the link's handle on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// The session's channel.
    pub channel: u16,
    /// The link's handle within the session.
    pub handle: u32,
}

/// The session windows both ends advertise (as the SDK does).
pub(crate) const WINDOW: u32 = 5000;
/// The first transfer id of every session, both ways.
pub(crate) const FIRST_TRANSFER_ID: u32 = 1;
/// Most handles a session may use.
const HANDLE_MAX: u32 = 262_143;

/// The `begin` both ends send: `remote_channel` set when answering one.
pub(crate) fn begin(remote_channel: Option<u16>) -> Begin {
    Begin {
        remote_channel,
        next_outgoing_id: FIRST_TRANSFER_ID,
        incoming_window: WINDOW,
        outgoing_window: WINDOW,
        handle_max: Handle(HANDLE_MAX),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

/// Heartbeat interval when the peer advertises no idle time-out, and the
/// longest one used (§8).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// The shortest heartbeat interval, whatever idle time-out a peer asks for.
const MIN_HEARTBEAT: Duration = Duration::from_millis(500);

/// How often to send a heartbeat to a peer that advertised `idle_time_out`
/// milliseconds: at half of it (part 2.4.5), within the bounds above.
pub fn heartbeat_interval(idle_time_out: Option<u32>) -> Duration {
    idle_time_out
        .filter(|t| *t > 0)
        .map_or(DEFAULT_HEARTBEAT, |t| {
            Duration::from_millis(u64::from(t / 2)).max(MIN_HEARTBEAT)
        })
        .min(DEFAULT_HEARTBEAT)
}

/// Bytes in and frames out.
#[derive(Debug)]
pub(crate) struct Wire {
    input: BytesMut,
    /// The largest frame accepted: 512 bytes until `open` has been
    /// exchanged (part 2.4.1), then what this end advertised.
    pub(crate) max_frame: u32,
    output: VecDeque<Vec<u8>>,
    /// When the peer last sent a byte.
    pub(crate) last_read: Instant,
}

impl Wire {
    pub(crate) fn new(now: Instant) -> Self {
        Wire {
            input: BytesMut::with_capacity(8192),
            max_frame: frame::MIN_MAX_FRAME_SIZE,
            output: VecDeque::new(),
            last_read: now,
        }
    }

    /// Take bytes the peer sent.
    pub(crate) fn feed(&mut self, bytes: &[u8], now: Instant) {
        if !bytes.is_empty() {
            self.input.extend_from_slice(bytes);
            self.last_read = now;
        }
    }

    /// The next protocol header, once eight bytes are in.
    pub(crate) fn header(&mut self) -> Option<Result<Header>> {
        let head: [u8; 8] = self.input.get(..8)?.try_into().ok()?;
        self.input.advance(8);
        Some(frame::header(&head))
    }

    /// The next whole frame, if one is in.
    pub(crate) fn frame(&mut self) -> Result<Option<Frame>> {
        Ok(frame::decode(&self.input, self.max_frame)?.map(|(f, n)| {
            self.input.advance(n);
            f
        }))
    }

    /// Whether a whole frame is already in.
    pub(crate) fn has_frame(&self) -> bool {
        frame::is_complete(&self.input)
    }

    /// Queue a performative frame.
    pub(crate) fn send(&mut self, channel: u16, perf: &Performative, payload: &[u8]) -> Result<()> {
        self.output
            .push_back(frame::encode(channel, perf, payload)?);
        Ok(())
    }

    /// Queue a SASL frame.
    pub(crate) fn send_sasl(&mut self, sasl: &Sasl) -> Result<()> {
        self.output.push_back(frame::encode_sasl(sasl)?);
        Ok(())
    }

    /// Queue a protocol header or a heartbeat.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.output.push_back(bytes.to_vec());
    }

    /// The next frame (or header) to write. Each is whole, so a driver
    /// over WebSocket writes each as its own message (§11.5); a driver over
    /// a stream may gather them into one write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.output.pop_front()
    }
}

/// When the next heartbeat is due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    every: Duration,
    next: Instant,
}

impl Heartbeat {
    pub(crate) fn new(every: Duration, now: Instant) -> Self {
        Heartbeat {
            every,
            next: now + every,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.next
    }

    /// Queue a heartbeat on `wire` when one is due.
    pub(crate) fn tick(&mut self, wire: &mut Wire, now: Instant) {
        if now >= self.next {
            wire.send_raw(&HEARTBEAT);
            self.next = now + self.every;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_go_at_half_the_idle_time_out_within_bounds() {
        assert_eq!(heartbeat_interval(None), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(0)), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(60_000)), Duration::from_secs(30));
        assert_eq!(heartbeat_interval(Some(10_000)), Duration::from_secs(5));
        assert_eq!(heartbeat_interval(Some(1)), MIN_HEARTBEAT);
        assert_eq!(heartbeat_interval(Some(u32::MAX)), DEFAULT_HEARTBEAT);
    }

    #[test]
    fn a_header_and_a_frame_come_out_whole_whatever_the_split() {
        let t = Instant::now();
        let mut bytes = frame::AMQP_HEADER.to_vec();
        bytes.extend_from_slice(&HEARTBEAT);
        for split in 0..=bytes.len() {
            let mut w = Wire::new(t);
            w.feed(&bytes[..split], t);
            let mut got = Vec::new();
            for part in [&bytes[split..], &[][..]] {
                if got.is_empty() {
                    if let Some(h) = w.header() {
                        got.push(format!("{:?}", h.unwrap()));
                    }
                }
                if got.len() == 1 {
                    if let Some(f) = w.frame().unwrap() {
                        got.push(format!("{:?}", f.body));
                    }
                }
                w.feed(part, t);
            }
            assert_eq!(got, ["Amqp", "Empty"], "split at {split}");
        }
    }
}
