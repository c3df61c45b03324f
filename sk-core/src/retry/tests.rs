//! Unit tests for retry policies.

use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::clock::ManualClock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("flaky failure {0}")]
struct Flaky(u32);

#[test]
fn backoff_shapes() {
    let fixed = RetryPolicy::fixed(ms(10)).max_attempts(4);
    assert_eq!(fixed.delays(0).collect::<Vec<_>>(), [ms(10); 3]);
    let linear = RetryPolicy::linear(ms(10), ms(5)).max_attempts(4);
    assert_eq!(
        linear.delays(0).collect::<Vec<_>>(),
        [ms(10), ms(15), ms(20)]
    );
    let exp = RetryPolicy::exponential(ms(10), 3.0).max_attempts(5);
    assert_eq!(
        exp.delays(0).collect::<Vec<_>>(),
        [ms(10), ms(30), ms(90), ms(270)]
    );
    assert_eq!(
        exp.delay(0, &mut fastrand::Rng::with_seed(0)),
        Duration::ZERO
    );
}

#[test]
fn delays_has_max_attempts_minus_one_items() {
    assert_eq!(RetryPolicy::never().delays(1).count(), 0);
    assert_eq!(
        RetryPolicy::fixed(ms(1)).max_attempts(0).delays(1).count(),
        0
    );
    assert_eq!(RetryPolicy::fixed(ms(1)).delays(1).count(), 2);
}

#[test]
fn huge_backoff_saturates_instead_of_panicking() {
    let exp = RetryPolicy::exponential(Duration::from_secs(1), 1e300).max_attempts(u32::MAX);
    let mut rng = fastrand::Rng::with_seed(0);
    assert_eq!(exp.delay(u32::MAX, &mut rng), Duration::MAX);
    let lin = RetryPolicy::linear(Duration::MAX, Duration::MAX);
    assert_eq!(lin.delay(3, &mut rng), Duration::MAX);
    let capped = exp.max_delay(ms(5)).jitter(Jitter::Ratio(0.5));
    assert!(capped.delay(40, &mut rng) <= ms(5));
}

#[test]
fn cap_applies_before_and_after_jitter() {
    let policy = RetryPolicy::exponential(ms(100), 2.0)
        .max_attempts(10)
        .max_delay(ms(300))
        .jitter(Jitter::Ratio(0.5));
    for d in policy.delays(42) {
        assert!(d <= ms(300), "{d:?}");
    }
}

#[test]
fn jitter_bounds() {
    let mut rng = fastrand::Rng::with_seed(9);
    let d = ms(100);
    for _ in 0..1000 {
        assert!(Jitter::Full.apply(d, &mut rng) <= d);
        let e = Jitter::Equal.apply(d, &mut rng);
        assert!(e >= ms(50) && e <= d);
        let r = Jitter::Ratio(0.2).apply(d, &mut rng);
        assert!(r >= ms(80) && r <= ms(120), "{r:?}");
        assert_eq!(Jitter::None.apply(d, &mut rng), d);
    }
    // A ratio above 1 clamps at zero instead of going negative.
    let zeros = (0..1000)
        .filter(|_| Jitter::Ratio(3.0).apply(d, &mut rng).is_zero())
        .count();
    assert!(zeros > 0);
    assert_eq!(Jitter::Full.apply(Duration::ZERO, &mut rng), Duration::ZERO);
}

#[test]
fn jitter_is_reproducible_per_seed() {
    let policy = RetryPolicy::fixed(ms(100))
        .max_attempts(20)
        .jitter(Jitter::Full);
    let a: Vec<_> = policy.delays(5).collect();
    assert_eq!(a, policy.delays(5).collect::<Vec<_>>());
    assert_ne!(a, policy.delays(6).collect::<Vec<_>>());
}

#[test]
fn validation_messages() {
    let cases = [
        (
            RetryPolicy::fixed(ms(1)).max_attempts(0),
            "max attempts must be at least 1",
        ),
        (
            RetryPolicy::exponential(ms(1), 0.5),
            "exponential backoff factor must be a finite number >= 1, got 0.5",
        ),
        (
            RetryPolicy::exponential(ms(1), f64::NAN),
            "exponential backoff factor must be a finite number >= 1, got NaN",
        ),
        (
            RetryPolicy::fixed(ms(1)).jitter(Jitter::Ratio(f64::NAN)),
            "jitter ratio must be a finite number >= 0, got NaN",
        ),
        (
            RetryPolicy::fixed(ms(1)).jitter(Jitter::Ratio(-0.1)),
            "jitter ratio must be a finite number >= 0, got -0.1",
        ),
        (
            RetryPolicy::fixed(ms(1)).attempt_timeout(Duration::ZERO),
            "attempt timeout must be greater than zero",
        ),
        (
            RetryPolicy::fixed(ms(1)).deadline(Duration::ZERO),
            "deadline must be greater than zero",
        ),
    ];
    for (policy, message) in cases {
        assert_eq!(policy.validate().unwrap_err().to_string(), message);
    }
    assert!(RetryPolicy::default().validate().is_ok());
    assert!(RetryPolicy::never().validate().is_ok());
}

#[test]
fn invalid_policy_runs_nothing() {
    let clock = ManualClock::new();
    let calls = Cell::new(0);
    let err = RetryPolicy::fixed(ms(1))
        .max_attempts(0)
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            |_| {
                calls.set(calls.get() + 1);
                Err::<(), _>(Flaky(0))
            },
        )
        .unwrap_err();
    assert!(matches!(
        err,
        RetryError::InvalidPolicy(PolicyError::ZeroAttempts)
    ));
    assert_eq!(calls.get(), 0);
    assert_eq!(err.attempts(), 0);
    assert!(err.last_error().is_none());
}

#[test]
fn succeeds_after_failures_sleeping_the_backoff() {
    let clock = ManualClock::new();
    let policy = RetryPolicy::linear(ms(10), ms(10)).max_attempts(5);
    let mut seen = Vec::new();
    let value = policy
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            |a| {
                seen.push(a.number);
                if a.number < 4 {
                    Err(Flaky(a.number))
                } else {
                    Ok("done")
                }
            },
        )
        .unwrap();
    assert_eq!(value, "done");
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_eq!(clock.sleeps(), [ms(10), ms(20), ms(30)]);
}

#[test]
fn exhausted_reports_attempts_and_last_error() {
    let clock = ManualClock::new();
    let err = RetryPolicy::fixed(ms(1))
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            |a| Err::<(), _>(Flaky(a.number)),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "gave up after 3 attempts");
    assert_eq!(err.attempts(), 3);
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "flaky failure 3");
    assert_eq!(err.into_last_error(), Some(Flaky(3)));
    assert_eq!(clock.sleeps().len(), 2, "no wait after the last attempt");
}

#[test]
fn non_retryable_stops_at_once() {
    let clock = ManualClock::new();
    let err = RetryPolicy::fixed(ms(1))
        .max_attempts(10)
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |e: &Flaky| Retry::from(e.0 < 2),
            |a| Err::<(), _>(Flaky(a.number)),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        RetryError::NonRetryable {
            attempt: 2,
            error: Flaky(2)
        }
    ));
    assert_eq!(
        err.to_string(),
        "attempt 2 failed with a non-retryable error"
    );
    assert_eq!(clock.sleeps(), [ms(1)]);
}

#[test]
fn never_sleeps_past_the_deadline() {
    let clock = ManualClock::new();
    let policy = RetryPolicy::fixed(ms(40))
        .max_attempts(100)
        .deadline(ms(100));
    let mut remaining = Vec::new();
    let err = policy
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            |a| {
                remaining.push(a.remaining);
                clock.advance(ms(5)); // each attempt takes 5 ms
                Err::<(), _>(Flaky(a.number))
            },
        )
        .unwrap_err();
    // t=0 a1 (5) sleep 40 → 45 a2 (50) sleep 40 → 90 a3 (95): 95+40 >= 100, give up.
    match err {
        RetryError::DeadlineExceeded {
            attempts,
            elapsed,
            deadline,
            last,
        } => {
            assert_eq!(
                (attempts, elapsed, deadline, last),
                (3, ms(95), ms(100), Flaky(3))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(remaining, [Some(ms(100)), Some(ms(55)), Some(ms(10))]);
    assert_eq!(clock.sleeps(), [ms(40), ms(40)]);
    assert!(clock.elapsed() <= ms(100));
}

#[test]
fn attempt_timeout_is_the_smaller_of_timeout_and_remaining() {
    let clock = ManualClock::new();
    let policy = RetryPolicy::fixed(ms(10))
        .max_attempts(3)
        .attempt_timeout(ms(30))
        .deadline(ms(50));
    let mut timeouts = Vec::new();
    let _ = policy.run(
        &clock,
        &mut fastrand::Rng::with_seed(0),
        |_: &Flaky| Retry::Yes,
        |a| {
            timeouts.push(a.timeout);
            clock.advance(ms(5));
            Err::<(), _>(Flaky(a.number))
        },
    );
    // Attempts start at 0, 15 and 30 ms.
    assert_eq!(timeouts, [Some(ms(30)), Some(ms(30)), Some(ms(20))]);
    let only_timeout = RetryPolicy::never().attempt_timeout(ms(7));
    let _ = only_timeout.run(
        &clock,
        &mut fastrand::Rng::with_seed(0),
        |_: &Flaky| Retry::Yes,
        |a| {
            assert_eq!(
                (a.timeout, a.remaining, a.is_first()),
                (Some(ms(7)), None, true)
            );
            Err::<(), _>(Flaky(1))
        },
    );
}

#[test]
fn timeouts_are_retried_unless_disabled() {
    let clock = ManualClock::new();
    let slow = |a: Attempt| {
        clock.advance(a.timeout.unwrap());
        Err::<(), _>(Flaky(a.number))
    };
    let base = RetryPolicy::fixed(ms(1)).attempt_timeout(ms(20));
    let err = base
        .clone()
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            slow,
        )
        .unwrap_err();
    assert!(matches!(err, RetryError::Exhausted { attempts: 3, .. }));
    let err = base
        .retry_timeouts(false)
        .run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            slow,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 timed out after 20ms");
}

#[test]
fn a_stopped_current_token_ends_the_run() {
    let clock = ManualClock::new();
    let token = StopToken::new();
    let err = token.enter(|| {
        RetryPolicy::fixed(ms(10)).max_attempts(10).run(
            &clock,
            &mut fastrand::Rng::with_seed(0),
            |_: &Flaky| Retry::Yes,
            |a| {
                if a.number == 2 {
                    token.stop();
                }
                Err::<(), _>(Flaky(a.number))
            },
        )
    });
    let err = err.unwrap_err();
    assert_eq!(err.to_string(), "stopped after 2 attempts");
    assert_eq!(clock.sleeps(), [ms(10)]);
}

#[test]
fn run_simple_retries_every_error_on_the_real_clock() {
    let result = RetryPolicy::fixed(Duration::from_micros(100))
        .max_attempts(3)
        .run_simple(|a| {
            if a.number < 3 {
                Err(Flaky(a.number))
            } else {
                Ok(a.number)
            }
        });
    assert_eq!(result.unwrap(), 3);
}

#[test]
fn serde_defaults_fill_missing_fields() {
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, MapDeserializer};
    let fields: Vec<(&str, u32)> = vec![("max_attempts", 7)];
    let policy =
        RetryPolicy::deserialize(MapDeserializer::<_, DeError>::new(fields.into_iter())).unwrap();
    assert_eq!(policy, RetryPolicy::default().max_attempts(7));
    let unknown: Vec<(&str, u32)> = vec![("attempts", 7)];
    assert!(
        RetryPolicy::deserialize(MapDeserializer::<_, DeError>::new(unknown.into_iter())).is_err()
    );
    let jitter = Jitter::deserialize("full".into_deserializer()).map_err(|e: DeError| e);
    assert_eq!(jitter.unwrap(), Jitter::Full);
}

#[test]
fn display_of_backoff() {
    assert_eq!(RetryPolicy::fixed(ms(5)).backoff().to_string(), "fixed 5ms");
    assert_eq!(
        RetryPolicy::exponential(ms(5), 2.5).backoff().to_string(),
        "exponential 5ms x2.5"
    );
}

proptest! {
    #[test]
    fn delays_are_monotone_without_jitter(
        initial in 0u64..10_000,
        step in 0u64..10_000,
        factor in 1.0f64..4.0,
        attempts in 1u32..30,
    ) {
        for policy in [
            RetryPolicy::linear(ms(initial), ms(step)),
            RetryPolicy::exponential(ms(initial), factor),
        ] {
            let delays: Vec<_> = policy.max_attempts(attempts).delays(0).collect();
            prop_assert_eq!(delays.len() as u32, attempts - 1);
            prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn jittered_delays_stay_within_cap_and_base(
        initial in 0u64..10_000,
        cap in 1u64..20_000,
        seed in any::<u64>(),
        kind in 0usize..3,
    ) {
        let jitter = [Jitter::Full, Jitter::Equal, Jitter::None][kind];
        let policy = RetryPolicy::exponential(ms(initial), 2.0)
            .max_attempts(12)
            .max_delay(ms(cap))
            .jitter(jitter);
        let plain = policy.clone().jitter(Jitter::None);
        for (jittered, base) in policy.delays(seed).zip(plain.delays(seed)) {
            prop_assert!(jittered <= base && base <= ms(cap));
        }
    }

    #[test]
    fn run_never_exceeds_deadline_or_attempts(
        delay in 1u64..50,
        work in 0u64..20,
        deadline in 1u64..500,
        attempts in 1u32..20,
    ) {
        let clock = ManualClock::new();
        let policy = RetryPolicy::fixed(ms(delay))
            .max_attempts(attempts)
            .deadline(ms(deadline));
        let mut ran = 0;
        let result = policy.run(&clock, &mut fastrand::Rng::with_seed(0), |_: &Flaky| Retry::Yes, |a| {
            ran += 1;
            clock.advance(ms(work));
            Err::<(), _>(Flaky(a.number))
        });
        let err = result.unwrap_err();
        prop_assert!(ran <= attempts);
        prop_assert_eq!(err.attempts(), ran);
        // The last attempt started (after every sleep) before the deadline.
        prop_assert!(clock.total_slept() + ms(work) * (ran - 1) < ms(deadline));
    }
}
