//! [`FunctionSpec`]: what the registry knows about a callable — its name,
//! parameters, kind and type-erased invoker — and the function registry
//! itself, filled from static registrations on first use.

use std::any::{TypeId, type_name};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sk_reg::{Layer, Registry};

use crate::args::Args;
use crate::error::{BoxError, FunctionError};
use crate::value::Value;

/// What kind of callable a function is.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FunctionKind {
    /// Called once, returns one value.
    #[default]
    Plain,
    /// Returns a stream of values.
    Generator,
    /// An `async fn`: returns a future of one value.
    Async,
    /// A local closure ([`SkLambda`](crate::SkLambda)); never leaves its process.
    Lambda,
}

impl FunctionKind {
    /// The kind's name as used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Plain => "plain",
            FunctionKind::Generator => "generator",
            FunctionKind::Async => "async",
            FunctionKind::Lambda => "lambda",
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One declared parameter: its name and type.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    name: Cow<'static, str>,
    type_name: &'static str,
    type_id: TypeId,
}

impl ParamSpec {
    /// A parameter `name` of type `T`.
    pub fn of<T: DeserializeOwned + 'static>(name: impl Into<Cow<'static, str>>) -> Self {
        ParamSpec {
            name: name.into(),
            type_name: type_name::<T>(),
            type_id: TypeId::of::<T>(),
        }
    }

    /// The parameter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameter's Rust type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    pub(crate) fn name_cow(&self) -> Cow<'static, str> {
        self.name.clone()
    }

    pub(crate) fn accepts(&self, id: TypeId) -> bool {
        self.type_id == id
    }
}

/// A stream of values from a generator function.
pub type ValueStream = Box<dyn Iterator<Item = Result<Value, FunctionError>> + Send>;

/// A boxed future of one value, from an async function.
pub type ValueFuture = Pin<Box<dyn Future<Output = Result<Value, FunctionError>> + Send>>;

type PlainFn = dyn Fn(&Args) -> Result<Value, FunctionError> + Send + Sync;
type StreamFn = dyn Fn(&Args) -> Result<ValueStream, FunctionError> + Send + Sync;
type AsyncFn = dyn Fn(&Args) -> Result<ValueFuture, FunctionError> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Invoker {
    Plain(Arc<PlainFn>),
    Generator {
        stream: Arc<StreamFn>,
        collect: Arc<PlainFn>,
    },
    Async(Arc<AsyncFn>),
}

/// A registered callable: name, parameters, kind and the code that runs it.
///
/// Made by `#[suitkaise::function]` for static registration, or by hand
/// with [`FunctionSpec::plain`], [`FunctionSpec::generator`] and
/// [`FunctionSpec::asynchronous`] for runtime registration.
///
/// # Examples
///
/// ```
/// use sk_core::{Execute, FunctionError, FunctionSpec, ParamSpec, SkFunction};
///
/// let params = [ParamSpec::of::<u32>("a"), ParamSpec::of::<u32>("b")];
/// FunctionSpec::plain("spec_doc_add", params, |args| {
///     let (a, b) = (args.decode::<u32>("spec_doc_add", "a")?, args.decode::<u32>("spec_doc_add", "b")?);
///     Ok::<_, FunctionError>(a + b)
/// })
/// .register()?;
///
/// let f = SkFunction::builder("spec_doc_add").arg("a", 2u32).arg("b", 3u32).build()?;
/// assert_eq!(f.execute::<u32>()?, 5);
/// # Ok::<(), sk_core::FunctionError>(())
/// ```
#[derive(Clone)]
pub struct FunctionSpec {
    name: Cow<'static, str>,
    kind: FunctionKind,
    params: Vec<ParamSpec>,
    output: &'static str,
    location: Option<&'static str>,
    layer: Layer,
    pub(crate) invoker: Invoker,
}

impl FunctionSpec {
    fn with_invoker(
        name: impl Into<Cow<'static, str>>,
        kind: FunctionKind,
        params: impl IntoIterator<Item = ParamSpec>,
        output: &'static str,
        invoker: Invoker,
    ) -> Self {
        FunctionSpec {
            name: name.into(),
            kind,
            params: params.into_iter().collect(),
            output,
            location: None,
            layer: Layer::External,
            invoker,
        }
    }

    /// A plain function. `call` reads its arguments with
    /// [`Args::decode`]; its error becomes [`FunctionError::Failed`].
    pub fn plain<R, E, F>(
        name: impl Into<Cow<'static, str>>,
        params: impl IntoIterator<Item = ParamSpec>,
        call: F,
    ) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(&Args) -> Result<R, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let fname = name.clone();
        let invoker = Invoker::Plain(Arc::new(move |args: &Args| {
            call(args)
                .map(Value::new)
                .map_err(|e| into_function_error(&fname, e))
        }));
        Self::with_invoker(name, FunctionKind::Plain, params, type_name::<R>(), invoker)
    }

    /// A generator: `call` returns an iterator whose items are streamed by
    /// [`SkFunction::stream`](crate::SkFunction::stream), or collected into a
    /// `Vec` by `execute`.
    pub fn generator<I, E, F>(
        name: impl Into<Cow<'static, str>>,
        params: impl IntoIterator<Item = ParamSpec>,
        call: F,
    ) -> Self
    where
        I: IntoIterator + 'static,
        I::IntoIter: Send,
        I::Item: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(&Args) -> Result<I, E> + Send + Sync + 'static,
    {
        let name = name.into();
        let call = Arc::new(call);
        let (fname, call2) = (name.clone(), Arc::clone(&call));
        let stream: Arc<StreamFn> = Arc::new(move |args: &Args| {
            let iter = call(args).map_err(|e| into_function_error(&fname, e))?;
            Ok(Box::new(iter.into_iter().map(|item| Ok(Value::new(item)))) as ValueStream)
        });
        let fname = name.clone();
        let collect: Arc<PlainFn> = Arc::new(move |args: &Args| {
            let iter = call2(args).map_err(|e| into_function_error(&fname, e))?;
            Ok(Value::new(iter.into_iter().collect::<Vec<_>>()))
        });
        Self::with_invoker(
            name,
            FunctionKind::Generator,
            params,
            type_name::<Vec<I::Item>>(),
            Invoker::Generator { stream, collect },
        )
    }

    /// An async function: `call` returns a future, run by
    /// [`SkFunction::execute_async`](crate::SkFunction::execute_async) or
    /// blocked on by `execute`.
    pub fn asynchronous<R, E, Fut, F>(
        name: impl Into<Cow<'static, str>>,
        params: impl IntoIterator<Item = ParamSpec>,
        call: F,
    ) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        F: Fn(&Args) -> Result<Fut, FunctionError> + Send + Sync + 'static,
    {
        let name = name.into();
        let fname = name.clone();
        let invoker = Invoker::Async(Arc::new(move |args: &Args| {
            let fut = call(args)?;
            let fname = fname.clone();
            Ok(Box::pin(async move {
                fut.await
                    .map(Value::new)
                    .map_err(|e| into_function_error(&fname, e))
            }) as ValueFuture)
        }));
        Self::with_invoker(name, FunctionKind::Async, params, type_name::<R>(), invoker)
    }

    /// Records where the function is defined (shown in duplicate errors).
    pub fn at(mut self, location: &'static str) -> Self {
        self.location = Some(location);
        self
    }

    /// Sets the registry layer (default [`Layer::External`], user code).
    pub fn in_layer(mut self, layer: Layer) -> Self {
        self.layer = layer;
        self
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The function's kind.
    pub fn kind(&self) -> FunctionKind {
        self.kind
    }

    /// The declared parameters, in declaration order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// The declared parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The declared parameter called `name`, or an error naming the
    /// function, the name and the parameters it does have.
    ///
    /// # Errors
    ///
    /// [`FunctionError::UnknownParameter`].
    pub fn expect_param(&self, name: &str) -> Result<&ParamSpec, FunctionError> {
        self.param(name)
            .ok_or_else(|| FunctionError::UnknownParameter {
                function: self.name.to_string(),
                param: name.to_owned(),
                known: self.param_list(),
            })
    }

    /// The Rust type name of the output (`Vec<Item>` for a generator).
    pub fn output_type(&self) -> &'static str {
        self.output
    }

    /// Where the function is defined, when known.
    pub fn location(&self) -> Option<&'static str> {
        self.location
    }

    /// The registry layer the spec registers into.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Registers the spec in this process's function registry, in its layer.
    ///
    /// # Errors
    ///
    /// [`FunctionError::Registry`] when the name is already registered in
    /// that layer (use [`FunctionSpec::replace`] to overwrite).
    pub fn register(self) -> Result<Arc<FunctionSpec>, FunctionError> {
        let layer = self.layer;
        let name = self.name.to_string();
        Ok(functions().register(layer, name, self)?)
    }

    /// Registers the spec, replacing any function of the same name in its
    /// layer; returns the replaced one.
    pub fn replace(self) -> Option<Arc<FunctionSpec>> {
        let layer = self.layer;
        let name = self.name.to_string();
        functions().replace(layer, name, self)
    }

    pub(crate) fn param_list(&self) -> String {
        if self.params.is_empty() {
            return "none".to_owned();
        }
        self.params
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Debug for FunctionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("params", &self.params)
            .field("output", &self.output)
            .field("location", &self.location)
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

/// Turns an error from user code into a [`FunctionError`]: a
/// `FunctionError` raised while reading arguments passes through unchanged,
/// anything else becomes [`FunctionError::Failed`].
pub fn into_function_error(function: &str, error: impl Into<BoxError>) -> FunctionError {
    match error.into().downcast::<FunctionError>() {
        Ok(framework) => *framework,
        Err(user) => FunctionError::failed(function, user),
    }
}

/// A static registration, collected at link time from every
/// `#[suitkaise::function]` in the binary. Not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub struct StaticFunction {
    build: fn() -> FunctionSpec,
}

impl StaticFunction {
    #[doc(hidden)]
    pub const fn new(build: fn() -> FunctionSpec) -> Self {
        StaticFunction { build }
    }
}

inventory::collect!(StaticFunction);

/// Duplicate static registrations, found when the registry was filled;
/// reported when the contested name is looked up.
static DUPLICATES: Mutex<Vec<(String, String, String)>> = Mutex::new(Vec::new());
/// Whether [`DUPLICATES`] has anything (so lookups skip its lock).
static HAS_DUPLICATES: AtomicBool = AtomicBool::new(false);

/// This process's function registry, filled from the static registrations
/// on first use.
pub fn functions() -> &'static Registry<FunctionSpec> {
    static REGISTRY: OnceLock<Registry<FunctionSpec>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Registry::<FunctionSpec>::new("functions");
        for item in inventory::iter::<StaticFunction> {
            let spec = (item.build)();
            let (layer, name) = (spec.layer, spec.name.to_string());
            let here = spec.location.unwrap_or("an unknown place").to_owned();
            if let Some(existing) = registry.get_in(layer, &name) {
                let there = existing.location.unwrap_or("an unknown place").to_owned();
                DUPLICATES.lock().push((name, there, here));
                HAS_DUPLICATES.store(true, Ordering::Release);
            } else {
                // Cannot fail: the name was just checked absent in this layer,
                // and nothing else sees the registry before this returns.
                let _ = registry.register(layer, name, spec);
            }
        }
        registry
    })
}

/// Looks `name` up in the function registry.
pub(crate) fn lookup(name: &str) -> Result<Arc<FunctionSpec>, FunctionError> {
    let registry = functions();
    if HAS_DUPLICATES.load(Ordering::Acquire) {
        if let Some((_, first, second)) = DUPLICATES.lock().iter().find(|(n, _, _)| n == name) {
            return Err(FunctionError::DuplicateStatic {
                name: name.to_owned(),
                first: first.clone(),
                second: second.clone(),
            });
        }
    }
    registry
        .get(name)
        .ok_or_else(|| FunctionError::NotRegistered {
            name: name.to_owned(),
        })
}

/// Registers a function built by `build` unless it is registered already;
/// the runtime half of `#[suitkaise::function(on_first_call)]`.
#[doc(hidden)]
pub fn register_on_first_call(build: fn() -> FunctionSpec) {
    let spec = build();
    if functions().get_in(spec.layer, &spec.name).is_none() {
        // A racing first call may have registered it in between; either
        // registration is the same function, so the duplicate is ignored.
        let _ = spec.register();
    }
}
