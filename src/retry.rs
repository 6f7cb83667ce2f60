//! One back-off for every wait after a failure: the connector's retries ([`RetryPolicy`](crate::RetryPolicy)), the
//! API client's retries ([`ApiConfig`](crate::ApiConfig)) and the manager's cooldowns after a failed refresh
//! ([`Policy`](crate::Policy)).
//!
//! Not the `backon` crate: its retry loops sleep on a timer of their own (a `Sleeper` whose future type must be
//! named, so sleeping on this crate's `Arc<dyn Clock>` takes a boxed adapter) and draw jitter from a random source
//! of their own, so a test could neither see the waits on a [`ManualClock`](crate::ManualClock) nor pin the jitter;
//! and each caller here decides per error what to do (honour `Retry-After`, give up on a refresh that may have
//! reached HubSpot, record a cooldown instead of sleeping), which leaves backon only this formula to contribute.

use std::time::Duration;

use rand::Rng;

/// Exponential back-off: the delay before retry `n` (counted from 0) is `initial · 2ⁿ`, at most `max`; with
/// jitter, a random point between half and all of that.
///
/// ```
/// use std::time::Duration;
/// use hubspot_connect::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
/// assert_eq!(b.ceiling(0), Duration::from_millis(250));
/// assert_eq!(b.ceiling(3), Duration::from_secs(2));
/// assert_eq!(b.ceiling(10), Duration::from_secs(5));
/// assert!(b.jitter && !b.without_jitter().jitter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Draw each delay at random between half and all of [`Backoff::ceiling`], so that many callers failing
    /// together do not retry together.
    pub jitter: bool,
}

/// Doublings counted at most (`2¹⁶`): beyond them only `max` matters, and the product cannot overflow.
const MAX_DOUBLINGS: u32 = 16;

impl Backoff {
    /// `initial`, doubling, at most `max`, with jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, jitter: true }
    }

    /// The same delays, each taken whole.
    pub const fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The longest delay before retry `retry` (from 0): `initial · 2^retry`, at most `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.initial.saturating_mul(1u32 << retry.min(MAX_DOUBLINGS)).min(self.max)
    }

    /// The delay before retry `retry`: the [`ceiling`](Self::ceiling), or with jitter a point drawn from `rng`
    /// between half and all of it.
    pub(crate) fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        if self.jitter { ceiling.mul_f64(rng.gen_range(0.5..=1.0)) } else { ceiling }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(MS * 250, MS * 5_000);
        let ceilings: Vec<_> = (0..7).map(|n| b.ceiling(n)).collect();
        assert_eq!(ceilings, [250, 500, 1_000, 2_000, 4_000, 5_000, 5_000].map(|m| MS * m));
        assert_eq!(b.ceiling(u32::MAX), MS * 5_000, "no overflow however many retries");
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX, "saturates");
    }

    #[test]
    fn jitter_lies_between_half_and_all_of_the_ceiling() {
        let b = Backoff::new(MS * 250, MS * 5_000);
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for n in 0..40 {
            let d = b.delay(n, &mut rng);
            assert!(d <= b.ceiling(n) && d >= b.ceiling(n) / 2, "{n}: {d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "the delays are spread: {seen:?}");
        let again: Vec<_> = {
            let mut rng = StdRng::seed_from_u64(7);
            (0..40).map(|n| b.delay(n, &mut rng)).collect()
        };
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(again, (0..40).map(|n| b.delay(n, &mut rng)).collect::<Vec<_>>(), "the same seed, the same delays");
    }

    #[test]
    fn without_jitter_each_delay_is_the_ceiling() {
        let b = Backoff::new(Duration::from_secs(30), Duration::from_secs(1_800)).without_jitter();
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> = (0..8).map(|n| b.delay(n, &mut rng).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1_800, 1_800]);
    }

    #[test]
    fn a_max_below_initial_caps_every_delay() {
        let b = Backoff::new(MS * 500, MS * 100).without_jitter();
        assert_eq!((b.ceiling(0), b.ceiling(5)), (MS * 100, MS * 100));
    }
}
