//! [`PartContext`]: what a running part sees — its input, the outputs
//! of the parts it may read, the run's store, its stop token, its steps.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use sk_core::{StopToken, Value};

use crate::coord::Coord;
use crate::error::{PartError, ReadError, StepError, view_as};
use crate::store::Store;

/// What a part receives as input.
#[derive(Clone, Debug, Default)]
pub enum Input {
    /// No input: the part is a root, or its parent returned `()`.
    #[default]
    None,
    /// Its parent's (or pipeline predecessor's) output.
    Value(Arc<Value>),
    /// The error of a parent in [`ErrorMode::Propagate`](crate::ErrorMode::Propagate).
    Error(Arc<PartError>),
}

/// Everything a running part can see: its input, the outputs of completed
/// parts, the run's shared store, its stop token.
pub struct PartContext<'a> {
    /// The part's node in the plan: its name and coordinate are looked
    /// up when asked for (most parts never do).
    pub(crate) node: u32,
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
    /// The name of part `node` (a [`PartContext`]'s own).
    fn part_name(&self, node: u32) -> &Arc<str>;
    /// The coordinate of part `node` (a [`PartContext`]'s own).
    fn part_coord(&self, node: u32) -> Coord;
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
        self.part()
    }

    /// The part's coordinate.
    pub fn coord(&self) -> Coord {
        self.env.part_coord(self.node)
    }

    /// The part's name, as the plan holds it.
    fn part(&self) -> &'a Arc<str> {
        self.env.part_name(self.node)
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
        idempotency_key(&self.env.run_key(), self.iteration, self.part())
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
            self.part(),
            name,
            self.env.recorded_step(self.part(), self.iteration, name),
            |bytes| {
                self.env
                    .record_step(self.part(), self.iteration, name, bytes)
            },
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
                reader: format!("part \"{}\"", self.part()),
                why: format!("its input is an error: {e}"),
            }),
            Input::None => Err(ReadError::NoInput {
                reader: format!("part \"{}\"", self.part()),
                why: "no input part".to_owned(),
            }),
        }
    }

    fn input_what(&self) -> String {
        format!("the input of part \"{}\"", self.part())
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
    /// declared with [`CyclePart::reads`](crate::CyclePart::reads) (of this iteration: ordered
    /// before it), or one declared with [`CyclePart::reads_latest`](crate::CyclePart::reads_latest) (its
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
    /// type (see [`CyclePart::local`](crate::CyclePart::local)); otherwise as
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
    /// latest-completed read (see [`CyclePart::reads_latest`](crate::CyclePart::reads_latest)): a value of
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
                reader: format!("part \"{}\"", self.part()),
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
        self.env.read(self.part(), name)
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
                reader: format!("part \"{}\"", self.part()),
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
            .field("part", &self.part())
            .field("coord", &self.coord())
            .field("iteration", &self.iteration)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
