//! [`SkLambda`]: a named local closure, run in-process only.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::args::Args;
use crate::error::{BoxError, FunctionError, catch_panic};
use crate::execute::{Execute, Invocation};
use crate::modifiers::{HasModifiers, Modified, Modify};
use crate::spec::into_function_error;
use crate::value::Value;

type LambdaFn = dyn Fn(&Args) -> Result<Value, FunctionError> + Send + Sync;

/// A named local closure.
///
/// It runs wherever a function is expected (through
/// [`AnyFunction`](crate::AnyFunction)), takes the same modifiers as a
/// handle ([`Modify`]) and runs the same way ([`Execute`]), but it never
/// leaves its process: serializing it is an error that names it.
///
/// # Examples
///
/// ```
/// use sk_cereal::Format;
/// use sk_core::{Execute, FunctionError, SkLambda};
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
    /// Call-time arguments, set only on the copy that runs a call.
    extra: Args,
    modifiers: Modified,
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
    /// [`Execute::execute_with`]).
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
            modifiers: Modified::default(),
        }
    }

    /// The lambda's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The error that refuses to send this lambda anywhere.
    pub fn local_only_error(&self) -> FunctionError {
        FunctionError::LocalOnly {
            name: self.name.to_string(),
        }
    }
}

impl HasModifiers for SkLambda {
    fn modified(&self) -> &Modified {
        &self.modifiers
    }

    fn modified_mut(&mut self) -> &mut Modified {
        &mut self.modifiers
    }
}

impl Modify for SkLambda {}

impl Execute for SkLambda {}

impl Invocation for SkLambda {
    fn name(&self) -> &str {
        &self.name
    }

    fn attempt(&self) -> Result<Value, FunctionError> {
        catch_panic(&self.name, || (self.call)(&self.extra))
    }

    fn with_args(&self, extra: &Args) -> Self {
        let mut call = self.clone();
        call.extra = self.extra.overlay(extra);
        call
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
