//! Rate limiting: a token bucket that hands out permits at a steady rate.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};

/// Why a [`RateLimiter`] could not be built.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is NaN, infinite, zero or negative.
    #[error("rate must be a finite number of permits per second greater than zero, got {rate}")]
    InvalidRate {
        /// The rejected rate.
        rate: f64,
    },
}

/// A thread-safe token bucket: `per_sec` permits per second on average, up
/// to `burst` at once after a quiet period.
///
/// The bucket starts full. Waiting callers reserve their permit before they
/// sleep, so concurrent callers are served in the order they asked and the
/// long-run rate holds exactly. Time is read and waited through a [`Clock`]
/// (the real clock unless [`with_clock`](RateLimiter::with_clock) says
/// otherwise). Internally this is the generic cell rate algorithm on integer
/// nanoseconds: the interval between permits is `1 / per_sec` rounded to the
/// nanosecond (at least 1 ns, so rates above 10⁹/s behave as 10⁹/s).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{ManualClock, RateLimiter};
///
/// let clock = ManualClock::new();
/// let limiter = RateLimiter::new(10.0)?.with_clock(clock.shared());
/// for _ in 0..5 {
///     limiter.acquire();
/// }
/// // The first permit is free; the next four wait 100 ms each.
/// assert_eq!(clock.elapsed(), Duration::from_millis(400));
/// assert!(!limiter.try_acquire());
/// # Ok::<(), sk_core::RateLimitError>(())
/// ```
pub struct RateLimiter {
    per_sec: f64,
    burst: u32,
    /// Time between permits.
    interval: Duration,
    /// How far ahead of schedule a caller may be served: `interval · (burst − 1)`.
    tolerance: Duration,
    clock: Arc<dyn Clock>,
    base: Instant,
    /// Theoretical arrival time of the next permit, as an offset from `base`.
    next: Mutex<Duration>,
}

impl RateLimiter {
    /// A limiter handing out `per_sec` permits per second, burst 1, on the
    /// real clock.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::InvalidRate`] when `per_sec` is NaN, infinite, zero
    /// or negative.
    pub fn new(per_sec: f64) -> Result<Self, RateLimitError> {
        if !(per_sec.is_finite() && per_sec > 0.0) {
            return Err(RateLimitError::InvalidRate { rate: per_sec });
        }
        let interval = Duration::try_from_secs_f64(1.0 / per_sec)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_nanos(1));
        let clock = SystemClock::shared();
        Ok(RateLimiter {
            per_sec,
            burst: 1,
            interval,
            tolerance: Duration::ZERO,
            base: clock.now(),
            clock,
            next: Mutex::new(Duration::ZERO),
        })
    }

    /// Allows up to `n` permits at once after a quiet period (default 1; 0
    /// is treated as 1, since a bucket must hold at least one permit). The
    /// bucket is refilled.
    pub fn with_burst(mut self, n: u32) -> Self {
        self.burst = n.max(1);
        self.tolerance = self
            .interval
            .checked_mul(self.burst - 1)
            .unwrap_or(Duration::MAX);
        self.refill();
        self
    }

    /// Reads and waits time through `clock`; the bucket is refilled.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.refill();
        self
    }

    fn refill(&mut self) {
        self.base = self.clock.now();
        *self.next.get_mut() = Duration::ZERO;
    }

    /// The configured rate in permits per second.
    pub fn rate(&self) -> f64 {
        self.per_sec
    }

    /// The configured burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time between permits at the steady rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn now_offset(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.base)
    }

    /// Reserves a permit if it is available by `latest` (an offset from
    /// `base`); returns how long to wait for it.
    fn reserve(&self, latest: Option<Duration>) -> Option<Duration> {
        let mut next = self.next.lock();
        let now = self.now_offset();
        let scheduled = (*next).max(now);
        let wait = scheduled.saturating_sub(self.tolerance).saturating_sub(now);
        if latest.is_some_and(|latest| now.saturating_add(wait) > latest) {
            return None;
        }
        *next = scheduled.saturating_add(self.interval);
        Some(wait)
    }

    /// Blocks (through the clock) until a permit is available and takes it.
    pub fn acquire(&self) {
        if let Some(wait) = self.reserve(None) {
            if !wait.is_zero() {
                self.clock.sleep(wait);
            }
        }
    }

    /// Takes the next permit and returns how long until it is due (zero
    /// when it is due now), without waiting: for a caller that schedules
    /// the work itself instead of sleeping.
    pub fn reserve_next(&self) -> Duration {
        self.reserve(None).unwrap_or_default()
    }

    /// Takes a permit if one is available right now, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.reserve(Some(self.now_offset())).is_some()
    }

    /// Takes a permit if one becomes available by `deadline`, waiting for
    /// it; returns `false` at once (taking nothing) when it would not.
    pub fn acquire_until(&self, deadline: Instant) -> bool {
        let latest = deadline.saturating_duration_since(self.base);
        if deadline < self.base {
            return false;
        }
        match self.reserve(Some(latest)) {
            Some(wait) => {
                if !wait.is_zero() {
                    self.clock.sleep(wait);
                }
                true
            }
            None => false,
        }
    }

    /// [`acquire_until`](RateLimiter::acquire_until) `timeout` from now.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        match self.clock.now().checked_add(timeout) {
            Some(deadline) => self.acquire_until(deadline),
            None => {
                self.acquire();
                true
            }
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_sec", &self.per_sec)
            .field("burst", &self.burst)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
