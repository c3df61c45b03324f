//! A call's mailbox: where the events of one call (the questions its code
//! asks, then its end) wait for whoever waits for the call.
//!
//! It does what a crossbeam channel did here at a fraction of the cost of
//! one per call: one small allocation (a general channel allocates and
//! zeroes a block of slots on its first message), and a call's usual
//! single event is kept inline. Like a channel, sending fails once the
//! receiver is gone, and receiving fails once the sender is gone and
//! nothing is left.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;
use parking_lot::{Condvar, Mutex};

use super::CallEvent;

struct State {
    /// The oldest event, when there is one (a call's usual only event).
    first: Option<CallEvent>,
    /// Events after `first`.
    rest: VecDeque<CallEvent>,
    sender: bool,
    receiver: bool,
}

impl State {
    fn pop(&mut self) -> Option<CallEvent> {
        self.first.take().or_else(|| self.rest.pop_front())
    }
}

struct Inner {
    state: Mutex<State>,
    arrived: Condvar,
    /// The number of frames sent to the worker once the call was out
    /// (`u64::MAX` until it is): while it is the last, a channel reset
    /// proves the call never reached the worker.
    sent: AtomicU64,
}

/// A new mailbox's two ends.
pub(super) fn mailbox() -> (MailSender, MailReceiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            first: None,
            rest: VecDeque::new(),
            sender: true,
            receiver: true,
        }),
        arrived: Condvar::new(),
        sent: AtomicU64::new(u64::MAX),
    });
    (MailSender(Arc::clone(&inner)), MailReceiver(inner))
}

/// The end events are sent to.
pub(super) struct MailSender(Arc<Inner>);

impl MailSender {
    /// The number of frames sent to the worker once the call was out
    /// (`u64::MAX` until it is).
    pub(super) fn sent(&self) -> u64 {
        self.0.sent.load(Ordering::Acquire)
    }

    /// Queues `event`; gives it back when the receiver is gone.
    pub(super) fn send(&self, event: CallEvent) -> Result<(), CallEvent> {
        let mut state = self.0.state.lock();
        if !state.receiver {
            return Err(event);
        }
        if state.first.is_none() && state.rest.is_empty() {
            state.first = Some(event);
        } else {
            state.rest.push_back(event);
        }
        drop(state);
        self.0.arrived.notify_one();
        Ok(())
    }
}

impl Drop for MailSender {
    fn drop(&mut self) {
        self.0.state.lock().sender = false;
        self.0.arrived.notify_all();
    }
}

/// The end events are received from.
pub(super) struct MailReceiver(Arc<Inner>);

impl std::fmt::Debug for MailReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailReceiver")
    }
}

impl MailReceiver {
    /// Records that the call went out as the `sent`th frame.
    pub(super) fn set_sent(&self, sent: u64) {
        self.0.sent.store(sent, Ordering::Release);
    }

    /// The next event, if one is there.
    pub(super) fn try_recv(&self) -> Option<CallEvent> {
        self.0.state.lock().pop()
    }

    /// The next event, waiting for it at most until `deadline` (`None`: no
    /// limit); `Disconnected` once the sender is gone and nothing is left.
    pub(super) fn recv_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<CallEvent, RecvTimeoutError> {
        let mut state = self.0.state.lock();
        loop {
            if let Some(event) = state.pop() {
                return Ok(event);
            }
            if !state.sender {
                return Err(RecvTimeoutError::Disconnected);
            }
            match deadline {
                None => self.0.arrived.wait(&mut state),
                Some(deadline) => {
                    if self.0.arrived.wait_until(&mut state, deadline).timed_out() {
                        return state.pop().ok_or(RecvTimeoutError::Timeout);
                    }
                }
            }
        }
    }

    /// The next event, waiting for it at most `timeout`.
    pub(super) fn recv_timeout(&self, timeout: Duration) -> Result<CallEvent, RecvTimeoutError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }
}

impl Drop for MailReceiver {
    fn drop(&mut self) {
        self.0.state.lock().receiver = false;
    }
}
