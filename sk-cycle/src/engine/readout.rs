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

    /// What every part counted so far, with a copy of its timings (a
    /// running run's snapshot).
    pub(crate) fn part_counts_now(&self) -> crate::report::PartCounts {
        crate::report::PartCounts {
            timings: self.samples.snapshot(),
            ..self.part_counts_but_timings()
        }
    }

    /// What every part counted, its timings taken out (the run has
    /// ended: its report takes them).
    pub(crate) fn part_counts(&self) -> crate::report::PartCounts {
        crate::report::PartCounts {
            timings: self.samples.take(),
            ..self.part_counts_but_timings()
        }
    }

    /// What every part counted but its timings. Reads each node's own
    /// line for its successes; the rest of a node's state only when some
    /// part ended otherwise or could retry (see [`Runtime::mark_unusual`]).
    fn part_counts_but_timings(&self) -> crate::report::PartCounts {
        let parts = self.plan.parts.len();
        let succeeded = self.nodes[..parts]
            .iter()
            .map(|n| n.succeeded.load(Ordering::Relaxed))
            .collect();
        let mut unusual = Vec::new();
        if self.plan.any_retry || self.unusual.load(Ordering::Acquire) {
            for id in 0..parts {
                let retries = self.cold[id].retries.load(Ordering::Relaxed);
                if retries > 0 || self.cold[id].tally.get().is_some() {
                    unusual.push((id as u32, self.state_counts(id), retries));
                }
            }
        }
        crate::report::PartCounts {
            names: Arc::clone(&self.plan.names),
            coords: Arc::clone(&self.plan.coords),
            succeeded,
            unusual,
            timings: crate::report::PartTimings::default(),
        }
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
