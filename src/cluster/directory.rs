//! This node's view of the cluster (`crate::cluster`): the listener slots
//! and member announcements of the key-value bucket, kept from a watch of
//! it. Each entry keeps the time the bucket stored it; one older than
//! [`super::EXPIRY`] no longer counts (the bucket drops it at that age too),
//! so a node that vanished leaves the view within that bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use super::wire::{self, Member, Slot};
use super::EXPIRY;
use crate::relay::{CoreError, Filter};

/// The key of slot `n` of `path` (normalized).
pub fn slot_key(path: &str, n: usize) -> String {
    format!("l.{}.{n}", token(path))
}

/// The key of a member's announcement.
pub fn member_key(node: &str) -> String {
    format!("n.{node}")
}

/// A path as one subject or key token: its bytes in hex, so that any path
/// (dots, spaces, wildcards) is safe.
pub fn token(path: &str) -> String {
    use std::fmt::Write;
    path.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Listener slots and members, as last seen.
#[derive(Default)]
pub struct Directory {
    slots: HashMap<String, (Slot, SystemTime)>,
    members: HashMap<String, (Member, SystemTime)>,
}

fn fresh(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at).map_or(true, |age| age < EXPIRY)
}

impl Directory {
    /// Take a value the bucket stored under `key` at `at`.
    pub fn put(&mut self, key: &str, value: &[u8], at: SystemTime) -> Result<(), wire::Drop> {
        if let Some(node) = key.strip_prefix("n.") {
            let member: Member = wire::decode(value)?;
            self.members.insert(node.to_owned(), (member, at));
        } else if key.starts_with("l.") {
            let slot: Slot = wire::decode(value)?;
            if slot_key(&slot.path, slot_number(key).unwrap_or(usize::MAX)) != key {
                return Err(wire::Drop::Malformed);
            }
            self.slots.insert(key.to_owned(), (slot, at));
        } else {
            return Err(wire::Drop::Malformed);
        }
        Ok(())
    }

    /// The bucket deleted `key`.
    pub fn remove(&mut self, key: &str) {
        self.slots.remove(key);
        if let Some(node) = key.strip_prefix("n.") {
            self.members.remove(node);
        }
    }

    /// Forget everything (before a new watch replays the bucket).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.members.clear();
    }

    fn live(&self, now: SystemTime) -> impl Iterator<Item = (&String, &Slot)> {
        self.slots
            .iter()
            .filter(move |(_, (_, at))| fresh(*at, now))
            .map(|(k, (s, _))| (k, s))
    }

    /// The listeners of `path` that `filter` admits.
    pub fn admitted(
        &self,
        path: &str,
        filter: &Filter,
        now: SystemTime,
    ) -> Result<Vec<Slot>, CoreError> {
        let of_path: Vec<&Slot> = self
            .live(now)
            .map(|(_, s)| s)
            .filter(|s| s.path == path)
            .collect();
        if of_path.is_empty() {
            return Err(CoreError::NoListener);
        }
        let admitted: Vec<Slot> = of_path
            .into_iter()
            .filter(|s| filter.admits(&s.info))
            .cloned()
            .collect();
        if admitted.is_empty() {
            return Err(CoreError::NoListenerMatches);
        }
        Ok(admitted)
    }

    /// Listeners per path.
    pub fn counts(&self, now: SystemTime) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, s) in self.live(now) {
            *counts.entry(s.path.clone()).or_default() += 1;
        }
        counts
    }

    /// The paths with live listeners.
    pub fn paths(&self, now: SystemTime) -> Vec<String> {
        let mut paths: Vec<String> = self.live(now).map(|(_, s)| s.path.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The slot numbers of `path` in use.
    pub fn taken(&self, path: &str, now: SystemTime) -> HashSet<usize> {
        self.live(now)
            .filter(|(_, s)| s.path == path)
            .filter_map(|(k, _)| slot_number(k))
            .collect()
    }

    /// The members seen alive, sorted.
    pub fn members(&self, now: SystemTime) -> Vec<String> {
        let mut names: Vec<String> = self
            .members
            .iter()
            .filter(|(_, (_, at))| fresh(*at, now))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

fn slot_number(key: &str) -> Option<usize> {
    key.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::relay::{ListenerInfo, Origin};

    fn slot(path: &str, node: &str, identity: &str) -> Vec<u8> {
        wire::encode(&Slot {
            path: path.into(),
            node: node.into(),
            subject: format!("relay.l.{node}.{identity}"),
            info: ListenerInfo {
                identity: identity.into(),
                kind: "hybrid".into(),
            },
        })
        .to_vec()
    }

    #[test]
    fn slots_count_filter_and_expire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut d = Directory::default();
        d.put(&slot_key("p", 0), &slot("p", "a", "x"), t0).unwrap();
        d.put(
            &slot_key("p", 1),
            &slot("p", "b", "y"),
            t0 + Duration::from_secs(10),
        )
        .unwrap();
        d.put(
            &member_key("a"),
            &wire::encode(&Member {
                origin: Origin::default(),
            }),
            t0,
        )
        .unwrap();
        let now = t0 + Duration::from_secs(11);
        assert_eq!(d.counts(now).get("p"), Some(&2));
        assert_eq!(d.paths(now), vec!["p".to_owned()]);
        assert_eq!(d.taken("p", now), HashSet::from([0, 1]));
        assert_eq!(d.members(now), vec!["a".to_owned()]);
        let only_y = Filter {
            allowed: vec!["Y".into()],
            ..Filter::default()
        };
        let got = d.admitted("p", &only_y, now).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].node, "b");
        let none = Filter {
            disallowed: vec!["x".into(), "y".into()],
            ..Filter::default()
        };
        assert_eq!(
            d.admitted("p", &none, now).err(),
            Some(CoreError::NoListenerMatches)
        );
        assert_eq!(
            d.admitted("q", &none, now).err(),
            Some(CoreError::NoListener)
        );
        // At EXPIRY after it was stored, a slot no longer counts.
        let later = t0 + EXPIRY;
        assert_eq!(d.counts(later).get("p"), Some(&1));
        assert!(d.members(later).is_empty());
        d.remove(&slot_key("p", 1));
        assert_eq!(
            d.admitted("p", &Filter::default(), later).err(),
            Some(CoreError::NoListener)
        );
    }

    #[test]
    fn values_that_do_not_fit_their_key_are_refused() {
        let t = SystemTime::now();
        let mut d = Directory::default();
        assert_eq!(d.put("l.70.0", b"{", t), Err(wire::Drop::Malformed));
        // A slot claiming another path than its key names.
        assert_eq!(
            d.put(&slot_key("q", 0), &slot("p", "a", "x"), t),
            Err(wire::Drop::Malformed)
        );
        assert_eq!(d.put("z.1", b"{}", t), Err(wire::Drop::Malformed));
        assert_eq!(token("a.b *"), "612e62202a");
    }
}
