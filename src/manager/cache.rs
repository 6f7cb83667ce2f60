//! The token cache: what this process knows without asking the store, in one place and bounded.
//!
//! - cached tokens, each fresh until a deadline on the clock's monotonic time: its refresh point, or the moment the
//!   store must be asked again whether it still holds the token, whichever comes first. The hot path is one map
//!   lookup, one monotonic clock read and a reference-count increment;
//! - one flight lock per connection being refreshed, removed when its flight ends;
//! - tokens a store failure held back, written again on the next call.
//!
//! Entries nobody asked for in a while are dropped as the cache grows, or at the latest one idle period later, and the
//! table shrinks with them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::connection::{Connection, ConnectionId};
use crate::secret::AccessToken;
use crate::sync::{lock, read, write};

/// The cache looks for idle entries whenever it grows past this size (or twice what the last look kept).
const PRUNE_ABOVE: usize = 1_024;
/// An entry not checked against the store for this long (or twice the revalidation period, if longer) is idle.
const IDLE: Duration = Duration::from_secs(600);

/// One flight lock per connection: callers of one process refresh a connection one at a time.
pub(crate) type Flight = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug)]
struct Entry {
    token: AccessToken,
    /// When HubSpot stops accepting the token; `None`: never.
    expires_at: Option<SystemTime>,
    /// Monotonic time of the refresh point; `None`: never refreshed (a private app's token).
    refresh_at: Option<Duration>,
    /// Monotonic time the store was last seen holding the token.
    checked_at: Duration,
    /// `min(refresh_at, checked_at + revalidate)`: until then the token is served without asking anyone.
    fresh_until: Duration,
}

#[derive(Debug)]
struct Entries {
    map: Map<Entry>,
    prune_above: usize,
    /// Monotonic time of the last look for idle entries.
    pruned_at: Duration,
}

/// The maps' hasher: foldhash, seeded at random per map. A cached call hashes the id once; SipHash (the standard
/// library's default) cost more than the rest of the call.
type Map<V> = HashMap<ConnectionId, V, foldhash::fast::RandomState>;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct TokenCache {
    revalidate: Duration,
    entries: RwLock<Entries>,
    flights: Mutex<Map<Flight>>,
    unsaved: Mutex<Map<Connection>>,
    has_unsaved: AtomicBool,
}

impl TokenCache {
    /// A cache whose tokens are re-checked against the store at least every `revalidate`.
    pub(crate) fn new(revalidate: Duration) -> Self {
        Self {
            revalidate,
            entries: RwLock::new(Entries { map: Map::default(), prune_above: PRUNE_ABOVE, pruned_at: Duration::ZERO }),
            flights: Mutex::new(Map::default()),
            unsaved: Mutex::new(Map::default()),
            has_unsaved: AtomicBool::new(false),
        }
    }

    /// The token, if it is fresh at monotonic time `mono`: neither due nor unchecked for too long. The hot path.
    pub(crate) fn fresh(&self, id: &ConnectionId, mono: Duration) -> Option<AccessToken> {
        let entries = read(&self.entries);
        let entry = entries.map.get(id)?;
        (mono < entry.fresh_until).then(|| entry.token.clone())
    }

    /// The token while HubSpot still accepts it at `now`, due or not, checked or not.
    pub(crate) fn valid(&self, id: &ConnectionId, now: SystemTime) -> Option<AccessToken> {
        let entries = read(&self.entries);
        let entry = entries.map.get(id)?;
        entry.expires_at.is_none_or(|e| now < e).then(|| entry.token.clone())
    }

    /// Caches `c`'s token, just read from (or written to) the store at `now` / monotonic `mono`, until
    /// `refresh_at` (`None`: never due).
    pub(crate) fn put(&self, c: &Connection, refresh_at: Option<SystemTime>, now: SystemTime, mono: Duration) {
        let refresh_at = refresh_at.map(|at| mono.saturating_add(at.duration_since(now).unwrap_or_default()));
        let mut entry = Entry {
            token: c.access_token.clone(),
            expires_at: c.expires_at,
            refresh_at,
            checked_at: mono,
            fresh_until: Duration::ZERO,
        };
        entry.fresh_until = self.fresh_until(&entry);
        let mut entries = write(&self.entries);
        let idle = IDLE.max(self.revalidate.saturating_mul(2));
        // Look for idle entries when the map outgrows its bound, or once per idle period while it is larger than
        // the least bound (so a cache that stops growing still lets go of connections nobody uses).
        let full = entries.map.len() >= entries.prune_above;
        let due = entries.map.len() > PRUNE_ABOVE && mono.saturating_sub(entries.pruned_at) >= idle;
        if (full || due) && !entries.map.contains_key(&c.id) {
            entries.pruned_at = mono;
            entries.map.retain(|_, e| mono.saturating_sub(e.checked_at) < idle);
            entries.prune_above = PRUNE_ABOVE.max(entries.map.len().saturating_mul(2));
            // Give the memory back: a map emptied by eviction keeps its table otherwise.
            let keep = entries.prune_above;
            if entries.map.capacity() > keep.saturating_mul(2) {
                entries.map.shrink_to(keep);
            }
        }
        entries.map.insert(c.id.clone(), entry);
    }

    fn fresh_until(&self, entry: &Entry) -> Duration {
        let recheck = entry.checked_at.saturating_add(self.revalidate);
        entry.refresh_at.map_or(recheck, |at| at.min(recheck))
    }

    /// Trusts the cached token for another revalidation period (the store could not be asked).
    pub(crate) fn recheck_later(&self, id: &ConnectionId, mono: Duration) {
        let mut entries = write(&self.entries);
        if let Some(entry) = entries.map.get_mut(id) {
            entry.checked_at = mono;
            let fresh_until = self.fresh_until(entry);
            entry.fresh_until = fresh_until;
        }
    }

    /// Drops the connection's token.
    pub(crate) fn forget(&self, id: &ConnectionId) {
        write(&self.entries).map.remove(id);
    }

    /// The connection's flight lock (created if none).
    pub(crate) fn flight(&self, id: &ConnectionId) -> Flight {
        Arc::clone(lock(&self.flights).entry(id.clone()).or_default())
    }

    /// Forgets the connection's flight lock once nobody holds or waits for it (call after dropping yours).
    pub(crate) fn end_flight(&self, id: &ConnectionId) {
        let mut flights = lock(&self.flights);
        if flights.get(id).is_some_and(|f| Arc::strong_count(f) == 1) {
            flights.remove(id);
        }
    }

    /// Keeps tokens a store failure held back, to be written on the next call.
    pub(crate) fn hold_unsaved(&self, c: Connection) {
        lock(&self.unsaved).insert(c.id.clone(), c);
        self.has_unsaved.store(true, Ordering::Release);
    }

    /// Whether tokens are held back (one atomic load).
    pub(crate) fn has_unsaved(&self) -> bool {
        self.has_unsaved.load(Ordering::Acquire)
    }

    /// Takes every held-back version out, to be written (and held again with `hold_unsaved` if that fails).
    pub(crate) fn take_unsaved(&self) -> Vec<Connection> {
        let mut unsaved = lock(&self.unsaved);
        self.has_unsaved.store(false, Ordering::Release);
        unsaved.drain().map(|(_, c)| c).collect()
    }

    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let entries = read(&self.entries).map.len();
        (entries, lock(&self.flights).len())
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        read(&self.entries).map.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::secret::RefreshToken;

    fn connection(n: u64, clock: &ManualClock) -> Connection {
        let now = clock.now();
        let mut c = Connection::new(
            "acme",
            n,
            AccessToken::new(format!("token-{n}")),
            Some(RefreshToken::new("r")),
            Some(now + Duration::from_secs(1_800)),
            now,
        );
        c.id = ConnectionId::new(format!("hc_{n}"));
        c
    }

    fn put(cache: &TokenCache, c: &Connection, clock: &ManualClock, refresh_in: Option<u64>) {
        let refresh_at = refresh_in.map(|s| clock.now() + Duration::from_secs(s));
        cache.put(c, refresh_at, clock.now(), clock.monotonic());
    }

    #[test]
    fn fresh_until_the_refresh_point_or_the_recheck_whichever_first() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(5));
        let c = connection(1, &clock);
        put(&cache, &c, &clock, Some(3));
        assert_eq!(cache.fresh(&c.id, clock.monotonic()), Some(c.access_token.clone()));
        clock.advance(Duration::from_secs(3));
        assert_eq!(cache.fresh(&c.id, clock.monotonic()), None, "due");
        assert_eq!(cache.valid(&c.id, clock.now()), Some(c.access_token.clone()), "but still valid");

        put(&cache, &c, &clock, Some(600));
        clock.advance(Duration::from_millis(4_999));
        assert!(cache.fresh(&c.id, clock.monotonic()).is_some());
        clock.advance(Duration::from_millis(1));
        assert_eq!(cache.fresh(&c.id, clock.monotonic()), None, "five seconds unchecked: ask the store");
        cache.recheck_later(&c.id, clock.monotonic());
        assert!(cache.fresh(&c.id, clock.monotonic()).is_some());

        // A private app's token is never due, but still re-checked.
        let p = connection(2, &clock);
        put(&cache, &p, &clock, None);
        clock.advance(Duration::from_secs(5));
        assert_eq!(cache.fresh(&p.id, clock.monotonic()), None);
    }

    #[test]
    fn a_wall_clock_step_does_not_move_the_deadline() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(60));
        let c = connection(1, &clock);
        put(&cache, &c, &clock, Some(30));
        clock.set(clock.now() + Duration::from_secs(3_600) - Duration::from_secs(7_200));
        assert!(cache.fresh(&c.id, clock.monotonic()).is_some(), "a step back does not stretch or end it");
    }

    #[test]
    fn forget_and_expiry() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(5));
        let c = connection(1, &clock);
        put(&cache, &c, &clock, Some(600));
        cache.forget(&c.id);
        assert_eq!(cache.fresh(&c.id, clock.monotonic()), None);
        assert_eq!(cache.valid(&c.id, clock.now()), None);
        put(&cache, &c, &clock, Some(600));
        clock.advance(Duration::from_secs(1_800));
        assert_eq!(cache.valid(&c.id, clock.now()), None, "expired");
    }

    #[test]
    fn idle_entries_make_room_and_flights_end() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(5));
        for n in 0..2_000 {
            put(&cache, &connection(n, &clock), &clock, Some(600));
        }
        clock.advance(Duration::from_secs(601));
        for n in 2_000..2_100 {
            put(&cache, &connection(n, &clock), &clock, Some(600));
        }
        assert!(cache.sizes().0 < 2_000, "{:?}", cache.sizes());

        let id = ConnectionId::new("hc_flight");
        let flight = cache.flight(&id);
        let waiter = cache.flight(&id);
        assert!(Arc::ptr_eq(&flight, &waiter));
        drop(flight);
        cache.end_flight(&id);
        assert_eq!(cache.sizes().1, 1, "a waiter still holds it");
        drop(waiter);
        cache.end_flight(&id);
        assert_eq!(cache.sizes().1, 0);
    }

    #[test]
    fn eviction_gives_the_table_back() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(5));
        for n in 0..20_000 {
            put(&cache, &connection(n, &clock), &clock, Some(600));
        }
        assert!(cache.capacity() >= 20_000);
        clock.advance(Duration::from_secs(601));
        put(&cache, &connection(20_000, &clock), &clock, Some(600));
        assert_eq!(cache.sizes().0, 1);
        assert!(cache.capacity() <= 2 * PRUNE_ABOVE, "capacity {} after eviction", cache.capacity());
    }

    #[test]
    fn held_back_tokens_are_taken_once() {
        let clock = ManualClock::new();
        let cache = TokenCache::new(Duration::from_secs(5));
        assert!(!cache.has_unsaved());
        cache.hold_unsaved(connection(1, &clock));
        cache.hold_unsaved(connection(2, &clock));
        assert!(cache.has_unsaved());
        assert_eq!(cache.take_unsaved().len(), 2);
        assert!(!cache.has_unsaved());
        assert!(cache.take_unsaved().is_empty());
    }
}
