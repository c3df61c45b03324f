//! Timing statistics: exact count, total, mean, stdev, min and max, plus
//! percentiles from an HDR histogram.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// Significant decimal digits kept by the percentile histogram.
const SIGNIFICANT_DIGITS: u8 = 3;
/// The largest value an auto-resizing histogram can track (~146 years in
/// nanoseconds); longer samples are recorded as this for percentiles only.
const MAX_TRACKABLE_NANOS: u64 = (i64::MAX / 2) as u64;

fn new_histogram() -> Histogram<u64> {
    match Histogram::new(SIGNIFICANT_DIGITS) {
        Ok(histogram) => histogram,
        // `new` fails only for more than 5 significant digits.
        Err(_) => unreachable!("3 significant digits is a valid histogram precision"),
    }
}

fn nanos_u64(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Converts a nanosecond count to a duration, saturating at
/// [`Duration::MAX`].
fn from_nanos_u128(nanos: u128) -> Duration {
    let Ok(secs) = u64::try_from(nanos / 1_000_000_000) else {
        return Duration::MAX;
    };
    // The remainder is below 10^9, so it fits in u32.
    let sub = (nanos % 1_000_000_000) as u32;
    Duration::new(secs, sub)
}

/// Rounds a non-negative nanosecond amount to a duration, saturating.
fn from_nanos_f64(nanos: f64) -> Duration {
    if nanos.is_nan() || nanos <= 0.0 {
        return Duration::ZERO;
    }
    let rounded = nanos.round();
    if rounded >= u128::MAX as f64 {
        return Duration::MAX;
    }
    from_nanos_u128(rounded as u128)
}

/// Timing statistics over recorded durations.
///
/// Count, total, mean, sample standard deviation (Welford's algorithm), min
/// and max are exact (the stdev to floating-point precision). Percentiles and
/// the median come from an auto-resizing HDR histogram at nanosecond
/// resolution with 3 significant digits: a reported percentile is within
/// 0.1% of a recorded value, and is clamped to `[min, max]`, so
/// `percentile(0.0)` is the exact min and `percentile(100.0)` the exact max.
///
/// Recording takes `&mut self`; share one set across threads with
/// [`SharedStats`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::TimingStats;
///
/// let mut stats = TimingStats::new();
/// for ms in 1..=100 {
///     stats.record(Duration::from_millis(ms));
/// }
/// assert_eq!(stats.count(), 100);
/// assert_eq!(stats.mean(), Some(Duration::from_micros(50_500)));
/// assert_eq!(stats.max(), Some(Duration::from_millis(100)));
/// let p99 = stats.percentile(99.0).unwrap();
/// assert!(p99.abs_diff(Duration::from_millis(99)) <= Duration::from_micros(99));
/// ```
#[derive(Clone)]
pub struct TimingStats {
    count: u64,
    total_nanos: u128,
    /// Welford running mean and sum of squared deviations, in nanoseconds.
    mean_nanos: f64,
    m2: f64,
    min: Option<Duration>,
    max: Option<Duration>,
    histogram: Histogram<u64>,
}

impl TimingStats {
    /// An empty set of statistics.
    pub fn new() -> Self {
        TimingStats {
            count: 0,
            total_nanos: 0,
            mean_nanos: 0.0,
            m2: 0.0,
            min: None,
            max: None,
            histogram: new_histogram(),
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.count += 1;
        self.total_nanos = self.total_nanos.saturating_add(d.as_nanos());
        // From a u64: converting the u128 is a libcall (~45 instructions).
        let x = nanos_u64(d) as f64;
        let delta = x - self.mean_nanos;
        self.mean_nanos += delta / self.count as f64;
        self.m2 += delta * (x - self.mean_nanos);
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
        let nanos = nanos_u64(d).min(MAX_TRACKABLE_NANOS);
        if self.histogram.record(nanos).is_err() {
            self.histogram.saturating_record(nanos);
        }
    }

    /// Adds `n` samples that took `total` together, timed as one batch
    /// (one clock read for many short runs): each counts as their mean.
    /// The count and total stay exact; min, max, percentiles and stdev
    /// see the batch's mean, not its spread. Nothing for `n == 0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sk_core::TimingStats;
    ///
    /// let mut stats = TimingStats::new();
    /// stats.record_batch(Duration::from_nanos(1_000), 8);
    /// stats.record(Duration::from_nanos(300));
    /// assert_eq!(stats.count(), 9);
    /// assert_eq!(stats.total(), Duration::from_nanos(1_300));
    /// assert_eq!(stats.max(), Some(Duration::from_nanos(300)));
    /// assert_eq!(stats.min(), Some(Duration::from_nanos(125)));
    /// ```
    pub fn record_batch(&mut self, total: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let mean = from_nanos_u128(total.as_nanos() / u128::from(n));
        let x = total.as_nanos() as f64 / n as f64;
        // Merged as a set of `n` samples of `x` (no spread of its own).
        let (na, nb) = (self.count as f64, n as f64);
        let delta = x - self.mean_nanos;
        self.mean_nanos += delta * nb / (na + nb);
        self.m2 += delta * delta * na * nb / (na + nb);
        self.count += n;
        self.total_nanos = self.total_nanos.saturating_add(total.as_nanos());
        self.min = Some(self.min.map_or(mean, |m| m.min(mean)));
        self.max = Some(self.max.map_or(mean, |m| m.max(mean)));
        let nanos = nanos_u64(mean).min(MAX_TRACKABLE_NANOS);
        if self.histogram.record_n(nanos, n).is_err() {
            self.histogram.saturating_record_n(nanos, n);
        }
    }

    /// Runs `f`, records how long it took on the real clock, and returns
    /// its result. Nothing is recorded if `f` panics.
    pub fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = f();
        self.record(start.elapsed());
        result
    }

    /// As [`time`](TimingStats::time), measuring with `clock`.
    pub fn time_with<R>(&mut self, clock: &dyn Clock, f: impl FnOnce() -> R) -> R {
        let start = clock.now();
        let result = f();
        self.record(clock.now().saturating_duration_since(start));
        result
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of all samples (zero when empty), saturating at
    /// [`Duration::MAX`].
    pub fn total(&self) -> Duration {
        from_nanos_u128(self.total_nanos)
    }

    /// Exact mean (total / count, truncated to the nanosecond); `None` when
    /// empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| from_nanos_u128(self.total_nanos / u128::from(self.count)))
    }

    /// The 50th percentile (histogram precision); `None` when empty.
    pub fn median(&self) -> Option<Duration> {
        self.percentile(50.0)
    }

    /// Sample standard deviation (n − 1 denominator), rounded to the
    /// nanosecond; `None` with fewer than two samples.
    pub fn stdev(&self) -> Option<Duration> {
        (self.count > 1).then(|| from_nanos_f64((self.m2 / (self.count - 1) as f64).sqrt()))
    }

    /// Smallest sample; `None` when empty.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// Largest sample; `None` when empty.
    pub fn max(&self) -> Option<Duration> {
        self.max
    }

    /// The value below or at which `p` percent of samples fall, `p` in
    /// `0.0..=100.0` (histogram precision: within 0.1%, clamped to the exact
    /// min and max); `None` when empty or when `p` is outside that range or
    /// NaN.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let (min, max) = (self.min?, self.max?);
        if !(0.0..=100.0).contains(&p) {
            return None;
        }
        // Exact at the ends, also for samples past the histogram's range.
        if p == 0.0 {
            return Some(min);
        }
        if p == 100.0 {
            return Some(max);
        }
        let nanos = self.histogram.value_at_quantile(p / 100.0);
        Some(Duration::from_nanos(nanos).clamp(min, max))
    }

    /// Adds every sample of `other` to `self`, as if they had been recorded
    /// here.
    pub fn merge(&mut self, other: &TimingStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean_nanos - self.mean_nanos;
        self.mean_nanos += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.total_nanos = self.total_nanos.saturating_add(other.total_nanos);
        self.min = self.min.min(other.min).or(other.min);
        self.max = self.max.max(other.max);
        if self.histogram.add(&other.histogram).is_err() {
            // Both histograms auto-resize, so `add` should not fail; if it
            // does, fall back to copying the recorded values one by one.
            for value in other.histogram.iter_recorded() {
                self.histogram
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        *self = TimingStats::new();
    }

    /// A serializable snapshot of the headline numbers (all zero when
    /// empty; stdev zero with fewer than two samples).
    pub fn summary(&self) -> StatsSummary {
        let or_zero = |d: Option<Duration>| d.unwrap_or_default();
        StatsSummary {
            count: self.count,
            total: self.total(),
            mean: or_zero(self.mean()),
            median: or_zero(self.median()),
            stdev: or_zero(self.stdev()),
            min: or_zero(self.min),
            max: or_zero(self.max),
            p90: or_zero(self.percentile(90.0)),
            p95: or_zero(self.percentile(95.0)),
            p99: or_zero(self.percentile(99.0)),
        }
    }
}

impl Default for TimingStats {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TimingStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimingStats").field(&self.summary()).finish()
    }
}

/// The headline numbers of a [`TimingStats`], as plain durations.
///
/// `Display` is compact, for logs: `n=100 mean=50.5ms p50=50ms p99=99ms
/// max=100ms` (3 significant digits).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSummary {
    /// Number of samples.
    pub count: u64,
    /// Sum of all samples.
    pub total: Duration,
    /// Exact mean.
    pub mean: Duration,
    /// 50th percentile.
    pub median: Duration,
    /// Sample standard deviation.
    pub stdev: Duration,
    /// Smallest sample.
    pub min: Duration,
    /// Largest sample.
    pub max: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl fmt::Display for StatsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n={}", self.count)?;
        if self.count == 0 {
            return Ok(());
        }
        write!(
            f,
            " mean={} p50={} p99={} max={}",
            Compact(self.mean),
            Compact(self.median),
            Compact(self.p99),
            Compact(self.max)
        )
    }
}

/// A duration shown with 3 significant digits in the largest fitting unit.
struct Compact(Duration);

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos() as f64;
        let (value, unit) = if nanos >= 1e9 {
            (nanos / 1e9, "s")
        } else if nanos >= 1e6 {
            (nanos / 1e6, "ms")
        } else if nanos >= 1e3 {
            (nanos / 1e3, "µs")
        } else {
            (nanos, "ns")
        };
        let decimals = if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        };
        let text = format!("{value:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        write!(f, "{text}{unit}")
    }
}

/// A [`TimingStats`] shared between threads: clones record into the same
/// set.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::SharedStats;
///
/// let stats = SharedStats::new();
/// let worker = stats.clone();
/// std::thread::spawn(move || worker.record(Duration::from_millis(2)))
///     .join()
///     .unwrap();
/// assert_eq!(stats.count(), 1);
/// ```
#[derive(Clone, Default)]
pub struct SharedStats {
    inner: Arc<Mutex<TimingStats>>,
}

impl SharedStats {
    /// An empty shared set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample.
    pub fn record(&self, d: Duration) {
        self.inner.lock().record(d);
    }

    /// Runs `f` (without holding the lock), records how long it took on the
    /// real clock, and returns its result.
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let result = f();
        self.record(start.elapsed());
        result
    }

    /// As [`time`](SharedStats::time), measuring with `clock`.
    pub fn time_with<R>(&self, clock: &dyn Clock, f: impl FnOnce() -> R) -> R {
        let start = clock.now();
        let result = f();
        self.record(clock.now().saturating_duration_since(start));
        result
    }

    /// See [`TimingStats::count`].
    pub fn count(&self) -> u64 {
        self.inner.lock().count()
    }

    /// See [`TimingStats::total`].
    pub fn total(&self) -> Duration {
        self.inner.lock().total()
    }

    /// See [`TimingStats::mean`].
    pub fn mean(&self) -> Option<Duration> {
        self.inner.lock().mean()
    }

    /// See [`TimingStats::median`].
    pub fn median(&self) -> Option<Duration> {
        self.inner.lock().median()
    }

    /// See [`TimingStats::stdev`].
    pub fn stdev(&self) -> Option<Duration> {
        self.inner.lock().stdev()
    }

    /// See [`TimingStats::min`].
    pub fn min(&self) -> Option<Duration> {
        self.inner.lock().min()
    }

    /// See [`TimingStats::max`].
    pub fn max(&self) -> Option<Duration> {
        self.inner.lock().max()
    }

    /// See [`TimingStats::percentile`].
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        self.inner.lock().percentile(p)
    }

    /// Adds every sample of `other` (take a [`snapshot`](SharedStats::snapshot)
    /// to merge another shared set).
    pub fn merge(&self, other: &TimingStats) {
        self.inner.lock().merge(other);
    }

    /// Forgets every sample.
    pub fn reset(&self) {
        self.inner.lock().reset();
    }

    /// See [`TimingStats::summary`].
    pub fn summary(&self) -> StatsSummary {
        self.inner.lock().summary()
    }

    /// A copy of the current statistics.
    pub fn snapshot(&self) -> TimingStats {
        self.inner.lock().clone()
    }

    /// Takes the current statistics, leaving an empty set behind.
    pub fn take(&self) -> TimingStats {
        std::mem::take(&mut *self.inner.lock())
    }
}

impl fmt::Debug for SharedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedStats").field(&self.summary()).finish()
    }
}

#[cfg(test)]
mod tests;
