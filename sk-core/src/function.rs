//! [`SkFunction`]: a serializable handle to a registered function with
//! arguments bound by parameter name, and its builder.

use std::any::{TypeId, type_name};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sk_reg::{Layer, Registry};

use crate::args::{ArgValue, Args};
use crate::error::{FunctionError, catch_panic};
use crate::execute::{Execute, Invocation};
use crate::modifiers::{HasModifiers, Modified, Modifiers, Modify};
use crate::spec::{self, FunctionKind, FunctionSpec, Invoker, ValueFuture, ValueStream};
use crate::value::{Value, downcast_output};

/// A handle to a registered function: its name, the arguments bound to it
/// by parameter name, and its modifiers.
///
/// It takes the modifiers of [`Modify`] and runs through [`Execute`]
/// (`execute`, `execute_with`, `background`, ...); streaming, async
/// execution and the registry are its own methods.
///
/// The handle is serializable (serde): it crosses process boundaries as a
/// name plus encoded arguments, and the receiver resolves the name in its
/// own function registry. Functions registered with
/// `#[suitkaise::function]` are in the registry of every process of the
/// binary without any setup code.
///
/// # Examples
///
/// ```
/// use sk_core::{Execute, FunctionSpec, ParamSpec, SkFunction, FunctionError};
///
/// FunctionSpec::plain("doc_area", [ParamSpec::of::<u32>("w"), ParamSpec::of::<u32>("h")], |a| {
///     Ok::<_, FunctionError>(a.decode::<u32>("doc_area", "w")? * a.decode::<u32>("doc_area", "h")?)
/// })
/// .register()?;
///
/// let area = SkFunction::builder("doc_area").arg("w", 4u32).arg("h", 5u32).build()?;
/// assert_eq!(area.execute::<u32>()?, 20);
///
/// // Binding a value of the wrong type fails at bind time, naming the parameter.
/// let err = SkFunction::builder("doc_area").arg("w", 4i64).build().unwrap_err();
/// assert!(err.to_string().contains("parameter \"w\" expects `u32`"));
/// # Ok::<(), FunctionError>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "SkFunctionWire")]
pub struct SkFunction {
    name: String,
    #[serde(default)]
    args: Args,
    modifiers: Modified,
    /// The resolved spec, cached on first use; a receiving process resolves
    /// in its own registry.
    #[serde(skip)]
    resolved: OnceLock<Arc<FunctionSpec>>,
}

impl SkFunction {
    /// Starts binding arguments to the registered function `name`.
    pub fn builder(name: impl Into<String>) -> SkFunctionBuilder {
        let name = name.into();
        let spec = spec::lookup(&name);
        SkFunctionBuilder {
            name,
            spec,
            args: Args::new(),
            error: None,
            modifiers: Modified::default(),
        }
    }

    /// A handle to the registered instance `name` (see
    /// [`SkFunctionBuilder::register_as`]), or else to the registered
    /// function `name` with no arguments bound.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotRegistered`] when neither exists.
    pub fn get(name: &str) -> Result<SkFunction, FunctionError> {
        if let Some(instance) = instances().get(name) {
            return Ok((*instance).clone());
        }
        SkFunction::builder(name).build()
    }

    /// The registered function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound arguments.
    pub fn args(&self) -> &Args {
        &self.args
    }

    /// The resolved function spec.
    ///
    /// # Errors
    ///
    /// [`FunctionError::NotRegistered`] when this process has no function of
    /// the handle's name.
    pub fn spec(&self) -> Result<&Arc<FunctionSpec>, FunctionError> {
        if let Some(spec) = self.resolved.get() {
            return Ok(spec);
        }
        let spec = spec::lookup(&self.name)?;
        Ok(self.resolved.get_or_init(|| spec))
    }

    /// The function's kind.
    ///
    /// # Errors
    ///
    /// As [`SkFunction::spec`].
    pub fn kind(&self) -> Result<FunctionKind, FunctionError> {
        Ok(self.spec()?.kind())
    }

    /// Executes the function and encodes its output for another process:
    /// `(type name, internal-format bytes)`.
    ///
    /// # Errors
    ///
    /// As [`Execute::execute_value`], and [`FunctionError::Cereal`] when
    /// the output does not serialize.
    pub fn execute_encoded(&self) -> Result<(String, Vec<u8>), FunctionError> {
        Ok(self.execute_value()?.into_encoded()?)
    }

    /// Streams a generator's items, typed as `T`.
    ///
    /// # Errors
    ///
    /// [`FunctionError::WrongKind`] when the function is not a generator;
    /// each item is [`FunctionError::OutputType`] when it is not a `T`.
    pub fn stream<T: 'static>(
        &self,
    ) -> Result<impl Iterator<Item = Result<T, FunctionError>> + Send + use<T>, FunctionError> {
        let name = self.name.clone();
        Ok(self
            .stream_values()?
            .map(move |item| item.and_then(|v| downcast_output(&name, v))))
    }

    /// Streams a generator's items, type-erased.
    ///
    /// # Errors
    ///
    /// [`FunctionError::WrongKind`] when the function is not a generator.
    pub fn stream_values(&self) -> Result<ValueStream, FunctionError> {
        let spec = self.spec()?;
        match &spec.invoker {
            Invoker::Generator { stream, .. } => catch_panic(&self.name, || stream(&self.args)),
            _ => Err(self.wrong_kind(spec.kind(), "streamed")),
        }
    }

    /// Executes an async function without blocking: the returned future
    /// resolves to its output. A non-async function runs when the future is
    /// first polled. Modifiers other than `background` do not apply here.
    ///
    /// # Errors
    ///
    /// As [`Execute::execute`], through the future.
    pub async fn execute_async<R: 'static>(&self) -> Result<R, FunctionError> {
        let spec = Arc::clone(self.spec()?);
        let value = match &spec.invoker {
            Invoker::Async(start) => {
                let fut: ValueFuture = catch_panic(&self.name, || start(&self.args))?;
                fut.await?
            }
            _ => self.attempt()?,
        };
        downcast_output(&self.name, value)
    }

    fn wrong_kind(&self, kind: FunctionKind, action: &'static str) -> FunctionError {
        FunctionError::WrongKind {
            function: self.name.clone(),
            kind: kind.as_str(),
            action,
        }
    }
}

/// The serialized fields of a handle; decoding rebuilds the runtime parts.
#[derive(Deserialize)]
struct SkFunctionWire {
    name: String,
    #[serde(default)]
    args: Args,
    #[serde(default)]
    modifiers: Modifiers,
}

impl From<SkFunctionWire> for SkFunction {
    fn from(wire: SkFunctionWire) -> Self {
        SkFunction {
            name: wire.name,
            args: wire.args,
            modifiers: Modified::from(wire.modifiers),
            resolved: OnceLock::new(),
        }
    }
}

impl HasModifiers for SkFunction {
    fn modified(&self) -> &Modified {
        &self.modifiers
    }

    fn modified_mut(&mut self) -> &mut Modified {
        &mut self.modifiers
    }
}

impl Modify for SkFunction {}

impl Execute for SkFunction {}

impl Invocation for SkFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn attempt(&self) -> Result<Value, FunctionError> {
        let spec = self.spec()?;
        match &spec.invoker {
            Invoker::Plain(call) | Invoker::Generator { collect: call, .. } => {
                catch_panic(&self.name, || call(&self.args))
            }
            Invoker::Async(start) => {
                let fut = catch_panic(&self.name, || start(&self.args))?;
                catch_panic(&self.name, || pollster::block_on(fut))
            }
        }
    }

    fn with_args(&self, extra: &Args) -> Self {
        let mut call = self.clone();
        call.args = self.args.overlay(extra);
        call
    }

    fn check(&self) -> Result<(), FunctionError> {
        self.spec().map(drop)
    }
}

impl fmt::Debug for SkFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkFunction")
            .field("name", &self.name)
            .field("args", &self.args.names().collect::<Vec<_>>())
            .field("modifiers", &self.modifiers)
            .finish()
    }
}

impl PartialEq for SkFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.args == other.args && self.modifiers == other.modifiers
    }
}

/// Binds arguments to a registered function by parameter name, checking
/// each against the function's signature as it is bound.
///
/// Made by [`SkFunction::builder`]. The first error is kept and returned by
/// [`build`](SkFunctionBuilder::build).
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SkFunctionBuilder {
    name: String,
    spec: Result<Arc<FunctionSpec>, FunctionError>,
    args: Args,
    error: Option<FunctionError>,
    modifiers: Modified,
}

impl SkFunctionBuilder {
    /// Binds `value` to the parameter `param`.
    ///
    /// Checked now: the parameter must exist, `T` must be its declared type
    /// exactly, and the value must serialize. A failure is returned by
    /// [`build`](SkFunctionBuilder::build).
    pub fn arg<T: serde::Serialize + 'static>(mut self, param: &str, value: T) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.try_bind(param, &value) {
                self.error = Some(e);
            }
        }
        self
    }

    fn try_bind<T: serde::Serialize + 'static>(
        &mut self,
        param: &str,
        value: &T,
    ) -> Result<(), FunctionError> {
        let spec = match &self.spec {
            Ok(spec) => spec,
            // The lookup error is reported by `build`.
            Err(_) => return Ok(()),
        };
        let declared = spec.expect_param(param)?;
        if !declared.accepts(TypeId::of::<T>()) {
            return Err(FunctionError::ArgumentType {
                function: self.name.clone(),
                param: param.to_owned(),
                expected: declared.type_name().to_owned(),
                found: type_name::<T>().to_owned(),
            });
        }
        if self.args.contains(param) {
            return Err(FunctionError::ArgumentBoundTwice {
                function: self.name.clone(),
                param: param.to_owned(),
            });
        }
        let encoded = ArgValue::encode(&self.name, param, value)?;
        self.args.insert(declared.name_cow(), encoded);
        Ok(())
    }

    /// Finishes the handle.
    ///
    /// Parameters left unbound may be supplied at call time with
    /// [`Execute::execute_with`].
    ///
    /// # Errors
    ///
    /// The first binding error, or [`FunctionError::NotRegistered`] when the
    /// function does not exist.
    pub fn build(self) -> Result<SkFunction, FunctionError> {
        let spec = self.spec?;
        if let Some(e) = self.error {
            return Err(e);
        }
        let resolved = OnceLock::new();
        let _ = resolved.set(spec);
        Ok(SkFunction {
            name: self.name,
            args: self.args,
            modifiers: self.modifiers,
            resolved,
        })
    }

    /// Builds the handle and registers it as the instance `instance` (in the
    /// external layer), so that `SkFunction::get(instance)` returns it with
    /// these arguments. Several instances of one function may be registered
    /// with different arguments.
    ///
    /// # Errors
    ///
    /// As [`build`](SkFunctionBuilder::build), and
    /// [`FunctionError::Registry`] when the instance name is taken.
    pub fn register_as(self, instance: impl Into<String>) -> Result<SkFunction, FunctionError> {
        let function = self.build()?;
        instances().register(Layer::External, instance, function.clone())?;
        Ok(function)
    }

    /// Registers the handle as the instance `instance` and executes it: the
    /// one-step form of "register, then execute".
    ///
    /// # Errors
    ///
    /// As [`register_as`](SkFunctionBuilder::register_as) and
    /// [`Execute::execute`].
    pub fn register_and_execute<R: 'static>(
        self,
        instance: impl Into<String>,
    ) -> Result<R, FunctionError> {
        self.register_as(instance)?.execute()
    }
}

impl HasModifiers for SkFunctionBuilder {
    fn modified(&self) -> &Modified {
        &self.modifiers
    }

    fn modified_mut(&mut self) -> &mut Modified {
        &mut self.modifiers
    }
}

impl Modify for SkFunctionBuilder {}

/// This process's registry of function instances: handles with bound
/// arguments registered under their own names.
pub fn instances() -> &'static Registry<SkFunction> {
    static INSTANCES: OnceLock<Registry<SkFunction>> = OnceLock::new();
    INSTANCES.get_or_init(|| Registry::new("function instances"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sk_cereal::Internal;

    use super::*;
    use crate::retry::RetryPolicy;
    use crate::spec::ParamSpec;

    #[test]
    fn a_handle_travels_as_its_name_args_and_modifiers() {
        FunctionSpec::plain("function_wire_double", [ParamSpec::of::<u8>("x")], |a| {
            Ok::<_, FunctionError>(a.decode::<u8>("function_wire_double", "x")? * 2)
        })
        .register()
        .unwrap();
        let handle = SkFunction::builder("function_wire_double")
            .arg("x", 4u8)
            .rate_limit(500.0)
            .build()
            .unwrap()
            .retry(RetryPolicy::fixed(Duration::from_millis(1)))
            .timeout(Duration::from_secs(5));
        let bytes = Internal::encode(&handle).unwrap();
        let fields = (handle.name(), handle.args(), handle.modifiers());
        assert_eq!(bytes, Internal::encode(&fields).unwrap());

        let back: SkFunction = Internal::decode(&bytes).unwrap();
        assert_eq!(back, handle);
        assert_eq!(back.modifiers().rate_limit, Some(500.0));
        assert_eq!(back.execute::<u8>().unwrap(), 8);
    }
}
