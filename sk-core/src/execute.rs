//! [`Execute`]: running a function with its modifiers applied, written
//! once for every function type over the one step each type supplies (an
//! [`Invocation`]: a single attempt, unmodified).
//!
//! The modifiers wrap the attempt in one fixed order:
//!
//! ```text
//! background( retry( rate_limit( timeout( attempt ) ) ) )
//! ```
//!
//! `background` runs everything on a new thread; `retry` repeats the inner
//! steps; every attempt waits for a rate-limit permit, then runs under the
//! timeout (the shorter of the timeout and the retry policy's per-attempt
//! timeout and remaining deadline).

use std::thread;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, bounded};

use crate::args::Args;
use crate::background::Background;
use crate::clock::SystemClock;
use crate::error::FunctionError;
use crate::modifiers::{Modified, Modify};
use crate::retry::{Retry, RetryError};
use crate::stop::StopToken;
use crate::value::{Value, downcast_output};

/// One attempt of a call: what [`Execute`] wraps in the modifiers. Sealed:
/// public in a private module, so only this crate's types implement it.
pub trait Invocation: Clone + Send + 'static {
    /// The function's name, for errors and thread names.
    fn name(&self) -> &str;

    /// Runs the function once, with no modifier, catching a panic.
    ///
    /// # Errors
    ///
    /// The function's own failure or panic, and argument errors.
    fn attempt(&self) -> Result<Value, FunctionError>;

    /// A copy that runs with `extra` arguments layered over its own (an
    /// `extra` argument wins).
    fn with_args(&self, extra: &Args) -> Self;

    /// Checks, before any modifier runs, that the function can be called
    /// at all (e.g. that it is registered in this process).
    ///
    /// # Errors
    ///
    /// Why it cannot be called.
    fn check(&self) -> Result<(), FunctionError> {
        Ok(())
    }
}

/// Running a function: [`SkFunction`], [`SkLambda`] or [`AnyFunction`],
/// with its [modifiers](Modify) applied in [the modifier
/// order](crate#modifier-order). The methods are written once, here, over
/// the single attempt each type supplies; the trait is sealed.
///
/// [`SkFunction`]: crate::SkFunction
/// [`SkLambda`]: crate::SkLambda
/// [`AnyFunction`]: crate::AnyFunction
///
/// # Examples
///
/// ```
/// use sk_core::{Args, Execute, FunctionError, SkLambda};
///
/// let greet = SkLambda::with_args("greet", |args: &Args| {
///     Ok::<_, FunctionError>(format!("hello, {}", args.decode::<String>("greet", "name")?))
/// });
/// let args = Args::new().with("name", &"ada".to_owned())?;
/// assert_eq!(greet.execute_with::<String>(&args)?, "hello, ada");
///
/// // Without `name` the call fails, here on a thread of its own.
/// let job = greet.background::<String>()?;
/// assert!(matches!(job.join(), Err(FunctionError::MissingArgument { .. })));
/// # Ok::<(), FunctionError>(())
/// ```
pub trait Execute: Modify + Invocation {
    /// Executes the function and returns its output as an `R`.
    ///
    /// A generator is collected into a `Vec` of its items; an async function
    /// is driven to completion on this thread.
    ///
    /// # Errors
    ///
    /// Whatever [`execute_value`](Execute::execute_value) gives, and
    /// [`FunctionError::OutputType`] when the function does not return `R`.
    fn execute<R: 'static>(&self) -> Result<R, FunctionError> {
        downcast_output(self.name(), self.execute_value()?)
    }

    /// Executes the function with `extra` arguments layered over the bound
    /// ones (an `extra` argument wins).
    ///
    /// # Errors
    ///
    /// As [`execute`](Execute::execute).
    fn execute_with<R: 'static>(&self, extra: &Args) -> Result<R, FunctionError> {
        downcast_output(self.name(), self.execute_value_with(extra)?)
    }

    /// Executes the function, applying its modifiers, and returns the
    /// type-erased output.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotRegistered`], argument errors
    /// ([`FunctionError::MissingArgument`], [`FunctionError::ArgumentType`]),
    /// the function's own failure ([`FunctionError::Failed`],
    /// [`FunctionError::Panicked`]) and the modifiers' errors
    /// ([`FunctionError::TimedOut`], [`FunctionError::RetriesExhausted`],
    /// [`FunctionError::InvalidModifier`]).
    fn execute_value(&self) -> Result<Value, FunctionError> {
        self.check()?;
        run(self)
    }

    /// Executes the function with `extra` arguments layered over the bound
    /// ones and returns the type-erased output.
    ///
    /// # Errors
    ///
    /// As [`execute_value`](Execute::execute_value).
    fn execute_value_with(&self, extra: &Args) -> Result<Value, FunctionError> {
        if extra.is_empty() {
            return self.execute_value();
        }
        self.with_args(extra).execute_value()
    }

    /// Runs the function on a new thread and returns a handle to join.
    ///
    /// The background call applies every other modifier (the outermost of
    /// [the modifier order](crate#modifier-order)); it runs under a child
    /// of the caller's [`StopToken`], which [`Background::stop`] sets.
    ///
    /// # Errors
    ///
    /// [`FunctionError::Background`] when the thread cannot be started.
    fn background<R: Send + 'static>(&self) -> Result<Background<R>, FunctionError> {
        let this = self.clone();
        Background::spawn(self.name(), move || this.execute_value())
    }
}

/// Runs `call` with its modifiers applied (all but background).
fn run<F: Execute>(call: &F) -> Result<Value, FunctionError> {
    let modifiers: &Modified = call.modified();
    let once = |timeout: Option<Duration>| {
        modifiers.acquire(call.name())?;
        match timeout {
            Some(limit) => with_timeout(call, limit),
            None => call.attempt(),
        }
    };
    let Some(policy) = modifiers.retry() else {
        return once(modifiers.timeout());
    };
    let mut rng = fastrand::Rng::new();
    let classify = |e: &FunctionError| match e {
        FunctionError::TimedOut { .. } if !policy.retries_timeouts() => Retry::No,
        e if e.is_retryable() => Retry::Yes,
        _ => Retry::No,
    };
    policy
        .run(&SystemClock, &mut rng, classify, |attempt| {
            once(shorter(modifiers.timeout(), attempt.timeout))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_gets_the_shorter_of_two_timeouts() {
        let (short, long) = (Duration::from_millis(5), Duration::from_secs(5));
        assert_eq!(shorter(Some(short), Some(long)), Some(short));
        assert_eq!(shorter(Some(long), Some(short)), Some(short));
        assert_eq!(shorter(None, Some(long)), Some(long));
        assert_eq!(shorter(Some(long), None), Some(long));
        assert_eq!(shorter(None, None), None);
    }
}
