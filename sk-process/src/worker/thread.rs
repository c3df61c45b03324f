//! The thread backend: a worker that is a thread of this process, fed
//! through channels. It serves the same messages as a process and ends
//! the same observable ways, so the same suites pass on both (see
//! [`Backend`](crate::Backend)).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam::channel::{self, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use sk_core::StopToken;

use super::child::{Outbox, ServeEnd, serve_thread};
use super::link::Link;
use super::mailbox::MailReceiver;
use super::{CallEvent, Shared, died, dispatch, settle};
use crate::backend::Backend;
use crate::error::{ProtocolError, WorkerError};
use crate::vocab::Exit;
use crate::wire::{Answer, FromWorker, ToWorker};

/// A worker thread's end of its channels.
pub(super) struct ThreadLink {
    shared: Shared,
    /// Calls and stop requests (dropped to make the thread end).
    tx: Mutex<Option<Sender<ToWorker>>>,
    /// Messages for the running code.
    messages: Sender<Vec<u8>>,
    /// Answers to the running code's questions (dropped when the worker
    /// is killed, which wakes a question waiting for one).
    answers: Mutex<Option<Sender<(u64, Answer)>>>,
    stop: StopToken,
}

/// Where a worker thread's messages go: straight to its handle's routing.
struct ThreadOutbox {
    link: Weak<ThreadLink>,
}

impl Outbox for ThreadOutbox {
    fn send(&self, message: FromWorker) -> Result<(), ProtocolError> {
        let Some(link) = self.link.upgrade() else {
            return Err(ProtocolError::Io(std::io::Error::other(
                "parent handle dropped",
            )));
        };
        dispatch(&*link, message);
        Ok(())
    }
}

/// Starts a worker thread named `name`.
pub(super) fn start(name: String) -> Result<Arc<dyn Link>, WorkerError> {
    let (tx, rx) = channel::unbounded::<ToWorker>();
    let (messages, inbox) = channel::unbounded::<Vec<u8>>();
    let (answers, answers_rx) = channel::unbounded();
    let stop = StopToken::new();
    let link = Arc::new(ThreadLink {
        shared: Shared::new(name.clone(), Backend::Thread, std::process::id()),
        tx: Mutex::new(Some(tx)),
        messages,
        answers: Mutex::new(Some(answers)),
        stop: stop.clone(),
    });
    let outbox: Arc<dyn Outbox> = Arc::new(ThreadOutbox {
        link: Arc::downgrade(&link),
    });
    let weak = Arc::downgrade(&link);
    std::thread::Builder::new()
        .name(format!("sk-worker:{name}"))
        .spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                serve_thread(&rx, inbox, answers_rx, outbox, &stop)
            }));
            if let Some(link) = weak.upgrade() {
                link.shared.record(match served {
                    Ok(ServeEnd::Stopped | ServeEnd::ParentGone) => Exit::Normal,
                    Ok(ServeEnd::Protocol(e)) => Exit::Failed(format!("protocol error: {e}")),
                    Err(_) => Exit::Failed("the worker thread panicked".to_owned()),
                });
                settle(&*link);
            }
        })
        .map_err(|source| WorkerError::Spawn {
            worker: name,
            source,
        })?;
    Ok(link)
}

impl Link for ThreadLink {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn send(&self, message: ToWorker) -> Result<u64, WorkerError> {
        let sent = match message {
            ToWorker::Message { bytes } => self.messages.send(bytes).is_ok(),
            ToWorker::Answer { id, answer } => self
                .answers
                .lock()
                .as_ref()
                .is_some_and(|tx| tx.send((id, answer)).is_ok()),
            other => self
                .tx
                .lock()
                .as_ref()
                .is_some_and(|tx| tx.send(other).is_ok()),
        };
        if sent {
            Ok(0)
        } else {
            Err(self.shared.closed())
        }
    }

    fn send_raw(&self, _bytes: &[u8]) -> Result<(), WorkerError> {
        Err(self.shared.closed())
    }

    fn await_ready(&self, _timeout: Duration) -> Result<(), WorkerError> {
        if self.shared.alive.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err(died(self))
        }
    }

    fn next_event(
        &self,
        events: &MailReceiver,
        deadline: Option<Instant>,
        _leading: bool,
    ) -> Result<CallEvent, RecvTimeoutError> {
        events.recv_deadline(deadline)
    }

    fn next_message(&self, deadline: Instant) -> Option<Vec<u8>> {
        self.shared.messages.1.recv_deadline(deadline).ok()
    }

    fn close(&self) {
        self.tx.lock().take();
    }

    /// The thread has its stop token set and is abandoned (a thread
    /// cannot be killed).
    fn kill(&self) {
        // Record the kill first: closing the channel wakes the thread,
        // which would otherwise report a normal exit.
        self.shared.record(Exit::Signal(libc::SIGKILL));
        settle(self);
        self.stop.stop();
        self.tx.lock().take();
        self.answers.lock().take();
    }
}

impl Drop for ThreadLink {
    fn drop(&mut self) {
        self.tx.lock().take();
    }
}
