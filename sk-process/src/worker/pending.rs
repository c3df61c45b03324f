//! [`PendingCall`]: a call on its way to a worker, and the wait for its
//! end — answering, meanwhile, the questions its code asks.

use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;
use sk_core::Value;

use super::mailbox::MailReceiver;
use super::{Answerer, CallEvent, Worker, died, refuse};
use crate::error::WorkerError;

/// A call sent to a worker, not yet answered.
#[derive(Debug)]
pub struct PendingCall {
    pub(super) worker: Worker,
    pub(super) id: u64,
    pub(super) function: String,
    pub(super) rx: MailReceiver,
    /// Its end has come: whoever sent it has taken the call off the
    /// pending ones, and nothing comes after it.
    pub(super) ended: bool,
}

impl PendingCall {
    /// Waits for the answer, at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait(mut self, timeout: Option<Duration>) -> Result<Value, WorkerError> {
        let function = std::mem::take(&mut self.function);
        self.wait_as(timeout, false, &mut refuse, &function)
    }

    /// [`wait`](Self::wait), with `answer` answering the questions the
    /// function asks meanwhile (see [`Worker::call_answering`]). Questions
    /// asked before the wait began are answered when it begins.
    ///
    /// # Errors
    ///
    /// As [`Worker::call`].
    pub fn wait_answering(
        mut self,
        timeout: Option<Duration>,
        answer: Answerer<'_>,
    ) -> Result<Value, WorkerError> {
        let function = std::mem::take(&mut self.function);
        self.wait_as(timeout, false, answer, &function)
    }

    /// Waits, `leading` the channel's reading already or not, answering
    /// questions with `answer`; `function`: the name of the function
    /// called.
    pub(super) fn wait_as(
        mut self,
        timeout: Option<Duration>,
        mut leading: bool,
        answer: Answerer<'_>,
        function: &str,
    ) -> Result<Value, WorkerError> {
        let link = &*self.worker.link;
        let shared = link.shared();
        let deadline = timeout.map(|t| Instant::now() + t);
        let received = loop {
            match link.next_event(&self.rx, deadline, leading) {
                Ok(CallEvent::Done(reply)) => {
                    self.ended = true;
                    break Ok(reply);
                }
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
                    function = %function,
                    after = ?timeout.unwrap_or_default(),
                    "call timed out; killing the worker"
                );
                self.worker.kill();
                Err(WorkerError::TimedOut {
                    worker: shared.name.clone(),
                    function: function.to_owned(),
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
        if self.ended {
            return;
        }
        let link = &*self.worker.link;
        link.shared().pending.lock().remove(&self.id);
        while let Some(event) = self.rx.try_recv() {
            if let CallEvent::Ask { id, .. } = event {
                super::refuse_unwaited(link, id);
            }
        }
    }
}
