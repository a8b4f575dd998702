//! Several gateway nodes behind one load balancer, sharing relays over NATS
//! (`src/main.rs`, "Where users outgrow one machine"): the cluster's
//! [`Routes`]. Like the core, it names no protocol type.
//!
//! - **Slots.** A listener claims a slot `l.{path}.{n}` (`n` below
//!   `listeners_per_path`) in the JetStream key-value bucket
//!   `{prefix}-listeners` with `create`, which fails when the slot is taken:
//!   the listener cap holds across nodes. Its node refreshes the slot every
//!   [`REFRESH`] and deletes it when the listener leaves; the bucket's
//!   maximum age [`EXPIRY`] removes the slots of a node that vanished.
//! - **Members.** Each node refreshes `n.{node}` (its advertised addresses)
//!   the same way.
//! - **Directory.** Every node watches the bucket ([`directory`]): listener
//!   counts, members, and the listeners a filter admits come from there.
//! - **Routing.** A request goes to one admitted listener, in turn per path
//!   (round robin over the directory's listeners, so each gets its share):
//!   straight into its queue when it is connected here, else as
//!   a NATS request on the listener's own subject `{prefix}.l.{node}.{id}`,
//!   which its node answers `ok`, `busy` or `gone` ([`wire::reply`]); "no
//!   responders" and silence move on to the next listener. The request
//!   names this node ([`Origin`]), so the listener dials here and the legs
//!   are spliced here; relayed streams never travel on NATS, only what the
//!   protocols carry inline (HTTP bodies up to 64 KiB, one-way messages).
//! - **Answers elsewhere.** A listener's answer that arrives whole on its
//!   control channel (an inline HTTP response) for a client held by
//!   another node is published to that node's `{prefix}.a.{node}`, which
//!   completes the client's rendezvous with it.
//! - **Multicast.** A message for every listener is published once on
//!   `{prefix}.e.{path}`, which each listener's node subscribes to once per
//!   listener: every listener gets it once.
//! - **Without NATS** (not yet connected, or lost), routes fall back to this
//!   node's own listeners, and `/readyz` says why.

pub mod directory;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::relay::leg::BoxFuture;
use crate::relay::registry::normalize;
use crate::relay::{
    Broadcast, ClusterView, CoreError, Delivery, Filter, Guid, ListenerGuard, ListenerInfo, Origin,
    Registry, Request, Routes,
};
use directory::Directory;
use wire::{Event, Routed, Slot};

/// How often a node refreshes its slots and its member key.
pub const REFRESH: Duration = Duration::from_secs(5);
/// The bucket's maximum age: a slot or member not refreshed for this long
/// is gone (the bound on a vanished node's registrations).
pub const EXPIRY: Duration = Duration::from_secs(15);
/// How long a node waits for another to answer a routed request.
const ROUTE_WAIT: Duration = Duration::from_secs(2);
/// Paths whose round-robin position is kept (past it, positions restart).
const MAX_TURNS: usize = 4096;
/// How long a listener's registration waits for the bus.
const CLAIM_WAIT: Duration = Duration::from_secs(3);

/// What a node needs to join (from `[cluster]`).
#[derive(Clone)]
pub struct Settings {
    /// NATS servers.
    pub nats: Vec<String>,
    /// This node's name.
    pub node: String,
    /// First token of subjects and the bucket's name.
    pub prefix: String,
    /// How parties reach this node.
    pub origin: Origin,
    /// Credentials and TLS.
    pub auth: crate::config::ClusterAuth,
    /// The listener cap per path (`[limits] listeners_per_path`).
    pub listeners_per_path: usize,
    /// This node's pending rendezvous, which answers from elsewhere complete.
    pub rendezvous: crate::relay::Rendezvous,
}

/// Why a node cannot join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `[cluster.auth] creds` does not read.
    #[error("cluster.auth.creds {}: {source}", .path.display())]
    Creds {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No NATS server could be reached.
    #[error("cluster.nats: {0}")]
    Connect(#[source] async_nats::ConnectError),
}

/// A node's membership of the cluster.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    settings: Settings,
    registry: Registry,
    /// The bucket, once reachable (and while the watch of it runs).
    store: Mutex<Option<kv::Store>>,
    directory: Mutex<Directory>,
    /// Queues of this node's listeners, by subject.
    local: Mutex<HashMap<String, mpsc::WeakSender<Request>>>,
    /// The round-robin position of each path.
    turns: Mutex<HashMap<String, usize>>,
    problem: Mutex<Option<String>>,
    last_error: Arc<Mutex<Option<String>>>,
    dropped: [AtomicU64; 3],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cluster {
    /// Start joining: returns at once; the node serves its own listeners
    /// until NATS answers, and joins by itself when it does.
    pub async fn start(settings: Settings, registry: Registry) -> Result<Cluster, ClusterError> {
        // The client's last error (a refused password, say), for /readyz.
        let last_error = Arc::new(Mutex::new(None::<String>));
        let noted = last_error.clone();
        let mut options = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let note = match &event {
                    async_nats::Event::Connected => Some(None),
                    async_nats::Event::ServerError(_) | async_nats::Event::ClientError(_) => {
                        Some(Some(event.to_string()))
                    }
                    _ => None,
                };
                if let Some(note) = note {
                    *lock(&noted) = note;
                }
                std::future::ready(())
            })
            .name(format!("relay-gateway {}", settings.node))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|n| Duration::from_millis(250 * (n as u64).min(8)))
            .request_timeout(Some(ROUTE_WAIT));
        let auth = &settings.auth;
        if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
            options = options.user_and_password(user.clone(), password.expose().to_owned());
        }
        if let Some(token) = &auth.token {
            options = options.token(token.expose().to_owned());
        }
        if let Some(creds) = &auth.creds {
            options =
                options
                    .credentials_file(creds)
                    .await
                    .map_err(|source| ClusterError::Creds {
                        path: creds.clone(),
                        source,
                    })?;
        }
        if let Some(ca) = &auth.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = options
            .connect(settings.nats.as_slice())
            .await
            .map_err(ClusterError::Connect)?;
        let inner = Arc::new(Inner {
            client,
            settings,
            registry,
            store: Mutex::new(None),
            directory: Mutex::new(Directory::default()),
            local: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
            problem: Mutex::new(Some("connecting to NATS".into())),
            last_error,
            dropped: Default::default(),
        });
        tokio::spawn(keep_bucket(inner.clone()));
        tokio::spawn(take_answers(inner.clone()));
        Ok(Cluster { inner })
    }
}

impl Inner {
    /// The bucket, when NATS is connected and the bucket reachable.
    fn store(&self) -> Option<kv::Store> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return None;
        }
        lock(&self.store).clone()
    }

    fn drop_message(&self, why: wire::Drop) {
        if let Some(n) = wire::Drop::ALL
            .iter()
            .position(|d| *d == why)
            .and_then(|i| self.dropped.get(i))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The listeners of `path` (normalized) in the directory that `filter`
    /// admits; none while the bus is away.
    fn admitted(&self, path: &str, filter: &Filter) -> Result<Vec<Slot>, CoreError> {
        match self.store() {
            Some(_) => lock(&self.directory).admitted(path, filter, SystemTime::now()),
            None => Err(CoreError::NoListener),
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        let mut p = lock(&self.problem);
        if *p != problem {
            match &problem {
                Some(why) => warn!(reason = %why, "cluster: serving this node's listeners only"),
                None => info!(node = self.settings.node, "cluster: joined"),
            }
            *p = problem;
        }
    }

    fn subject(&self, what: &str, rest: &str) -> String {
        format!("{}.{what}.{rest}", self.settings.prefix)
    }
}

/// Open (or create) the bucket, watch it into the directory and refresh
/// this node's member key; start over whenever NATS or the watch fails.
async fn keep_bucket(inner: Arc<Inner>) {
    let js = async_nats::jetstream::new(inner.client.clone());
    let replicas = if inner.settings.nats.len() >= 3 { 3 } else { 1 };
    let config = kv::Config {
        bucket: format!("{}-listeners", inner.settings.prefix),
        history: 1,
        max_age: EXPIRY,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        num_replicas: replicas,
        ..kv::Config::default()
    };
    let member = wire::encode(&wire::Member {
        origin: inner.settings.origin.clone(),
    });
    let member_key = directory::member_key(&inner.settings.node);
    loop {
        if inner.client.connection_state() != async_nats::connection::State::Connected {
            let why = match lock(&inner.last_error).as_deref() {
                Some(e) => format!("NATS is not connected ({e})"),
                None => "NATS is not connected".into(),
            };
            inner.set_problem(Some(why));
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let store = match js.create_key_value(config.clone()).await {
            Ok(s) => s,
            Err(e) => {
                inner.set_problem(Some(format!("NATS key-value bucket: {e}")));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                inner.set_problem(Some(format!("NATS key-value watch: {e}")));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        lock(&inner.directory).clear();
        if let Err(e) = store.put(&member_key, member.clone()).await {
            inner.set_problem(Some(format!("NATS key-value put: {e}")));
            continue;
        }
        *lock(&inner.store) = Some(store.clone());
        inner.set_problem(None);
        let mut beat = tokio::time::interval(REFRESH);
        beat.tick().await;
        loop {
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(e)) => apply(&inner, e),
                    Some(Err(e)) => {
                        inner.set_problem(Some(format!("NATS key-value watch: {e}")));
                        break;
                    }
                    None => {
                        inner.set_problem(Some("NATS key-value watch ended".into()));
                        break;
                    }
                },
                _ = beat.tick() => {
                    if let Err(e) = store.put(&member_key, member.clone()).await {
                        inner.set_problem(Some(format!("NATS key-value put: {e}")));
                        break;
                    }
                }
            }
        }
        *lock(&inner.store) = None;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Complete this node's rendezvous with answers other nodes carry here.
async fn take_answers(inner: Arc<Inner>) {
    let subject = inner.subject("a", &inner.settings.node);
    let Ok(mut answers) = inner.client.subscribe(subject).await else {
        warn!("cluster: cannot take answers from other nodes");
        return;
    };
    while let Some(msg) = answers.next().await {
        match wire::decode::<wire::Answered>(&msg.payload) {
            Ok(a) => {
                let _ = inner.settings.rendezvous.complete(a.id, Box::new(a.answer));
            }
            Err(why) => inner.drop_message(why),
        }
    }
}

fn apply(inner: &Inner, e: kv::Entry) {
    let mut directory = lock(&inner.directory);
    match e.operation {
        kv::Operation::Put => {
            let nanos = u64::try_from(e.created.unix_timestamp_nanos()).unwrap_or(0);
            let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos);
            if let Err(why) = directory.put(&e.key, &e.value, at) {
                debug!(key = e.key, "cluster: dropped a directory entry");
                inner.drop_message(why);
            }
        }
        kv::Operation::Delete | kv::Operation::Purge => directory.remove(&e.key),
    }
}

/// A slot held in the bucket; deleted when dropped.
struct Held {
    store: kv::Store,
    key: String,
    revision: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let (store, key) = (self.store.clone(), std::mem::take(&mut self.key));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.delete(key).await;
            });
        }
    }
}

enum Claim {
    Held(Box<Held>),
    Full,
    Failed(String),
}

/// Claim a free slot of `slot.path`: the ones the directory shows free
/// first, then the rest (the directory may lag).
async fn claim(inner: &Inner, store: &kv::Store, slot: &Slot) -> Claim {
    let cap = inner.settings.listeners_per_path;
    let taken = lock(&inner.directory).taken(&slot.path, SystemTime::now());
    let order = (0..cap)
        .filter(|n| !taken.contains(n))
        .chain((0..cap).filter(|n| taken.contains(n)));
    let value = wire::encode(slot);
    for n in order {
        let key = directory::slot_key(&slot.path, n);
        match store.create(&key, value.clone()).await {
            Ok(revision) => {
                return Claim::Held(Box::new(Held {
                    store: store.clone(),
                    key,
                    revision,
                }))
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
            Err(e) => return Claim::Failed(e.to_string()),
        }
    }
    Claim::Full
}

/// Keep `held` refreshed; claim a slot when there is none (registered
/// while NATS was away, or the slot was lost).
async fn keep_slot(inner: Arc<Inner>, slot: Slot, mut held: Option<Box<Held>>) {
    let value = wire::encode(&slot);
    let mut warned = false;
    loop {
        if held.is_some() {
            tokio::time::sleep(REFRESH).await;
        }
        let Some(store) = inner.store() else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        match held.as_mut() {
            Some(h) => match store.update(&h.key, value.clone(), h.revision).await {
                Ok(revision) => h.revision = revision,
                Err(e) => {
                    debug!(key = h.key, error = %e, "cluster: slot lost; claiming again");
                    held = None;
                }
            },
            None => match claim(&inner, &store, &slot).await {
                Claim::Held(h) => held = Some(h),
                Claim::Full => {
                    if !warned {
                        warn!(
                            path = slot.path,
                            "cluster: every listener slot is taken; this listener is served from this node only"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(REFRESH).await;
                }
                Claim::Failed(e) => {
                    debug!(path = slot.path, error = %e, "cluster: claiming a slot failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// This node's entry for one of its listeners, removed when dropped.
struct LocalEntry {
    inner: Arc<Inner>,
    subject: String,
}

impl Drop for LocalEntry {
    fn drop(&mut self) {
        lock(&self.inner.local).remove(&self.subject);
    }
}

/// Serve a listener's subject and its path's Multicast subject.
async fn serve(inner: Arc<Inner>, slot: Slot, queue: mpsc::WeakSender<Request>) {
    let _entry = LocalEntry {
        inner: inner.clone(),
        subject: slot.subject.clone(),
    };
    let events = inner.subject("e", &directory::token(&slot.path));
    let (Ok(mut requests), Ok(mut events)) = (
        inner.client.subscribe(slot.subject.clone()).await,
        inner.client.subscribe(events).await,
    ) else {
        return;
    };
    loop {
        tokio::select! {
            Some(msg) = requests.next() => {
                let answer = match wire::decode::<Routed>(&msg.payload) {
                    Ok(r) => offer(&queue, r.request, Duration::from_millis(r.wait_ms)).await,
                    Err(why) => {
                        inner.drop_message(why);
                        wire::reply::BAD
                    }
                };
                if let Some(to) = msg.reply {
                    let _ = inner.client.publish(to, answer.into()).await;
                }
            }
            Some(msg) = events.next() => match wire::decode::<Event>(&msg.payload) {
                Ok(e) if e.filter.admits(&slot.info) => {
                    let full = queue
                        .upgrade()
                        .is_some_and(|q| matches!(q.try_send(e.request), Err(mpsc::error::TrySendError::Full(_))));
                    if full {
                        inner.drop_message(wire::Drop::ListenerQueue);
                    }
                }
                Ok(_) => {}
                Err(why) => inner.drop_message(why),
            },
            else => return,
        }
    }
}

/// Offer `request` to each candidate in turn until one takes it: straight
/// into the queue of a listener of this node, else as a NATS request to the
/// listener's node. "No responders" or silence: that listener is gone.
async fn try_in_turn(
    inner: Arc<Inner>,
    candidates: Vec<Slot>,
    request: Request,
    wait: Duration,
) -> Result<(), CoreError> {
    let routed = wire::encode(&Routed {
        request: request.clone(),
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    });
    let mut busy = false;
    for slot in candidates {
        let local = lock(&inner.local).get(&slot.subject).cloned();
        let answer = match local {
            Some(queue) => offer(&queue, request.clone(), wait).await,
            None => match tokio::time::timeout(
                ROUTE_WAIT,
                inner.client.request(slot.subject.clone(), routed.clone()),
            )
            .await
            {
                Ok(Ok(reply)) if reply.payload == wire::reply::OK => wire::reply::OK,
                Ok(Ok(reply)) if reply.payload == wire::reply::BUSY => wire::reply::BUSY,
                _ => wire::reply::GONE,
            },
        };
        if answer == wire::reply::OK {
            return Ok(());
        }
        busy |= answer == wire::reply::BUSY;
    }
    Err(if busy {
        CoreError::ListenerBusy
    } else {
        CoreError::ListenerGone
    })
}

/// Queue `request` for a listener, waiting up to `wait` for room.
async fn offer(
    queue: &mpsc::WeakSender<Request>,
    request: Request,
    wait: Duration,
) -> &'static [u8] {
    let Some(queue) = queue.upgrade() else {
        return wire::reply::GONE;
    };
    match queue.try_send(request) {
        Ok(()) => wire::reply::OK,
        Err(mpsc::error::TrySendError::Closed(_)) => wire::reply::GONE,
        Err(mpsc::error::TrySendError::Full(_)) if wait.is_zero() => wire::reply::BUSY,
        Err(mpsc::error::TrySendError::Full(request)) => {
            match tokio::time::timeout(wait, queue.send(request)).await {
                Ok(Ok(())) => wire::reply::OK,
                Ok(Err(_)) => wire::reply::GONE,
                Err(_) => wire::reply::BUSY,
            }
        }
    }
}

impl Cluster {
    async fn register_here(
        &self,
        path: &str,
        info: ListenerInfo,
    ) -> Result<(ListenerGuard, mpsc::Receiver<Request>), CoreError> {
        let inner = &self.inner;
        let (mut guard, rx) = inner.registry.register(path, info.clone())?;
        let slot = Slot {
            path: normalize(path),
            node: inner.settings.node.clone(),
            subject: inner.subject(
                "l",
                &format!(
                    "{}.{}",
                    inner.settings.node,
                    Guid::random().to_string().replace('-', "")
                ),
            ),
            info,
        };
        lock(&inner.local).insert(slot.subject.clone(), guard.queue());
        let serving = tokio::spawn(serve(inner.clone(), slot.clone(), guard.queue()));
        guard.tie(serving.abort_handle());
        // With the bus up, the cap is checked cluster-wide now; without it,
        // the slot is claimed when the bus returns.
        let held = match inner.store() {
            Some(store) => {
                match tokio::time::timeout(CLAIM_WAIT, claim(inner, &store, &slot)).await {
                    Ok(Claim::Held(h)) => Some(h),
                    Ok(Claim::Full) => {
                        return Err(CoreError::ListenerQuota(inner.settings.listeners_per_path))
                    }
                    Ok(Claim::Failed(e)) => {
                        debug!(path = slot.path, error = %e, "cluster: claim failed; retrying later");
                        None
                    }
                    Err(_) => None,
                }
            }
            None => None,
        };
        let keeping = tokio::spawn(keep_slot(inner.clone(), slot, held));
        guard.tie(keeping.abort_handle());
        let _ = tokio::time::timeout(CLAIM_WAIT, inner.client.flush()).await;
        Ok((guard, rx))
    }

    /// Order the admitted listeners of `path` for this request (round robin
    /// per path); the delivery tries them in turn.
    fn deliver_anywhere(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
        wait: Duration,
    ) -> Result<Delivery, CoreError> {
        let inner = &self.inner;
        let path = normalize(path);
        let mut candidates = match inner.admitted(&path, filter) {
            Ok(c) => c,
            // Listeners of this node that are not in the directory yet
            // (NATS away, or the slot not yet seen) are still served.
            Err(e) => {
                return match Routes::deliver(&inner.registry, &path, filter, request, wait) {
                    Err(CoreError::NoListener) => Err(e),
                    other => other,
                }
            }
        };
        // Round robin per path over the listeners in a fixed order: every
        // listener gets its share, whichever node it is on.
        candidates.sort_by(|a, b| a.subject.cmp(&b.subject));
        let turn = {
            let mut turns = lock(&inner.turns);
            if turns.len() >= MAX_TURNS && !turns.contains_key(&path) {
                turns.clear();
            }
            let t = turns.entry(path.clone()).or_insert(0);
            *t = t.wrapping_add(1);
            *t
        };
        let start = turn % candidates.len().max(1);
        candidates.rotate_left(start);
        Ok(Box::pin(try_in_turn(
            inner.clone(),
            candidates,
            request,
            wait,
        )))
    }

    async fn broadcast_anywhere(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
    ) -> Result<Broadcast, CoreError> {
        let inner = &self.inner;
        let path = normalize(path);
        let Ok(admitted) = inner.admitted(&path, filter) else {
            return Routes::broadcast(&inner.registry, &path, filter, request).await;
        };
        let event = wire::encode(&Event {
            filter: filter.clone(),
            request,
        });
        let subject = inner.subject("e", &directory::token(&path));
        match inner.client.publish(subject, event).await {
            Ok(()) => Ok(Broadcast {
                delivered: admitted.len(),
                busy: 0,
            }),
            Err(_) => Err(CoreError::ListenerGone),
        }
    }
}

impl Routes for Cluster {
    fn register<'a>(
        &'a self,
        path: &'a str,
        info: ListenerInfo,
    ) -> BoxFuture<'a, Result<(ListenerGuard, mpsc::Receiver<Request>), CoreError>> {
        Box::pin(self.register_here(path, info))
    }

    fn deliver(
        &self,
        path: &str,
        filter: &Filter,
        request: Request,
        wait: Duration,
    ) -> Result<Delivery, CoreError> {
        self.deliver_anywhere(path, filter, request, wait)
    }

    fn broadcast<'a>(
        &'a self,
        path: &'a str,
        filter: &'a Filter,
        request: Request,
    ) -> BoxFuture<'a, Result<Broadcast, CoreError>> {
        Box::pin(self.broadcast_anywhere(path, filter, request))
    }

    fn origin(&self) -> Option<Origin> {
        Some(self.inner.settings.origin.clone())
    }

    fn answer<'a>(
        &'a self,
        node: &'a str,
        id: Guid,
        answer: crate::relay::Forwarded,
    ) -> BoxFuture<'a, Result<(), CoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let subject = inner.subject("a", node);
            let message = wire::encode(&wire::Answered { id, answer });
            inner
                .client
                .publish(subject, message)
                .await
                .map_err(|_| CoreError::UnknownRendezvous)
        })
    }

    fn elsewhere(&self, path: &str) -> Vec<ListenerInfo> {
        let inner = &self.inner;
        inner
            .admitted(&normalize(path), &Filter::default())
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.node != inner.settings.node)
            .map(|s| s.info)
            .collect()
    }

    fn paths_elsewhere(&self) -> Vec<String> {
        if self.inner.store().is_none() {
            return Vec::new();
        }
        lock(&self.inner.directory).paths(SystemTime::now())
    }

    fn node(&self) -> Option<&str> {
        Some(&self.inner.settings.node)
    }

    fn view(&self) -> Option<ClusterView> {
        let inner = &self.inner;
        let now = SystemTime::now();
        let connected = inner.store().is_some();
        let (mut members, listeners) = {
            let d = lock(&inner.directory);
            (d.members(now), d.counts(now))
        };
        if !members.contains(&inner.settings.node) {
            members.push(inner.settings.node.clone());
            members.sort();
        }
        let dropped: BTreeMap<&'static str, u64> = wire::Drop::ALL
            .iter()
            .zip(&inner.dropped)
            .map(|(d, n)| (d.label(), n.load(Ordering::Relaxed)))
            .collect();
        Some(ClusterView {
            node: inner.settings.node.clone(),
            members,
            connected,
            problem: if connected {
                None
            } else {
                lock(&inner.problem)
                    .clone()
                    .or_else(|| Some("NATS is not connected".into()))
            },
            listeners,
            dropped,
        })
    }
}
