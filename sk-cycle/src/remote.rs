//! Parts on other machines: the [`RemoteRunner`] boundary.
//!
//! A part placed with [`CyclePart::remote`](crate::CyclePart::remote)
//! runs wherever the run's remote runner sends it (`sk-remote` sends it
//! to a group's workers through NATS JetStream). The engine owns
//! everything else about the part — whether it runs, its retries and
//! their backoff, its error mode, its record in the journal — and asks
//! the runner for one attempt at a time, on a thread of its own, as it
//! does a worker process. [`RemoteRunner`] says what a runner promises.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sk_core::{Args, Encoding, SkFunction, StopToken, Value};

/// One attempt of a remote part, as the engine hands it to its runner.
#[non_exhaustive]
#[derive(Clone)]
pub struct RemoteCall {
    /// The run's id: the journal's run id for a journaled run, else an id
    /// unique to this run.
    pub run: Arc<str>,
    /// The cycle's name.
    pub cycle: Arc<str>,
    /// The remote group the part is placed on.
    pub group: Arc<str>,
    /// The part's name.
    pub part: Arc<str>,
    /// The part's lane's iteration, from 1.
    pub iteration: u64,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The registered function to run (dispatched by its name).
    pub function: SkFunction,
    /// The call's extra arguments: the part's input as `input`, when the
    /// function takes it.
    pub args: Args,
    /// The part's timeout: the attempt fails timed out when it has not
    /// answered by then.
    pub timeout: Option<Duration>,
    /// The format the output is wanted in (external in journaled runs).
    pub output: Encoding,
    /// The run's stop token: a stopped run gives up waiting and tells the
    /// workers.
    pub stop: StopToken,
}

impl RemoteCall {
    /// A call of `function` with `args` for `part` of iteration
    /// `iteration`, attempt `attempt`, of run `run` (cycle `cycle`), on
    /// `group`; no timeout, internal output, a stop token of its own (for
    /// runners' tests; the engine builds its own).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: impl Into<Arc<str>>,
        cycle: impl Into<Arc<str>>,
        group: impl Into<Arc<str>>,
        part: impl Into<Arc<str>>,
        iteration: u64,
        attempt: u32,
        function: SkFunction,
        args: Args,
    ) -> Self {
        RemoteCall {
            run: run.into(),
            cycle: cycle.into(),
            group: group.into(),
            part: part.into(),
            iteration,
            attempt,
            function,
            args,
            timeout: None,
            output: Encoding::Internal,
            stop: StopToken::new(),
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the output format.
    pub fn output(mut self, output: Encoding) -> Self {
        self.output = output;
        self
    }

    /// Sets the stop token.
    pub fn stop(mut self, stop: StopToken) -> Self {
        self.stop = stop;
        self
    }
}

impl fmt::Debug for RemoteCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteCall")
            .field("run", &self.run)
            .field("group", &self.group)
            .field("part", &self.part)
            .field("iteration", &self.iteration)
            .field("attempt", &self.attempt)
            .field("function", &self.function.name())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Called once with an attempt's end (see [`RemoteRunner::submit`]).
pub type RemoteDone = Box<dyn FnOnce(Result<Value, RemoteFailure>) + Send>;

/// How a remote attempt failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteFailure {
    /// The function ran and failed (or its worker could not run it).
    #[error("{message}")]
    Failed {
        /// What went wrong, as the worker said.
        message: String,
        /// Whether a retry may succeed (a retry mode retries only these).
        retryable: bool,
    },
    /// No answer within the part's timeout.
    #[error("timed out after {after:?}")]
    TimedOut {
        /// How long was waited.
        after: Duration,
    },
    /// The attempt killed (or lost) its worker this many times: it is not
    /// handed to another one (a poison part).
    #[error("worker died {deliveries} times running it; not handed to another worker")]
    Poison {
        /// How many workers it was handed to.
        deliveries: u32,
    },
    /// The run was stopped while the attempt was out.
    #[error("the run was stopped")]
    Stopped,
    /// The runner could not send the attempt or hear its answer.
    #[error("{0}")]
    Unavailable(String),
}

impl RemoteFailure {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteFailure::Failed { retryable, .. } => *retryable,
            RemoteFailure::TimedOut { .. } | RemoteFailure::Unavailable(_) => true,
            RemoteFailure::Poison { .. } | RemoteFailure::Stopped => false,
        }
    }
}

/// Where a run's remote parts go.
///
/// The runner's contract:
/// - [`RemoteRunner::start_run`] before the run's first remote part,
///   [`RemoteRunner::end_run`] after its last (also when it failed).
/// - [`RemoteRunner::submit`] sends one attempt; its `done` is called
///   once, with the attempt's answer, its failure, the part's timeout
///   (plus what grace the runner allows for the network) or the run's
///   stop. It answers an attempt at most once; whatever arrives for it later (a late or
///   duplicate answer from a worker that was given up on) is the
///   runner's to drop.
/// - The same (run, iteration, part, attempt) may be asked again after
///   the coordinator restarts (a resumed journaled run): the runner may
///   answer it from a result that arrived before the restart.
pub trait RemoteRunner: Send + Sync {
    /// Gets ready for run `run` of cycle `cycle`, which has remote parts
    /// on `groups`.
    ///
    /// # Errors
    ///
    /// Whatever keeps the runner from serving the run (e.g. its broker is
    /// unreachable); the run does not start.
    fn start_run(
        &self,
        run: &str,
        cycle: &str,
        groups: &[&str],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// Sends one attempt and returns at once; `done` is called once with
    /// its end — its answer, its failure, its timeout (plus what grace
    /// the runner allows for the network) or the run's stop — from any
    /// thread (or from this call). It must not block long.
    fn submit(&self, call: RemoteCall, done: RemoteDone);

    /// Run `run` is over: no more calls for it; what it left with the
    /// workers may be dropped.
    fn end_run(&self, run: &str);
}

/// An id for a run that has none of its own (not journaled): the cycle's
/// name, this process and a moment, unique among the runs workers see.
pub(crate) fn fresh_run_id(cycle: &str) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{cycle}-{}-{nanos:x}-{n}", std::process::id())
}

/// Runs `call` on `runner` and waits for its end.
pub(crate) fn call_and_wait(
    runner: &dyn RemoteRunner,
    call: RemoteCall,
) -> Result<Value, RemoteFailure> {
    let (tx, rx) = crossbeam::channel::bounded(1);
    runner.submit(
        call,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    rx.recv().unwrap_or_else(|_| {
        Err(RemoteFailure::Unavailable(
            "the remote runner dropped the call without an answer".to_owned(),
        ))
    })
}
