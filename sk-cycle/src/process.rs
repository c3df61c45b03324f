//! Running parts in worker processes: a run's pool of workers for parts
//! placed with [`CyclePart::in_process`](crate::CyclePart::in_process), and
//! one long-lived worker per name for
//! [`CyclePart::in_named_process`](crate::CyclePart::in_named_process).
//!
//! A part's call blocks a dedicated thread, not the engine's pool. A part
//! over its timeout has its worker killed (true preemption) and ends timed
//! out; a worker that dies mid-part fails the part (its error mode then
//! decides: retry runs it again on a fresh worker). A dead worker is never
//! reused: the next part gets a new one.
//!
//! A part that never started — its worker was found dead when the call
//! went out, ended before the call reached it
//! ([`WorkerError::never_ran`]), or a fresh worker died while starting —
//! runs on another worker whatever its error mode, without counting as an
//! attempt (at most [`MAX_DELIVERIES`] workers a call).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use sk_core::{Args, SkFunction, Value};
use sk_process::{Answerer, Backend, CallOptions, Worker, WorkerError};

use crate::context::Input;
use crate::mode::Placement;

/// How many workers one call may be handed to while none of them gets
/// it; the last error is then the part's.
pub(crate) const MAX_DELIVERIES: u32 = 8;

/// How one delivery of a call ended.
enum Delivery {
    /// The call ran (or may have) on the worker with this process id:
    /// its result is the part's.
    Ran(Result<Value, WorkerError>, u32),
    /// It surely never started; another worker may take it.
    NotRun(WorkerError),
}

impl Delivery {
    /// What `worker`'s answer `result` makes of the call.
    fn of(result: Result<Value, WorkerError>, worker: &Worker) -> Self {
        match result {
            Err(e) if e.never_ran() => Delivery::NotRun(e),
            other => Delivery::Ran(other, worker.pid()),
        }
    }
}

/// A worker that could not be started leaves the call unrun, unless the
/// program itself is wrong (no `init()`): that is the part's error.
fn not_started(e: WorkerError) -> Delivery {
    match e {
        e @ WorkerError::MissingInit { .. } => Delivery::Ran(Err(e), 0),
        e => Delivery::NotRun(e),
    }
}

/// The workers of one run.
pub(crate) struct ProcessRunner {
    cycle: Arc<str>,
    backend: Backend,
    pool_size: usize,
    pooled: Mutex<PoolState>,
    idle_changed: Condvar,
    named: Mutex<HashMap<String, Arc<Mutex<Option<Worker>>>>>,
    spawned: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Worker>,
    live: usize,
    closed: bool,
}

impl ProcessRunner {
    pub(crate) fn new(cycle: Arc<str>, backend: Backend, pool_size: usize) -> Self {
        ProcessRunner {
            cycle,
            backend,
            pool_size: pool_size.max(1),
            pooled: Mutex::new(PoolState::default()),
            idle_changed: Condvar::new(),
            named: Mutex::new(HashMap::new()),
            spawned: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn spawn(&self, label: &str) -> Result<Worker, WorkerError> {
        let n = self
            .spawned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Worker::spawn(format!("{}:{label}:{n}", self.cycle), self.backend)
    }

    /// Runs `function` for a part placed at `placement`, with the part's
    /// input bound as `input` when the function takes it (within the
    /// timeout and in the output format of `options`), `answer`
    /// answering the questions its code asks of the run; `ran_on` is set
    /// to the process id of the worker the call ran on (0: none).
    pub(crate) fn call(
        &self,
        placement: &Placement,
        function: &SkFunction,
        input: &Input,
        options: CallOptions,
        ran_on: &mut u32,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        let args = input_args(function, input);
        let mut deliveries = 0;
        loop {
            let delivery = match placement {
                Placement::NamedProcess(name) => {
                    self.call_named(name, function, &args, options, answer)
                }
                _ => self.call_pooled(function, &args, options, answer),
            };
            match delivery {
                Delivery::Ran(result, pid) => {
                    *ran_on = pid;
                    return result;
                }
                Delivery::NotRun(e) => {
                    deliveries += 1;
                    if deliveries >= MAX_DELIVERIES || self.pooled.lock().closed {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn call_pooled(
        &self,
        function: &SkFunction,
        args: &Args,
        options: CallOptions,
        answer: Answerer<'_>,
    ) -> Delivery {
        let worker = {
            let mut state = self.pooled.lock();
            loop {
                if state.closed {
                    return Delivery::Ran(
                        Err(WorkerError::Closed {
                            worker: format!("{}:pool", self.cycle),
                        }),
                        0,
                    );
                }
                if let Some(worker) = state.idle.pop() {
                    break Some(worker);
                }
                if state.live < self.pool_size {
                    state.live += 1;
                    break None;
                }
                self.idle_changed.wait(&mut state);
            }
        };
        let worker = match worker {
            Some(worker) => worker,
            None => match self.spawn("pool") {
                Ok(worker) => worker,
                Err(e) => {
                    self.pooled.lock().live -= 1;
                    self.idle_changed.notify_one();
                    return not_started(e);
                }
            },
        };
        let result = worker.call_with(function, args, options, answer);
        let delivery = Delivery::of(result, &worker);
        let mut state = self.pooled.lock();
        let kept = matches!(&delivery, Delivery::Ran(result, _) if reusable(result));
        if worker.is_alive() && kept && !state.closed {
            state.idle.push(worker);
        } else {
            state.live -= 1;
            drop(state);
            worker.kill();
        }
        self.idle_changed.notify_one();
        delivery
    }

    fn call_named(
        &self,
        name: &str,
        function: &SkFunction,
        args: &Args,
        options: CallOptions,
        answer: Answerer<'_>,
    ) -> Delivery {
        let slot = Arc::clone(self.named.lock().entry(name.to_owned()).or_default());
        // Parts bound to one named process run there one at a time.
        let mut slot = slot.lock();
        let worker = match slot.as_ref() {
            Some(worker) if worker.is_alive() => worker.clone(),
            _ => {
                let worker = match self.spawn(name) {
                    Ok(worker) => worker,
                    Err(e) => return not_started(e),
                };
                *slot = Some(worker.clone());
                worker
            }
        };
        let result = worker.call_with(function, args, options, answer);
        if !worker.is_alive() || !reusable(&result) {
            worker.kill();
            *slot = None;
        }
        Delivery::of(result, &worker)
    }

    /// Stops every worker: finish, then kill after `grace`.
    pub(crate) fn shutdown(&self, grace: Duration) {
        let idle = {
            let mut state = self.pooled.lock();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        self.idle_changed.notify_all();
        let named: Vec<_> = self.named.lock().drain().map(|(_, w)| w).collect();
        let mut workers = idle;
        for slot in named {
            if let Some(worker) = slot.lock().take() {
                workers.push(worker);
            }
        }
        for worker in &workers {
            worker.stop(grace);
        }
    }
}

impl Drop for ProcessRunner {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

/// Whether a worker may serve another part after this result: not after a
/// timeout, a death or a protocol error, even if it still looks alive.
fn reusable(result: &Result<Value, WorkerError>) -> bool {
    !matches!(
        result,
        Err(WorkerError::TimedOut { .. }
            | WorkerError::Died { .. }
            | WorkerError::Protocol { .. }
            | WorkerError::Closed { .. }
            | WorkerError::NotDelivered { .. })
    )
}

/// The call's extra arguments: the part's input as `input`, when the
/// function has a parameter of that name and there is an input to give.
pub(crate) fn input_args(function: &SkFunction, input: &Input) -> Args {
    let takes_input = function
        .spec()
        .is_ok_and(|spec| spec.param("input").is_some());
    match input {
        Input::Value(value) if takes_input => match value.encode_any() {
            Ok((encoding, bytes)) => {
                Args::new().with_bytes("input", value.type_name().to_owned(), encoding, bytes)
            }
            // A local-only value cannot be sent; the call then fails naming
            // the missing argument.
            Err(_) => Args::new(),
        },
        _ => Args::new(),
    }
}
