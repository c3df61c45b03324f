//! How a call whose worker ended is reported: died (it may have run) or
//! not delivered (it surely never started), and the program mistake of a
//! worker without `init()`.

use std::sync::atomic::Ordering;

use super::{Inner, Link};
use crate::error::WorkerError;
use crate::relay::Ended;

/// The worker died with the call in hand: it may have run.
pub(super) fn died(inner: &Inner) -> WorkerError {
    if let Some(e) = missing_init(inner) {
        return e;
    }
    WorkerError::Died {
        worker: inner.name.clone(),
        pid: inner.pid,
        status: status(inner),
    }
}

/// How the worker ended, as far as is known.
fn status(inner: &Inner) -> String {
    inner
        .cause
        .lock()
        .as_ref()
        .map_or_else(|| "its channel closed".to_owned(), ToString::to_string)
}

fn missing_init(inner: &Inner) -> Option<WorkerError> {
    let Link::Process(p) = &inner.link else {
        return None;
    };
    p.missing_init
        .load(Ordering::Acquire)
        .then(|| WorkerError::MissingInit {
            worker: inner.name.clone(),
            pid: inner.pid,
        })
}

/// The worker ended before the call reached it: the call never ran.
pub(super) fn not_delivered(inner: &Inner) -> WorkerError {
    if let Some(e) = missing_init(inner) {
        return e;
    }
    WorkerError::NotDelivered {
        worker: inner.name.clone(),
        pid: inner.pid,
        status: status(inner),
    }
}

/// The error of call `id`, sent as the `sent`th frame, whose worker ended
/// without answering: [`WorkerError::NotDelivered`] where the call surely
/// never started — its started mark is below the call (without a mark:
/// the worker ended before it was ready, or left bytes of ours unread
/// while this call was the last thing sent) — and [`WorkerError::Died`]
/// otherwise (it may have run).
pub(super) fn lost(inner: &Inner, id: u64, sent: u64) -> WorkerError {
    let Link::Process(p) = &inner.link else {
        return died(inner);
    };
    // The mark, where there is one, is the worker's own word.
    let unstarted = match &p.mark {
        Some(mark) => mark.get() < id,
        None => {
            !p.ready.load(Ordering::Acquire)
                || matches!(p.relay.ended(), Some(Ended::Reset))
                    && p.sent.load(Ordering::Relaxed) == sent
        }
    };
    if unstarted {
        not_delivered(inner)
    } else {
        died(inner)
    }
}
