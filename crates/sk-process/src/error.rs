//! The errors of sk-process.

use std::fmt;
use std::io;
use std::time::Duration;

use sk_cereal::CerealError;

/// A malformed or oversized frame, or a broken channel.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The channel failed.
    #[error("channel i/o failed")]
    Io(#[from] io::Error),
    /// A frame declared more bytes than the limit allows; nothing was
    /// allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The channel ended inside a frame.
    #[error("channel closed inside a frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the frame needed.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A frame's payload did not decode as a message.
    #[error("malformed frame")]
    Malformed(#[source] CerealError),
    /// A frame arrived that the protocol does not allow at this point.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

/// Why a worker could not be started, reached, or used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker process or thread could not be started.
    #[error("cannot start worker \"{worker}\"")]
    Spawn {
        /// The worker.
        worker: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The worker did not say it was ready in time.
    #[error("worker \"{worker}\" did not become ready within {after:?}")]
    NotReady {
        /// The worker.
        worker: String,
        /// How long the parent waited.
        after: Duration,
    },
    /// The worker's channel broke or carried bad data; the worker is
    /// ended so that it can be replaced.
    #[error("worker \"{worker}\": protocol error")]
    Protocol {
        /// The worker.
        worker: String,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
    /// The worker died (or was killed) with work in hand.
    #[error("worker \"{worker}\" (pid {pid}) died: {status}")]
    Died {
        /// The worker.
        worker: String,
        /// Its process id (this process's for a thread worker).
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// A call overran its timeout; the worker was killed (a process) or
    /// abandoned with its stop token set (a thread).
    #[error("worker \"{worker}\": call to \"{function}\" timed out after {after:?}")]
    TimedOut {
        /// The worker.
        worker: String,
        /// The function.
        function: String,
        /// The timeout.
        after: Duration,
    },
    /// The worker ran the function and it failed.
    #[error("worker \"{worker}\": {message}")]
    Remote {
        /// The worker.
        worker: String,
        /// The remote error's message (with its sources).
        message: String,
        /// Whether retrying could help.
        retryable: bool,
    },
    /// A function or value could not cross the process boundary.
    #[error("worker \"{worker}\": cannot send the call")]
    Encode {
        /// The worker.
        worker: String,
        /// Why.
        #[source]
        source: CerealError,
    },
    /// The worker is shut down.
    #[error("worker \"{worker}\" is shut down")]
    Closed {
        /// The worker.
        worker: String,
    },
}

impl WorkerError {
    /// Whether retrying the call on a (new) worker could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkerError::Remote { retryable, .. } => *retryable,
            WorkerError::Died { .. }
            | WorkerError::TimedOut { .. }
            | WorkerError::Protocol { .. }
            | WorkerError::NotReady { .. } => true,
            _ => false,
        }
    }
}

/// Why a [`Threader`](crate::Threader) or [`ThreadHandle`](crate::ThreadHandle)
/// operation failed.
///
/// Every variant names the thread (or threads) it is about.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// A thread with this name is still running in the same `Threader`.
    #[error("thread name {name:?} is taken by a running thread")]
    NameTaken {
        /// The requested name.
        name: String,
    },
    /// The name cannot be given to an OS thread.
    #[error("thread name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The requested name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system refused to start the thread.
    #[error("could not spawn thread {name:?}")]
    Spawn {
        /// The requested name.
        name: String,
        /// The error of the OS.
        #[source]
        source: io::Error,
    },
    /// The thread's body or one of its init functions panicked.
    #[error("thread {name:?} panicked: {message}")]
    Panicked {
        /// The thread's name.
        name: String,
        /// The panic message (`"<non-string panic payload>"` when the payload
        /// was neither a `&str` nor a `String`).
        message: String,
    },
    /// No thread with this name is listed by the `Threader`.
    #[error("no thread named {name:?}")]
    Unknown {
        /// The requested name.
        name: String,
    },
    /// Threads still running when a join deadline passed; they are left
    /// running.
    #[error("{} still running after the join timeout", Names(names))]
    JoinTimeout {
        /// The names of the threads still running, in spawn order.
        names: Vec<String>,
    },
    /// The thread's result was already taken by an earlier join.
    #[error("thread {name:?} was already joined")]
    Joined {
        /// The thread's name.
        name: String,
    },
}

/// Renders `["a", "b"]` as `threads "a", "b"` (or `thread "a"`).
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.len() == 1 {
            "thread "
        } else {
            "threads "
        })?;
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}
