//! [`current_part`]: what a function part's code sees of its run,
//! wherever the part runs.
//!
//! A closure part gets a [`PartContext`](crate::PartContext). A part made
//! of a registered function has no context parameter — and may run on a
//! thread of the run or in a worker process — so its code asks for one:
//! [`current_part`] gives a [`CurrentPart`] with the same reads
//! (declared outputs, descendants' data, the shared store) on both. On a
//! thread it reads the run directly; in a worker process every read is a
//! question to the run's process (`sk_process::ask_parent`), answered by
//! the thread waiting for the part with the same rules as on a thread.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_core::Value;

use crate::ask::{Identity, Question, Reply, Wire, question_to_wire, reply_from_wire};
use crate::context::{Descendants, Output, output_what};
use crate::coord::Coord;
use crate::error::{ReadError, StepError};
use crate::store;

/// How long a part in a worker process waits for its run to answer a
/// read (the run answers at once; this bounds a run that is gone).
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the run `question`: directly when this thread runs a function
/// part, through the parent when it runs a worker's call.
fn ask(question: Question<Value>) -> Result<Reply<Arc<Value>>, ReadError> {
    let question = match crate::engine::respond_here(question) {
        Ok(reply) => return Ok(reply),
        Err(question) => question,
    };
    let unreachable = |why: String| ReadError::Unreachable { why };
    let question = sk_cereal::Internal::encode(&question_to_wire(question)?)
        .map_err(|e| unreachable(format!("cannot send the question: {e}")))?;
    let answer = sk_process::ask_parent(&question, ASK_TIMEOUT).map_err(|e| match e {
        sk_process::WorkerError::Closed { .. } => ReadError::NotInPart,
        other => unreachable(sk_core::error_chain(&other)),
    })?;
    let reply: Reply<Wire> = sk_cereal::Internal::decode(&answer)
        .map_err(|e| unreachable(format!("an answer the part cannot read: {e}")))?;
    Ok(reply_from_wire(reply))
}

/// An answer of another kind than the question asked for.
fn mismatch() -> ReadError {
    ReadError::Unreachable {
        why: "the run answered another question".to_owned(),
    }
}

/// The part whose code calls it, as its run sees it: for code of a part
/// made of a registered function (see [`CurrentPart`]).
///
/// # Errors
///
/// [`ReadError::NotInPart`] when not called from the thread that runs a
/// function part (on a thread of the run or in a worker process),
/// [`ReadError::Unreachable`] when a worker process cannot reach its run.
///
/// # Examples
///
/// ```
/// use sk_cycle::{CycleBuilder, CyclePart, ReadError, Run, current_part};
///
/// #[sk_core::function(crate = ::sk_core)]
/// fn scaled(input: u64) -> Result<u64, ReadError> {
///     let part = current_part()?;
///     let factor = part.store().get::<u64>("factor")?;
///     let offset = part.output::<u64>("offset")?;
///     Ok(input * factor + *offset)
/// }
///
/// let mut b = CycleBuilder::new("doc");
/// b.add(CyclePart::new("offset", |ctx| {
///     ctx.store().set("factor", 10u64);
///     1u64
/// }), 1)?;
/// b.add(CyclePart::new("input", |_| 4u64), 2)?;
/// // Placed with `.in_process()`, the function reads the same way.
/// let scaled = sk_core::SkFunction::builder("scaled").build()?;
/// b.add(CyclePart::function("scaled", scaled).reads(["offset"]), 3)?;
/// let report = b.build()?.run(Run::once())?;
/// assert_eq!(report.last().unwrap().output_as::<u64>("scaled"), Some(&41));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current_part() -> Result<CurrentPart, ReadError> {
    match ask(Question::Who)? {
        Reply::Who(who) => Ok(CurrentPart {
            who,
            _thread: PhantomData,
        }),
        _ => Err(mismatch()),
    }
}

/// A running function part's view of its run (see [`current_part`]):
/// the reads of a [`PartContext`](crate::PartContext), by the same rules
/// (declared reads, typed results), the same whether the part runs on a
/// thread or in a worker process. Values from a worker process come
/// encoded and are decoded once, on first read.
///
/// It serves the thread that runs the part, while the part runs (it is
/// not `Send`).
#[derive(Debug)]
pub struct CurrentPart {
    who: Identity,
    /// Reads go through the thread that runs the part.
    _thread: PhantomData<*const ()>,
}

impl CurrentPart {
    /// The part's name.
    pub fn name(&self) -> &str {
        &self.who.part
    }

    /// The part's coordinate.
    pub fn coord(&self) -> Coord {
        self.who.coord
    }

    /// The iteration number, from 1.
    pub fn iteration(&self) -> u64 {
        self.who.iteration
    }

    /// The attempt number under retry, from 1.
    pub fn attempt(&self) -> u32 {
        self.who.attempt
    }

    /// The output of part `name` as a `T`, by the rules of
    /// [`PartContext::output`](crate::PartContext::output).
    ///
    /// # Errors
    ///
    /// As [`PartContext::output`](crate::PartContext::output); also
    /// [`ReadError::LocalOnly`] in a worker process for a value that
    /// cannot leave the run's process, [`ReadError::Unreachable`] when the
    /// run cannot be reached.
    pub fn output<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<Output<T>, ReadError> {
        Output::checked(self.output_value(name)?, Value::get::<T>, || {
            output_what(name)
        })
    }

    /// The output of part `name`, untyped.
    ///
    /// # Errors
    ///
    /// As [`CurrentPart::output`], but for the type.
    pub fn output_value(&self, name: &str) -> Result<Arc<Value>, ReadError> {
        match ask(Question::Output(name.to_owned()))? {
            Reply::Value(value) => value,
            _ => Err(mismatch()),
        }
    }

    /// The output of the part at `coord` as a `T`.
    ///
    /// # Errors
    ///
    /// As [`CurrentPart::output`]; [`ReadError::Unknown`] when no part is
    /// at `coord`.
    pub fn output_at<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        coord: impl Into<Coord>,
    ) -> Result<Output<T>, ReadError> {
        let coord = coord.into();
        match ask(Question::OutputAt(coord))? {
            Reply::Value(value) => Output::checked(value?, Value::get::<T>, || {
                format!("the output of the part at {coord}")
            }),
            _ => Err(mismatch()),
        }
    }

    /// The latest completed outputs below part `name` that are a `T` and
    /// for which `keep` holds, by the rules of
    /// [`PartContext::descendants_where`](crate::PartContext::descendants_where)
    /// (in a worker process, values that cannot leave the run's process
    /// are left out).
    ///
    /// # Errors
    ///
    /// [`ReadError::Unknown`] when the cycle has no part `name`,
    /// [`ReadError::Unreachable`] when the run cannot be reached.
    pub fn descendants_where<T, F>(&self, name: &str, keep: F) -> Result<Descendants<T>, ReadError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
        F: Fn(&str, &T) -> bool,
    {
        let below = match ask(Question::Below(name.to_owned()))? {
            Reply::Below(below) => below?,
            _ => return Err(mismatch()),
        };
        Ok(below
            .into_iter()
            .filter_map(|(part, value)| {
                let output = Output::of(value?, Value::get::<T>)?;
                keep(&part, &output).then(|| (Arc::from(part), output))
            })
            .collect())
    }

    /// This part's idempotency key, as
    /// [`PartContext::idempotency_key`](crate::PartContext::idempotency_key)
    /// gives it.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unreachable`] when the run cannot be reached.
    pub fn idempotency_key(&self) -> Result<String, ReadError> {
        match ask(Question::Key)? {
            Reply::Key(key) => Ok(key),
            _ => Err(mismatch()),
        }
    }

    /// Step `name` of this part's work, recorded in a journaled run as
    /// [`PartContext::step`](crate::PartContext::step) records it (from a
    /// worker process too: the run records it).
    ///
    /// # Errors
    ///
    /// As [`PartContext::step`](crate::PartContext::step).
    pub fn step<T, F>(&self, name: &str, f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.try_step(name, || Ok::<T, std::convert::Infallible>(f()))
    }

    /// [`step`](Self::step) for fallible work, as
    /// [`PartContext::try_step`](crate::PartContext::try_step).
    ///
    /// # Errors
    ///
    /// As [`PartContext::try_step`](crate::PartContext::try_step).
    pub fn try_step<T, E, F>(&self, name: &str, f: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        E: Into<sk_core::BoxError>,
        F: FnOnce() -> Result<T, E>,
    {
        let step = |question| match ask(question) {
            Ok(Reply::Step(step)) => step,
            Ok(_) => Err(mismatch().to_string()),
            Err(e) => Err(e.to_string()),
        };
        crate::step::run_step(
            &self.who.part,
            name,
            step(Question::Step(name.to_owned())),
            |bytes| step(Question::RecordStep(name.to_owned(), bytes)).map(drop),
            f,
        )
    }

    /// The run's shared store, as this part reaches it.
    pub fn store(&self) -> RunStore<'_> {
        RunStore { _part: self }
    }
}

/// The run's shared [`Store`](crate::Store) as a function part reaches
/// it (see [`CurrentPart::store`]): the same reads and writes, each of
/// which can also fail to reach the run from a worker process.
#[derive(Debug)]
pub struct RunStore<'a> {
    _part: &'a CurrentPart,
}

impl RunStore<'_> {
    /// A copy of the value under `key` as a `T`.
    ///
    /// # Errors
    ///
    /// As [`Store::get`](crate::Store::get); [`ReadError::LocalOnly`] in
    /// a worker process for a value set with
    /// [`Store::set_local`](crate::Store::set_local),
    /// [`ReadError::Unreachable`].
    pub fn get<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Result<T, ReadError> {
        let (value, _) = revision(key)?;
        crate::error::view_as(&value, Value::get::<T>, || store::what(key)).cloned()
    }

    /// The value under `key`, untyped.
    ///
    /// # Errors
    ///
    /// As [`RunStore::get`], but for the type.
    pub fn get_value(&self, key: &str) -> Result<Arc<Value>, ReadError> {
        revision(key).map(|(value, _)| value)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unreachable`] when the run cannot be reached or the
    /// value does not serialize.
    pub fn set<T: Serialize + Send + Sync + 'static>(
        &self,
        key: &str,
        value: T,
    ) -> Result<(), ReadError> {
        match ask(Question::StoreSet(key.to_owned(), Value::new(value)))? {
            Reply::Written(_) => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// Atomically replaces the value under `key` with `f(current)`
    /// (`None`: not set) and returns the new value. From a worker process
    /// this is a compare-and-set on the value's revision: under
    /// contention `f` may run more than once, so it should not have side
    /// effects.
    ///
    /// # Errors
    ///
    /// [`ReadError::Type`] when the value there is not a `T` (it is left
    /// as it was), [`ReadError::Unreachable`].
    pub fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, ReadError>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnMut(Option<&T>) -> T,
    {
        loop {
            let (new, expected) = match revision(key) {
                Ok((value, revision)) => {
                    let current =
                        crate::error::view_as(&value, Value::get::<T>, || store::what(key))?;
                    (f(Some(current)), Some(revision))
                }
                Err(ReadError::NotInStore { .. }) => (f(None), None),
                Err(e) => return Err(e),
            };
            let question = Question::StoreSwap {
                key: key.to_owned(),
                expected,
                new: Value::new(new.clone()),
            };
            match ask(question)? {
                Reply::Written(Some(_)) => return Ok(new),
                // Another writer came first: read again.
                Reply::Written(None) => {}
                _ => return Err(mismatch()),
            }
        }
    }

    /// Removes `key`; whether it was there.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unreachable`].
    pub fn remove(&self, key: &str) -> Result<bool, ReadError> {
        flag(Question::StoreRemove(key.to_owned()))
    }

    /// Whether `key` is set.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unreachable`].
    pub fn contains(&self, key: &str) -> Result<bool, ReadError> {
        flag(Question::StoreContains(key.to_owned()))
    }

    /// The keys, sorted.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unreachable`].
    pub fn keys(&self) -> Result<Vec<String>, ReadError> {
        match ask(Question::StoreKeys)? {
            Reply::Keys(keys) => Ok(keys),
            _ => Err(mismatch()),
        }
    }
}

fn revision(key: &str) -> Result<(Arc<Value>, u64), ReadError> {
    match ask(Question::StoreGet(key.to_owned()))? {
        Reply::Revision(got) => got,
        _ => Err(mismatch()),
    }
}

fn flag(question: Question<Value>) -> Result<bool, ReadError> {
    match ask(question)? {
        Reply::Flag(flag) => Ok(flag),
        _ => Err(mismatch()),
    }
}
