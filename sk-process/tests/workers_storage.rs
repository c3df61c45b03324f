//! Workers' shared storage, on the backend `SK_SPAWN_BACKEND` selects
//! (process by default): updates from several workers, from threads a call
//! starts, between calls and from submitted calls nobody waits on, all
//! served by the parent.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::{Duration, Instant};

use sk_core::{Args, SkFunction};
use sk_process::Worker;
use sk_reg::GlobalStorage;
use sk_testkit::guarded;

mod common;

use common::{backend, call};

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn bump(key: String, times: u64) -> u64 {
    let storage = GlobalStorage::global();
    let mut last = 0;
    for _ in 0..times {
        last = storage
            .update(&key, |n: Option<u64>| n.unwrap_or(0) + 1)
            .expect("storage works");
    }
    last
}

#[test]
fn four_workers_increment_one_shared_counter_atomically() {
    guarded(|| {
        let key = format!("counter-{}", backend());
        let workers: Vec<Worker> = (0..4)
            .map(|i| Worker::spawn(format!("w-storage-{i}"), backend()).unwrap())
            .collect();
        let f = SkFunction::builder("bump").build().unwrap();
        let args = Args::new()
            .with("key", &key)
            .unwrap()
            .with("times", &1000u64)
            .unwrap();
        let pending: Vec<_> = workers
            .iter()
            .map(|w| w.submit(&f, &args).unwrap())
            .collect();
        for p in pending {
            p.wait(Some(Duration::from_secs(60))).unwrap();
        }
        let total: Option<u64> = GlobalStorage::global().get(&key).unwrap();
        assert_eq!(total, Some(4000));
    })
}

/// Updates `key` from `threads` threads the call starts, `times` each,
/// and waits for them: the thread serving the call is busy all along.
#[sk_core::function(crate = ::sk_core)]
fn bump_from_threads(key: String, threads: u64, times: u64) -> u64 {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let key = key.clone();
            thread::spawn(move || {
                for _ in 0..times {
                    GlobalStorage::global()
                        .update(&key, |n: Option<u64>| n.unwrap_or(0) + 1)
                        .expect("storage works");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("an updating thread");
    }
    GlobalStorage::global()
        .get::<u64>(&key)
        .expect("storage works")
        .unwrap_or(0)
}

#[test]
fn threads_a_call_starts_use_storage_while_the_call_waits_for_them() {
    guarded(|| {
        let key = format!("threaded-{}", backend());
        let worker = Worker::spawn("w-threads", backend()).unwrap();
        let seen: u64 = call(
            &worker,
            "bump_from_threads",
            Args::new()
                .with("key", &key)
                .unwrap()
                .with("threads", &4u64)
                .unwrap()
                .with("times", &250u64)
                .unwrap(),
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        assert_eq!(seen, 1000);
        let total: Option<u64> = GlobalStorage::global().get(&key).unwrap();
        assert_eq!(total, Some(1000));
    })
}

/// Starts a thread that adds one to `key` after `ms`, and returns at
/// once: the update reaches the parent while no call runs.
#[sk_core::function(crate = ::sk_core)]
fn bump_later(key: String, ms: u64) {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(ms));
        GlobalStorage::global()
            .update(&key, |n: Option<u64>| n.unwrap_or(0) + 1)
            .expect("storage works");
    });
}

/// Waits (at most 20 s) until `key` holds `want`.
fn storage_reaches(key: &str, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if GlobalStorage::global().get::<u64>(key).unwrap() == Some(want) {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn storage_used_between_calls_is_served_while_no_thread_waits() {
    guarded(|| {
        let key = format!("later-{}", backend());
        let worker = Worker::spawn("w-later", backend()).unwrap();
        for round in 1..=3u64 {
            let args = Args::new()
                .with("key", &key)
                .unwrap()
                .with("ms", &50u64)
                .unwrap();
            call::<()>(&worker, "bump_later", args, Some(Duration::from_secs(20))).unwrap();
            // Nobody reads the channel now but the parent's hub.
            assert!(storage_reaches(&key, round), "round {round}");
        }
    })
}

/// A worker named `name` that has answered three calls (their caller read
/// their ends: no call is out), the `bump` function, its arguments (three
/// updates of the storage key `{name}-{backend}`), and the key.
fn after_three_calls(name: &str) -> (Worker, SkFunction, Args, String) {
    let key = format!("{name}-{}", backend());
    let worker = Worker::spawn(name, backend()).unwrap();
    let args = Args::new()
        .with("key", &key)
        .unwrap()
        .with("times", &3u64)
        .unwrap();
    for _ in 0..3 {
        call::<u32>(&worker, "whoami", Args::new(), None).unwrap();
    }
    let bump = SkFunction::builder("bump").build().unwrap();
    (worker, bump, args, key)
}

/// What submitted call `pending` returned (a `u64`).
fn submitted_result(pending: sk_process::PendingCall) -> u64 {
    pending
        .wait(Some(Duration::from_secs(20)))
        .unwrap()
        .take::<u64>()
        .unwrap()
}

#[test]
fn storage_used_by_a_submitted_call_is_served_while_nobody_waits_for_it() {
    guarded(|| {
        let (worker, bump, args, key) = after_three_calls("w-submitted");
        let pending = worker.submit(&bump, &args).unwrap();
        // The call needs the parent for each update; its handle is not
        // waited on until they are all done.
        assert!(storage_reaches(&key, 3));
        assert_eq!(submitted_result(pending), 3);
    })
}

#[test]
fn a_second_submitted_call_is_served_after_the_hub_read_the_first() {
    guarded(|| {
        let (worker, bump, args, key) = after_three_calls("w-resubmitted");
        let first = worker.submit(&bump, &args).unwrap();
        assert!(storage_reaches(&key, 3));
        // Nobody waits on it: its end is read by the hub, whose one-shot
        // watch of the socket is then used up. The pause lets that happen
        // (it makes the case, not the pass).
        thread::sleep(Duration::from_millis(500));
        let second = worker.submit(&bump, &args).unwrap();
        // The second call's updates go through the parent too: the socket
        // must be watched again for them.
        assert!(storage_reaches(&key, 6), "exit: {:?}", worker.exit());
        assert_eq!(submitted_result(first), 3);
        assert_eq!(submitted_result(second), 6);
    })
}
