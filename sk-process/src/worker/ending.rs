//! How a call whose worker ended is reported: died (it may have run) or
//! not delivered (it surely never started), and the program mistake of a
//! worker without `init()`.

use super::link::Link;
use crate::error::WorkerError;

/// The worker died with the call in hand: it may have run.
pub(super) fn died(link: &dyn Link) -> WorkerError {
    if let Some(e) = missing_init(link) {
        return e;
    }
    let shared = link.shared();
    WorkerError::Died {
        worker: shared.name.clone(),
        pid: shared.pid,
        status: status(link),
    }
}

/// How the worker ended, as far as is known.
fn status(link: &dyn Link) -> String {
    link.shared()
        .cause
        .lock()
        .as_ref()
        .map_or_else(|| "its channel closed".to_owned(), ToString::to_string)
}

fn missing_init(link: &dyn Link) -> Option<WorkerError> {
    let shared = link.shared();
    link.missing_init().then(|| WorkerError::MissingInit {
        worker: shared.name.clone(),
        pid: shared.pid,
    })
}

/// The worker ended before the call reached it: the call never ran.
pub(super) fn not_delivered(link: &dyn Link) -> WorkerError {
    if let Some(e) = missing_init(link) {
        return e;
    }
    let shared = link.shared();
    WorkerError::NotDelivered {
        worker: shared.name.clone(),
        pid: shared.pid,
        status: status(link),
    }
}

/// The error of call `id`, sent as the `sent`th frame, whose worker ended
/// without answering: [`WorkerError::NotDelivered`] where the call surely
/// never started (see [`Link::never_started`]) and [`WorkerError::Died`]
/// otherwise (it may have run).
pub(super) fn lost(link: &dyn Link, id: u64, sent: u64) -> WorkerError {
    if link.never_started(id, sent) {
        not_delivered(link)
    } else {
        died(link)
    }
}
