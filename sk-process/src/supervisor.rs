//! [`Supervisor`]: the OTP restart rules as a pure state machine.
//!
//! The supervisor starts nothing and owns no threads. It is told which
//! children exist (in start order) and, when one ends, how it ended and
//! when; it answers with a [`Decision`]. The
//! [`ProcessManager`](crate::ProcessManager) carries the decisions out with
//! real workers. Time is passed in (`now`), so the rules can be tested
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::vocab::{ChildId, Exit};

/// The restarts allowed within [`DEFAULT_WITHIN`] before a supervisor
/// gives up (escalates).
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// The window [`DEFAULT_MAX_RESTARTS`] is counted in.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(5);

/// Which children are restarted when one ends and must be restarted.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RestartStrategy {
    /// Only the child that ended: the children are independent.
    #[default]
    OneForOne,
    /// Every child: each depends on all the others.
    OneForAll,
    /// The child that ended and every child started after it: each child
    /// depends on the ones started before it.
    RestForOne,
}

/// Whether a child is restarted after it ends.
///
/// As in OTP, a temporary child in a restart group (under
/// [`RestartStrategy::OneForAll`] and [`RestartStrategy::RestForOne`]) is
/// stopped with its group but not started again: it is removed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always restarted, even after a normal exit.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (see [`Exit::is_normal`]);
    /// removed after a normal one.
    Transient,
    /// Never restarted; removed when it ends.
    Temporary,
}

/// What to do about a child that ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing: the child is unknown, or the supervisor has already given
    /// up.
    Ignore,
    /// The child is not restarted; it is no longer supervised.
    Remove(ChildId),
    /// Stop the children of `stop` that still run (in reverse start
    /// order), then start those of `start` again, in start order. The
    /// children stopped and not started again (temporary ones) are no
    /// longer supervised. Both lists hold the child that ended.
    Restart {
        /// The restart group, in start order.
        stop: Vec<ChildId>,
        /// The group without its temporary children, in start order.
        start: Vec<ChildId>,
    },
    /// Restarting would exceed the intensity: stop every child and fail.
    /// The supervisor ignores every later exit.
    Escalate {
        /// The restarts already made within the window (the limit).
        restarts: u32,
        /// The window.
        within: Duration,
    },
}

/// The OTP restart rules: a strategy, a restart type per child, and an
/// intensity (at most `max_restarts` restarts within `within`).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use sk_process::{Decision, Exit, Restart, RestartStrategy, Supervisor};
///
/// let mut sup = Supervisor::new(RestartStrategy::RestForOne);
/// let a = sup.add(Restart::Permanent);
/// let b = sup.add(Restart::Permanent);
/// let c = sup.add(Restart::Permanent);
/// let now = Instant::now();
/// let restart = |ids: &[_]| Decision::Restart { stop: ids.to_vec(), start: ids.to_vec() };
/// assert_eq!(sup.on_exit(b, &Exit::Code(1), now), restart(&[b, c]));
/// assert_eq!(sup.on_exit(a, &Exit::Code(1), now), restart(&[a, b, c]));
/// ```
#[derive(Clone, Debug)]
pub struct Supervisor {
    strategy: RestartStrategy,
    max_restarts: u32,
    within: Duration,
    /// In start order.
    children: Vec<(ChildId, Restart)>,
    /// When the restarts of the current window were made, oldest first.
    history: VecDeque<Instant>,
    next_id: u64,
    failed: bool,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new(RestartStrategy::default())
    }
}

impl Supervisor {
    /// A supervisor with no children and the default intensity
    /// ([`DEFAULT_MAX_RESTARTS`] within [`DEFAULT_WITHIN`]).
    pub fn new(strategy: RestartStrategy) -> Supervisor {
        Supervisor {
            strategy,
            max_restarts: DEFAULT_MAX_RESTARTS,
            within: DEFAULT_WITHIN,
            children: Vec::new(),
            history: VecDeque::new(),
            next_id: 1,
            failed: false,
        }
    }

    /// Allows at most `max_restarts` restarts within `within`; the restart
    /// that would exceed it escalates instead. `max_restarts == 0` means
    /// never restart.
    pub fn with_intensity(mut self, max_restarts: u32, within: Duration) -> Supervisor {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> RestartStrategy {
        self.strategy
    }

    /// The intensity: `(max_restarts, within)`.
    pub fn intensity(&self) -> (u32, Duration) {
        (self.max_restarts, self.within)
    }

    /// Adds a child, last in start order.
    pub fn add(&mut self, restart: Restart) -> ChildId {
        let id = ChildId(self.next_id);
        self.next_id += 1;
        self.children.push((id, restart));
        id
    }

    /// Stops supervising `child`; whether it was supervised.
    pub fn remove(&mut self, child: ChildId) -> bool {
        let before = self.children.len();
        self.children.retain(|(id, _)| *id != child);
        self.children.len() != before
    }

    /// The supervised children, in start order.
    pub fn children(&self) -> impl Iterator<Item = ChildId> + '_ {
        self.children.iter().map(|(id, _)| *id)
    }

    /// The restart type of `child`, if it is supervised.
    pub fn restart_of(&self, child: ChildId) -> Option<Restart> {
        self.children
            .iter()
            .find(|(id, _)| *id == child)
            .map(|(_, r)| *r)
    }

    /// Whether the supervisor has escalated (and ignores every exit).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Decides what to do about `child`, which ended with `exit` at `now`.
    ///
    /// A [`Decision::Remove`] also removes the child from the supervisor; a
    /// [`Decision::Restart`] counts as one restart toward the intensity,
    /// however many children it names.
    pub fn on_exit(&mut self, child: ChildId, exit: &Exit, now: Instant) -> Decision {
        if self.failed {
            return Decision::Ignore;
        }
        let Some(position) = self.children.iter().position(|(id, _)| *id == child) else {
            return Decision::Ignore;
        };
        let restart = match self.children[position].1 {
            Restart::Permanent => true,
            Restart::Transient => !exit.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            self.children.remove(position);
            return Decision::Remove(child);
        }
        while let Some(&oldest) = self.history.front() {
            if now.saturating_duration_since(oldest) >= self.within {
                self.history.pop_front();
            } else {
                break;
            }
        }
        if self.history.len() >= self.max_restarts as usize {
            self.failed = true;
            return Decision::Escalate {
                restarts: self.max_restarts,
                within: self.within,
            };
        }
        self.history.push_back(now);
        let group = match self.strategy {
            RestartStrategy::OneForOne => position..position + 1,
            RestartStrategy::OneForAll => 0..self.children.len(),
            RestartStrategy::RestForOne => position..self.children.len(),
        };
        let stop: Vec<ChildId> = self.children[group.clone()]
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let start: Vec<ChildId> = self.children[group]
            .iter()
            .filter(|(id, r)| *id == child || *r != Restart::Temporary)
            .map(|(id, _)| *id)
            .collect();
        self.children
            .retain(|(id, r)| *id == child || *r != Restart::Temporary || !stop.contains(id));
        Decision::Restart { stop, start }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRASH: Exit = Exit::Code(1);

    /// A restart of `ids`, none of them temporary.
    fn restart(ids: &[ChildId]) -> Decision {
        Decision::Restart {
            stop: ids.to_vec(),
            start: ids.to_vec(),
        }
    }

    fn three(strategy: RestartStrategy, restart: Restart) -> (Supervisor, [ChildId; 3]) {
        let mut sup = Supervisor::new(strategy);
        let ids = [sup.add(restart), sup.add(restart), sup.add(restart)];
        (sup, ids)
    }

    #[test]
    fn one_for_one_restarts_only_the_child_that_ended() {
        let (mut sup, [a, b, c]) = three(RestartStrategy::OneForOne, Restart::Permanent);
        let now = Instant::now();
        assert_eq!(sup.on_exit(b, &CRASH, now), restart(&[b]));
        assert_eq!(sup.on_exit(a, &CRASH, now), restart(&[a]));
        assert_eq!(sup.on_exit(c, &CRASH, now), restart(&[c]));
    }

    #[test]
    fn one_for_all_restarts_every_child_in_start_order() {
        let (mut sup, [a, b, c]) = three(RestartStrategy::OneForAll, Restart::Permanent);
        assert_eq!(sup.on_exit(c, &CRASH, Instant::now()), restart(&[a, b, c]));
    }

    #[test]
    fn rest_for_one_restarts_the_child_and_those_started_after_it() {
        let (mut sup, [a, b, c]) = three(RestartStrategy::RestForOne, Restart::Permanent);
        let now = Instant::now();
        assert_eq!(sup.on_exit(b, &CRASH, now), restart(&[b, c]));
        assert_eq!(sup.on_exit(c, &CRASH, now), restart(&[c]));
        assert_eq!(sup.on_exit(a, &CRASH, now), restart(&[a, b, c]));
    }

    #[test]
    fn restart_types_decide_after_normal_and_abnormal_exits() {
        let strategies = [
            RestartStrategy::OneForOne,
            RestartStrategy::OneForAll,
            RestartStrategy::RestForOne,
        ];
        for strategy in strategies {
            for (kind, after_normal, after_crash) in [
                (Restart::Permanent, true, true),
                (Restart::Transient, false, true),
                (Restart::Temporary, false, false),
            ] {
                for (exit, expected) in [(Exit::Normal, after_normal), (CRASH, after_crash)] {
                    let mut sup = Supervisor::new(strategy);
                    let child = sup.add(kind);
                    let decision = sup.on_exit(child, &exit, Instant::now());
                    let want = if expected {
                        restart(&[child])
                    } else {
                        Decision::Remove(child)
                    };
                    assert_eq!(decision, want, "{strategy:?} {kind:?} {exit:?}");
                    assert_eq!(
                        sup.children().count(),
                        usize::from(expected),
                        "a removed child is no longer supervised"
                    );
                }
            }
        }
        // Signals and failures are abnormal too.
        let mut sup = Supervisor::default();
        let t = sup.add(Restart::Transient);
        for exit in [Exit::Signal(9), Exit::Failed("panicked".into())] {
            assert_eq!(sup.on_exit(t, &exit, Instant::now()), restart(&[t]));
        }
    }

    #[test]
    fn temporary_siblings_are_stopped_with_their_group_and_removed() {
        for strategy in [RestartStrategy::OneForAll, RestartStrategy::RestForOne] {
            let mut sup = Supervisor::new(strategy);
            let a = sup.add(Restart::Permanent);
            let temp = sup.add(Restart::Temporary);
            let trans = sup.add(Restart::Transient);
            assert_eq!(
                sup.on_exit(a, &CRASH, Instant::now()),
                Decision::Restart {
                    stop: vec![a, temp, trans],
                    start: vec![a, trans],
                },
                "{strategy:?}"
            );
            assert_eq!(
                sup.children().collect::<Vec<_>>(),
                [a, trans],
                "{strategy:?}: the temporary child is no longer supervised"
            );
            assert_eq!(
                sup.on_exit(temp, &Exit::Signal(9), Instant::now()),
                Decision::Ignore,
                "{strategy:?}: its stop is not an exit to act on"
            );
        }
        // Under rest-for-one a temporary child started before the one that
        // ended is outside the group.
        let mut sup = Supervisor::new(RestartStrategy::RestForOne);
        let temp = sup.add(Restart::Temporary);
        let b = sup.add(Restart::Permanent);
        assert_eq!(sup.on_exit(b, &CRASH, Instant::now()), restart(&[b]));
        assert_eq!(sup.children().collect::<Vec<_>>(), [temp, b]);
    }

    #[test]
    fn exactly_max_restarts_in_the_window_are_allowed_and_one_more_escalates() {
        for strategy in [
            RestartStrategy::OneForOne,
            RestartStrategy::OneForAll,
            RestartStrategy::RestForOne,
        ] {
            let mut sup = Supervisor::new(strategy).with_intensity(3, Duration::from_secs(5));
            let child = sup.add(Restart::Permanent);
            let t0 = Instant::now();
            for i in 0..3 {
                let at = t0 + Duration::from_secs(i);
                assert_eq!(
                    sup.on_exit(child, &CRASH, at),
                    restart(&[child]),
                    "{strategy:?}: restart {i}"
                );
            }
            assert_eq!(
                sup.on_exit(child, &CRASH, t0 + Duration::from_millis(4999)),
                Decision::Escalate {
                    restarts: 3,
                    within: Duration::from_secs(5)
                }
            );
            assert!(sup.is_failed());
            assert_eq!(
                sup.on_exit(child, &CRASH, t0 + Duration::from_secs(60)),
                Decision::Ignore,
                "a failed supervisor ignores later exits"
            );
        }
    }

    #[test]
    fn old_restarts_age_out_of_the_window() {
        let mut sup = Supervisor::default().with_intensity(3, Duration::from_secs(5));
        let child = sup.add(Restart::Permanent);
        let t0 = Instant::now();
        for s in [0, 1, 2] {
            let at = t0 + Duration::from_secs(s);
            assert_eq!(sup.on_exit(child, &CRASH, at), restart(&[child]));
        }
        // The restart at t0 is exactly `within` old at t0 + 5 s: out.
        let at = t0 + Duration::from_secs(5);
        assert_eq!(sup.on_exit(child, &CRASH, at), restart(&[child]));
        // Now t0+1, t0+2 and t0+5 are in the window: a fourth escalates.
        let at = t0 + Duration::from_millis(5500);
        assert!(matches!(
            sup.on_exit(child, &CRASH, at),
            Decision::Escalate { restarts: 3, .. }
        ));
    }

    #[test]
    fn a_one_for_all_restart_counts_once() {
        let mut sup = Supervisor::new(RestartStrategy::OneForAll).with_intensity(2, DEFAULT_WITHIN);
        let ids = [sup.add(Restart::Permanent), sup.add(Restart::Permanent)];
        let now = Instant::now();
        assert_eq!(sup.on_exit(ids[0], &CRASH, now), restart(&ids));
        assert_eq!(sup.on_exit(ids[1], &CRASH, now), restart(&ids));
        assert!(matches!(
            sup.on_exit(ids[0], &CRASH, now),
            Decision::Escalate { restarts: 2, .. }
        ));
    }

    #[test]
    fn zero_intensity_never_restarts_but_still_removes() {
        let mut sup = Supervisor::default().with_intensity(0, DEFAULT_WITHIN);
        let p = sup.add(Restart::Permanent);
        let t = sup.add(Restart::Temporary);
        let now = Instant::now();
        assert_eq!(sup.on_exit(t, &CRASH, now), Decision::Remove(t));
        assert!(matches!(
            sup.on_exit(p, &Exit::Normal, now),
            Decision::Escalate { restarts: 0, .. }
        ));
    }

    #[test]
    fn unknown_and_removed_children_are_ignored() {
        let mut sup = Supervisor::default();
        let a = sup.add(Restart::Permanent);
        let b = sup.add(Restart::Permanent);
        assert!(sup.remove(a));
        assert!(!sup.remove(a));
        assert_eq!(sup.on_exit(a, &CRASH, Instant::now()), Decision::Ignore);
        assert_eq!(sup.children().collect::<Vec<_>>(), vec![b]);
        assert_eq!(sup.restart_of(b), Some(Restart::Permanent));
        assert_eq!(sup.restart_of(a), None);
        assert_eq!(b.to_string(), "#2");
    }
}
