//! The parent side of an [`SkProcess`]: [`start`] and [`SkProcessHandle`].
//!
//! A supervisor thread per process starts each life on a fresh
//! [`Worker`], relays the process's messages, keeps a backstop on hook
//! timeouts (in case the worker's own watchdog cannot report), restarts a
//! crashed life from the original state while lives remain, and publishes
//! the outcome for [`SkProcessHandle::join`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_core::{Args, FunctionError, SkFunction};

use super::child::{Failure, Launch, Outcome, Report};
use crate::vocab::Hook;

use super::{ChildMsg, HookTimings, ParentMsg, ProcessConfig, SkProcess};
use crate::backend::Backend;
use crate::error::{SkProcessError, WorkerError};
use crate::worker::{PendingCall, Worker};

/// How long the parent's poll for the process's messages blocks.
const POLL: Duration = Duration::from_millis(2);

/// How much longer than a hook's timeout the parent waits before it kills
/// the worker itself (the worker's watchdog normally reports first).
const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// How long a finished worker gets to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The process's output, encoded, or why there is none.
type Finished = Result<Vec<u8>, SkProcessError>;

/// What the handle and the supervisor share.
struct Shared {
    name: String,
    worker: Mutex<Option<Worker>>,
    stop_requested: AtomicBool,
    killed: AtomicBool,
    /// `None` while running; `Some(None)` once joined.
    finished: Mutex<Option<Option<Finished>>>,
    finished_cv: Condvar,
    timings: Mutex<HookTimings>,
    messages: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

impl Shared {
    fn finish(&self, outcome: Finished) {
        *self.worker.lock() = None;
        let mut slot = self.finished.lock();
        if slot.is_none() {
            *slot = Some(Some(outcome));
        }
        self.finished_cv.notify_all();
    }
}

/// The parent's handle to a running [`SkProcess`].
///
/// Dropping the handle of a process that is still running kills it.
pub struct SkProcessHandle<P: SkProcess> {
    shared: Arc<Shared>,
    _process: PhantomData<fn() -> P>,
}

impl<P: SkProcess> std::fmt::Debug for SkProcessHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkProcessHandle")
            .field("name", &self.shared.name)
            .field("running", &self.is_running())
            .finish()
    }
}

/// Starts `initial` as a process on a new worker of `backend`.
///
/// Returns once the first worker is up; the process runs in it while the
/// handle is held.
///
/// # Examples
///
/// See [`SkProcess`].
///
/// # Errors
///
/// [`SkProcessError::InvalidConfig`] when the configuration has no lives,
/// [`SkProcessError::NotRegistered`] when `P` was not registered with
/// [`register_process!`](crate::register_process),
/// [`SkProcessError::State`] when `initial` does not serialize,
/// [`SkProcessError::Worker`] when the worker cannot be started.
pub fn start<P: SkProcess>(
    initial: P,
    backend: Backend,
) -> Result<SkProcessHandle<P>, SkProcessError> {
    let name = super::short_name::<P>();
    let config = initial.config();
    if config.max_lives() == 0 {
        return Err(SkProcessError::InvalidConfig {
            process: name,
            reason: "lives must be at least 1",
        });
    }
    let state = sk_cereal::Internal::encode(&initial).map_err(|source| SkProcessError::State {
        process: name.clone(),
        source,
    })?;
    drop(initial);
    let runner = super::runner_name::<P>();
    let function = SkFunction::builder(runner).build().map_err(|e| match e {
        FunctionError::NotRegistered { .. } => SkProcessError::NotRegistered {
            process: name.clone(),
            type_name: std::any::type_name::<P>(),
        },
        source => SkProcessError::Function {
            process: name.clone(),
            source,
        },
    })?;
    let shared = Arc::new(Shared {
        name: name.clone(),
        worker: Mutex::new(None),
        stop_requested: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        finished: Mutex::new(None),
        finished_cv: Condvar::new(),
        timings: Mutex::new(HookTimings::default()),
        messages: channel::unbounded(),
    });
    let life = Life {
        shared: Arc::clone(&shared),
        function,
        state,
        config,
        backend,
        started: Instant::now(),
    };
    let (first, worker, pending) = life.begin_from(1)?;
    thread::Builder::new()
        .name(format!("sk-supervise:{name}"))
        .spawn(move || life.supervise(first, worker, pending))
        .map_err(|source| SkProcessError::Worker {
            process: name.clone(),
            source: WorkerError::Spawn {
                worker: name,
                source,
            },
        })?;
    Ok(SkProcessHandle {
        shared,
        _process: PhantomData,
    })
}

impl<P: SkProcess> SkProcessHandle<P> {
    /// The process's name (its type's name).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the process has not finished yet.
    pub fn is_running(&self) -> bool {
        self.shared.finished.lock().is_none()
    }

    /// The process id of the worker running the current life (this
    /// process's for a thread worker); `None` once it finished.
    pub fn pid(&self) -> Option<u32> {
        self.shared.worker.lock().as_ref().map(Worker::pid)
    }

    /// Asks the process to stop gracefully: the current run finishes, then
    /// `onfinish` and `result` run, and [`join`](SkProcessHandle::join)
    /// returns the output. Returns at once.
    pub fn stop(&self) {
        self.shared.stop_requested.store(true, Ordering::Release);
        if let Some(worker) = self.shared.worker.lock().as_ref() {
            let _ = worker.tell(&ParentMsg::Stop);
        }
    }

    /// Ends the process now: a worker process is killed, a thread worker is
    /// abandoned with its stop token set (no further hook starts).
    /// [`join`](SkProcessHandle::join) then returns
    /// [`SkProcessError::Killed`].
    pub fn kill(&self) {
        self.shared.killed.store(true, Ordering::Release);
        if let Some(worker) = self.shared.worker.lock().as_ref() {
            worker.kill();
        }
    }

    /// Sends `message` to the process (read there with
    /// [`ProcessContext::listen`](super::ProcessContext::listen)).
    ///
    /// # Errors
    ///
    /// [`SkProcessError::Message`] when it does not serialize,
    /// [`SkProcessError::Closed`] when the process has finished (or is
    /// between lives), [`SkProcessError::Worker`] when the worker cannot
    /// take it.
    pub fn tell<T: Serialize>(&self, message: &T) -> Result<(), SkProcessError> {
        let bytes =
            sk_cereal::Internal::encode(message).map_err(|source| SkProcessError::Message {
                process: self.shared.name.clone(),
                source,
            })?;
        let worker = self.shared.worker.lock().clone();
        let Some(worker) = worker else {
            return Err(SkProcessError::Closed {
                process: self.shared.name.clone(),
            });
        };
        worker
            .tell(&ParentMsg::User(bytes))
            .map_err(|source| SkProcessError::Worker {
                process: self.shared.name.clone(),
                source,
            })
    }

    /// Waits at most `timeout` for a message from the process (sent with
    /// [`ProcessContext::tell`](super::ProcessContext::tell)); `Ok(None)`
    /// when none came.
    ///
    /// # Errors
    ///
    /// [`SkProcessError::Message`] when the message is not a `T`.
    pub fn listen<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Option<T>, SkProcessError> {
        match self.shared.messages.1.recv_timeout(timeout) {
            Ok(bytes) => sk_cereal::Internal::decode(&bytes)
                .map(Some)
                .map_err(|source| SkProcessError::Message {
                    process: self.shared.name.clone(),
                    source,
                }),
            Err(_) => Ok(None),
        }
    }

    /// Waits for the process to finish, at most `timeout` (`None`: no
    /// limit), and returns its output.
    ///
    /// # Errors
    ///
    /// [`SkProcessError::JoinTimeout`] when it is still running (it goes
    /// on; join again later); the process's own error (a hook failed,
    /// panicked or timed out, its lives ran out, it was killed); and
    /// [`SkProcessError::Joined`] when the output was already taken.
    pub fn join(&self, timeout: Option<Duration>) -> Result<P::Output, SkProcessError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self.shared.finished.lock();
        while slot.is_none() {
            match deadline {
                Some(deadline) => {
                    if self
                        .shared
                        .finished_cv
                        .wait_until(&mut slot, deadline)
                        .timed_out()
                        && slot.is_none()
                    {
                        return Err(SkProcessError::JoinTimeout {
                            process: self.shared.name.clone(),
                            after: timeout.unwrap_or_default(),
                        });
                    }
                }
                None => self.shared.finished_cv.wait(&mut slot),
            }
        }
        let taken = slot.as_mut().and_then(Option::take);
        drop(slot);
        match taken {
            None => Err(SkProcessError::Joined {
                process: self.shared.name.clone(),
            }),
            Some(Err(e)) => Err(e),
            Some(Ok(bytes)) => {
                sk_cereal::Internal::decode(&bytes).map_err(|source| SkProcessError::Output {
                    process: self.shared.name.clone(),
                    source,
                })
            }
        }
    }

    /// Per-hook timing statistics of the last life, once it reported (at
    /// the end; empty before, and for a life that crashed or was killed).
    pub fn timings(&self) -> HookTimings {
        *self.shared.timings.lock()
    }
}

impl<P: SkProcess> Drop for SkProcessHandle<P> {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// How one life of a process ended, as the parent saw it.
enum LifeEnd {
    Reported(Box<Report>),
    Failed(WorkerError),
    Backstop { hook: Hook, after: Duration },
}

/// Everything needed to start lives of one process.
struct Life {
    shared: Arc<Shared>,
    function: SkFunction,
    state: Vec<u8>,
    config: ProcessConfig,
    backend: Backend,
    started: Instant,
}

impl Life {
    fn worker_error(&self, source: WorkerError) -> SkProcessError {
        SkProcessError::Worker {
            process: self.shared.name.clone(),
            source,
        }
    }

    /// Starts life number `life` on a fresh worker.
    fn begin(&self, life: u32) -> Result<(Worker, PendingCall), SkProcessError> {
        let worker_name = format!("{}#{life}", self.shared.name);
        let worker = Worker::spawn(worker_name, self.backend).map_err(|e| self.worker_error(e))?;
        let launch = Launch {
            config: self.config.clone(),
            life,
            limit: self
                .config
                .time_limit()
                .map(|limit| limit.saturating_sub(self.started.elapsed())),
            stopped: self.shared.stop_requested.load(Ordering::Acquire),
        };
        let args = Args::new()
            .with("state", &self.state)
            .and_then(|a| a.with("launch", &launch))
            .map_err(|source| SkProcessError::Function {
                process: self.shared.name.clone(),
                source,
            })?;
        let pending = worker
            .submit(&self.function, &args)
            .map_err(|e| self.worker_error(e))?;
        *self.shared.worker.lock() = Some(worker.clone());
        // A kill or stop between the spawn and now must reach this worker.
        if self.shared.killed.load(Ordering::Acquire) {
            worker.kill();
        } else if self.shared.stop_requested.load(Ordering::Acquire) {
            let _ = worker.tell(&ParentMsg::Stop);
        }
        Ok((worker, pending))
    }

    /// Starts life number `life`, or the next while a worker crashes
    /// while starting: each such crash costs the life it was starting.
    /// The life that started, its worker and its call.
    fn begin_from(&self, mut life: u32) -> Result<(u32, Worker, PendingCall), SkProcessError> {
        let lives = self.config.max_lives();
        loop {
            match self.begin(life) {
                Ok((worker, pending)) => return Ok((life, worker, pending)),
                Err(SkProcessError::Worker { source, .. })
                    if crashed_while_starting(&source)
                        && !self.shared.killed.load(Ordering::Acquire) =>
                {
                    if life >= lives {
                        return Err(SkProcessError::LivesExhausted {
                            process: self.shared.name.clone(),
                            lives,
                            last: source.to_string(),
                        });
                    }
                    life += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs lives until one ends the process.
    fn supervise(self, mut life: u32, mut worker: Worker, mut pending: PendingCall) {
        let lives = self.config.max_lives();
        loop {
            let end = self.watch(&worker, pending);
            let crashed = match end {
                LifeEnd::Reported(report) => {
                    *self.shared.timings.lock() = report.timings;
                    match report.outcome {
                        Outcome::Finished(bytes) => {
                            worker.stop(STOP_GRACE);
                            return self.shared.finish(Ok(bytes));
                        }
                        Outcome::Failed(failure) => {
                            // A timed-out hook still runs in the worker.
                            if matches!(failure, Failure::TimedOut { .. }) {
                                worker.kill();
                            } else {
                                worker.stop(STOP_GRACE);
                            }
                            let err = failure.into_error(&self.shared.name);
                            // A panic on the last of several lives is a
                            // crash like the ones before it.
                            if lives > 1 && matches!(err, SkProcessError::HookPanicked { .. }) {
                                return self.shared.finish(Err(SkProcessError::LivesExhausted {
                                    process: self.shared.name.clone(),
                                    lives,
                                    last: err.to_string(),
                                }));
                            }
                            return self.shared.finish(Err(err));
                        }
                        Outcome::Abandoned => {
                            worker.kill();
                            return self.shared.finish(Err(self.killed()));
                        }
                        Outcome::Crashed(failure) => {
                            worker.kill();
                            failure.into_error(&self.shared.name).to_string()
                        }
                    }
                }
                LifeEnd::Backstop { hook, after } => {
                    return self.shared.finish(Err(SkProcessError::HookTimedOut {
                        process: self.shared.name.clone(),
                        hook,
                        after,
                    }));
                }
                LifeEnd::Failed(e) if self.shared.killed.load(Ordering::Acquire) => {
                    drop(e);
                    return self.shared.finish(Err(self.killed()));
                }
                LifeEnd::Failed(
                    WorkerError::Died { status, .. } | WorkerError::NotDelivered { status, .. },
                ) => status,
                LifeEnd::Failed(e) => {
                    worker.kill();
                    return self.shared.finish(Err(self.worker_error(e)));
                }
            };
            if self.shared.killed.load(Ordering::Acquire) {
                return self.shared.finish(Err(self.killed()));
            }
            if life >= lives {
                return self.shared.finish(Err(SkProcessError::LivesExhausted {
                    process: self.shared.name.clone(),
                    lives,
                    last: crashed,
                }));
            }
            match self.begin_from(life + 1) {
                Ok((l, w, p)) => (life, worker, pending) = (l, w, p),
                Err(e) => return self.shared.finish(Err(e)),
            }
        }
    }

    fn killed(&self) -> SkProcessError {
        SkProcessError::Killed {
            process: self.shared.name.clone(),
        }
    }

    /// Relays the process's messages until its call ends.
    fn watch(&self, worker: &Worker, pending: PendingCall) -> LifeEnd {
        let (reply_tx, reply_rx) = channel::bounded(1);
        let waiter = thread::Builder::new()
            .name(format!("sk-join:{}", self.shared.name))
            .spawn(move || {
                let _ = reply_tx.send(pending.wait(None));
            });
        if let Err(source) = waiter {
            worker.kill();
            return LifeEnd::Failed(WorkerError::Spawn {
                worker: worker.name().to_owned(),
                source,
            });
        }
        let mut timed: Option<(Hook, Duration, Instant)> = None;
        loop {
            if let Ok(reply) = reply_rx.try_recv() {
                // Messages sent before the reply arrived before it.
                while self.relay(worker, Duration::ZERO, &mut timed) {}
                return match reply.and_then(|value| {
                    value.take::<Report>().map_err(|e| WorkerError::Remote {
                        worker: worker.name().to_owned(),
                        message: e.to_string(),
                        retryable: false,
                    })
                }) {
                    Ok(report) => LifeEnd::Reported(Box::new(report)),
                    Err(e) => LifeEnd::Failed(e),
                };
            }
            self.relay(worker, POLL, &mut timed);
            if let Some((hook, after, since)) = timed {
                if since.elapsed() > after + BACKSTOP_GRACE {
                    worker.kill();
                    let _ = reply_rx.recv();
                    return LifeEnd::Backstop { hook, after };
                }
            }
        }
    }

    /// Routes one message of the process; whether there was one.
    fn relay(
        &self,
        worker: &Worker,
        wait: Duration,
        timed: &mut Option<(Hook, Duration, Instant)>,
    ) -> bool {
        match worker.listen::<ChildMsg>(wait) {
            Ok(Some(ChildMsg::User(bytes))) => {
                let _ = self.shared.messages.0.send(bytes);
                true
            }
            Ok(Some(ChildMsg::HookStarted { hook, timeout })) => {
                *timed = Some((hook, timeout, Instant::now()));
                true
            }
            Ok(Some(ChildMsg::HookEnded)) => {
                *timed = None;
                true
            }
            // A message that is not ours (sent with `tell_parent` directly)
            // is dropped; keep reading.
            Err(_) => true,
            Ok(None) => false,
        }
    }
}

/// Whether a worker that failed to take a life ended as a crash does (it
/// died, froze or broke its channel while starting), rather than being
/// refused by the system or the program.
fn crashed_while_starting(e: &WorkerError) -> bool {
    matches!(
        e,
        WorkerError::Died { .. }
            | WorkerError::NotDelivered { .. }
            | WorkerError::Closed { .. }
            | WorkerError::NotReady { .. }
            | WorkerError::Protocol { .. }
    )
}
