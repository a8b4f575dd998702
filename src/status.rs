//! What the admin status page shows beside the registry's listeners: live
//! figures per entity (active spliced connections, bytes each way) and the
//! most recent errors (refusals, rejected tokens, limit hits), kept by the
//! same calls that count the metrics. Entity names are the metrics' bounded
//! labels, and the error list keeps the last [`RECENT`] entries.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// How many recent errors are kept.
pub const RECENT: usize = 50;

/// Live figures of one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntityStats {
    /// Spliced connections open now.
    pub active: u64,
    /// Bytes from senders to listeners.
    pub to_listener: u64,
    /// Bytes from listeners to senders.
    pub to_sender: u64,
}

/// One recent error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEvent {
    /// When.
    pub at: SystemTime,
    /// The entity label.
    pub entity: String,
    /// The front end label.
    pub frontend: String,
    /// What happened.
    pub what: String,
}

/// The status store.
#[derive(Default)]
pub struct Status {
    entities: Mutex<HashMap<String, EntityStats>>,
    errors: Mutex<VecDeque<ErrorEvent>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Status {
    /// Change an entity's figures.
    pub fn update(&self, entity: &str, f: impl FnOnce(&mut EntityStats)) {
        f(lock(&self.entities).entry(entity.to_owned()).or_default());
    }

    /// Record an error, dropping the oldest beyond [`RECENT`].
    pub fn error(&self, entity: &str, frontend: &str, what: String) {
        let mut errors = lock(&self.errors);
        if errors.len() == RECENT {
            errors.pop_front();
        }
        errors.push_back(ErrorEvent {
            at: SystemTime::now(),
            entity: entity.to_owned(),
            frontend: frontend.to_owned(),
            what,
        });
    }

    /// The figures of every entity seen.
    pub fn entities(&self) -> HashMap<String, EntityStats> {
        lock(&self.entities).clone()
    }

    /// Recent errors, newest first.
    pub fn errors(&self) -> Vec<ErrorEvent> {
        lock(&self.errors).iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded_and_newest_first() {
        let s = Status::default();
        for i in 0..RECENT + 5 {
            s.error("e", "f", format!("e{i}"));
        }
        let e = s.errors();
        assert_eq!(e.len(), RECENT);
        assert_eq!(e[0].what, format!("e{}", RECENT + 4));
        s.update("e", |x| x.to_listener += 3);
        assert_eq!(s.entities()["e"].to_listener, 3);
    }
}
