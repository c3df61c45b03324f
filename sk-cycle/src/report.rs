//! What a run reports: each iteration's part states and outputs, and the
//! run's totals and timing stats.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sk_core::{StatsSummary, Value};

use crate::coord::Coord;
use crate::error::PartError;
use crate::error::ReadError;
use crate::mode::PartState;
use crate::trace::Trace;

/// The end of one iteration of one lane: every part's state, output and
/// error.
#[derive(Clone, Debug)]
pub struct IterationReport {
    pub(crate) lane: u32,
    pub(crate) iteration: u64,
    pub(crate) duration: Duration,
    pub(crate) error_state: bool,
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) coords: Arc<[Coord]>,
    /// Part ids by name and coordinate (the cycle's own maps).
    pub(crate) by_name: Arc<crate::names::NameIndex>,
    pub(crate) by_coord: Arc<crate::coords::CoordIndex>,
    /// Per part id; `None` for parts of other lanes.
    pub(crate) states: Vec<Option<PartState>>,
    pub(crate) outputs: Vec<Option<Arc<Value>>>,
    pub(crate) errors: Vec<Option<Arc<PartError>>>,
    /// Each part's children in the tree (see `Plan::tree_children`).
    pub(crate) tree: Arc<crate::plan::TreeChildren>,
}

impl IterationReport {
    fn id_of(&self, name: &str) -> Option<usize> {
        self.by_name
            .get_among(name, &self.names)
            .map(|id| id as usize)
    }

    fn id_at(&self, coord: Coord) -> Option<usize> {
        self.by_coord.get(coord).map(|id| id as usize)
    }

    /// The iteration number (of its lane), from 1.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The lane (0 unless independent sync made more).
    ///
    /// Lanes are numbered by a depth-first walk of the tree from the root
    /// that takes a node's last child first: an independent split numbers
    /// its branches' lanes in position order when the walk reaches it
    /// (and a cycle-wide independent sync gives each part but the root a
    /// lane when the walk reaches the part). The numbers follow from the
    /// tree alone, not from the order its parts were placed in, so a cycle
    /// of the same tree always numbers them the same, which a journaled
    /// run's resume relies on.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    /// How long the iteration took: from the end of the one before it
    /// (the lane's bookkeeping between the two counts towards this one;
    /// one clock read per iteration), or from its own start after a pause
    /// ([`Run::interval`](crate::Run::interval)), an observer or predicate
    /// call, or in a durable run. Where short iterations are timed in
    /// batches (see [`Run::stats`](crate::Run::stats)), the mean of its
    /// batch; the last iteration of [`Run::times`](crate::Run::times) is
    /// timed on its own.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether the iteration ended in error state (a failure under an error
    /// mode that declares one).
    pub fn is_error(&self) -> bool {
        self.error_state
    }

    /// The end state of part `name` (`None` for an unknown part or one of
    /// another lane).
    pub fn state_of(&self, name: &str) -> Option<PartState> {
        self.states[self.id_of(name)?]
    }

    /// The end state of the part at `coord`.
    pub fn state_at(&self, coord: impl Into<Coord>) -> Option<PartState> {
        self.states[self.id_at(coord.into())?]
    }

    /// The output of part `name`, if it succeeded (a fallback counts).
    pub fn output_of(&self, name: &str) -> Option<&Value> {
        self.outputs[self.id_of(name)?].as_deref()
    }

    /// The outputs of the parts below `name` in the tree (its subtree,
    /// without it) that completed this iteration as a `T` and for which
    /// `keep(part, value)` holds, in coordinate order — asking a part for
    /// its descendants' data. Empty for an unknown name.
    pub fn descendants_where<T, F>(&self, name: &str, keep: F) -> Vec<(&str, &T)>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
        F: Fn(&str, &T) -> bool,
    {
        let Some(id) = self.id_of(name) else {
            return Vec::new();
        };
        crate::plan::subtree(&self.tree, id as u32)
            .into_iter()
            .filter_map(|part| {
                let value = self.outputs[part as usize].as_ref()?.get::<T>()?;
                let name = &*self.names[part as usize];
                keep(name, value).then_some((name, value))
            })
            .collect()
    }

    /// The output of part `name` as a `T`.
    pub fn output_as<T: 'static>(&self, name: &str) -> Option<&T> {
        self.output_of(name)?.downcast_ref()
    }

    /// The output of part `name` as a `T`, decoded (once) when it came
    /// from a part placed in a process.
    pub fn output_get<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Option<&T> {
        self.output_of(name)?.get()
    }

    /// The output of part `name` as a `T` — made on a thread or in a
    /// worker process alike — or why not.
    ///
    /// # Errors
    ///
    /// [`ReadError::Unknown`] for a name the cycle does not have,
    /// [`ReadError::NoOutput`] when the part has none this iteration (with
    /// its end state), [`ReadError::Type`] naming both types by short name.
    pub fn output<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<&T, ReadError> {
        let reader = "the report";
        let id = self.id_of(name).ok_or_else(|| ReadError::Unknown {
            reader: reader.to_owned(),
            part: name.to_owned(),
        })?;
        let value = self.outputs[id]
            .as_deref()
            .ok_or_else(|| ReadError::NoOutput {
                reader: reader.to_owned(),
                part: name.to_owned(),
                state: self.states[id].map_or_else(|| "not run".to_owned(), |s| s.to_string()),
            })?;
        crate::error::view_as(value, Value::get::<T>, || {
            format!("the output of part \"{name}\"")
        })
    }

    /// The output of the part at `coord`.
    pub fn output_at(&self, coord: impl Into<Coord>) -> Option<&Value> {
        self.outputs[self.id_at(coord.into())?].as_deref()
    }

    /// The error part `name` ended with, if any.
    pub fn error_of(&self, name: &str) -> Option<&PartError> {
        self.errors[self.id_of(name)?].as_deref()
    }

    /// Every part of the lane with its coordinate and state, in coordinate
    /// order.
    pub fn states(&self) -> impl Iterator<Item = (&str, Coord, PartState)> {
        self.states
            .iter()
            .enumerate()
            .filter_map(|(id, s)| s.map(|s| (&*self.names[id], self.coords[id], s)))
    }

    /// The errors of this iteration, by part.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &PartError)> {
        self.errors
            .iter()
            .enumerate()
            .filter_map(|(id, e)| e.as_deref().map(|e| (&*self.names[id], e)))
    }
}

/// Why a run ended.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It ran the iterations it was asked to.
    Completed,
    /// Its `until` predicate held.
    Predicate,
    /// Its stop handle (or Ctrl-C) asked it to stop.
    Stopped,
    /// A part failed under instant fail.
    InstantFail,
}

/// How many iterations of a part ended in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StateCounts {
    /// [`PartState::Succeeded`].
    pub succeeded: u64,
    /// [`PartState::SucceededWithFallback`].
    pub succeeded_with_fallback: u64,
    /// [`PartState::Failed`].
    pub failed: u64,
    /// [`PartState::UpstreamFailed`].
    pub upstream_failed: u64,
    /// [`PartState::Skipped`].
    pub skipped: u64,
    /// [`PartState::NotTaken`].
    pub not_taken: u64,
    /// [`PartState::TimedOut`].
    pub timed_out: u64,
    /// [`PartState::Cancelled`].
    pub cancelled: u64,
}

impl StateCounts {
    /// The count of each state as `count` gives it.
    pub(crate) fn from_fn(count: impl Fn(PartState) -> u64) -> Self {
        StateCounts {
            succeeded: count(PartState::Succeeded),
            succeeded_with_fallback: count(PartState::SucceededWithFallback),
            failed: count(PartState::Failed),
            upstream_failed: count(PartState::UpstreamFailed),
            skipped: count(PartState::Skipped),
            not_taken: count(PartState::NotTaken),
            timed_out: count(PartState::TimedOut),
            cancelled: count(PartState::Cancelled),
        }
    }

    /// How many iterations ended in `state`.
    pub fn get(&self, state: PartState) -> u64 {
        match state {
            PartState::Succeeded => self.succeeded,
            PartState::SucceededWithFallback => self.succeeded_with_fallback,
            PartState::Failed => self.failed,
            PartState::UpstreamFailed => self.upstream_failed,
            PartState::Skipped => self.skipped,
            PartState::NotTaken => self.not_taken,
            PartState::TimedOut => self.timed_out,
            PartState::Cancelled => self.cancelled,
        }
    }

    /// Iterations counted, in every state.
    pub fn total(&self) -> u64 {
        PartState::ALL.iter().map(|&s| self.get(s)).sum()
    }
}

/// Stats of one part over a run (serializable, e.g. to JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PartStats {
    /// The part (shared with the cycle: a report allocates no names).
    pub name: Arc<str>,
    /// Its coordinate.
    pub coord: Coord,
    /// How many iterations ended in each state.
    pub states: StateCounts,
    /// Attempts made beyond each iteration's first (under
    /// [`ErrorMode::Retry`](crate::ErrorMode::Retry)): every run of the
    /// part is counted, `runs` + `retries` attempts in all.
    pub retries: u64,
    /// Its execution times (empty when stats were off), sampled: a run
    /// times every part in its first iterations (as many as make at most
    /// 4096 part runs: none in a cycle larger than that), then each part's
    /// runs at pseudo-random gaps that keep timing to about 1/32 of the
    /// part's time: every run of a part of 3.2 µs or more, about one in
    /// 160 of a 20 ns one, at most a mean gap of 256 (its first timed run
    /// past the exact ones comes within 16 of its runs; in a lane of more
    /// than 4096 nodes, parts and level barriers, a cycle's next run goes
    /// on from where the last one left off, so a run of a few iterations
    /// may time few of its parts, and a part not timed in a run has
    /// `timing.count` 0). Each timed run counts for the runs since the
    /// part's last timed one (see
    /// [`WindowStats::record_n`](sk_core::WindowStats::record_n)), so the
    /// count, total, mean, stdev and percentiles estimate every run, also
    /// when its run times change during the run; `min` and `max` are of
    /// the timed runs (a run that times out is timed only when its start
    /// chose to time it). `timing.count` is every run up to its last timed
    /// one; [`PartStats::states`] counts every run exactly. With the trace
    /// on, every run is timed. Timings are gathered per thread and merged
    /// a few hundred at a time and when read, so the percentiles' window
    /// of recent runs is recent up to that.
    pub timing: StatsSummary,
}

impl PartStats {
    /// How many iterations ended in `state`.
    pub fn count(&self, state: PartState) -> u64 {
        self.states.get(state)
    }
}

/// The timings of the parts timed in a run, by part id (a large cycle
/// times few of its parts each run; see `engine::samples`).
pub(crate) type PartTimings = crate::FastMap<u32, sk_core::WindowStats>;

/// What a run counted per part, made into [`PartStats`] when the stats
/// are first read: a large cycle's report costs a few bytes a part, not a
/// `PartStats` each (a quarter of a kilobyte, most of a run's fixed cost
/// when made every run).
#[derive(Clone, Default)]
pub(crate) struct PartCounts {
    pub(crate) names: Arc<[Arc<str>]>,
    pub(crate) coords: Arc<[Coord]>,
    /// Iterations each part succeeded in.
    pub(crate) succeeded: Box<[u64]>,
    /// The parts that ended otherwise or retried, in id order: their
    /// counts of every state, and their retries.
    pub(crate) unusual: Vec<(u32, StateCounts, u64)>,
    /// The timings of the parts timed, by id; empty when stats were off.
    pub(crate) timings: PartTimings,
}

impl fmt::Debug for PartCounts {
    /// Counts, not every part's timing window.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartCounts")
            .field("parts", &self.names.len())
            .field("unusual", &self.unusual.len())
            .field("timed", &!self.timings.is_empty())
            .finish()
    }
}

impl PartCounts {
    /// Every part's stats.
    pub(crate) fn part_stats(&self) -> Vec<PartStats> {
        let mut unusual = self.unusual.iter().peekable();
        (0..self.names.len())
            .map(|id| {
                let (states, retries) = match unusual.next_if(|u| u.0 as usize == id) {
                    Some(&(_, states, retries)) => (states, retries),
                    None => {
                        let succeeded = self.succeeded.get(id).copied().unwrap_or(0);
                        let states = StateCounts {
                            succeeded,
                            ..StateCounts::default()
                        };
                        (states, 0)
                    }
                };
                PartStats {
                    name: Arc::clone(&self.names[id]),
                    coord: self.coords[id],
                    states,
                    retries,
                    timing: self
                        .timings
                        .get(&(id as u32))
                        .map(sk_core::WindowStats::summary)
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// A run's stats, made on first read (see [`PartCounts`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct LazyStats {
    pub(crate) iterations: StatsSummary,
    pub(crate) counts: PartCounts,
    made: std::sync::OnceLock<CycleStats>,
}

impl LazyStats {
    pub(crate) fn new(iterations: StatsSummary, counts: PartCounts) -> Self {
        LazyStats {
            iterations,
            counts,
            made: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &CycleStats {
        self.made.get_or_init(|| CycleStats {
            iterations: self.iterations,
            parts: self.counts.part_stats(),
        })
    }
}

/// Timing stats of a run: per iteration and per part (serializable).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CycleStats {
    /// Iteration durations of the first lane (short iterations timed in
    /// batches, see [`Run::stats`](crate::Run::stats)).
    pub iterations: StatsSummary,
    /// Per part, in coordinate order.
    pub parts: Vec<PartStats>,
}

impl fmt::Display for CycleStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "iterations: {}", self.iterations)?;
        let width = self.parts.iter().map(|p| p.name.len()).max().unwrap_or(4);
        for p in &self.parts {
            let ended: Vec<String> = PartState::ALL
                .iter()
                .filter(|&&s| p.count(s) > 0)
                .map(|&s| format!("{} {}", p.count(s), s))
                .collect();
            writeln!(
                f,
                "  {:<width$}  {:>5}  {}  [{}]",
                p.name,
                p.coord.to_string(),
                p.timing,
                ended.join(", "),
            )?;
        }
        Ok(())
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub(crate) cycle: String,
    pub(crate) iterations: Vec<u64>,
    pub(crate) error_iterations: u64,
    pub(crate) reason: StopReason,
    pub(crate) instant_fail: Option<Arc<PartError>>,
    pub(crate) last: Option<IterationReport>,
    pub(crate) stats: LazyStats,
    pub(crate) trace: Option<Trace>,
    pub(crate) wall: Duration,
    pub(crate) resumed: Option<crate::durable::Resumed>,
}

impl RunReport {
    /// The cycle's name.
    pub fn cycle(&self) -> &str {
        &self.cycle
    }

    /// Where a journaled run resumed (`None`: it started fresh, or keeps
    /// no journal). See [`Run::journal`](crate::Run::journal).
    pub fn resumed(&self) -> Option<&crate::durable::Resumed> {
        self.resumed.as_ref()
    }

    /// Iterations run by the first lane (in this call: a resumed run's
    /// earlier iterations are in [`RunReport::resumed`]).
    pub fn iterations(&self) -> u64 {
        self.iterations.first().copied().unwrap_or(0)
    }

    /// Iterations run by each lane.
    pub fn lane_iterations(&self) -> &[u64] {
        &self.iterations
    }

    /// Iterations that ended in error state (all lanes).
    pub fn error_iterations(&self) -> u64 {
        self.error_iterations
    }

    /// Why the run ended.
    pub fn stop_reason(&self) -> StopReason {
        self.reason
    }

    /// Whether the cycle finished in error state: an instant fail, or a last
    /// iteration in error state.
    pub fn is_error(&self) -> bool {
        self.instant_fail.is_some() || self.last.as_ref().is_some_and(|l| l.is_error())
    }

    /// The error that stopped the run under instant fail.
    pub fn instant_fail(&self) -> Option<&PartError> {
        self.instant_fail.as_deref()
    }

    /// The last iteration of the first lane.
    pub fn last(&self) -> Option<&IterationReport> {
        self.last.as_ref()
    }

    /// Timing stats (and per-part end states), made on first call.
    pub fn stats(&self) -> &CycleStats {
        self.stats.get()
    }

    /// The trace, when the run was traced.
    pub fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }

    /// Wall-clock time of the whole run.
    pub fn wall_time(&self) -> Duration {
        self.wall
    }
}
