//! What a run reads of its runtime once iterations end: whether an
//! instant fail stopped it, each lane's error state, the trace and every
//! part's stats.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Runtime;
use crate::error::PartError;
use crate::mode::PartState;
use crate::trace::TraceLog;

impl Runtime {
    /// The cycle's name.
    pub(crate) fn cycle(&self) -> &str {
        &self.cycle
    }

    /// Runs `f` on the run's pool (the calling thread becomes one of its
    /// threads until `f` returns).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Whether an instant fail stopped the run.
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// The error of the part whose instant fail stopped the run.
    pub(crate) fn instant_error(&self) -> Option<Arc<PartError>> {
        self.instant_error.lock().clone()
    }

    /// Whether `lane`'s last iteration ended in error state.
    pub(crate) fn lane_in_error(&self, lane: usize) -> bool {
        self.lanes[lane].error_state.load(Ordering::Relaxed)
    }

    /// Records iteration `iteration` of `lane`, begun at `began` and
    /// taking `duration`, in the trace.
    pub(crate) fn trace_iteration(
        &self,
        lane: usize,
        iteration: u64,
        began: quanta::Instant,
        duration: Duration,
    ) {
        let state = if self.lane_in_error(lane) {
            PartState::Failed
        } else {
            PartState::Succeeded
        };
        self.trace.lock().push(crate::trace::TraceEvent {
            kind: crate::trace::TraceKind::Iteration,
            name: "iteration".to_owned(),
            coord: crate::coord::Coord::new(0, 0),
            lane: lane as u32,
            iteration,
            tid: crate::trace::lane_tid(lane as u32),
            start: began.saturating_duration_since(self.epoch),
            duration,
            state,
            retries: 0,
            pid: 0,
        });
    }

    /// The trace so far, taken out.
    pub(crate) fn take_trace(&self) -> TraceLog {
        std::mem::replace(&mut *self.trace.lock(), TraceLog::new(1))
    }

    /// Every part's stats as they are now.
    pub(crate) fn part_stats(&self) -> Vec<crate::report::PartStats> {
        let mut timings = self.samples.summaries().into_iter();
        // The plan's name and coordinate arrays, not its parts: a large
        // cycle's report reads a few bytes per part, in order.
        self.plan
            .names
            .iter()
            .zip(self.plan.coords.iter())
            .enumerate()
            .map(|(id, (name, &coord))| crate::report::PartStats {
                name: Arc::clone(name),
                coord,
                states: self.state_counts(id),
                retries: self.cold[id].retries.load(Ordering::Relaxed),
                timing: timings.next().unwrap_or_default(),
            })
            .collect()
    }

    /// What iteration `iteration` of `lane`, which took `duration`, came
    /// to: every part's state, output and error.
    pub(crate) fn iteration_report(
        &self,
        lane: u32,
        iteration: u64,
        duration: Duration,
    ) -> crate::report::IterationReport {
        let parts = self.plan.parts.len();
        let mut states = vec![None; parts];
        let mut outputs = vec![None; parts];
        let mut errors = vec![None; parts];
        // The nodes' lines, not the plan's parts: a large cycle's report
        // stays in fewer cache lines.
        for (id, node) in self.nodes[..parts].iter().enumerate() {
            if node.lane != lane {
                continue;
            }
            let id32 = id as u32;
            states[id] = self.state(id32);
            outputs[id] = self.output(id32, lane);
            errors[id] = self.error(id32);
        }
        crate::report::IterationReport {
            lane,
            iteration,
            duration,
            error_state: self.lane_in_error(lane as usize),
            names: Arc::clone(&self.plan.names),
            coords: Arc::clone(&self.plan.coords),
            by_name: Arc::clone(&self.plan.by_name),
            by_coord: Arc::clone(&self.plan.by_coord),
            tree: Arc::clone(&self.plan.tree_children),
            states,
            outputs,
            errors,
        }
    }
}
