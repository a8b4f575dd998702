//! Shutdown passed in, not global (house habit 9, `src/main.rs`): a [`Trigger`] moves
//! every [`Shutdown`] from running to stopping (stop accepting, stop new
//! rendezvous) and, after the grace period, to drained (abort what is left).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

const STOPPING: u8 = 1;
const DRAINED: u8 = 2;

/// Observes the shutdown state, and counts the work still in flight.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<u8>, Arc<AtomicUsize>);

/// Counts as work in flight while it lives.
pub struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Changes the shutdown state.
pub struct Trigger(watch::Sender<u8>);

/// A new pair.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(0);
    (Trigger(tx), Shutdown(rx, Arc::new(AtomicUsize::new(0))))
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
        self.1.fetch_add(1, Ordering::Relaxed);
        Tracked(self.1.clone())
    }

    /// Wait until nothing is in flight, or the grace period is over.
    pub async fn finished(&self) {
        let drained = self.drained();
        tokio::pin!(drained);
        while self.1.load(Ordering::Relaxed) > 0 {
            tokio::select! {
                () = &mut drained => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}
