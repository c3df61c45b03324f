//! A lane's iterations: beginning the next one, driving it
//! from a pool thread or from outside the pool, and counting its ended
//! sinks until the last one wakes the driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam::utils::Backoff;
use parking_lot::Mutex;

use super::Runtime;

/// Per-lane state.
#[derive(Default)]
pub(crate) struct LaneRt {
    pub(crate) iteration: AtomicU64,
    pub(super) remaining: AtomicUsize,
    pub(super) done: AtomicBool,
    pub(super) waiter: Mutex<Option<Thread>>,
    /// The driver may be parked, waiting for `done`: only then does the
    /// iteration's last sink take the lock and unpark it.
    pub(super) parked: AtomicBool,
    pub(crate) error_state: AtomicBool,
    /// Iterations up to this number are timed exactly when stats are on
    /// (see `timing::gap_after`): a run's first ones (a resumed run's too).
    pub(super) exact_iterations: u64,
}

impl Runtime {
    /// Begins lane `lane`'s next iteration. Its nodes need no reset: each
    /// node's end replaces what its last end left (state, output, error),
    /// its start takes what its predecessors passed it (poison), and its
    /// last predecessor sets its counter back for the next iteration (see
    /// `Runtime::release`); every node of an iteration ends before the
    /// next begins. A large cycle's iteration so begins without touching
    /// a line per node.
    pub(super) fn begin_iteration(&self, lane: usize) -> u64 {
        let rt = &self.lanes[lane];
        // Only timed parts make claims: other cycles leave the cold array
        // alone (a cache miss per node per iteration in a large cycle).
        if self.plan.any_timeout {
            for &node in &self.plan.lanes[lane].nodes {
                self.cold[node as usize].claim.store(0, Ordering::Relaxed);
            }
        }
        rt.error_state.store(false, Ordering::Relaxed);
        rt.done.store(false, Ordering::Relaxed);
        rt.remaining
            .store(self.plan.lanes[lane].sinks, Ordering::Release);
        // Only the lane's driver writes the iteration number.
        let iteration = rt.iteration.load(Ordering::Relaxed) + 1;
        rt.iteration.store(iteration, Ordering::Release);
        iteration
    }

    /// Makes the calling thread the one woken when an iteration of `lane`
    /// ends. A lane is driven by one thread for the whole run.
    pub(crate) fn register_driver(&self, lane: usize) {
        *self.lanes[lane].waiter.lock() = Some(thread::current());
    }

    /// Runs one iteration of `lane` on the calling pool thread, helping
    /// the pool until it ends. Returns the iteration number.
    pub(crate) fn run_iteration_in_pool(self: &Arc<Self>, lane: usize) -> u64 {
        let iteration = self.begin_iteration(lane);
        let roots = &self.plan.lanes[lane].roots;
        if let Some((&first, rest)) = roots.split_first() {
            for &root in rest {
                self.spawn(root, false);
            }
            let sinks = self.drive(first, false, 0);
            if self.last_sinks_ended(lane, sinks) {
                return iteration;
            }
        }
        let rt = &self.lanes[lane];
        let backoff = Backoff::new();
        while !rt.done.load(Ordering::Acquire) {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => backoff.reset(),
                _ if backoff.is_completed() => self.park_driver(rt, Duration::from_micros(200)),
                _ => backoff.snooze(),
            }
        }
        iteration
    }

    /// Parks the lane's driver for at most `limit` unless the iteration
    /// has ended. The flag and `done` are stored and read in opposite
    /// orders, sequentially consistent: either the last sink sees the
    /// flag and unparks, or this sees `done` and does not park.
    fn park_driver(&self, rt: &LaneRt, limit: Duration) {
        rt.parked.store(true, Ordering::SeqCst);
        if !rt.done.load(Ordering::SeqCst) {
            thread::park_timeout(limit);
        }
        rt.parked.store(false, Ordering::Relaxed);
    }

    /// Runs one iteration of `lane` from a thread outside the pool,
    /// sleeping until it ends.
    pub(crate) fn run_iteration_outside(self: &Arc<Self>, lane: usize) -> u64 {
        let iteration = self.begin_iteration(lane);
        for &root in &self.plan.lanes[lane].roots {
            self.spawn(root, false);
        }
        let rt = &self.lanes[lane];
        while !rt.done.load(Ordering::Acquire) {
            self.park_driver(rt, Duration::from_millis(50));
        }
        iteration
    }

    /// Counts `sinks` more ended sinks of `node`'s lane; the last one ends
    /// the iteration. Callers batch them: one count per pool job, not one
    /// per node, so that parallel branches do not fight over the counter.
    pub(super) fn sinks_ended(&self, node: u32, sinks: usize) {
        let lane = self.plan.node_lane[node as usize] as usize;
        if self.last_sinks_ended(lane, sinks) {
            self.lane_finished(lane);
        }
    }

    /// Counts `sinks` more ended sinks of `lane`: whether they were the
    /// last (the iteration has ended: on its driver, with no one to tell,
    /// the driver goes on to the next without setting `done`).
    fn last_sinks_ended(&self, lane: usize, sinks: usize) -> bool {
        sinks != 0
            && self.lanes[lane]
                .remaining
                .fetch_sub(sinks, Ordering::AcqRel)
                == sinks
    }

    fn lane_finished(&self, lane: usize) {
        let rt = &self.lanes[lane];
        rt.done.store(true, Ordering::SeqCst);
        // A driver still spinning sees `done` by itself (see
        // `park_driver`).
        if rt.parked.load(Ordering::SeqCst) {
            if let Some(waiter) = rt.waiter.lock().as_ref() {
                waiter.unpark();
            }
        }
    }
}
