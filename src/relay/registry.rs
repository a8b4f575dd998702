//! Listeners per path (`src/main.rs`, "Design"): registration returns a guard
//! (dropping it unregisters) and a bounded channel of requests; delivery
//! picks a listener at random among those the filter admits
//! (`hybrid/PROTOCOL.md` §6.4), skipping full or closed ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::seq::SliceRandom;
use tokio::sync::mpsc;

use super::{CoreError, Request};

/// What the core knows of a listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListenerInfo {
    /// The listener's identity (its tracking id), for filters and status.
    pub identity: String,
    /// A front-end defined kind (for example a listener type).
    pub kind: String,
}

/// Which listeners a delivery may go to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// If not empty, only these identities.
    pub allowed: Vec<String>,
    /// Never these identities.
    pub disallowed: Vec<String>,
    /// If not empty, only listeners of these kinds.
    pub kinds: Vec<String>,
}

impl Filter {
    /// Whether a listener may get the request.
    pub fn admits(&self, info: &ListenerInfo) -> bool {
        (self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&info.identity)))
            && !self
                .disallowed
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&info.identity))
            && (self.kinds.is_empty() || self.kinds.contains(&info.kind))
    }
}

struct Entry {
    id: u64,
    info: ListenerInfo,
    tx: mpsc::Sender<Request>,
}

struct Inner {
    paths: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
    per_path: std::sync::atomic::AtomicUsize,
    queue: std::sync::atomic::AtomicUsize,
}

/// The registry of listeners.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// Keeps a listener registered; dropping it unregisters.
pub struct ListenerGuard {
    inner: Arc<Inner>,
    path: String,
    id: u64,
    queue: mpsc::WeakSender<Request>,
    tied: Vec<tokio::task::AbortHandle>,
}

impl ListenerGuard {
    /// The listener's request queue, for routes that feed it directly;
    /// weak, so that unregistering (or eviction) still closes it.
    pub fn queue(&self) -> mpsc::WeakSender<Request> {
        self.queue.clone()
    }

    /// Stop `task` when the listener unregisters.
    pub fn tie(&mut self, task: tokio::task::AbortHandle) {
        self.tied.push(task);
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        for task in &self.tied {
            task.abort();
        }
        let mut paths = lock(&self.inner.paths);
        if let Some(list) = paths.get_mut(&self.path) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                paths.remove(&self.path);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Paths compare case-insensitively and without surrounding slashes.
pub fn normalize(path: &str) -> String {
    path.trim_matches('/').to_ascii_lowercase()
}

impl Registry {
    /// A registry allowing `per_path` listeners, each with a queue of `queue`.
    pub fn new(per_path: usize, queue: usize) -> Self {
        Registry {
            inner: Arc::new(Inner {
                paths: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                per_path: std::sync::atomic::AtomicUsize::new(per_path),
                queue: std::sync::atomic::AtomicUsize::new(queue.max(1)),
            }),
        }
    }

    /// Register a listener for `path`.
    pub fn register(
        &self,
        path: &str,
        info: ListenerInfo,
    ) -> Result<(ListenerGuard, mpsc::Receiver<Request>), CoreError> {
        let path = normalize(path);
        let mut paths = lock(&self.inner.paths);
        let list = paths.entry(path.clone()).or_default();
        list.retain(|e| !e.tx.is_closed());
        let per_path = self.inner.per_path.load(Ordering::Relaxed);
        if list.len() >= per_path {
            return Err(CoreError::ListenerQuota(per_path));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.inner.queue.load(Ordering::Relaxed));
        let queue = tx.downgrade();
        list.push(Entry { id, info, tx });
        Ok((
            ListenerGuard {
                inner: self.inner.clone(),
                path,
                id,
                queue,
                tied: Vec::new(),
            },
            rx,
        ))
    }

    /// Change the listener cap and the queue size (for listeners
    /// registering from now on).
    pub fn set_limits(&self, per_path: usize, queue: usize) {
        self.inner.per_path.store(per_path, Ordering::Relaxed);
        self.inner.queue.store(queue.max(1), Ordering::Relaxed);
    }

    /// Unregister every listener of `path`: their request queues close,
    /// which tells each listener's task to close its connection.
    pub fn evict(&self, path: &str) -> usize {
        lock(&self.inner.paths)
            .remove(&normalize(path))
            .map_or(0, |l| l.len())
    }

    /// The listeners of `path` (for status and management).
    pub fn listeners(&self, path: &str) -> Vec<ListenerInfo> {
        lock(&self.inner.paths)
            .get(&normalize(path))
            .map(|l| {
                l.iter()
                    .filter(|e| !e.tx.is_closed())
                    .map(|e| e.info.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Paths that have live listeners.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.inner.paths)
            .iter()
            .filter(|(_, l)| l.iter().any(|e| !e.tx.is_closed()))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The senders of the live listeners of `path` that `filter` admits.
    fn admitted(
        &self,
        path: &str,
        filter: &Filter,
    ) -> Result<Vec<mpsc::Sender<Request>>, CoreError> {
        let paths = lock(&self.inner.paths);
        let Some(list) = paths.get(&normalize(path)) else {
            return Err(CoreError::NoListener);
        };
        let live: Vec<&Entry> = list.iter().filter(|e| !e.tx.is_closed()).collect();
        if live.is_empty() {
            return Err(CoreError::NoListener);
        }
        let admitted: Vec<_> = live
            .into_iter()
            .filter(|e| filter.admits(&e.info))
            .map(|e| e.tx.clone())
            .collect();
        if admitted.is_empty() {
            return Err(CoreError::NoListenerMatches);
        }
        Ok(admitted)
    }

    /// Hand `request` to one admitted listener of `path`, chosen at random.
    pub fn deliver(&self, path: &str, filter: &Filter, request: Request) -> Result<(), CoreError> {
        let mut candidates = self.admitted(path, filter)?;
        candidates.shuffle(&mut rand::rng());
        offer(&candidates, request).map_err(|failed| failed.0)
    }

    /// Like [`Registry::deliver`], but when every admitted listener's queue
    /// is full, wait up to `limit` for room in one of them: backpressure on
    /// the caller instead of a refusal.
    pub async fn deliver_waiting(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
        limit: std::time::Duration,
    ) -> Result<(), CoreError> {
        let mut candidates = self.admitted(path, filter)?;
        candidates.shuffle(&mut rand::rng());
        match offer(&candidates, request).map_err(|failed| *failed) {
            Ok(()) => Ok(()),
            Err((CoreError::ListenerBusy, request)) => {
                let Some(tx) = candidates.into_iter().find(|tx| !tx.is_closed()) else {
                    return Err(CoreError::ListenerGone);
                };
                match tokio::time::timeout(limit, tx.send(request)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(CoreError::ListenerGone),
                    Err(_) => Err(CoreError::ListenerBusy),
                }
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Hand a request built by `make` to every admitted listener of `path`
    /// that has room in its queue, at most once each. A listener whose queue
    /// is full misses this one; both counts are returned.
    pub fn broadcast(
        &self,
        path: &str,
        filter: &Filter,
        make: impl Fn() -> Request,
    ) -> Result<Broadcast, CoreError> {
        let mut sent = Broadcast::default();
        for tx in self.admitted(path, filter)? {
            match tx.try_send(make()) {
                Ok(()) => sent.delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => sent.busy += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        Ok(sent)
    }
}

/// Try each candidate in order; on failure the error and the request back.
fn offer(
    candidates: &[mpsc::Sender<Request>],
    request: Request,
) -> Result<(), Box<(CoreError, Request)>> {
    let mut request = request;
    let mut busy = false;
    for tx in candidates {
        match tx.try_send(request) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(r)) => {
                busy = true;
                request = r;
            }
            Err(mpsc::error::TrySendError::Closed(r)) => request = r,
        }
    }
    let e = if busy {
        CoreError::ListenerBusy
    } else {
        CoreError::ListenerGone
    };
    Err(Box::new((e, request)))
}

/// What a [`Registry::broadcast`] reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// Listeners that got the request.
    pub delivered: usize,
    /// Listeners skipped because their queue was full.
    pub busy: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_limits_apply_to_listeners_registering_after_them() {
        let reg = Registry::new(1, 1);
        let (first, rx1) = reg.register("p", info("a")).unwrap();
        assert_eq!(
            reg.register("p", info("b")).err(),
            Some(CoreError::ListenerQuota(1))
        );
        reg.set_limits(2, 8);
        let (_second, rx2) = reg.register("p", info("b")).unwrap();
        assert_eq!((rx1.max_capacity(), rx2.max_capacity()), (1, 8));
        drop(first);
    }

    #[test]
    fn broadcast_reaches_each_listener_once_and_skips_full_queues() {
        let reg = Registry::new(25, 1);
        let (_g1, mut r1) = reg.register("p", info("a")).unwrap();
        let (_g2, mut r2) = reg.register("p", info("b")).unwrap();
        let make = req;
        let all = Filter::default();
        assert_eq!(
            reg.broadcast("p", &all, make).unwrap(),
            Broadcast {
                delivered: 2,
                busy: 0
            }
        );
        assert_eq!(
            reg.broadcast("p", &all, make).unwrap(),
            Broadcast {
                delivered: 0,
                busy: 2
            }
        );
        assert!(r1.try_recv().is_ok() && r2.try_recv().is_ok());
        assert!(r1.try_recv().is_err() && r2.try_recv().is_err());
        assert_eq!(
            reg.broadcast("q", &all, make).err(),
            Some(CoreError::NoListener)
        );
    }

    fn info(id: &str) -> ListenerInfo {
        ListenerInfo {
            identity: id.into(),
            kind: "k".into(),
        }
    }

    fn req() -> Request {
        Request {
            id: super::super::Guid::random(),
            origin: None,
            ask: super::super::Ask::Message(bytes::Bytes::new()),
        }
    }

    #[test]
    fn quota_guard_and_balancing() {
        let r = Registry::new(3, 4);
        let (g1, mut rx1) = r.register("/Hc1/", info("a")).unwrap();
        let (_g2, mut rx2) = r.register("hc1", info("b")).unwrap();
        let (_g3, _rx3) = r.register("HC1", info("c")).unwrap();
        assert_eq!(
            r.register("hc1", info("d")).err(),
            Some(CoreError::ListenerQuota(3))
        );
        drop(g1);
        assert_eq!(r.listeners("hc1").len(), 2);
        assert!(rx1.try_recv().is_err());
        let (_g4, _rx4) = r.register("hc1", info("d")).unwrap();
        // Filters.
        let only_b = Filter {
            allowed: vec!["B".into()],
            ..Filter::default()
        };
        r.deliver("hc1", &only_b, req()).unwrap();
        assert!(rx2.try_recv().is_ok());
        let none = Filter {
            disallowed: vec!["b".into(), "c".into(), "d".into()],
            ..Filter::default()
        };
        assert_eq!(
            r.deliver("hc1", &none, req()).err(),
            Some(CoreError::NoListenerMatches)
        );
        assert_eq!(
            r.deliver("nope", &Filter::default(), req()).err(),
            Some(CoreError::NoListener)
        );
    }

    #[test]
    fn full_or_closed_listeners_are_skipped() {
        let r = Registry::new(25, 1);
        let (_g1, rx1) = r.register("p", info("a")).unwrap();
        let (_g2, mut rx2) = r.register("p", info("b")).unwrap();
        drop(rx1); // listener task gone, guard still held
        for _ in 0..1 {
            r.deliver("p", &Filter::default(), req()).unwrap();
        }
        assert!(rx2.try_recv().is_ok());
        r.deliver("p", &Filter::default(), req()).unwrap();
        // b's queue (1) is now full and a is closed.
        assert_eq!(
            r.deliver("p", &Filter::default(), req()).err(),
            Some(CoreError::ListenerBusy)
        );
        // With every listener's task gone there is no live listener.
        drop(rx2);
        assert_eq!(
            r.deliver("p", &Filter::default(), req()).err(),
            Some(CoreError::NoListener)
        );
    }

    #[test]
    fn spread_over_listeners() {
        let r = Registry::new(25, 64);
        let mut rxs: Vec<_> = (0..3)
            .map(|i| r.register("p", info(&i.to_string())).unwrap())
            .collect();
        for _ in 0..30 {
            r.deliver("p", &Filter::default(), req()).unwrap();
        }
        for (_, rx) in &mut rxs {
            let mut n = 0;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            assert!(n >= 1, "every listener gets at least one");
        }
    }
}
