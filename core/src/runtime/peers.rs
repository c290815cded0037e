//! What the runtime remembers per address that worker streams come from: failed admissions
//! (to limit an address that keeps failing) and the streams still waiting for `StartStream`
//! (to cap how many one address may hold). Bounded in size whatever the traffic; records
//! expire and are pruned by one timer ([`super::Timer::Peers`]).

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::config::Limits;
use crate::ids::ConnId;

/// The address a peer is limited by: its IPv4 address, or the /64 of its IPv6 address (one
/// host commonly holds a whole /64). A peer string that is not `ip:port` is its own address.
pub(super) fn address_of(peer: &str) -> String {
    let Ok(addr) = peer.parse::<SocketAddr>() else { return peer.to_owned() };
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Failed admissions of one address.
#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    window_end: Instant,
    limited_until: Option<Instant>,
    /// When the record may be forgotten (its key in `expiry`).
    expires: Instant,
}

/// A limit that has just begun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Limited {
    /// Failures that caused it.
    pub(super) failures: u32,
    /// How long it lasts.
    pub(super) cooldown: Duration,
}

/// Per-address admission state.
#[derive(Debug, Default)]
pub(super) struct Peers {
    records: FxHashMap<String, Record>,
    /// `records` ordered by expiry: pruning and eviction order.
    expiry: BTreeSet<(Instant, String)>,
    /// Streams of each address waiting for `StartStream`, oldest first.
    waiting: FxHashMap<String, VecDeque<ConnId>>,
}

impl Peers {
    /// How long `address` stays limited, if it is.
    pub(super) fn limited(&self, address: &str, now: Instant) -> Option<Duration> {
        let until = self.records.get(address)?.limited_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed admission. Returns the limit when this failure starts one.
    pub(super) fn failed(&mut self, address: &str, now: Instant, limits: &Limits) -> Option<Limited> {
        if limits.max_admission_failures == 0 {
            return None;
        }
        let mut record = match self.records.get(address) {
            Some(r) => *r,
            None => {
                self.make_room(limits.max_tracked_addresses);
                Record { failures: 0, window_end: now, limited_until: None, expires: now }
            }
        };
        if record.limited_until.is_some_and(|t| t > now) {
            return None; // already limited: the cooldown does not grow with the flood
        }
        if record.window_end <= now || record.limited_until.is_some() {
            // A new window; an address whose cooldown is over starts afresh.
            record = Record { failures: 0, window_end: now + limits.admission_window, ..record };
            record.limited_until = None;
        }
        record.failures += 1;
        let mut started = None;
        if record.failures >= limits.max_admission_failures {
            record.limited_until = Some(now + limits.admission_cooldown);
            started = Some(Limited { failures: record.failures, cooldown: limits.admission_cooldown });
        }
        let expires = record.window_end.max(record.limited_until.unwrap_or(record.window_end));
        self.set(address, Record { expires, ..record });
        started
    }

    /// Forgets records that have expired.
    pub(super) fn prune(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiry.first()
            && *at <= now
        {
            let (_, address) = self.expiry.pop_first().expect("just seen");
            self.records.remove(&address);
        }
    }

    /// When the next record expires.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// A stream of `address` now waits for its `StartStream`. When the address already has
    /// `cap` waiting, returns the oldest, which the caller must close.
    pub(super) fn wait(&mut self, address: &str, conn: ConnId, cap: usize) -> Option<ConnId> {
        let queue = self.waiting.entry(address.to_owned()).or_default();
        let evicted = (cap > 0 && queue.len() >= cap).then(|| queue.pop_front()).flatten();
        queue.push_back(conn);
        evicted
    }

    /// A stream no longer waits (admitted, refused or gone).
    pub(super) fn done_waiting(&mut self, address: &str, conn: ConnId) {
        let Some(queue) = self.waiting.get_mut(address) else { return };
        if let Some(pos) = queue.iter().position(|c| *c == conn) {
            queue.remove(pos);
        }
        if queue.is_empty() {
            self.waiting.remove(address);
        }
    }

    /// Streams of `address` waiting for `StartStream`.
    #[cfg(test)]
    pub(super) fn waiting(&self, address: &str) -> usize {
        self.waiting.get(address).map_or(0, VecDeque::len)
    }

    /// Addresses with a failure record.
    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.records.len()
    }

    fn set(&mut self, address: &str, record: Record) {
        if let Some(old) = self.records.insert(address.to_owned(), record) {
            self.expiry.remove(&(old.expires, address.to_owned()));
        }
        self.expiry.insert((record.expires, address.to_owned()));
    }

    /// Drops the records that expire first until one more fits.
    fn make_room(&mut self, max: usize) {
        while self.records.len() >= max.max(1) {
            let Some((_, address)) = self.expiry.pop_first() else { return };
            self.records.remove(&address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ips_and_ipv6_slash_64s() {
        assert_eq!(address_of("192.0.2.7:5000"), "192.0.2.7");
        assert_eq!(address_of("[::ffff:192.0.2.7]:1"), "192.0.2.7");
        assert_eq!(address_of("[2001:db8:1:2:3:4:5:6]:443"), "2001:db8:1:2::/64");
        assert_eq!(address_of("[2001:db8:1:2:ffff::1]:443"), "2001:db8:1:2::/64");
        assert_eq!(address_of("not an address"), "not an address");
    }
}
