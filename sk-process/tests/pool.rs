//! The pool as users meet it, on the backend `SK_SPAWN_BACKEND` selects
//! (process by default): ordered and unordered maps, star-args, per-item
//! failures, panics, timeouts, retries, and workers killed mid-map.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use sk_core::{Args, RetryPolicy, SkFunction};
use sk_process::{Backend, ItemError, Pool, PoolError};
use sk_reg::GlobalStorage;
use sk_testkit::{guarded, hang_guard};

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn inc(x: u64) -> u64 {
    x + 1
}

#[sk_core::function(crate = ::sk_core)]
fn affine(x: i64, k: i64) -> i64 {
    k * x + 7
}

#[sk_core::function(crate = ::sk_core)]
fn reject_42(x: u64) -> Result<u64, String> {
    if x == 42 {
        Err(format!("{x} is not welcome"))
    } else {
        Ok(x)
    }
}

#[sk_core::function(crate = ::sk_core)]
fn explode_7(x: u64) -> u64 {
    if x == 7 {
        panic!("boom at {x}");
    }
    x * 2
}

/// Sleeps `ms` in small steps, leaving early if its stop token is set.
#[sk_core::function(crate = ::sk_core)]
fn doze(ms: u64) -> u64 {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if sk_core::StopToken::current().is_some_and(|t| t.is_stopped()) {
            return 0;
        }
        thread::sleep(Duration::from_millis(1));
    }
    ms
}

/// Fails the first attempt of each item; counts attempts in the parent's
/// global storage, which process workers reach through their channel.
#[sk_core::function(crate = ::sk_core)]
fn flaky(key: String, x: u64) -> Result<u64, String> {
    let attempts: u64 = GlobalStorage::global()
        .update(&format!("{key}-{x}"), |n: Option<u64>| n.unwrap_or(0) + 1)
        .map_err(|e| e.to_string())?;
    if attempts == 1 {
        Err(format!("first attempt of {x} fails"))
    } else {
        Ok(x * 10)
    }
}

fn backend() -> Backend {
    Backend::from_env()
}

fn handle(name: &str) -> SkFunction {
    SkFunction::builder(name).build().unwrap()
}

fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .backend(backend())
        .build()
        .unwrap()
}

#[test]
fn map_of_ten_thousand_items_returns_every_result_in_order() {
    guarded(|| {
        let pool = pool(2);
        let out: Vec<u64> = pool.map(&handle("inc"), "x", 0..10_000u64).unwrap();
        assert_eq!(out.len(), 10_000);
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, i as u64 + 1, "item {i}");
        }
        pool.close();
    })
}

#[test]
fn imap_yields_results_in_input_order() {
    guarded(|| {
        let pool = Pool::builder()
            .workers(2)
            .backend(backend())
            .chunk_size(7)
            .build()
            .unwrap();
        // Uneven work, so chunks finish out of order.
        let items = (0..200u64).map(|i| if i % 13 == 0 { 15 } else { i % 3 });
        let expected: Vec<u64> = items.clone().collect();
        let got: Vec<u64> = pool
            .imap::<u64, u64>(&handle("doze"), "ms", items)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, expected);
    })
}

#[test]
fn imap_unordered_returns_all_ten_thousand_results() {
    guarded(|| {
        let pool = pool(2);
        let mut seen = HashSet::new();
        for (index, result) in pool.imap_unordered::<u64, u64>(&handle("inc"), "x", 0..10_000u64) {
            let v = result.unwrap();
            assert_eq!(v, index as u64 + 1);
            assert!(seen.insert(v), "{v} came twice");
        }
        assert_eq!(seen, (1..=10_000u64).collect::<HashSet<_>>());
    })
}

#[test]
fn starmap_binds_two_named_arguments_per_item() {
    guarded(|| {
        let pool = pool(2);
        let items: Vec<Args> = (0..500i64)
            .map(|i| {
                Args::new()
                    .with("x", &i)
                    .unwrap()
                    .with("k", &(i % 5))
                    .unwrap()
            })
            .collect();
        let out: Vec<i64> = pool.starmap(&handle("affine"), items.clone()).unwrap();
        let expected: Vec<i64> = (0..500i64).map(|i| (i % 5) * i + 7).collect();
        assert_eq!(out, expected);

        let mut unordered: Vec<(usize, i64)> = pool
            .starmap_unordered::<i64>(&handle("affine"), items)
            .map(|(i, r)| (i, r.unwrap()))
            .collect();
        unordered.sort_unstable();
        assert_eq!(
            unordered.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
            expected
        );
    })
}

#[test]
fn a_failing_item_fails_the_map_naming_its_index() {
    guarded(|| {
        let pool = pool(2);
        let err = pool
            .map::<u64, u64>(&handle("reject_42"), "x", 0..100u64)
            .unwrap_err();
        let PoolError::Item { index, error } = &err else {
            panic!("expected an item error, got {err:?}")
        };
        assert_eq!(*index, 42);
        assert!(
            matches!(error, ItemError::Failed { attempts: 1, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("42 is not welcome"), "{error}");
        // The call's error says which item, and why.
        let text = err.to_string();
        assert!(
            text.starts_with("item 42: failed after 1 attempt(s)"),
            "{text}"
        );
        assert!(text.contains("42 is not welcome"), "{text}");
        sk_testkit::assert_chain_says_each_thing_once(&err);
        // The pool goes on.
        let ok: Vec<u64> = pool.map(&handle("reject_42"), "x", 0..10u64).unwrap();
        assert_eq!(ok, (0..10).collect::<Vec<_>>());
    })
}

#[test]
fn a_panicking_item_is_its_own_error_and_the_others_succeed() {
    guarded(|| {
        let pool = pool(2);
        let results: Vec<Result<u64, ItemError>> =
            pool.map_results(&handle("explode_7"), "x", 0..50u64);
        assert_eq!(results.len(), 50);
        for (i, r) in results.iter().enumerate() {
            if i == 7 {
                let Err(ItemError::Panicked { message, .. }) = r else {
                    panic!("item 7: expected a panic, got {r:?}")
                };
                assert!(message.contains("boom at 7"), "{message}");
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u64 * 2, "item {i}");
            }
        }
    })
}

#[test]
fn an_item_over_its_timeout_times_out_alone_and_its_worker_is_replaced() {
    guarded(|| {
        let pool = Pool::builder()
            .workers(2)
            .backend(backend())
            .item_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let before: Vec<u32> = pool.workers().iter().map(|w| w.pid()).collect();
        let items = vec![5u64, 5, 30_000, 5, 5, 5, 5, 5];
        let started = Instant::now();
        let results: Vec<Result<u64, ItemError>> = pool.map_results(&handle("doze"), "ms", items);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "preempted, not waited out"
        );
        for (i, r) in results.iter().enumerate() {
            if i == 2 {
                assert!(
                    matches!(r, Err(ItemError::TimedOut { attempts: 1, .. })),
                    "item 2: {r:?}"
                );
            } else {
                assert_eq!(*r.as_ref().unwrap(), 5, "item {i}");
            }
        }
        // The replacement starts right after the timeout is reported.
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.replacements() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pool.replacements(), 1, "the timed-out worker was replaced");
        if backend() == Backend::Process {
            let after: Vec<u32> = pool.workers().iter().map(|w| w.pid()).collect();
            assert_ne!(before, after, "a new worker process took the slot");
        }
        assert!(pool.workers().iter().all(|w| w.is_alive()));
        // The pool still works afterwards.
        let out: Vec<u64> = pool.map(&handle("inc"), "x", 0..100u64).unwrap();
        assert_eq!(out, (1..=100).collect::<Vec<_>>());
    })
}

#[test]
fn a_retry_policy_reruns_a_failed_item_until_it_succeeds() {
    guarded(|| {
        let key = format!("pool-flaky-{}", backend());
        let f = SkFunction::builder("flaky")
            .arg("key", key.clone())
            .build()
            .unwrap();
        // Without retries the first failure is final.
        let plain = pool(2);
        let err = plain.map::<u64, u64>(&f, "x", [1u64]).unwrap_err();
        assert!(matches!(err, PoolError::Item { index: 0, .. }), "{err:?}");

        let retrying = Pool::builder()
            .workers(2)
            .backend(backend())
            .retry(RetryPolicy::fixed(Duration::from_millis(10)).max_attempts(3))
            .build()
            .unwrap();
        let out: Vec<u64> = retrying.map(&f, "x", 10..30u64).unwrap();
        assert_eq!(out, (10..30u64).map(|x| x * 10).collect::<Vec<_>>());
        for x in 10..30u64 {
            let attempts: Option<u64> = GlobalStorage::global().get(&format!("{key}-{x}")).unwrap();
            assert_eq!(attempts, Some(2), "item {x} ran twice");
        }
    })
}

#[test]
fn a_worker_killed_from_outside_mid_map_loses_no_result() {
    hang_guard(Duration::from_secs(120), || {
        let pool = Pool::builder()
            .workers(2)
            .backend(backend())
            .chunk_size(10)
            .build()
            .unwrap();
        let victim = pool.workers()[0].clone();
        let items: Vec<u64> = (0..200).map(|i| 5 + i % 3).collect();
        let results = thread::scope(|s| {
            let mapping = s.spawn(|| pool.map::<u64, u64>(&handle("doze"), "ms", items.clone()));
            thread::sleep(Duration::from_millis(150));
            match backend() {
                Backend::Process => {
                    let status = Command::new("kill")
                        .args(["-KILL", &victim.pid().to_string()])
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
                _ => victim.kill(),
            }
            mapping.join().unwrap()
        });
        assert_eq!(results.unwrap(), items);
        assert!(!victim.is_alive());
        assert!(pool.replacements() >= 1);
    })
}

#[test]
fn a_misspelled_parameter_is_reported_as_the_typo() {
    guarded(|| {
        let pool = pool(1);
        let err = pool
            .map::<u64, u64>(&handle("reject_42"), "xx", 0..3u64)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(r#"function "reject_42" has no parameter "xx" (its parameters: x)"#),
            "{text}"
        );
        assert!(!text.contains("without a value"), "{text}");
        let results = pool.map_results::<u64, u64>(&handle("reject_42"), "xx", 0..3u64);
        assert_eq!(results.len(), 3);
        for result in results {
            assert!(matches!(result, Err(ItemError::Encode(_))), "{result:?}");
        }
    })
}
