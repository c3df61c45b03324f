//! A live object for the snapshot tests: a thread that adds up the values
//! pushed to it, whose state is snapshotted while it runs.

use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::Snapshot;

/// The state of an [`Accumulator`]: how many values it has seen, their sum,
/// and the largest one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccumulatorState {
    /// Number of values pushed.
    pub(crate) count: u64,
    /// Sum of the values pushed.
    pub(crate) sum: i128,
    /// The largest value pushed, if any.
    pub(crate) max: Option<i64>,
}

impl AccumulatorState {
    /// A state as if `values` had been pushed.
    pub(crate) fn of(values: impl IntoIterator<Item = i64>) -> Self {
        let mut state = Self::default();
        for value in values {
            state.add(value);
        }
        state
    }

    fn add(&mut self, value: i64) {
        self.count += 1;
        self.sum += i128::from(value);
        self.max = Some(self.max.map_or(value, |max| max.max(value)));
    }
}

/// Why an [`Accumulator`] operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccumulatorError {
    /// The worker thread could not be started.
    #[error("cannot start the accumulator thread")]
    Spawn(#[source] std::io::Error),
    /// The worker thread has stopped (it panicked).
    #[error("the accumulator thread has stopped")]
    Stopped,
}

enum Request {
    Push(i64),
    Snapshot(Sender<AccumulatorState>),
}

/// A live object for the snapshot tests: a background thread that adds up
/// pushed values.
///
/// Values travel to the thread over a channel; [`Snapshot::snapshot`] sends a
/// request through the same channel, so the reply reflects every value
/// pushed before it, while the thread keeps running. Dropping the
/// accumulator stops and joins its thread.
#[derive(Debug)]
pub(crate) struct Accumulator {
    requests: Option<Sender<Request>>,
    worker: Option<JoinHandle<AccumulatorState>>,
}

impl Accumulator {
    /// Starts an empty accumulator.
    ///
    /// # Errors
    ///
    /// [`AccumulatorError::Spawn`] if the thread cannot be started.
    pub(crate) fn new() -> Result<Self, AccumulatorError> {
        Self::start(AccumulatorState::default())
    }

    fn start(state: AccumulatorState) -> Result<Self, AccumulatorError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = thread::Builder::new()
            .name("sk-cereal accumulator".to_owned())
            .spawn(move || run(state, &rx))
            .map_err(AccumulatorError::Spawn)?;
        Ok(Self {
            requests: Some(tx),
            worker: Some(worker),
        })
    }

    /// Hands `value` to the worker thread.
    ///
    /// # Errors
    ///
    /// [`AccumulatorError::Stopped`] if the worker has stopped.
    pub(crate) fn push(&self, value: i64) -> Result<(), AccumulatorError> {
        self.send(Request::Push(value))
    }

    /// Stops the worker thread, waits for it, and returns the final state.
    ///
    /// # Errors
    ///
    /// [`AccumulatorError::Stopped`] if the worker had stopped on its own.
    pub(crate) fn stop(mut self) -> Result<AccumulatorState, AccumulatorError> {
        self.shutdown().ok_or(AccumulatorError::Stopped)
    }

    /// Closes the channel and joins the worker; `None` if it panicked.
    fn shutdown(&mut self) -> Option<AccumulatorState> {
        // Closing the channel ends the worker loop after it drains.
        drop(self.requests.take());
        self.worker.take().and_then(|worker| worker.join().ok())
    }

    fn send(&self, request: Request) -> Result<(), AccumulatorError> {
        let requests = self.requests.as_ref().ok_or(AccumulatorError::Stopped)?;
        requests
            .send(request)
            .map_err(|_| AccumulatorError::Stopped)
    }
}

/// The worker loop: ends when every sender is gone.
fn run(mut state: AccumulatorState, requests: &Receiver<Request>) -> AccumulatorState {
    for request in requests {
        match request {
            Request::Push(value) => state.add(value),
            Request::Snapshot(reply) => {
                // The asker may have given up; nothing to do then.
                let _ = reply.send(state.clone());
            }
        }
    }
    state
}

impl Snapshot for Accumulator {
    type State = AccumulatorState;
    type Error = AccumulatorError;

    fn snapshot(&self) -> Result<AccumulatorState, AccumulatorError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(Request::Snapshot(tx))?;
        rx.recv().map_err(|_| AccumulatorError::Stopped)
    }

    fn restore(state: AccumulatorState) -> Result<Self, AccumulatorError> {
        Self::start(state)
    }
}

impl Drop for Accumulator {
    fn drop(&mut self) {
        // A panicked worker has nothing left to clean up.
        let _ = self.shutdown();
    }
}
