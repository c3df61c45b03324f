//! The unit of work of Suitkaise.
//!
//! - [`SkFunction`]: a serializable handle to a registered function —
//!   its name plus arguments bound by parameter name — that executes here
//!   or in another process of the same binary, which resolves the name in
//!   its own registry. Built with [`SkFunction::builder`], which checks
//!   every argument against the function's signature as it is bound.
//! - Registration: `#[suitkaise::function]` (and `#[suitkaise::generator]`)
//!   register a function statically, so every process of the binary knows
//!   it without setup code; [`FunctionSpec`] registers one at run time;
//!   [`SkFunctionBuilder::register_as`] registers an *instance* with bound
//!   arguments; `#[suitkaise::function(on_first_call)]` registers on the
//!   first direct call.
//! - Kinds ([`FunctionKind`]): plain, generator (a stream of values), async,
//!   and local closures ([`SkLambda`], in-process only). [`AnyFunction`] is
//!   accepted wherever a function is expected.
//! - Two traits, written once for all of them: [`Modify`] (the modifiers
//!   below) and [`Execute`] (`execute`, `execute_with`, `background`, ...).
//!   Bring them into scope to call those methods (`use sk_core::{Execute,
//!   Modify};`, or `suitkaise::prelude::*`).
//! - [`RetryPolicy`], [`StopToken`], [`TimingStats`], [`RateLimiter`],
//!   [`Circuit`], and the [`Clock`] they run on ([`ManualClock`] in tests).
//!
//! # Modifier order
//!
//! Handles and lambdas take modifiers — `.retry(policy)`, `.timeout(d)`,
//! `.rate_limit(per_sec)` from [`Modify`], and `.background()` from
//! [`Execute`] — applied in one fixed order whatever the order they were
//! set in:
//!
//! ```text
//! background( retry( rate_limit( timeout( call ) ) ) )
//! ```
//!
//! `background` runs the whole call on a new thread and returns a
//! [`Background`] handle to join; `retry` repeats what is inside it; each
//! attempt waits for a rate-limit permit (so retries count against the
//! rate), then runs under the timeout: the shorter of `.timeout` and the
//! policy's per-attempt timeout and remaining deadline. A timed-out attempt
//! has its [`StopToken`] set and is reported as [`FunctionError::TimedOut`].
//!
//! # Modules
//!
//! The modules are private; the items above are re-exported at the root.
//! Each module uses only modules listed before it, so the graph has no
//! circles (vocabulary at the bottom, function types at the top):
//!
//! | module | holds | uses |
//! |---|---|---|
//! | `error` | [`FunctionError`], [`Permanent`], [`error_chain`], the panic guard | — |
//! | `stop` | [`StopToken`] | — |
//! | `clock` | [`Clock`], [`SystemClock`], [`ManualClock`] | stop |
//! | `value` | [`Value`] (a type-erased output), [`TakeError`] | error |
//! | `args` | [`Args`], [`ArgValue`] (arguments bound by name, encoded) | error |
//! | `retry` | [`RetryPolicy`] and its run loop, [`Backoff`], [`Jitter`], [`RetryError`] | clock, stop |
//! | `rate` | [`RateLimiter`] (a token bucket) | clock |
//! | `circuit` | [`Circuit`] (a circuit breaker) | clock, retry |
//! | `stats` | [`TimingStats`], [`SharedStats`], [`StatsSummary`] | clock |
//! | `window` | [`WindowStats`] (recent timings) | stats |
//! | `spec` | [`FunctionSpec`], [`ParamSpec`], [`FunctionKind`], the function registry | args, error, value |
//! | `modifiers` | [`Modifiers`], [`Modify`] and the state it sets | error, rate, retry |
//! | `background` | [`Background`] (a call on its own thread) | error, stop, value |
//! | `execute` | [`Execute`] and the modifier pipeline | args, background, clock, error, modifiers, retry, stop, value |
//! | `function` | [`SkFunction`], [`SkFunctionBuilder`], [`instances`] | args, error, execute, modifiers, spec, value |
//! | `lambda` | [`SkLambda`] | args, error, execute, modifiers, spec, value |
//! | `any` | [`AnyFunction`] | args, error, execute, function, lambda, modifiers, value |
//!
//! Tests of one module sit beside it (`mod tests`, in `<module>/tests.rs`
//! when long); tests of behaviour that spans modules are in `src/tests/`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use sk_cereal::Format;
//! use sk_core::{Execute, FunctionError, FunctionSpec, Modify, ParamSpec, RetryPolicy, SkFunction};
//!
//! // At run time; `#[suitkaise::function]` does the same statically.
//! FunctionSpec::plain("lib_doc_scale", [ParamSpec::of::<f64>("x"), ParamSpec::of::<f64>("by")], |a| {
//!     Ok::<_, FunctionError>(a.decode::<f64>("lib_doc_scale", "x")? * a.decode::<f64>("lib_doc_scale", "by")?)
//! })
//! .register()?;
//!
//! let double = SkFunction::builder("lib_doc_scale")
//!     .arg("by", 2.0_f64)
//!     .register_as("lib_doc_double")?;     // a named instance with a bound argument
//!
//! let handle = SkFunction::get("lib_doc_double")?
//!     .retry(RetryPolicy::fixed(Duration::from_millis(1)))
//!     .timeout(Duration::from_secs(5));
//! let args = sk_core::Args::new().with("x", &21.0_f64)?;
//! assert_eq!(handle.execute_with::<f64>(&args)?, 42.0);
//!
//! // The handle crosses process boundaries as bytes.
//! let bytes = sk_cereal::External::encode(&double)?;
//! let received: SkFunction = sk_cereal::External::decode(&bytes)?;
//! assert_eq!(received.execute_with::<f64>(&args)?, 42.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_debug_implementations)]

mod any;
mod args;
mod background;
mod circuit;
mod clock;
mod error;
mod execute;
mod function;
mod lambda;
mod modifiers;
mod rate;
mod retry;
mod spec;
mod stats;
mod stop;
mod value;
mod window;

#[cfg(test)]
mod tests;

pub use any::AnyFunction;
pub use args::{ArgValue, Args};
pub use background::Background;
pub use circuit::{Circuit, CircuitBuilder, CircuitError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, FunctionError, Permanent, error_chain, panic_message};
pub use execute::Execute;
pub use function::{SkFunction, SkFunctionBuilder, instances};
pub use lambda::SkLambda;
pub use modifiers::{Modifiers, Modify};
pub use rate::{RateLimitError, RateLimiter};
pub use retry::{Attempt, Backoff, Jitter, PolicyError, Retry, RetryError, RetryPolicy};
pub use sk_macros::{function, generator};
pub use spec::{
    FunctionKind, FunctionSpec, ParamSpec, ValueFuture, ValueStream, functions, into_function_error,
};
pub use stats::{SharedStats, StatsSummary, TimingStats};
pub use stop::StopToken;
pub use value::{Encoding, TakeError, Value};
pub use window::{WINDOW, WindowStats};

/// Items the macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::args::Args;
    pub use crate::error::BoxError;
    pub use crate::spec::{FunctionSpec, ParamSpec, StaticFunction, register_on_first_call};
    pub use inventory;
    pub use sk_reg::Layer;
}
