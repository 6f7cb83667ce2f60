//! One rolling window: when the events of the last `window` happened, oldest first. The API client's per-portal
//! budget counts in it (on the clock's monotonic time), and so does the fake HubSpot's rate limiter (on its wall
//! clock).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// A point in time a [`Rolling`] window can hold: its age at `now`, zero when it lies ahead of `now` (a clock
/// stepped back keeps an event in the window rather than dropping it early).
pub(crate) trait Stamp: Copy + Ord {
    fn age(self, now: Self) -> Duration;
}

/// Monotonic time, as [`Clock::monotonic`](crate::Clock::monotonic) reads it.
impl Stamp for Duration {
    fn age(self, now: Self) -> Duration {
        now.saturating_sub(self)
    }
}

impl Stamp for SystemTime {
    fn age(self, now: Self) -> Duration {
        now.duration_since(self).unwrap_or(Duration::ZERO)
    }
}

/// The events inside a rolling window, oldest first. The window's length is given with each look, so a limit that
/// changes applies at once.
#[derive(Debug, Clone)]
pub(crate) struct Rolling<T> {
    events: VecDeque<T>,
}

impl<T> Default for Rolling<T> {
    fn default() -> Self {
        Self { events: VecDeque::new() }
    }
}

impl<T: Stamp> Rolling<T> {
    /// Forgets the events at least `window` old at `now`.
    pub(crate) fn prune(&mut self, window: Duration, now: T) {
        while self.events.front().is_some_and(|t| t.age(now) >= window) {
            self.events.pop_front();
        }
    }

    /// Counts an event at `at`, in time order (an event stamped earlier than the newest goes before it).
    pub(crate) fn record(&mut self, at: T) {
        if self.events.back().is_none_or(|last| *last <= at) {
            self.events.push_back(at);
        } else {
            let index = self.events.partition_point(|t| *t <= at);
            self.events.insert(index, at);
        }
    }

    /// How many events the window holds (as last pruned).
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The `index`-th oldest event.
    pub(crate) fn get(&self, index: usize) -> Option<T> {
        self.events.get(index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn keeps_what_is_younger_than_the_window() {
        let mut w = Rolling::default();
        for t in [0, 1, 2, 3] {
            w.record(S * t);
        }
        w.prune(S * 2, S * 3);
        assert_eq!((w.len(), w.get(0), w.get(1)), (2, Some(S * 2), Some(S * 3)), "age 2 s is out of a 2 s window");
        w.prune(S * 10, S * 3);
        assert_eq!(w.len(), 2, "a longer window forgets nothing more");
    }

    #[test]
    fn events_stay_in_time_order() {
        let mut w = Rolling::default();
        for t in [5, 1, 3, 3, 9] {
            w.record(S * t);
        }
        let order: Vec<_> = (0..w.len()).filter_map(|i| w.get(i)).collect();
        assert_eq!(order, [1, 3, 3, 5, 9].map(|t| S * t));
    }

    #[test]
    fn an_event_ahead_of_now_stays() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut w = Rolling::default();
        w.record(t0 + S * 60);
        w.record(t0);
        w.prune(S * 10, t0 + S * 5);
        assert_eq!(w.len(), 2, "the wall clock stepped back: nothing leaves early");
        w.prune(S * 10, t0 + S * 10);
        assert_eq!(w.get(0), Some(t0 + S * 60));
        assert_eq!(w.len(), 1);
    }
}
