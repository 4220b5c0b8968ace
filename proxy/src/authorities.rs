//! The rules that keep the outbound listener's authority table bounded whatever `Host` headers
//! clients send. The outbound listener learns authorities from requests, and each one it routes
//! holds a controller watch; left alone, a client could make the proxy watch every name it can
//! invent, and a full table would turn real services away. So:
//!
//! - a destination nobody used for `authority_idle_timeout` is dropped and its watch stopped;
//! - at most `max_authorities` are watched; to make room for a new one the proxy drops first an
//!   idle one, then one still waiting for its first snapshot, then the least recently used, so a
//!   flood of names nobody serves displaces itself and never a service in use;
//! - an authority the controller says does not exist holds no watch: it is remembered (as a keyed
//!   64-bit hash, whatever its length) for `unknown_authority_ttl` and answered from memory, at
//!   most `max_unknown_authorities` of them, the oldest forgotten first;
//! - gateway and static destinations are pinned: never dropped and not counted.
//!
//! Decisions here are pure functions of the table's state and a monotonic clock, tested alone;
//! `destinations.rs` applies them under its lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// Why a destination left the table (the `reason` of `proxy_outbound_authority_evictions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Unused for `authority_idle_timeout`.
    Idle,
    /// Made room for a new authority in a full table.
    Capacity,
}

impl Eviction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Capacity => "capacity",
        }
    }
}

/// What the eviction policy knows about one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// A gateway or static destination: never dropped.
    pub pinned: bool,
    /// Whether a snapshot has arrived for it.
    pub resolved: bool,
    /// When a request last used it, on the table's clock (any unit, the same for every argument
    /// here; the proxy counts microseconds, so requests in a row are told apart).
    pub last_used: u64,
}

impl Usage {
    /// Unused for at least `idle`, and not pinned.
    pub fn is_idle(&self, now: u64, idle: u64) -> bool {
        !self.pinned && now.saturating_sub(self.last_used) >= idle
    }

    /// The order destinations are dropped in to make room (lowest first): idle ones, then those
    /// still waiting for a first snapshot (a real service gets its snapshot within a round trip to
    /// the controller, so what waits longest is what nobody serves), then the least recently used.
    fn eviction_order(&self, now: u64, idle: u64) -> (u8, u64) {
        let class = if self.is_idle(now, idle) {
            0
        } else if !self.resolved {
            1
        } else {
            2
        };
        (class, self.last_used)
    }
}

/// The destination to drop to make room for a new one; `None` when every one is pinned.
pub(crate) fn victim<K>(entries: impl IntoIterator<Item = (K, Usage)>, now: u64, idle: u64) -> Option<K> {
    entries.into_iter().filter(|(_, u)| !u.pinned).min_by_key(|(_, u)| u.eviction_order(now, idle)).map(|(k, _)| k)
}

/// Authorities the controller said do not exist, each until its time to live runs out. Keys are
/// hashed with a per-process random key, so an entry costs the same for a 60 KiB `Host` as for a
/// short one and nobody can aim collisions at a real name (two names sharing a 64-bit hash by
/// chance, among ten thousand, happens about once in 10^11 tables).
pub(crate) struct NegativeCache {
    hasher: RandomState,
    /// Hash → expiry.
    until: HashMap<u64, u64>,
    /// (hash, expiry) in insertion order, which is expiry order as the time to live is fixed. An
    /// entry whose expiry no longer matches `until` is stale and skipped.
    order: VecDeque<(u64, u64)>,
    ttl: u64,
    cap: usize,
}

impl NegativeCache {
    pub fn new(ttl: u64, cap: usize) -> Self {
        Self { hasher: RandomState::new(), until: HashMap::new(), order: VecDeque::new(), ttl, cap }
    }

    fn key(&self, authority: &str) -> u64 {
        self.hasher.hash_one(authority)
    }

    /// Whether `authority` is known not to exist at `now`.
    pub fn contains(&self, authority: &str, now: u64) -> bool {
        self.until.get(&self.key(authority)).is_some_and(|until| now < *until)
    }

    /// Remembers that `authority` does not exist, from `now` for the time to live.
    pub fn insert(&mut self, authority: &str, now: u64) {
        if self.cap == 0 || self.ttl == 0 {
            return;
        }
        self.expire(now);
        let (key, until) = (self.key(authority), now.saturating_add(self.ttl));
        self.until.insert(key, until);
        self.order.push_back((key, until));
        while self.until.len() > self.cap || self.order.len() > 2 * self.cap {
            self.pop_oldest();
        }
    }

    /// Forgets every entry whose time is up.
    pub fn expire(&mut self, now: u64) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, until)) = self.order.pop_front()
            && self.until.get(&key) == Some(&until)
        {
            self.until.remove(&key);
        }
    }

    /// Whether some entry's time is up at `now` (a cheap check before taking a write lock).
    pub fn has_expired(&self, now: u64) -> bool {
        self.order.front().is_some_and(|(_, until)| *until <= now)
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u64 = 60_000;

    fn used(last_used: u64) -> Usage {
        Usage { pinned: false, resolved: true, last_used }
    }

    fn pending(last_used: u64) -> Usage {
        Usage { pinned: false, resolved: false, last_used }
    }

    #[test]
    fn an_idle_destination_goes_before_anything_in_use() {
        let now = 100_000;
        let entries = [("busy", used(now - 10)), ("waiting", pending(now - 5)), ("idle", used(now - IDLE))];
        assert_eq!(victim(entries, now, IDLE), Some("idle"));
    }

    #[test]
    fn a_flood_of_unserved_names_displaces_itself_not_a_service_in_use() {
        // A thousand names waiting for snapshots that will say "does not exist", each newer than
        // the last request to the real service: the oldest of them goes, never the service.
        let now = 100_000;
        let mut entries: Vec<(String, Usage)> =
            (0..1000).map(|i| (format!("junk-{i}"), pending(now - 1000 + i))).collect();
        entries.push(("web".into(), used(now - 2000)));
        assert_eq!(victim(entries.clone(), now, IDLE).as_deref(), Some("junk-0"));
        // With only real services left, the least recently used one makes room.
        entries.retain(|(_, u)| u.resolved);
        entries.push(("api".into(), used(now - 1)));
        assert_eq!(victim(entries, now, IDLE).as_deref(), Some("web"));
    }

    #[test]
    fn pinned_destinations_are_never_dropped_nor_idle() {
        let gateway = Usage { pinned: true, resolved: false, last_used: 0 };
        assert!(!gateway.is_idle(10 * IDLE, IDLE));
        assert_eq!(victim([("gateway", gateway)], 10 * IDLE, IDLE), None);
        assert_eq!(victim([("gateway", gateway), ("web", used(5))], 10, IDLE), Some("web"));
    }

    #[test]
    fn unknown_authorities_are_remembered_for_their_time_to_live() {
        let mut unknown = NegativeCache::new(5_000, 100);
        unknown.insert("junk.shop:80", 1_000);
        assert!(unknown.contains("junk.shop:80", 1_000));
        assert!(unknown.contains("junk.shop:80", 5_999));
        assert!(!unknown.contains("web.shop:80", 1_000));
        assert!(!unknown.contains("junk.shop:80", 6_000), "expired");
        assert!(unknown.has_expired(6_000));
        unknown.expire(6_000);
        assert_eq!(unknown.len(), 0);
    }

    #[test]
    fn the_negative_cache_forgets_the_oldest_past_its_cap_and_costs_the_same_per_name() {
        let mut unknown = NegativeCache::new(60_000, 1_000);
        let long = "x".repeat(60_000);
        for i in 0..10_000u64 {
            unknown.insert(&format!("{long}-{i}"), i);
        }
        assert_eq!(unknown.len(), 1_000);
        assert!(unknown.order.len() <= 2_000);
        assert!(!unknown.contains(&format!("{long}-0"), 10_000), "the oldest was forgotten");
        assert!(unknown.contains(&format!("{long}-9999"), 10_000));
    }

    #[test]
    fn a_name_seen_again_after_expiry_is_remembered_afresh() {
        let mut unknown = NegativeCache::new(1_000, 10);
        unknown.insert("junk.shop:80", 0);
        unknown.insert("junk.shop:80", 2_000);
        assert!(unknown.contains("junk.shop:80", 2_500));
        unknown.expire(2_500);
        assert_eq!(unknown.len(), 1);
    }

    #[test]
    fn a_zero_cap_or_time_to_live_remembers_nothing() {
        for (ttl, cap) in [(0, 10), (1_000, 0)] {
            let mut unknown = NegativeCache::new(ttl, cap);
            unknown.insert("junk.shop:80", 0);
            assert!(!unknown.contains("junk.shop:80", 0));
        }
    }
}
