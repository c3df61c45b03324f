//! The modifiers — retry, timeout, rate limit — three ways: as data that
//! travels with a handle ([`Modifiers`]), as the state a handle, lambda or
//! builder carries ([`Modified`], which adds the rate limiter its clones
//! share), and as the builder methods every function type takes
//! ([`Modify`], written once over `Modified`).
//!
//! How they are applied is [`Execute`](crate::Execute)'s business (see
//! [the modifier order](crate#modifier-order)).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::FunctionError;
use crate::rate::{RateLimitError, RateLimiter};
use crate::retry::RetryPolicy;

/// The modifiers of a function handle; they travel with it.
///
/// A copy of what is set, read with [`Modify::modifiers`].
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Modifiers {
    /// Retry failed attempts by this policy.
    pub retry: Option<RetryPolicy>,
    /// Bound each attempt to this long.
    pub timeout: Option<Duration>,
    /// Start at most this many attempts per second.
    pub rate_limit: Option<f64>,
}

/// The modifier state of a handle, lambda or builder.
///
/// A rate and the limiter that enforces it are one field, so a rate without
/// a limiter cannot be represented. Compares, prints and serializes as its
/// [`Modifiers`].
#[derive(Clone, Default)]
pub struct Modified {
    retry: Option<RetryPolicy>,
    timeout: Option<Duration>,
    rate: Option<RateLimit>,
}

/// A rate and its limiter, shared by the clones of a handle and built on
/// first use (a handle decoded in another process gets its own). Nothing
/// is allocated for a handle without a rate limit.
#[derive(Clone)]
struct RateLimit {
    per_sec: f64,
    limiter: Arc<OnceLock<Result<RateLimiter, RateLimitError>>>,
}

impl RateLimit {
    fn new(per_sec: f64) -> Self {
        RateLimit {
            per_sec,
            limiter: Arc::default(),
        }
    }

    fn acquire(&self, function: &str) -> Result<(), FunctionError> {
        match self.limiter.get_or_init(|| RateLimiter::new(self.per_sec)) {
            Ok(limiter) => {
                limiter.acquire();
                Ok(())
            }
            Err(e) => Err(FunctionError::InvalidModifier {
                function: function.to_owned(),
                modifier: "rate_limit",
                reason: e.to_string(),
            }),
        }
    }
}

impl Modified {
    /// The retry policy, if one is set.
    pub(crate) fn retry(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }

    /// The per-attempt timeout, if one is set.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Waits for a rate-limit permit, when a rate is set.
    ///
    /// # Errors
    ///
    /// [`FunctionError::InvalidModifier`] naming `function` when the rate
    /// is not a positive finite number.
    pub(crate) fn acquire(&self, function: &str) -> Result<(), FunctionError> {
        match &self.rate {
            Some(rate) => rate.acquire(function),
            None => Ok(()),
        }
    }

    /// What is set, as plain data.
    pub(crate) fn to_modifiers(&self) -> Modifiers {
        Modifiers {
            retry: self.retry.clone(),
            timeout: self.timeout,
            rate_limit: self.rate.as_ref().map(|rate| rate.per_sec),
        }
    }
}

impl From<Modifiers> for Modified {
    fn from(modifiers: Modifiers) -> Self {
        Modified {
            retry: modifiers.retry,
            timeout: modifiers.timeout,
            rate: modifiers.rate_limit.map(RateLimit::new),
        }
    }
}

impl PartialEq for Modified {
    fn eq(&self, other: &Self) -> bool {
        self.retry == other.retry
            && self.timeout == other.timeout
            && self.rate.as_ref().map(|r| r.per_sec) == other.rate.as_ref().map(|r| r.per_sec)
    }
}

impl fmt::Debug for Modified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_modifiers().fmt(f)
    }
}

impl Serialize for Modified {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_modifiers().serialize(serializer)
    }
}

/// What a type gives [`Modify`] to work on. Sealed: public in a private
/// module, so only this crate's types implement it.
pub trait HasModifiers {
    /// The modifier state.
    fn modified(&self) -> &Modified;
    /// The modifier state, to change.
    fn modified_mut(&mut self) -> &mut Modified;
}

/// The modifiers every function type takes: [`SkFunction`],
/// [`SkFunctionBuilder`], [`SkLambda`] and [`AnyFunction`].
///
/// They are applied in one fixed order whatever the order they were set in
/// (see [the modifier order](crate#modifier-order)); setting one again
/// replaces it. The trait is sealed: those four types are all that
/// implement it.
///
/// [`SkFunction`]: crate::SkFunction
/// [`SkFunctionBuilder`]: crate::SkFunctionBuilder
/// [`SkLambda`]: crate::SkLambda
/// [`AnyFunction`]: crate::AnyFunction
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Execute, Modify, RetryPolicy, SkLambda};
///
/// let f = SkLambda::new("answer", || 42u32)
///     .retry(RetryPolicy::fixed(Duration::from_millis(1)))
///     .timeout(Duration::from_secs(5))
///     .rate_limit(100.0);
/// assert_eq!(f.modifiers().rate_limit, Some(100.0));
/// assert_eq!(f.execute::<u32>()?, 42);
/// # Ok::<(), sk_core::FunctionError>(())
/// ```
pub trait Modify: HasModifiers + Sized {
    /// Retries failed calls by `policy`.
    fn retry(mut self, policy: RetryPolicy) -> Self {
        self.modified_mut().retry = Some(policy);
        self
    }

    /// Bounds every call (each attempt, under retry) to `limit`; an overrun
    /// sets the call's [`StopToken`](crate::StopToken) and is reported as
    /// [`FunctionError::TimedOut`].
    fn timeout(mut self, limit: Duration) -> Self {
        self.modified_mut().timeout = Some(limit);
        self
    }

    /// Starts at most `per_sec` calls per second through this function and
    /// its clones (each attempt counts).
    ///
    /// The rate is checked on the first call: one that is not a positive
    /// finite number makes every call fail with
    /// [`FunctionError::InvalidModifier`].
    fn rate_limit(mut self, per_sec: f64) -> Self {
        // A new limiter: clones made before this call keep their own.
        self.modified_mut().rate = Some(RateLimit::new(per_sec));
        self
    }

    /// The modifiers set, as plain data.
    fn modifiers(&self) -> Modifiers {
        self.modified().to_modifiers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_round_trips_through_its_modifiers() {
        let modifiers = Modifiers {
            retry: Some(RetryPolicy::fixed(Duration::from_millis(3))),
            timeout: Some(Duration::from_secs(2)),
            rate_limit: Some(7.5),
        };
        let modified = Modified::from(modifiers.clone());
        assert_eq!(modified.to_modifiers(), modifiers);
        assert_eq!(format!("{modified:?}"), format!("{modifiers:?}"));
        assert_eq!(Modified::default().to_modifiers(), Modifiers::default());
    }

    #[test]
    fn without_a_rate_no_permit_is_needed() {
        assert!(Modified::default().acquire("free").is_ok());
    }
}
