//! Injected time: the [`Clock`] trait, a system clock, a manual clock for tests, and the pure expiry check.
//!
//! Nothing in this crate reads the wall clock except [`SystemClock`]; clippy's `disallowed-methods` enforces it.
//! Sleeping (for retry back-off) goes through the same trait, so a test with a [`ManualClock`] never waits.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::sync::lock;

/// A source of time, and of sleeps.
///
/// The crate asks a `Clock` for the time whenever it computes or checks an expiry, and sleeps through it between
/// retries. Use [`SystemClock`] in production and [`ManualClock`] in tests.
///
/// # Implementing
/// ```
/// use std::time::{Duration, SystemTime};
/// use hubspot_connect::Clock;
///
/// /// A clock that runs one hour ahead, to see what happens near token expiry.
/// #[derive(Debug)]
/// struct Ahead;
///
/// #[async_trait::async_trait]
/// impl Clock for Ahead {
///     fn now(&self) -> SystemTime {
///         hubspot_connect::SystemClock.now() + Duration::from_secs(3600)
///     }
///     async fn sleep(&self, duration: Duration) {
///         tokio::time::sleep(duration).await
///     }
/// }
/// let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(Ahead);
/// assert!(clock.now() > hubspot_connect::SystemClock.now());
/// ```
#[async_trait]
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Waits for `duration`. The default implementation uses tokio's timer.
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Time elapsed since a fixed point of this clock's choosing, never going backwards: what waits, rate windows
    /// and cache ages are measured with, so a wall-clock step cannot stall or stretch them. The default
    /// implementation reads tokio's monotonic clock (which follows tokio's paused time in tests).
    fn monotonic(&self) -> Duration {
        tokio_monotonic()
    }
}

/// Tokio's monotonic clock, as a duration since the first time this process asked.
fn tokio_monotonic() -> Duration {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    // The one place in the crate that reads the monotonic clock.
    #[allow(clippy::disallowed_methods)]
    let now = tokio::time::Instant::now();
    now.saturating_duration_since(*ORIGIN.get_or_init(|| now))
}

const _: Option<&dyn Clock> = None;

/// The real clock: [`SystemTime::now`] and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        // The one place in the crate that reads the wall clock.
        #[allow(clippy::disallowed_methods)]
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Sleeping on it advances it at once and records the sleep.
///
/// Cloning shares the same time: hand one clone to the code under test and keep one to move time forward.
///
/// ```
/// use std::time::Duration;
/// use hubspot_connect::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(30));
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

/// Writers take the lock; readers only load the two atomics (nanoseconds), so reading a manual clock costs what
/// reading a real one does.
#[derive(Default)]
struct ManualInner {
    state: Mutex<ManualState>,
    now_nanos: AtomicU64,
    monotonic_nanos: AtomicU64,
}

impl ManualInner {
    fn write(&self, f: impl FnOnce(&mut ManualState)) {
        let mut state = lock(&self.state);
        f(&mut state);
        self.now_nanos.store(nanos(state.now), Ordering::Release);
        self.monotonic_nanos.store(nanos(state.monotonic), Ordering::Release);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct ManualState {
    now: Duration,
    /// Moves with `advance`, `sleep` and a forward `set`; a backward `set` leaves it where it is.
    monotonic: Duration,
    sleeps: Vec<Duration>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now", &self.now()).finish()
    }
}

impl ManualClock {
    /// A manual clock set to 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self::at(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    /// A manual clock set to `time`.
    pub fn at(time: SystemTime) -> Self {
        let clock = Self::default();
        clock.set(time);
        clock.inner.write(|state| state.monotonic = Duration::ZERO);
        clock
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.inner.write(|state| state.advance(by));
    }

    /// Sets the clock to `time`. Setting it back is a wall-clock step: [`Clock::monotonic`] does not go back.
    pub fn set(&self, time: SystemTime) {
        let to = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.inner.write(|state| {
            state.monotonic = state.monotonic.saturating_add(to.saturating_sub(state.now));
            state.now = to;
        });
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        lock(&self.inner.state).sleeps.clone()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.inner.now_nanos.load(Ordering::Acquire))
    }

    async fn sleep(&self, duration: Duration) {
        self.inner.write(|state| {
            state.sleeps.push(duration);
            state.advance(duration);
        });
        tokio::task::yield_now().await;
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.inner.monotonic_nanos.load(Ordering::Acquire))
    }
}

impl ManualState {
    fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        self.monotonic = self.monotonic.saturating_add(by);
    }
}

/// Whether a token that expires at `expires_at` must be treated as expired at `now`, refreshing `margin` early.
///
/// A token is expired when `now + margin >= expires_at`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use hubspot_connect::clock::expired;
///
/// let expires_at = UNIX_EPOCH + Duration::from_secs(1_000);
/// let margin = Duration::from_secs(300);
/// assert!(!expired(expires_at, margin, UNIX_EPOCH + Duration::from_secs(699)));
/// assert!(expired(expires_at, margin, UNIX_EPOCH + Duration::from_secs(700)));
/// ```
pub fn expired(expires_at: SystemTime, margin: Duration, now: SystemTime) -> bool {
    match now.checked_add(margin) {
        Some(deadline) => deadline >= expires_at,
        None => true,
    }
}

/// Adds `lifetime` to `start`, saturating instead of overflowing.
pub(crate) fn saturating_add(start: SystemTime, lifetime: Duration) -> SystemTime {
    start.checked_add(lifetime).unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(253_402_300_799)) // 9999-12-31T23:59:59Z
}

/// Times as RFC 3339 in UTC, the one way the crate writes them (events, summaries, the fake's answers). A time
/// outside the years 1970 to 9999 is written as the nearest of them instead of failing: a corrupt stored time must
/// not panic a serializer.
pub(crate) mod rfc3339 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The last millisecond of the year 9999, the last time RFC 3339 can write.
    const LAST: Duration = Duration::from_millis(253_402_300_799_999);

    fn writable(t: SystemTime) -> SystemTime {
        t.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST)
    }

    /// `2026-01-15T10:00:00Z`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn seconds(t: SystemTime) -> String {
        humantime::format_rfc3339_seconds(writable(t)).to_string()
    }

    /// `2026-01-15T10:00:00.123Z`, as HubSpot writes its timestamps.
    pub(crate) fn millis(t: SystemTime) -> String {
        humantime::format_rfc3339_millis(writable(t)).to_string()
    }

    /// Serde: a `SystemTime` as RFC 3339 with milliseconds.
    pub(crate) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&millis(*t))
    }

    /// Serde: an RFC 3339 time (UTC, any fraction of a second).
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }

    /// An RFC 3339 time, `None` when it is not one.
    pub(crate) fn parse(text: &str) -> Option<SystemTime> {
        humantime::parse_rfc3339(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(10_000);

    #[test]
    fn expired_is_inclusive_at_the_margin() {
        let exp = UNIX_EPOCH + T0;
        let m = Duration::from_secs(60);
        assert!(!expired(exp, m, exp - Duration::from_secs(61)));
        assert!(expired(exp, m, exp - Duration::from_secs(60)));
        assert!(expired(exp, m, exp));
        assert!(expired(exp, m, exp + Duration::from_secs(1)));
    }

    #[test]
    fn zero_margin_expires_exactly_at_expiry() {
        let exp = UNIX_EPOCH + T0;
        assert!(!expired(exp, Duration::ZERO, exp - Duration::from_nanos(1)));
        assert!(expired(exp, Duration::ZERO, exp));
    }

    #[test]
    fn huge_margin_does_not_overflow() {
        assert!(expired(UNIX_EPOCH + T0, Duration::MAX, UNIX_EPOCH));
    }

    #[test]
    fn saturating_add_clamps() {
        let far = saturating_add(UNIX_EPOCH, Duration::MAX);
        assert!(far > UNIX_EPOCH + Duration::from_secs(253_402_300_000));
    }

    #[tokio::test]
    async fn manual_clock_sleep_advances_and_records() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        clock.sleep(Duration::from_millis(250)).await;
        clock.sleep(Duration::from_secs(2)).await;
        assert_eq!(clock.sleeps(), vec![Duration::from_millis(250), Duration::from_secs(2)]);
        assert_eq!(clock.now().duration_since(t0).ok(), Some(Duration::from_millis(2250)));
    }

    #[test]
    fn manual_monotonic_time_ignores_backward_steps() {
        let clock = ManualClock::new();
        let start = clock.now();
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.monotonic(), Duration::from_secs(10));
        clock.set(start - Duration::from_secs(3_600));
        assert_eq!(clock.monotonic(), Duration::from_secs(10), "a step back leaves monotonic time alone");
        clock.set(start);
        assert_eq!(clock.monotonic(), Duration::from_secs(3_610), "a step forward moves it");
    }

    #[test]
    fn rfc3339_dates_and_the_edges_of_what_it_can_write() {
        use super::rfc3339::{millis, seconds};
        assert_eq!(millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00.000Z", "clamped");
        assert_eq!(millis(UNIX_EPOCH + Duration::from_millis(1_705_312_800_123)), "2024-01-15T10:00:00.123Z");
        assert_eq!(millis(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(seconds(UNIX_EPOCH + Duration::from_millis(1_705_312_800_123)), "2024-01-15T10:00:00Z");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(seconds(far), "9999-12-31T23:59:59Z", "a corrupt far-future time does not panic");
    }

    #[test]
    fn clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_secs(5));
        assert_eq!(a.now(), b.now());
    }
}
