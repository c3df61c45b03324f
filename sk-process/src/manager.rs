//! [`ProcessManager`]: workers supervised by the OTP rules of
//! [`Supervisor`], drawing their slots from a [`ProcessCommander`].
//!
//! A supervision thread per manager waits for the exits of the current
//! incarnation of every child (one watch channel per incarnation, so an
//! exit is always matched to the right child even when names repeat or,
//! for thread workers, pids are equal). Exits the manager causes itself —
//! stopping siblings for a restart, removing, escalating, shutting down —
//! are made stale first (the child's incarnation is bumped), so they are
//! never taken for crashes.
//!
//! Health: a process worker sends a heartbeat every 250 ms and its handle
//! ends a worker silent for longer than its silence limit (10 s); that
//! arrives here as an abnormal exit ([`Exit::Failed`]) and is supervised
//! like a crash. The manager adds no heartbeat check of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use sk_core::{Args, SkFunction, Value};

use crate::backend::Backend;
use crate::commander::{Budget, BudgetSide, BudgetSlot, ProcessCommander};
use crate::error::{BudgetError, ManagerError, WorkerError};
use crate::vocab::{ChildId, Exit, Resource, Side};
use crate::worker::{Worker, WorkerEvent};
mod supervise;

use self::supervise::{stop_all, stop_and_reap, supervise, take_all};
use crate::supervisor::{
    DEFAULT_MAX_RESTARTS, DEFAULT_WITHIN, Restart, RestartStrategy, Supervisor,
};

/// How long a child the manager stops itself (for a restart, an
/// escalation, or on drop) has to exit before it is killed.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// After a kill, how long to wait for the worker to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// What to run as a child: its worker's name and when to restart it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSpec {
    /// The name of the child's worker (every incarnation has it).
    pub name: String,
    /// When the child is restarted.
    pub restart: Restart,
}

impl ChildSpec {
    /// A [`Restart::Permanent`] child named `name`.
    pub fn new(name: impl Into<String>) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            restart: Restart::Permanent,
        }
    }

    /// Sets when the child is restarted.
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }
}

/// Where a child is in its life.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildState {
    /// Its current worker serves calls.
    Running,
    /// It ended (or is being stopped) and is being started again.
    Restarting,
    /// It was stopped by an escalation or a shutdown and will not run
    /// again.
    Stopped,
}

/// A child as [`ProcessManager::children`] lists it.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id.
    pub id: ChildId,
    /// Its worker's name.
    pub name: String,
    /// When it is restarted.
    pub restart: Restart,
    /// The process id of its current worker (this process's for a thread
    /// worker); `None` while it has none.
    pub pid: Option<u32>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Where it is in its life.
    pub state: ChildState,
}

/// Something the manager saw or did, in the order it happened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManagerEvent {
    /// A child was spawned.
    Started {
        /// The child.
        id: ChildId,
        /// Its name.
        name: String,
        /// Its worker's process id.
        pid: u32,
    },
    /// A child's worker ended by itself (not stopped by the manager).
    Exited {
        /// The child.
        id: ChildId,
        /// Its name.
        name: String,
        /// The ended worker's process id.
        pid: u32,
        /// How it ended.
        exit: Exit,
    },
    /// A child was started again.
    Restarted {
        /// The child.
        id: ChildId,
        /// Its name.
        name: String,
        /// The new worker's process id.
        pid: u32,
        /// How many times the child has been restarted, this one included.
        restarts: u32,
    },
    /// A child is no longer supervised (not restarted after it ended, or
    /// removed with [`ProcessManager::remove`]); its budget slot is back.
    Removed {
        /// The child.
        id: ChildId,
        /// Its name.
        name: String,
    },
    /// The manager gave up after too many restarts: every child is
    /// stopped and the manager takes no more work.
    Escalated {
        /// The restart limit.
        restarts: u32,
        /// Its window.
        within: Duration,
    },
}

/// Builds a [`ProcessManager`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ProcessManagerBuilder {
    name: String,
    backend: Option<Backend>,
    strategy: RestartStrategy,
    max_restarts: u32,
    within: Duration,
    side: Option<BudgetSide>,
    stop_grace: Duration,
}

impl ProcessManagerBuilder {
    /// Where the children run; [`Backend::from_env`] by default.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Which children restart together; [`RestartStrategy::OneForOne`] by
    /// default.
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `max_restarts` restarts within `within`, then escalate;
    /// 3 within 5 s by default.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// Draws the children's slots from `side` of `commander`.
    ///
    /// Without a commander the manager makes its own: a
    /// [`ProcessCommander`] of [`Budget::default`] (one process per core,
    /// at least 4; four threads per core, at least 16), all of it on the
    /// external side, which the manager draws from.
    pub fn commander(mut self, commander: &ProcessCommander, side: Side) -> Self {
        self.side = Some(commander.side(side));
        self
    }

    /// How long a child the manager stops by itself (siblings for a
    /// restart, every child on escalation or drop) has to exit before it
    /// is killed; [`DEFAULT_STOP_GRACE`] by default.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Starts the manager's supervision thread.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Thread`] when the thread cannot be started.
    pub fn build(self) -> Result<ProcessManager, ManagerError> {
        let side = match self.side {
            Some(side) => side,
            // `split_counts` with nothing for the internal side never
            // fails; fall back to the even split rather than panic.
            None => {
                let own = ProcessCommander::new(Budget::default());
                own.clone()
                    .split_counts(Budget::new(0, 0))
                    .unwrap_or(own)
                    .external()
            }
        };
        let (control_tx, control_rx) = channel::unbounded();
        let shared = Arc::new(Shared {
            name: self.name,
            backend: self.backend.unwrap_or_else(Backend::from_env),
            stop_grace: self.stop_grace,
            side,
            state: Mutex::new(State {
                supervisor: Supervisor::new(self.strategy)
                    .with_intensity(self.max_restarts, self.within),
                children: BTreeMap::new(),
                phase: Phase::Running,
            }),
            subscribers: Mutex::new(Vec::new()),
            control: control_tx,
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let supervision = thread::Builder::new()
            .name(format!("sk-supervise:{}", shared.name))
            .spawn(move || supervise(&thread_shared, &control_rx))
            .map_err(|source| ManagerError::Thread {
                manager: shared.name.clone(),
                source,
            })?;
        Ok(ProcessManager {
            shared,
            supervision: Mutex::new(Some(supervision)),
        })
    }
}

/// Creates, monitors, restarts and shuts down workers (processes or
/// threads) by the OTP rules: a [`RestartStrategy`], a [`Restart`] type per
/// child and an intensity, past which the manager escalates — stops every
/// child and refuses more work.
///
/// Each child takes a slot of the manager's [`BudgetSide`] for as long as
/// it is supervised (restarts keep it). Dropping the manager shuts it down
/// with its stop grace.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use sk_process::{ChildSpec, ProcessManager, Restart, RestartStrategy};
///
/// let manager = ProcessManager::builder("resizers")
///     .strategy(RestartStrategy::OneForOne)
///     .intensity(3, Duration::from_secs(5))
///     .build()?;
/// let id = manager.spawn(ChildSpec::new("resizer-1").restart(Restart::Transient))?;
/// let events = manager.events();
/// // ... manager.call(id, &function, &args, None) ...
/// manager.shutdown(Duration::from_secs(5))?;
/// # Ok::<(), sk_process::ManagerError>(())
/// ```
#[derive(Debug)]
pub struct ProcessManager {
    shared: Arc<Shared>,
    supervision: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    backend: Backend,
    stop_grace: Duration,
    side: BudgetSide,
    state: Mutex<State>,
    subscribers: Mutex<Vec<Sender<ManagerEvent>>>,
    control: Sender<Control>,
    /// Notified on every event and on shutdown: a call waiting for a
    /// child being restarted looks again.
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    supervisor: Supervisor,
    /// Ids are given in start order, so the map iterates in start order.
    children: BTreeMap<ChildId, Child>,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Escalated { restarts: u32, within: Duration },
    ShutDown,
}

#[derive(Debug)]
struct Child {
    name: String,
    restart: Restart,
    worker: Option<Worker>,
    /// Bumped whenever the current worker is replaced or stopped by the
    /// manager: an exit of an older incarnation is stale.
    incarnation: u64,
    /// The current incarnation's exit, while nobody has received it.
    watch: Option<Receiver<WorkerEvent>>,
    restarts: u32,
    state: ChildState,
    slot: Option<BudgetSlot>,
}

#[derive(Debug)]
enum Control {
    /// The set of watched workers changed.
    Changed,
    /// Stop supervising.
    Stop,
}

impl ProcessManager {
    /// Starts building a manager named `name`.
    pub fn builder(name: impl Into<String>) -> ProcessManagerBuilder {
        ProcessManagerBuilder {
            name: name.into(),
            backend: None,
            strategy: RestartStrategy::default(),
            max_restarts: DEFAULT_MAX_RESTARTS,
            within: DEFAULT_WITHIN,
            side: None,
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }

    /// The manager's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where its children run.
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// The budget side its children draw from.
    pub fn budget(&self) -> &BudgetSide {
        &self.shared.side
    }

    /// Starts a child, taking a slot of the manager's budget side; fails
    /// at once when the side is full.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Budget`] (with [`BudgetError::Exhausted`]) when the
    /// side has no free slot, [`ManagerError::Worker`] when the worker
    /// cannot be started, [`ManagerError::Escalated`] or
    /// [`ManagerError::ShutDown`] when the manager takes no more work.
    pub fn spawn(&self, spec: ChildSpec) -> Result<ChildId, ManagerError> {
        self.spawn_until(spec, None)
    }

    /// As [`ProcessManager::spawn`], waiting at most `timeout` for a
    /// budget slot to be given back when the side is full.
    ///
    /// # Errors
    ///
    /// As [`ProcessManager::spawn`]; [`BudgetError::Exhausted`] means no
    /// slot came free within `timeout`.
    pub fn spawn_wait(&self, spec: ChildSpec, timeout: Duration) -> Result<ChildId, ManagerError> {
        self.spawn_until(spec, Some(timeout))
    }

    fn spawn_until(
        &self,
        spec: ChildSpec,
        timeout: Option<Duration>,
    ) -> Result<ChildId, ManagerError> {
        let shared = &self.shared;
        shared.check_running()?;
        let resource = Resource::of(shared.backend);
        let slot = match timeout {
            None => shared.side.try_acquire(resource),
            Some(t) => shared.side.acquire_timeout(resource, t),
        }
        .map_err(|source| shared.budget_error(&spec.name, source))?;
        let worker = Worker::spawn(spec.name.clone(), shared.backend).map_err(|source| {
            ManagerError::Worker {
                manager: shared.name.clone(),
                child: spec.name.clone(),
                source: Box::new(source),
            }
        })?;
        let (tx, rx) = channel::bounded(1);
        let mut state = shared.state.lock();
        if let Err(e) = state.phase.check(&shared.name) {
            drop(state);
            stop_and_reap(&worker, shared.stop_grace);
            return Err(e);
        }
        let id = state.supervisor.add(spec.restart);
        worker.watch(tx);
        let pid = worker.pid();
        state.children.insert(
            id,
            Child {
                name: spec.name.clone(),
                restart: spec.restart,
                worker: Some(worker),
                incarnation: 0,
                watch: Some(rx),
                restarts: 0,
                state: ChildState::Running,
                slot: Some(slot),
            },
        );
        // Under the state lock, so that Started comes before any event of
        // the child.
        shared.emit(ManagerEvent::Started {
            id,
            name: spec.name,
            pid,
        });
        drop(state);
        let _ = shared.control.send(Control::Changed);
        Ok(id)
    }

    /// The current worker of `child` (its latest incarnation), if the
    /// child is supervised and has one.
    pub fn worker(&self, child: ChildId) -> Option<Worker> {
        self.shared
            .state
            .lock()
            .children
            .get(&child)
            .and_then(|c| c.worker.clone())
    }

    /// Calls `function` on the current worker of `child`, waiting at most
    /// `timeout` in all (see [`Worker::call`]).
    ///
    /// A child being restarted — or whose worker ended before the call
    /// reached it ([`WorkerError::never_ran`]) — is waited for: the call
    /// goes to its next worker, within the same `timeout` (without one,
    /// until the child is restarted, removed or the manager gives up).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Escalated`] or [`ManagerError::ShutDown`] when the
    /// manager takes no more work, [`ManagerError::UnknownChild`] (also
    /// when the child is removed meanwhile), [`ManagerError::Worker`] when
    /// the call failed; a child still being restarted when `timeout` runs
    /// out fails with the retryable [`WorkerError::Restarting`].
    pub fn call(
        &self,
        child: ChildId,
        function: &SkFunction,
        extra: &Args,
        timeout: Option<Duration>,
    ) -> Result<Value, ManagerError> {
        let shared = &self.shared;
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        // The incarnation whose worker the call did not reach.
        let mut missed = None;
        let worker_error = |child: String, source: WorkerError| ManagerError::Worker {
            manager: shared.name.clone(),
            child,
            source: Box::new(source),
        };
        let restarting = |name: String| {
            let waited = started.elapsed();
            worker_error(
                name.clone(),
                WorkerError::Restarting {
                    worker: name,
                    waited,
                },
            )
        };
        loop {
            let (name, worker, incarnation) =
                {
                    let mut state = shared.state.lock();
                    loop {
                        state.phase.check(&shared.name)?;
                        let c = state.children.get(&child).ok_or_else(|| {
                            ManagerError::UnknownChild {
                                manager: shared.name.clone(),
                                child,
                            }
                        })?;
                        if let Some(worker) = &c.worker {
                            if missed != Some(c.incarnation) {
                                break (c.name.clone(), worker.clone(), c.incarnation);
                            }
                        }
                        let name = c.name.clone();
                        let timed_out = match deadline {
                            Some(d) => shared.changed.wait_until(&mut state, d).timed_out(),
                            None => {
                                shared.changed.wait(&mut state);
                                false
                            }
                        };
                        if timed_out {
                            return Err(restarting(name));
                        }
                    }
                };
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if missed.is_some() && left.is_some_and(|left| left.is_zero()) {
                // Out of time after a miss: not sent (a call with no time
                // left would only kill the new worker).
                return Err(restarting(name));
            }
            match worker.call(function, extra, left) {
                Err(e) if e.never_ran() => missed = Some(incarnation),
                result => return result.map_err(|source| worker_error(name, source)),
            }
        }
    }

    /// The supervised children, in start order.
    pub fn children(&self) -> Vec<ChildInfo> {
        self.shared
            .state
            .lock()
            .children
            .iter()
            .map(|(&id, c)| ChildInfo {
                id,
                name: c.name.clone(),
                restart: c.restart,
                pid: c.worker.as_ref().map(Worker::pid),
                restarts: c.restarts,
                state: c.state,
            })
            .collect()
    }

    /// A new subscription to the manager's events from now on. Each
    /// subscription gets every event; the channel is unbounded, so drop a
    /// receiver you no longer read.
    pub fn events(&self) -> Receiver<ManagerEvent> {
        let (tx, rx) = channel::unbounded();
        self.shared.subscribers.lock().push(tx);
        rx
    }

    /// Whether the manager has escalated (stopped its children and takes
    /// no more work).
    pub fn is_escalated(&self) -> bool {
        matches!(self.shared.state.lock().phase, Phase::Escalated { .. })
    }

    /// Stops `child` (killing it after `grace`) and stops supervising it;
    /// its budget slot is given back.
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownChild`].
    pub fn remove(&self, child: ChildId, grace: Duration) -> Result<(), ManagerError> {
        let shared = &self.shared;
        let removed = {
            let mut state = shared.state.lock();
            state.supervisor.remove(child);
            state.children.remove(&child)
        };
        let Some(removed) = removed else {
            return Err(ManagerError::UnknownChild {
                manager: shared.name.clone(),
                child,
            });
        };
        if let Some(worker) = &removed.worker {
            stop_and_reap(worker, grace);
        }
        let name = removed.name.clone();
        drop(removed); // gives the slot back
        shared.emit(ManagerEvent::Removed { id: child, name });
        let _ = shared.control.send(Control::Changed);
        Ok(())
    }

    /// Stops supervising (no more restarts), then stops every child in
    /// reverse start order, each with `grace` to exit before it is killed,
    /// and gives their budget slots back. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Stragglers`] when a killed worker was still alive
    /// shortly after.
    pub fn shutdown(&self, grace: Duration) -> Result<(), ManagerError> {
        let shared = &self.shared;
        let taken = {
            let mut state = shared.state.lock();
            if state.phase == Phase::ShutDown {
                return Ok(());
            }
            state.phase = Phase::ShutDown;
            take_all(&mut state, ChildState::Stopped)
        };
        shared.changed.notify_all();
        let _ = shared.control.send(Control::Stop);
        let stragglers = stop_all(&taken, grace);
        drop(taken);
        if let Some(handle) = self.supervision.lock().take() {
            // The thread ends after the operation in hand; a panic there has
            // already been reported on stderr.
            let _ = handle.join();
        }
        if stragglers.is_empty() {
            Ok(())
        } else {
            Err(ManagerError::Stragglers {
                manager: shared.name.clone(),
                children: stragglers,
            })
        }
    }
}

impl Drop for ProcessManager {
    fn drop(&mut self) {
        let _ = self.shutdown(self.shared.stop_grace);
    }
}

impl Phase {
    fn check(&self, manager: &str) -> Result<(), ManagerError> {
        match *self {
            Phase::Running => Ok(()),
            Phase::Escalated { restarts, within } => Err(ManagerError::Escalated {
                manager: manager.to_owned(),
                restarts,
                within,
            }),
            Phase::ShutDown => Err(ManagerError::ShutDown {
                manager: manager.to_owned(),
            }),
        }
    }
}

impl Shared {
    fn check_running(&self) -> Result<(), ManagerError> {
        self.state.lock().phase.check(&self.name)
    }

    fn budget_error(&self, child: &str, source: BudgetError) -> ManagerError {
        ManagerError::Budget {
            manager: self.name.clone(),
            child: child.to_owned(),
            source,
        }
    }

    fn emit(&self, event: ManagerEvent) {
        self.subscribers
            .lock()
            .retain(|s| s.send(event.clone()).is_ok());
        self.changed.notify_all();
    }
}
