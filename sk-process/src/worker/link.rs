//! [`Link`]: what differs between a worker process and a worker thread,
//! behind one trait, as the parent's handle drives it. Everything else
//! about a worker — its pending calls, how it ended, who watches it — is
//! [`Shared`] and the same for both.

use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;
use sk_core::{Args, Encoding, SkFunction};

use super::mailbox::MailReceiver;
use super::{CallEvent, Shared};
use crate::error::WorkerError;
use crate::wire::{StorageOp, ToWorker};

/// One backend of a worker (`process.rs`, `thread.rs`).
pub(super) trait Link: Send + Sync + 'static {
    /// The state every backend keeps the same way.
    fn shared(&self) -> &Shared;

    /// Sends `message`; the number of frames sent to the worker so far,
    /// this one included (0 where frames are not counted).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Closed`] when the worker takes no more messages,
    /// [`WorkerError::Encode`] or [`WorkerError::Protocol`] when the
    /// channel cannot carry it.
    fn send(&self, message: ToWorker) -> Result<u64, WorkerError>;

    /// Sends call `id` of `function` with `extra` arguments, its output
    /// to come back as `output`; as [`send`](Link::send) does
    /// [`ToWorker::Call`].
    ///
    /// # Errors
    ///
    /// As [`send`](Link::send).
    fn send_call(
        &self,
        id: u64,
        function: &SkFunction,
        extra: &Args,
        output: Encoding,
    ) -> Result<u64, WorkerError> {
        self.send(ToWorker::Call {
            id,
            function: std::sync::Arc::new(function.clone()),
            extra: extra.clone(),
            output,
        })
    }

    /// Writes raw bytes on the channel (tests of bad input).
    ///
    /// # Errors
    ///
    /// [`WorkerError::Closed`] where there is no byte channel.
    fn send_raw(&self, bytes: &[u8]) -> Result<(), WorkerError>;

    /// Waits at most `timeout` until the worker serves calls.
    ///
    /// # Errors
    ///
    /// As [`Worker::ready`](super::Worker::ready).
    fn await_ready(&self, timeout: Duration) -> Result<(), WorkerError>;

    /// Becomes the reader of the worker's channel if nobody is (see
    /// `Relay::try_lead`); whether it did.
    fn lead(&self) -> bool {
        false
    }

    /// Gives up a lead taken with [`lead`](Link::lead) without waiting.
    fn unlead(&self) {}

    /// A call went out that no thread may wait for (`submit`): whatever
    /// the worker sends until it ends must be read all the same.
    fn watch(&self) {}

    /// The next event of a call (its end or a question), waiting at most
    /// until `deadline` and reading the channel meanwhile if need be.
    fn next_event(
        &self,
        events: &MailReceiver,
        deadline: Option<Instant>,
        leading: bool,
    ) -> Result<CallEvent, RecvTimeoutError>;

    /// The next message from the running code, waiting at most until
    /// `deadline`.
    fn next_message(&self, deadline: Instant) -> Option<Vec<u8>>;

    /// No more calls will be sent (after `Stop`).
    fn close(&self) {}

    /// Ends the worker now; calls in hand fail.
    fn kill(&self);

    /// Whether everything the worker sent is in, so its end can be
    /// settled.
    fn drained(&self) -> bool {
        true
    }

    /// The worker's end is settled: wake whoever still waits on it.
    fn settled(&self) {}

    /// Whether call `id`, sent as the `sent`th frame, surely never started
    /// on the worker that ended.
    fn never_started(&self, id: u64, sent: u64) -> bool {
        let _ = (id, sent);
        false
    }

    /// Whether the worker said its program lacks `init()`.
    fn missing_init(&self) -> bool {
        false
    }

    /// The worker said it serves calls.
    fn on_ready(&self) {}

    /// The worker said its program lacks `init()`.
    fn on_missing_init(&self) {}

    /// The worker asked for a global-storage operation (only processes
    /// host their storage in the parent).
    fn host_storage(&self, id: u64, op: StorageOp) {
        let _ = (id, op);
    }
}
