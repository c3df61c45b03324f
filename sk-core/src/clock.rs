//! Time sources: the real clock and a manual clock for deterministic tests.
//!
//! Everything in this crate that waits (retry back-off, circuit trips, rate
//! limiting) waits through a [`Clock`], so tests can swap in a
//! [`ManualClock`] whose `sleep` returns at once and only moves virtual time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::stop::StopToken;

/// A source of the current time that can also wait.
///
/// Implemented by [`SystemClock`] (real time) and [`ManualClock`] (virtual
/// time for tests). `Arc<C>` and `&C` are clocks too, so an
/// `Arc<dyn Clock>` can be passed wherever a clock is expected.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.sleep(Duration::from_secs(3600)); // returns at once
/// assert_eq!(clock.now() - start, Duration::from_secs(3600));
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant according to this clock.
    fn now(&self) -> Instant;

    /// Waits for `d` according to this clock.
    fn sleep(&self, d: Duration);

    /// Waits for `d`, returning early if `stop` is stopped; returns whether
    /// `stop` was stopped when the wait ended.
    ///
    /// The default sleeps the whole duration and then checks the token;
    /// [`SystemClock`] overrides it to wake as soon as the token stops.
    fn sleep_or_stop(&self, d: Duration, stop: &StopToken) -> bool {
        if stop.is_stopped() {
            return true;
        }
        self.sleep(d);
        stop.is_stopped()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn sleep(&self, d: Duration) {
        (**self).sleep(d);
    }

    fn sleep_or_stop(&self, d: Duration, stop: &StopToken) -> bool {
        (**self).sleep_or_stop(d, stop)
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn sleep(&self, d: Duration) {
        (**self).sleep(d);
    }

    fn sleep_or_stop(&self, d: Duration, stop: &StopToken) -> bool {
        (**self).sleep_or_stop(d, stop)
    }
}

/// The real clock: [`Instant::now`] and [`std::thread::sleep`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Clock, SystemClock};
///
/// let start = SystemClock.now();
/// SystemClock.sleep(Duration::from_millis(1));
/// assert!(SystemClock.now() >= start + Duration::from_millis(1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl SystemClock {
    /// A shared handle to the system clock, for APIs that take an
    /// `Arc<dyn Clock>`.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }

    fn sleep_or_stop(&self, d: Duration, stop: &StopToken) -> bool {
        stop.wait_timeout(d)
    }
}

/// A virtual clock for tests: `sleep` advances time instantly and records
/// the requested duration.
///
/// Clones share one timeline, so a clone handed to the code under test and
/// the copy kept by the test see the same time and the same sleep log. Time
/// starts at an [`Instant`] captured when the clock is created and only moves
/// through [`sleep`](Clock::sleep) and [`advance`](ManualClock::advance).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// shared.sleep(Duration::from_millis(100));
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.elapsed(), Duration::from_millis(105));
/// assert_eq!(clock.sleeps(), vec![Duration::from_millis(100)]);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    base: Instant,
    state: Arc<Mutex<ManualState>>,
}

#[derive(Debug, Default)]
struct ManualState {
    offset: Duration,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// A new clock whose time is "now" and that has not slept yet.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            state: Arc::new(Mutex::new(ManualState::default())),
        }
    }

    /// Moves time forward by `d` without recording a sleep.
    pub fn advance(&self, d: Duration) {
        let mut state = self.state.lock();
        state.offset = state.offset.saturating_add(d);
    }

    /// Every duration passed to [`sleep`](Clock::sleep) so far, in call
    /// order (including zero-length sleeps).
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().sleeps.clone()
    }

    /// The sum of all recorded sleeps.
    pub fn total_slept(&self) -> Duration {
        self.state
            .lock()
            .sleeps
            .iter()
            .fold(Duration::ZERO, |sum, d| sum.saturating_add(*d))
    }

    /// Forgets the recorded sleeps (time is not rewound).
    pub fn clear_sleeps(&self) {
        self.state.lock().sleeps.clear();
    }

    /// How far time has moved since the clock was created.
    pub fn elapsed(&self) -> Duration {
        self.state.lock().offset
    }

    /// A shared handle to this clock's timeline, for APIs that take an
    /// `Arc<dyn Clock>`.
    pub fn shared(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("ManualClock")
            .field("elapsed", &state.offset)
            .field("sleeps", &state.sleeps.len())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        let offset = self.state.lock().offset;
        // `checked_add` fails only after centuries of virtual time; pinning
        // the clock there is better than panicking inside a test helper.
        self.base.checked_add(offset).unwrap_or(self.base)
    }

    fn sleep(&self, d: Duration) {
        let mut state = self.state.lock();
        state.offset = state.offset.saturating_add(d);
        state.sleeps.push(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_sleep_moves_time_and_is_recorded() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        clock.sleep(Duration::from_millis(10));
        clock.sleep(Duration::ZERO);
        clock.sleep(Duration::from_millis(5));
        assert_eq!(clock.now() - t0, Duration::from_millis(15));
        assert_eq!(
            clock.sleeps(),
            vec![
                Duration::from_millis(10),
                Duration::ZERO,
                Duration::from_millis(5)
            ]
        );
        assert_eq!(clock.total_slept(), Duration::from_millis(15));
    }

    #[test]
    fn manual_clock_advance_is_not_a_sleep() {
        let clock = ManualClock::new();
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.elapsed(), Duration::from_secs(2));
        assert!(clock.sleeps().is_empty());
        clock.sleep(Duration::from_secs(1));
        clock.clear_sleeps();
        assert!(clock.sleeps().is_empty());
        assert_eq!(clock.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn clones_share_one_timeline() {
        let clock = ManualClock::new();
        let dyn_clock: Arc<dyn Clock> = clock.shared();
        dyn_clock.sleep(Duration::from_millis(7));
        assert_eq!(clock.elapsed(), Duration::from_millis(7));
        assert_eq!(clock.sleeps(), vec![Duration::from_millis(7)]);
        assert_eq!(dyn_clock.now(), clock.now());
    }

    #[test]
    fn manual_clock_does_not_really_sleep() {
        let real = Instant::now();
        ManualClock::new().sleep(Duration::from_secs(3600));
        assert!(real.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn sleep_or_stop_on_manual_clock_reports_the_token() {
        let clock = ManualClock::new();
        let token = StopToken::new();
        assert!(!clock.sleep_or_stop(Duration::from_millis(3), &token));
        token.stop();
        assert!(clock.sleep_or_stop(Duration::from_millis(3), &token));
        // A stopped token skips the sleep entirely.
        assert_eq!(clock.sleeps(), vec![Duration::from_millis(3)]);
    }

    #[test]
    fn system_clock_sleep_or_stop_wakes_on_a_stopped_token() {
        let token = StopToken::new();
        token.stop();
        let start = Instant::now();
        assert!(SystemClock.sleep_or_stop(Duration::from_secs(30), &token));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn debug_shows_elapsed_time() {
        let clock = ManualClock::new();
        clock.advance(Duration::from_millis(3));
        assert_eq!(
            format!("{clock:?}"),
            "ManualClock { elapsed: 3ms, sleeps: 0 }"
        );
    }
}
