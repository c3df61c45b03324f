//! [`SkLambda`]: a named local closure, run in-process only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::args::Args;
use crate::error::{BoxError, FunctionError};
use crate::function::{downcast_output, guard};
use crate::modifiers::{self, Background, Invocation, LimiterCell, Modifiers};
use crate::retry::RetryPolicy;
use crate::spec::into_function_error;
use crate::value::Value;

type LambdaFn = dyn Fn(&Args) -> Result<Value, FunctionError> + Send + Sync;

/// A named local closure.
///
/// It runs wherever a function is expected (through
/// [`AnyFunction`](crate::AnyFunction)) and takes the same modifiers as a
/// handle, but it never leaves its process: serializing it is an error that
/// names it.
///
/// # Examples
///
/// ```
/// use sk_cereal::Format;
/// use sk_core::{SkLambda, FunctionError};
///
/// let base = 40;
/// let add_two = SkLambda::new("add_two", move || base + 2);
/// assert_eq!(add_two.execute::<i32>()?, 42);
///
/// let err = sk_cereal::Internal::encode(&add_two).unwrap_err();
/// let why = sk_core::error_chain(&err);
/// assert!(why.contains("\"add_two\" is a local closure"), "{why}");
/// # Ok::<(), FunctionError>(())
/// ```
#[derive(Clone)]
pub struct SkLambda {
    name: Arc<str>,
    call: Arc<LambdaFn>,
    extra: Args,
    modifiers: Modifiers,
    limiter: LimiterCell,
}

impl SkLambda {
    /// A closure with a serializable output (the output may still cross a
    /// process boundary; the closure cannot).
    pub fn new<R, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        F: Fn() -> R + Send + Sync + 'static,
    {
        Self::from_fn(name.into(), move |_| Ok(Value::new(f())))
    }

    /// A closure whose output never leaves this process (see
    /// [`Value::local`]).
    pub fn local<R, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Send + Sync + 'static,
        F: Fn() -> R + Send + Sync + 'static,
    {
        Self::from_fn(name.into(), move |_| Ok(Value::local(f())))
    }

    /// A closure that can fail; its error becomes [`FunctionError::Failed`].
    pub fn fallible<R, E, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
    {
        let name: Arc<str> = name.into();
        let fname = Arc::clone(&name);
        Self::from_fn(name, move |_| {
            f().map(Value::new)
                .map_err(|e| into_function_error(&fname, e))
        })
    }

    /// A closure that reads call-time arguments (given with
    /// [`SkLambda::execute_with`]).
    pub fn with_args<R, E, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(&Args) -> Result<R, E> + Send + Sync + 'static,
    {
        let name: Arc<str> = name.into();
        let fname = Arc::clone(&name);
        Self::from_fn(name, move |args| {
            f(args)
                .map(Value::new)
                .map_err(|e| into_function_error(&fname, e))
        })
    }

    fn from_fn(
        name: Arc<str>,
        f: impl Fn(&Args) -> Result<Value, FunctionError> + Send + Sync + 'static,
    ) -> Self {
        SkLambda {
            name,
            call: Arc::new(f),
            extra: Args::new(),
            modifiers: Modifiers::default(),
            limiter: LimiterCell::default(),
        }
    }

    /// The lambda's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The modifiers applied on execution.
    pub fn modifiers(&self) -> &Modifiers {
        &self.modifiers
    }

    /// Adds the retry modifier (see [`SkFunction::retry`](crate::SkFunction::retry)).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.modifiers.retry = Some(policy);
        self
    }

    /// Adds the timeout modifier (see [`SkFunction::timeout`](crate::SkFunction::timeout)).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.modifiers.timeout = Some(limit);
        self
    }

    /// Adds the rate-limit modifier (see
    /// [`SkFunction::rate_limit`](crate::SkFunction::rate_limit)).
    pub fn rate_limit(mut self, per_sec: f64) -> Self {
        self.modifiers.rate_limit = Some(per_sec);
        self.limiter = LimiterCell::for_rate(Some(per_sec));
        self
    }

    /// Runs the closure and returns its output as an `R`.
    ///
    /// # Errors
    ///
    /// The closure's failure or panic, the modifiers' errors, and
    /// [`FunctionError::OutputType`] when it does not return an `R`.
    pub fn execute<R: 'static>(&self) -> Result<R, FunctionError> {
        downcast_output(&self.name, self.execute_value()?)
    }

    /// Runs the closure with call-time arguments.
    ///
    /// # Errors
    ///
    /// As [`SkLambda::execute`].
    pub fn execute_with<R: 'static>(&self, args: &Args) -> Result<R, FunctionError> {
        let mut call = self.clone();
        call.extra = args.clone();
        downcast_output(&self.name, call.execute_value()?)
    }

    /// Runs the closure, applying its modifiers, and returns the
    /// type-erased output.
    ///
    /// # Errors
    ///
    /// As [`SkLambda::execute`], without the output type check.
    pub fn execute_value(&self) -> Result<Value, FunctionError> {
        modifiers::run(self, &self.modifiers, &self.limiter)
    }

    /// Runs the closure on a new thread (see
    /// [`SkFunction::background`](crate::SkFunction::background)).
    ///
    /// # Errors
    ///
    /// [`FunctionError::Background`] when the thread cannot be started.
    pub fn background<R: Send + 'static>(&self) -> Result<Background<R>, FunctionError> {
        let this = self.clone();
        Background::spawn(&self.name, move || this.execute_value())
    }

    /// The error that refuses to send this lambda anywhere.
    pub fn local_only_error(&self) -> FunctionError {
        FunctionError::LocalOnly {
            name: self.name.to_string(),
        }
    }
}

impl Invocation for SkLambda {
    fn name(&self) -> &str {
        &self.name
    }

    fn attempt(&self) -> Result<Value, FunctionError> {
        guard(&self.name, || (self.call)(&self.extra))
    }
}

impl Serialize for SkLambda {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(self.local_only_error()))
    }
}

impl fmt::Debug for SkLambda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkLambda")
            .field("name", &self.name)
            .field("modifiers", &self.modifiers)
            .finish_non_exhaustive()
    }
}
