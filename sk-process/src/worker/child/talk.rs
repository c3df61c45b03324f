//! The running code's line to its parent: [`tell_parent`],
//! [`listen_parent`] and [`ask_parent`], on the thread that runs a
//! worker's call, the same on both backends.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver};

use super::{Asked, Outbox, WorkerLink};
use crate::error::ProtocolError;
use crate::spawn::ENV_NAME;
use crate::wire::{Answer, FromWorker};

/// The running code's line to its parent: set on the thread that runs a
/// worker's calls.
pub(super) enum Line {
    Thread {
        outbox: Arc<dyn Outbox>,
        inbox: Receiver<Vec<u8>>,
        answers: Receiver<(u64, Answer)>,
        next_question: std::cell::Cell<u64>,
    },
    Process(Arc<WorkerLink>),
}

thread_local! {
    pub(super) static LINE: std::cell::RefCell<Option<Line>> = const { std::cell::RefCell::new(None) };
    /// The id of the call this thread runs (0: none).
    static CALL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as running call `id` until dropped.
pub(super) struct InCall;

impl InCall {
    pub(super) fn enter(id: u64) -> InCall {
        CALL.with(|call| call.set(id));
        InCall
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        CALL.with(|call| call.set(0));
    }
}

/// Asks the parent a question from the code a worker is running, and
/// waits at most `timeout` for the answer: the bytes are the caller's
/// own protocol (encode them with `sk_cereal`, say). The parent answers
/// on the thread that waits for the call, with the answerer it gave
/// [`Worker::call_answering`](crate::Worker::call_answering); a call made
/// without one answers every question with
/// [`WorkerError::Unanswered`](crate::WorkerError::Unanswered).
///
/// Only the thread that runs the call may ask (a thread the call starts
/// has no call of its own). The same on both backends.
///
/// # Errors
///
/// [`WorkerError::Closed`](crate::WorkerError::Closed) only when not
/// called from the thread running a worker's call;
/// [`WorkerError::Unanswered`](crate::WorkerError::Unanswered) when the
/// parent gave no answer (saying why), none came within `timeout`, or the
/// channel to the parent ended; a protocol error when the question cannot
/// be sent.
pub fn ask_parent(question: &[u8], timeout: Duration) -> Result<Vec<u8>, crate::WorkerError> {
    let call = CALL.with(std::cell::Cell::get);
    let closed = || crate::WorkerError::Closed {
        worker: current_name(),
    };
    if call == 0 {
        return Err(closed());
    }
    let unanswered = |why: String| crate::WorkerError::Unanswered {
        worker: current_name(),
        why,
    };
    let protocol = |source| crate::WorkerError::Protocol {
        worker: current_name(),
        source,
    };
    let channel_closed = || unanswered("the channel to the parent closed".to_owned());
    let deadline = Instant::now() + timeout;
    let answer = LINE.with(|line| match line.borrow().as_ref() {
        Some(Line::Thread {
            outbox,
            answers,
            next_question,
            ..
        }) => {
            let id = next_question.get() + 1;
            next_question.set(id);
            let question = question.to_vec();
            outbox
                .send(FromWorker::Ask { call, id, question })
                .map_err(protocol)?;
            loop {
                match answers.recv_deadline(deadline) {
                    Ok((got, answer)) if got == id => break Ok(answer),
                    // An answer to an earlier question that timed out.
                    Ok(_) => {}
                    Err(channel::RecvTimeoutError::Timeout) => {
                        break Err(unanswered(format!("no answer within {timeout:?}")));
                    }
                    Err(channel::RecvTimeoutError::Disconnected) => {
                        break Err(channel_closed());
                    }
                }
            }
        }
        Some(Line::Process(link)) => link.ask(call, question, deadline).map_err(|e| match e {
            Asked::Send(source) => protocol(source),
            Asked::TimedOut => unanswered(format!("no answer within {timeout:?}")),
            Asked::Closed => channel_closed(),
        }),
        None => Err(closed()),
    })?;
    answer.map_err(unanswered)
}

/// Sends `message` to the parent of this worker (read there with
/// [`Worker::listen`](crate::Worker::listen)).
///
/// # Errors
///
/// [`WorkerError::Closed`](crate::WorkerError::Closed) when not called from
/// code a worker is running, [`WorkerError::Encode`](crate::WorkerError::Encode)
/// when the message does not serialize, a protocol error when the channel
/// fails.
pub fn tell_parent<T: serde::Serialize>(message: &T) -> Result<(), crate::WorkerError> {
    let bytes =
        sk_cereal::Internal::encode(message).map_err(|source| crate::WorkerError::Encode {
            worker: current_name(),
            source,
        })?;
    LINE.with(|line| {
        let sent = match line.borrow().as_ref() {
            Some(Line::Thread { outbox, .. }) => outbox.send(FromWorker::Message { bytes }),
            Some(Line::Process(link)) => link.send(FromWorker::Message { bytes }),
            None => {
                return Err(crate::WorkerError::Closed {
                    worker: current_name(),
                });
            }
        };
        sent.map_err(|source| crate::WorkerError::Protocol {
            worker: current_name(),
            source,
        })
    })
}

/// Waits at most `timeout` for a message from the parent (sent with
/// [`Worker::tell`](crate::Worker::tell)); `Ok(None)` when none came.
///
/// # Errors
///
/// [`WorkerError::Closed`](crate::WorkerError::Closed) when not called from
/// code a worker is running, a protocol error when the message is not a `T`.
pub fn listen_parent<T: serde::de::DeserializeOwned>(
    timeout: Duration,
) -> Result<Option<T>, crate::WorkerError> {
    let got = LINE.with(|line| match line.borrow().as_ref() {
        Some(Line::Thread { inbox, .. }) => Ok(inbox.recv_timeout(timeout).ok()),
        Some(Line::Process(link)) => Ok(link.listen(timeout)),
        None => Err(crate::WorkerError::Closed {
            worker: current_name(),
        }),
    })?;
    got.map(|bytes| {
        sk_cereal::Internal::decode(&bytes).map_err(|e| crate::WorkerError::Protocol {
            worker: current_name(),
            source: ProtocolError::Malformed(e),
        })
    })
    .transpose()
}

pub(super) fn current_name() -> String {
    std::env::var(ENV_NAME).unwrap_or_else(|_| {
        thread::current()
            .name()
            .and_then(|n| n.strip_prefix("sk-worker:"))
            .unwrap_or("worker")
            .to_owned()
    })
}
