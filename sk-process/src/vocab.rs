//! The words the whole crate shares: how a worker ended ([`Exit`]), a
//! supervised child's id ([`ChildId`]), the sides and resources of the
//! commander's budget ([`Side`], [`Resource`]) and the lifecycle hooks of
//! an `SkProcess` ([`Hook`]). A leaf: it imports nothing from the crate
//! but the [`Backend`] enum, so errors and every layer can name these
//! without depending on each other.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;

/// How a worker ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with status 0 (or its thread returned) — a clean stop.
    Normal,
    /// It exited with a non-zero status.
    Code(i32),
    /// It was killed by a signal (e.g. by a timeout, or from outside).
    Signal(i32),
    /// Its thread panicked, or its channel carried bad data.
    Failed(String),
}

impl Exit {
    /// Whether the worker ended cleanly.
    pub fn is_normal(&self) -> bool {
        matches!(self, Exit::Normal)
    }

    pub(crate) fn of(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => Exit::Normal,
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Failed(status.to_string()),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Normal => f.write_str("exited normally"),
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// A side of the commander's budget.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Side {
    /// Framework work (Suitkaise's own workers).
    Internal,
    /// User work.
    #[default]
    External,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Internal => "internal",
            Side::External => "external",
        })
    }
}

/// What a budget slot is for.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A worker process.
    Processes,
    /// A worker thread.
    Threads,
}

impl Resource {
    /// The resource a worker on `backend` uses.
    pub fn of(backend: Backend) -> Resource {
        match backend {
            Backend::Thread => Resource::Threads,
            Backend::Process => Resource::Processes,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Processes => "process",
            Resource::Threads => "thread",
        })
    }
}

/// A child of one supervisor. Ids are given in start order and never
/// reused; a restarted child keeps its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildId(pub(crate) u64);

impl ChildId {
    /// The id as a number (the n-th child the supervisor was given,
    /// counting from 1).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ChildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One of the lifecycle hooks of an [`SkProcess`](crate::SkProcess).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Hook {
    /// [`SkProcess::prerun`](crate::SkProcess::prerun).
    Prerun,
    /// [`SkProcess::run`](crate::SkProcess::run).
    Run,
    /// [`SkProcess::postrun`](crate::SkProcess::postrun).
    Postrun,
    /// [`SkProcess::onfinish`](crate::SkProcess::onfinish).
    Onfinish,
    /// [`SkProcess::result`](crate::SkProcess::result).
    Result,
    /// [`SkProcess::error`](crate::SkProcess::error).
    Error,
}

impl Hook {
    /// Every hook, in the order a process calls them.
    pub const ALL: [Hook; 6] = [
        Hook::Prerun,
        Hook::Run,
        Hook::Postrun,
        Hook::Onfinish,
        Hook::Result,
        Hook::Error,
    ];

    /// The hook's name, as in the trait (`"prerun"`, `"run"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Prerun => "prerun",
            Hook::Run => "run",
            Hook::Postrun => "postrun",
            Hook::Onfinish => "onfinish",
            Hook::Result => "result",
            Hook::Error => "error",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Hook::Prerun => 0,
            Hook::Run => 1,
            Hook::Postrun => 2,
            Hook::Onfinish => 3,
            Hook::Result => 4,
            Hook::Error => 5,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
