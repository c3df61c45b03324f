//! When a part's run is timed, and what its timing becomes: the sampling
//! of stats (exact for a run's first iterations, then about one run in
//! 16 per part), the start clock, and the record of a run that ended (its
//! sample, its trace event).

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

/// After those, a part's run is timed one time in this many, at
/// pseudo-random iterations (so that no part of a periodic graph is
/// always skipped).
const TIMED_ONE_IN: u64 = 16;

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

/// The iteration, from `iteration` on, in which part `node` is first
/// timed in a run: this one while the lane is timed exactly (up to
/// `exact_iterations`), else one of the next [`TIMED_ONE_IN`] at random
/// (so a large lane's first iteration times about one part in 16).
#[inline]
fn first_timed(node: u32, iteration: u64, exact_iterations: u64) -> u64 {
    if iteration <= exact_iterations {
        return iteration;
    }
    iteration + (mixed(node, iteration) >> 60) % TIMED_ONE_IN
}

/// How many iterations after `iteration` part `node` is timed next: the
/// next one while the lane is timed exactly, then a pseudo-random gap of
/// 1 to 31, uniform, one run in [`TIMED_ONE_IN`] on average (so that no
/// part of a periodic graph is always skipped).
#[inline]
fn timing_gap(node: u32, iteration: u64, exact_iterations: u64) -> u64 {
    if iteration < exact_iterations {
        return 1;
    }
    // The top 32 bits scaled to 0..=30.
    1 + (((mixed(node, iteration) >> 32) * (2 * TIMED_ONE_IN - 1)) >> 32)
}

/// Iterations of a lane of `parts` parts timed exactly.
pub(super) fn exact_iterations(parts: usize) -> u64 {
    TIMED_EXACTLY / parts.max(1) as u64
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
    /// When a part starts, if the trace wants it (always) or the stats
    /// time this run: the node keeps the iteration it is timed next in
    /// (see [`timing_gap`]), so a run not timed costs a load and a
    /// compare on the node's own line.
    #[inline(always)]
    pub(super) fn start_clock(&self, node: u32, lane: u32, iteration: u64) -> Option<Started> {
        if self.options.trace {
            self.note_thread();
            return Some((quanta::Instant::now(), thread_number()));
        }
        if !self.options.stats {
            return None;
        }
        // One thread runs a node per iteration, and a lane's iterations
        // are ordered: plain loads and stores.
        let n = &self.nodes[node as usize];
        let next = n.next_timed.load(Ordering::Relaxed);
        if iteration < next {
            return None;
        }
        let exact = self.lanes[lane as usize].exact_iterations;
        if next == 0 {
            // Its first run in this run: decide when it is first timed.
            let first = first_timed(node, iteration, exact);
            if iteration < first {
                n.next_timed.store(first, Ordering::Relaxed);
                return None;
            }
        }
        n.next_timed.store(
            iteration + timing_gap(node, iteration, exact),
            Ordering::Relaxed,
        );
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

    /// Records the stats of a part that ran, started at `started`, with
    /// the trace off (a run stats time but do not trace).
    #[cold]
    #[inline(never)]
    pub(super) fn observe_run(&self, node: u32, started: Option<Started>) {
        if let Some((started, _)) = started {
            self.samples.record(node, elapsed(started));
        }
    }

    /// Records stats and a trace event for a part that ran.
    pub(super) fn observe(&self, node: u32, iteration: u64, finish: &Finish) {
        let Some((started, tid)) = finish.ran else {
            return;
        };
        let elapsed = elapsed(started);
        if self.options.stats {
            self.samples.record(node, elapsed);
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
