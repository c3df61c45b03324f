//! Modifiers — retry, timeout, rate limit, background — applied to any
//! function in one fixed order:
//!
//! ```text
//! background( retry( rate_limit( timeout( call ) ) ) )
//! ```
//!
//! `background` runs everything on a new thread; `retry` repeats the inner
//! steps; every attempt waits for a rate-limit permit, then runs under the
//! timeout (the shorter of the timeout and the retry policy's per-attempt
//! timeout and remaining deadline).

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use serde::{Deserialize, Serialize};

use crate::clock::SystemClock;
use crate::error::FunctionError;
use crate::function::downcast_output;
use crate::rate::RateLimiter;
use crate::retry::{Retry, RetryError, RetryPolicy};
use crate::stop::StopToken;
use crate::value::Value;

/// The modifiers of a function handle; they travel with it.
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

/// One attempt of a call: what the modifiers wrap.
pub(crate) trait Invocation: Clone + Send + 'static {
    fn name(&self) -> &str;
    fn attempt(&self) -> Result<Value, FunctionError>;
}

/// The rate limiter of a handle, shared by its clones and built on first
/// use (a handle decoded in another process gets its own). Nothing is
/// allocated for a handle without a rate limit.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimiterCell(Option<Arc<OnceLock<Result<RateLimiter, String>>>>);

impl LimiterCell {
    pub(crate) fn for_rate(per_sec: Option<f64>) -> Self {
        LimiterCell(per_sec.map(|_| Arc::default()))
    }

    fn acquire(&self, function: &str, per_sec: f64) -> Result<(), FunctionError> {
        let Some(cell) = &self.0 else {
            // Unreachable: a cell is made whenever a rate is set.
            return Ok(());
        };
        let limiter = cell.get_or_init(|| RateLimiter::new(per_sec).map_err(|e| e.to_string()));
        match limiter {
            Ok(limiter) => {
                limiter.acquire();
                Ok(())
            }
            Err(reason) => Err(FunctionError::InvalidModifier {
                function: function.to_owned(),
                modifier: "rate_limit",
                reason: reason.clone(),
            }),
        }
    }
}

/// Runs `call` with `modifiers` applied (all but background).
pub(crate) fn run<I: Invocation>(
    call: &I,
    modifiers: &Modifiers,
    limiter: &LimiterCell,
) -> Result<Value, FunctionError> {
    let once = |timeout: Option<Duration>| {
        if let Some(per_sec) = modifiers.rate_limit {
            limiter.acquire(call.name(), per_sec)?;
        }
        match timeout {
            Some(limit) => with_timeout(call, limit),
            None => call.attempt(),
        }
    };
    let Some(policy) = &modifiers.retry else {
        return once(modifiers.timeout);
    };
    let mut rng = fastrand::Rng::new();
    let classify = |e: &FunctionError| match e {
        FunctionError::TimedOut { .. } if !policy.retries_timeouts() => Retry::No,
        e if e.is_retryable() => Retry::Yes,
        _ => Retry::No,
    };
    policy
        .run(&SystemClock, &mut rng, classify, |attempt| {
            once(shorter(modifiers.timeout, attempt.timeout))
        })
        .map_err(|e| match e {
            RetryError::NonRetryable { error, .. } => error,
            RetryError::InvalidPolicy(reason) => FunctionError::InvalidModifier {
                function: call.name().to_owned(),
                modifier: "retry",
                reason: reason.to_string(),
            },
            gave_up => {
                let attempts = gave_up.attempts();
                match gave_up.into_last_error() {
                    Some(last) if attempts > 1 => FunctionError::RetriesExhausted {
                        function: call.name().to_owned(),
                        attempts,
                        last: Box::new(last),
                    },
                    Some(last) => last,
                    None => FunctionError::InvalidModifier {
                        function: call.name().to_owned(),
                        modifier: "retry",
                        reason: "the policy allowed no attempt".to_owned(),
                    },
                }
            }
        })
}

fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs one attempt on its own thread and waits at most `limit`. On overrun
/// the attempt's stop token is set (the thread notices cooperatively) and
/// the call is reported timed out.
fn with_timeout<I: Invocation>(call: &I, limit: Duration) -> Result<Value, FunctionError> {
    let token = StopToken::current().map_or_else(StopToken::new, |t| t.child());
    let (tx, rx) = bounded(1);
    let (inner, inner_token) = (call.clone(), token.clone());
    thread::Builder::new()
        .name(format!("sk-timeout:{}", call.name()))
        .spawn(move || {
            let result = inner_token.enter(|| inner.attempt());
            // The receiver is gone when the caller already timed out.
            let _ = tx.send(result);
        })
        .map_err(|e| FunctionError::Background {
            function: call.name().to_owned(),
            reason: format!("cannot start the timeout thread: {e}"),
        })?;
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            token.stop();
            Err(FunctionError::TimedOut {
                function: call.name().to_owned(),
                after: limit,
            })
        }
        Err(RecvTimeoutError::Disconnected) => Err(FunctionError::Background {
            function: call.name().to_owned(),
            reason: "the call's thread ended without a result".to_owned(),
        }),
    }
}

/// A call running on a background thread, made by
/// [`SkFunction::background`](crate::SkFunction::background).
///
/// Dropping it detaches the call (it still runs to its end).
#[derive(Debug)]
#[must_use = "a background call's result is lost unless it is joined"]
pub struct Background<R> {
    function: String,
    result: Receiver<Result<Value, FunctionError>>,
    stop: StopToken,
    thread: Option<JoinHandle<()>>,
    _output: PhantomData<fn() -> R>,
}

impl<R: Send + 'static> Background<R> {
    pub(crate) fn spawn(
        function: &str,
        call: impl FnOnce() -> Result<Value, FunctionError> + Send + 'static,
    ) -> Result<Self, FunctionError> {
        let stop = StopToken::current().map_or_else(StopToken::new, |t| t.child());
        let (tx, rx) = bounded(1);
        let token = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("sk-background:{function}"))
            .spawn(move || {
                let _ = tx.send(token.enter(call));
            })
            .map_err(|e| FunctionError::Background {
                function: function.to_owned(),
                reason: format!("cannot start the thread: {e}"),
            })?;
        Ok(Background {
            function: function.to_owned(),
            result: rx,
            stop,
            thread: Some(thread),
            _output: PhantomData,
        })
    }

    /// Waits for the call to finish and returns its output.
    ///
    /// # Errors
    ///
    /// The call's own error, or [`FunctionError::OutputType`] when it does
    /// not return an `R`.
    pub fn join(mut self) -> Result<R, FunctionError> {
        let received = self.result.recv();
        self.reap();
        match received {
            Ok(result) => downcast_output(&self.function, result?),
            Err(_) => Err(self.lost()),
        }
    }

    /// Waits at most `limit`; `Ok(None)` when the call is still running.
    ///
    /// # Errors
    ///
    /// As [`Background::join`]. After a result (or error) was returned,
    /// later calls return [`FunctionError::Background`].
    pub fn join_timeout(&mut self, limit: Duration) -> Result<Option<R>, FunctionError> {
        match self.result.recv_timeout(limit) {
            Ok(result) => {
                self.reap();
                downcast_output(&self.function, result?).map(Some)
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.lost()),
        }
    }

    /// Whether the call has finished.
    pub fn is_finished(&self) -> bool {
        !self.result.is_empty() || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Asks the call to stop: sets its [`StopToken`].
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The call's stop token.
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    fn reap(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread sent its result and is ending; a panic was already
            // caught inside the call.
            let _ = thread.join();
        }
    }

    fn lost(&self) -> FunctionError {
        FunctionError::Background {
            function: self.function.clone(),
            reason: "no result: it was already taken or the thread died".to_owned(),
        }
    }
}

#[cfg(test)]
#[path = "modifiers_tests.rs"]
mod tests;
