//! AMQP 1.0 framing (OASIS AMQP 1.0 part 2.3 and part 5.3): the protocol
//! headers, the 8-byte frame header, and the split of a frame body into its
//! performative and payload. Values are encoded and decoded with
//! `fe2o3-amqp-types` on `serde_amqp`; this module only finds where each value
//! ends, so that every length is bounded before anything is decoded.

use fe2o3_amqp_types::performatives::Performative;
use fe2o3_amqp_types::sasl::{SaslChallenge, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse};

use std::sync::Arc;

use crate::error::{Error, Result};

/// The protocol header that opens plain AMQP (protocol id 0).
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The protocol header that opens the SASL layer (protocol id 3).
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// An empty frame on channel 0: the heartbeat (§8).
pub const HEARTBEAT: [u8; 8] = [0, 0, 0, 8, 2, 0, 0, 0];
/// The smallest max-frame-size AMQP allows, and the limit on every frame
/// before the `open` exchange has negotiated one (part 2.4.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// The deepest nesting of lists, maps, arrays and described values a frame
/// body may hold. The relay's performatives nest about five deep; the
/// decoder recurses once per level, so this bound is what keeps a hostile
/// frame from exhausting the stack.
pub const MAX_NESTING: usize = 32;

/// Which of the two headers a peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `AMQP 0 1 0 0`.
    Amqp,
    /// `AMQP 3 1 0 0`.
    Sasl,
}

/// Recognise a protocol header; anything else (including the TLS header,
/// protocol id 2, which the relay does not offer) is
/// an error, to be answered with our own header and a close (part 2.2).
pub fn header(buf: &[u8; 8]) -> Result<Header> {
    match *buf {
        AMQP_HEADER => Ok(Header::Amqp),
        SASL_HEADER => Ok(Header::Sasl),
        _ => Err(Error::Misplaced {
            offset: 0,
            rule: "not a supported AMQP protocol header",
        }),
    }
}

/// A SASL frame body.
#[derive(Debug, Clone)]
pub enum Sasl {
    /// sasl-mechanisms.
    Mechanisms(SaslMechanisms),
    /// sasl-init.
    Init(SaslInit),
    /// sasl-challenge.
    Challenge(SaslChallenge),
    /// sasl-response.
    Response(SaslResponse),
    /// sasl-outcome.
    Outcome(SaslOutcome),
}

/// What a frame carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body: a heartbeat.
    Empty,
    /// A performative and, for transfers, the payload after it.
    Amqp(Box<Performative>, Vec<u8>),
    /// A SASL frame.
    Sasl(Sasl),
}

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The channel (0 for SASL and connection frames).
    pub channel: u16,
    /// The body.
    pub body: Body,
}

/// Whether `buf` starts with a whole frame (by its size field alone; the
/// frame itself is checked by [`decode`]).
pub fn is_complete(buf: &[u8]) -> bool {
    match buf.get(..4) {
        Some(&[s0, s1, s2, s3]) => {
            let size = u32::from_be_bytes([s0, s1, s2, s3]) as usize;
            buf.len() >= size.max(8)
        }
        _ => false,
    }
}

/// Decode one frame from the front of `buf`: `Ok(None)` until it is whole,
/// else the frame and the bytes it used. A frame larger than `max_frame` is an
/// error before it is buffered.
pub fn decode(buf: &[u8], max_frame: u32) -> Result<Option<(Frame, usize)>> {
    let Some(&[s0, s1, s2, s3, doff, kind, c0, c1]) = buf.get(..8) else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([s0, s1, s2, s3]);
    if size < 8 {
        return Err(Error::FrameSize { offset: 0, size });
    }
    if size > max_frame.max(MIN_MAX_FRAME_SIZE) {
        return Err(Error::TooLarge {
            offset: 0,
            what: "AMQP frame",
            len: size as usize,
            limit: max_frame as usize,
        });
    }
    let size = size as usize;
    let doff = usize::from(doff) * 4;
    if doff < 8 || doff > size {
        return Err(Error::DataOffset { offset: 4, doff });
    }
    let Some(frame) = buf.get(..size) else {
        return Ok(None);
    };
    let channel = u16::from_be_bytes([c0, c1]);
    let body = frame.get(doff..).unwrap_or_default();
    let body = match kind {
        _ if body.is_empty() => Body::Empty,
        0 => {
            let n = value_len(body, 0).ok_or_else(|| bad(doff, "truncated performative"))?;
            let (perf, payload) = body.split_at(n);
            check_nesting(perf, MAX_NESTING).map_err(|e| bad(doff, e))?;
            let perf: Performative =
                serde_amqp::from_slice(perf).map_err(|e| decode_error(doff, e))?;
            Body::Amqp(Box::new(perf), payload.to_vec())
        }
        1 => {
            check_nesting(body, MAX_NESTING).map_err(|e| bad(doff, e))?;
            Body::Sasl(decode_sasl(body, doff)?)
        }
        kind => return Err(Error::FrameType { offset: 5, kind }),
    };
    Ok(Some((Frame { channel, body }, size)))
}

fn bad(offset: usize, problem: &'static str) -> Error {
    Error::AmqpValue { offset, problem }
}

fn decode_error(offset: usize, e: serde_amqp::Error) -> Error {
    Error::AmqpDecode {
        offset,
        source: Arc::new(e),
    }
}

fn encode_error(e: serde_amqp::Error) -> Error {
    Error::AmqpEncode(Arc::new(e))
}

fn decode_sasl(body: &[u8], offset: usize) -> Result<Sasl> {
    let e = |e| decode_error(offset, e);
    Ok(match descriptor_code(body) {
        Some(0x40) => Sasl::Mechanisms(serde_amqp::from_slice(body).map_err(e)?),
        Some(0x41) => Sasl::Init(serde_amqp::from_slice(body).map_err(e)?),
        Some(0x42) => Sasl::Challenge(serde_amqp::from_slice(body).map_err(e)?),
        Some(0x43) => Sasl::Response(serde_amqp::from_slice(body).map_err(e)?),
        Some(0x44) => Sasl::Outcome(serde_amqp::from_slice(body).map_err(e)?),
        _ => return Err(bad(offset, "not a SASL frame")),
    })
}

/// The numeric descriptor of a described value, if it has one.
pub fn descriptor_code(buf: &[u8]) -> Option<u64> {
    match buf {
        [0x00, 0x53, c, ..] => Some(u64::from(*c)),
        [0x00, 0x44, ..] => Some(0),
        [0x00, 0x80, rest @ ..] => rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes),
        _ => None,
    }
}

/// How many bytes the encoded value at the front of `buf` takes (part 1.2),
/// or `None` if it is truncated or nests descriptors too deeply.
pub fn value_len(buf: &[u8], depth: u8) -> Option<usize> {
    let code = *buf.first()?;
    let size_at = |width: usize| -> Option<usize> {
        let b = buf.get(1..1 + width)?;
        Some(b.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    };
    let len = match code {
        0x00 => {
            if depth > 8 {
                return None;
            }
            let d = value_len(buf.get(1..)?, depth + 1)?;
            let v = value_len(buf.get(1 + d..)?, depth + 1)?;
            1 + d + v
        }
        0x40..=0x4f => 1,
        0x50..=0x5f => 2,
        0x60..=0x6f => 3,
        0x70..=0x7f => 5,
        0x80..=0x8f => 9,
        0x90..=0x9f => 17,
        0xa0..=0xaf | 0xc0..=0xcf | 0xe0..=0xef => 2 + size_at(1)?,
        0xb0..=0xbf | 0xd0..=0xdf | 0xf0..=0xff => 5 + size_at(4)?,
        _ => return None,
    };
    (len <= buf.len()).then_some(len)
}

/// One open list, map or array while [`check_nesting`] walks a value.
struct Level {
    /// Where its encoding ends.
    end: usize,
    /// Items still to walk.
    left: usize,
    /// An array's element constructor (its elements carry none of their own).
    element: Option<u8>,
    /// How many nesting levels it adds (itself, described wrappers around it
    /// and around its elements).
    weight: usize,
}

/// Check, without recursion, that the value at the front of `buf` is well
/// formed as far as its structure goes (every size and count within its
/// container) and nests lists, maps, arrays and described values at most
/// `max` deep. Run before any recursive decoder sees the bytes.
pub fn check_nesting(buf: &[u8], max: usize) -> std::result::Result<(), &'static str> {
    let truncated = "a value runs past its container";
    let mut stack = vec![Level {
        end: buf.len(),
        left: 1,
        element: None,
        weight: 0,
    }];
    let (mut pos, mut depth, mut described) = (0usize, 0usize, 0usize);
    while let Some(top) = stack.last_mut() {
        if top.left == 0 {
            let Some(level) = stack.pop() else { break };
            if !stack.is_empty() && pos != level.end {
                return Err("a list, map or array is not the size it declares");
            }
            depth -= level.weight;
            continue;
        }
        let end = top.end;
        let code = match top.element {
            Some(c) => c,
            None => {
                let c = *buf.get(pos).filter(|_| pos < end).ok_or(truncated)?;
                pos += 1;
                if c == 0x00 {
                    // A described value: the descriptor, then the value.
                    let d = value_len(buf.get(pos..end).ok_or(truncated)?, 0).ok_or(truncated)?;
                    pos += d;
                    described += 1;
                    if depth + described > max {
                        return Err("values nest too deeply");
                    }
                    continue;
                }
                c
            }
        };
        top.left -= 1;
        let width = |w: usize, pos: usize| -> std::result::Result<usize, &'static str> {
            let b = buf
                .get(pos..pos + w)
                .filter(|_| pos + w <= end)
                .ok_or(truncated)?;
            Ok(b.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
        };
        let (compound, w) = match code {
            0x40..=0x4f => (false, 0),
            0x50..=0x5f => (false, 1),
            0x60..=0x6f => (false, 2),
            0x70..=0x7f => (false, 4),
            0x80..=0x8f => (false, 8),
            0x90..=0x9f => (false, 16),
            0xa0..=0xaf => (false, 1 + width(1, pos)?),
            0xb0..=0xbf => (false, 4 + width(4, pos)?),
            0xc0..=0xcf | 0xe0..=0xef => (true, 1),
            0xd0..=0xdf | 0xf0..=0xff => (true, 4),
            _ => return Err("unknown format code"),
        };
        if !compound {
            pos += w;
            if pos > end {
                return Err(truncated);
            }
            described = 0;
            continue;
        }
        // size, count, then (arrays) the element constructor.
        let size = width(w, pos)?;
        let inner_end = (pos + w)
            .checked_add(size)
            .filter(|e| *e <= end)
            .ok_or(truncated)?;
        let count = width(w, pos + w)?;
        pos += 2 * w;
        if pos > inner_end {
            return Err(truncated);
        }
        let mut weight = 1 + std::mem::take(&mut described);
        let mut element = None;
        if code >= 0xe0 {
            let mut c = *buf.get(pos).filter(|_| pos < inner_end).ok_or(truncated)?;
            pos += 1;
            if c == 0x00 {
                let d = value_len(buf.get(pos..inner_end).ok_or(truncated)?, 0).ok_or(truncated)?;
                pos += d;
                c = *buf.get(pos).filter(|_| pos < inner_end).ok_or(truncated)?;
                pos += 1;
                weight += 1;
            }
            if !matches!(c, 0xc0..=0xff) {
                // Elements of a primitive type cannot nest, but each must fit.
                if depth + weight > max {
                    return Err("values nest too deeply");
                }
                check_primitive_elements(buf.get(pos..inner_end).ok_or(truncated)?, c, count)?;
                pos = inner_end;
                continue;
            }
            element = Some(c);
        }
        if count > inner_end - pos {
            return Err("a list, map or array declares more items than it has bytes");
        }
        depth += weight;
        if depth > max {
            return Err("values nest too deeply");
        }
        stack.push(Level {
            end: inner_end,
            left: count,
            element,
            weight,
        });
    }
    Ok(())
}

/// Check that `count` array elements of the primitive type `code` fill
/// `body` exactly, each variable-width one within it (decoders allocate
/// what a length says before they look for the bytes).
fn check_primitive_elements(
    body: &[u8],
    code: u8,
    count: usize,
) -> std::result::Result<(), &'static str> {
    let fixed = match code {
        0x40..=0x4f => Some(0),
        0x50..=0x5f => Some(1),
        0x60..=0x6f => Some(2),
        0x70..=0x7f => Some(4),
        0x80..=0x8f => Some(8),
        0x90..=0x9f => Some(16),
        0xa0..=0xbf => None,
        _ => return Err("unknown format code"),
    };
    if let Some(w) = fixed {
        return match count.checked_mul(w) {
            Some(n) if n == body.len() => Ok(()),
            _ => Err("an array is not the size its elements make"),
        };
    }
    let width = if code >= 0xb0 { 4 } else { 1 };
    if count > body.len() / width {
        return Err("an array declares more elements than it has bytes");
    }
    let mut pos = 0usize;
    for _ in 0..count {
        let size = body
            .get(pos..pos + width)
            .ok_or("an array element runs past its array")?
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        pos = (pos + width)
            .checked_add(size)
            .filter(|p| *p <= body.len())
            .ok_or("an array element runs past its array")?;
    }
    if pos == body.len() {
        Ok(())
    } else {
        Err("an array is not the size its elements make")
    }
}

/// Append a frame with `body` (already encoded) to `out`.
fn frame(out: &mut Vec<u8>, kind: u8, channel: u16, body: &[&[u8]]) {
    let size: usize = 8 + body.iter().map(|b| b.len()).sum::<usize>();
    out.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&[2, kind]);
    out.extend_from_slice(&channel.to_be_bytes());
    for b in body {
        out.extend_from_slice(b);
    }
}

/// Encode a performative frame with an optional payload.
pub fn encode(channel: u16, perf: &Performative, payload: &[u8]) -> Result<Vec<u8>> {
    let p = serde_amqp::to_vec(perf).map_err(encode_error)?;
    let mut out = Vec::with_capacity(8 + p.len() + payload.len());
    frame(&mut out, 0, channel, &[&p, payload]);
    Ok(out)
}

/// Encode a SASL frame.
pub fn encode_sasl(sasl: &Sasl) -> Result<Vec<u8>> {
    let p = match sasl {
        Sasl::Mechanisms(m) => serde_amqp::to_vec(m).map_err(encode_error)?,
        Sasl::Init(m) => serde_amqp::to_vec(m).map_err(encode_error)?,
        Sasl::Challenge(m) => serde_amqp::to_vec(m).map_err(encode_error)?,
        Sasl::Response(m) => serde_amqp::to_vec(m).map_err(encode_error)?,
        Sasl::Outcome(m) => serde_amqp::to_vec(m).map_err(encode_error)?,
    };
    let mut out = Vec::with_capacity(8 + p.len());
    frame(&mut out, 1, 0, &[&p]);
    Ok(out)
}

/// The message of a transfer payload whose body is one `data` section
/// (§2.2): header, annotations and properties sections are skipped; any
/// other body (or a second data section) is an error.
pub fn data_section(payload: &[u8]) -> Result<&[u8]> {
    let mut at = 0;
    let mut found = None;
    while let Some(rest) = payload.get(at..).filter(|r| !r.is_empty()) {
        let n = value_len(rest, 0).ok_or_else(|| bad(at, "truncated message section"))?;
        match descriptor_code(rest) {
            Some(0x75) => {
                if found.is_some() {
                    return Err(bad(at, "more than one data section"));
                }
                let inner = rest.get(3..n).unwrap_or_default();
                let skip = match inner.first() {
                    Some(0xa0) => 2,
                    Some(0xb0) => 5,
                    _ => return Err(bad(at, "data section is not binary")),
                };
                found = inner.get(skip..);
            }
            Some(0x70..=0x74) | Some(0x78) => {}
            _ => return Err(bad(at, "message body is not a data section")),
        }
        at += n;
    }
    found.ok_or_else(|| bad(0, "message has no data section"))
}

/// A message whose only section is one `data` section holding `data`.
pub fn data_message(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(&[0x00, 0x53, 0x75]);
    match u8::try_from(data.len()) {
        Ok(n) => out.extend_from_slice(&[0xa0, n]),
        Err(_) => {
            out.push(0xb0);
            out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::performatives::Close;

    #[test]
    fn value_lengths_follow_the_format_code_categories() {
        assert_eq!(value_len(&[0x40], 0), Some(1));
        assert_eq!(value_len(&[0x52, 7], 0), Some(2));
        assert_eq!(value_len(&[0xa1, 2, b'h', b'i'], 0), Some(4));
        assert_eq!(value_len(&[0xa1, 3, b'h', b'i'], 0), None);
        assert_eq!(value_len(&[0x00, 0x53, 0x18, 0x45], 0), Some(4));
        assert_eq!(value_len(&[0xd0, 0, 0, 0, 4, 0, 0, 0, 0], 0), Some(9));
        let deep = [0u8; 64];
        assert_eq!(value_len(&deep, 0), None);
    }

    /// A frame on channel 0 of `kind` around `body`.
    fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, kind, 0, &[body]);
        out
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        // The probe's two reproductions (they overflowed the stack): an
        // open whose properties hold described values 5,000 deep, and
        // list32 in list32 3,000 deep.
        let mut described = vec![0x00, 0x53, 0x10];
        for _ in 0..5000 {
            described.extend_from_slice(&[0x00, 0x53, 0x01]);
        }
        described.push(0x45);
        let mut lists = Vec::new();
        for i in 0..3000u32 {
            let inner = 4 + 9 * (2999 - i);
            lists.push(0xd0);
            lists.extend_from_slice(&(inner + 4).to_be_bytes());
            lists.extend_from_slice(&1u32.to_be_bytes());
        }
        lists.extend_from_slice(&[0xd0, 0, 0, 0, 4, 0, 0, 0, 0]);
        for body in [&described, &lists] {
            assert_eq!(
                check_nesting(body, MAX_NESTING),
                Err("values nest too deeply")
            );
            let bytes = framed(0, body);
            assert!(decode(&bytes, 1 << 20).is_err());
            assert!(decode(&framed(1, body), 1 << 20).is_err());
        }
        // Nesting up to the bound passes.
        let mut ok = Vec::new();
        for _ in 0..MAX_NESTING - 1 {
            ok.extend_from_slice(&[0x00, 0x53, 0x01]);
        }
        ok.push(0x45);
        assert_eq!(check_nesting(&ok, MAX_NESTING), Ok(()));
        ok.splice(0..0, [0x00, 0x53, 0x01]);
        ok.splice(0..0, [0x00, 0x53, 0x01]);
        assert!(check_nesting(&ok, MAX_NESTING).is_err());
    }

    #[test]
    fn array_elements_must_fit_before_anything_allocates() {
        // The fuzzer's out-of-memory input: sasl-mechanisms whose array of
        // symbol32 holds one declaring 4 GiB (serde_amqp allocated it).
        let bad = [
            0x00, 0x53, 0x40, 0xd0, 0, 0, 0, 59, 0, 0, 0, 1, 0xf0, 0, 0, 0, 50, 0, 0, 0, 4, 0xb3,
            0, 0, 0, 8, b'E', b'X', b'T', b'E', b'R', b'N', b'A', b'L', 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(check_nesting(&bad, MAX_NESTING).is_err());
        assert!(decode(&framed(1, &bad), 65536).is_err());
        // Fixed-width elements must fill the array exactly.
        assert!(check_nesting(&[0xe0, 4, 3, 0x52, 1, 2], MAX_NESTING).is_err());
        assert_eq!(
            check_nesting(&[0xe0, 5, 3, 0x52, 1, 2, 3], MAX_NESTING),
            Ok(())
        );
    }

    #[test]
    fn structure_errors_are_caught_without_panicking() {
        for bad in [
            &[0xc0, 5, 1, 0x40][..],          // list8 larger than its bytes
            &[0xc0, 1, 1][..],                // one item, no bytes for it
            &[0xc0, 1, 3, 0x40][..],          // count over the bytes
            &[0xd0, 0, 0, 0, 2, 0, 0, 0][..], // size smaller than the count field
            &[0xe0, 3, 2, 0xc0, 1][..],       // array of lists, elements missing
            &[0xa1, 9, b'x'][..],             // string past the end
            &[0x00][..],                      // descriptor missing
            &[0x33][..],                      // unknown code
            &[][..],
        ] {
            assert!(check_nesting(bad, MAX_NESTING).is_err(), "{bad:02x?}");
        }
        // An array of symbols, a map and an array of lists are fine.
        for good in [
            &[0xe0, 6, 2, 0xa3, 1, b'a', 1, b'b'][..],
            &[0xc1, 5, 2, 0xa3, 1, b'k', 0x40][..],
            &[0xe0, 6, 2, 0xc0, 1, 0, 1, 0][..],
        ] {
            assert_eq!(check_nesting(good, MAX_NESTING), Ok(()), "{good:02x?}");
        }
    }

    #[test]
    fn frames_round_trip_and_bound_their_size() {
        let bytes = encode(3, &Performative::Close(Close::new(None)), b"").unwrap();
        let (f, n) = decode(&bytes, 65536).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(f.channel, 3);
        assert!(matches!(f.body, Body::Amqp(ref p, _) if matches!(**p, Performative::Close(_))));
        assert!(decode(&bytes[..n - 1], 65536).unwrap().is_none());
        assert!(decode(&[0, 1, 0, 0, 2, 0, 0, 0], 4096).is_err());
        assert!(decode(&[0, 0, 0, 4, 2, 0, 0, 0], 4096).is_err());
        let (hb, _) = decode(&HEARTBEAT, 512).unwrap().unwrap();
        assert!(matches!(hb.body, Body::Empty));
    }

    #[test]
    fn data_sections_round_trip_small_and_large() {
        for len in [0usize, 10, 255, 256, 70_000] {
            let data = vec![7u8; len];
            let msg = data_message(&data);
            assert_eq!(data_section(&msg).unwrap(), &data[..]);
        }
        assert!(data_section(&[0x00, 0x53, 0x77, 0x40]).is_err());
    }
}
