//! [`AnyFunction`]: a registered-function handle or a local closure,
//! accepted wherever a function is expected.

use std::any::type_name;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::args::Args;
use crate::error::FunctionError;
use crate::function::SkFunction;
use crate::lambda::SkLambda;
use crate::modifiers::Background;
use crate::value::Value;

/// Any function: a [`SkFunction`] handle or a [`SkLambda`] closure.
///
/// APIs that take a function take `impl Into<AnyFunction>`, so a handle, a
/// lambda or a plain closure `Fn() -> R` can be passed (a bare closure is
/// named after its type).
///
/// # Examples
///
/// ```
/// use sk_core::{AnyFunction, FunctionError};
///
/// fn run_twice(f: impl Into<AnyFunction>) -> Result<(u32, u32), FunctionError> {
///     let f = f.into();
///     Ok((f.execute()?, f.execute()?))
/// }
///
/// assert_eq!(run_twice(|| 7u32)?, (7, 7));
/// # Ok::<(), FunctionError>(())
/// ```
#[derive(Clone, Debug)]
pub struct AnyFunction(Inner);

#[derive(Clone, Debug)]
enum Inner {
    Handle(SkFunction),
    Lambda(SkLambda),
}

impl AnyFunction {
    /// The function's name.
    pub fn name(&self) -> &str {
        match &self.0 {
            Inner::Handle(f) => f.name(),
            Inner::Lambda(f) => f.name(),
        }
    }

    /// Whether the function can only run in this process (a lambda).
    pub fn is_local(&self) -> bool {
        matches!(self.0, Inner::Lambda(_))
    }

    /// The handle, when this is one.
    pub fn as_handle(&self) -> Option<&SkFunction> {
        match &self.0 {
            Inner::Handle(f) => Some(f),
            Inner::Lambda(_) => None,
        }
    }

    /// The lambda, when this is one.
    pub fn as_lambda(&self) -> Option<&SkLambda> {
        match &self.0 {
            Inner::Lambda(f) => Some(f),
            Inner::Handle(_) => None,
        }
    }

    /// The handle, or [`FunctionError::LocalOnly`] naming the lambda: what
    /// code that must send a function to another process calls.
    ///
    /// # Errors
    ///
    /// [`FunctionError::LocalOnly`] for a lambda.
    pub fn to_sendable(&self) -> Result<&SkFunction, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => Ok(f),
            Inner::Lambda(f) => Err(f.local_only_error()),
        }
    }

    /// Executes the function (see [`SkFunction::execute`]).
    ///
    /// # Errors
    ///
    /// As [`SkFunction::execute`].
    pub fn execute<R: 'static>(&self) -> Result<R, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.execute(),
            Inner::Lambda(f) => f.execute(),
        }
    }

    /// Executes the function with call-time arguments.
    ///
    /// # Errors
    ///
    /// As [`SkFunction::execute_with`].
    pub fn execute_with<R: 'static>(&self, args: &Args) -> Result<R, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.execute_with(args),
            Inner::Lambda(f) => f.execute_with(args),
        }
    }

    /// Executes the function and returns the type-erased output.
    ///
    /// # Errors
    ///
    /// As [`SkFunction::execute_value`].
    pub fn execute_value(&self) -> Result<Value, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.execute_value(),
            Inner::Lambda(f) => f.execute_value(),
        }
    }

    /// Runs the function on a new thread.
    ///
    /// # Errors
    ///
    /// [`FunctionError::Background`] when the thread cannot be started.
    pub fn background<R: Send + 'static>(&self) -> Result<Background<R>, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.background(),
            Inner::Lambda(f) => f.background(),
        }
    }
}

impl From<SkFunction> for AnyFunction {
    fn from(f: SkFunction) -> Self {
        AnyFunction(Inner::Handle(f))
    }
}

impl From<SkLambda> for AnyFunction {
    fn from(f: SkLambda) -> Self {
        AnyFunction(Inner::Lambda(f))
    }
}

impl<F, R> From<F> for AnyFunction
where
    F: Fn() -> R + Send + Sync + 'static,
    R: Serialize + Send + Sync + 'static,
{
    fn from(f: F) -> Self {
        AnyFunction(Inner::Lambda(SkLambda::new(type_name::<F>(), f)))
    }
}

impl Serialize for AnyFunction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Inner::Handle(f) => f.serialize(serializer),
            Inner::Lambda(f) => f.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for AnyFunction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SkFunction::deserialize(deserializer).map(AnyFunction::from)
    }
}
