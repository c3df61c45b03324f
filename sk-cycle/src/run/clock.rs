//! The clock of a lane's iterations: when it is read, and what an
//! iteration's duration becomes in the run's iteration stats.

use std::time::Duration;

use sk_core::TimingStats;

/// Iterations timed in one batch take together at least about this long
/// (one clock read and one record, some tens of nanoseconds, then cost
/// about 1/100 of them; parts are timed to the same budget, see
/// `engine::timing`).
const BATCH_BUDGET: Duration = Duration::from_nanos(3_200);

/// The most iterations one batch times.
const MAX_BATCH: u32 = 256;

/// Reads the clock around a lane's iterations. An iteration is timed from
/// the end of the one before (`chained`: one read an iteration) unless
/// something comes between them (a report, a pause, a journal commit).
/// With stats on and nothing else using the clock, short iterations are
/// timed in batches: one read for as many as take [`BATCH_BUDGET`], at
/// most [`MAX_BATCH`], each counted as their mean (see
/// [`TimingStats::record_batch`]); a lane's last iteration, where it is
/// known to be the last, is timed on its own.
pub(super) struct IterationClock {
    /// Whether the clock is read at all.
    timed: bool,
    chained: bool,
    stats: bool,
    batching: bool,
    /// When the last timed iteration ended (chained).
    ended: Option<quanta::Instant>,
    /// When the iteration, or the batch, being timed began.
    began: Option<quanta::Instant>,
    /// Iterations ended in the current batch.
    in_batch: u32,
    /// Iterations the current batch times.
    batch: u32,
    /// The iteration being timed is timed on its own.
    alone: bool,
    /// Clock reads so far (for tests).
    reads: u64,
    /// The last timed duration: an iteration's, or a batch's mean.
    last: Duration,
}

impl IterationClock {
    /// A clock read when `timed`, chained when `chained`, recording
    /// iteration stats when `stats`, in batches when `batching`.
    pub(super) fn new(timed: bool, chained: bool, stats: bool, batching: bool) -> IterationClock {
        IterationClock {
            timed,
            chained,
            stats,
            batching: batching && timed && chained && stats,
            ended: None,
            began: None,
            in_batch: 0,
            batch: 1,
            alone: false,
            reads: 0,
            last: Duration::ZERO,
        }
    }

    /// An iteration begins, the lane's last if `last` (it is then timed
    /// on its own, ending the batch before it in `timing`): when, if the
    /// clock is read for it (not inside a batch).
    pub(super) fn begin(
        &mut self,
        last: bool,
        timing: &mut TimingStats,
    ) -> Option<quanta::Instant> {
        if self.batching && last {
            self.finish(timing);
            self.alone = true;
        }
        if !self.timed || (self.batching && self.in_batch > 0) {
            return None;
        }
        let began = self.ended.take().unwrap_or_else(quanta::Instant::now);
        self.began = Some(began);
        Some(began)
    }

    /// The iteration ended: records it in `timing` (with stats on) and
    /// returns how long it took (a batch's mean inside a batch; zero when
    /// the clock is not read).
    pub(super) fn end(&mut self, timing: &mut TimingStats) -> Duration {
        if self.began.is_none() {
            return Duration::ZERO;
        }
        if self.batching {
            self.in_batch += 1;
            if self.in_batch < self.batch && !self.alone {
                return self.last;
            }
        }
        self.read(timing);
        self.last
    }

    /// The lane is done: records a batch it left unfinished. Returns the
    /// last iteration's duration as timed (a batch's mean).
    pub(super) fn finish(&mut self, timing: &mut TimingStats) -> Duration {
        if self.batching && self.in_batch > 0 && self.began.is_some() {
            self.read(timing);
        }
        self.last
    }

    /// Reads the clock to end the iteration or batch being timed.
    fn read(&mut self, timing: &mut TimingStats) {
        let Some(began) = self.began.take() else {
            return;
        };
        let now = quanta::Instant::now();
        self.reads += 1;
        let took = now.saturating_duration_since(began);
        if self.chained {
            self.ended = Some(now);
        }
        let n = self.in_batch.max(1);
        if self.stats {
            if n == 1 {
                timing.record(took);
            } else {
                timing.record_batch(took, u64::from(n));
            }
        }
        self.last = took / n;
        if self.batching {
            self.in_batch = 0;
            self.batch = batch_for(self.last);
            self.alone = false;
        }
    }
}

/// How many iterations of `each` one batch times.
fn batch_for(each: Duration) -> u32 {
    let each = each.as_nanos().max(1);
    let n = BATCH_BUDGET.as_nanos().div_ceil(each);
    u32::try_from(n).unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_with_how_long_iterations_take() {
        assert_eq!(batch_for(Duration::ZERO), MAX_BATCH);
        assert_eq!(batch_for(Duration::from_nanos(100)), 32);
        assert_eq!(batch_for(Duration::from_nanos(3_200)), 1);
        assert_eq!(batch_for(Duration::from_secs(1)), 1);
    }

    #[test]
    fn every_iteration_is_counted_batched_or_not() {
        for batching in [false, true] {
            let mut clock = IterationClock::new(true, true, true, batching);
            let mut timing = TimingStats::new();
            for _ in 0..1000 {
                clock.begin(false, &mut timing);
                clock.end(&mut timing);
            }
            clock.finish(&mut timing);
            assert_eq!(timing.count(), 1000, "batching {batching}");
            // Iterations of nothing take well under the batch budget: a
            // batch grows to the most within a few reads.
            if batching {
                assert!(clock.reads < 50, "{} reads", clock.reads);
            } else {
                assert_eq!(clock.reads, 1000);
            }
        }
    }

    #[test]
    fn the_last_iteration_is_timed_on_its_own() {
        let mut clock = IterationClock::new(true, true, true, true);
        let mut timing = TimingStats::new();
        for _ in 0..99 {
            clock.begin(false, &mut timing);
            clock.end(&mut timing);
        }
        clock.begin(true, &mut timing);
        std::thread::sleep(Duration::from_millis(5));
        let last = clock.end(&mut timing);
        assert!(last >= Duration::from_millis(5), "{last:?}");
        assert_eq!(clock.finish(&mut timing), last);
        assert_eq!(timing.count(), 100);
        assert_eq!(timing.max(), Some(last));
    }

    #[test]
    fn an_untimed_clock_records_nothing_and_reads_zero() {
        let mut clock = IterationClock::new(false, true, true, true);
        let mut timing = TimingStats::new();
        assert!(clock.begin(true, &mut timing).is_none());
        assert_eq!(clock.end(&mut timing), Duration::ZERO);
        clock.finish(&mut timing);
        assert!(timing.is_empty());
    }
}
