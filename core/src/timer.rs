//! Timers as data: one deadline per key, ordered by time.
//!
//! The runtime arms and cancels deadlines as state changes; [`Timers::next`] is what
//! `poll_timeout` reports and [`Timers::pop_due`] hands back what expired.

use std::collections::BTreeSet;
use std::hash::Hash;
use std::time::Instant;

use rustc_hash::FxHashMap;

/// A set of deadlines, at most one per key.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: FxHashMap<K, Instant>,
}

impl<K: Ord + Hash + Copy> Timers<K> {
    pub(crate) fn new() -> Self {
        Timers { by_time: BTreeSet::new(), by_key: FxHashMap::default() }
    }

    /// Arms `key` at `at`, replacing any earlier deadline for it.
    pub(crate) fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Disarms `key`; does nothing if it was not armed.
    pub(crate) fn cancel(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
    }

    /// Whether `key` is armed.
    pub(crate) fn is_armed(&self, key: K) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest key due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.pop_first();
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of armed deadlines.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_and_rearm_replaces() {
        let t0 = crate::testkit::epoch();
        let mut timers = Timers::new();
        timers.set(1u32, t0 + Duration::from_secs(5));
        timers.set(2u32, t0 + Duration::from_secs(1));
        timers.set(1u32, t0 + Duration::from_secs(3));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(2)), Some(2));
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(2)), None);
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3)), Some(1));
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn cancel_removes() {
        let t0 = crate::testkit::epoch();
        let mut timers = Timers::new();
        timers.set(7u32, t0);
        timers.cancel(7);
        timers.cancel(8);
        assert_eq!(timers.next(), None);
        assert_eq!(timers.next(), None);
    }
}
