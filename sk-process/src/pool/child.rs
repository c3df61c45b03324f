//! The worker side of a pool: one registered function that runs a chunk
//! of items and reports an outcome per item.
//!
//! A worker runs one registered function per call, so a chunk travels as a
//! call of `__sk_pool_batch` carrying the user's handle and the items'
//! arguments. Each item runs on its own (a failure or panic is that item's
//! outcome, not the chunk's). In *streaming* mode each outcome is sent to
//! the parent as soon as the item ends, so the parent knows which item is
//! running (for per-item timeouts and for blaming a worker's death);
//! otherwise outcomes come back together as the call's output, one frame
//! per chunk.

use std::panic::{self, AssertUnwindSafe};

use serde::{Deserialize, Serialize};
use sk_core::{Args, Execute, FunctionError, SkFunction, StopToken};

/// The registered name of the batch function.
pub(crate) const BATCH: &str = "__sk_pool_batch";

/// The outcome of one item, as it crosses back to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The item's output: its type name and internal-format bytes.
    Done { type_name: String, bytes: Vec<u8> },
    /// The item failed.
    Failed(Failure),
}

/// Why an item failed in the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) retryable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FailureKind {
    Failed,
    Panicked,
}

/// One streamed outcome: item `offset` of chunk `chunk`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) chunk: u64,
    pub(crate) offset: u32,
    pub(crate) outcome: Outcome,
}

/// Runs `items` through `function` in order. Stops early (returning fewer
/// outcomes) when the worker's stop token is set, i.e. the thread worker
/// was killed.
#[sk_core::function(crate = ::sk_core, layer = internal)]
fn __sk_pool_batch(
    function: SkFunction,
    chunk: u64,
    items: Vec<Args>,
    stream: bool,
) -> Vec<Outcome> {
    let stop = StopToken::current();
    let mut outcomes = Vec::with_capacity(if stream { 0 } else { items.len() });
    for (offset, item) in items.iter().enumerate() {
        if stop.as_ref().is_some_and(StopToken::is_stopped) {
            break;
        }
        let outcome = run_item(&function, item);
        if stream {
            let report = Report {
                chunk,
                // A chunk never holds more than u32::MAX items (see
                // `Pool::chunk_for`).
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                outcome,
            };
            if let Err(unsent) = send(report) {
                outcomes.push(unsent.outcome);
            }
        } else {
            outcomes.push(outcome);
        }
    }
    outcomes
}

/// Streams `report` to the parent; gives it back when there is no parent
/// line (the batch ran outside a worker).
fn send(report: Report) -> Result<(), Report> {
    match crate::tell_parent(&report) {
        Ok(()) => Ok(()),
        Err(_) => Err(report),
    }
}

fn run_item(function: &SkFunction, item: &Args) -> Outcome {
    let run = || {
        function
            .execute_value_with(item)
            .and_then(|v| v.into_encoded().map_err(FunctionError::Cereal))
    };
    let result = panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        let message = sk_core::panic_message(&*payload);
        Err(FunctionError::Panicked {
            function: function.name().to_owned(),
            message,
        })
    });
    match result {
        Ok((type_name, bytes)) => Outcome::Done { type_name, bytes },
        Err(e) => Outcome::Failed(Failure {
            kind: if matches!(e, FunctionError::Panicked { .. }) {
                FailureKind::Panicked
            } else {
                FailureKind::Failed
            },
            message: sk_core::error_chain(&e),
            retryable: e.is_retryable(),
        }),
    }
}
