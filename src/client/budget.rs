//! Per-portal request budgets: HubSpot's rolling limits, enforced before a request leaves, shared by every task of
//! the process that uses the portal.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::manager::lock;

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

/// A sliding log of request times for one limit of one portal.
#[derive(Debug)]
struct Window {
    limit: RateLimit,
    sent: VecDeque<SystemTime>,
}

impl Window {
    fn new(limit: RateLimit) -> Self {
        Self { limit, sent: VecDeque::new() }
    }

    fn prune(&mut self, now: SystemTime) {
        while self.sent.front().is_some_and(|t| now.duration_since(*t).is_ok_and(|age| age >= self.limit.window)) {
            self.sent.pop_front();
        }
    }

    /// How long to wait before a request may go; `None`: it may go now (and is counted).
    fn try_take(&mut self, now: SystemTime) -> Option<Duration> {
        self.prune(now);
        if self.sent.len() < self.limit.max as usize {
            self.sent.push_back(now);
            return None;
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        let free_at = oldest.checked_add(self.limit.window).unwrap_or(now);
        Some(free_at.duration_since(now).unwrap_or(Duration::from_millis(1)).max(Duration::from_millis(1)))
    }

    /// HubSpot says `remaining` requests are left (other processes share the portal's limit): count the difference
    /// as sent now.
    fn reconcile(&mut self, max: Option<u32>, remaining: u32, now: SystemTime) {
        if let Some(max) = max.filter(|m| *m > 0) {
            self.limit.max = self.limit.max.min(max);
        }
        self.prune(now);
        let ours_left = (self.limit.max as usize).saturating_sub(self.sent.len());
        let extra = ours_left.saturating_sub(remaining as usize);
        for _ in 0..extra {
            self.sent.push_back(now);
        }
    }
}

#[derive(Debug)]
struct PortalBudget {
    general: Window,
    search: Window,
}

/// The budgets of every portal this process calls, shared by every client built from one API handle.
#[derive(Debug)]
pub(crate) struct Budgets {
    general: RateLimit,
    search: RateLimit,
    portals: Mutex<HashMap<u64, Arc<Mutex<PortalBudget>>>>,
}

impl Budgets {
    pub(crate) fn new(general: RateLimit, search: RateLimit) -> Self {
        Self { general, search, portals: Mutex::new(HashMap::new()) }
    }

    fn portal(&self, portal_id: u64) -> Arc<Mutex<PortalBudget>> {
        let mut portals = lock(&self.portals);
        Arc::clone(portals.entry(portal_id).or_insert_with(|| {
            Arc::new(Mutex::new(PortalBudget { general: Window::new(self.general), search: Window::new(self.search) }))
        }))
    }

    /// Waits until a request to `portal_id` fits its budget (and the search budget for a search), then counts it.
    pub(crate) async fn acquire(&self, portal_id: u64, search: bool, clock: &dyn Clock) {
        let budget = self.portal(portal_id);
        loop {
            let wait = {
                let mut b = lock(&budget);
                let now = clock.now();
                // Check both before counting either, so a search that waits does not use up a general slot.
                b.general.prune(now);
                b.search.prune(now);
                let general_full = b.general.sent.len() >= b.general.limit.max as usize;
                let search_full = search && b.search.sent.len() >= b.search.limit.max as usize;
                if general_full || search_full {
                    let g = if general_full { b.general.try_take(now) } else { None };
                    let s = if search_full { b.search.try_take(now) } else { None };
                    g.into_iter().chain(s).max()
                } else {
                    let _ = b.general.try_take(now);
                    if search {
                        let _ = b.search.try_take(now);
                    }
                    None
                }
            };
            match wait {
                None => return,
                Some(d) => clock.sleep(d).await,
            }
        }
    }

    /// Reads HubSpot's `X-HubSpot-RateLimit-*` headers and tightens the budget when HubSpot counts more requests
    /// than this process sent (other processes use the same portal).
    pub(crate) fn observe(&self, portal_id: u64, search: bool, headers: &http::HeaderMap, clock: &dyn Clock) {
        let num =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u32>().ok());
        let budget = self.portal(portal_id);
        let mut b = lock(&budget);
        let now = clock.now();
        if let Some(remaining) = num("x-hubspot-ratelimit-remaining") {
            b.general.reconcile(num("x-hubspot-ratelimit-max"), remaining, now);
        }
        if search {
            if let Some(remaining) = num("x-hubspot-ratelimit-secondly-remaining") {
                b.search.reconcile(num("x-hubspot-ratelimit-secondly"), remaining, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn holds_the_window() {
        let clock = ManualClock::new();
        let budgets =
            Budgets::new(RateLimit::new(3, Duration::from_secs(10)), RateLimit::new(1, Duration::from_secs(1)));
        let t0 = clock.now();
        for _ in 0..7 {
            budgets.acquire(1, false, &clock).await;
        }
        // 3 at t0, 3 at t0+10 s, 1 at t0+20 s.
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(20));
        // Another portal has its own budget.
        let before = clock.now();
        budgets.acquire(2, false, &clock).await;
        assert_eq!(clock.now(), before);
    }

    #[tokio::test]
    async fn search_has_its_own_limit() {
        let clock = ManualClock::new();
        let budgets =
            Budgets::new(RateLimit::new(100, Duration::from_secs(10)), RateLimit::new(2, Duration::from_secs(1)));
        let t0 = clock.now();
        for _ in 0..5 {
            budgets.acquire(1, true, &clock).await;
        }
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn headers_tighten_the_budget() {
        let clock = ManualClock::new();
        let budgets =
            Budgets::new(RateLimit::new(110, Duration::from_secs(10)), RateLimit::new(5, Duration::from_secs(1)));
        budgets.acquire(1, false, &clock).await;
        let mut h = http::HeaderMap::new();
        h.insert("x-hubspot-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-hubspot-ratelimit-max", "110".parse().unwrap());
        budgets.observe(1, false, &h, &clock);
        let t0 = clock.now();
        budgets.acquire(1, false, &clock).await;
        assert_eq!(clock.now().duration_since(t0).unwrap(), Duration::from_secs(10), "waits for the window");
    }
}
