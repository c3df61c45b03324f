//! [`WindowStats`]: timing stats in a few hundred bytes, for when there are
//! very many of them (one per part of a large cycle).

use std::time::Duration;

use smallvec::SmallVec;

use crate::stats::StatsSummary;

/// How many recent samples [`WindowStats`] keeps for percentiles.
pub const WINDOW: usize = 64;

/// Timing stats with bounded memory: count, total, mean, standard
/// deviation, minimum and maximum are exact over every sample; the median
/// and percentiles are exact over the most recent [`WINDOW`] samples.
///
/// A sample may stand for several runs ([`record_n`](WindowStats::record_n),
/// for runs timed one in `n`): it then counts `n` times in the count,
/// total, mean, standard deviation and percentiles (frequency weights), so
/// that they estimate every run and not only the timed ones.
///
/// Use [`TimingStats`](crate::TimingStats) where percentiles over every
/// sample matter and there are few stats to keep.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::WindowStats;
///
/// let mut stats = WindowStats::new();
/// for ms in 1..=100 {
///     stats.record(Duration::from_millis(ms));
/// }
/// let s = stats.summary();
/// assert_eq!(s.count, 100);
/// assert_eq!(s.mean, Duration::from_micros(50_500));
/// assert_eq!(s.min, Duration::from_millis(1));
/// // Percentiles cover the last 64 samples: 37..=100 ms.
/// assert_eq!(s.median, Duration::from_millis(68));
/// ```
#[derive(Clone, Debug, Default)]
pub struct WindowStats {
    count: u64,
    total_ns: u128,
    min_ns: u64,
    max_ns: u64,
    mean_ns: f64,
    m2: f64,
    /// The first few inline: a part timed a few times per run (a large
    /// cycle's) allocates nothing.
    recent: SmallVec<[u64; 4]>,
    /// How many runs each of `recent` stands for, in the same order;
    /// empty while every sample stands for one. The first few inline too.
    weights: SmallVec<[u32; 4]>,
    next: usize,
}

impl WindowStats {
    /// Empty stats (nothing allocated until the first sample).
    pub const fn new() -> Self {
        WindowStats {
            count: 0,
            total_ns: 0,
            min_ns: 0,
            max_ns: 0,
            mean_ns: 0.0,
            m2: 0.0,
            recent: SmallVec::new_const(),
            weights: SmallVec::new_const(),
            next: 0,
        }
    }

    /// Forgets every sample, keeping the memory of the recent window (a
    /// set of stats reused for another run allocates nothing again).
    pub fn clear(&mut self) {
        let mut recent = std::mem::take(&mut self.recent);
        recent.clear();
        let mut weights = std::mem::take(&mut self.weights);
        weights.clear();
        *self = WindowStats {
            recent,
            weights,
            ..WindowStats::new()
        };
    }

    /// Adds one sample.
    pub fn record(&mut self, sample: Duration) {
        self.record_n(sample, 1);
    }

    /// Adds one sample that stands for `n` runs, as if it had been
    /// recorded `n` times (but for the window of recent samples, where it
    /// takes one place and counts `n` times in the percentiles). Nothing
    /// is recorded for `n == 0`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sk_core::WindowStats;
    ///
    /// // One run in four of a 10 ns part timed, and every run of a 1 µs one.
    /// let mut stats = WindowStats::new();
    /// stats.record_n(Duration::from_nanos(10), 4);
    /// stats.record(Duration::from_micros(1));
    /// let s = stats.summary();
    /// assert_eq!(s.count, 5);
    /// assert_eq!(s.total, Duration::from_nanos(1_040));
    /// assert_eq!(s.median, Duration::from_nanos(10));
    /// ```
    pub fn record_n(&mut self, sample: Duration, n: u32) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        let weight = u64::from(n);
        self.count += weight;
        self.total_ns += u128::from(ns) * u128::from(n);
        if self.count == weight {
            self.min_ns = ns;
            self.max_ns = ns;
        } else {
            self.min_ns = self.min_ns.min(ns);
            self.max_ns = self.max_ns.max(ns);
        }
        // Welford's online mean and variance, with frequency weights.
        let x = ns as f64;
        let delta = x - self.mean_ns;
        self.mean_ns += delta * (weight as f64 / self.count as f64);
        self.m2 += weight as f64 * delta * (x - self.mean_ns);
        let weighted = n != 1 || !self.weights.is_empty();
        if weighted && self.weights.is_empty() {
            // The first sample for more than one run: the earlier ones
            // stand for one each.
            self.weights.resize(self.recent.len(), 1);
        }
        if self.recent.len() < WINDOW {
            self.recent.push(ns);
            if weighted {
                self.weights.push(n);
            }
        } else {
            self.recent[self.next] = ns;
            if weighted {
                self.weights[self.next] = n;
            }
            self.next = (self.next + 1) % WINDOW;
        }
    }

    /// How many samples were recorded, each counted as many times as the
    /// runs it stands for (see [`record_n`](WindowStats::record_n)).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary; percentiles over the recent window.
    pub fn summary(&self) -> StatsSummary {
        if self.count == 0 {
            return StatsSummary::default();
        }
        if self.count == 1 {
            // One sample is every statistic (a large cycle's parts often
            // have one per run).
            let only = Duration::from_nanos(self.min_ns);
            return StatsSummary {
                count: 1,
                total: only,
                mean: only,
                median: only,
                stdev: Duration::ZERO,
                min: only,
                max: only,
                p90: only,
                p95: only,
                p99: only,
            };
        }
        // Sorted on the stack: a report of many parts allocates nothing here.
        let mut buf = [(0u64, 1u32); WINDOW];
        let window = &mut buf[..self.recent.len()];
        for (i, (slot, &ns)) in window.iter_mut().zip(&self.recent).enumerate() {
            *slot = (ns, self.weights.get(i).copied().unwrap_or(1));
        }
        window.sort_unstable();
        let runs: u64 = window.iter().map(|&(_, w)| u64::from(w)).sum();
        let pick = |p: u64| {
            // Nearest rank: ceil(p% of the window's runs), in integers;
            // the sample whose runs reach it.
            let rank = (p * runs).div_ceil(100).clamp(1, runs);
            let mut reached = 0;
            for &(ns, w) in window.iter() {
                reached += u64::from(w);
                if reached >= rank {
                    return Duration::from_nanos(ns);
                }
            }
            Duration::from_nanos(self.max_ns)
        };
        let stdev = if self.count > 1 {
            (self.m2 / (self.count - 1) as f64).sqrt()
        } else {
            0.0
        };
        let total = Duration::from_nanos(u64::try_from(self.total_ns).unwrap_or(u64::MAX));
        StatsSummary {
            count: self.count,
            total,
            mean: Duration::from_nanos((self.total_ns / u128::from(self.count)) as u64),
            median: pick(50),
            stdev: Duration::from_nanos(stdev.round() as u64),
            min: Duration::from_nanos(self.min_ns),
            max: Duration::from_nanos(self.max_ns),
            p90: pick(90),
            p95: pick(95),
            p99: pick(99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stats_summarise_to_zero() {
        assert_eq!(WindowStats::new().summary(), StatsSummary::default());
    }

    #[test]
    fn exact_moments_over_all_samples_and_percentiles_over_the_window() {
        let mut s = WindowStats::new();
        for ms in 1..=10 {
            s.record(Duration::from_millis(ms));
        }
        let sum = s.summary();
        assert_eq!(sum.count, 10);
        assert_eq!(sum.total, Duration::from_millis(55));
        assert_eq!(sum.mean, Duration::from_micros(5_500));
        assert_eq!(sum.min, Duration::from_millis(1));
        assert_eq!(sum.max, Duration::from_millis(10));
        assert_eq!(sum.median, Duration::from_millis(5));
        assert_eq!(sum.p90, Duration::from_millis(9));
        assert_eq!(sum.p99, Duration::from_millis(10));
        // Sample stdev of 1..=10 ms is 3.0277 ms.
        assert_eq!(sum.stdev.as_micros(), 3_027);
    }

    #[test]
    fn percentiles_are_nearest_ranks_for_every_window_size() {
        for n in 1..=WINDOW as u64 {
            let mut s = WindowStats::new();
            // Recorded in reverse: the summary sorts.
            for v in (1..=n).rev() {
                s.record(Duration::from_nanos(v));
            }
            let sum = s.summary();
            // Rank ceil(p * n / 100), at least 1, of the values 1..=n.
            let rank = |p: u64| Duration::from_nanos((p * n).div_ceil(100).max(1));
            assert_eq!(sum.median, rank(50), "n = {n}");
            assert_eq!(sum.p90, rank(90), "n = {n}");
            assert_eq!(sum.p95, rank(95), "n = {n}");
            assert_eq!(sum.p99, rank(99), "n = {n}");
        }
    }

    #[test]
    fn cleared_stats_start_over_and_keep_their_window_memory() {
        let mut s = WindowStats::new();
        for i in 0..100u64 {
            s.record(Duration::from_nanos(i));
        }
        let capacity = s.recent.capacity();
        s.clear();
        assert_eq!(s.summary(), StatsSummary::default());
        assert_eq!(s.recent.capacity(), capacity);
        s.record(Duration::from_nanos(7));
        let sum = s.summary();
        assert_eq!(
            (sum.count, sum.min, sum.max),
            (1, Duration::from_nanos(7), Duration::from_nanos(7))
        );
        assert_eq!(sum.median, Duration::from_nanos(7));
    }

    #[test]
    fn a_sample_for_n_runs_counts_as_n_recorded_samples() {
        let samples = [(5u64, 3u32), (1, 1), (9, 7), (2, 2), (7, 1)];
        let mut weighted = WindowStats::new();
        let mut repeated = WindowStats::new();
        for &(ns, n) in &samples {
            weighted.record_n(Duration::from_micros(ns), n);
            for _ in 0..n {
                repeated.record(Duration::from_micros(ns));
            }
        }
        // A sample for no run is no sample.
        weighted.record_n(Duration::from_secs(1), 0);
        let (w, r) = (weighted.summary(), repeated.summary());
        assert_eq!(w.count, 14);
        assert_eq!(
            (w.count, w.total, w.mean, w.min, w.max),
            (r.count, r.total, r.mean, r.min, r.max)
        );
        assert_eq!(
            (w.median, w.p90, w.p95, w.p99),
            (r.median, r.p90, r.p95, r.p99)
        );
        // Welford with weights: the same stdev, to float precision.
        assert!(
            w.stdev.abs_diff(r.stdev) <= Duration::from_nanos(1),
            "{w:?} {r:?}"
        );
        // 9 µs stands for half of the 14 runs: the median is the 7th
        // run, the 7 µs one; an unweighted window's would be 5 µs.
        assert_eq!(w.median, Duration::from_micros(7));
        assert_eq!(w.p90, Duration::from_micros(9));
    }

    #[test]
    fn weights_leave_the_window_with_their_samples() {
        let mut s = WindowStats::new();
        // A slow sample for many runs, then a window's worth of fast ones
        // for one run each: the slow one has left the window.
        s.record_n(Duration::from_millis(1), 1000);
        for _ in 0..WINDOW {
            s.record(Duration::from_nanos(10));
        }
        let sum = s.summary();
        assert_eq!(sum.count, 1000 + WINDOW as u64);
        assert_eq!(sum.p99, Duration::from_nanos(10));
        assert_eq!(sum.max, Duration::from_millis(1));
        // Cleared: weights go too.
        s.clear();
        s.record(Duration::from_nanos(3));
        s.record(Duration::from_nanos(5));
        assert_eq!(s.summary().count, 2);
        assert_eq!(s.summary().median, Duration::from_nanos(3));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = WindowStats::new();
        for i in 0..10_000u64 {
            s.record(Duration::from_nanos(i));
        }
        assert_eq!(s.recent.len(), WINDOW);
        assert_eq!(s.summary().max, Duration::from_nanos(9_999));
        assert_eq!(s.summary().min, Duration::ZERO);
    }
}
