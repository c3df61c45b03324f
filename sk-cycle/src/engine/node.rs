//! A run's per-node state: the line the fast path reads and writes, the
//! predecessor counters, the rest, and the arrays a cycle keeps between
//! runs.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use sk_core::Value;

use crate::error::PartError;
use crate::mode::PartState;
use crate::plan::Plan;

/// How many iterations a part ended in each state but
/// [`Succeeded`](PartState::Succeeded), which its [`NodeRt`] counts: the
/// common end touches only the node's own cache line, and a run makes
/// tallies only for parts that end otherwise.
#[derive(Default)]
pub(super) struct Tally(pub(super) [AtomicU64; PartState::ALL.len()]);

/// One more of `count`. One thread completes a node per iteration, and
/// iterations of a lane are ordered: a plain increment, not a
/// read-modify-write.
#[inline]
pub(super) fn bump(count: &AtomicU64) {
    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// No input part (see [`NodeRt::input_from`]).
pub(super) const NO_INPUT: u32 = u32::MAX;

/// A node as the run's fast path sees it, in one cache line: its state in
/// the current iteration, and what running it as a plain part needs of
/// the plan (copied here when the run starts, so that a part's run does
/// not also miss on its `PlanPart` in a large cycle). What the fast path
/// does not touch is in [`NodeCold`].
#[repr(align(64))]
pub(super) struct NodeRt {
    pub(super) poison: AtomicU8,
    pub(super) state: AtomicU8,
    pub(super) has_output: AtomicBool,
    pub(super) has_error: AtomicBool,
    /// Whether it runs ahead of a sibling (see `pace.rs`; kept from one
    /// run of the cycle to the next), and whether its next run is timed
    /// to learn that, and the runs ahead it makes untimed before its
    /// next timed one.
    pub(super) pace: AtomicU16,
    pub(super) probe: AtomicBool,
    pub(super) untimed_ahead: AtomicU8,
    /// Its lane, and the part whose output is its input ([`NO_INPUT`]:
    /// none); as in the plan.
    pub(super) lane: u32,
    pub(super) input_from: u32,
    /// Iterations it succeeded in (other ends are in the run's tallies).
    pub(super) succeeded: AtomicU64,
    /// When stats are on (see `timing::start_clock`): its runs left
    /// untimed before the next timed one, and the runs that one stands
    /// for (0: it has not run in this run yet).
    pub(super) untimed: AtomicU32,
    pub(super) timed_runs: AtomicU32,
    /// As [`PlanPart::plain`](crate::plan::PlanPart::plain).
    pub(super) plain: Option<Arc<crate::part::PartFn>>,
    pub(super) output: Mutex<Option<Arc<Value>>>,
}

impl NodeRt {
    /// Node `node` of `plan`, before its first iteration.
    pub(super) fn new(plan: &Plan, node: u32) -> NodeRt {
        let part = plan.parts.get(node as usize);
        NodeRt {
            poison: AtomicU8::new(0),
            state: AtomicU8::new(0),
            has_output: AtomicBool::new(false),
            has_error: AtomicBool::new(false),
            pace: AtomicU16::new(super::pace::initial(plan, node)),
            probe: AtomicBool::new(false),
            untimed_ahead: AtomicU8::new(0),
            lane: plan.node_lane[node as usize],
            input_from: part.and_then(|p| p.input_from).unwrap_or(NO_INPUT),
            succeeded: AtomicU64::new(0),
            untimed: AtomicU32::new(0),
            timed_runs: AtomicU32::new(0),
            plain: part.and_then(|p| p.plain.clone()),
            output: Mutex::new(None),
        }
    }

    /// Back to the state [`NodeRt::new`] made (its plan fields kept), but
    /// for its pace (what its runs so far say of it) and its stats
    /// countdown where `carry_timing` (a lane too large to
    /// be timed exactly, see `timing::carries_timing`): the next run goes
    /// on counting down from where this one stopped, its next timed run
    /// standing for that run's runs only.
    pub(super) fn reset(&mut self, carry_timing: bool) {
        *self.poison.get_mut() = 0;
        *self.state.get_mut() = 0;
        *self.has_output.get_mut() = false;
        *self.has_error.get_mut() = false;
        *self.probe.get_mut() = false;
        *self.succeeded.get_mut() = 0;
        let untimed = *self.untimed.get_mut();
        if carry_timing && *self.timed_runs.get_mut() != 0 {
            // The runs this run skipped since its last timed one are not
            // counted (they ended the run): the next timed run stands for
            // the next run's own, the untimed ones before it and itself.
            *self.timed_runs.get_mut() = untimed + 1;
        } else {
            *self.untimed.get_mut() = 0;
            *self.timed_runs.get_mut() = 0;
        }
        *self.output.get_mut() = None;
    }
}

/// Resets every node of `plan` for the cycle's next run (see
/// [`NodeRt::reset`]), carrying the stats countdown in the lanes that
/// carry it.
fn reset_all(nodes: &mut [NodeRt], plan: &Plan) {
    for n in nodes {
        let lane = &plan.lanes[n.lane as usize];
        n.reset(super::timing::carries_timing(lane.nodes.len()));
    }
}

/// Each node's count of predecessors yet to end in the current iteration,
/// sixteen to a cache line, apart from the nodes' own lines. A node's
/// predecessors count it down where they end, and the last of them sets
/// it back to the plan's count for the next iteration (so an iteration
/// begins without touching them). In a large cycle, a counter inside the
/// node's line missed the cache there for most nodes (in a 512x512
/// wavefront, the node lines are 16 MB, each rewritten as the iteration
/// began, and that miss took half the run), and for a node of two
/// predecessors, the line the first of them fetched for its counter was
/// wasted (the second runs the node). Packed, a node's successors'
/// counters are mostly on lines its neighbours just used.
#[derive(Default)]
pub(super) struct Pending(Box<[PendingLine]>);

/// One line of [`Pending`]'s counters (its own: nothing else shares it).
#[repr(align(64))]
struct PendingLine([AtomicU32; 16]);

impl Pending {
    /// The counters of `plan`'s nodes, each at its count of predecessors.
    pub(super) fn new(plan: &Plan) -> Pending {
        let lines = plan.node_count.div_ceil(16);
        let mut pending = Pending(
            (0..lines)
                .map(|_| PendingLine(Default::default()))
                .collect(),
        );
        pending.reset(plan);
        pending
    }

    /// Sets every counter back to its node's count of predecessors.
    fn reset(&mut self, plan: &Plan) {
        let counters = self.0.iter_mut().flat_map(|line| line.0.iter_mut());
        for (counter, &count) in counters.zip(&plan.pred_count) {
            *counter.get_mut() = count;
        }
    }

    /// Node `node`'s counter.
    #[inline(always)]
    pub(super) fn of(&self, node: u32) -> &AtomicU32 {
        &self.0[(node / 16) as usize].0[(node % 16) as usize]
    }
}

/// A run's per-node arrays, handed to the plan when the run is dropped
/// for the cycle's next run: a large cycle's run then writes over memory
/// it already has, rather than faulting fresh pages in (which the
/// allocator may have given back to the system in between).
pub(super) struct Spare {
    nodes: Box<[NodeRt]>,
    cold: Box<[NodeCold]>,
    pending: Pending,
}

/// A run's per-node arrays.
pub(super) type Arrays = (Box<[NodeRt]>, Box<[NodeCold]>, Pending);

impl Spare {
    /// The arrays a run of `plan` starts with: its last run's, reset when
    /// that run was dropped, or new ones.
    pub(super) fn take(plan: &Plan) -> Arrays {
        let spare = plan.spare.lock().take();
        match spare.and_then(|s| s.downcast::<Spare>().ok()) {
            Some(spare) => (spare.nodes, spare.cold, spare.pending),
            None => (
                (0..plan.node_count as u32)
                    .map(|node| NodeRt::new(plan, node))
                    .collect(),
                (0..plan.node_count).map(|_| NodeCold::default()).collect(),
                Pending::new(plan),
            ),
        }
    }

    /// Resets a dropped run's `arrays` and hands them to `plan` for its
    /// next run; `unusual`: some part of the run ended otherwise than
    /// succeeded (see `Runtime::mark_unusual`).
    pub(super) fn keep(plan: &Plan, arrays: Arrays, unusual: bool) {
        let (mut nodes, mut cold, mut pending) = arrays;
        reset_all(&mut nodes, plan);
        // A run's iterations set the counters back as they go; this holds
        // the next run to that however this one ended.
        pending.reset(plan);
        // Cold state is written only by timeouts, rate limits, retries and
        // ends other than success: a run of none of those left it as new.
        let touched = unusual || plan.any_retry || plan.any_timeout;
        if touched || !plan.rates.is_empty() {
            cold.fill_with(NodeCold::default);
        }
        let spare = Spare {
            nodes,
            cold,
            pending,
        };
        *plan.spare.lock() = Some(Box::new(spare));
    }
}

/// The rest of a node's state, off the fast path.
#[derive(Default)]
pub(super) struct NodeCold {
    /// The execution that may complete a timed part (0: none).
    pub(super) claim: AtomicU64,
    /// Its rate limiters' turn has come (it was put off until then).
    pub(super) rate_cleared: AtomicBool,
    pub(super) error: Mutex<Option<Arc<PartError>>>,
    /// Attempts beyond each iteration's first.
    pub(super) retries: AtomicU64,
    /// Its ends but successes, made at its first such end.
    pub(super) tally: OnceLock<Box<Tally>>,
}

#[cfg(test)]
mod tests {
    use super::NodeRt;

    /// The fast path's per-node state fits one cache line.
    #[test]
    fn a_node_line_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<NodeRt>(), 64);
    }
}
