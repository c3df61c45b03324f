//! Faults from outside and from lying peers: workers killed while idle,
//! while starting and mid-call, frozen workers, frames that stop midway,
//! and a program that forgets `init()`. Each must end in a typed error or
//! in work done on a live worker — never a hang, never work lost.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sk_core::BoxError;
use sk_core::{Args, SkFunction};
use sk_process::{
    Backend, ChildSpec, ItemError, ManagerEvent, Pool, ProcessConfig, ProcessContext,
    ProcessManager, RestartStrategy, SkProcess, Worker, WorkerError,
};
use sk_reg::GlobalStorage;
use sk_testkit::{KillStorm, hang_guard, kill, wait_dead, worker_children};

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn whoami() -> u32 {
    std::process::id()
}

/// Writes a frame header promising 1000 bytes, three of them, and then
/// goes on living (heartbeats and all) without ever finishing the frame.
#[sk_core::function(crate = ::sk_core)]
fn lie_about_a_frame() -> u32 {
    let mut lie = 1000u32.to_le_bytes().to_vec();
    lie.extend([1, 2, 3]);
    sk_process::__private::__write_raw_to_parent(&lie).expect("a process worker");
    thread::sleep(Duration::from_secs(60));
    0
}

/// Stops its own process (SIGSTOP): frozen, heartbeat thread included.
#[sk_core::function(crate = ::sk_core)]
fn freeze() -> u32 {
    // SAFETY: raise has no memory-safety preconditions.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
    0
}

/// Counts its runs per `key` in global storage, works `ms`, and returns
/// `x * 3`.
#[sk_core::function(crate = ::sk_core)]
fn counted(key: String, x: u64, ms: u64) -> u64 {
    GlobalStorage::global()
        .update(&key, |n: Option<u64>| n.unwrap_or(0) + 1)
        .expect("storage works");
    thread::sleep(Duration::from_millis(ms));
    x * 3
}

fn process_only() -> bool {
    // These faults are about processes: killing a thread worker from
    // outside would kill the test itself.
    Backend::from_env() == Backend::Process
}

fn handle(name: &str) -> SkFunction {
    SkFunction::builder(name).build().unwrap()
}

#[test]
fn a_worker_lying_about_a_frame_length_fails_the_call_instead_of_hanging() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(60), || {
        // Sent before the worker is ready, read by the caller itself: no
        // call timeout, so only the stall limit can end it.
        let worker = Worker::start("liar", Backend::Process).unwrap();
        let err = worker
            .call(&handle("lie_about_a_frame"), &Args::new(), None)
            .unwrap_err();
        // Its heartbeats only feed the frame it never finishes: no whole
        // frame comes, and the silence limit ends it.
        match &err {
            WorkerError::Died { status, .. } => {
                assert!(status.contains("no heartbeat for 10s"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(wait_dead(worker.pid(), Duration::from_secs(10)));
    });
}

#[test]
fn a_worker_frozen_in_its_first_queued_call_is_found_out() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(60), || {
        let worker = Worker::start("frozen", Backend::Process).unwrap();
        let err = worker
            .call(&handle("freeze"), &Args::new(), None)
            .unwrap_err();
        assert!(
            matches!(&err, WorkerError::Died { status, .. } if status.contains("no heartbeat")),
            "{err:?}"
        );
        assert!(wait_dead(worker.pid(), Duration::from_secs(10)));
    });
}

#[test]
fn a_frame_to_a_worker_that_stops_midway_makes_it_exit() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(60), || {
        let worker = Worker::spawn("lied-to", Backend::Process).unwrap();
        let mut lie = 100_000u32.to_le_bytes().to_vec();
        lie.extend([1, 2, 3]);
        worker.__send_raw(&lie).unwrap();
        // The call's bytes only add to the broken frame; the worker must
        // give up on it rather than read forever, and the call, which it
        // never started, says so.
        let err = worker
            .call(&handle("whoami"), &Args::new(), None)
            .unwrap_err();
        assert!(
            matches!(&err, WorkerError::NotDelivered { status, .. } if status == "exited with status 3"),
            "{err:?}"
        );
    });
}

#[test]
fn a_call_to_a_worker_killed_while_idle_never_counts_as_run() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        for round in 0..10 {
            let worker = Worker::spawn(format!("idle-victim-{round}"), Backend::Process).unwrap();
            kill(worker.pid());
            assert!(wait_dead(worker.pid(), Duration::from_secs(10)));
            let err = worker
                .call(&handle("whoami"), &Args::new(), None)
                .unwrap_err();
            assert!(err.never_ran(), "round {round}: {err:?}");
            assert!(err.is_retryable() || matches!(err, WorkerError::Closed { .. }));
        }
    });
}

/// The path of an example of this crate (cargo builds them for `cargo
/// test`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn forgetting_init_is_refused_after_one_generation() {
    hang_guard(Duration::from_secs(60), || {
        let exe = example("forgot_init");
        let out = Command::new(&exe)
            .env_remove("SK_SPAWN_BACKEND")
            .output()
            .expect("the example is built by cargo test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The parent, and one accidental worker generation, ran `main`.
        let mains = stdout.matches("main started in pid").count();
        assert_eq!(mains, 2, "{stdout}\n{stderr}");
        assert!(
            stdout.contains("(started as a worker: true)"),
            "{stdout}\n{stderr}"
        );
        // Refused, naming the fix (the worker may be killed by its parent
        // before it prints its own refusal).
        let refusals: Vec<_> = stdout.lines().filter(|l| l.contains("refused:")).collect();
        assert!(!refusals.is_empty(), "{stdout}\n{stderr}");
        for line in refusals {
            assert!(line.contains("suitkaise::init()"), "{line}");
            assert!(line.contains("worker_test!()"), "{line}");
        }
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        // Nothing of it is left running.
        let exe = std::fs::canonicalize(&exe).unwrap();
        let left: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid: &u32| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
            })
            .collect();
        assert!(left.is_empty(), "still running: {left:?}");
    });
}

#[test]
fn a_pool_whose_replacements_are_killed_while_starting_still_runs_every_item() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        let pool = Pool::builder()
            .name("storm-pool")
            .workers(1)
            .backend(Backend::Process)
            .build()
            .unwrap();
        let key = "storm-pool-runs";
        let f = SkFunction::builder("counted")
            .arg("key", key.to_owned())
            .arg("ms", 1u64)
            .build()
            .unwrap();
        // Every worker of the pool, the replacements while they start
        // included, is killed for the first 300 ms.
        let storm = KillStorm::start(
            "storm-pool",
            Duration::from_millis(1),
            Duration::from_millis(3),
        );
        let killer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            storm.stop()
        });
        let results = pool.map_results::<u64, u64>(&f, "x", 0..8u64);
        let kills = killer.join().unwrap();
        assert!(kills > 0, "the storm killed nothing");
        let runs: u64 = GlobalStorage::global().get(key).unwrap().unwrap_or(0);
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(value) => assert_eq!(value, i as u64 * 3),
                // Allowed only for an item that ran on workers that died
                // under it, the death limit's worth.
                Err(ItemError::WorkerDied { attempts, .. }) => assert!(attempts >= 3),
                Err(other) => panic!("item {i} failed without dying: {other:?} ({kills} kills)"),
            }
        }
        assert!(runs >= 8, "every item ran ({runs} runs)");
        pool.close();
    });
}

#[test]
fn a_manager_call_during_a_restart_waits_for_the_new_worker() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        let manager = ProcessManager::builder("restart-calls")
            .strategy(RestartStrategy::OneForAll)
            .intensity(1000, Duration::from_secs(60))
            .backend(Backend::Process)
            .build()
            .unwrap();
        let a = manager.spawn(ChildSpec::new("rc-a")).unwrap();
        let b = manager.spawn(ChildSpec::new("rc-b")).unwrap();
        for round in 0..10 {
            let old = manager.worker(a).unwrap().pid();
            kill(old);
            assert!(wait_dead(old, Duration::from_secs(10)));
            // The child is dead or being restarted (both, under
            // one_for_all): the calls wait for the new workers.
            for child in [a, b] {
                let pid: u32 = manager
                    .call(
                        child,
                        &handle("whoami"),
                        &Args::new(),
                        Some(Duration::from_secs(30)),
                    )
                    .unwrap_or_else(|e| panic!("round {round}: {e:?}"))
                    .take()
                    .unwrap();
                assert_ne!(pid, old, "round {round}");
            }
        }
        manager.shutdown(Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn every_restart_of_a_child_killed_while_starting_is_reported() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        let manager = ProcessManager::builder("restart-storm")
            .strategy(RestartStrategy::OneForOne)
            .intensity(10_000, Duration::from_secs(60))
            .backend(Backend::Process)
            .build()
            .unwrap();
        let events = manager.events();
        let child = manager.spawn(ChildSpec::new("storm-child")).unwrap();
        let storm = KillStorm::start(
            "storm-child",
            Duration::from_millis(1),
            Duration::from_millis(4),
        );
        thread::sleep(Duration::from_millis(400));
        let kills = storm.stop();
        assert!(kills > 0);
        // Settled: the child answers from a live worker.
        let pid: u32 = manager
            .call(
                child,
                &handle("whoami"),
                &Args::new(),
                Some(Duration::from_secs(30)),
            )
            .unwrap()
            .take()
            .unwrap();
        let restarts = manager.children()[0].restarts;
        manager.shutdown(Duration::from_secs(5)).unwrap();
        let mut counts = BTreeMap::new();
        let mut last_restarted = 0;
        for event in events.try_iter() {
            let kind = match event {
                ManagerEvent::Exited { .. } => "exited",
                ManagerEvent::Restarted { restarts, .. } => {
                    last_restarted = restarts;
                    "restarted"
                }
                _ => "other",
            };
            *counts.entry(kind).or_insert(0u32) += 1;
        }
        let exited = counts.get("exited").copied().unwrap_or(0);
        let restarted = counts.get("restarted").copied().unwrap_or(0);
        assert!(exited > 0, "{counts:?} ({kills} kills)");
        assert_eq!(exited, restarted, "every exit was restarted: {counts:?}");
        assert_eq!(
            restarted, restarts,
            "every restart was reported: {counts:?}"
        );
        assert_eq!(last_restarted, restarts);
        assert!(!worker_children("storm-child").contains(&pid));
    });
}

/// Runs until stopped, with many lives; answers with the life it is on.
#[derive(Serialize, Deserialize)]
struct Lasting;

impl SkProcess for Lasting {
    type Output = u32;

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new().until_stopped().lives(100_000)
    }
    fn run(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        thread::sleep(Duration::from_millis(2));
        Ok(())
    }
    fn result(&mut self, ctx: &ProcessContext) -> Result<u32, BoxError> {
        Ok(ctx.life())
    }
}
sk_process::register_process!(Lasting);

#[test]
fn each_crash_of_an_skprocess_costs_exactly_one_life_whenever_it_comes() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        let handle = sk_process::start(Lasting, Backend::Process).unwrap();
        // Workers are killed while they run a life and while the next
        // one starts.
        let storm = KillStorm::start(
            "Lasting#",
            Duration::from_millis(1),
            Duration::from_millis(5),
        );
        thread::sleep(Duration::from_millis(500));
        let crashes = storm.stop();
        assert!(crashes > 0);
        if !handle.is_running() {
            let end = handle.join(Some(Duration::from_secs(5)));
            panic!("ended with lives left, after {crashes} crashes: {end:?}");
        }
        handle.stop();
        let life = handle
            .join(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e} after {crashes} crashes"));
        assert_eq!(life as usize, crashes + 1, "one life per crash");
    });
}
