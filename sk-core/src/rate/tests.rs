//! Unit tests for the rate limiter, on a manual clock.

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn limiter(rate: f64, burst: u32) -> (RateLimiter, ManualClock) {
    let clock = ManualClock::new();
    let limiter = RateLimiter::new(rate)
        .unwrap()
        .with_burst(burst)
        .with_clock(clock.shared());
    (limiter, clock)
}

#[test]
fn bad_rates_are_rejected_with_the_value() {
    for (rate, shown) in [
        (f64::NAN, "NaN"),
        (0.0, "0"),
        (-2.5, "-2.5"),
        (f64::INFINITY, "inf"),
    ] {
        let err = RateLimiter::new(rate).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "rate must be a finite number of permits per second greater than zero, got {shown}"
            )
        );
    }
}

#[test]
fn second_acquire_waits_one_interval() {
    let (limiter, clock) = limiter(10.0, 1);
    limiter.acquire();
    assert!(clock.sleeps().is_empty());
    limiter.acquire();
    assert_eq!(clock.sleeps(), [ms(100)]);
}

#[test]
fn n_acquires_take_n_minus_one_intervals() {
    let (limiter, clock) = limiter(50.0, 1);
    for _ in 0..101 {
        limiter.acquire();
    }
    assert_eq!(clock.elapsed(), ms(2000));
}

#[test]
fn burst_is_free_then_steady() {
    let (limiter, clock) = limiter(10.0, 5);
    for _ in 0..5 {
        assert!(limiter.try_acquire());
    }
    assert!(!limiter.try_acquire());
    limiter.acquire();
    assert_eq!(clock.sleeps(), [ms(100)]);
    // A long idle period refills only up to the burst.
    clock.advance(Duration::from_secs(60));
    let free = (0..20).take_while(|_| limiter.try_acquire()).count();
    assert_eq!(free, 5);
}

#[test]
fn try_acquire_refills_with_time() {
    let (limiter, clock) = limiter(4.0, 1);
    assert!(limiter.try_acquire());
    assert!(!limiter.try_acquire());
    clock.advance(ms(249));
    assert!(!limiter.try_acquire());
    clock.advance(ms(1));
    assert!(limiter.try_acquire());
    assert!(clock.sleeps().is_empty());
}

#[test]
fn acquire_until_only_takes_a_permit_it_can_wait_for() {
    let (limiter, clock) = limiter(10.0, 1);
    limiter.acquire();
    assert!(!limiter.acquire_until(clock.now() + ms(99)));
    assert!(clock.sleeps().is_empty(), "a refused acquire does not wait");
    assert!(limiter.acquire_until(clock.now() + ms(100)));
    assert_eq!(clock.sleeps(), [ms(100)]);
    assert!(!limiter.acquire_timeout(ms(50)));
    assert!(limiter.acquire_timeout(Duration::MAX));
    assert_eq!(clock.elapsed(), ms(200));
}

#[test]
fn acquire_until_a_past_deadline() {
    let (limiter, clock) = limiter(10.0, 1);
    let before = clock.now();
    clock.advance(ms(5));
    let limiter = limiter.with_clock(clock.shared());
    assert!(!limiter.acquire_until(before));
    assert!(limiter.acquire_until(clock.now()));
}

#[test]
fn extreme_rates_do_not_panic() {
    let (fast, clock) = limiter(1e12, 1);
    for _ in 0..1000 {
        fast.acquire();
    }
    assert_eq!(fast.interval(), Duration::from_nanos(1));
    assert!(clock.elapsed() <= Duration::from_micros(1));
    let (slow, _) = limiter(1e-300, u32::MAX);
    assert_eq!(slow.interval(), Duration::MAX);
    assert!(slow.try_acquire());
    assert!(slow.try_acquire());
    assert_eq!(RateLimiter::new(1.0).unwrap().with_burst(0).burst(), 1);
}

#[test]
fn concurrent_try_acquire_hands_out_exactly_the_burst() {
    sk_testkit::guarded(|| {
        let (limiter, _clock) = limiter(1.0, 50);
        let limiter = Arc::new(limiter);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || (0..20).filter(|_| limiter.try_acquire()).count())
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(granted, 50);
    });
}

#[test]
fn concurrent_acquires_are_all_served() {
    sk_testkit::guarded(|| {
        let (limiter, clock) = limiter(100.0, 1);
        let limiter = Arc::new(limiter);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || (0..25).for_each(|_| limiter.acquire()))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        // Each permit is handed out no earlier than its reserved slot,
        // and the slots are 10 ms apart.
        assert!(clock.elapsed() >= ms(990), "{:?}", clock.elapsed());
    });
}

proptest! {
    #[test]
    fn long_run_rate_holds(rate in 1u32..1000, burst in 1u32..20, n in 1u32..200) {
        let (limiter, clock) = limiter(f64::from(rate), burst);
        for _ in 0..n {
            limiter.acquire();
        }
        let expected = limiter.interval() * n.saturating_sub(burst);
        prop_assert_eq!(clock.elapsed(), expected);
    }
}
