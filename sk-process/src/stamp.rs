//! A moment kept in atomics: when something last happened, readable and
//! updatable from any thread without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When something last happened (its creation, before the first
/// [`touch`](Stamp::touch)).
///
/// Marking that it happened costs no clock read: the clock is read
/// when the moment is asked for, if it has happened again since. So the
/// moment [`at`](Stamp::at) gives is no earlier than the last time it
/// happened, and later by at most the time between two readings (the
/// I/O hub reads a worker's every quarter second, and the heartbeat
/// thread a worker process's own).
#[derive(Debug)]
pub(crate) struct Stamp {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last touch.
    nanos: AtomicU64,
    /// How many times it has happened.
    marks: AtomicU64,
    /// `marks` at the last touch.
    seen: AtomicU64,
}

impl Stamp {
    pub(crate) fn new() -> Self {
        Stamp {
            epoch: Instant::now(),
            nanos: AtomicU64::new(0),
            marks: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        }
    }

    /// Records that it happened now (and dates every [`mark`](Stamp::mark)
    /// so far now).
    pub(crate) fn touch(&self) {
        self.seen
            .store(self.marks.load(Ordering::Relaxed), Ordering::Relaxed);
        self.date_now();
    }

    fn date_now(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(now, Ordering::Relaxed);
    }

    /// Records that it happened, without reading the clock.
    pub(crate) fn mark(&self) {
        self.marks.fetch_add(1, Ordering::Relaxed);
    }

    /// When it last happened.
    pub(crate) fn at(&self) -> Instant {
        let marks = self.marks.load(Ordering::Relaxed);
        if self.seen.swap(marks, Ordering::Relaxed) != marks {
            self.date_now();
        }
        self.epoch + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_dated_when_next_read_and_a_touch_at_once() {
        let pause = || std::thread::sleep(Duration::from_millis(5));
        let stamp = Stamp::new();
        let created = stamp.at();
        pause();
        assert_eq!(stamp.at(), created, "nothing happened since");
        stamp.mark();
        let before = Instant::now();
        let marked = stamp.at();
        assert!(marked >= before, "dated when read");
        pause();
        assert_eq!(stamp.at(), marked, "dated once");
        let before = Instant::now();
        stamp.touch();
        pause();
        let touched = stamp.at();
        assert!(touched >= before && touched < Instant::now() - Duration::from_millis(4));
    }
}
