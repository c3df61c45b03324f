//! [`AnyFunction`]: a registered-function handle or a local closure,
//! accepted wherever a function is expected.

use std::any::type_name;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::args::Args;
use crate::error::FunctionError;
use crate::execute::{Execute, Invocation};
use crate::function::SkFunction;
use crate::lambda::SkLambda;
use crate::modifiers::{HasModifiers, Modified, Modify};
use crate::value::Value;

/// Any function: a [`SkFunction`] handle or a [`SkLambda`] closure.
///
/// APIs that take a function take `impl Into<AnyFunction>`, so a handle, a
/// lambda or a plain closure `Fn() -> R` can be passed (a bare closure is
/// named after its type). It takes modifiers ([`Modify`]) and runs
/// ([`Execute`]) as the function it holds.
///
/// # Examples
///
/// ```
/// use sk_core::{AnyFunction, Execute, FunctionError};
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
}

impl HasModifiers for AnyFunction {
    fn modified(&self) -> &Modified {
        match &self.0 {
            Inner::Handle(f) => f.modified(),
            Inner::Lambda(f) => f.modified(),
        }
    }

    fn modified_mut(&mut self) -> &mut Modified {
        match &mut self.0 {
            Inner::Handle(f) => f.modified_mut(),
            Inner::Lambda(f) => f.modified_mut(),
        }
    }
}

impl Modify for AnyFunction {}

impl Execute for AnyFunction {}

impl Invocation for AnyFunction {
    fn name(&self) -> &str {
        AnyFunction::name(self)
    }

    fn attempt(&self) -> Result<Value, FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.attempt(),
            Inner::Lambda(f) => f.attempt(),
        }
    }

    fn with_args(&self, extra: &Args) -> Self {
        match &self.0 {
            Inner::Handle(f) => AnyFunction(Inner::Handle(f.with_args(extra))),
            Inner::Lambda(f) => AnyFunction(Inner::Lambda(f.with_args(extra))),
        }
    }

    fn check(&self) -> Result<(), FunctionError> {
        match &self.0 {
            Inner::Handle(f) => f.check(),
            Inner::Lambda(f) => f.check(),
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
