//! [`CyclePart`]: one named unit of work of a cycle — what it does, where
//! it runs, how it fails. What it sees when it runs is in `context.rs`.

use std::any::TypeId;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sk_core::{AnyFunction, BoxError, RetryPolicy, Value};

use crate::context::PartContext;
use crate::mode::{ErrorMode, Placement};

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
    /// The settings most parts leave unset (see [`Settings`]).
    settings: Option<Box<Settings>>,
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

/// A part's settings that most parts leave unset, out of line: a part
/// without any carries no box (a large cycle's parts stay small, and so
/// quick to build).
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub(crate) timeout: Option<Duration>,
    pub(crate) rate_limit: Option<f64>,
    /// Parts it reads, ordered before it (checked when the cycle is built).
    pub(crate) reads: Vec<Arc<str>>,
    /// Parts it reads as they last completed, in whatever order.
    pub(crate) reads_latest: Vec<Arc<str>>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) validator: Option<Arc<ValidatorFn>>,
    pub(crate) input_validator: Option<Arc<ValidatorFn>>,
    pub(crate) condition: Option<Arc<ConditionFn>>,
    pub(crate) fallback: Option<Arc<FallbackFn>>,
}

/// What a part without settings reads.
static UNSET: Settings = Settings {
    timeout: None,
    rate_limit: None,
    reads: Vec::new(),
    reads_latest: Vec::new(),
    retry: None,
    validator: None,
    input_validator: None,
    condition: None,
    fallback: None,
};

/// `work` as a part's closure. A stateless closure (it captures nothing
/// and has nothing to drop) does the same whichever instance runs, so
/// parts made one after another on a thread from one such closure share
/// one allocation: a large cycle built in a loop allocates its closure
/// once, not once per part.
fn shared<W>(work: W) -> Arc<PartFn>
where
    W: Fn(&PartContext<'_>) -> Result<Option<Value>, BoxError> + Send + Sync + 'static,
{
    if std::mem::size_of::<W>() != 0 || std::mem::needs_drop::<W>() {
        return Arc::new(work);
    }
    thread_local! {
        /// The last stateless closure made on this thread, by type.
        static LAST: RefCell<Option<(TypeId, Arc<PartFn>)>> = const { RefCell::new(None) };
    }
    let id = TypeId::of::<W>();
    let held = LAST.try_with(|last| match &*last.borrow() {
        Some((held, work)) if *held == id => Some(Arc::clone(work)),
        _ => None,
    });
    if let Ok(Some(work)) = held {
        return work;
    }
    let work: Arc<PartFn> = Arc::new(work);
    // A thread that is ending keeps none.
    let _ = LAST.try_with(|last| *last.borrow_mut() = Some((id, Arc::clone(&work))));
    work
}

impl CyclePart {
    /// Its settings (all unset for most parts).
    #[inline]
    pub(crate) fn settings(&self) -> &Settings {
        self.settings.as_deref().unwrap_or(&UNSET)
    }

    /// Its settings, to change one.
    fn settings_mut(&mut self) -> &mut Settings {
        self.settings.get_or_insert_with(Box::default)
    }

    fn with_work(name: impl Into<Arc<str>>, work: Work, unit_output: bool) -> Self {
        CyclePart {
            name: name.into(),
            work,
            placement: Placement::Pool,
            error_mode: ErrorMode::default(),
            settings: None,
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
        let work = shared(move |ctx| Ok(unit_or(f(ctx), Value::new)));
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
        let work = shared(move |ctx| Ok(unit_or(f(ctx), Value::local)));
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
        let work = shared(move |ctx| f(ctx).map(|r| unit_or(r, Value::local)).map_err(Into::into));
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
        let work = shared(move |ctx| f(ctx).map(|r| unit_or(r, Value::new)).map_err(Into::into));
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
        self.settings_mut().timeout = Some(limit);
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
        self.settings_mut()
            .reads
            .extend(parts.into_iter().map(Into::into));
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
        self.settings_mut()
            .reads_latest
            .extend(parts.into_iter().map(Into::into));
        self
    }

    /// At most `per_sec` starts of this part per second (its iterations
    /// wait their turn without holding a thread); applies beside its
    /// splits' and the cycle's rates. Not a finite number above zero:
    /// [`BuildError::InvalidRateLimit`](crate::BuildError::InvalidRateLimit)
    /// when the cycle is built.
    pub fn rate_limit(mut self, per_sec: f64) -> Self {
        self.settings_mut().rate_limit = Some(per_sec);
        self
    }

    /// The retry policy used under [`ErrorMode::Retry`]; setting one also
    /// selects that mode.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings_mut().retry = Some(policy);
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
        self.settings_mut().validator = Some(typed_validator(check));
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
        self.settings_mut().input_validator = Some(typed_validator(check));
        self
    }

    /// Runs the part (and everything below it) only when `condition` holds;
    /// otherwise they end [`PartState::NotTaken`](crate::PartState::NotTaken).
    pub fn condition<F>(mut self, condition: F) -> Self
    where
        F: Fn(&PartContext<'_>) -> bool + Send + Sync + 'static,
    {
        self.settings_mut().condition = Some(Arc::new(condition));
        self
    }

    /// The value that stands in for the output under the fallback error
    /// modes.
    pub fn fallback<T>(mut self, value: T) -> Self
    where
        T: Clone + Serialize + Send + Sync + 'static,
    {
        self.settings_mut().fallback = Some(Arc::new(move || Value::new(value.clone())));
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
        self.settings().timeout
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
            .field("timeout", &self.settings().timeout)
            .field("retry", &self.settings().retry)
            .field("validated", &self.settings().validator.is_some())
            .field("conditional", &self.settings().condition.is_some())
            .field("fallback", &self.settings().fallback.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(part: &CyclePart) -> &Arc<PartFn> {
        match &part.work {
            Work::Context(work) => work,
            Work::Function(_) => panic!("a context closure"),
        }
    }

    #[test]
    fn parts_made_in_a_loop_from_a_stateless_closure_share_it() {
        let parts: Vec<CyclePart> = (0..3)
            .map(|i| CyclePart::new(format!("p{i}"), |_| 1))
            .collect();
        assert!(Arc::ptr_eq(work(&parts[0]), work(&parts[1])));
        assert!(Arc::ptr_eq(work(&parts[1]), work(&parts[2])));
        // Another closure in between: each type has its own.
        let other = CyclePart::new("other", |_| 2);
        assert!(!Arc::ptr_eq(work(&parts[0]), work(&other)));
    }

    #[test]
    fn closures_with_state_are_never_shared() {
        let parts: Vec<CyclePart> = (0..2u32)
            .map(|i| CyclePart::new(format!("p{i}"), move |_| i))
            .collect();
        assert!(!Arc::ptr_eq(work(&parts[0]), work(&parts[1])));
        // Nothing captured, but something to drop: each keeps its own.
        struct Dropped;
        impl Drop for Dropped {
            fn drop(&mut self) {}
        }
        let made = || {
            let d = Dropped;
            CyclePart::new("d", move |_| {
                let _ = &d;
            })
        };
        let (x, y) = (made(), made());
        assert!(!Arc::ptr_eq(work(&x), work(&y)));
    }
}
