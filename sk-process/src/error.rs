//! The errors of sk-process.

use std::fmt;
use std::io;
use std::time::Duration;

use sk_cereal::CerealError;

use crate::vocab::{ChildId, Hook, Resource, Side};

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
    /// A frame began but did not complete in time: the peer is frozen, or
    /// its header declared more bytes than it sent.
    #[error("a frame stalled at {got} of its {expected} bytes for {after:?}")]
    Stalled {
        /// Bytes the frame needs, its 4-byte header included (4 while
        /// inside the header).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
        /// How long the reader waited for the rest.
        after: Duration,
    },
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
    /// The worker is shut down; the call was not sent.
    #[error("worker \"{worker}\" is shut down")]
    Closed {
        /// The worker.
        worker: String,
    },
    /// The worker ended before the call reached it (it died before it
    /// was ready, or left the call unread): the call never ran, so it can
    /// run on another worker without running twice.
    #[error("worker \"{worker}\" (pid {pid}) ended before the call reached it: {status}")]
    NotDelivered {
        /// The worker.
        worker: String,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// The worker is being restarted by its manager and was not back
    /// within the call's timeout; the call was not sent.
    #[error("worker \"{worker}\" is being restarted; the call was not sent (waited {waited:?})")]
    Restarting {
        /// The worker (the manager's child).
        worker: String,
        /// How long the call waited for it.
        waited: Duration,
    },
    /// A question the running code asked its parent
    /// ([`ask_parent`](crate::ask_parent)) got no answer: nobody answers
    /// questions for the call, the parent said why not, or it did not
    /// answer in time.
    #[error("worker \"{worker}\": the parent did not answer: {why}")]
    Unanswered {
        /// The worker.
        worker: String,
        /// Why.
        why: String,
    },
    /// This process was started as a worker, but its program runs `main`
    /// without calling `init()` first, so it got as far as starting
    /// workers of its own. Refused, so that one missing line cannot start
    /// processes without end; the parent sees the same error.
    #[error(
        "worker \"{worker}\" (pid {pid}) runs the program's `main` instead of serving: call \
         `suitkaise::init()` (or `sk_process::init()`) first thing in `main`, or put \
         `sk_process::worker_test!()` in a test binary"
    )]
    MissingInit {
        /// The worker.
        worker: String,
        /// Its process id.
        pid: u32,
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
            | WorkerError::NotReady { .. }
            | WorkerError::NotDelivered { .. }
            | WorkerError::Restarting { .. } => true,
            _ => false,
        }
    }

    /// Whether the call surely never started on the worker: it was not
    /// sent ([`Closed`](WorkerError::Closed),
    /// [`Restarting`](WorkerError::Restarting)) or never reached the
    /// worker ([`NotDelivered`](WorkerError::NotDelivered)). Such a call can run
    /// on another worker without counting as an attempt; the pools, the
    /// cycle engine and [`ProcessManager::call`](crate::ProcessManager::call)
    /// do so.
    pub fn never_ran(&self) -> bool {
        matches!(
            self,
            WorkerError::Closed { .. }
                | WorkerError::NotDelivered { .. }
                | WorkerError::Restarting { .. }
        )
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

/// Why one item of a [`Pool`](crate::Pool) call has no result.
///
/// `attempts` counts every run of the item, including the failing one.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    /// The function returned an error.
    #[error("failed after {attempts} attempt(s): {message}")]
    Failed {
        /// The error and its sources, joined with ": ".
        message: String,
        /// How many times the item ran.
        attempts: u32,
    },
    /// The function panicked; the panic was caught in the worker.
    #[error("panicked after {attempts} attempt(s): {message}")]
    Panicked {
        /// The panic message (with the function's name).
        message: String,
        /// How many times the item ran.
        attempts: u32,
    },
    /// The item overran the pool's item timeout; a process worker running
    /// it was killed and replaced.
    #[error("timed out after {after:?} ({attempts} attempt(s))")]
    TimedOut {
        /// The item timeout.
        after: Duration,
        /// How many times the item ran.
        attempts: u32,
    },
    /// Workers kept dying while running the item.
    #[error("worker \"{worker}\" died while running it ({status}), {attempts} attempt(s)")]
    WorkerDied {
        /// The last worker that died.
        worker: String,
        /// How it ended.
        status: String,
        /// How many times the item ran.
        attempts: u32,
    },
    /// The item could not be handed to a worker (no worker could be
    /// started, or the batch call itself failed).
    #[error("cannot run the item: {message}")]
    Unrunnable {
        /// What went wrong.
        message: String,
    },
    /// The item could not be bound as the function's argument: the
    /// function has no parameter of that name, or the item does not
    /// serialize.
    #[error("cannot bind the item as the function's argument")]
    Encode(#[source] sk_core::FunctionError),
    /// The function's output is not of the requested type.
    #[error("the output is not of the requested type")]
    Output(#[source] sk_core::TakeError),
}

impl ItemError {
    /// How many times the item ran (0 when it never reached a worker).
    pub fn attempts(&self) -> u32 {
        match self {
            ItemError::Failed { attempts, .. }
            | ItemError::Panicked { attempts, .. }
            | ItemError::TimedOut { attempts, .. }
            | ItemError::WorkerDied { attempts, .. } => *attempts,
            _ => 0,
        }
    }
}

/// Why a [`Pool`](crate::Pool) could not be built or a call failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A pool was asked for zero workers.
    #[error("a pool needs at least one worker")]
    NoWorkers,
    /// A chunk size of zero was set.
    #[error("a pool's chunk size must be at least 1")]
    ZeroChunkSize,
    /// An item timeout of zero was set.
    #[error("a pool's item timeout must be longer than zero")]
    ZeroItemTimeout,
    /// The retry policy is invalid.
    #[error("invalid retry policy")]
    Policy(#[source] sk_core::PolicyError),
    /// A worker could not be started.
    #[error("cannot start a pool worker")]
    Spawn(#[source] WorkerError),
    /// A thread of the pool could not be started.
    #[error("cannot start pool thread \"{name}\"")]
    Thread {
        /// The thread's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An item failed; the call stopped there. Its `Display` says why
    /// (the whole of the item's error, which it carries as `error`).
    #[error("item {index}: {}", sk_core::error_chain(error))]
    Item {
        /// The item's position in the input (0-based).
        index: usize,
        /// Why it failed.
        error: ItemError,
    },
}

/// Why a [`ProcessCommander`](crate::ProcessCommander) budget could not be
/// split or drawn from.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// Every slot of the side is taken (and, when waiting, none came free
    /// in time).
    #[error("the {side} budget is exhausted: all {limit} {resource} slots are in use")]
    Exhausted {
        /// The side drawn from.
        side: Side,
        /// What the slot was for.
        resource: Resource,
        /// The side's limit for that resource.
        limit: usize,
    },
    /// An internal share outside `0.0..=1.0`.
    #[error("internal share {share} is not between 0 and 1")]
    InvalidShare {
        /// The share asked for.
        share: f64,
    },
    /// The internal side asks for more than the whole budget.
    #[error("the internal side asks for {asked} {resource} slots but the budget has {total}")]
    Oversplit {
        /// The resource.
        resource: Resource,
        /// The slots asked for.
        asked: usize,
        /// The whole budget of that resource.
        total: usize,
    },
}

/// Why a [`ProcessManager`](crate::ProcessManager) operation failed.
///
/// Every variant names the manager (and the child, where there is one).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The manager gave up after too many restarts; it stopped every child
    /// and takes no more work.
    #[error(
        "manager \"{manager}\" escalated: more than {restarts} restarts within {within:?}; it takes no more work"
    )]
    Escalated {
        /// The manager.
        manager: String,
        /// Its restart limit.
        restarts: u32,
        /// The window of the limit.
        within: Duration,
    },
    /// The manager is shut down.
    #[error("manager \"{manager}\" is shut down")]
    ShutDown {
        /// The manager.
        manager: String,
    },
    /// The manager has no such child (it was never spawned, or it was
    /// removed).
    #[error("manager \"{manager}\" has no child {child}")]
    UnknownChild {
        /// The manager.
        manager: String,
        /// The child asked for.
        child: ChildId,
    },
    /// No budget slot for a new child.
    #[error("manager \"{manager}\": no budget for child \"{child}\"")]
    Budget {
        /// The manager.
        manager: String,
        /// The child's name.
        child: String,
        /// Why.
        #[source]
        source: BudgetError,
    },
    /// A child's worker could not be started, or a call to it failed.
    #[error("manager \"{manager}\": child \"{child}\" failed")]
    Worker {
        /// The manager.
        manager: String,
        /// The child's name.
        child: String,
        /// Why (boxed: worker errors are large).
        #[source]
        source: Box<WorkerError>,
    },
    /// The manager's supervision thread could not be started.
    #[error("manager \"{manager}\": cannot start its supervision thread")]
    Thread {
        /// The manager.
        manager: String,
        /// The error of the OS.
        #[source]
        source: io::Error,
    },
    /// Children still alive after shutdown killed them.
    #[error("manager \"{manager}\": children {children:?} are still alive after shutdown")]
    Stragglers {
        /// The manager.
        manager: String,
        /// The children's names, in start order.
        children: Vec<String>,
    },
}

/// Why an [`SkProcess`](crate::SkProcess) could not start, or how it ended
/// without an output.
///
/// Every variant names the process (its type's name).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SkProcessError {
    /// The process's configuration cannot run.
    #[error("process \"{process}\": invalid configuration: {reason}")]
    InvalidConfig {
        /// The process.
        process: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The type was not registered with `sk_process::register_process!`.
    #[error(
        "process \"{process}\": {type_name} is not registered; add `sk_process::register_process!({process});`"
    )]
    NotRegistered {
        /// The process.
        process: String,
        /// The full type name.
        type_name: &'static str,
    },
    /// The process's runner could not be called.
    #[error("process \"{process}\": cannot call its runner")]
    Function {
        /// The process.
        process: String,
        /// Why.
        #[source]
        source: sk_core::FunctionError,
    },
    /// The initial state does not serialize.
    #[error("process \"{process}\": cannot encode its state")]
    State {
        /// The process.
        process: String,
        /// Why.
        #[source]
        source: CerealError,
    },
    /// The output sent back does not decode.
    #[error("process \"{process}\": cannot decode its output")]
    Output {
        /// The process.
        process: String,
        /// Why.
        #[source]
        source: CerealError,
    },
    /// A message to or from the process does not encode or decode.
    #[error("process \"{process}\": bad message")]
    Message {
        /// The process.
        process: String,
        /// Why.
        #[source]
        source: CerealError,
    },
    /// A hook returned an error.
    #[error("process \"{process}\": {hook} failed in run {run}: {message}")]
    HookFailed {
        /// The process.
        process: String,
        /// The hook.
        hook: Hook,
        /// The run it failed in (the last run for `onfinish` and `result`).
        run: u64,
        /// The hook's error and its sources (it crossed a process boundary).
        message: String,
    },
    /// A hook panicked and no lives were left.
    #[error("process \"{process}\": {hook} panicked in run {run}: {message}")]
    HookPanicked {
        /// The process.
        process: String,
        /// The hook.
        hook: Hook,
        /// The run it panicked in.
        run: u64,
        /// The panic message.
        message: String,
    },
    /// A hook overran its timeout; the worker was killed.
    #[error("process \"{process}\": {hook} timed out after {after:?}")]
    HookTimedOut {
        /// The process.
        process: String,
        /// The hook.
        hook: Hook,
        /// Its timeout.
        after: Duration,
    },
    /// The process crashed on every one of its lives.
    #[error("process \"{process}\" crashed on all {lives} of its lives; the last: {last}")]
    LivesExhausted {
        /// The process.
        process: String,
        /// Its lives.
        lives: u32,
        /// How the last life ended.
        last: String,
    },
    /// The process was killed.
    #[error("process \"{process}\" was killed")]
    Killed {
        /// The process.
        process: String,
    },
    /// The process's worker failed.
    #[error("process \"{process}\": its worker failed")]
    Worker {
        /// The process.
        process: String,
        /// Why.
        #[source]
        source: WorkerError,
    },
    /// The process has finished (or is between lives) and takes no
    /// messages.
    #[error("process \"{process}\" is not running")]
    Closed {
        /// The process.
        process: String,
    },
    /// The process did not finish within the join timeout; it goes on.
    #[error("process \"{process}\" did not finish within {after:?}")]
    JoinTimeout {
        /// The process.
        process: String,
        /// The join timeout.
        after: Duration,
    },
    /// The process's output was already taken by an earlier join.
    #[error("process \"{process}\" was already joined")]
    Joined {
        /// The process.
        process: String,
    },
}

#[cfg(test)]
mod chain_tests {
    use sk_testkit::assert_chain_says_each_thing_once as says_once;

    use super::*;

    fn cereal() -> CerealError {
        sk_cereal::Internal::decode::<String>(&[]).unwrap_err()
    }

    fn function() -> sk_core::FunctionError {
        sk_core::FunctionError::failed("resize", "width must be positive")
    }

    fn worker() -> WorkerError {
        WorkerError::Protocol {
            worker: "w".to_owned(),
            source: ProtocolError::Malformed(cereal()),
        }
    }

    #[test]
    fn every_error_with_a_source_says_it_once() {
        let io = || io::Error::other("no more processes");
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(ProtocolError::Io(io())),
            Box::new(ProtocolError::Malformed(cereal())),
            Box::new(WorkerError::Spawn {
                worker: "w".to_owned(),
                source: io(),
            }),
            Box::new(worker()),
            Box::new(WorkerError::Encode {
                worker: "w".to_owned(),
                source: cereal(),
            }),
            Box::new(ThreadError::Spawn {
                name: "t".to_owned(),
                source: io(),
            }),
            Box::new(ItemError::Encode(function())),
            Box::new(ItemError::Output(sk_core::TakeError::Decode(cereal()))),
            Box::new(PoolError::Policy(sk_core::PolicyError::ZeroAttempts)),
            Box::new(PoolError::Spawn(worker())),
            Box::new(PoolError::Thread {
                name: "t".to_owned(),
                source: io(),
            }),
            Box::new(PoolError::Item {
                index: 2,
                error: ItemError::Encode(function()),
            }),
            Box::new(ManagerError::Budget {
                manager: "m".to_owned(),
                child: "c".to_owned(),
                source: BudgetError::InvalidShare { share: 2.0 },
            }),
            Box::new(ManagerError::Worker {
                manager: "m".to_owned(),
                child: "c".to_owned(),
                source: Box::new(worker()),
            }),
            Box::new(ManagerError::Thread {
                manager: "m".to_owned(),
                source: io(),
            }),
            Box::new(SkProcessError::Function {
                process: "p".to_owned(),
                source: function(),
            }),
            Box::new(SkProcessError::State {
                process: "p".to_owned(),
                source: cereal(),
            }),
            Box::new(SkProcessError::Output {
                process: "p".to_owned(),
                source: cereal(),
            }),
            Box::new(SkProcessError::Message {
                process: "p".to_owned(),
                source: cereal(),
            }),
            Box::new(SkProcessError::Worker {
                process: "p".to_owned(),
                source: worker(),
            }),
        ];
        for err in &errors {
            says_once(&**err);
        }
    }

    #[test]
    fn a_failed_pool_item_says_why() {
        let err = PoolError::Item {
            index: 2,
            error: ItemError::TimedOut {
                after: Duration::from_secs(1),
                attempts: 1,
            },
        };
        assert_eq!(err.to_string(), "item 2: timed out after 1s (1 attempt(s))");
    }
}
