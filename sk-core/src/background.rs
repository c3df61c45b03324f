//! [`Background`]: a call running on a thread of its own, to join later.

use std::marker::PhantomData;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};

use crate::error::FunctionError;
use crate::stop::StopToken;
use crate::value::{Value, downcast_output};

/// A call running on a background thread, made by
/// [`Execute::background`](crate::Execute::background).
///
/// Dropping it detaches the call (it still runs to its end).
#[derive(Debug)]
#[must_use = "a background call's result is lost unless it is joined"]
pub struct Background<R> {
    function: String,
    result: Receiver<Result<Value, FunctionError>>,
    stop: StopToken,
    thread: Option<JoinHandle<()>>,
    _output: PhantomData<fn() -> R>,
}

impl<R: Send + 'static> Background<R> {
    pub(crate) fn spawn(
        function: &str,
        call: impl FnOnce() -> Result<Value, FunctionError> + Send + 'static,
    ) -> Result<Self, FunctionError> {
        let stop = StopToken::current().map_or_else(StopToken::new, |t| t.child());
        let (tx, rx) = bounded(1);
        let token = stop.clone();
        let thread = thread::Builder::new()
            .name(format!("sk-background:{function}"))
            .spawn(move || {
                let _ = tx.send(token.enter(call));
            })
            .map_err(|e| FunctionError::Background {
                function: function.to_owned(),
                reason: format!("cannot start the thread: {e}"),
            })?;
        Ok(Background {
            function: function.to_owned(),
            result: rx,
            stop,
            thread: Some(thread),
            _output: PhantomData,
        })
    }

    /// Waits for the call to finish and returns its output.
    ///
    /// # Errors
    ///
    /// The call's own error, or [`FunctionError::OutputType`] when it does
    /// not return an `R`.
    pub fn join(mut self) -> Result<R, FunctionError> {
        let received = self.result.recv();
        self.reap();
        match received {
            Ok(result) => downcast_output(&self.function, result?),
            Err(_) => Err(self.lost()),
        }
    }

    /// Waits at most `limit`; `Ok(None)` when the call is still running.
    ///
    /// # Errors
    ///
    /// As [`Background::join`]. After a result (or error) was returned,
    /// later calls return [`FunctionError::Background`].
    pub fn join_timeout(&mut self, limit: Duration) -> Result<Option<R>, FunctionError> {
        match self.result.recv_timeout(limit) {
            Ok(result) => {
                self.reap();
                downcast_output(&self.function, result?).map(Some)
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.lost()),
        }
    }

    /// Whether the call has finished.
    pub fn is_finished(&self) -> bool {
        !self.result.is_empty() || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Asks the call to stop: sets its [`StopToken`].
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The call's stop token.
    pub fn stop_token(&self) -> &StopToken {
        &self.stop
    }

    fn reap(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread sent its result and is ending; a panic was already
            // caught inside the call.
            let _ = thread.join();
        }
    }

    fn lost(&self) -> FunctionError {
        FunctionError::Background {
            function: self.function.clone(),
            reason: "no result: it was already taken or the thread died".to_owned(),
        }
    }
}
