//! [`PendingCall`]: a call on its way to a worker, and the wait for its
//! end — answering, meanwhile, the questions its code asks.

use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError};
use sk_core::Value;

use super::{Answerer, CallEvent, Worker, died, refuse};
use crate::error::WorkerError;

/// A call sent to a worker, not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    pub(super) worker: Worker,
    pub(super) id: u64,
    pub(super) function: String,
    pub(super) rx: Receiver<CallEvent>,
}

impl PendingCall {
    /// Waits for the answer, at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait(self, timeout: Option<Duration>) -> Result<Value, WorkerError> {
        self.wait_as(timeout, false, &mut refuse)
    }

    /// [`wait`](Self::wait), with `answer` answering the questions the
    /// function asks meanwhile (see [`Worker::call_answering`]). Questions
    /// asked before the wait began are answered when it begins.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait_answering(
        self,
        timeout: Option<Duration>,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        self.wait_as(timeout, false, answer)
    }

    /// Waits, `leading` the channel's reading already or not, answering
    /// questions with `answer`.
    pub(super) fn wait_as(
        self,
        timeout: Option<Duration>,
        mut leading: bool,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        let link = &*self.worker.link;
        let shared = link.shared();
        let deadline = timeout.map(|t| Instant::now() + t);
        let received = loop {
            match link.next_event(&self.rx, deadline, leading) {
                Ok(CallEvent::Done(reply)) => break Ok(reply),
                Ok(CallEvent::Ask { id, question }) => {
                    let reply = answer(&question);
                    // Be the reader before the answer goes out (see
                    // `Relay::try_lead`).
                    leading = link.lead();
                    super::answer(link, id, reply);
                }
                Err(e) => break Err(e),
            }
        };
        match received {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) if timeout.is_some() => {
                shared.pending.lock().remove(&self.id);
                tracing::warn!(
                    worker = %shared.name,
                    function = %self.function,
                    after = ?timeout.unwrap_or_default(),
                    "call timed out; killing the worker"
                );
                self.worker.kill();
                Err(WorkerError::TimedOut {
                    worker: shared.name.clone(),
                    function: self.function.clone(),
                    after: timeout.unwrap_or_default(),
                })
            }
            Err(_) => Err(died(link)),
        }
    }

    /// The worker the call went to.
    pub fn worker(&self) -> &Worker {
        &self.worker
    }
}

impl Drop for PendingCall {
    /// A call nobody waits for any more: forget it, and refuse the
    /// questions its code asked meanwhile (they would wait in vain).
    fn drop(&mut self) {
        let link = &*self.worker.link;
        link.shared().pending.lock().remove(&self.id);
        while let Ok(event) = self.rx.try_recv() {
            if let CallEvent::Ask { id, .. } = event {
                super::refuse_unwaited(link, id);
            }
        }
    }
}
