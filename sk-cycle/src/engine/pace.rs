//! Running a quick part ahead of its sibling: when a node's end makes two
//! successors ready, the one its thread would run is run alone first if
//! it is known to be quick, and only then is the other offered to idle
//! threads (`rayon::join`), or simply run next if nothing else became
//! ready.
//!
//! Offering a node costs its thread a push and a pop on its deque, and an
//! idle thread polling that deque moves the deque's cache line between
//! cores on every push: for parts of a few tens of nanoseconds (a diamond
//! of no-op parts on two threads) that is most of an iteration's time, and
//! a steal costs more than such a part takes. Running the quick part first
//! delays its sibling by that part's run, which is shorter than a steal.
//!
//! A part is quick while its timed runs take less than [`QUICK_RUN`].
//! Every run ahead is timed (two clock reads around the part's work, a
//! fraction of what a fork costs; not a stats sample); before a part
//! first runs ahead, its pace is learnt from a run the stats time, or,
//! with stats and trace off, from its next run after it was first a
//! candidate. A timed run that is not quick (the part is
//! slow, or was preempted) stops it running ahead for its next
//! [`SLOW_FORKS`] forks, after which its pace is learnt again. A cycle
//! keeps its parts' paces from one run to the next.
//!
//! So a part that has been quick delays its sibling by one run when it
//! turns slow, and a part slow now and then by one of those runs in
//! about [`SLOW_FORKS`] forks. A part that runs ahead and then waits for
//! its sibling to start waits for ever, as it would on a pool of one
//! thread: parts of parallel branches may run at the same time, and must
//! not wait for one another.
//!
//! Nodes that are not parts (a split's barriers) are always quick, but for
//! those that fan out wider than the pool is split for; parts that run off
//! the fast path (validators, retries, gates, timeouts, processes, ...)
//! never are. A durable run does not run parts ahead (its ends are written
//! to its journal before its successors go on).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Runtime, WIDE_FANOUT};
use crate::plan::Plan;

/// A part whose timed runs take less than this runs ahead of its sibling:
/// about what taking the sibling from the deque costs an idle thread (a
/// steal, a wake-up), and leaves room for unoptimized builds.
pub(super) const QUICK_RUN: Duration = Duration::from_micros(1);

/// After a slow timed run, the forks a part does not run ahead in before
/// its pace is learnt again: a part slow now and then delays its sibling
/// at most once in about this many forks (learning its pace again costs
/// one timed run that does not run ahead).
const SLOW_FORKS: u16 = 256;

/// A node's pace, in its `NodeRt::pace`: not known yet.
pub(super) const UNKNOWN: u16 = 0;
/// Its timed runs were quick.
pub(super) const QUICK: u16 = 1;
/// Never run ahead (not on the fast path, or fans out wide).
pub(super) const NEVER: u16 = 2;
/// Always run ahead: a barrier, no work of its own.
pub(super) const ALWAYS: u16 = 3;
/// `SLOW + n`: a timed run was slow; `n` more forks before its pace is
/// learnt again.
const SLOW: u16 = 4;

/// The pace node `node` of `plan` starts a run with.
pub(super) fn initial(plan: &Plan, node: u32) -> u16 {
    if plan.successors(node).len() > WIDE_FANOUT {
        return NEVER;
    }
    match plan.parts.get(node as usize) {
        None => ALWAYS,
        Some(part) if part.plain.is_some() => UNKNOWN,
        Some(_) => NEVER,
    }
}

impl Runtime {
    /// Whether `node`, one of two successors made ready together, runs
    /// alone before the other is offered (see the module's docs). A part
    /// that does has that run timed (see `timing::start_clock`).
    #[inline(always)]
    pub(super) fn runs_ahead(&self, node: u32) -> bool {
        let n = &self.nodes[node as usize];
        match n.pace.load(Ordering::Relaxed) {
            ALWAYS => true,
            QUICK if self.durable.is_none() => {
                n.probe.store(true, Ordering::Relaxed);
                true
            }
            UNKNOWN => {
                // With stats or trace on, their timed runs teach it.
                if !self.options.stats && !self.options.trace {
                    n.probe.store(true, Ordering::Relaxed);
                }
                false
            }
            QUICK | NEVER => false,
            slow => {
                // One fork less before its pace is learnt again.
                let next = if slow == SLOW { UNKNOWN } else { slow - 1 };
                n.pace.store(next, Ordering::Relaxed);
                false
            }
        }
    }

    /// Notes that a timed run of part `node` took `took`.
    pub(super) fn note_pace(&self, node: u32, took: Duration) {
        let n = &self.nodes[node as usize];
        n.probe.store(false, Ordering::Relaxed);
        let pace = n.pace.load(Ordering::Relaxed);
        if pace == UNKNOWN || pace == QUICK {
            let now = if took < QUICK_RUN {
                QUICK
            } else {
                SLOW + SLOW_FORKS
            };
            n.pace.store(now, Ordering::Relaxed);
        }
    }
}
