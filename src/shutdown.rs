//! Shutdown passed in, not global (house habit 9, `src/main.rs`): a [`Trigger`] moves
//! every [`Shutdown`] from running to stopping (stop accepting, stop new
//! rendezvous) and, after the grace period, to drained (abort what is left).
//! Work in flight is counted by [`Tracked`] guards; the last one to drop
//! wakes [`Shutdown::finished`], which therefore never polls.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

const STOPPING: u8 = 1;
const DRAINED: u8 = 2;

/// The work in flight, and a wake-up for when it reaches none.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    none: Notify,
}

/// Observes the shutdown state, and counts the work still in flight.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<u8>, Arc<InFlight>);

/// Counts as work in flight while it lives.
pub struct Tracked(Arc<InFlight>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

/// Changes the shutdown state.
pub struct Trigger(watch::Sender<u8>);

/// A new pair.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(0);
    (Trigger(tx), Shutdown(rx, Arc::default()))
}

impl Trigger {
    /// Stop accepting new work.
    pub fn stop(&self) {
        self.0.send_if_modified(|s| {
            let changed = *s < STOPPING;
            *s = (*s).max(STOPPING);
            changed
        });
    }

    /// The grace period is over: end everything.
    pub fn drain(&self) {
        let _ = self.0.send(DRAINED);
    }
}

impl Shutdown {
    fn reach(&self, level: u8) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s >= level).await;
        }
    }

    /// Resolves when the gateway starts stopping.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.reach(STOPPING)
    }

    /// Resolves when the grace period is over.
    pub fn drained(&self) -> impl Future<Output = ()> + Send + 'static {
        self.reach(DRAINED)
    }

    /// Whether the gateway is stopping (or drained).
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() >= STOPPING
    }

    /// Count a connection, splice or listener as in flight until the guard drops.
    pub fn track(&self) -> Tracked {
        self.1.count.fetch_add(1, Ordering::AcqRel);
        Tracked(self.1.clone())
    }

    /// Wait until nothing is in flight, or the grace period is over.
    pub async fn finished(&self) {
        let drained = self.drained();
        tokio::pin!(drained);
        loop {
            // Registered before the count is read, so a last guard dropping
            // in between still wakes this wait.
            let none = self.1.none.notified();
            tokio::pin!(none);
            none.as_mut().enable();
            if self.1.count.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                () = &mut drained => return,
                () = &mut none => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::channel;

    #[tokio::test(start_paused = true)]
    async fn finished_wakes_when_the_last_guard_drops_or_the_grace_ends() {
        let (trigger, shutdown) = channel();
        // Nothing in flight: at once.
        shutdown.finished().await;
        // Two guards: done when the second one drops, not before.
        let (a, b) = (shutdown.track(), shutdown.track());
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.finished().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        drop(b);
        waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // A guard that never drops: done when the grace period is over.
        let _stuck = shutdown.track();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.finished().await }
        });
        trigger.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished());
        trigger.drain();
        waiting.await.unwrap();
    }
}
