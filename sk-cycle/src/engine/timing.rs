//! When a part's run is timed, and what its timing becomes: the sampling
//! of stats (exact for a run's first iterations, then a share of each
//! part's runs that shrinks with how short they are, each timed run
//! standing for the runs since the part's last one), the start clock, and
//! the record of a run that ended (its sample, its trace event).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Finish, Runtime};
use crate::trace::TraceEvent;

/// Part runs a run times exactly before it samples: whole iterations of
/// a lane, as many as make at most this many part runs (none for a lane
/// larger than that: its first iteration is sampled too, see
/// [`first_timed`]).
const TIMED_EXACTLY: u64 = 4096;

/// After those, a part's first run is timed within this many runs, at a
/// pseudo-random one (so that no part of a periodic graph is always
/// skipped); later ones follow from how long its timed runs take (see
/// [`gap_after`]).
const TIMED_ONE_IN: u64 = 16;

/// About what timing a run adds to it, in nanoseconds (two clock reads,
/// the sample's bookkeeping and its merge into the part's stats, which
/// in a large cycle misses the cache), times the share of a part's time
/// that timing may take (1/32): a part whose run takes this long or
/// longer is timed every run; a shorter one about one run in
/// `TIMED_BUDGET_NS / its duration`, at most one in [`MAX_TIMING_GAP`] on
/// average.
const TIMED_BUDGET_NS: u64 = 100 * 32;

/// The longest mean gap between two timed runs of a part.
const MAX_TIMING_GAP: u64 = 256;

/// When a timed part run started, on the stats' clock, and on which
/// thread. The clock is quanta's: the CPU's time-stamp counter where it is
/// invariant (calibrated against the system clock once per process), a
/// few nanoseconds a read where the system clock takes tens (under a
/// hypervisor); the system clock otherwise.
pub(crate) type Started = (quanta::Instant, u64);

/// The time since `started` on the stats' clock; zero if the clock read
/// earlier than `started` (quanta's own `elapsed` may panic then in a
/// later version).
#[inline]
pub(crate) fn elapsed(started: quanta::Instant) -> Duration {
    quanta::Instant::now().saturating_duration_since(started)
}

/// A pseudo-random number from part `node` and iteration `iteration`.
#[inline]
fn mixed(node: u32, iteration: u64) -> u64 {
    (iteration ^ (u64::from(node) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How many of its runs part `node`, first run in this run in
/// `iteration`, leaves untimed before its first timed one: none while its
/// lane is timed exactly (iterations 1 to `exact_iterations`), else 0 to
/// 15 at random (so a large lane's first iteration times about one part
/// in 16).
#[inline]
fn first_timed(node: u32, iteration: u64, exact_iterations: u64) -> u32 {
    if iteration <= exact_iterations {
        return 0;
    }
    ((mixed(node, iteration) >> 60) % TIMED_ONE_IN) as u32
}

/// The runs part `node`'s next timed run stands for (the gap to it), its
/// timed run in `iteration` having taken `took`: 1 (the next run) while
/// the lane is timed exactly, else a pseudo-random gap averaging
/// `TIMED_BUDGET_NS / took` (see [`TIMED_BUDGET_NS`]): every run of a part
/// of 3.2 µs or more, about one in 160 of a 20 ns one.
#[inline]
fn gap_after(node: u32, iteration: u64, exact_iterations: u64, took: Duration) -> u32 {
    if iteration < exact_iterations {
        return 1;
    }
    let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
    let mean = TIMED_BUDGET_NS.div_ceil(took).clamp(1, MAX_TIMING_GAP);
    if mean == 1 {
        return 1;
    }
    // Uniform in 1..=2 * mean - 1: the top 32 bits scaled.
    (1 + (((mixed(node, iteration) >> 32) * (2 * mean - 1)) >> 32)) as u32
}

/// Iterations of a lane of `parts` parts timed exactly.
pub(super) fn exact_iterations(parts: usize) -> u64 {
    TIMED_EXACTLY / parts.max(1) as u64
}

/// Whether a lane of `parts` parts keeps its parts' timing countdowns
/// from one run of its cycle to the next: one too large to be timed
/// exactly (a run would otherwise time each of its parts within its first
/// 16 runs, which for a large cycle run a few iterations at a time is
/// most of what its stats cost).
pub(super) fn carries_timing(parts: usize) -> bool {
    exact_iterations(parts) == 0
}

/// The thread of a [`Started`] that times a run for its pace only, not
/// for the stats (see `pace.rs`; thread numbers start at 1).
const PACE_ONLY: u64 = 0;

/// When a run of node `n` not timed for the stats starts, if it is timed
/// to learn its pace (see `pace.rs`).
#[inline(always)]
fn pace_clock(n: &super::NodeRt) -> Option<Started> {
    let probe = n.probe.load(Ordering::Relaxed);
    probe.then(|| (quanta::Instant::now(), PACE_ONLY))
}

/// A small stable number for the current thread (trace `tid`).
pub(super) fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: Cell<u64> = const { Cell::new(0) };
    }
    NUMBER.with(|n| {
        if n.get() == 0 {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

impl Runtime {
    /// When a part starts, if the trace wants it (always), the stats time
    /// this run, or its pace is to be learnt (see `pace.rs`): the node
    /// counts down the runs it leaves untimed before its next timed one,
    /// so a run not timed costs a few loads, a compare and a store on
    /// the node's own line.
    #[inline(always)]
    pub(super) fn start_clock(&self, node: u32, lane: u32, iteration: u64) -> Option<Started> {
        if self.options.trace {
            self.note_thread();
            return Some((quanta::Instant::now(), thread_number()));
        }
        // One thread runs a node per iteration, and a lane's iterations
        // are ordered: plain loads and stores.
        let n = &self.nodes[node as usize];
        if !self.options.stats {
            return pace_clock(n);
        }
        let untimed = n.untimed.load(Ordering::Relaxed);
        if untimed > 0 {
            n.untimed.store(untimed - 1, Ordering::Relaxed);
            // Not a stats sample, but maybe timed for its pace.
            return pace_clock(n);
        }
        if n.timed_runs.load(Ordering::Relaxed) == 0 {
            // Its first run in this run: decide when it is first timed.
            let exact = self.lanes[lane as usize].exact_iterations;
            let first = first_timed(node, iteration, exact);
            // The first timed run stands for the runs before it too.
            n.timed_runs.store(first + 1, Ordering::Relaxed);
            if first > 0 {
                n.untimed.store(first - 1, Ordering::Relaxed);
                return None;
            }
        }
        Some((quanta::Instant::now(), thread_number()))
    }

    /// Records the current thread's name in the trace, once per run.
    #[cold]
    #[inline(never)]
    fn note_thread(&self) {
        thread_local! {
            static NOTED: Cell<u64> = const { Cell::new(0) };
        }
        if NOTED.with(|n| n.replace(self.run_id)) != self.run_id {
            let name = std::thread::current()
                .name()
                .unwrap_or("unnamed")
                .to_owned();
            self.trace.lock().name_thread(thread_number(), name);
        }
    }

    /// Records the pace and stats of a part that ran in `iteration`,
    /// started at `started`, with the trace off (a run stats or its pace
    /// time but the trace does not).
    #[cold]
    #[inline(never)]
    pub(super) fn observe_run(&self, node: u32, iteration: u64, started: Option<Started>) {
        if let Some((started, thread)) = started {
            let took = elapsed(started);
            self.note_pace(node, took);
            if self.options.stats && thread != PACE_ONLY {
                self.record_timed(node, iteration, took);
            }
        }
    }

    /// Records part `node`'s timed run in `iteration`, which took `took`,
    /// for the runs it stands for, and sets how many runs its next timed
    /// one stands for (see [`gap_after`]); the trace off.
    fn record_timed(&self, node: u32, iteration: u64, took: Duration) {
        let n = &self.nodes[node as usize];
        self.samples
            .record(node, took, n.timed_runs.load(Ordering::Relaxed));
        let exact = self.lanes[n.lane as usize].exact_iterations;
        let gap = gap_after(node, iteration, exact, took);
        n.timed_runs.store(gap, Ordering::Relaxed);
        n.untimed.store(gap - 1, Ordering::Relaxed);
    }

    /// Records stats and a trace event for a part that ran.
    pub(super) fn observe(&self, node: u32, iteration: u64, finish: &Finish) {
        let Some((started, tid)) = finish.ran else {
            return;
        };
        let elapsed = elapsed(started);
        self.note_pace(node, elapsed);
        if self.options.stats && tid != PACE_ONLY {
            if self.options.trace {
                // Every run is timed.
                self.samples.record(node, elapsed, 1);
            } else {
                self.record_timed(node, iteration, elapsed);
            }
        }
        if self.options.trace {
            let pp = &self.plan.parts[node as usize];
            let event = TraceEvent {
                kind: crate::trace::TraceKind::Part,
                retries: finish.retries,
                pid: finish.pid,
                name: pp.part.name.to_string(),
                coord: pp.coord,
                lane: pp.lane,
                iteration,
                tid,
                start: started.saturating_duration_since(self.epoch),
                duration: elapsed,
                state: finish.state,
            };
            self.trace.lock().push(event);
        }
    }
}
