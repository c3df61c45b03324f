//! The errors of sk-cycle: building a cycle and running it.

use std::time::Duration;

use sk_core::Value;
use sk_reg::RegistryError;

use crate::coord::Coord;
use crate::mode::ErrorMode;

/// Why a part, split or edge could not be placed, or a cycle not built.
///
/// Every placement error names the coordinate and why.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The first placement must be an `add` of one part at level 1.
    #[error("cannot {action} at {coord}: a cycle starts with an add of one part at level 1")]
    MustStartWithAdd {
        /// Where the placement was attempted.
        coord: Coord,
        /// `add` or `split`.
        action: &'static str,
    },
    /// Level 1 holds exactly one part.
    #[error("cannot place at {coord}: level 1 holds only the root part")]
    SecondRoot {
        /// Where the placement was attempted.
        coord: Coord,
    },
    /// The coordinate is already filled.
    #[error("cannot place at {coord}: it is already filled by {by}")]
    Occupied {
        /// The coordinate.
        coord: Coord,
        /// What fills it (`part "x"` or `a split`).
        by: String,
    },
    /// The coordinate above is empty: levels are filled one after another.
    #[error("cannot place at {coord}: {missing} is empty (fill each branch level by level)")]
    LevelGap {
        /// Where the placement was attempted.
        coord: Coord,
        /// The empty coordinate above it.
        missing: Coord,
    },
    /// Only the lowest coordinate of a branch can be extended.
    #[error("cannot place at {coord}: {above} is not the end of its branch ({reason})")]
    NotALeaf {
        /// Where the placement was attempted.
        coord: Coord,
        /// The coordinate above, which is not a leaf.
        above: Coord,
        /// Why, e.g. `it is a split`.
        reason: String,
    },
    /// A split needs at least one part.
    #[error("cannot split at {coord}: a split needs at least one part")]
    EmptySplit {
        /// Where the split was attempted.
        coord: Coord,
    },
    /// Two parts share a name.
    #[error("part name \"{name}\" is used twice: at {first} and at {second}")]
    DuplicatePart {
        /// The name.
        name: String,
        /// Where it was placed first.
        first: Coord,
        /// Where it was placed again.
        second: Coord,
    },
    /// A name does not refer to a placed or registered part.
    #[error("unknown part \"{name}\" ({context})")]
    UnknownPart {
        /// The name.
        name: String,
        /// Where the name was used.
        context: String,
    },
    /// A handle from another builder, or a stale one.
    #[error("part handle #{index} does not belong to this builder")]
    ForeignHandle {
        /// The handle's index.
        index: usize,
    },
    /// Ordering edges would make parts wait for each other in a loop.
    #[error("ordering loop: {}", path.join(" -> "))]
    OrderingLoop {
        /// The parts on the loop, the first repeated at the end.
        path: Vec<String>,
    },
    /// A part would wait for itself.
    #[error("part \"{name}\" at {coord} cannot wait for itself")]
    SelfEdge {
        /// The part.
        name: String,
        /// Its coordinate.
        coord: Coord,
    },
    /// A rate limit that is not a finite number of starts per second
    /// above zero.
    #[error(
        "{what}: a rate limit must be a finite number of starts per second above zero, got {per_sec}"
    )]
    InvalidRateLimit {
        /// Where it was set: `part "x" at 2-1`, `the split at 2-1`, or
        /// `cycle "c"`.
        what: String,
        /// The rate given.
        per_sec: f64,
    },
    /// A part declares a read of a part the cycle does not have.
    #[error(
        "part \"{reader}\" at {coord} reads \"{part}\", but the cycle has no part of that name"
    )]
    UnknownRead {
        /// The reading part.
        reader: String,
        /// Its coordinate.
        coord: Coord,
        /// The name it reads.
        part: String,
    },
    /// A part declares a read (`reads`) of a part that is not ordered
    /// before it (an ancestor, `after`, `pipe`, a barrier): its output
    /// would race. Order them, or read it with `reads_latest`.
    #[error(
        "part \"{reader}\" at {reader_coord} reads \"{part}\" at {part_coord}, which is not ordered \
         before it: order them (after, pipe) or declare a latest-completed read (reads_latest)"
    )]
    UnorderedRead {
        /// The reading part.
        reader: String,
        /// Its coordinate.
        reader_coord: Coord,
        /// The part it reads.
        part: String,
        /// That part's coordinate.
        part_coord: Coord,
    },
    /// A part whose output stays in this process (made with
    /// [`CyclePart::local`](crate::CyclePart::local)) feeds a part placed
    /// in a worker process.
    #[error(
        "part \"{part}\" at {coord} makes a value that cannot leave this process, but its output \
         feeds \"{reader}\" at {reader_coord}, placed in a worker process"
    )]
    LocalOutputCrossesProcess {
        /// The part making the local value.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// The process part that would receive it.
        reader: String,
        /// That part's coordinate.
        reader_coord: Coord,
    },
    /// A cycle needs at least one part.
    #[error("cycle \"{name}\" has no parts")]
    Empty {
        /// The cycle's name.
        name: String,
    },
    /// A cycle or part name clashed in the cycle registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Levels and positions start at 1.
    #[error("cannot place at {coord}: levels and positions start at 1")]
    InvalidCoord {
        /// The coordinate.
        coord: Coord,
    },
    /// A part takes its input from at most one pipe.
    #[error(
        "part \"{name}\" at {coord} already receives a pipe from \"{first}\"; it cannot also take one from \"{second}\""
    )]
    SecondPipe {
        /// The receiving part.
        name: String,
        /// Its coordinate.
        coord: Coord,
        /// The part already piped into it.
        first: String,
        /// The part that was to be piped into it.
        second: String,
    },
    /// A fallback error mode without a fallback value.
    #[error(
        "part \"{name}\" at {coord} uses {mode} but has no fallback value (set one with .fallback(value))"
    )]
    MissingFallback {
        /// The part.
        name: String,
        /// Its coordinate.
        coord: Coord,
        /// The error mode.
        mode: ErrorMode,
    },
    /// A part placed in a process cannot leave this one.
    #[error(
        "part \"{name}\" at {coord} is placed in a process but is {what}, which cannot leave this process; use a registered function (#[suitkaise::function]) with CyclePart::function"
    )]
    LocalOnlyInProcess {
        /// The part.
        name: String,
        /// Its coordinate.
        coord: Coord,
        /// What it is: a local closure (SkLambda) or a context closure.
        what: String,
    },
    /// The cycle has more nodes (parts and level barriers) than a plan
    /// can number.
    #[error("cycle \"{name}\" has {nodes} nodes (parts and level barriers); at most {max} fit")]
    TooLarge {
        /// The cycle.
        name: String,
        /// Its parts and level barriers.
        nodes: usize,
        /// The most a cycle can have.
        max: usize,
    },
}

/// Why a part's input or another part's output could not be read as
/// asked.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ReadError {
    /// The cycle has no part of that name.
    #[error("{reader} reads \"{part}\", but the cycle has no part of that name")]
    Unknown {
        /// Who read: `part "x"` (or `the report`).
        reader: String,
        /// The name it asked for.
        part: String,
    },
    /// The part did not declare the read (its input part needs none).
    #[error(
        "{reader} reads \"{part}\" without declaring it: add .reads([\"{part}\"]) (a part \
         ordered before it) or .reads_latest([\"{part}\"]) to the reader"
    )]
    Undeclared {
        /// Who read: `part "x"` (or `the report`).
        reader: String,
        /// The part it read.
        part: String,
    },
    /// The part read has no output to give (it failed, was skipped, or —
    /// for a latest-completed read — has not completed yet).
    #[error("{reader} reads \"{part}\", which has no output ({state})")]
    NoOutput {
        /// Who read: `part "x"` (or `the report`).
        reader: String,
        /// The part it read.
        part: String,
        /// What became of it: its end state, or `not run yet`.
        state: String,
    },
    /// The part has no input value (a root, or its input is a propagated
    /// error).
    #[error("{reader} has no input value ({why})")]
    NoInput {
        /// Who read: `part "x"` (or `the report`).
        reader: String,
        /// Why: `no input part` or the propagated error.
        why: String,
    },
    /// The value is of another type (or its bytes do not decode as it).
    #[error("{what} is a `{found}`, not a `{expected}`")]
    Type {
        /// What was read: `the input of part "x"` or `the output of part "y"`.
        what: String,
        /// The type asked for (short name: `u64`, `Vec<String>`).
        expected: String,
        /// The value's type (short name).
        found: String,
    },
    /// The run's store has no value under the key.
    #[error("the store has no value under \"{key}\"")]
    NotInStore {
        /// The key.
        key: String,
    },
    /// The value exists only in the run's process (made by a
    /// [`CyclePart::local`](crate::CyclePart::local) part or set with
    /// [`Store::set_local`](crate::Store::set_local)): a part in a worker
    /// process cannot have it.
    #[error("{what} exists only in the run's process; a part in a worker process cannot read it")]
    LocalOnly {
        /// What was read.
        what: String,
    },
    /// [`current_part`](crate::current_part) was called outside a part's
    /// code (not from the thread running a part).
    #[error("not called from a part's code: only the thread running a part can see its run")]
    NotInPart,
    /// A part in a worker process could not reach its run (the channel
    /// to the parent failed, or the call was not made by a cycle).
    #[error("cannot reach the run: {why}")]
    Unreachable {
        /// Why.
        why: String,
    },
}

/// A type name without its module paths: `Vec<String>` for
/// `alloc::vec::Vec<alloc::string::String>`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(token.rsplit("::").next().unwrap_or(token));
        token.clear();
    };
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Why a run could not start or did not end cleanly.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The thread pool or a component thread could not be started.
    #[error("cycle \"{cycle}\": cannot start {what}")]
    Start {
        /// The cycle.
        cycle: String,
        /// What could not start.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The Ctrl-C handler could not be installed.
    #[error("cannot install the Ctrl-C handler")]
    CtrlC(#[source] std::io::Error),
    /// A part failed under instant fail and stopped the run.
    #[error("cycle \"{cycle}\" stopped in iteration {iteration}")]
    InstantFail {
        /// The cycle.
        cycle: String,
        /// The iteration it stopped in.
        iteration: u64,
        /// The part's error.
        #[source]
        source: std::sync::Arc<PartError>,
    },
    /// The cycle is already running.
    #[error("cycle \"{cycle}\" is already running")]
    AlreadyRunning {
        /// The cycle.
        cycle: String,
    },
    /// The run's journal could not be opened, refused the run (another
    /// plan, a damaged file, a live run holding it) or stopped recording.
    #[error("cycle \"{cycle}\": the run's journal failed")]
    Journal {
        /// The cycle.
        cycle: String,
        /// What the journal said (boxed: it names a file and a cause,
        /// and keeps every other `RunError` small).
        #[source]
        source: Box<sk_journal::JournalError>,
    },
    /// A journaled run was asked of a cycle with a part whose output
    /// cannot be recorded (not serializable); mark it
    /// [`recompute_on_resume`](crate::CyclePart::recompute_on_resume) to
    /// run it again on resume instead.
    #[error(
        "cycle \"{cycle}\": part \"{part}\" at {coord} has an output that cannot be journaled (not serializable); mark it recompute_on_resume"
    )]
    Unrecordable {
        /// The cycle.
        cycle: String,
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
    },
    /// [`Run::rerun_once`](crate::Run::rerun_once) named a part the cycle
    /// does not have, or one not marked [`once`](crate::CyclePart::once).
    #[error(
        "cycle \"{cycle}\": rerun_once names \"{part}\", which is not a part of the cycle marked once"
    )]
    NotOnce {
        /// The cycle.
        cycle: String,
        /// The name given.
        part: String,
    },
    /// A part is placed on a remote group (see
    /// [`CyclePart::remote`](crate::CyclePart::remote)) and the run has
    /// no [`RemoteRunner`](crate::RemoteRunner) (see
    /// [`Run::remote`](crate::Run::remote)).
    #[error(
        "cycle \"{cycle}\": part \"{part}\" is placed on remote group \"{group}\", but the run has no remote runner (Run::remote)"
    )]
    NoRemote {
        /// The cycle.
        cycle: String,
        /// The first remote part.
        part: String,
        /// Its group.
        group: String,
    },
    /// The run's remote runner could not get ready for the run (e.g. its
    /// broker is unreachable).
    #[error("cycle \"{cycle}\": the remote runner cannot serve run \"{run}\"")]
    Remote {
        /// The cycle.
        cycle: String,
        /// The run's id.
        run: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The thread running the cycle (see
    /// [`Cycle::spawn`](crate::Cycle::spawn)) panicked outside any part.
    #[error("cycle \"{cycle}\": the run thread panicked: {message}")]
    Panicked {
        /// The cycle.
        cycle: String,
        /// The panic's message.
        message: String,
    },
}

/// The error a failed part passes downstream under
/// [`ErrorMode::Propagate`], and reports in its iteration's outcome.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// The part's function returned an error.
    #[error("part \"{part}\" at {coord} failed: {message}")]
    Failed {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// The error's message (with its sources).
        message: String,
    },
    /// The part overran its timeout.
    #[error("part \"{part}\" at {coord} timed out after {after:?}")]
    TimedOut {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// The timeout.
        after: Duration,
    },
    /// The part panicked.
    #[error("part \"{part}\" at {coord} panicked: {message}")]
    Panicked {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// The panic message.
        message: String,
    },
    /// The part was marked [`once`](crate::CyclePart::once), recorded its
    /// intent to run, and the run was killed before its end was recorded:
    /// whether its effect happened is unknown, so it was not run again.
    #[error(
        "part \"{part}\" at {coord}: outcome unknown (it had started when the run was killed, and runs at most once)"
    )]
    OutcomeUnknown {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
    },
    /// A failure recorded in the run's journal before the run was resumed,
    /// replayed (its text as it was recorded).
    #[error("{text}")]
    Recorded {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// The error's text as recorded.
        text: String,
    },
    /// A validator rejected the part's input or output.
    #[error("part \"{part}\" at {coord}: {which} rejected: {reason}")]
    Invalid {
        /// The part.
        part: String,
        /// Its coordinate.
        coord: Coord,
        /// `input` or `output`.
        which: &'static str,
        /// The validator's message.
        reason: String,
    },
}

/// Why a step of a part ([`PartContext::step`](crate::PartContext::step))
/// failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step's work returned an error (nothing was recorded: the next
    /// attempt runs it again).
    #[error("part \"{part}\", step \"{step}\": failed")]
    Failed {
        /// The part.
        part: String,
        /// The step.
        step: String,
        /// The work's error.
        #[source]
        source: sk_core::BoxError,
    },
    /// The step's value could not be recorded, or its recorded value
    /// read back (the journal failed, or the run could not be reached
    /// from a worker process).
    #[error("part \"{part}\", step \"{step}\": cannot be journaled: {why}")]
    Journal {
        /// The part.
        part: String,
        /// The step.
        step: String,
        /// What went wrong.
        why: String,
    },
    /// The step's value does not serialize, or its recorded value is not
    /// a `T` (the code changed since it was recorded).
    #[error("part \"{part}\", step \"{step}\": its value cannot be recorded or read back")]
    Value {
        /// The part.
        part: String,
        /// The step.
        step: String,
        /// The format's error.
        #[source]
        source: sk_cereal::CerealError,
    },
}

/// `value` seen as a `T` by `view` (decoding, or a plain downcast), or
/// the typed error saying what `what` is instead.
pub(crate) fn view_as<T>(
    value: &Value,
    view: fn(&Value) -> Option<&T>,
    what: impl FnOnce() -> String,
) -> Result<&T, ReadError> {
    view(value).ok_or_else(|| ReadError::Type {
        what: what(),
        expected: short_type_name(std::any::type_name::<T>()),
        found: short_type_name(value.type_name()),
    })
}

#[cfg(test)]
mod chain_tests {
    use sk_testkit::assert_chain_says_each_thing_once as says_once;

    use super::*;

    #[test]
    fn every_error_with_a_source_says_it_once() {
        says_once(&RunError::Start {
            cycle: "c".to_owned(),
            what: "the thread pool".to_owned(),
            source: std::io::Error::other("no more threads"),
        });
        says_once(&RunError::InstantFail {
            cycle: "c".to_owned(),
            iteration: 3,
            source: std::sync::Arc::new(PartError::Failed {
                part: "p".to_owned(),
                coord: crate::Coord::new(1, 1),
                message: "disk on fire".to_owned(),
            }),
        });
        says_once(&BuildError::Registry(sk_reg::RegistryError::NotFound {
            registry: "cycles".to_owned(),
            name: "c".to_owned(),
        }));
    }
}
