//! Per-portal request budgets: HubSpot's rolling limits, enforced before a request leaves, shared by every task of
//! the process that uses the portal.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::sync::lock;
use crate::window::Rolling;

/// A rolling limit: at most `max` requests in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests allowed per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

impl RateLimit {
    /// `max` requests per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max: max.max(1), window }
    }
}

/// What a request waits for before it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Only a request on the wire finishing can make room.
    Finish,
    /// Room comes when this much time has passed.
    For(Duration),
}

/// One limit of one portal: the requests on the wire, and when the finished ones finished.
///
/// HubSpot counts a request when it arrives, somewhere between the moment it left and the moment its answer came
/// back. So a request holds its slot while on the wire and for a whole window after its answer: then no window of
/// arrivals at HubSpot can hold more than `max` requests, however long each one took.
#[derive(Debug)]
struct Window {
    limit: RateLimit,
    /// When finished requests finished (and requests HubSpot says other processes sent), in the clock's monotonic
    /// time: a wall-clock step neither stalls nor opens the window.
    finished: Rolling<Duration>,
    in_flight: usize,
}

impl Window {
    fn new(limit: RateLimit) -> Self {
        Self { limit, finished: Rolling::default(), in_flight: 0 }
    }

    fn prune(&mut self, now: Duration) {
        self.finished.prune(self.limit.window, now);
    }

    fn count(&self) -> usize {
        self.finished.len() + self.in_flight
    }

    /// `None`: a request may go now.
    fn wait(&mut self, now: Duration) -> Option<Wait> {
        self.prune(now);
        let max = self.limit.max as usize;
        let count = self.count();
        if count < max {
            return None;
        }
        if self.in_flight >= max {
            return Some(Wait::Finish);
        }
        // `count - max + 1` finished requests must leave the window; this is the last of them to go.
        let last = self.finished.get(count - max).unwrap_or(now);
        let free_at = last.saturating_add(self.limit.window);
        Some(Wait::For(free_at.saturating_sub(now).max(Duration::from_millis(1))))
    }

    fn record(&mut self, at: Duration) {
        self.finished.record(at);
    }

    fn finish(&mut self, now: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.record(now);
    }

    /// HubSpot says `remaining` requests are left (other processes share the portal's limit): count the difference
    /// as sent now.
    fn reconcile(&mut self, max: Option<u32>, remaining: u32, now: Duration) {
        if let Some(max) = max.filter(|m| *m > 0) {
            self.limit.max = self.limit.max.min(max);
        }
        self.prune(now);
        let ours_left = (self.limit.max as usize).saturating_sub(self.count());
        let extra = ours_left.saturating_sub(remaining as usize);
        for _ in 0..extra {
            self.record(now);
        }
    }
}

#[derive(Debug)]
struct PortalBudget {
    general: Window,
    search: Window,
}

#[derive(Debug)]
struct Portal {
    budget: Mutex<PortalBudget>,
    /// Woken whenever a request finishes.
    finished: Notify,
}

/// The budgets of every portal this process calls, shared by every client built from one API handle.
#[derive(Debug)]
pub(crate) struct Budgets {
    general: RateLimit,
    search: RateLimit,
    portals: Mutex<Portals>,
}

/// The portals seen, and when to look for ones no longer used.
#[derive(Debug)]
struct Portals {
    by_id: HashMap<u64, Arc<Portal>>,
    prune_above: usize,
    /// Monotonic time of the last pruning.
    pruned_at: Duration,
}

/// The map is pruned whenever it grows past this many portals (or twice what the last pruning kept), and at least
/// every `PRUNE_EVERY` while it holds more.
const PRUNE_ABOVE: usize = 1_024;
const PRUNE_EVERY: Duration = Duration::from_secs(600);

impl Portals {
    /// Forgets the portals that no request holds and whose windows are empty at `now`: they would be recreated as
    /// they are.
    fn prune(&mut self, now: Duration) {
        self.by_id.retain(|_, portal| {
            if Arc::strong_count(portal) > 1 {
                return true;
            }
            let mut b = lock(&portal.budget);
            b.general.prune(now);
            b.search.prune(now);
            b.general.count() > 0 || b.search.count() > 0
        });
        self.prune_above = PRUNE_ABOVE.max(self.by_id.len().saturating_mul(2));
        self.pruned_at = now;
        if self.by_id.capacity() > self.prune_above.saturating_mul(2) {
            self.by_id.shrink_to(self.prune_above);
        }
    }

    fn should_prune(&self, now: Duration) -> bool {
        let len = self.by_id.len();
        len >= self.prune_above || (len > PRUNE_ABOVE && now.saturating_sub(self.pruned_at) >= PRUNE_EVERY)
    }
}

/// A request's slot in its portal's budget: held while the request is on the wire. Dropping it marks the request
/// finished (at the clock's time) and wakes the requests waiting for room.
pub(crate) struct Permit {
    portal: Arc<Portal>,
    search: bool,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("search", &self.search).finish_non_exhaustive()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let now = self.clock.monotonic();
        {
            let mut b = lock(&self.portal.budget);
            b.general.finish(now);
            if self.search {
                b.search.finish(now);
            }
        }
        self.portal.finished.notify_waiters();
    }
}

impl Budgets {
    pub(crate) fn new(general: RateLimit, search: RateLimit) -> Self {
        Self {
            general,
            search,
            portals: Mutex::new(Portals { by_id: HashMap::new(), prune_above: PRUNE_ABOVE, pruned_at: Duration::ZERO }),
        }
    }

    fn portal(&self, portal_id: u64, clock: &dyn Clock) -> Arc<Portal> {
        let mut portals = lock(&self.portals);
        let now = clock.monotonic();
        if portals.should_prune(now) && !portals.by_id.contains_key(&portal_id) {
            portals.prune(now);
        }
        Arc::clone(portals.by_id.entry(portal_id).or_insert_with(|| {
            Arc::new(Portal {
                budget: Mutex::new(PortalBudget {
                    general: Window::new(self.general),
                    search: Window::new(self.search),
                }),
                finished: Notify::new(),
            })
        }))
    }

    /// Waits until a request to `portal_id` fits its budget (and the search budget for a search), then holds a
    /// slot until the returned permit is dropped.
    pub(crate) async fn acquire(&self, portal_id: u64, search: bool, clock: &Arc<dyn Clock>) -> Permit {
        let portal = self.portal(portal_id, clock.as_ref());
        loop {
            let finished = portal.finished.notified();
            tokio::pin!(finished);
            // Registered before looking, so a request finishing in between is not missed.
            finished.as_mut().enable();
            let wait = {
                let mut b = lock(&portal.budget);
                let now = clock.monotonic();
                // Check both before counting either, so a search that waits does not hold a general slot.
                let general = b.general.wait(now);
                let searches = if search { b.search.wait(now) } else { None };
                match (general, searches) {
                    (None, None) => {
                        b.general.in_flight += 1;
                        if search {
                            b.search.in_flight += 1;
                        }
                        None
                    }
                    // Only an answer can make room.
                    (Some(Wait::Finish), _) | (_, Some(Wait::Finish)) => Some(Wait::Finish),
                    (g, s) => g.into_iter().chain(s).max_by_key(|w| match w {
                        Wait::For(d) => *d,
                        Wait::Finish => Duration::MAX,
                    }),
                }
            };
            match wait {
                None => return Permit { portal: Arc::clone(&portal), search, clock: Arc::clone(clock) },
                Some(Wait::Finish) => finished.await,
                // Room comes with time, or sooner when an answer changes the count: whichever is first.
                Some(Wait::For(d)) => {
                    let sleep = clock.sleep(d);
                    tokio::pin!(sleep);
                    std::future::poll_fn(|cx| {
                        if finished.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                }
            }
        }
    }

    /// Reads HubSpot's `X-HubSpot-RateLimit-*` headers and tightens the budget when HubSpot counts more requests
    /// than this process sent (other processes use the same portal).
    pub(crate) fn observe(&self, portal_id: u64, search: bool, headers: &http::HeaderMap, clock: &dyn Clock) {
        let num =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u32>().ok());
        let portal = self.portal(portal_id, clock);
        let mut b = lock(&portal.budget);
        let now = clock.monotonic();
        if let Some(remaining) = num("x-hubspot-ratelimit-remaining") {
            b.general.reconcile(num("x-hubspot-ratelimit-max"), remaining, now);
        }
        if search && let Some(remaining) = num("x-hubspot-ratelimit-secondly-remaining") {
            b.search.reconcile(num("x-hubspot-ratelimit-secondly"), remaining, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn manual() -> (ManualClock, Arc<dyn Clock>) {
        let clock = ManualClock::new();
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        (clock, shared)
    }

    #[tokio::test]
    async fn holds_the_window() {
        let (clock, c) = manual();
        let budgets =
            Budgets::new(RateLimit::new(3, Duration::from_secs(10)), RateLimit::new(1, Duration::from_secs(1)));
        let t0 = clock.now();
        for _ in 0..7 {
            drop(budgets.acquire(1, false, &c).await);
        }
        // 3 at t0, 3 at t0+10 s, 1 at t0+20 s.
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(20));
        // Another portal has its own budget.
        let before = clock.now();
        drop(budgets.acquire(2, false, &c).await);
        assert_eq!(clock.now(), before);
    }

    #[tokio::test]
    async fn search_has_its_own_limit() {
        let (clock, c) = manual();
        let budgets =
            Budgets::new(RateLimit::new(100, Duration::from_secs(10)), RateLimit::new(2, Duration::from_secs(1)));
        let t0 = clock.now();
        for _ in 0..5 {
            drop(budgets.acquire(1, true, &c).await);
        }
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn headers_tighten_the_budget() {
        let (clock, c) = manual();
        let budgets =
            Budgets::new(RateLimit::new(110, Duration::from_secs(10)), RateLimit::new(5, Duration::from_secs(1)));
        drop(budgets.acquire(1, false, &c).await);
        let mut h = http::HeaderMap::new();
        h.insert("x-hubspot-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-hubspot-ratelimit-max", "110".parse().unwrap());
        budgets.observe(1, false, &h, &clock);
        let t0 = clock.now();
        drop(budgets.acquire(1, false, &c).await);
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(10), "waits for the window");
    }

    #[tokio::test]
    async fn a_request_holds_its_slot_until_its_answer_and_a_window_after() {
        let (clock, c) = manual();
        let budgets = Arc::new(Budgets::new(
            RateLimit::new(2, Duration::from_secs(10)),
            RateLimit::new(5, Duration::from_secs(1)),
        ));
        let t0 = clock.now();
        let first = budgets.acquire(1, false, &c).await;
        let second = budgets.acquire(1, false, &c).await;
        let third = tokio::spawn({
            let budgets = Arc::clone(&budgets);
            let c = Arc::clone(&c);
            async move { drop(budgets.acquire(1, false, &c).await) }
        });
        // Long answers: the window has long passed, but both requests are still on the wire.
        clock.advance(Duration::from_secs(60));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!third.is_finished(), "two requests on the wire fill a limit of two");
        assert!(clock.sleeps().is_empty(), "waiting for an answer does not sleep on the clock");
        drop(first);
        third.await.unwrap();
        // The first answer came at t0 + 60 s: its slot is free a window later.
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(70));
        drop(second);
    }
}

#[cfg(test)]
mod clock_steps {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn a_wall_clock_step_back_does_not_stall_the_budget() {
        let clock = ManualClock::new();
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let budgets =
            Budgets::new(RateLimit::new(2, Duration::from_secs(10)), RateLimit::new(5, Duration::from_secs(1)));
        drop(budgets.acquire(1, false, &c).await);
        drop(budgets.acquire(1, false, &c).await);
        // NTP steps the wall clock back an hour: the window is still 10 s of real time.
        clock.set(clock.now() - Duration::from_secs(3_600));
        drop(budgets.acquire(1, false, &c).await);
        assert_eq!(clock.sleeps().iter().sum::<Duration>(), Duration::from_secs(10), "{:?}", clock.sleeps());
    }

    #[tokio::test]
    async fn portals_no_longer_used_are_forgotten() {
        let clock = ManualClock::new();
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let budgets =
            Budgets::new(RateLimit::new(100, Duration::from_secs(10)), RateLimit::new(5, Duration::from_secs(1)));
        for portal in 0..5_000 {
            drop(budgets.acquire(portal, false, &c).await);
        }
        clock.advance(Duration::from_secs(11));
        drop(budgets.acquire(9_999_999, false, &c).await);
        for portal in 0..4_000 {
            drop(budgets.acquire(10_000_000 + portal, false, &c).await);
        }
        let tracked = lock(&budgets.portals).by_id.len();
        assert!(tracked < 5_000, "idle portals with empty windows are dropped: {tracked} tracked");
    }

    #[tokio::test]
    async fn a_map_that_stops_growing_still_lets_idle_portals_go() {
        let clock = ManualClock::new();
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let budgets =
            Budgets::new(RateLimit::new(100, Duration::from_secs(10)), RateLimit::new(5, Duration::from_secs(1)));
        for portal in 0..20_000 {
            drop(budgets.acquire(portal, false, &c).await);
        }
        clock.advance(PRUNE_EVERY);
        drop(budgets.acquire(9_999_999, false, &c).await);
        let portals = lock(&budgets.portals);
        assert_eq!(portals.by_id.len(), 1);
        assert!(portals.by_id.capacity() <= 2 * PRUNE_ABOVE, "capacity {}", portals.by_id.capacity());
    }
}
