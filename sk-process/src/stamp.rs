//! A moment kept in an atomic: when something last happened, readable and
//! updatable from any thread without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When something last happened (its creation, before the first
/// [`touch`](Stamp::touch)).
#[derive(Debug)]
pub(crate) struct Stamp {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last touch.
    nanos: AtomicU64,
}

impl Stamp {
    pub(crate) fn new() -> Self {
        Stamp {
            epoch: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    /// Records that it happened now.
    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(now, Ordering::Relaxed);
    }

    /// When it last happened.
    pub(crate) fn at(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}
