//! A .NET Message Framing duplex session over a byte stream (`wcf/PROTOCOL.md §12`
//! §1, §4): records in and out through the `wcf` crate's decoder, envelopes
//! in the msbinsession1 encoding with one session dictionary per direction,
//! the TLS upgrade's switch of stream, and framing faults. Used by the
//! one-way front end (as the server) and by `forward` (both sides).

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wcf::framing::{Decoder, FaultCode, Record};
use wcf::nbfx::SessionDictionary;
use wcf::soap::Envelope;

use crate::transport::stream::{BoxIo, Transport};

/// One side of a session.
pub struct Session {
    io: Transport,
    buf: BytesMut,
    decoder: Decoder,
    incoming: SessionDictionary,
    outgoing: SessionDictionary,
    limits: wcf::Limits,
    secure: bool,
    /// Envelopes queued by [`Session::send_later`].
    later: Vec<u8>,
}

impl Session {
    /// A session on `io` reading records of at most `max_record` bytes.
    pub fn new(io: Transport, max_record: usize) -> Self {
        let limits = wcf::Limits::DEFAULT.with_max_message(max_record);
        Session {
            io,
            buf: BytesMut::with_capacity(8192),
            decoder: Decoder::new(limits),
            incoming: SessionDictionary::new(limits.max_session),
            outgoing: SessionDictionary::new(limits.max_session),
            limits,
            secure: false,
            later: Vec::new(),
        }
    }

    /// Whether the stream was upgraded to TLS.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The next record with its offset; `None` at a clean end of stream (or
    /// after an upgrade request, when the stream changes hands). A stream
    /// that ends inside a record is an error (the peer may still read a fault).
    pub async fn record(&mut self) -> io::Result<Option<(usize, Record)>> {
        loop {
            let at = self.decoder.offset();
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(r)) => return Ok(Some((at, r))),
                Ok(None) if self.decoder.is_upgraded() => return Ok(None),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            self.flush_later().await?;
            self.buf.reserve(8192);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a record",
                ));
            }
        }
    }

    /// Send records in one write (after any envelopes queued by
    /// [`Session::send_later`]).
    pub async fn send_all(&mut self, records: &[Record]) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.later);
        for r in records {
            r.encode(&mut out);
        }
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// Queue a correlated reply ([`wcf::relay::correlated_reply`]), to be
    /// written with the next send or before the session waits for input: a
    /// peer that pipelines gets its replies in one write per batch of its
    /// messages.
    pub fn send_later(&mut self, action: &str, relates_to: &str) {
        let payload = wcf::relay::correlated_reply_session(action, relates_to, &mut self.outgoing);
        Record::SizedEnvelope(Bytes::from(payload)).encode(&mut self.later);
    }

    async fn flush_later(&mut self) -> io::Result<()> {
        if self.later.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.later);
        self.io.write_all(&out).await?;
        self.io.flush().await
    }

    /// Send one record.
    pub async fn send(&mut self, record: &Record) -> io::Result<()> {
        self.send_all(std::slice::from_ref(record)).await
    }

    /// Send an envelope as a SizedEnvelope in the session encoding.
    pub async fn send_envelope(&mut self, env: &Envelope) -> io::Result<()> {
        let payload = env.to_session(&mut self.outgoing);
        self.send(&Record::SizedEnvelope(Bytes::from(payload)))
            .await
    }

    /// Decode a SizedEnvelope's payload with the incoming dictionary.
    pub fn decode(&mut self, payload: &[u8]) -> wcf::Result<Envelope> {
        Envelope::decode_session(payload, &mut self.incoming, self.limits)
    }

    /// Re-encode a received payload as msbin1 in one pass (no element tree),
    /// noting its Action and MessageID.
    pub fn transcode(&mut self, payload: &[u8]) -> wcf::Result<wcf::nbfx::transcode::Transcoded> {
        wcf::nbfx::transcode::session_to_msbin1(payload, &mut self.incoming, self.limits)
    }

    /// The next envelope; `Ok(None)` at End or end of stream.
    pub async fn receive(&mut self) -> io::Result<Option<Envelope>> {
        match self.record().await? {
            Some((_, Record::SizedEnvelope(p))) => self
                .decode(&p)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Some((_, Record::Fault(uri))) => Err(io::Error::other(format!("framing fault {uri}"))),
            Some((_, Record::End)) | None => Ok(None),
            Some((_, other)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected record {}", other.describe()),
            )),
        }
    }

    /// Send a framing fault, then close.
    pub async fn framing_fault(mut self, fault: FaultCode) {
        let _ = self.send(&fault.record()).await;
        let _ = self.io.shutdown().await;
    }

    /// Close the sending direction.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// For the TLS upgrade: the plain socket and the bytes read past the
    /// upgrade record (`None` if the session is not on plain TCP).
    pub fn take_tcp(&mut self) -> Option<(TcpStream, Bytes)> {
        let io = std::mem::replace(&mut self.io, Transport::Other(Box::new(tokio::io::empty())));
        match io {
            Transport::Tcp(t) => Some((t, std::mem::take(&mut self.buf).freeze())),
            other => {
                self.io = other;
                None
            }
        }
    }

    /// Continue the session on the upgraded (TLS) stream.
    pub fn upgraded(mut self, io: BoxIo) -> Self {
        self.io = Transport::Other(io);
        self.secure = true;
        self.decoder.resume_after_upgrade();
        self
    }
}
