//! A listener's dial-back opened before it is needed (`wcf/PROTOCOL.md`
//! §3.3): TCP, the preamble and, unless `--plain`, TLS, so that answering
//! a notice costs one RelayedAccept message instead of a connection and a
//! handshake. The gateway reads the RelayedAccept whenever it comes within
//! its handshake timeout (10 s by default), so a spare is used within
//! [`LIFETIME`] or closed. One is opened for each notice once its
//! RelayedAccept is written (not while idle), at most one at a time; a
//! spare the gateway has closed meanwhile is noticed when its RelayedAccept
//! gets no reply, and the caller dials anew.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::debug;

use super::Relay;
use crate::transport::stream::Conn;

/// How long a spare waits for a notice before it is closed.
pub const LIFETIME: Duration = Duration::from_secs(4);

/// The spare dial-back of a listener (shared by its clones).
#[derive(Clone, Default)]
pub struct Spares(Arc<Shared>);

#[derive(Default)]
struct Shared {
    slot: Mutex<Option<Spare>>,
    opening: AtomicBool,
    serial: AtomicU64,
}

struct Spare {
    addr: String,
    opened: Instant,
    serial: u64,
    conn: Conn,
}

impl Spares {
    /// The spare for `addr`, if one is open and young enough.
    pub fn take(&self, addr: &str) -> Option<Conn> {
        let spare = self
            .0
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        (spare.addr == addr && spare.opened.elapsed() < LIFETIME).then_some(spare.conn)
    }

    /// Open a spare to `addr` in the background, unless one is open or
    /// being opened; it is closed after [`LIFETIME`] if unused.
    pub fn refill(&self, relay: &Relay, addr: String) {
        let shared = self.0.clone();
        let occupied = shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if occupied || shared.opening.swap(true, Ordering::AcqRel) {
            return;
        }
        let relay = relay.clone();
        tokio::spawn(async move {
            let opened = relay.open_relayed(&addr, None).await;
            shared.opening.store(false, Ordering::Release);
            let conn = match opened {
                Ok(c) => c,
                Err(e) => return debug!(error = %e, "opening a spare dial-back failed"),
            };
            let serial = shared.serial.fetch_add(1, Ordering::Relaxed);
            *shared.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Spare {
                addr,
                opened: Instant::now(),
                serial,
                conn,
            });
            tokio::time::sleep(LIFETIME).await;
            let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|s| s.serial == serial) {
                *slot = None;
            }
        });
    }
}
