//! Splice two legs (house habit 4, `src/main.rs`): pump each direction; a half-close
//! is passed on and ends that direction only; once one direction has ended,
//! the other has a bounded linger; no data either way for the idle time ends
//! both; an error on either side aborts both; shutdown ends both after its
//! grace period. The first leg is the client's (sender, connecting client),
//! the second the listener's, so that [`SpliceEnd`] can say which side broke.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::leg::{Leg, LegEvent, LegReader, LegWriter};
use super::Side;

/// Timeouts of a splice.
#[derive(Debug, Clone, Copy)]
pub struct SpliceLimits {
    /// End both directions after this long without data (`None`: never).
    pub idle: Option<Duration>,
    /// After one direction ends, how long the other may go on.
    pub linger: Duration,
}

/// How a splice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Both directions closed.
    Clean,
    /// One direction closed and the other outlived the linger.
    Linger,
    /// No data either way for the idle time.
    Idle,
    /// The gateway's shutdown grace period ran out.
    Shutdown,
    /// A leg failed (reading from it or writing to it), with the error's kind.
    Broken(Side, std::io::ErrorKind),
}

impl SpliceEnd {
    /// The ending's name, as logged and as the `ending` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            SpliceEnd::Clean => "clean",
            SpliceEnd::Linger => "linger",
            SpliceEnd::Idle => "idle",
            SpliceEnd::Shutdown => "shutdown",
            SpliceEnd::Broken(Side::Client, _) => "broken_client",
            SpliceEnd::Broken(Side::Listener, _) => "broken_listener",
            SpliceEnd::Broken(Side::Gateway, _) => "broken_gateway",
        }
    }
}

impl std::fmt::Display for SpliceEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpliceEnd::Broken(_, kind) => write!(f, "{} ({kind})", self.label()),
            _ => f.write_str(self.label()),
        }
    }
}

/// What a splice carried and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpliceStats {
    /// Bytes from the first (client's) leg to the second.
    pub a_to_b: u64,
    /// Bytes from the second (listener's) leg to the first.
    pub b_to_a: u64,
    /// How it ended.
    pub end: SpliceEnd,
}

/// A direction that failed: on its reading end or its writing end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Broke {
    /// Reading from the leg the direction starts at.
    Reading(std::io::ErrorKind),
    /// Writing to the leg it ends at.
    Writing(std::io::ErrorKind),
    /// The gateway's own resources (a pipe, say).
    Gateway(std::io::ErrorKind),
}

impl Broke {
    /// A read error.
    pub(super) fn reading(e: std::io::Error) -> Broke {
        Broke::Reading(e.kind())
    }

    /// A write error.
    pub(super) fn writing(e: std::io::Error) -> Broke {
        Broke::Writing(e.kind())
    }
}

/// At most this many bytes, or chunks, go out in one batched write.
const BATCH_BYTES: usize = 256 * 1024;
const BATCH_CHUNKS: usize = 64;

async fn pump(
    mut from: Box<dyn LegReader>,
    mut to: Box<dyn LegWriter>,
    bytes: Arc<AtomicU64>,
    activity: Arc<AtomicU64>,
    epoch: Instant,
) -> Result<(), Broke> {
    loop {
        // Whatever else has already arrived goes out in the same write.
        let mut event = Some(from.read().await.map_err(Broke::reading)?);
        let (mut batch, mut size, mut closed, mut broken) = (Vec::new(), 0, None, None);
        while let Some(e) = event {
            match e {
                LegEvent::Chunk(c) => {
                    size += c.data.len();
                    batch.push(c);
                }
                LegEvent::Closed(info) => {
                    closed = Some(info);
                    break;
                }
            }
            if size >= BATCH_BYTES || batch.len() >= BATCH_CHUNKS {
                break;
            }
            event = match from.read_buffered() {
                Some(Ok(e)) => Some(e),
                // What came before the broken part still goes out.
                Some(Err(e)) => {
                    broken = Some(e);
                    None
                }
                None => None,
            };
        }
        if !batch.is_empty() {
            bytes.fetch_add(size as u64, Ordering::Relaxed);
            activity.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            to.write_batch(batch).await.map_err(Broke::writing)?;
        }
        if let Some(e) = broken {
            return Err(Broke::reading(e));
        }
        if let Some(info) = closed {
            to.close(info).await.map_err(Broke::writing)?;
            return Ok(());
        }
    }
}

/// Splice `a` and `b` until both directions end, or a limit or `shutdown`
/// (a future that resolves when the splice must stop) ends them.
pub async fn splice(
    a: Leg,
    b: Leg,
    limits: SpliceLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> SpliceStats {
    let clock = Activity::new();
    let (ab_bytes, ba_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let ab = pump(
        a.reader,
        b.writer,
        ab_bytes.clone(),
        clock.last.clone(),
        clock.epoch,
    );
    let ba = pump(
        b.reader,
        a.writer,
        ba_bytes.clone(),
        clock.last.clone(),
        clock.epoch,
    );
    let end = drive(ab, ba, limits, shutdown, &clock).await;
    SpliceStats {
        a_to_b: ab_bytes.load(Ordering::Relaxed),
        b_to_a: ba_bytes.load(Ordering::Relaxed),
        end,
    }
}

/// When data last moved, in milliseconds since `epoch`.
pub(super) struct Activity {
    pub(super) epoch: Instant,
    pub(super) last: Arc<AtomicU64>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Run the two directions of a splice to their end under the splice's
/// rules (half-close ends one direction, then the other has the linger; no
/// data for the idle time ends both; an error or `shutdown` ends both);
/// how it ended. `ab` runs from the client's leg to the listener's.
pub(super) async fn drive(
    ab: impl std::future::Future<Output = Result<(), Broke>>,
    ba: impl std::future::Future<Output = Result<(), Broke>>,
    limits: SpliceLimits,
    shutdown: impl std::future::Future<Output = ()>,
    clock: &Activity,
) -> SpliceEnd {
    tokio::pin!(ab, ba, shutdown);
    let (mut ab_done, mut ba_done) = (false, false);
    let mut linger_until: Option<Instant> = None;
    let tick = limits.idle.map_or(Duration::from_secs(3600), |i| {
        (i / 4).max(Duration::from_millis(10))
    });
    loop {
        tokio::select! {
            r = &mut ab, if !ab_done => {
                match r {
                    Err(Broke::Reading(k)) => return SpliceEnd::Broken(Side::Client, k),
                    Err(Broke::Writing(k)) => return SpliceEnd::Broken(Side::Listener, k),
                    Err(Broke::Gateway(k)) => return SpliceEnd::Broken(Side::Gateway, k),
                    Ok(()) => {}
                }
                ab_done = true;
                linger_until.get_or_insert(Instant::now() + limits.linger);
            }
            r = &mut ba, if !ba_done => {
                match r {
                    Err(Broke::Reading(k)) => return SpliceEnd::Broken(Side::Listener, k),
                    Err(Broke::Writing(k)) => return SpliceEnd::Broken(Side::Client, k),
                    Err(Broke::Gateway(k)) => return SpliceEnd::Broken(Side::Gateway, k),
                    Ok(()) => {}
                }
                ba_done = true;
                linger_until.get_or_insert(Instant::now() + limits.linger);
            }
            () = tokio::time::sleep_until(linger_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(86400))), if linger_until.is_some() => return SpliceEnd::Linger,
            () = tokio::time::sleep(tick), if limits.idle.is_some() => {
                let idle = limits.idle.unwrap_or(Duration::MAX);
                let last = Duration::from_millis(clock.last.load(Ordering::Relaxed));
                if clock.epoch.elapsed().saturating_sub(last) >= idle { return SpliceEnd::Idle; }
            }
            () = &mut shutdown => return SpliceEnd::Shutdown,
        }
        if ab_done && ba_done {
            return SpliceEnd::Clean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::leg::{BoxFuture, Chunk, CloseInfo};
    use super::*;
    use bytes::Bytes;
    use tokio::sync::mpsc;

    /// An in-memory leg: what the test pushes comes out of `reader`, what is
    /// written to `writer` goes to the test.
    struct ChanReader(mpsc::Receiver<std::io::Result<LegEvent>>);
    struct ChanWriter(mpsc::Sender<LegEvent>);

    impl LegReader for ChanReader {
        fn read(&mut self) -> BoxFuture<'_, std::io::Result<LegEvent>> {
            Box::pin(async move {
                self.0
                    .recv()
                    .await
                    .unwrap_or_else(|| Err(std::io::ErrorKind::BrokenPipe.into()))
            })
        }
    }

    impl LegWriter for ChanWriter {
        fn write(&mut self, chunk: Chunk) -> BoxFuture<'_, std::io::Result<()>> {
            Box::pin(async move {
                self.0
                    .send(LegEvent::Chunk(chunk))
                    .await
                    .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
            })
        }
        fn close(&mut self, info: Option<CloseInfo>) -> BoxFuture<'_, std::io::Result<()>> {
            Box::pin(async move {
                self.0
                    .send(LegEvent::Closed(info))
                    .await
                    .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
            })
        }
    }

    fn leg() -> (
        Leg,
        mpsc::Sender<std::io::Result<LegEvent>>,
        mpsc::Receiver<LegEvent>,
    ) {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        (
            Leg {
                reader: Box::new(ChanReader(in_rx)),
                writer: Box::new(ChanWriter(out_tx)),
            },
            in_tx,
            out_rx,
        )
    }

    fn chunk(s: &'static str, end: bool, text: bool) -> LegEvent {
        LegEvent::Chunk(Chunk {
            data: Bytes::from_static(s.as_bytes()),
            end,
            text,
        })
    }

    /// A leg whose events are all at hand from the start.
    struct ReadyReader(std::collections::VecDeque<LegEvent>);
    /// Records each write as its batch size, a close as 0.
    struct BatchWriter(Arc<std::sync::Mutex<Vec<usize>>>);

    impl LegReader for ReadyReader {
        fn read(&mut self) -> BoxFuture<'_, std::io::Result<LegEvent>> {
            Box::pin(async move {
                match self.0.pop_front() {
                    Some(e) => Ok(e),
                    None => std::future::pending().await,
                }
            })
        }
        fn read_buffered(&mut self) -> Option<std::io::Result<LegEvent>> {
            self.0.pop_front().map(Ok)
        }
    }

    impl LegWriter for BatchWriter {
        fn write(&mut self, _: Chunk) -> BoxFuture<'_, std::io::Result<()>> {
            unreachable!("the pump writes batches")
        }
        fn write_batch(&mut self, chunks: Vec<Chunk>) -> BoxFuture<'_, std::io::Result<()>> {
            self.0.lock().unwrap().push(chunks.len());
            Box::pin(async { Ok(()) })
        }
        fn close(&mut self, _: Option<CloseInfo>) -> BoxFuture<'_, std::io::Result<()>> {
            self.0.lock().unwrap().push(0);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn events_at_hand_go_out_in_bounded_batches_before_the_close() {
        let mut events: std::collections::VecDeque<LegEvent> = (0..BATCH_CHUNKS + 6)
            .map(|_| chunk("x", true, false))
            .collect();
        events.push_back(LegEvent::Closed(None));
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bytes = Arc::new(AtomicU64::new(0));
        pump(
            Box::new(ReadyReader(events)),
            Box::new(BatchWriter(writes.clone())),
            bytes.clone(),
            Arc::new(AtomicU64::new(0)),
            Instant::now(),
        )
        .await
        .unwrap();
        assert_eq!(*writes.lock().unwrap(), vec![BATCH_CHUNKS, 6, 0]);
        assert_eq!(bytes.load(Ordering::Relaxed), (BATCH_CHUNKS + 6) as u64);
    }

    /// A leg with chunks at hand and a broken frame behind them.
    struct BrokenReader(Vec<LegEvent>);

    impl LegReader for BrokenReader {
        fn read(&mut self) -> BoxFuture<'_, std::io::Result<LegEvent>> {
            Box::pin(async move { Ok(self.0.remove(0)) })
        }
        fn read_buffered(&mut self) -> Option<std::io::Result<LegEvent>> {
            Some(if self.0.is_empty() {
                Err(std::io::ErrorKind::InvalidData.into())
            } else {
                Ok(self.0.remove(0))
            })
        }
    }

    #[tokio::test]
    async fn chunks_before_a_broken_frame_still_go_out() {
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = pump(
            Box::new(BrokenReader(vec![
                chunk("a", true, false),
                chunk("b", true, false),
            ])),
            Box::new(BatchWriter(writes.clone())),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Instant::now(),
        )
        .await;
        assert_eq!(
            r.unwrap_err(),
            Broke::Reading(std::io::ErrorKind::InvalidData)
        );
        assert_eq!(*writes.lock().unwrap(), vec![2]);
    }

    const LIMITS: SpliceLimits = SpliceLimits {
        idle: Some(Duration::from_secs(60)),
        linger: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn half_close_keeps_the_other_direction_and_boundaries() {
        let (a, a_in, mut a_out) = leg();
        let (b, b_in, mut b_out) = leg();
        let task = tokio::spawn(splice(a, b, LIMITS, std::future::pending()));
        a_in.send(Ok(chunk("he", false, true))).await.unwrap();
        a_in.send(Ok(chunk("llo", true, true))).await.unwrap();
        assert_eq!(b_out.recv().await, Some(chunk("he", false, true)));
        assert_eq!(b_out.recv().await, Some(chunk("llo", true, true)));
        // b closes its direction with a code; a still sends.
        let bye = Some(CloseInfo {
            code: 4000,
            reason: "bye".into(),
        });
        b_in.send(Ok(LegEvent::Closed(bye.clone()))).await.unwrap();
        assert_eq!(a_out.recv().await, Some(LegEvent::Closed(bye)));
        a_in.send(Ok(chunk("late", true, false))).await.unwrap();
        assert_eq!(b_out.recv().await, Some(chunk("late", true, false)));
        a_in.send(Ok(LegEvent::Closed(None))).await.unwrap();
        assert_eq!(b_out.recv().await, Some(LegEvent::Closed(None)));
        let stats = task.await.unwrap();
        assert_eq!(stats.end, SpliceEnd::Clean);
        assert_eq!((stats.a_to_b, stats.b_to_a), (9, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn linger_bounds_a_half_closed_splice() {
        let (a, a_in, _a_out) = leg();
        let (b, _b_in, mut b_out) = leg();
        let start = Instant::now();
        let task = tokio::spawn(splice(a, b, LIMITS, std::future::pending()));
        a_in.send(Ok(LegEvent::Closed(None))).await.unwrap();
        assert_eq!(b_out.recv().await, Some(LegEvent::Closed(None)));
        let stats = task.await.unwrap();
        assert_eq!(stats.end, SpliceEnd::Linger);
        assert_eq!(start.elapsed(), LIMITS.linger);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_abort_and_shutdown_end_both() {
        let (a, _a_in, _a_out) = leg();
        let (b, _b_in, _b_out) = leg();
        let start = Instant::now();
        let stats = splice(a, b, LIMITS, std::future::pending()).await;
        assert_eq!(stats.end, SpliceEnd::Idle);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(60) && waited <= Duration::from_secs(76),
            "{waited:?}"
        );

        let (a, a_in, _a_out) = leg();
        let (b, _b_in, _b_out) = leg();
        a_in.send(Err(std::io::ErrorKind::ConnectionReset.into()))
            .await
            .unwrap();
        // The client's leg failed while being read; a failing write to the
        // listener's leg is the listener's.
        assert_eq!(
            splice(a, b, LIMITS, std::future::pending()).await.end,
            SpliceEnd::Broken(Side::Client, std::io::ErrorKind::ConnectionReset)
        );
        let (a, a_in, _a_out) = leg();
        let (b, _b_in, b_out) = leg();
        drop(b_out);
        a_in.send(Ok(chunk("x", true, false))).await.unwrap();
        let end = splice(a, b, LIMITS, std::future::pending()).await.end;
        assert!(
            matches!(end, SpliceEnd::Broken(Side::Listener, _)),
            "{end:?}"
        );
        assert_eq!(end.label(), "broken_listener");

        let (a, _a_in, _a_out) = leg();
        let (b, _b_in, _b_out) = leg();
        let start = Instant::now();
        let stats = splice(a, b, LIMITS, tokio::time::sleep(Duration::from_secs(3))).await;
        assert_eq!(stats.end, SpliceEnd::Shutdown);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
