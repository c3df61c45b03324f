//! Retry policies: back-off, jitter, attempt limits, timeouts and deadlines.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::stop::StopToken;

/// How the wait between attempts grows.
///
/// `retry` below counts waits: retry 1 is the wait before the 2nd attempt.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same wait every time.
    Fixed(Duration),
    /// `initial + step * (retry - 1)`.
    Linear {
        /// The first wait.
        initial: Duration,
        /// Added for each further retry.
        step: Duration,
    },
    /// `initial * factor^(retry - 1)`; `factor` must be finite and at least 1.
    Exponential {
        /// The first wait.
        initial: Duration,
        /// Multiplier per further retry.
        factor: f64,
    },
}

impl Backoff {
    /// The wait before attempt `retry + 1`, before capping and jitter.
    /// Saturates at [`Duration::MAX`] instead of overflowing; zero for
    /// `retry == 0`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let n = retry - 1;
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Linear { initial, step } => {
                initial.saturating_add(step.checked_mul(n).unwrap_or(Duration::MAX))
            }
            Backoff::Exponential { initial, factor } => {
                let exponent = i32::try_from(n).unwrap_or(i32::MAX);
                scale(initial, factor.powi(exponent))
            }
        }
    }
}

/// `d * m`, saturating at [`Duration::MAX`] and clamped at zero; a NaN
/// multiplier counts as 1.
pub(crate) fn scale(d: Duration, m: f64) -> Duration {
    if m.is_nan() || m == 1.0 {
        return d;
    }
    if m <= 0.0 || d.is_zero() {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * m).unwrap_or(Duration::MAX)
}

/// Randomisation of a wait, so many clients do not retry in lockstep.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The wait is used as is.
    #[default]
    None,
    /// Uniform in `[0, d]` ("full jitter").
    Full,
    /// `d/2` plus uniform in `[0, d/2]` ("equal jitter").
    Equal,
    /// `d * (1 ± ratio)`, uniform, clamped at zero; `ratio` must be finite
    /// and non-negative (0.1 means ±10%).
    Ratio(f64),
}

impl Jitter {
    /// Applies this jitter to `d` using `rng`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sk_core::Jitter;
    ///
    /// let mut rng = fastrand::Rng::with_seed(7);
    /// let d = Jitter::Equal.apply(Duration::from_millis(100), &mut rng);
    /// assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    /// ```
    pub fn apply(&self, d: Duration, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Jitter::None => d,
            Jitter::Full => uniform_up_to(d, rng),
            Jitter::Equal => {
                let half = d / 2;
                half.saturating_add(uniform_up_to(d - half, rng))
            }
            Jitter::Ratio(ratio) => {
                if !ratio.is_finite() || ratio <= 0.0 {
                    return d;
                }
                let m = 1.0 + ratio * (2.0 * rng.f64() - 1.0);
                scale(d, m)
            }
        }
    }

    /// Checks the jitter's parameter.
    ///
    /// # Errors
    ///
    /// [`PolicyError::BadJitterRatio`] for a NaN, infinite or negative ratio.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match *self {
            Jitter::Ratio(ratio) if !(ratio.is_finite() && ratio >= 0.0) => {
                Err(PolicyError::BadJitterRatio(ratio))
            }
            _ => Ok(()),
        }
    }
}

/// Uniform in `[0, d]` at nanosecond resolution (durations past ~584 years
/// are treated as that long).
fn uniform_up_to(d: Duration, rng: &mut fastrand::Rng) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// What a [`RetryPolicy`] found wrong with its own settings.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `max_attempts(0)`: at least the first attempt must run.
    #[error("max attempts must be at least 1")]
    ZeroAttempts,
    /// An exponential factor that is NaN, infinite or below 1.
    #[error("exponential backoff factor must be a finite number >= 1, got {0}")]
    BadFactor(f64),
    /// A jitter ratio that is NaN, infinite or negative.
    #[error("jitter ratio must be a finite number >= 0, got {0}")]
    BadJitterRatio(f64),
    /// `attempt_timeout(Duration::ZERO)`.
    #[error("attempt timeout must be greater than zero")]
    ZeroAttemptTimeout,
    /// `deadline(Duration::ZERO)`.
    #[error("deadline must be greater than zero")]
    ZeroDeadline,
}

/// A classifier's verdict on a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Worth another attempt.
    Yes,
    /// Give up now and return the error.
    No,
}

impl From<bool> for Retry {
    fn from(retry: bool) -> Self {
        if retry { Retry::Yes } else { Retry::No }
    }
}

/// What one attempt is told about itself by [`RetryPolicy::run`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Time left until the overall deadline, if the policy has one.
    pub remaining: Option<Duration>,
    /// How long this attempt may take: the smaller of the per-attempt timeout
    /// and `remaining`. The operation is expected to honour it (e.g. with
    /// `recv_timeout`); `run` cannot interrupt it.
    pub timeout: Option<Duration>,
}

impl Attempt {
    /// Whether this is the first attempt.
    pub fn is_first(&self) -> bool {
        self.number == 1
    }
}

/// Why [`RetryPolicy::run`] gave up; carries the last error of the operation.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The classifier said the error is not worth retrying.
    #[error("attempt {attempt} failed with a non-retryable error")]
    NonRetryable {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// Its error.
        #[source]
        error: E,
    },
    /// Every allowed attempt failed.
    #[error("gave up after {attempts} attempts")]
    Exhausted {
        /// How many attempts ran.
        attempts: u32,
        /// The error of the last one.
        #[source]
        last: E,
    },
    /// The next wait would have ended past the overall deadline.
    #[error("deadline of {deadline:?} exceeded after {attempts} attempts ({elapsed:?} elapsed)")]
    DeadlineExceeded {
        /// How many attempts ran.
        attempts: u32,
        /// Time spent since the first attempt started.
        elapsed: Duration,
        /// The policy's overall deadline.
        deadline: Duration,
        /// The error of the last attempt.
        #[source]
        last: E,
    },
    /// An attempt failed after using its whole timeout and the policy does
    /// not retry timeouts (see [`RetryPolicy::retry_timeouts`]).
    #[error("attempt {attempt} timed out after {timeout:?}")]
    TimedOut {
        /// The attempt that timed out (1-based).
        attempt: u32,
        /// The timeout it was given.
        timeout: Duration,
        /// Its error.
        #[source]
        error: E,
    },
    /// The thread's current [`StopToken`] was stopped between attempts.
    #[error("stopped after {attempts} attempts")]
    Stopped {
        /// How many attempts ran.
        attempts: u32,
        /// The error of the last one.
        #[source]
        last: E,
    },
    /// The policy itself is invalid; no attempt ran.
    #[error("invalid retry policy")]
    InvalidPolicy(#[from] PolicyError),
}

impl<E> RetryError<E> {
    /// How many attempts ran before giving up.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::NonRetryable { attempt, .. } | RetryError::TimedOut { attempt, .. } => {
                *attempt
            }
            RetryError::Exhausted { attempts, .. }
            | RetryError::DeadlineExceeded { attempts, .. }
            | RetryError::Stopped { attempts, .. } => *attempts,
            RetryError::InvalidPolicy(_) => 0,
        }
    }

    /// The operation's last error, if an attempt ran.
    pub fn last_error(&self) -> Option<&E> {
        match self {
            RetryError::NonRetryable { error, .. } | RetryError::TimedOut { error, .. } => {
                Some(error)
            }
            RetryError::Exhausted { last, .. }
            | RetryError::DeadlineExceeded { last, .. }
            | RetryError::Stopped { last, .. } => Some(last),
            RetryError::InvalidPolicy(_) => None,
        }
    }

    /// Takes the operation's last error, if an attempt ran.
    pub fn into_last_error(self) -> Option<E> {
        match self {
            RetryError::NonRetryable { error, .. } | RetryError::TimedOut { error, .. } => {
                Some(error)
            }
            RetryError::Exhausted { last, .. }
            | RetryError::DeadlineExceeded { last, .. }
            | RetryError::Stopped { last, .. } => Some(last),
            RetryError::InvalidPolicy(_) => None,
        }
    }
}

/// When and how often to retry a failing operation.
///
/// Built from a back-off constructor and owned setters; the default is 3
/// attempts, no jitter, no cap, no timeouts. Setters do not validate;
/// [`validate`](RetryPolicy::validate) does, and [`run`](RetryPolicy::run)
/// validates before the first attempt. Serializable, so a policy can travel
/// with a function handle or live in a config file (missing fields take their
/// defaults).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Jitter, ManualClock, Retry, RetryPolicy};
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(100), 2.0)
///     .max_attempts(4)
///     .max_delay(Duration::from_millis(250))
///     .jitter(Jitter::None);
/// assert_eq!(
///     policy.delays(0).collect::<Vec<_>>(),
///     [100, 200, 250].map(Duration::from_millis)
/// );
///
/// let clock = ManualClock::new();
/// let mut rng = fastrand::Rng::with_seed(1);
/// let result = policy.run(&clock, &mut rng, |_: &&str| Retry::Yes, |attempt| {
///     if attempt.number < 3 { Err("busy") } else { Ok(attempt.number) }
/// });
/// assert_eq!(result.unwrap(), 3);
/// assert_eq!(clock.elapsed(), Duration::from_millis(300));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    max_delay: Option<Duration>,
    jitter: Jitter,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry_timeouts: bool,
}

impl Default for RetryPolicy {
    /// Exponential back-off from 100 ms doubling, 3 attempts.
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_millis(100), 2.0)
    }
}

impl RetryPolicy {
    /// The default number of attempts, counting the first.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

    fn with_backoff(backoff: Backoff) -> Self {
        RetryPolicy {
            backoff,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            max_delay: None,
            jitter: Jitter::None,
            attempt_timeout: None,
            deadline: None,
            retry_timeouts: true,
        }
    }

    /// Waits `d` before every retry.
    pub fn fixed(d: Duration) -> Self {
        Self::with_backoff(Backoff::Fixed(d))
    }

    /// Waits `initial`, then `initial + step`, `initial + 2·step`, …
    pub fn linear(initial: Duration, step: Duration) -> Self {
        Self::with_backoff(Backoff::Linear { initial, step })
    }

    /// Waits `initial`, then `initial·factor`, `initial·factor²`, …
    /// (`factor` must be finite and ≥ 1; checked by
    /// [`validate`](RetryPolicy::validate)).
    pub fn exponential(initial: Duration, factor: f64) -> Self {
        Self::with_backoff(Backoff::Exponential { initial, factor })
    }

    /// Runs the operation once and never retries.
    pub fn never() -> Self {
        Self::fixed(Duration::ZERO).max_attempts(1)
    }

    /// Total attempts, including the first (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Upper bound on every wait, applied after back-off and again after
    /// jitter, so no wait ever exceeds it.
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = Some(cap);
        self
    }

    /// Randomises each wait (default [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Time each attempt may take (see [`Attempt::timeout`]).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Overall time budget from the start of the first attempt; `run` never
    /// sleeps past it.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Whether an attempt that fails after using its whole
    /// [`attempt_timeout`](RetryPolicy::attempt_timeout) is retried
    /// (default `true`); when `false`, `run` returns
    /// [`RetryError::TimedOut`].
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// The back-off shape.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The total number of attempts allowed.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The cap on each wait, if any.
    pub fn delay_cap(&self) -> Option<Duration> {
        self.max_delay
    }

    /// The jitter applied to each wait.
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// The per-attempt timeout, if any.
    pub fn attempt_timeout_value(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The overall deadline, if any.
    pub fn deadline_value(&self) -> Option<Duration> {
        self.deadline
    }

    /// Whether timed-out attempts are retried.
    pub fn retries_timeouts(&self) -> bool {
        self.retry_timeouts
    }

    /// Checks the policy's settings.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] naming the first bad setting: zero attempts, an
    /// exponential factor that is not a finite number ≥ 1, a bad jitter
    /// ratio, or a zero attempt timeout or deadline.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_attempts == 0 {
            return Err(PolicyError::ZeroAttempts);
        }
        if let Backoff::Exponential { factor, .. } = self.backoff {
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(PolicyError::BadFactor(factor));
            }
        }
        self.jitter.validate()?;
        if self.attempt_timeout == Some(Duration::ZERO) {
            return Err(PolicyError::ZeroAttemptTimeout);
        }
        if self.deadline == Some(Duration::ZERO) {
            return Err(PolicyError::ZeroDeadline);
        }
        Ok(())
    }

    /// The wait before attempt `retry + 1` (so `retry = 1` is the wait before
    /// the 2nd attempt): back-off, capped, jittered, capped again. Zero for
    /// `retry = 0`.
    pub fn delay(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        if retry == 0 {
            return Duration::ZERO;
        }
        let cap = |d: Duration| self.max_delay.map_or(d, |max| d.min(max));
        cap(self.jitter.apply(cap(self.backoff.base_delay(retry)), rng))
    }

    /// The waits between attempts for a random generator seeded with `seed`:
    /// exactly `max_attempts - 1` items (none for zero or one attempt).
    pub fn delays(&self, seed: u64) -> impl Iterator<Item = Duration> + '_ {
        let mut rng = fastrand::Rng::with_seed(seed);
        (1..self.max_attempts.max(1)).map(move |retry| self.delay(retry, &mut rng))
    }

    /// Runs `op` until it succeeds or the policy gives up.
    ///
    /// Each failed attempt is passed to `classify`; [`Retry::No`] ends the
    /// run at once. Between attempts `run` waits [`delay`](RetryPolicy::delay)
    /// through `clock`, and stops early when the thread's current
    /// [`StopToken`] is stopped. With a deadline, `run` gives up instead of
    /// starting a wait that would end at or past it.
    ///
    /// # Errors
    ///
    /// - [`RetryError::InvalidPolicy`] if [`validate`](RetryPolicy::validate)
    ///   fails (no attempt runs);
    /// - [`RetryError::NonRetryable`] when `classify` returns [`Retry::No`];
    /// - [`RetryError::TimedOut`] when an attempt fails after using its whole
    ///   timeout and [`retry_timeouts`](RetryPolicy::retry_timeouts) is off;
    /// - [`RetryError::Exhausted`] when the last allowed attempt fails;
    /// - [`RetryError::DeadlineExceeded`] when the deadline leaves no room
    ///   for the next wait;
    /// - [`RetryError::Stopped`] when the current stop token is stopped.
    pub fn run<T, E>(
        &self,
        clock: &dyn Clock,
        rng: &mut fastrand::Rng,
        classify: impl Fn(&E) -> Retry,
        mut op: impl FnMut(Attempt) -> Result<T, E>,
    ) -> Result<T, RetryError<E>> {
        self.validate()?;
        let stop = StopToken::current();
        let start = clock.now();
        let mut number = 0u32;
        loop {
            number += 1;
            let elapsed = clock.now().saturating_duration_since(start);
            let remaining = self.deadline.map(|d| d.saturating_sub(elapsed));
            let timeout = match (self.attempt_timeout, remaining) {
                (Some(t), Some(r)) => Some(t.min(r)),
                (t, r) => t.or(r),
            };
            let attempt_start = clock.now();
            let error = match op(Attempt {
                number,
                remaining,
                timeout,
            }) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let took = clock.now().saturating_duration_since(attempt_start);
            let elapsed = clock.now().saturating_duration_since(start);

            if classify(&error) == Retry::No {
                return Err(RetryError::NonRetryable {
                    attempt: number,
                    error,
                });
            }
            if let Some(limit) = self.attempt_timeout {
                let hit_deadline = self.deadline.is_some_and(|d| elapsed >= d);
                if !self.retry_timeouts && took >= limit && !hit_deadline {
                    return Err(RetryError::TimedOut {
                        attempt: number,
                        timeout: limit,
                        error,
                    });
                }
            }
            if number >= self.max_attempts {
                return Err(RetryError::Exhausted {
                    attempts: number,
                    last: error,
                });
            }
            let wait = self.delay(number, rng);
            if let Some(deadline) = self.deadline {
                if elapsed.saturating_add(wait) >= deadline {
                    return Err(RetryError::DeadlineExceeded {
                        attempts: number,
                        elapsed,
                        deadline,
                        last: error,
                    });
                }
            }
            let stopped = match &stop {
                Some(token) => clock.sleep_or_stop(wait, token),
                None => {
                    clock.sleep(wait);
                    false
                }
            };
            if stopped {
                return Err(RetryError::Stopped {
                    attempts: number,
                    last: error,
                });
            }
        }
    }

    /// [`run`](RetryPolicy::run) with the real clock and a randomly seeded
    /// generator, retrying every error.
    ///
    /// # Errors
    ///
    /// As [`run`](RetryPolicy::run), except that `NonRetryable` cannot occur.
    pub fn run_simple<T, E>(
        &self,
        op: impl FnMut(Attempt) -> Result<T, E>,
    ) -> Result<T, RetryError<E>> {
        let mut rng = fastrand::Rng::new();
        self.run(&SystemClock, &mut rng, |_| Retry::Yes, op)
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backoff::Fixed(d) => write!(f, "fixed {d:?}"),
            Backoff::Linear { initial, step } => write!(f, "linear {initial:?} + {step:?}"),
            Backoff::Exponential { initial, factor } => {
                write!(f, "exponential {initial:?} x{factor}")
            }
        }
    }
}

// Tests live in `retry/tests.rs` to keep this file short.
#[cfg(test)]
mod tests;
