//! Unit tests for the circuit breaker: state changes on a manual clock,
//! half-open probing, and sharing between threads.

use std::sync::{OnceLock, Weak};
use std::time::Instant;

use super::*;
use crate::clock::ManualClock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn circuit(n: u32, sleep: Duration, clock: &ManualClock) -> CircuitBuilder {
    Circuit::builder("test", n, sleep)
        .with_clock(clock.shared())
        .seed(7)
}

#[test]
fn trips_after_n_shorts_and_sleeps() {
    let clock = ManualClock::new();
    let c = circuit(3, ms(100), &clock).build().unwrap();
    assert!(!c.short());
    assert!(!c.short());
    assert_eq!(c.times_shorted(), 2);
    assert!(clock.sleeps().is_empty());
    assert!(c.short());
    assert_eq!((c.times_shorted(), c.total_trips()), (0, 1));
    assert_eq!(clock.sleeps(), [ms(100)]);
    assert!(
        !c.is_broken(),
        "a normal circuit carries on after its sleep"
    );
    assert_eq!(c.current_sleep_time(), ms(100));
}

#[test]
fn backoff_grows_the_sleep_up_to_the_cap() {
    let clock = ManualClock::new();
    let c = circuit(1, ms(100), &clock)
        .backoff_factor(2.0)
        .max_sleep_time(ms(350))
        .build()
        .unwrap();
    for _ in 0..5 {
        assert!(c.short());
    }
    assert_eq!(
        clock.sleeps(),
        [ms(100), ms(200), ms(350), ms(350), ms(350)]
    );
    assert_eq!(c.current_sleep_time(), ms(350));
    c.reset();
    assert_eq!(c.current_sleep_time(), ms(100));
    assert_eq!(c.total_trips(), 5, "reset keeps the lifetime trip count");
}

#[test]
fn base_sleep_is_capped_too() {
    let clock = ManualClock::new();
    let c = circuit(1, ms(500), &clock)
        .max_sleep_time(ms(50))
        .build()
        .unwrap();
    c.trip();
    assert_eq!(clock.sleeps(), [ms(50)]);
}

#[test]
fn jitter_stays_in_bounds_and_under_the_cap() {
    let clock = ManualClock::new();
    let c = circuit(1, ms(100), &clock)
        .jitter(Jitter::Ratio(0.2))
        .build()
        .unwrap();
    for _ in 0..500 {
        c.short();
    }
    let sleeps = clock.sleeps();
    assert!(sleeps.iter().all(|d| *d >= ms(80) && *d <= ms(120)));
    assert!(
        sleeps.iter().any(|d| *d != ms(100)),
        "jitter varies the sleep"
    );
    clock.clear_sleeps();
    let capped = circuit(1, ms(100), &clock)
        .jitter(Jitter::Ratio(0.5))
        .max_sleep_time(ms(110))
        .build()
        .unwrap();
    for _ in 0..200 {
        capped.short();
    }
    assert!(clock.sleeps().iter().all(|d| *d <= ms(110)));
}

#[test]
fn same_seed_same_sleeps() {
    let run = || {
        let clock = ManualClock::new();
        let c = circuit(1, ms(100), &clock)
            .jitter(Jitter::Full)
            .build()
            .unwrap();
        (0..20).for_each(|_| c.trip());
        clock.sleeps()
    };
    assert_eq!(run(), run());
}

#[test]
fn breaking_circuit_stays_broken_until_reset() {
    let clock = ManualClock::new();
    let c = circuit(2, ms(100), &clock).breaking(true).build().unwrap();
    assert!(!c.short());
    assert!(!c.is_broken());
    assert!(c.short());
    assert!(c.is_broken());
    assert!(!c.short(), "shorts on a broken circuit are ignored");
    c.trip();
    assert_eq!((c.times_shorted(), c.total_trips()), (0, 1));
    assert!(
        clock.sleeps().is_empty(),
        "a breaking circuit does not sleep"
    );
    c.reset();
    assert!(!c.is_broken());
    assert!(!c.short());
    assert!(c.short());
    assert_eq!(c.total_trips(), 2);
}

#[test]
fn trip_trips_now_and_reset_clears_shorts() {
    let clock = ManualClock::new();
    let c = circuit(10, ms(5), &clock).build().unwrap();
    c.short();
    c.short();
    c.trip();
    assert_eq!((c.times_shorted(), c.total_trips()), (0, 1));
    c.short();
    c.reset();
    assert_eq!(c.times_shorted(), 0);
    assert_eq!(clock.sleeps(), [ms(5)]);
}

#[test]
fn validation_names_the_circuit() {
    let err = Circuit::new("db", 0, ms(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit `db` needs at least 1 short to trip, got 0"
    );
    let err = Circuit::builder("db", 1, ms(1))
        .backoff_factor(0.5)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "circuit `db`: backoff factor must be a finite number >= 1, got 0.5"
    );
    let err = Circuit::builder("db", 1, ms(1))
        .backoff_factor(f64::NAN)
        .build()
        .unwrap_err();
    assert!(err.to_string().ends_with("got NaN"));
    let err = Circuit::builder("db", 1, ms(1))
        .jitter(Jitter::Ratio(-1.0))
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "circuit `db` has an invalid jitter");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.to_string(),
        "jitter ratio must be a finite number >= 0, got -1"
    );
}

#[test]
fn many_threads_shorting_trip_once_per_n_shorts() {
    sk_testkit::guarded(|| {
        let clock = ManualClock::new();
        let c = Arc::new(circuit(4, ms(1), &clock).build().unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..300).filter(|_| c.short()).count())
            })
            .collect();
        let tripped: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(tripped, 600);
        assert_eq!(c.total_trips(), 600);
        assert_eq!(c.times_shorted(), 0);
        assert_eq!(clock.sleeps().len(), 600);
        assert!(!c.is_broken());
    });
}

#[test]
fn many_threads_see_a_breaking_circuit_break_once() {
    sk_testkit::guarded(|| {
        let c = Arc::new(
            Circuit::builder("shutdown", 5, Duration::ZERO)
                .breaking(true)
                .build()
                .unwrap(),
        );
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let mut loops = 0;
                    while !c.is_broken() {
                        c.short();
                        loops += 1;
                        assert!(loops < 1_000_000, "circuit never broke");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(c.total_trips(), 1);
    });
}

/// A clock that records whether its circuit looked broken while sleeping.
#[derive(Debug, Default)]
struct ProbeClock {
    circuit: OnceLock<Weak<Circuit>>,
    seen_broken: Mutex<Vec<bool>>,
}

impl Clock for ProbeClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, _d: Duration) {
        let broken = self
            .circuit
            .get()
            .and_then(Weak::upgrade)
            .map(|c| c.is_broken());
        self.seen_broken.lock().push(broken.unwrap_or(false));
    }
}

#[test]
fn a_normal_circuit_is_broken_while_it_sleeps() {
    let probe = Arc::new(ProbeClock::default());
    let c = Arc::new(
        Circuit::builder("probe", 1, ms(10))
            .with_clock(probe.clone())
            .build()
            .unwrap(),
    );
    probe.circuit.set(Arc::downgrade(&c)).unwrap();
    assert!(c.short());
    assert_eq!(*probe.seen_broken.lock(), [true]);
    assert!(!c.is_broken());
}

#[test]
fn debug_shows_the_state() {
    let clock = ManualClock::new();
    let c = circuit(2, ms(3), &clock).build().unwrap();
    c.short();
    let text = format!("{c:?}");
    assert!(text.contains("name: \"test\""), "{text}");
    assert!(text.contains("times_shorted: 1"), "{text}");
}
