//! Unit tests for timing statistics, on a manual clock.

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn one_to_hundred_ms() -> TimingStats {
    let mut stats = TimingStats::new();
    for n in 1..=100 {
        stats.record(ms(n));
    }
    stats
}

/// Within the histogram's documented precision (0.1%).
fn close(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected).as_nanos() * 1000 <= expected.as_nanos()
}

#[test]
fn empty_stats_are_none_or_zero() {
    let stats = TimingStats::new();
    assert!(stats.is_empty());
    assert_eq!(stats.total(), Duration::ZERO);
    assert_eq!(
        (
            stats.mean(),
            stats.median(),
            stats.stdev(),
            stats.min(),
            stats.max()
        ),
        (None, None, None, None, None)
    );
    assert_eq!(stats.percentile(50.0), None);
    assert_eq!(stats.summary(), StatsSummary::default());
    assert_eq!(stats.summary().to_string(), "n=0");
}

#[test]
fn known_sample_set() {
    let stats = one_to_hundred_ms();
    assert_eq!(stats.count(), 100);
    assert_eq!(stats.total(), ms(5050));
    assert_eq!(stats.mean(), Some(Duration::from_micros(50_500)));
    assert_eq!((stats.min(), stats.max()), (Some(ms(1)), Some(ms(100))));
    // Sample variance of 1..=100 is 101·100/12 = 841.666… ms².
    let expected = (841.0f64 + 2.0 / 3.0).sqrt() * 1e6;
    let stdev = stats.stdev().unwrap().as_nanos() as f64;
    assert!((stdev - expected).abs() <= 1.0, "{stdev} vs {expected}");
    assert!(close(stats.median().unwrap(), ms(50)));
    assert!(close(stats.percentile(90.0).unwrap(), ms(90)));
    assert!(close(stats.percentile(99.0).unwrap(), ms(99)));
    assert_eq!(stats.percentile(0.0), Some(ms(1)));
    assert_eq!(stats.percentile(100.0), Some(ms(100)));
}

#[test]
fn single_sample() {
    let mut stats = TimingStats::new();
    stats.record(ms(7));
    assert_eq!(stats.stdev(), None);
    assert_eq!(stats.median(), Some(ms(7)));
    assert_eq!(stats.summary().stdev, Duration::ZERO);
}

#[test]
fn invalid_percentiles_are_none() {
    let stats = one_to_hundred_ms();
    for p in [-1.0, 100.5, f64::NAN, f64::INFINITY] {
        assert_eq!(stats.percentile(p), None, "{p}");
    }
}

#[test]
fn huge_and_zero_samples_do_not_panic() {
    let mut stats = TimingStats::new();
    stats.record(Duration::ZERO);
    stats.record(Duration::MAX);
    stats.record(Duration::MAX);
    assert_eq!(stats.max(), Some(Duration::MAX));
    assert_eq!(stats.min(), Some(Duration::ZERO));
    assert_eq!(stats.total(), Duration::MAX);
    assert_eq!(stats.percentile(0.0), Some(Duration::ZERO));
    assert_eq!(stats.percentile(100.0), Some(Duration::MAX));
    assert!(stats.stdev().is_some());
}

#[test]
fn merge_equals_recording_everything() {
    let mut left = TimingStats::new();
    let mut right = TimingStats::new();
    for n in 1..=100 {
        if n % 3 == 0 { &mut left } else { &mut right }.record(ms(n));
    }
    left.merge(&right);
    let all = one_to_hundred_ms();
    assert_eq!(left.summary().count, 100);
    assert_eq!(left.total(), all.total());
    assert_eq!((left.min(), left.max()), (all.min(), all.max()));
    let (a, b) = (left.stdev().unwrap(), all.stdev().unwrap());
    assert!(a.abs_diff(b) <= Duration::from_nanos(1));
    assert_eq!(left.percentile(99.0), all.percentile(99.0));
    let mut empty = TimingStats::new();
    empty.merge(&all);
    assert_eq!(empty.summary(), all.summary());
    empty.merge(&TimingStats::new());
    assert_eq!(empty.summary(), all.summary());
}

#[test]
fn reset_forgets() {
    let mut stats = one_to_hundred_ms();
    stats.reset();
    assert_eq!(stats.summary(), StatsSummary::default());
}

#[test]
fn time_with_records_the_clock_duration() {
    let clock = ManualClock::new();
    let mut stats = TimingStats::new();
    let out = stats.time_with(&clock, || {
        clock.advance(ms(12));
        "out"
    });
    assert_eq!(out, "out");
    assert_eq!(stats.max(), Some(ms(12)));
    let real = stats.time(|| 5);
    assert_eq!((real, stats.count()), (5, 2));
}

#[test]
fn summary_display_is_compact() {
    let text = one_to_hundred_ms().summary().to_string();
    assert_eq!(text, "n=100 mean=50.5ms p50=50ms p99=99ms max=100ms");
    assert_eq!(
        Compact(Duration::from_nanos(1_234_567_890)).to_string(),
        "1.23s"
    );
    assert_eq!(Compact(Duration::from_nanos(999)).to_string(), "999ns");
    assert_eq!(Compact(Duration::from_micros(20)).to_string(), "20µs");
}

#[test]
fn shared_stats_from_many_threads() {
    sk_testkit::guarded(|| {
        let stats = SharedStats::new();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for n in 1..=25 {
                        stats.record(ms(t * 25 + n));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(stats.summary(), one_to_hundred_ms().summary());
        let clock = ManualClock::new();
        stats.time_with(&clock, || clock.advance(ms(500)));
        assert_eq!(stats.max(), Some(ms(500)));
        let taken = stats.take();
        assert_eq!((taken.count(), stats.count()), (101, 0));
        stats.merge(&taken);
        assert_eq!(stats.count(), 101);
        stats.reset();
        assert_eq!(stats.mean(), None);
    });
}

proptest! {
    #[test]
    fn exact_fields_match_a_naive_computation(samples in prop::collection::vec(0u64..10_000_000, 1..200)) {
        let mut stats = TimingStats::new();
        for &s in &samples {
            stats.record(Duration::from_nanos(s));
        }
        let n = samples.len() as f64;
        let sum: u64 = samples.iter().sum();
        prop_assert_eq!(stats.total(), Duration::from_nanos(sum));
        prop_assert_eq!(stats.min(), samples.iter().min().map(|&s| Duration::from_nanos(s)));
        prop_assert_eq!(stats.max(), samples.iter().max().map(|&s| Duration::from_nanos(s)));
        if samples.len() > 1 {
            let mean = sum as f64 / n;
            let var = samples.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let got = stats.stdev().unwrap().as_nanos() as f64;
            prop_assert!((got - var.sqrt()).abs() <= 1.0 + var.sqrt() * 1e-9);
        }
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        for p in [50.0, 90.0, 99.0] {
            let rank = ((p / 100.0 * n).ceil() as usize).max(1) - 1;
            let exact = Duration::from_nanos(sorted[rank]);
            let got = stats.percentile(p).unwrap();
            prop_assert!(got.abs_diff(exact).as_nanos() * 1000 <= exact.as_nanos().max(1000), "p{} {:?} vs {:?}", p, got, exact);
        }
    }
}

proptest! {
    #[test]
    fn a_batch_counts_as_its_mean_n_times(
        before in prop::collection::vec(0u64..10_000_000, 0..50),
        each in 0u64..10_000_000,
        n in 1u64..300,
    ) {
        // A batch whose total divides exactly: the same as recording its
        // mean n times, but for the stdev's rounding.
        let (mut batched, mut one_by_one) = (TimingStats::new(), TimingStats::new());
        for &s in &before {
            batched.record(Duration::from_nanos(s));
            one_by_one.record(Duration::from_nanos(s));
        }
        batched.record_batch(Duration::from_nanos(each * n), n);
        for _ in 0..n {
            one_by_one.record(Duration::from_nanos(each));
        }
        prop_assert_eq!(batched.count(), one_by_one.count());
        prop_assert_eq!(batched.total(), one_by_one.total());
        prop_assert_eq!((batched.min(), batched.max()), (one_by_one.min(), one_by_one.max()));
        prop_assert_eq!(batched.percentile(50.0), one_by_one.percentile(50.0));
        prop_assert_eq!(batched.percentile(99.0), one_by_one.percentile(99.0));
        if let (Some(a), Some(b)) = (batched.stdev(), one_by_one.stdev()) {
            prop_assert!(a.abs_diff(b).as_nanos() as f64 <= 1.0 + b.as_nanos() as f64 * 1e-9);
        }
    }
}

#[test]
fn a_batch_keeps_its_total_exact_and_an_empty_one_is_nothing() {
    let mut stats = TimingStats::new();
    stats.record_batch(Duration::from_nanos(10), 3);
    stats.record_batch(Duration::from_secs(1), 0);
    assert_eq!(stats.count(), 3);
    assert_eq!(stats.total(), Duration::from_nanos(10));
    assert_eq!(stats.mean(), Some(Duration::from_nanos(3)));
    assert_eq!(stats.max(), Some(Duration::from_nanos(3)));
}
