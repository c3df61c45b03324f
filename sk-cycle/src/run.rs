//! Running a cycle: once, N times, until a predicate, or continuously; in
//! the foreground or on a background thread with a stop handle.

mod clock;

use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sk_core::{StopToken, TimingStats};
use sk_journal::Durability;

use crate::cycle::Cycle;
use crate::durable::{Durable, JournalSetup, Recorded, Resumed};
use crate::engine::{Engine, EngineOptions, EngineSetup, Runtime};
use crate::error::RunError;
use crate::report::{CycleStats, IterationReport, RunReport, StopReason};
use crate::store::Store;
use crate::trace::Trace;
use clock::IterationClock;

type Predicate = Arc<dyn Fn(&IterationReport) -> bool + Send + Sync>;
type Observer = Arc<dyn Fn(&IterationReport) + Send + Sync>;
type ResumeObserver = Arc<dyn Fn(&Resumed) + Send + Sync>;

#[derive(Clone)]
enum Mode {
    Times(u64),
    Until(Predicate),
    Continuous,
}

/// How to run a cycle: how many iterations, how fast, on what threads,
/// what to record.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_cycle::Run;
/// let run = Run::times(10).interval(Duration::from_millis(5)).threads(2).trace(true);
/// # let _ = run;
/// ```
#[derive(Clone)]
#[must_use = "a Run does nothing until passed to Cycle::run"]
pub struct Run {
    mode: Mode,
    interval: Option<Duration>,
    threads: Option<usize>,
    pool: Option<Arc<rayon::ThreadPool>>,
    ctrl_c: bool,
    stats: bool,
    trace: bool,
    trace_capacity: usize,
    stop: Option<StopToken>,
    observer: Option<Observer>,
    store: Option<Arc<Store>>,
    backend: Option<sk_process::Backend>,
    process_workers: usize,
    /// Where a spawned run shows its runtime to its handle (live stats).
    live: Option<Arc<LiveSlot>>,
    journal: JournalSetup,
    on_resume: Option<ResumeObserver>,
    remote: Option<Arc<dyn crate::RemoteRunner>>,
}

/// The running runtime of a spawned run, for [`RunHandle::stats`].
type LiveSlot = parking_lot::Mutex<Option<std::sync::Weak<Runtime>>>;

impl Default for Run {
    /// A continuous run.
    fn default() -> Self {
        Run {
            mode: Mode::Continuous,
            interval: None,
            threads: None,
            pool: None,
            ctrl_c: false,
            stats: true,
            trace: false,
            trace_capacity: crate::trace::DEFAULT_TRACE_CAPACITY,
            stop: None,
            observer: None,
            store: None,
            backend: None,
            process_workers: 2,
            live: None,
            journal: JournalSetup::default(),
            on_resume: None,
            remote: None,
        }
    }
}

impl Run {
    /// One iteration.
    pub fn once() -> Self {
        Run::times(1)
    }

    /// `n` iterations (per lane, under independent sync).
    pub fn times(n: u64) -> Self {
        Run {
            mode: Mode::Times(n),
            ..Run::default()
        }
    }

    /// Iterations until `done` holds for one (checked after each).
    pub fn until<F>(done: F) -> Self
    where
        F: Fn(&IterationReport) -> bool + Send + Sync + 'static,
    {
        Run {
            mode: Mode::Until(Arc::new(done)),
            ..Run::default()
        }
    }

    /// Iterations until stopped (by a stop token, a [`RunHandle`], or
    /// Ctrl-C with [`Run::stop_on_ctrl_c`]).
    pub fn continuous() -> Self {
        Run::default()
    }

    /// Starts iterations at least `interval` apart.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Runs on a new pool of `n` threads (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }

    /// Runs on an existing rayon pool (so repeated runs share one).
    ///
    /// The engine nests up to 48 `rayon::join`s when parts fork: a pool
    /// thread needs about 0.25 MiB of stack for that in an optimized
    /// build and 1 MiB in an unoptimized one, plus what the parts
    /// themselves use (rayon's default is 2 MiB; the engine's own pools
    /// have 16 MiB).
    pub fn pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Stops gracefully, at the next iteration boundary, on Ctrl-C (or
    /// SIGTERM); a second Ctrl-C during that stop ends the program at
    /// once. The handling lasts as long as the run: afterwards Ctrl-C does
    /// what it did before (ends the program, or runs the application's
    /// own handler), and a handler the application had is also called
    /// while the run watches (see [`sk_process::stop_on_interrupt`]).
    pub fn stop_on_ctrl_c(mut self) -> Self {
        self.ctrl_c = true;
        self
    }

    /// Records per-part timing stats (default on): every part run of the
    /// first iterations (at most 4096 part runs), then a share of each
    /// part's runs that keeps timing to about 1/32 of its time (every run
    /// of a part that takes 3.2 µs or more, fewer of a shorter one), each
    /// timed run standing for the runs since the last (end-state counts
    /// stay exact; see [`PartStats::timing`](crate::PartStats::timing)),
    /// and every iteration: short ones in batches (one clock read for as
    /// many as take about 3.2 µs, at most 256, each counted as the
    /// batch's mean: the count and total stay exact, min, max and
    /// percentiles are of batch means; the last iteration of
    /// [`Run::times`] on its own) unless a trace, a report observer, an
    /// [`until`](Run::until) predicate, an interval or a journal reads the
    /// clock each iteration anyway. Off saves the sampling and its clock
    /// reads.
    pub fn stats(mut self, on: bool) -> Self {
        self.stats = on;
        self
    }

    /// Records a trace of every part execution and iteration (default
    /// off), keeping the latest [`DEFAULT_TRACE_CAPACITY`](crate::DEFAULT_TRACE_CAPACITY)
    /// events (see [`Run::trace_capacity`]).
    pub fn trace(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// How many trace events the run keeps: the latest `events` (at
    /// least 1), so a continuous run's trace does not grow without end;
    /// [`Trace::dropped`] counts the ones let go.
    pub fn trace_capacity(mut self, events: usize) -> Self {
        self.trace_capacity = events.max(1);
        self
    }

    /// Stops gracefully, at the next iteration boundary, when `token` is
    /// stopped.
    pub fn stop_token(mut self, token: StopToken) -> Self {
        self.stop = Some(token);
        self
    }

    /// Calls `observer` after every iteration (e.g. to show progress).
    pub fn on_iteration<F>(mut self, observer: F) -> Self
    where
        F: Fn(&IterationReport) + Send + Sync + 'static,
    {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Runs process parts on `backend` (default: `SK_SPAWN_BACKEND`, else
    /// worker processes).
    pub fn backend(mut self, backend: sk_process::Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// How many pooled worker processes serve parts placed with
    /// [`CyclePart::in_process`](crate::CyclePart::in_process) (default 2).
    pub fn process_workers(mut self, n: usize) -> Self {
        self.process_workers = n.max(1);
        self
    }

    /// Sends the parts placed with [`CyclePart::remote`](crate::CyclePart::remote)
    /// to `runner` (e.g. `sk_remote::Coordinator`, on NATS JetStream).
    /// The run's id for the runner is its journal's run id in a journaled
    /// run (so a resumed run is the same run to the workers), else one
    /// made for this run.
    pub fn remote(mut self, runner: Arc<dyn crate::RemoteRunner>) -> Self {
        self.remote = Some(runner);
        self
    }

    /// Uses `store` as the run's shared store (to seed it or read it after).
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Makes the run durable: it records every part's end in the
    /// journal at `path` (an embedded SQLite database, created if there
    /// is none), so that, killed at any moment, the same run started
    /// again resumes where it was.
    ///
    /// - **Recorded**, per (iteration, part): the end state, attempts,
    ///   error text, the output in the external format (see
    ///   [`sk_cereal::External`]), and the part's writes to the run's
    ///   [`Store`] in the same transaction. Records are committed by one
    ///   writer thread, in order, in batches: a part's record is never
    ///   durable without the records of the parts before it.
    /// - **Resumed**: a run started with the same id
    ///   ([`Run::run_id`], default: the cycle's name) continues its
    ///   interrupted iteration — parts with a recorded end are not run
    ///   again (their recorded outputs feed their dependents), parts that
    ///   had started and not ended run again — then goes on;
    ///   [`Run::times`] counts the iterations done before. A run with
    ///   nothing left to do does nothing. The store is restored (values
    ///   set with [`Store::set_local`] are not recorded; keys removed
    ///   stay removed). Recorded failures of the interrupted iteration
    ///   (failed, timed out, and the upstream-failed or skipped parts
    ///   after them) are not replayed: those parts run again, and so does
    ///   everything after them (what they feed may come out otherwise).
    ///   So an iteration stopped by an instant fail, which is not counted
    ///   as done, is tried again from its failure on the next start.
    ///   Replayed outputs and restored store values hold their recorded
    ///   bytes, as values from a worker process do: typed reads
    ///   (`output`, `output_get`, `get`) decode them; reads of live
    ///   values only (`output_as`, `get_local`) do not see them.
    /// - **Refused**: a journal holding this run id with another plan
    ///   (parts, places, modes, edges) is [`RunError::Journal`] naming
    ///   the first difference; so is a damaged, foreign or newer journal,
    ///   or one a live run holds. A part whose output cannot be
    ///   serialized is [`RunError::Unrecordable`] unless marked
    ///   [`recompute_on_resume`](crate::CyclePart::recompute_on_resume).
    ///
    /// Parts in worker processes are recorded the same way (by this
    /// process; a worker that dies mid-part leaves no record: the part
    /// runs again on resume), with their writes to the run's store.
    /// A store write made on a thread a part starts (or by an observer)
    /// is recorded with the next part end recorded after it, or at the
    /// iteration's end.
    /// [`GlobalStorage`](sk_reg::GlobalStorage) is not journaled: it
    /// belongs to the process, not to the run, and a resumed run finds it
    /// as the new process has it. A key of the run's store that several
    /// parts write at the same time is recorded with the value it has as
    /// each of them ends; give such parts keys of their own (or make their
    /// writes idempotent) when a resume must count exactly. See also [`CyclePart::once`](crate::CyclePart::once)
    /// for effects that must not happen twice, and
    /// [`PartContext::step`](crate::PartContext::step) for recorded steps
    /// inside a part.
    pub fn journal(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.journal.path = Some(path.into());
        self
    }

    /// The id a journaled run is recorded under (default: the cycle's
    /// name): the same id resumes it, another starts a new run in the
    /// same journal.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.journal.run = Some(id.into());
        self
    }

    /// What a journaled run's commits survive (default: the death of the
    /// process; [`Durability::PowerLoss`] waits for the disk).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.journal.durability = durability;
        self
    }

    /// How many ended iterations a journaled run keeps records of
    /// (default 100): a continuous run's journal stops growing.
    pub fn keep_iterations(mut self, iterations: u64) -> Self {
        self.journal.keep = Some(iterations);
        self
    }

    /// Calls `observer` (on the journal's writer thread: keep it quick)
    /// after each part's end is committed to the journal — e.g. to
    /// acknowledge the work upstream only once it is durable. Ends are
    /// committed in batches gathered for up to 5 ms, so a kill loses at
    /// most the ends of that window (their parts run again on resume).
    pub fn on_recorded<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Recorded) + Send + Sync + 'static,
    {
        self.journal.on_recorded = Some(Arc::new(observer));
        self
    }

    /// On resume, runs again the parts named (each marked
    /// [`once`](crate::CyclePart::once)) instead of failing them as
    /// outcome unknown or replaying their recorded failure in the
    /// interrupted iteration — for after the caller has checked that
    /// their effect did not happen (otherwise such a part under instant
    /// fail would stop every start of the run). A name that is not a once
    /// part of the cycle is [`RunError::NotOnce`].
    pub fn rerun_once<I, S>(mut self, parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.journal.rerun_once = parts.into_iter().map(Into::into).collect();
        self
    }

    /// Calls `observer` before a journaled run resumes (not for a fresh
    /// run), with where it picks up.
    pub fn on_resume<F>(mut self, observer: F) -> Self
    where
        F: Fn(&Resumed) + Send + Sync + 'static,
    {
        self.on_resume = Some(Arc::new(observer));
        self
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            Mode::Times(n) => format!("times({n})"),
            Mode::Until(_) => "until(..)".to_owned(),
            Mode::Continuous => "continuous".to_owned(),
        };
        f.debug_struct("Run")
            .field("mode", &mode)
            .field("interval", &self.interval)
            .field("threads", &self.threads)
            .field("ctrl_c", &self.ctrl_c)
            .field("stats", &self.stats)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

/// A run on a background thread, made by [`Cycle::spawn`].
#[derive(Debug)]
#[must_use = "dropping a RunHandle detaches the run; call stop() and join()"]
pub struct RunHandle {
    stop: StopToken,
    thread: Option<JoinHandle<Result<RunReport, RunError>>>,
    cycle: String,
    live: Arc<LiveSlot>,
}

impl RunHandle {
    /// A snapshot of the running run's per-part stats — end states so
    /// far, retries, timings — without stopping it; `None` before it has
    /// started or after it has ended (the report has the final stats).
    /// Iteration timings are in the final report only (their summary
    /// here is empty).
    pub fn stats(&self) -> Option<CycleStats> {
        let rt = self.live.lock().as_ref()?.upgrade()?;
        Some(CycleStats {
            iterations: sk_core::StatsSummary::default(),
            parts: rt.part_counts_now().part_stats(),
        })
    }

    /// Asks the run to stop at the next iteration boundary.
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The token that stops the run.
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the run to end and returns its report.
    ///
    /// # Errors
    ///
    /// The run's own error, or [`RunError::AlreadyRunning`] if it was
    /// already joined.
    pub fn join(mut self) -> Result<RunReport, RunError> {
        let cycle = self.cycle.clone();
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|payload| {
                Err(RunError::Panicked {
                    cycle,
                    message: sk_core::panic_message(&*payload),
                })
            }),
            None => Err(RunError::AlreadyRunning { cycle }),
        }
    }
}

/// What one lane's driver loop ended with.
struct LaneOutcome {
    iterations: u64,
    errors: u64,
    reason: StopReason,
    last: Option<IterationReport>,
    timing: TimingStats,
}

impl Cycle {
    /// Runs the cycle in the calling thread until `run` says to stop.
    ///
    /// A run's per-part state (about a hundred bytes a part, and its
    /// timing stats when on) is kept by the cycle when the run ends, for
    /// the cycle's next run to reuse rather than allocate again; it holds
    /// no output or error of the run, and goes with the cycle.
    ///
    /// # Errors
    ///
    /// [`RunError::Start`] when a thread cannot be started,
    /// [`RunError::CtrlC`] when the Ctrl-C handler cannot be installed.
    /// Part failures do not make this fail: they are in the report.
    pub fn run(&self, run: Run) -> Result<RunReport, RunError> {
        let _run = tracing::info_span!("run", cycle = %self.name()).entered();
        let started = Instant::now();
        let cycle: Arc<str> = Arc::from(self.name());
        let store = run.store.clone().unwrap_or_default();
        let durable = match &run.journal.path {
            Some(path) => Some(Durable::start(
                &run.journal,
                path,
                &cycle,
                &self.plan,
                &store,
            )?),
            None => None,
        };
        let resumed = durable.as_ref().and_then(|(d, _)| d.resumed.clone());
        // The run's id to its remote runner: the journal's, else a new one.
        let remote = run.remote.clone().map(|runner| {
            let id: Arc<str> = match &durable {
                Some((d, _)) => Arc::from(d.run()),
                None => Arc::from(crate::remote::fresh_run_id(&cycle)),
            };
            (runner, id)
        });
        if let (Some(resumed), Some(observer)) = (&resumed, &run.on_resume) {
            observer(resumed);
        }
        let engine = Engine::start(
            &self.plan,
            &cycle,
            EngineSetup {
                pool: run.pool.clone(),
                threads: run.threads,
                store,
                options: EngineOptions {
                    stats: run.stats,
                    trace: run.trace,
                    trace_capacity: run.trace_capacity,
                },
                backend: run.backend,
                process_workers: run.process_workers,
                durable,
                remote,
            },
        )?;
        let rt = engine.runtime();
        if let Some(live) = &run.live {
            *live.lock() = Some(Arc::downgrade(rt));
        }
        let stop = run.stop.clone().unwrap_or_default();
        let _ctrl_c = if run.ctrl_c {
            Some(crate::ctrl_c::watch(stop.clone())?)
        } else {
            None
        };
        // Lanes stop together: when one's predicate holds, or on instant fail.
        let halt = stop.child();
        let lanes = self.plan.lanes.len();
        let outcomes: Vec<LaneOutcome> = if lanes == 1 {
            vec![rt.install(|| drive_lane(rt, 0, &run, &halt, true))]
        } else {
            let results = Mutex::new(Vec::new());
            thread::scope(|scope| {
                for lane in 0..lanes {
                    let (run, halt, results) = (&run, &halt, &results);
                    let spawned = thread::Builder::new()
                        .name(format!("sk-lane:{cycle}:{lane}"))
                        .spawn_scoped(scope, move || {
                            let outcome = drive_lane(rt, lane, run, halt, false);
                            results.lock().push((lane, outcome));
                        });
                    if spawned.is_err() {
                        halt.stop();
                    }
                }
            });
            let mut results = results.into_inner();
            results.sort_by_key(|(lane, _)| *lane);
            results.into_iter().map(|(_, o)| o).collect()
        };
        let finished = engine.finish();
        // The run has ended: its handle's live stats with it (the report
        // takes the timings).
        if let Some(live) = &run.live {
            *live.lock() = None;
        }
        let rt = finished.runtime();
        // Everything recorded is committed before the run returns.
        let journaled = rt.durable().map_or(Ok(()), Durable::finish);
        let trace = run.trace.then(|| Trace::from_log(&cycle, rt.take_trace()));
        let mut report = build_report(rt, outcomes, trace, started.elapsed());
        report.resumed = resumed;
        finished.join();
        journaled.map_err(|source| RunError::Journal {
            cycle: cycle.to_string(),
            source: Box::new(source),
        })?;
        Ok(report)
    }

    /// Runs one iteration.
    ///
    /// # Errors
    ///
    /// As [`Cycle::run`].
    pub fn run_once(&self) -> Result<RunReport, RunError> {
        self.run(Run::once())
    }

    /// Runs the cycle on a background thread; the handle stops and joins
    /// it.
    ///
    /// # Errors
    ///
    /// [`RunError::Start`] when the thread cannot be started.
    pub fn spawn(&self, run: Run) -> Result<RunHandle, RunError> {
        let stop = run.stop.clone().unwrap_or_default();
        let live: Arc<LiveSlot> = Arc::default();
        let mut run = run.stop_token(stop.clone());
        run.live = Some(Arc::clone(&live));
        let cycle = self.clone();
        let thread = thread::Builder::new()
            .name(format!("sk-run:{}", self.name()))
            .spawn(move || cycle.run(run))
            .map_err(|source| RunError::Start {
                cycle: self.name().to_owned(),
                what: "the run thread".to_owned(),
                source,
            })?;
        Ok(RunHandle {
            stop,
            thread: Some(thread),
            cycle: self.name().to_owned(),
            live,
        })
    }
}

/// The loop of one lane: iterate until told to stop.
fn drive_lane(
    rt: &Arc<Runtime>,
    lane: usize,
    run: &Run,
    halt: &StopToken,
    in_pool: bool,
) -> LaneOutcome {
    let mut outcome = LaneOutcome {
        iterations: 0,
        errors: 0,
        reason: StopReason::Completed,
        last: None,
        timing: TimingStats::new(),
    };
    let wants_report = run.observer.is_some() || matches!(run.mode, Mode::Until(_));
    // Clock reads cost as much as a small part: only when something uses
    // them, and on the parts' clock (see `engine::timing::Started`).
    let timed = run.stats || run.trace || wants_report || run.interval.is_some();
    // An iteration is timed from the end of the one before (one clock
    // read per iteration): the lane's bookkeeping between two iterations
    // counts towards the later one. When user code, a pause or a journal
    // commit comes between, the clock is read again as it starts.
    let chained = !wants_report && run.interval.is_none() && rt.durable().is_none();
    // Short iterations are timed in batches when only the stats read the
    // clock (a trace times each).
    let mut clock = IterationClock::new(timed, chained, run.stats, !run.trace);
    rt.register_driver(lane);
    let mut last_duration: Duration;
    let mut last_iteration = 0;
    // A resumed run's iterations before this call count towards `times`.
    let done_before = rt
        .durable()
        .and_then(|d| d.lanes_done.get(lane).copied())
        .unwrap_or(0);
    loop {
        // Iterations left to run under `times(n)` (none: no count).
        let left = match run.mode {
            Mode::Times(n) => Some(n.saturating_sub(done_before + outcome.iterations)),
            _ => None,
        };
        if left == Some(0) {
            outcome.reason = StopReason::Completed;
            break;
        }
        if halt.is_stopped() {
            outcome.reason = StopReason::Stopped;
            break;
        }
        if rt.aborted() {
            outcome.reason = StopReason::InstantFail;
            break;
        }
        let began = clock.begin(left == Some(1), &mut outcome.timing);
        let span = tracing::debug_span!("iteration", lane, number = outcome.iterations + 1);
        let iteration = span.in_scope(|| {
            if in_pool {
                rt.run_iteration_in_pool(lane)
            } else {
                rt.run_iteration_outside(lane)
            }
        });
        last_duration = clock.end(&mut outcome.timing);
        last_iteration = iteration;
        if !rt.aborted() {
            rt.iteration_ended(lane, iteration);
        }
        if rt.durable().is_some_and(Durable::has_failed) {
            // Not durable any more: stop, and say why (see `Cycle::run`).
            outcome.reason = StopReason::Stopped;
            halt.stop();
            outcome.iterations += 1;
            break;
        }
        if let (true, Some(began)) = (run.trace, began) {
            rt.trace_iteration(lane, iteration, began, last_duration);
        }
        outcome.iterations += 1;
        if rt.lane_in_error(lane) {
            outcome.errors += 1;
        }
        if wants_report {
            let report = rt.iteration_report(lane as u32, iteration, last_duration);
            if let Some(observer) = &run.observer {
                observer(&report);
            }
            let done = matches!(&run.mode, Mode::Until(done) if done(&report));
            outcome.last = Some(report);
            if done {
                outcome.reason = StopReason::Predicate;
                halt.stop();
                break;
            }
        }
        if rt.aborted() {
            outcome.reason = StopReason::InstantFail;
            halt.stop();
            break;
        }
        if let (Some(interval), Some(began)) = (run.interval, began) {
            let rest = interval.saturating_sub(crate::engine::elapsed(began));
            if !rest.is_zero() && halt.wait_timeout(rest) {
                outcome.reason = StopReason::Stopped;
                break;
            }
        }
    }
    last_duration = clock.finish(&mut outcome.timing);
    if outcome.iterations > 0
        && outcome
            .last
            .as_ref()
            .is_none_or(|l| l.iteration != last_iteration)
    {
        outcome.last = Some(rt.iteration_report(lane as u32, last_iteration, last_duration));
    }
    outcome
}

fn build_report(
    rt: &Runtime,
    outcomes: Vec<LaneOutcome>,
    trace: Option<Trace>,
    wall: Duration,
) -> RunReport {
    let reason = if rt.aborted() {
        StopReason::InstantFail
    } else if outcomes.iter().any(|o| o.reason == StopReason::Predicate) {
        StopReason::Predicate
    } else if outcomes.iter().any(|o| o.reason == StopReason::Stopped) {
        StopReason::Stopped
    } else {
        StopReason::Completed
    };
    let counts = rt.part_counts();
    let iterations = outcomes
        .first()
        .map(|o| o.timing.summary())
        .unwrap_or_default();
    let mut outcomes = outcomes.into_iter();
    let first = outcomes.next();
    let mut lane_iterations = Vec::new();
    let mut errors = 0;
    let last = first.map(|o| {
        lane_iterations.push(o.iterations);
        errors += o.errors;
        o.last
    });
    for o in outcomes {
        lane_iterations.push(o.iterations);
        errors += o.errors;
    }
    RunReport {
        cycle: rt.cycle().to_owned(),
        iterations: lane_iterations,
        error_iterations: errors,
        reason,
        instant_fail: rt.instant_error(),
        last: last.flatten(),
        stats: crate::report::LazyStats::new(iterations, counts),
        trace,
        wall,
        resumed: None,
    }
}
