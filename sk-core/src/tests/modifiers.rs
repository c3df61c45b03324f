//! Modifiers applied to lambdas: each test would fail if its modifier
//! were ignored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sk_testkit::guarded;

use crate::{Execute, FunctionError, Modify, Permanent, RetryPolicy, SkLambda, StopToken};

/// A lambda failing its first `failures` calls; returns it and its call count.
fn flaky(name: &str, failures: u32) -> (SkLambda, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let f = SkLambda::fallible(name, move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if n < failures {
            Err(format!("failure {}", n + 1))
        } else {
            Ok(n + 1)
        }
    });
    (f, calls)
}

/// A lambda that runs until its stop token is set (at most 10 s), then
/// records that it saw the stop.
fn until_stopped(name: &str) -> (SkLambda, Arc<AtomicBool>) {
    let saw_stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&saw_stop);
    let f = SkLambda::new(name, move || {
        let token = StopToken::current().expect("calls under a timeout have a token");
        let stopped = token.wait_timeout(Duration::from_secs(10));
        flag.store(stopped, Ordering::SeqCst);
        stopped
    });
    (f, saw_stop)
}

#[test]
fn retry_repeats_until_success() {
    let (f, calls) = flaky("retry_success", 2);
    let f = f.retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3));
    assert_eq!(f.execute::<u32>().unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn retry_gives_up_after_max_attempts_keeping_the_last_error() {
    let (f, calls) = flaky("retry_exhausted", 10);
    let f = f.retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(4));
    let err = f.execute::<u32>().unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let FunctionError::RetriesExhausted { attempts, last, .. } = err else {
        panic!("expected RetriesExhausted, got {err:?}");
    };
    assert_eq!(attempts, 4);
    assert!(last.to_string().contains("retry_exhausted"));
    let source = std::error::Error::source(&*last).unwrap().to_string();
    assert_eq!(source, "failure 4");
}

#[test]
fn without_retry_a_failure_is_returned_at_once() {
    let (f, calls) = flaky("no_retry", 1);
    assert!(matches!(
        f.execute::<u32>(),
        Err(FunctionError::Failed { .. })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn permanent_errors_are_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    let f = SkLambda::fallible("permanent", move || {
        seen.fetch_add(1, Ordering::SeqCst);
        Err::<u8, _>(Permanent::new("bad input"))
    })
    .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(5));
    let err = f.execute::<u8>().unwrap_err();
    assert!(matches!(err, FunctionError::Failed { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn timeout_sets_the_stop_token_and_reports_timed_out() {
    guarded(|| {
        let (f, saw_stop) = until_stopped("times_out");
        let err = f
            .timeout(Duration::from_millis(20))
            .execute::<bool>()
            .unwrap_err();
        assert!(
            matches!(err, FunctionError::TimedOut { after, .. } if after == Duration::from_millis(20)),
            "{err:?}"
        );
        // The abandoned call notices its token promptly.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !saw_stop.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the timed-out call never saw its stop token"
            );
            std::thread::yield_now();
        }
    })
}

#[test]
fn a_call_within_its_timeout_returns_normally() {
    guarded(|| {
        let f = SkLambda::new("quick", || 5u8).timeout(Duration::from_secs(10));
        assert_eq!(f.execute::<u8>().unwrap(), 5);
    })
}

#[test]
fn timeout_applies_to_each_attempt_inside_retry() {
    guarded(|| {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        // First attempt hangs until stopped, the second succeeds at once.
        let f = SkLambda::new("slow_then_fast", move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                let token = StopToken::current().expect("has a token");
                token.wait_timeout(Duration::from_secs(10));
                "slow"
            } else {
                "fast"
            }
        })
        .timeout(Duration::from_millis(20))
        .retry(
            RetryPolicy::fixed(Duration::from_millis(1))
                .max_attempts(3)
                .retry_timeouts(true),
        );
        assert_eq!(f.execute::<&str>().unwrap(), "fast");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    })
}

#[test]
fn timeouts_are_not_retried_when_the_policy_says_so() {
    guarded(|| {
        let (f, _) = until_stopped("no_timeout_retry");
        let f = f.timeout(Duration::from_millis(10)).retry(
            RetryPolicy::fixed(Duration::from_millis(1))
                .max_attempts(3)
                .retry_timeouts(false),
        );
        let err = f.execute::<bool>().unwrap_err();
        assert!(matches!(err, FunctionError::TimedOut { .. }), "{err:?}");
    })
}

#[test]
fn rate_limit_spaces_calls_and_is_shared_by_clones() {
    guarded(|| {
        let f = SkLambda::new("limited", || ()).rate_limit(50.0);
        let twin = f.clone();
        let start = Instant::now();
        for _ in 0..3 {
            f.execute::<()>().unwrap();
            twin.execute::<()>().unwrap();
        }
        // Six permits at 50/s: whatever the burst, at least the permits
        // beyond the bucket's capacity wait 20 ms each. The bucket holds
        // one permit, so five waits are owed.
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    })
}

#[test]
fn invalid_rate_is_a_clear_error() {
    let f = SkLambda::new("bad_rate", || ()).rate_limit(-1.0);
    let err = f.execute::<()>().unwrap_err();
    assert!(
        matches!(
            err,
            FunctionError::InvalidModifier {
                modifier: "rate_limit",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad_rate"), "{err}");
}

#[test]
fn background_runs_on_another_thread_and_joins() {
    guarded(|| {
        let caller = std::thread::current().id();
        let f = SkLambda::local("where", std::thread::current);
        let job = f.background::<std::thread::Thread>().unwrap();
        let ran_on = job.join().unwrap();
        assert_ne!(ran_on.id(), caller);
    })
}

#[test]
fn background_stop_reaches_the_call() {
    guarded(|| {
        let f = SkLambda::new("stoppable", || {
            StopToken::current()
                .expect("a background call has a token")
                .wait_timeout(Duration::from_secs(10))
        });
        let mut job = f.background::<bool>().unwrap();
        assert_eq!(job.join_timeout(Duration::from_millis(5)).unwrap(), None);
        job.stop();
        assert!(job.join().unwrap(), "the call saw its stop token");
    })
}

#[test]
fn background_output_type_is_checked() {
    guarded(|| {
        let job = SkLambda::new("typed", || 1u8)
            .background::<String>()
            .unwrap();
        let err = job.join().unwrap_err();
        assert!(matches!(err, FunctionError::OutputType { .. }), "{err:?}");
    })
}

#[test]
fn a_panicking_function_is_an_error_not_a_panic() {
    let f = SkLambda::new("panics", || -> u8 { panic!("kaboom") });
    let err = f.execute::<u8>().unwrap_err();
    assert_eq!(err.to_string(), "function \"panics\" panicked: kaboom");
}
