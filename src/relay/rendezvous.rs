//! Pending rendezvous (`src/main.rs`, "Design"): a client parks under a fresh,
//! unguessable, single-use id; the listener's answer completes it once. The
//! table is bounded per path and in total; an entry lives exactly as long as
//! its [`Parked`] (dropped on timeout, on success, or when the client goes
//! away), so it needs no sweeper. Ids are [`Guid`]s: a peer's answer is
//! matched by the id's value, whatever GUID text form the peer wrote it in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::id::Guid;
use super::registry::normalize;
use super::{Answer, CoreError, Delivery};

#[derive(Default)]
struct Table {
    pending: HashMap<Guid, (String, oneshot::Sender<Answer>)>,
    per_path: HashMap<String, usize>,
}

impl Table {
    fn remove(&mut self, id: Guid) -> Option<oneshot::Sender<Answer>> {
        let (path, tx) = self.pending.remove(&id)?;
        if let Some(n) = self.per_path.get_mut(&path) {
            *n -= 1;
            if *n == 0 {
                self.per_path.remove(&path);
            }
        }
        Some(tx)
    }
}

/// A claimed rendezvous, answered once with [`Claim::send`].
pub struct Claim(oneshot::Sender<Answer>);

impl Claim {
    /// Deliver the answer; when the client has gone, the answer comes back.
    pub fn send(self, answer: Answer) -> Result<(), Answer> {
        self.0.send(answer)
    }
}

/// The table of pending rendezvous.
#[derive(Clone)]
pub struct Rendezvous {
    table: Arc<Mutex<Table>>,
    bounds: Arc<Bounds>,
}

/// The table's bounds, changed live by a reload.
struct Bounds {
    per_path: AtomicUsize,
    total: AtomicUsize,
}

/// A parked client: its id, the answer to wait for, and the delivery of
/// its request while that is still under way.
pub struct Parked {
    id: Guid,
    rx: oneshot::Receiver<Answer>,
    table: Arc<Mutex<Table>>,
    delivery: Option<Delivery>,
}

fn lock(m: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Parked {
    /// The rendezvous id (a random GUID).
    pub fn id(&self) -> Guid {
        self.id
    }

    /// The delivery of the client's request, to follow while waiting.
    pub fn deliver(&mut self, delivery: Delivery) {
        self.delivery = Some(delivery);
    }

    /// Wait for the answer, at most `limit`; a delivery that fails ends
    /// the wait with its error.
    pub async fn wait(&mut self, limit: Duration) -> Result<Answer, CoreError> {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                answer = &mut self.rx => {
                    return answer.map_err(|_| CoreError::ListenerGone);
                }
                delivered = async { self.delivery.as_mut()?.await.err() }, if self.delivery.is_some() => {
                    self.delivery = None;
                    if let Some(e) = delivered {
                        return Err(e);
                    }
                }
                () = &mut deadline => return Err(CoreError::Timeout),
            }
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

impl Rendezvous {
    /// A table bounded to `per_path` entries per path and `total` in all.
    pub fn new(per_path: usize, total: usize) -> Self {
        Rendezvous {
            table: Arc::new(Mutex::new(Table::default())),
            bounds: Arc::new(Bounds {
                per_path: AtomicUsize::new(per_path),
                total: AtomicUsize::new(total),
            }),
        }
    }

    /// Bound the table anew, for clients parked from now on.
    pub fn set_bounds(&self, per_path: usize, total: usize) {
        self.bounds.per_path.store(per_path, Ordering::Relaxed);
        self.bounds.total.store(total, Ordering::Relaxed);
    }

    /// Park a client for `path`.
    pub fn park(&self, path: &str) -> Result<Parked, CoreError> {
        let path = normalize(path);
        let id = Guid::random();
        let (tx, rx) = oneshot::channel();
        let mut t = lock(&self.table);
        if t.pending.len() >= self.bounds.total.load(Ordering::Relaxed) {
            return Err(CoreError::RendezvousFull("pending_total"));
        }
        if t.per_path.get(&path).copied().unwrap_or(0)
            >= self.bounds.per_path.load(Ordering::Relaxed)
        {
            return Err(CoreError::RendezvousFull("pending_per_path"));
        }
        *t.per_path.entry(path.clone()).or_default() += 1;
        t.pending.insert(id, (path, tx));
        drop(t);
        Ok(Parked {
            id,
            rx,
            table: self.table.clone(),
            delivery: None,
        })
    }

    /// Complete the rendezvous `id` with the listener's answer (once).
    pub fn complete(&self, id: Guid, answer: Answer) -> Result<(), CoreError> {
        self.take(id)
            .ok_or(CoreError::UnknownRendezvous)?
            .send(answer)
            .map_err(|_| CoreError::UnknownRendezvous)
    }

    /// Claim the rendezvous `id` now, to answer it later: no one else can
    /// use the id once it is taken.
    pub fn take(&self, id: Guid) -> Option<Claim> {
        lock(&self.table).remove(id).map(Claim)
    }

    /// Whether `id` is pending (without consuming it).
    pub fn is_pending(&self, id: Guid) -> bool {
        lock(&self.table).pending.contains_key(&id)
    }

    /// Number of pending entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.table).pending.len()
    }

    /// Whether nothing is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_bounds_apply_to_clients_parked_after_them() {
        let r = Rendezvous::new(1, 10);
        let _a = r.park("p").unwrap();
        assert_eq!(
            r.park("p").err(),
            Some(CoreError::RendezvousFull("pending_per_path"))
        );
        r.set_bounds(2, 10);
        let _b = r.park("p").unwrap();
        r.set_bounds(2, 2);
        assert_eq!(
            r.park("q").err(),
            Some(CoreError::RendezvousFull("pending_total"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn single_use_bounded_and_cleaned_on_drop() {
        let r = Rendezvous::new(2, 3);
        let mut a = r.park("p").unwrap();
        let b = r.park("P/").unwrap();
        assert_eq!(
            r.park("p").err(),
            Some(CoreError::RendezvousFull("pending_per_path"))
        );
        let _c = r.park("q").unwrap();
        assert_eq!(
            r.park("z").err(),
            Some(CoreError::RendezvousFull("pending_total"))
        );
        assert_ne!(a.id(), b.id());
        r.complete(a.id(), Box::new(7u32)).unwrap();
        let got = a.wait(Duration::from_secs(1)).await.unwrap();
        assert_eq!(*got.downcast::<u32>().unwrap(), 7);
        assert_eq!(
            r.complete(a.id(), Box::new(8u32)).err(),
            Some(CoreError::UnknownRendezvous)
        );
        let id = b.id();
        drop(b);
        assert!(!r.is_pending(id));
        assert_eq!(
            r.complete(id, Box::new(())).err(),
            Some(CoreError::UnknownRendezvous)
        );
        assert_eq!(r.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_times_out() {
        let r = Rendezvous::new(10, 10);
        let mut a = r.park("p").unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            a.wait(Duration::from_secs(30)).await.err(),
            Some(CoreError::Timeout)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        drop(a);
        assert!(r.is_empty());
    }
}
