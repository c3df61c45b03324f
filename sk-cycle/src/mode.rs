//! The small enums that say how parts synchronise, fail, and end.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the parts of a cycle (or of one split) wait for each other.
///
/// Set for the whole cycle with
/// [`CycleBuilder::sync`](crate::CycleBuilder::sync) or for one split with
/// [`Split::sync`](crate::Split::sync); a cycle-wide mode overrides every
/// split's.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SyncMode {
    /// Branches run free; the iteration ends when every branch has ended.
    #[default]
    Parallel,
    /// A barrier per level: no part of level L+1 starts before every part
    /// of level L (in scope) has ended.
    Level,
    /// The split's parts run one after another, in position order; each
    /// gets the split parent's output as input.
    Sequential,
    /// Like `Sequential`, but each part gets the previous part's output as
    /// input (the first gets the split parent's), checked by its validator.
    Pipeline,
    /// Each branch loops at its own pace, not waiting for the others or for
    /// the iteration boundary; it reads the latest output of its parent.
    Independent,
}

impl SyncMode {
    /// The mode's name as used in messages and pictures.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Parallel => "parallel",
            SyncMode::Level => "level",
            SyncMode::Sequential => "sequential",
            SyncMode::Pipeline => "pipeline",
            SyncMode::Independent => "independent",
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a part fails or times out.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorMode {
    /// Stop everything: parts not yet started are cancelled, running parts
    /// have their stop token set, the run ends in error.
    InstantFail,
    /// Dependents become upstream-failed; independent branches finish; the
    /// iteration ends in error.
    #[default]
    CleanFail,
    /// Dependents are skipped; the iteration does not end in error.
    Skip,
    /// Retry by the part's retry policy within the part's timeout; when
    /// attempts run out, act as `CleanFail`.
    Retry,
    /// Use the part's fallback value; dependents run; the iteration ends in
    /// error.
    FallbackFail,
    /// Use the part's fallback value; dependents run; no error.
    FallbackSkip,
    /// Pass the error downstream as the dependents' input and let them
    /// decide; no error by itself.
    Propagate,
}

impl ErrorMode {
    /// The mode's name as used in messages and pictures.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorMode::InstantFail => "instant fail",
            ErrorMode::CleanFail => "clean fail",
            ErrorMode::Skip => "skip",
            ErrorMode::Retry => "retry",
            ErrorMode::FallbackFail => "fallback fail",
            ErrorMode::FallbackSkip => "fallback skip",
            ErrorMode::Propagate => "propagate",
        }
    }

    /// Whether a failure under this mode puts the iteration in error state.
    pub fn is_error_state(self) -> bool {
        matches!(
            self,
            ErrorMode::InstantFail
                | ErrorMode::CleanFail
                | ErrorMode::Retry
                | ErrorMode::FallbackFail
        )
    }
}

impl fmt::Display for ErrorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a part ended an iteration. Every part ends every iteration in
/// exactly one of these.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum PartState {
    /// It ran and returned an output.
    Succeeded = 1,
    /// It failed or timed out and its fallback value stands in.
    SucceededWithFallback = 2,
    /// It ran and failed.
    Failed = 3,
    /// It did not run because a part it depends on failed.
    UpstreamFailed = 4,
    /// It did not run because a part it depends on failed in skip mode.
    Skipped = 5,
    /// It did not run because its condition (or an ancestor's) was false.
    NotTaken = 6,
    /// It overran its timeout; its stop token was set.
    TimedOut = 7,
    /// It did not run because the cycle was stopped (instant fail).
    Cancelled = 8,
}

impl PartState {
    /// All states, in declaration order.
    pub const ALL: [PartState; 8] = [
        PartState::Succeeded,
        PartState::SucceededWithFallback,
        PartState::Failed,
        PartState::UpstreamFailed,
        PartState::Skipped,
        PartState::NotTaken,
        PartState::TimedOut,
        PartState::Cancelled,
    ];

    /// Whether the part's work ran (it succeeded, fell back, failed or
    /// timed out), as opposed to an end decided without running it.
    pub(crate) fn ran(self) -> bool {
        matches!(
            self,
            PartState::Succeeded
                | PartState::SucceededWithFallback
                | PartState::Failed
                | PartState::TimedOut
        )
    }

    /// Whether the part did not end well: it failed, timed out, or did
    /// not run because of a failure or a stop.
    pub(crate) fn is_failure(self) -> bool {
        matches!(
            self,
            PartState::Failed
                | PartState::UpstreamFailed
                | PartState::Skipped
                | PartState::TimedOut
                | PartState::Cancelled
        )
    }

    /// The state's name as used in messages and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PartState::Succeeded => "succeeded",
            PartState::SucceededWithFallback => "succeeded with fallback",
            PartState::Failed => "failed",
            PartState::UpstreamFailed => "upstream failed",
            PartState::Skipped => "skipped",
            PartState::NotTaken => "not taken",
            PartState::TimedOut => "timed out",
            PartState::Cancelled => "cancelled",
        }
    }

    /// The state named `name` (as [`PartState::as_str`] gives it).
    pub(crate) fn from_name(name: &str) -> Option<PartState> {
        PartState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the part ran to an output its dependents can use.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            PartState::Succeeded | PartState::SucceededWithFallback
        )
    }

    pub(crate) fn from_u8(v: u8) -> Option<PartState> {
        PartState::ALL.get(usize::from(v).wrapping_sub(1)).copied()
    }

    /// Where the state is in [`PartState::ALL`].
    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize - 1
    }
}

impl fmt::Display for PartState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a part runs.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Placement {
    /// On the cycle's thread pool.
    #[default]
    Pool,
    /// On the named long-lived component thread; every part bound to one
    /// component runs on the same OS thread.
    Component(String),
    /// In a worker process from the run's pool of workers (or a worker
    /// thread under `SK_SPAWN_BACKEND=thread`).
    Process,
    /// In the named long-lived worker process; every part bound to it runs
    /// there, one at a time.
    NamedProcess(String),
    /// On a worker of the named remote group, on this machine or another,
    /// through the run's [`RemoteRunner`](crate::RemoteRunner) (see
    /// [`CyclePart::remote`](crate::CyclePart::remote)).
    Remote(String),
}

impl Placement {
    /// Whether the part runs outside this process.
    pub fn is_process(&self) -> bool {
        matches!(
            self,
            Placement::Process | Placement::NamedProcess(_) | Placement::Remote(_)
        )
    }

    /// Whether the part runs in a worker process of this machine's run.
    pub(crate) fn is_local_process(&self) -> bool {
        matches!(self, Placement::Process | Placement::NamedProcess(_))
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Pool => f.write_str("pool"),
            Placement::Component(name) => write!(f, "component \"{name}\""),
            Placement::Process => f.write_str("process"),
            Placement::NamedProcess(name) => write!(f, "process \"{name}\""),
            Placement::Remote(group) => write!(f, "remote \"{group}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_states_round_trip_through_u8() {
        for state in PartState::ALL {
            assert_eq!(PartState::from_u8(state as u8), Some(state));
        }
        assert_eq!(PartState::from_u8(0), None);
        assert_eq!(PartState::from_u8(9), None);
    }
}
