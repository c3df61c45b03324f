//! [`CyclePart`]: one named unit of work of a cycle — what it does, where
//! it runs, how it fails — and the [`PartContext`] it runs with.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sk_core::{AnyFunction, BoxError, RetryPolicy, StopToken, Value};

use crate::coord::Coord;
use crate::error::{PartError, ReadError, StepError, view_as};
use crate::mode::{ErrorMode, Placement};
use crate::store::Store;

/// A context closure; `Ok(None)` is a `()` output (no value is made for
/// it: unit parts are the common no-output case, and cost nothing here).
pub(crate) type PartFn = dyn Fn(&PartContext<'_>) -> Result<Option<Value>, BoxError> + Send + Sync;
pub(crate) type ValidatorFn = dyn Fn(&Value) -> Result<(), String> + Send + Sync;
pub(crate) type ConditionFn = dyn Fn(&PartContext<'_>) -> bool + Send + Sync;
pub(crate) type FallbackFn = dyn Fn() -> Value + Send + Sync;

/// `None` for a `()` (known from the type, so the check costs nothing),
/// else `r` made a value by `make`.
#[inline]
fn unit_or<R: 'static>(r: R, make: impl FnOnce(R) -> Value) -> Option<Value> {
    (TypeId::of::<R>() != TypeId::of::<()>()).then(|| make(r))
}

/// What a part does.
#[derive(Clone)]
pub(crate) enum Work {
    /// A closure over the part's context.
    Context(Arc<PartFn>),
    /// A function handle or lambda, run without the context (boxed: it
    /// is several times the size of a closure, and every part carries a
    /// `Work`).
    Function(Box<AnyFunction>),
}

/// One named unit of work of a cycle.
///
/// Made with [`CyclePart::new`] (a closure over its [`PartContext`]),
/// [`CyclePart::fallible`], or [`CyclePart::function`] (any
/// [`AnyFunction`]), then configured with owned setters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_cycle::{CyclePart, ErrorMode};
///
/// let parse = CyclePart::fallible("parse", |ctx| {
///     let text = ctx.input_as::<String>()?;
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(text.len())
/// })
/// .error_mode(ErrorMode::FallbackSkip)
/// .fallback(0usize)
/// .timeout(Duration::from_secs(1));
/// assert_eq!(parse.name(), "parse");
/// ```
#[derive(Clone)]
pub struct CyclePart {
    pub(crate) name: Arc<str>,
    pub(crate) work: Work,
    pub(crate) placement: Placement,
    pub(crate) error_mode: ErrorMode,
    pub(crate) timeout: Option<Duration>,
    pub(crate) rate_limit: Option<f64>,
    /// Parts it reads, ordered before it (checked when the cycle is built).
    pub(crate) reads: Vec<Arc<str>>,
    /// Parts it reads as they last completed, in whatever order.
    pub(crate) reads_latest: Vec<Arc<str>>,
    /// Boxed: most parts have none, and a policy is large.
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) validator: Option<Arc<ValidatorFn>>,
    pub(crate) input_validator: Option<Arc<ValidatorFn>>,
    pub(crate) condition: Option<Arc<ConditionFn>>,
    pub(crate) fallback: Option<Arc<FallbackFn>>,
    /// Whether the output is known to be `()` (no slot to fill).
    pub(crate) unit_output: bool,
    /// Whether the output can only stay in this process (no serde).
    pub(crate) local_output: bool,
    /// In a journaled run: records an intent before it runs, and is never
    /// run again when a crash left its outcome unknown.
    pub(crate) once: bool,
    /// In a journaled run: not recorded, run again on resume.
    pub(crate) recompute: bool,
}

impl CyclePart {
    fn with_work(name: impl Into<Arc<str>>, work: Work, unit_output: bool) -> Self {
        CyclePart {
            name: name.into(),
            work,
            placement: Placement::Pool,
            error_mode: ErrorMode::default(),
            timeout: None,
            rate_limit: None,
            reads: Vec::new(),
            reads_latest: Vec::new(),
            retry: None,
            validator: None,
            input_validator: None,
            condition: None,
            fallback: None,
            unit_output,
            local_output: false,
            once: false,
            recompute: false,
        }
    }

    /// A part running `f` over its context; its output is `f`'s return.
    pub fn new<R, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        F: Fn(&PartContext<'_>) -> R + Send + Sync + 'static,
    {
        let unit = TypeId::of::<R>() == TypeId::of::<()>();
        let work: Arc<PartFn> = Arc::new(move |ctx| Ok(unit_or(f(ctx), Value::new)));
        Self::with_work(name, Work::Context(work), unit)
    }

    /// A part running `f` whose output may be of any type — a connection
    /// handle, an `Arc<Mutex<_>>` — and so stays in this process: thread
    /// parts read it with [`PartContext::input_local`] /
    /// [`PartContext::output_local`]; a part placed in a worker process
    /// cannot take it as input (a build error naming both).
    pub fn local<R, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Send + Sync + 'static,
        F: Fn(&PartContext<'_>) -> R + Send + Sync + 'static,
    {
        let unit = TypeId::of::<R>() == TypeId::of::<()>();
        let work: Arc<PartFn> = Arc::new(move |ctx| Ok(unit_or(f(ctx), Value::local)));
        let mut part = Self::with_work(name, Work::Context(work), unit);
        part.local_output = true;
        part
    }

    /// [`CyclePart::local`] for a part that may fail.
    pub fn local_fallible<R, E, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(&PartContext<'_>) -> Result<R, E> + Send + Sync + 'static,
    {
        let unit = TypeId::of::<R>() == TypeId::of::<()>();
        let work: Arc<PartFn> =
            Arc::new(move |ctx| f(ctx).map(|r| unit_or(r, Value::local)).map_err(Into::into));
        let mut part = Self::with_work(name, Work::Context(work), unit);
        part.local_output = true;
        part
    }

    /// A part running `f`, which may fail; the error mode decides what a
    /// failure does.
    pub fn fallible<R, E, F>(name: impl Into<Arc<str>>, f: F) -> Self
    where
        R: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(&PartContext<'_>) -> Result<R, E> + Send + Sync + 'static,
    {
        let unit = TypeId::of::<R>() == TypeId::of::<()>();
        let work: Arc<PartFn> =
            Arc::new(move |ctx| f(ctx).map(|r| unit_or(r, Value::new)).map_err(Into::into));
        Self::with_work(name, Work::Context(work), unit)
    }

    /// A part running a function handle, lambda or closure (see
    /// [`AnyFunction`]); it does not see the context.
    pub fn function(name: impl Into<Arc<str>>, f: impl Into<AnyFunction>) -> Self {
        Self::with_work(name, Work::Function(Box::new(f.into())), false)
    }

    /// Runs the part on the named component thread instead of the pool.
    pub fn component(mut self, component: impl Into<String>) -> Self {
        self.placement = Placement::Component(component.into());
        self
    }

    /// Runs the part in a worker process of the run's pool. Only a
    /// registered function ([`CyclePart::function`] with an
    /// [`SkFunction`](sk_core::SkFunction)) can; anything else is a build
    /// error naming the part. The function gets the part's input as its
    /// argument `input` when it has a parameter of that name.
    ///
    /// A worker that dies while the part runs fails the attempt (the
    /// error mode decides what follows); a worker found dead, or one
    /// that dies before it starts the part, costs the part nothing: it
    /// runs on a fresh worker (up to 8 tries), whatever its error mode.
    /// A dead worker is never handed another part.
    pub fn in_process(mut self) -> Self {
        self.placement = Placement::Process;
        self
    }

    /// Runs the part in the named long-lived worker process (see
    /// [`CyclePart::in_process`]).
    pub fn in_named_process(mut self, process: impl Into<String>) -> Self {
        self.placement = Placement::NamedProcess(process.into());
        self
    }

    /// Runs the part on a worker of the remote group `group`: a worker
    /// process on this machine or another, reached through the run's
    /// [`RemoteRunner`](crate::RemoteRunner) (see [`Run::remote`](crate::Run::remote);
    /// `sk-remote` provides one on NATS JetStream). As for
    /// [`CyclePart::in_process`], only a registered function can (anything
    /// else is a build error naming the part), and it gets the part's input
    /// as its argument `input`. Its timeout, retry policy and error mode
    /// apply as for any part: each attempt is sent on its own; a late
    /// answer to an attempt given up on is ignored. A run with a remote
    /// part and no remote runner does not start
    /// ([`RunError::NoRemote`](crate::RunError::NoRemote)).
    ///
    /// The function runs with no access to the run: it cannot read the
    /// run's store or other parts' outputs (a read fails, naming why).
    pub fn remote(mut self, group: impl Into<String>) -> Self {
        self.placement = Placement::Remote(group.into());
        self
    }

    /// Makes the part's effect happen at most once in a journaled run
    /// (see [`Run::journal`](crate::Run::journal)): before it runs, the
    /// run records (and commits) its intent. If the run is killed before
    /// the part's end is recorded, its outcome is unknown: on resume it is
    /// not run again but fails with [`PartError::OutcomeUnknown`](crate::PartError::OutcomeUnknown),
    /// and its error mode decides what follows (a retry mode does not
    /// retry it). Outside a journaled run it changes nothing.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// In a journaled run, does not record the part: a resumed run runs
    /// it again (e.g. a part whose output cannot be serialized, like a
    /// [`CyclePart::local`] one, which a journaled run otherwise refuses).
    pub fn recompute_on_resume(mut self) -> Self {
        self.recompute = true;
        self
    }

    /// Sets where the part runs.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Sets what a failure does (default [`ErrorMode::CleanFail`]).
    pub fn error_mode(mut self, mode: ErrorMode) -> Self {
        self.error_mode = mode;
        self
    }

    /// Bounds each run of the part (all retries included); an overrun sets
    /// its stop token and it ends [`PartState::TimedOut`](crate::PartState::TimedOut).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Declares that the part reads the outputs of `parts` (with
    /// [`PartContext::output`]): each must be ordered before it — an
    /// ancestor, or joined by `after`/`pipe`/a level barrier — or the
    /// cycle does not build ([`BuildError::UnorderedRead`](crate::BuildError::UnorderedRead),
    /// naming both). Its input part needs no declaration.
    pub fn reads<I, S>(mut self, parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.reads.extend(parts.into_iter().map(Into::into));
        self
    }

    /// Declares that the part reads the latest completed outputs of
    /// `parts`, in whatever order they run (a value of this iteration or
    /// an earlier one; none before the first completes).
    pub fn reads_latest<I, S>(mut self, parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.reads_latest.extend(parts.into_iter().map(Into::into));
        self
    }

    /// At most `per_sec` starts of this part per second (its iterations
    /// wait their turn without holding a thread); applies beside its
    /// splits' and the cycle's rates. Not a finite number above zero:
    /// [`BuildError::InvalidRateLimit`](crate::BuildError::InvalidRateLimit)
    /// when the cycle is built.
    pub fn rate_limit(mut self, per_sec: f64) -> Self {
        self.rate_limit = Some(per_sec);
        self
    }

    /// The retry policy used under [`ErrorMode::Retry`]; setting one also
    /// selects that mode.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(Box::new(policy));
        self.error_mode = ErrorMode::Retry;
        self
    }

    /// Checks the part's output when it finishes; a rejection fails the
    /// part with the validator's message.
    pub fn validate<T, E, F>(mut self, check: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
        E: fmt::Display,
        F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
    {
        self.validator = Some(typed_validator(check));
        self
    }

    /// Checks the input the part receives (its parent's or pipeline
    /// predecessor's output) before it runs; a rejection fails the part.
    pub fn validate_input<T, E, F>(mut self, check: F) -> Self
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
        E: fmt::Display,
        F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
    {
        self.input_validator = Some(typed_validator(check));
        self
    }

    /// Runs the part (and everything below it) only when `condition` holds;
    /// otherwise they end [`PartState::NotTaken`](crate::PartState::NotTaken).
    pub fn condition<F>(mut self, condition: F) -> Self
    where
        F: Fn(&PartContext<'_>) -> bool + Send + Sync + 'static,
    {
        self.condition = Some(Arc::new(condition));
        self
    }

    /// The value that stands in for the output under the fallback error
    /// modes.
    pub fn fallback<T>(mut self, value: T) -> Self
    where
        T: Clone + Serialize + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(move || Value::new(value.clone())));
        self
    }

    /// The part's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the part runs.
    pub fn placement_of(&self) -> &Placement {
        &self.placement
    }

    /// The part's error mode.
    pub fn error_mode_of(&self) -> ErrorMode {
        self.error_mode
    }

    /// The part's timeout.
    pub fn timeout_of(&self) -> Option<Duration> {
        self.timeout
    }
}

fn typed_validator<T, E, F>(check: F) -> Arc<ValidatorFn>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
    E: fmt::Display,
    F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
{
    Arc::new(move |value: &Value| match value.get::<T>() {
        Some(v) => check(v).map_err(|e| e.to_string()),
        None => Err(format!(
            "expected a `{}`, got a `{}`",
            std::any::type_name::<T>(),
            value.type_name()
        )),
    })
}

impl fmt::Debug for CyclePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CyclePart")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .field("error_mode", &self.error_mode)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("validated", &self.validator.is_some())
            .field("conditional", &self.condition.is_some())
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

/// What a part receives as input.
#[derive(Clone, Debug, Default)]
pub enum Input {
    /// No input: the part is a root, or its parent returned `()`.
    #[default]
    None,
    /// Its parent's (or pipeline predecessor's) output.
    Value(Arc<Value>),
    /// The error of a parent in [`ErrorMode::Propagate`].
    Error(Arc<PartError>),
}

/// Everything a running part can see: its input, the outputs of completed
/// parts, the run's shared store, its stop token.
pub struct PartContext<'a> {
    pub(crate) part: &'a str,
    pub(crate) coord: Coord,
    pub(crate) iteration: u64,
    pub(crate) attempt: u32,
    pub(crate) input: &'a Input,
    pub(crate) env: &'a dyn ContextEnv,
    pub(crate) stop: &'a StopToken,
}

/// Parts with their latest completed outputs (`None`: none yet).
pub(crate) type LatestOutputs = Vec<(Arc<str>, Option<Arc<Value>>)>;

/// Parts found by [`PartContext::descendants_where`], with their outputs.
pub type Descendants<T> = Vec<(Arc<str>, Output<T>)>;

/// What the engine lets a part look up.
pub(crate) trait ContextEnv: Sync {
    /// Part `part`'s output, as `reader` may read it (see
    /// [`PartContext::output_value`]).
    fn read(&self, reader: &str, part: &str) -> Result<Arc<Value>, ReadError>;
    /// The name of the part at `coord`.
    fn name_at(&self, coord: Coord) -> Option<&str>;
    /// The parts below `part` in the tree with their latest completed
    /// outputs, in coordinate order (`None`: unknown part).
    fn subtree_latest(&self, part: &str) -> Option<LatestOutputs>;
    fn store(&self) -> &Store;
    /// The run's id as keys name it: a durable run's id, else the
    /// cycle's name and the run's number in this process.
    fn run_key(&self) -> String;
    /// The recorded value of step `step` of `part` in `iteration` (in a
    /// durable run; `None` in others).
    fn recorded_step(
        &self,
        part: &str,
        iteration: u64,
        step: &str,
    ) -> Result<Option<Vec<u8>>, String>;
    /// Records step `step` of `part` (in a durable run; nothing in
    /// others), committed when it returns.
    fn record_step(
        &self,
        part: &str,
        iteration: u64,
        step: &str,
        value: Vec<u8>,
    ) -> Result<(), String>;
}

/// The idempotency key of `part` in `iteration` of run `run`.
pub(crate) fn idempotency_key(run: &str, iteration: u64, part: &str) -> String {
    format!("{run}/{iteration}/{part}")
}

/// A part's output read by another part: derefs to the value.
pub struct Output<T> {
    value: Arc<Value>,
    /// How the value is seen as a `T` (decoding, or a plain downcast).
    view: fn(&Value) -> Option<&T>,
}

impl<T> Output<T> {
    /// `value` as a `T` by `view`, if it is one.
    pub(crate) fn of(value: Arc<Value>, view: fn(&Value) -> Option<&T>) -> Option<Self> {
        view(&value)?;
        Some(Output { value, view })
    }

    /// `value` as a `T` by `view`, or the typed error saying what `what`
    /// is instead.
    pub(crate) fn checked(
        value: Arc<Value>,
        view: fn(&Value) -> Option<&T>,
        what: impl FnOnce() -> String,
    ) -> Result<Self, ReadError> {
        view_as(&value, view, what)?;
        Ok(Output { value, view })
    }
}

impl<T> std::ops::Deref for Output<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match (self.view)(&self.value) {
            Some(value) => value,
            // Every Output is made only after `view` gave a value
            // (`Output::of`, `PartContext::output_by`), and a value's view
            // gives it every time (a decoded one is kept).
            None => unreachable!("an Output is made only of a value that is a T"),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// What a read of part `name`'s output reads, for errors.
pub(crate) fn output_what(name: &str) -> String {
    format!("the output of part \"{name}\"")
}

impl<'a> PartContext<'a> {
    /// The part's name.
    pub fn name(&self) -> &str {
        self.part
    }

    /// The part's coordinate.
    pub fn coord(&self) -> Coord {
        self.coord
    }

    /// The iteration number, from 1 (per lane under independent sync).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// A key naming this part's work in this iteration of this run —
    /// `<run>/<iteration>/<part>` — the same on every attempt and, in a
    /// journaled run, after a resume: pass it to an outside service so
    /// that a request made twice (a retry, a re-run after a crash) is
    /// done once.
    pub fn idempotency_key(&self) -> String {
        idempotency_key(&self.env.run_key(), self.iteration, self.part)
    }

    /// Step `name` of this part's work: in a journaled run (see
    /// [`Run::journal`](crate::Run::journal)), `f`'s value is recorded
    /// (and committed) before it is returned, and a resumed run, or a
    /// later attempt, gets the recorded value back instead of calling `f`
    /// again — the durable await: create an outside job in one step, and
    /// poll it in the part; after a crash the part polls the same job.
    /// Outside a journaled run it calls `f`.
    ///
    /// A crash between `f`'s effect and the commit runs `f` again (at
    /// least once, like every durable-execution step): give the outside
    /// service the [`idempotency_key`](Self::idempotency_key).
    ///
    /// # Errors
    ///
    /// [`StepError::Journal`] when the value cannot be recorded or read
    /// back, [`StepError::Value`] when it does not serialize or the
    /// recorded one is not a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_cycle::{CycleBuilder, CyclePart, Run};
    ///
    /// let mut b = CycleBuilder::new("jobs");
    /// b.add(CyclePart::fallible("submit", |ctx| {
    ///     let job: u64 = ctx.step("create", || 42u64)?; // e.g. client.create_job()
    ///     Ok::<_, sk_cycle::StepError>(job)
    /// }), 1)?;
    /// let report = b.build()?.run(Run::once())?;
    /// assert_eq!(report.last().unwrap().output_as::<u64>("submit"), Some(&42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn step<T, F>(&self, name: &str, f: F) -> Result<T, StepError>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.try_step(name, || Ok::<T, std::convert::Infallible>(f()))
    }

    /// [`step`](Self::step) for fallible work: an error is returned as
    /// [`StepError::Failed`] and not recorded (the next attempt tries
    /// again).
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`StepError::Failed`].
    pub fn try_step<T, E, F>(&self, name: &str, f: F) -> Result<T, StepError>
    where
        T: Serialize + serde::de::DeserializeOwned,
        E: Into<sk_core::BoxError>,
        F: FnOnce() -> Result<T, E>,
    {
        crate::step::run_step(
            self.part,
            name,
            self.env.recorded_step(self.part, self.iteration, name),
            |bytes| self.env.record_step(self.part, self.iteration, name, bytes),
            f,
        )
    }

    /// The attempt number under retry, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The input: parent output, pipeline output, or a propagated error.
    pub fn input(&self) -> &Input {
        self.input
    }

    /// The input value as a `T` — made on a thread, or in a worker
    /// process (decoded once) — or why not.
    ///
    /// # Errors
    ///
    /// [`ReadError::NoInput`] when there is no input value (a root, or an
    /// input that is a propagated error), [`ReadError::Type`] naming the
    /// type asked for and the type it is (`u64`, not a `u32`).
    pub fn input_as<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<&T, ReadError> {
        view_as(self.input_value()?, Value::get::<T>, || self.input_what())
    }

    /// The input value, untyped.
    ///
    /// # Errors
    ///
    /// [`ReadError::NoInput`] when there is none.
    pub fn input_value(&self) -> Result<&Value, ReadError> {
        match self.input {
            Input::Value(v) => Ok(v),
            Input::Error(e) => Err(ReadError::NoInput {
                reader: format!("part \"{}\"", self.part),
                why: format!("its input is an error: {e}"),
            }),
            Input::None => Err(ReadError::NoInput {
                reader: format!("part \"{}\"", self.part),
                why: "no input part".to_owned(),
            }),
        }
    }

    fn input_what(&self) -> String {
        format!("the input of part \"{}\"", self.part)
    }

    /// The input value as a `T` made in this process, of any type (no
    /// decoding): for values that never cross a process boundary. Prefer
    /// [`PartContext::input_as`], which reads values from processes too.
    ///
    /// # Errors
    ///
    /// As [`PartContext::input_as`].
    pub fn input_local<T: std::any::Any>(&self) -> Result<&T, ReadError> {
        view_as(self.input_value()?, Value::downcast_ref::<T>, || {
            self.input_what()
        })
    }

    /// The error a parent propagated, if any.
    pub fn input_error(&self) -> Option<&PartError> {
        match self.input {
            Input::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The output of part `name` as a `T`: its input part, a part it
    /// declared with [`CyclePart::reads`] (of this iteration: ordered
    /// before it), or one declared with [`CyclePart::reads_latest`] (its
    /// latest completed output). Made on a thread or in a process, read
    /// the same way.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unknown`] for a name the cycle does not have,
    /// [`ReadError::Undeclared`] for a part it did not declare,
    /// [`ReadError::NoOutput`] when that part has no output (it failed or
    /// was skipped), [`ReadError::Type`] naming both types.
    pub fn output<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<Output<T>, ReadError> {
        self.output_by(name, Value::get::<T>)
    }

    /// The output of part `name` as a `T` made in this process, of any
    /// type (see [`CyclePart::local`]); otherwise as
    /// [`PartContext::output`].
    ///
    /// # Errors
    ///
    /// As [`PartContext::output`].
    pub fn output_local<T: std::any::Any>(&self, name: &str) -> Result<Output<T>, ReadError> {
        self.output_by(name, Value::downcast_ref::<T>)
    }

    /// The output of part `name` seen as a `T` by `view`.
    fn output_by<T>(
        &self,
        name: &str,
        view: fn(&Value) -> Option<&T>,
    ) -> Result<Output<T>, ReadError> {
        Output::checked(self.output_value(name)?, view, || output_what(name))
    }

    /// Asks part `name` for its descendants' data: the latest completed
    /// outputs of the parts below it in the tree that are a `T` and for
    /// which `keep(part, value)` holds, in coordinate order. A
    /// latest-completed read (see [`CyclePart::reads_latest`]): a value of
    /// this iteration or an earlier one, none before a part first
    /// completes; it needs no declaration.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unknown`] when the cycle has no part `name`.
    pub fn descendants_where<T, F>(&self, name: &str, keep: F) -> Result<Descendants<T>, ReadError>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
        F: Fn(&str, &T) -> bool,
    {
        let below = self
            .env
            .subtree_latest(name)
            .ok_or_else(|| ReadError::Unknown {
                reader: format!("part \"{}\"", self.part),
                part: name.to_owned(),
            })?;
        Ok(below
            .into_iter()
            .filter_map(|(part, value)| {
                let output = Output::of(value?, Value::get::<T>)?;
                keep(&part, &output).then_some((part, output))
            })
            .collect())
    }

    /// The output of part `name`, untyped (see [`PartContext::output`]).
    ///
    /// # Errors
    ///
    /// As [`PartContext::output`], but for the type.
    pub fn output_value(&self, name: &str) -> Result<Arc<Value>, ReadError> {
        self.env.read(self.part, name)
    }

    /// The output of the part at `coord` (see [`PartContext::output`]).
    ///
    /// # Errors
    ///
    /// As [`PartContext::output`]; [`ReadError::Unknown`] when no part is
    /// at `coord`.
    pub fn output_at<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        coord: impl Into<Coord>,
    ) -> Result<Output<T>, ReadError> {
        let coord = coord.into();
        match self.env.name_at(coord) {
            Some(name) => self.output(name),
            None => Err(ReadError::Unknown {
                reader: format!("part \"{}\"", self.part),
                part: coord.to_string(),
            }),
        }
    }

    /// The run's shared store.
    pub fn store(&self) -> &Store {
        self.env.store()
    }

    /// The part's stop token: set when the part times out or the cycle
    /// stops; long-running parts should check it.
    pub fn stop_token(&self) -> &StopToken {
        self.stop
    }

    /// Whether the part has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.stop.is_stopped()
    }
}

impl fmt::Debug for PartContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartContext")
            .field("part", &self.part)
            .field("coord", &self.coord)
            .field("iteration", &self.iteration)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
