//! The engine: runs a [`Plan`]'s lanes, iteration by iteration, on a rayon
//! pool.
//!
//! Each node has a countdown of unfinished predecessors. A finishing node
//! decrements its successors; one that reaches zero is ready. The thread
//! that finished a node keeps one ready successor and runs it inline (a
//! chain runs as a loop, with no scheduling at all), runs exactly two as a
//! `rayon::join` (no allocation; the other is stolen only by an idle
//! thread; nesting is bounded, past it they are spawned) — or, when the
//! one it would run is quick, runs that one alone first and then forks
//! (or runs the other next) — spawns any further ones, and splits a wide
//! fan-out with rayon's work-splitting iterator, so a level of ten
//! thousand parts costs a few joins rather than ten thousand spawns. Parts bound to a component, and parts with a
//! timeout, run off the pool and finish through the pool.
//!
//! An iteration ends when every *sink* (node without successors) of its
//! lane has ended: every other node is an ancestor of a sink. Ended sinks
//! are counted per pool job and subtracted from the lane's counter once, so
//! parallel branches do not contend on it.
//!
//! The modules: this file schedules nodes and records their ends;
//! `outputs.rs` reads them back (a part's input, outputs, states and
//! errors as parts and reports see them);
//! `lane.rs` begins a lane's iterations and waits for their ends;
//! `exec.rs` runs one part (retries, validators, timeouts);
//! `node.rs` holds a run's per-node state (a cache line per node for the
//! fast path, the predecessor counters sixteen to a line, the rest
//! apart, kept by the cycle between runs);
//! `timing.rs` decides which part runs are timed and records them;
//! `pace.rs` which parts are quick enough to run ahead of a sibling;
//! `samples.rs` gathers part timings per thread;
//! `journal.rs` records ends in a durable run's journal and replays them
//! on resume;
//! `place.rs` holds the [`Place`](place::Place) trait, where a part runs
//! (the pool, its own thread, a component thread, a worker process);
//! `life.rs` the [`Engine`], the one owner of a run's setup and teardown;
//! `env.rs` what a running part sees of the run; `readout.rs` what the
//! run reads back; `gate.rs` concurrency limits; `timer.rs` the watchdog;
//! `component.rs` component threads.

mod component;
mod env;
mod exec;
mod gate;
mod journal;
mod lane;
mod life;
mod node;
mod outputs;
mod pace;
mod place;
mod readout;
mod samples;
mod timer;
mod timing;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::Instant;

use parking_lot::Mutex;
use rayon::prelude::*;
use sk_core::{RateLimiter, StopToken, Value};

use crate::durable::Durable;
use crate::error::PartError;
use crate::mode::PartState;
use crate::plan::{DATA, Plan, SOLE, edge_target};
use crate::store::Store;
use crate::trace::TraceLog;

pub(crate) use component::Component;
pub(crate) use env::{Env, enter, respond_here};
pub(crate) use exec::Finish;
use gate::Gate;
use lane::LaneRt;
pub(crate) use life::{Engine, EngineSetup};
use node::{NodeCold, NodeRt, Pending, Spare, bump};
pub(crate) use timer::Watchdog;
pub(crate) use timing::elapsed;

/// Above this many successors, a finishing node splits them across the
/// pool with a parallel iterator instead of spawning each.
const WIDE_FANOUT: usize = 16;

/// How deep `rayon::join`s over ready successors may nest on one thread
/// before further ones are spawned instead (bounding stack use).
const MAX_JOIN_DEPTH: u32 = 48;

/// What a node passes to its data successors instead of data, by
/// strength: the strongest wins (a node keeps it in an `AtomicU8`, merged
/// with `fetch_max`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Poison {
    /// Nothing: the data is there.
    None = 0,
    /// A parent's condition was false: not taken.
    NotTaken = 1,
    /// A parent failed under skip: skipped.
    Skipped = 2,
    /// A parent failed: upstream failed.
    UpstreamFailed = 3,
}

impl Poison {
    /// The poison stored as `v`.
    #[inline]
    fn from_u8(v: u8) -> Poison {
        match v {
            0 => Poison::None,
            1 => Poison::NotTaken,
            2 => Poison::Skipped,
            _ => Poison::UpstreamFailed,
        }
    }
}

/// The value reported for parts whose output is `()`.
static UNIT: LazyLock<Arc<Value>> = LazyLock::new(|| Arc::new(Value::new(())));

/// Options the engine reads while running.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EngineOptions {
    pub(crate) stats: bool,
    pub(crate) trace: bool,
    pub(crate) trace_capacity: usize,
}

/// One run of a cycle: the plan plus everything mutable.
pub(crate) struct Runtime {
    plan: Arc<Plan>,
    cycle: Arc<str>,
    pool: Arc<rayon::ThreadPool>,
    nodes: Box<[NodeRt]>,
    pending: Pending,
    cold: Box<[NodeCold]>,
    lanes: Box<[LaneRt]>,
    store: Arc<Store>,
    /// Set on instant fail: parts see it through their stop token.
    cancel: StopToken,
    abort: AtomicBool,
    /// Nodes leave the fast path (see [`Runtime::process`] and
    /// [`Runtime::complete_plain`]): the run has stopped (`abort`), keeps
    /// a journal (it may replay ends), or shares outputs between lanes.
    /// One load a node, where each of those was one.
    detour: AtomicBool,
    /// Some part ended otherwise than succeeded (it has a tally, maybe an
    /// error, in its `NodeCold`): a report then reads the nodes' cold
    /// state, and the run's end clears it (see `Runtime::mark_unusual`).
    unusual: AtomicBool,
    instant_error: Mutex<Option<Arc<PartError>>>,
    gates: Box<[Gate]>,
    /// Part starts per second (see `PlanPart::rates`).
    rates: Box<[RateLimiter]>,
    components: Vec<Component>,
    watchdog: Mutex<Option<Watchdog>>,
    /// Worker processes for parts placed in processes.
    processes: Option<Arc<crate::process::ProcessRunner>>,
    /// Where remote parts go, and the run's id there.
    remote: Option<(Arc<dyn crate::RemoteRunner>, Arc<str>)>,
    generation: AtomicU64,
    /// Timed parts still running on their own threads (late ones too).
    timed_running: AtomicUsize,
    /// The threads parts ran on of their own (timed, process calls), so
    /// the run can join them; finished ones are let go as new ones come.
    own_threads: Mutex<Vec<thread::JoinHandle<()>>>,
    options: EngineOptions,
    /// Per-part timing: a few hundred bytes each, however large the cycle.
    samples: samples::Samples,
    trace: Mutex<TraceLog>,
    /// This run's number (distinct from every other run's in the process).
    run_id: u64,
    /// When the run started, on its clock (see `timing::Started`).
    epoch: quanta::Instant,
    /// Latest output of every part, kept only when there are several lanes.
    latest: Box<[Mutex<Option<Arc<Value>>>]>,
    /// Where parts run, one per site (see `place.rs`).
    places: Box<[Box<dyn place::Place>]>,
    /// The run's journal, when it is durable (see `durable.rs`).
    durable: Option<Durable>,
    /// Recorded ends not replayed yet (0 but on resume: the one check a
    /// part's start pays for replay).
    replay_left: AtomicUsize,
    /// Jobs and threads holding the runtime for work in flight.
    holds: Holds,
}

/// Counts the [`Held`] runtimes, so that a finishing run can wait until
/// none is left (see `life.rs`).
#[derive(Default)]
struct Holds {
    count: AtomicUsize,
    lock: Mutex<()>,
    released: parking_lot::Condvar,
}

/// The runtime, held by a job or thread for work in flight (a pool job, a
/// part's own thread, a component job, a watchdog timer).
pub(crate) struct Held(Arc<Runtime>);

impl std::ops::Deref for Held {
    type Target = Arc<Runtime>;

    fn deref(&self) -> &Arc<Runtime> {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let holds = &self.0.holds;
        if holds.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock: a waiter between its check and its wait
            // cannot miss this.
            let _lock = holds.lock.lock();
            holds.released.notify_all();
        }
    }
}

impl Drop for Runtime {
    /// Hands the per-node arrays to the plan for the next run, holding no
    /// output or error of this one.
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        let cold = std::mem::take(&mut self.cold);
        let pending = std::mem::take(&mut self.pending);
        let unusual = *self.unusual.get_mut();
        Spare::keep(&self.plan, (nodes, cold, pending), unusual);
    }
}

/// A plain part's success: its output. Nothing else, so that it goes
/// from where the part ran to where it completes in a register (a timed
/// run's clock is read where it ran, see [`Runtime::execute_plain`]).
struct Plain {
    output: Option<Arc<Value>>,
}

impl Plain {
    /// The same end as a [`Finish`], for the general path.
    fn into_finish(self) -> Finish {
        Finish {
            output: self.output,
            ..Finish::barrier()
        }
    }
}

/// Up to two successors a completed node made ready, for its thread to
/// run: `first`, then `second`, each [`Ready::EMPTY`] when there is none
/// (two words, so that it is handed back in registers).
#[derive(Clone, Copy)]
struct Ready {
    first: u32,
    second: u32,
}

impl Ready {
    /// No node in a slot.
    const EMPTY: u32 = u32::MAX;
    /// Nothing ready.
    const NONE: Ready = Ready {
        first: Ready::EMPTY,
        second: Ready::EMPTY,
    };
}

/// What processing a node led to.
enum Step {
    /// It finished here; complete it.
    Done(Finish),
    /// A plain part succeeded here: the fast path's end, with nothing
    /// but its output to record (see [`Runtime::complete_plain`]).
    Plain(Plain),
    /// It finishes elsewhere (queued at a gate, on a component thread, on a
    /// timed thread) and completes itself through the pool.
    Deferred,
}

impl Runtime {
    pub(crate) fn new(
        plan: Arc<Plan>,
        cycle: Arc<str>,
        pool: Arc<rayon::ThreadPool>,
        store: Arc<Store>,
        options: EngineOptions,
    ) -> Runtime {
        let parts = plan.parts.len();
        let multi_lane = plan.lanes.len() > 1;
        let (nodes, cold, pending) = Spare::take(&plan);
        Runtime {
            pending,
            nodes,
            cold,
            lanes: plan
                .lanes
                .iter()
                .map(|lane| LaneRt {
                    exact_iterations: timing::exact_iterations(lane.nodes.len()),
                    ..LaneRt::default()
                })
                .collect(),
            gates: plan.gates.iter().map(|n| Gate::new(n.get())).collect(),
            rates: plan
                .rates
                .iter()
                .filter_map(|&per_sec| RateLimiter::new(per_sec).ok())
                .collect(),
            samples: samples::Samples::new(options.stats, pool.current_num_threads()),
            latest: (0..if multi_lane { parts } else { 0 })
                .map(|_| Mutex::new(None))
                .collect(),
            places: place::places(&plan),
            durable: None,
            replay_left: AtomicUsize::new(0),
            holds: Holds::default(),
            plan,
            cycle,
            pool,
            store,
            cancel: StopToken::new(),
            abort: AtomicBool::new(false),
            detour: AtomicBool::new(multi_lane),
            unusual: AtomicBool::new(false),
            instant_error: Mutex::new(None),
            components: Vec::new(),
            watchdog: Mutex::new(None),
            processes: None,
            remote: None,
            generation: AtomicU64::new(0),
            timed_running: AtomicUsize::new(0),
            own_threads: Mutex::new(Vec::new()),
            options,
            trace: Mutex::new(TraceLog::new(options.trace_capacity)),
            run_id: {
                static NEXT_RUN: AtomicU64 = AtomicU64::new(1);
                NEXT_RUN.fetch_add(1, Ordering::Relaxed)
            },
            epoch: quanta::Instant::now(),
        }
    }

    // ----- scheduling -------------------------------------------------

    /// The runtime, held for work in flight until the [`Held`] is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.holds.count.fetch_add(1, Ordering::AcqRel);
        Held(Arc::clone(self))
    }

    /// Runs `node` (and whatever becomes ready after it) on the pool.
    fn spawn(self: &Arc<Self>, node: u32, admitted: bool) {
        let this = self.hold();
        self.pool.spawn(move || {
            let sinks = this.drive(node, admitted, 0);
            this.sinks_ended(node, sinks);
        });
    }

    /// Runs `node`, then keeps going inline with one ready successor at a
    /// time. Returns how many sinks it ended (not yet counted).
    fn drive(self: &Arc<Self>, node: u32, admitted: bool, depth: u32) -> usize {
        let ready = Ready {
            first: node,
            second: Ready::EMPTY,
        };
        self.run_ready(ready, 0, depth, admitted)
    }

    /// Completes `node`, which ended as `finish`, and runs what it made
    /// ready. Returns how many sinks it ended (not yet counted).
    fn finish_and_follow(self: &Arc<Self>, node: u32, finish: Finish, depth: u32) -> usize {
        let (ready, sinks) = self.complete(node, finish, depth);
        self.run_ready(ready, sinks, depth, false)
    }

    /// Runs the nodes `ready` holds and what they make ready in turn: one
    /// successor inline (a chain is a loop), two as a `rayon::join` (no
    /// allocation, and the second is stolen only if a thread is idle) —
    /// or, when the later one is quick, that one alone first (see
    /// `pace.rs`).
    /// Each node's `Step` is made and taken apart in one iteration of the
    /// loop, so a plain part's end goes from where it ran to where it
    /// completes in registers (a `Step` passed or carried on through the
    /// stack cost a chain most of its time per part in store-forwarding
    /// stalls); it is the one place a part's run is inlined, so a level
    /// of nested joins costs one such frame of stack. The first node
    /// runs as `admitted` (see [`process`](Self::process)). Returns
    /// `sinks` plus how many sinks it ended (not yet counted).
    fn run_ready(
        self: &Arc<Self>,
        mut ready: Ready,
        mut sinks: usize,
        depth: u32,
        mut admitted: bool,
    ) -> usize {
        // A ready node held back while its sibling runs ahead.
        let mut held = Ready::EMPTY;
        loop {
            let Ready { first, second } = ready;
            if first == Ready::EMPTY {
                return sinks;
            }
            let next = if second == Ready::EMPTY {
                first
            } else if self.runs_ahead(second) {
                // The later successor is quick: it runs alone, and then
                // the earlier one goes on with what it made ready.
                held = first;
                second
            } else {
                // The later successor runs here, the earlier one is
                // offered to idle threads (as with spawning).
                let here = Ready {
                    first: second,
                    second: Ready::EMPTY,
                };
                return sinks + self.fork(here, first, depth);
            };
            let ended;
            let step = self.process(next, std::mem::take(&mut admitted));
            (ready, ended) = match step {
                Step::Plain(plain) => self.complete_plain(next, plain, depth),
                Step::Done(finish) => self.complete(next, finish, depth),
                Step::Deferred => (Ready::NONE, 0),
            };
            sinks += ended;
            if held != Ready::EMPTY {
                let offered = std::mem::replace(&mut held, Ready::EMPTY);
                if ready.first == Ready::EMPTY {
                    ready.first = offered;
                    continue;
                }
                // What the quick one made ready goes on here; its sibling
                // is offered.
                return sinks + self.fork(ready, offered, depth);
            }
        }
    }

    /// Runs `here` on this thread and `offered` as the other half of a
    /// `rayon::join` (taken by an idle thread, or run here after), one
    /// level deeper than `depth`. Returns how many sinks they ended (not
    /// yet counted). Out of line: one frame of it per nested join, not
    /// one per `run_ready` loop that might fork.
    #[inline(never)]
    fn fork(self: &Arc<Self>, here: Ready, offered: u32, depth: u32) -> usize {
        let (x, y) = rayon::join(
            || self.run_ready(here, 0, depth + 1, false),
            || self.drive(offered, false, depth + 1),
        );
        x + y
    }

    /// Completes `node` from off the pool (component or timed thread).
    pub(crate) fn complete_from_outside(self: &Arc<Self>, node: u32, finish: Finish) {
        let this = self.hold();
        self.pool.spawn(move || {
            let sinks = this.finish_and_follow(node, finish, 0);
            this.sinks_ended(node, sinks);
        });
    }

    /// Decides what `node` does now.
    #[inline(always)]
    fn process(self: &Arc<Self>, node: u32, admitted: bool) -> Step {
        let n = &self.nodes[node as usize];
        // What its predecessors passed it in this iteration, taken, so
        // that its next iteration starts clean.
        let poison = n.poison.load(Ordering::Acquire);
        if poison != Poison::None as u8 {
            n.poison.store(Poison::None as u8, Ordering::Relaxed);
        }
        if !self.plan.is_part(node) {
            return Step::Done(Finish::barrier());
        }
        // A node handed a gate permit (`admitted`) must give it back
        // whatever it ends as.
        if self.detour.load(Ordering::Acquire) {
            if self.abort.load(Ordering::Acquire) {
                let finish = Finish::resolved(PartState::Cancelled, Poison::None);
                return Step::Done(finish.gated(admitted));
            }
            if self.replay_left.load(Ordering::Relaxed) != 0 {
                if let Some(finish) = self.replayed(node) {
                    return Step::Done(finish.gated(admitted));
                }
            }
        }
        match Poison::from_u8(poison) {
            Poison::None => {}
            p => return Step::Done(Finish::poisoned(p).gated(admitted)),
        }
        if let Some(work) = &n.plain {
            return self.execute_plain(node, n, &**work);
        }
        self.process_placed(node, admitted)
    }

    /// [`process`](Self::process) for a part off the fast path: its
    /// conditions, gate and rate, then its place. Kept out of line, so the
    /// fast path stays small enough to inline where it is hot.
    #[inline(never)]
    fn process_placed(self: &Arc<Self>, node: u32, admitted: bool) -> Step {
        let n = &self.cold[node as usize];
        let part = &self.plan.parts[node as usize];
        let input = self.input_for(node);
        if !admitted {
            if !self.conditions_hold(node, &input) {
                return Step::Done(Finish::resolved(PartState::NotTaken, Poison::NotTaken));
            }
            if let Some(gate) = part.gate() {
                if !self.gates[gate as usize].enter(node) {
                    return Step::Deferred;
                }
            }
        }
        let gated = part.gate().is_some();
        if !part.rates().is_empty() && !n.rate_cleared.swap(false, Ordering::AcqRel) {
            // Each limiter gives its next turn; the part starts at the
            // latest of them — from the watchdog, holding no thread.
            let wait = part
                .rates()
                .iter()
                .filter_map(|&r| self.rates.get(r as usize))
                .map(RateLimiter::reserve_next)
                .max()
                .unwrap_or_default();
            if !wait.is_zero() {
                if let Some(dog) = self.watchdog.lock().as_ref() {
                    n.rate_cleared.store(true, Ordering::Release);
                    let this = self.hold();
                    dog.schedule(
                        Instant::now() + wait,
                        Box::new(move || this.spawn(node, true)),
                    );
                    return Step::Deferred;
                }
            }
        }
        self.places[place::place_index(part.site)].run(self, node, input, gated)
    }

    /// The current iteration of `node`'s lane.
    fn iteration_of(&self, node: u32) -> u64 {
        let lane = self.plan.parts[node as usize].lane as usize;
        self.lanes[lane].iteration.load(Ordering::Relaxed)
    }

    /// Opens a claim on completing timed part `node`: its number.
    fn claim(&self, node: u32) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.cold[node as usize]
            .claim
            .store(generation, Ordering::Release);
        generation
    }

    /// Takes claim `generation` on completing `node`: whether it was still
    /// open (the part's own thread and the watchdog race for it).
    fn settle_claim(&self, node: u32, generation: u64) -> bool {
        self.cold[node as usize]
            .claim
            .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Records `node`'s end, releases its successors and gate, and returns
    /// up to two ready successors for the caller to run (spawning any
    /// others) and how many sinks ended here (not yet counted).
    fn complete(self: &Arc<Self>, node: u32, mut finish: Finish, depth: u32) -> (Ready, usize) {
        let lane = self.plan.node_lane[node as usize] as usize;
        let mut data_poison = Poison::None;
        if self.plan.is_part(node) {
            if finish.state.is_success() && self.abort.load(Ordering::Acquire) {
                // A part that runs at most once did its effect: its
                // journal keeps how it really ended, so that a resume
                // replays it rather than calling its outcome unknown.
                if let Some(durable) = &self.durable {
                    if self.plan.parts[node as usize].part.once {
                        self.journal_end(durable, node, lane, &finish);
                    }
                }
                // It was still running when an instant fail stopped
                // everything (its stop token was set): cancelled, whatever
                // it returned.
                finish = Finish {
                    gated: finish.gated,
                    ran: finish.ran,
                    ..Finish::resolved(PartState::Cancelled, Poison::None)
                };
            }
            data_poison = finish.poison;
            let mut queued = None;
            if finish.gated {
                let part = &self.plan.parts[node as usize];
                queued = part.gate().and_then(|g| self.gates[g as usize].leave());
            }
            self.record(node, lane, finish);
            // A queued node handed the gate permit runs first, already
            // admitted.
            if let Some(queued) = queued {
                self.spawn(queued, true);
            }
        }
        self.follow(node, data_poison, depth)
    }

    /// [`complete`](Self::complete) for a plain part's success: its
    /// output, count and state, and its successors released with data. A
    /// run that has stopped, keeps a journal or shares outputs between
    /// lanes takes the general path.
    #[inline(always)]
    fn complete_plain(self: &Arc<Self>, node: u32, plain: Plain, depth: u32) -> (Ready, usize) {
        if self.detour.load(Ordering::Acquire) {
            return self.complete(node, plain.into_finish(), depth);
        }
        let n = &self.nodes[node as usize];
        match plain.output {
            Some(output) => {
                *n.output.lock() = Some(output);
                n.has_output.store(true, Ordering::Release);
            }
            None => self.clear_output(n),
        }
        if n.has_error.load(Ordering::Relaxed) {
            self.clear_error(node);
        }
        bump(&n.succeeded);
        n.state.store(PartState::Succeeded as u8, Ordering::Release);
        self.follow(node, Poison::None, depth)
    }

    /// Releases `node`'s successors (passing `data_poison` on data edges)
    /// and returns up to two that became ready for the caller to run
    /// (spawning any others) and how many sinks ended here (not yet
    /// counted).
    #[inline(always)]
    fn follow(self: &Arc<Self>, node: u32, data_poison: Poison, depth: u32) -> (Ready, usize) {
        let successors = self.plan.successors(node);
        if successors.is_empty() {
            return (Ready::NONE, 1);
        }
        if successors.len() > WIDE_FANOUT {
            let sinks = successors
                .par_iter()
                .map(|&s| match self.release(s, data_poison) {
                    Some(ready) => self.drive(ready, false, depth + 1),
                    None => 0,
                })
                .sum();
            return (Ready::NONE, sinks);
        }
        let mut ready = Ready::NONE;
        for &s in successors {
            if let Some(r) = self.release(s, data_poison) {
                if ready.first == Ready::EMPTY {
                    ready.first = r;
                } else if ready.second == Ready::EMPTY && depth < MAX_JOIN_DEPTH {
                    ready.second = r;
                } else {
                    self.spawn(r, false);
                }
            }
        }
        (ready, 0)
    }

    /// Counts one predecessor of `edge`'s target as done; the target if
    /// that made it ready. A target of this one predecessor only
    /// ([`SOLE`]) is ready now, with no read-modify-write of its count:
    /// whoever runs it next — this thread, or one that takes it from the
    /// pool's queue, which orders the two — sees what its predecessor
    /// wrote.
    #[inline]
    fn release(&self, edge: u32, data_poison: Poison) -> Option<u32> {
        let target = edge_target(edge);
        let n = &self.nodes[target as usize];
        if edge & DATA != 0 && data_poison != Poison::None {
            n.poison.fetch_max(data_poison as u8, Ordering::Relaxed);
        }
        if edge & SOLE != 0 {
            return Some(target);
        }
        let pending = self.pending.of(target);
        if pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        // The last predecessor sets the count back for the next
        // iteration: no other one counts it down in this one, and the
        // next begins after this one's sinks have ended, which this
        // thread reports after this store.
        let count = self.plan.pred_count[target as usize];
        pending.store(count, Ordering::Relaxed);
        Some(target)
    }

    /// Clears the output node `n`'s last end left, for a success without
    /// one (nodes are not reset as an iteration begins, see
    /// `Runtime::begin_iteration`).
    #[inline]
    fn clear_output(&self, n: &NodeRt) {
        if n.has_output.load(Ordering::Relaxed) {
            n.has_output.store(false, Ordering::Relaxed);
            n.output.lock().take();
        }
    }

    /// Clears the error `node`'s last end left, for an end without one.
    #[cold]
    fn clear_error(&self, node: u32) {
        self.nodes[node as usize]
            .has_error
            .store(false, Ordering::Relaxed);
        self.cold[node as usize].error.lock().take();
    }

    /// Stores a part's end state, output and error (and records them in
    /// the run's journal, if it has one).
    fn record(&self, node: u32, lane: usize, finish: Finish) {
        let n = &self.nodes[node as usize];
        if finish.ran.is_some() {
            let iteration = self.lanes[lane].iteration.load(Ordering::Relaxed);
            self.observe(node, iteration, &finish);
        }
        if let Some(durable) = &self.durable {
            self.journal_end(durable, node, lane, &finish);
        }
        let state = finish.state;
        if let Some(output) = finish.output {
            if !self.latest.is_empty() {
                *self.latest[node as usize].lock() = Some(Arc::clone(&output));
            }
            *n.output.lock() = Some(output);
            n.has_output.store(true, Ordering::Release);
        } else if state.is_success() {
            if !self.latest.is_empty() {
                *self.latest[node as usize].lock() = Some(Arc::clone(&UNIT));
            }
            self.clear_output(n);
        }
        // Any other end keeps the output of the part's last success: its
        // latest completed output, as `latest` keeps it across lanes
        // (readers of this iteration's output check the state).
        if finish.error.is_none() && n.has_error.load(Ordering::Relaxed) {
            self.clear_error(node);
        }
        if let Some(error) = finish.error {
            if finish.instant_fail {
                let mut first = self.instant_error.lock();
                if first.is_none() {
                    *first = Some(Arc::clone(&error));
                }
                self.abort.store(true, Ordering::Release);
                self.detour.store(true, Ordering::Release);
                self.cancel.stop();
            }
            *self.cold[node as usize].error.lock() = Some(error);
            n.has_error.store(true, Ordering::Release);
        }
        if finish.error_state {
            self.lanes[lane].error_state.store(true, Ordering::Relaxed);
        }
        if state == PartState::Succeeded {
            bump(&n.succeeded);
        } else {
            let tally = self.cold[node as usize].tally.get_or_init(|| {
                self.mark_unusual();
                Box::default()
            });
            bump(&tally.0[state.index()]);
        }
        n.state.store(state as u8, Ordering::Release);
    }
}
