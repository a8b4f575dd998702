//! The WCF relay over WebSocket (`wcf/PROTOCOL.md` §3.1, §11.5) on
//! `/$servicebus/websocket` of the HTTP endpoints: sub-protocol
//! `wsrelayedamqp` carries the AMQP control channel, `wsrelayedconnection` a
//! client's RelayedConnect or a listener's RelayedAccept (no preamble), both
//! through the same code as the TCP endpoints by way of [`WsStream`], a byte
//! stream whose every write is one unfragmented binary message (each AMQP
//! frame, length prefix and envelope its own message, as the SDK requires)
//! and which never pings. A Close is answered with an empty Close, as the SDK
//! does; a probe (an upgrade, then a TCP close) ends quietly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tracing::debug;

use super::Wcf;
use crate::frontend::hybrid::reply::{self, Body};
use crate::frontend::hybrid::Peer;
use crate::transport::stream::Conn;
use crate::transport::websocket::{self, WsRead, WsWrite};

/// The path both sub-protocols use.
pub const PATH: &str = "/$servicebus/websocket";
/// Largest message a writer sends, the size the SDK reads (§11.5).
const MAX_OUT: usize = 64 * 1024;
/// Largest message accepted.
const MAX_IN: usize = 256 * 1024;

/// Serve an upgrade on [`PATH`].
pub fn handle(wcf: &Wcf, mut req: Request<hyper::body::Incoming>, peer: Peer) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return reply::status(400, "this address takes WebSocket upgrades only");
    }
    let protocol = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let chosen = ["wsrelayedamqp", "wsrelayedconnection"]
        .into_iter()
        .find(|p| protocol.iter().any(|o| o == p));
    let Some(chosen) = chosen else {
        return reply::status(
            400,
            "Sec-WebSocket-Protocol must be wsrelayedamqp or wsrelayedconnection",
        );
    };
    let (mut response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(r) => r,
        Err(e) => return reply::status(400, &format!("invalid WebSocket upgrade: {e}")),
    };
    response
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(chosen));
    let wcf = wcf.clone();
    let tracked = wcf.shutdown.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        let Ok(ws) = upgrade.await else { return };
        let (read, write) = websocket::split(ws.into_inner(), MAX_IN);
        let stream = WsStream::new(read, write);
        match chosen {
            "wsrelayedamqp" => super::amqp::serve(wcf, Box::new(stream), peer.local, true).await,
            _ => {
                let conn = Conn::message_per_write(Box::new(stream));
                super::relayed::hello(wcf, conn, peer.tls, Some(peer.remote)).await
            }
        }
    });
    response.map(|_| reply::empty())
}

type WriteFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A WebSocket as a byte stream: reads yield message payloads in order;
/// every write is one binary message of at most 64 KiB.
pub struct WsStream {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
    write: WsWrite,
    writing: Option<(WriteFuture, usize)>,
    closed: Arc<AtomicBool>,
}

async fn send(write: WsWrite, frame: Frame<'static>) -> io::Result<()> {
    write.lock().await.write_frame(frame).await
}

impl WsStream {
    /// Start reading `read` into a bounded queue.
    pub fn new(mut read: WsRead, write: WsWrite) -> Self {
        let (tx, rx) = mpsc::channel(8);
        let closed = Arc::new(AtomicBool::new(false));
        let (w, c) = (write.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                match websocket::read_frame(&mut read, &w).await {
                    Ok(f) if f.opcode == OpCode::Close => {
                        if !c.swap(true, Ordering::SeqCst) {
                            let _ =
                                send(w.clone(), Frame::close_raw(Payload::Owned(Vec::new()))).await;
                        }
                        break;
                    }
                    Ok(f)
                        if matches!(
                            f.opcode,
                            OpCode::Binary | OpCode::Text | OpCode::Continuation
                        ) =>
                    {
                        if tx.send(Ok(f.data)).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "WebSocket read ended");
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        });
        WsStream {
            rx,
            pending: Bytes::new(),
            write,
            writing: None,
            closed,
        }
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => self.pending = b,
                Poll::Ready(Some(Err(e))) => {
                    // A transport EOF under the WebSocket reads as the end.
                    return Poll::Ready(if e.kind() == io::ErrorKind::UnexpectedEof {
                        Ok(())
                    } else {
                        Err(e)
                    });
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let part = self.pending.split_to(n);
        buf.put_slice(&part);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.writing.is_none() {
            let n = buf.len().min(MAX_OUT);
            let frame = Frame::binary(Payload::Owned(buf.get(..n).unwrap_or_default().to_vec()));
            self.writing = Some((Box::pin(send(self.write.clone(), frame)), n));
        }
        let Some((fut, n)) = self.writing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        let n = *n;
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                self.writing = None;
                Poll::Ready(r.map(|()| n))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writing.as_mut() {
            None => Poll::Ready(Ok(())),
            Some((fut, _)) => match fut.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    self.writing = None;
                    Poll::Ready(r)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if self.closed.swap(true, Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        let frame = Frame::close_raw(Payload::Owned(Vec::new()));
        self.writing = Some((Box::pin(send(self.write.clone(), frame)), 0));
        self.poll_flush(cx)
    }
}
