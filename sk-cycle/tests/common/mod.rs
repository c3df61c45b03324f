//! Helpers shared by the engine tests.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

pub mod journal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sk_cycle::{CyclePart, ErrorMode, PartContext};

/// A log of part starts and ends, ordered by one global sequence.
/// One logged event: part name, `start` or `end`, sequence number.
type Event = (String, &'static str, u64);

#[derive(Clone, Default)]
pub struct Log {
    seq: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Log {
    pub fn mark(&self, name: &str, what: &'static str) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        self.events.lock().push((name.to_owned(), what, n));
    }

    /// The sequence number of `name`'s `what` (the first one).
    pub fn at(&self, name: &str, what: &str) -> u64 {
        self.events
            .lock()
            .iter()
            .find(|(n, w, _)| n == name && *w == what)
            .map(|e| e.2)
            .unwrap_or_else(|| panic!("{name} has no {what} event"))
    }

    pub fn has(&self, name: &str, what: &str) -> bool {
        self.events
            .lock()
            .iter()
            .any(|(n, w, _)| n == name && *w == what)
    }

    /// A part that logs its start and end around `f`.
    pub fn part<R, F>(&self, name: &str, f: F) -> CyclePart
    where
        R: serde::Serialize + Send + Sync + 'static,
        F: Fn(&PartContext<'_>) -> R + Send + Sync + 'static,
    {
        let log = self.clone();
        CyclePart::new(name, move |ctx| {
            log.mark(ctx.name(), "start");
            let out = f(ctx);
            log.mark(ctx.name(), "end");
            out
        })
    }

    /// A no-op part that logs.
    pub fn noop(&self, name: &str) -> CyclePart {
        self.part(name, |_| ())
    }
}

/// Waits until `ready` holds or `limit` passes; whether it held.
pub fn wait_for(limit: Duration, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A part `name` under instant fail that returns its iteration, but
/// fails in iteration `at` while `fail` holds (so a cycle's next run can
/// go through).
pub fn instant_fail_at(name: &str, at: u64, fail: &Arc<AtomicBool>) -> CyclePart {
    let fail = Arc::clone(fail);
    CyclePart::fallible(name, move |ctx| {
        if fail.load(Ordering::SeqCst) && ctx.iteration() == at {
            Err::<u64, Box<dyn std::error::Error + Send + Sync>>("boom".into())
        } else {
            Ok(ctx.iteration())
        }
    })
    .error_mode(ErrorMode::InstantFail)
}
