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
//! Before a part first runs ahead, its pace is learnt from a run the
//! stats time, or, with stats and trace off, from its next run after it
//! was first a candidate. Its runs ahead are then timed (two clock reads
//! around the part's work; not a stats sample): every one, until its last
//! [`SAMPLED_AFTER`] timed runs in a row were all quick; from then on, one
//! in about 7: after each timed run, the next 3 to 9 (at random, so that
//! no periodic pattern of slow runs keeps escaping the clock) run ahead
//! untimed. Reading the clock costs more than a no-op part's run (the
//! time-stamp counter takes some 10 ns a read under a hypervisor): timed
//! in every run ahead, a diamond of no-op parts took a quarter longer.
//! A timed run that is not quick (the part is slow, or was preempted)
//! stops it running ahead for its next [`SLOW_FORKS`] forks, after which
//! its pace is learnt again, and its streak of quick runs starts over. A
//! cycle keeps its parts' paces from one run to the next.
//!
//! So a part that has long been quick delays its sibling by at most its
//! first 10 runs when it turns slow. A part slow more often than about
//! once in [`SAMPLED_AFTER`] runs never reaches the streak: it is timed in
//! every run ahead, and delays its sibling by about one of its slow runs
//! in [`SLOW_FORKS`] forks. A part slow more rarely than that (once in a
//! few hundred runs) is sampled between its slow runs, and about 6 in 7
//! of them run ahead untimed, each delaying its sibling by that one run:
//! the price of not reading the clock around every quick run, and at
//! most one slow run in [`SAMPLED_AFTER`]. A part that runs ahead and
//! then waits for its sibling to start waits for ever, as it would on a
//! pool of one thread: parts of parallel branches may run at the same
//! time, and must not wait for one another.
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

/// Quick timed runs in a row after which a part's runs ahead are timed
/// one in about 7, not all (see the module's docs).
const SAMPLED_AFTER: u8 = 64;

/// After a slow timed run, the forks a part does not run ahead in before
/// its pace is learnt again: a part slow now and then delays its sibling
/// at most once in about this many forks (learning its pace again costs
/// one timed run that does not run ahead).
const SLOW_FORKS: u16 = 256;

/// A node's pace, in its `NodeRt::pace`: not known yet.
pub(super) const UNKNOWN: u16 = 0;
/// `QUICK + n`: its last `n` timed runs (counted up to
/// [`SAMPLED_AFTER`]) were quick.
const QUICK: u16 = 1024;
/// The most of those counted.
const QUICK_MAX: u16 = QUICK + SAMPLED_AFTER as u16;
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
            QUICK..=QUICK_MAX if self.durable.is_none() => {
                let untimed = n.untimed_ahead.load(Ordering::Relaxed);
                if untimed == 0 {
                    n.probe.store(true, Ordering::Relaxed);
                } else {
                    n.untimed_ahead.store(untimed - 1, Ordering::Relaxed);
                }
                true
            }
            UNKNOWN => {
                // With stats or trace on, their timed runs teach it.
                if !self.options.stats && !self.options.trace {
                    n.probe.store(true, Ordering::Relaxed);
                }
                false
            }
            QUICK..=QUICK_MAX | NEVER => false,
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
        if pace == UNKNOWN || (QUICK..=QUICK_MAX).contains(&pace) {
            let streak = if took < QUICK_RUN {
                // One more quick timed run in a row.
                let streak = pace.saturating_sub(QUICK) + 1;
                n.pace
                    .store(QUICK + streak.min(QUICK_MAX - QUICK), Ordering::Relaxed);
                streak
            } else {
                n.pace.store(SLOW + SLOW_FORKS, Ordering::Relaxed);
                0
            };
            // At most `QUICK_MAX - QUICK`, which is `SAMPLED_AFTER`.
            let streak = streak as u8;
            n.untimed_ahead
                .store(untimed_after(streak, node, took), Ordering::Relaxed);
        }
    }
}

/// The runs ahead part `node` makes untimed after a timed run that took
/// `took`, `streak` quick timed runs in a row: none before
/// [`SAMPLED_AFTER`], then 3 to 9, picked by a generator of the thread's
/// own stirred with the part and the time (so a coarse clock, whose runs
/// all read 0 ns, still gets a varying gap).
fn untimed_after(streak: u8, node: u32, took: Duration) -> u8 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0x853C_49E6_748F_EA9B) };
    }
    if streak < SAMPLED_AFTER {
        return 0;
    }
    let stir = u64::from(took.subsec_nanos()) ^ (u64::from(node) << 32);
    let mixed = STATE.with(|state| {
        // A step of SplitMix64 from the thread's state, stirred.
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15) ^ stir;
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    });
    3 + (mixed % 7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_long_quick_is_timed_one_run_ahead_in_4_to_10() {
        let took = Duration::from_nanos;
        // Short of the streak: every run ahead timed.
        for streak in 0..SAMPLED_AFTER {
            assert_eq!(untimed_after(streak, 7, took(250)), 0);
        }
        // Past it: 3 to 9 untimed, all of them seen, whether the time
        // varies or a coarse clock reads the same every time.
        let varies: fn(u64) -> Duration = |ns| Duration::from_nanos(100 + ns);
        let coarse: fn(u64) -> Duration = |_| Duration::ZERO;
        for clock in [varies, coarse] {
            let gaps: std::collections::BTreeSet<u8> = (0..1000)
                .map(|ns| untimed_after(SAMPLED_AFTER, 7, clock(ns)))
                .collect();
            let gaps: Vec<u8> = gaps.into_iter().collect();
            assert_eq!(gaps, (3..=9).collect::<Vec<u8>>());
        }
    }
}
