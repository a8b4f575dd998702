//! Zero-copy splice of two plain TCP sockets (Linux `splice(2)` through one
//! pipe per direction): the bytes go socket -> pipe -> socket inside the
//! kernel and never reach user space. A direction starts by copying through
//! a small buffer, which costs less per call for the small messages of
//! request/response traffic, and moves to the pipe (made then) the first
//! time a read fills that buffer. Same rules as [`super::splice`]:
//! end of stream on one side becomes a write shutdown on the other, the
//! remaining direction then has the linger, idle and shutdown end both.
//! Used when both legs are plain TCP with nothing read ahead; anything else
//! goes through the leg splice.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::net::Shutdown;
use rustix::pipe::{pipe_with, splice as move_bytes, PipeFlags, SpliceFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::splice::{drive, Activity, Broke, SpliceLimits, SpliceStats};

/// Bytes moved per `splice(2)` call (and the pipe's capacity).
const PIPE_SIZE: usize = 1 << 20;
/// The copying buffer; a read that fills it switches to the pipe.
const COPY_SIZE: usize = 4096;

/// Move one direction until end of stream, then shut `to` down for writing.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    count: &AtomicU64,
    clock: &Activity,
) -> Result<(), Broke> {
    if copy_phase(&mut from, &mut to, count, clock).await? == Phase::Bulk {
        splice_phase(from.as_ref(), to.as_ref(), count, clock).await?;
    }
    // Peers may already have closed; a failed shutdown changes nothing.
    let _ = rustix::net::shutdown(to.as_ref(), Shutdown::Write);
    Ok(())
}

/// How a phase of [`pump`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// End of stream.
    Ended,
    /// A read filled the copying buffer: bulk traffic.
    Bulk,
}

fn note(n: usize, count: &AtomicU64, clock: &Activity) {
    count.fetch_add(n as u64, Ordering::Relaxed);
    clock
        .last
        .store(clock.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// Copy through a small buffer (allocated when data first arrives). A
/// short read tells the runtime the socket is drained, so a message costs
/// one read and one write.
async fn copy_phase(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    count: &AtomicU64,
    clock: &Activity,
) -> Result<Phase, Broke> {
    let mut buf = Vec::new();
    loop {
        from.as_ref().readable().await.map_err(Broke::reading)?;
        buf.resize(COPY_SIZE, 0);
        let n = from.read(&mut buf).await.map_err(Broke::reading)?;
        if n == 0 {
            return Ok(Phase::Ended);
        }
        note(n, count, clock);
        to.write_all(buf.get(..n).unwrap_or_default())
            .await
            .map_err(Broke::writing)?;
        if n == COPY_SIZE {
            return Ok(Phase::Bulk);
        }
    }
}

/// Move bytes through a pipe in the kernel until end of stream.
async fn splice_phase(
    from: &TcpStream,
    to: &TcpStream,
    count: &AtomicU64,
    clock: &Activity,
) -> Result<(), Broke> {
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
        .map_err(|e| Broke::Gateway(io::Error::from(e).kind()))?;
    // A larger pipe moves more per call; the default (64 KiB) still works.
    let size = rustix::pipe::fcntl_setpipe_size(&pipe_in, PIPE_SIZE).unwrap_or(64 * 1024);
    let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                move_bytes(from, None, &pipe_in, None, size, flags).map_err(io::Error::from)
            })
            .await
            .map_err(Broke::reading)?;
        if n == 0 {
            return Ok(());
        }
        note(n, count, clock);
        let mut left = n;
        while left > 0 {
            left -= to
                .async_io(Interest::WRITABLE, || {
                    move_bytes(&pipe_out, None, to, None, left, flags).map_err(io::Error::from)
                })
                .await
                .map_err(Broke::writing)?;
        }
    }
}

/// Splice `a` and `b` in the kernel until both directions end, or a limit or
/// `shutdown` ends them.
pub async fn splice_tcp(
    mut a: TcpStream,
    mut b: TcpStream,
    limits: SpliceLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> SpliceStats {
    let clock = Activity::new();
    let (ab, ba) = (AtomicU64::new(0), AtomicU64::new(0));
    let ((a_read, a_write), (b_read, b_write)) = (a.split(), b.split());
    let end = drive(
        pump(a_read, b_write, &ab, &clock),
        pump(b_read, a_write, &ba, &clock),
        limits,
        shutdown,
        &clock,
    )
    .await;
    SpliceStats {
        a_to_b: ab.load(Ordering::Relaxed),
        b_to_a: ba.load(Ordering::Relaxed),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn bytes_and_half_closes_cross_in_both_directions() {
        let (mut client, gw_a) = pair().await;
        let (gw_b, mut server) = pair().await;
        let limits = SpliceLimits {
            idle: None,
            linger: Duration::from_secs(5),
        };
        let task = tokio::spawn(splice_tcp(gw_a, gw_b, limits, std::future::pending()));
        // Small writes first (copied), then bulk (moved to the pipe midway).
        let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            for i in 0..100u8 {
                client.write_all(&[i; 3]).await.unwrap();
            }
            client.write_all(&big).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        let small: Vec<u8> = (0..100u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(got.len(), small.len() + sent.len());
        assert!(got[..300] == small[..] && got[300..] == sent[..]);
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let stats = task.await.unwrap();
        assert_eq!(
            (stats.a_to_b, stats.b_to_a, stats.end),
            (300 + (3 << 20), 5, super::super::splice::SpliceEnd::Clean)
        );
    }
}
