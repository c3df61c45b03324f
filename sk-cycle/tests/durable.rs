//! Journaled runs, in one process: what is recorded and what a resumed
//! run replays instead of running. What the journal refuses is in
//! `durable_refusals.rs`, parts run again after a failure in
//! `durable_reruns.rs`, runs killed from outside in `kill_trials.rs`.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sk_core::{RetryPolicy, SkFunction};
use sk_cycle::{
    Cycle, CycleBuilder, CyclePart, Durability, ErrorMode, PartState, Run, StepError, Store,
};
use sk_testkit::guarded;

use common::journal::{counted, journal_path, records};

sk_process::worker_test!();

#[test]
fn a_finished_run_started_again_does_nothing_and_times_counts_what_was_done() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("again");
        b.add(counted("a", &runs, 1), 1).unwrap();
        b.add(counted("b", &runs, 2), 2).unwrap();
        let cycle = b.build().unwrap();
        let recorded = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&recorded);
        let report = cycle
            .run(Run::times(3).journal(&path).on_recorded(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        assert!(report.resumed().is_none(), "a fresh run is not resumed");
        assert_eq!(report.iterations(), 3);
        assert_eq!(runs.load(Ordering::SeqCst), 6);
        assert_eq!(
            recorded.load(Ordering::SeqCst),
            6,
            "one record per part end"
        );

        // Nothing left: nothing runs.
        let report = cycle.run(Run::times(3).journal(&path)).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 6, "a finished run ran again");
        assert_eq!(report.iterations(), 0);
        let resumed = report.resumed().expect("a resumed run says so");
        assert_eq!(resumed.iterations_done, vec![3]);
        assert_eq!(resumed.iteration(), 4);
        assert_eq!(resumed.replayed, 0);

        // times(5) counts the 3 done: two more run, numbered 4 and 5.
        let report = cycle.run(Run::times(5).journal(&path)).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 10);
        assert_eq!(report.iterations(), 2);
        assert_eq!(report.last().unwrap().iteration(), 5);
        let kept = records(&path, "again");
        assert_eq!(kept.len(), 10, "(iteration, part) once each: {kept:?}");
        assert!(kept.iter().all(|r| r.state == "succeeded"));
        let b5 = kept
            .iter()
            .find(|r| r.iteration == 5 && r.part == "b")
            .unwrap();
        assert_eq!(
            sk_core::Value::from_external(b5.output.clone().unwrap())
                .unwrap()
                .get::<u64>(),
            Some(&2),
            "the output is recorded in the external format"
        );
    });
}

/// A cycle whose part `b` fails with an instant fail while `fail` is set:
/// the iteration stops, `a`'s end is recorded, the iteration is not done.
fn interrupted_cycle(
    runs: &Arc<AtomicU64>,
    fail: &Arc<AtomicBool>,
    b_runs: &Arc<AtomicU64>,
) -> Cycle {
    let mut b = CycleBuilder::new("interrupted");
    b.add(counted("a", runs, 21), 1).unwrap();
    let fail = Arc::clone(fail);
    let b_runs = Arc::clone(b_runs);
    b.add(
        CyclePart::fallible("b", move |ctx| {
            b_runs.fetch_add(1, Ordering::SeqCst);
            if fail.load(Ordering::SeqCst) {
                return Err("not yet".into());
            }
            let a = *ctx
                .input_as::<u64>()
                .map_err(|e| Box::new(e) as sk_core::BoxError)?;
            Ok::<u64, sk_core::BoxError>(a * 2)
        })
        .error_mode(ErrorMode::InstantFail),
        2,
    )
    .unwrap();
    b.build().unwrap()
}

#[test]
fn a_resumed_iteration_replays_recorded_ends_and_runs_the_rest() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(true));
        let b_runs = Arc::new(AtomicU64::new(0));
        let cycle = interrupted_cycle(&runs, &fail, &b_runs);
        let first = cycle.run(Run::times(2).journal(&path));
        assert!(
            first.as_ref().is_ok_and(|r| r.is_error()),
            "the instant fail stops the run: {first:?}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(2).journal(&path)).unwrap();
        assert!(!report.is_error(), "{report:?}");
        let resumed = report.resumed().unwrap();
        assert_eq!(resumed.iteration(), 1, "iteration 1 had not ended");
        assert_eq!(resumed.replayed, 1, "a's recorded end");
        // Iteration 1: `a` replayed, `b` (which had failed) run again on
        // a's recorded output; iteration 2 runs both.
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a ran again in iteration 1");
        assert_eq!(b_runs.load(Ordering::SeqCst), 3);
        assert_eq!(report.iterations(), 2);
        assert_eq!(report.last().unwrap().output_get::<u64>("b").unwrap(), &42);
        let kept = records(&path, "interrupted");
        let b1 = kept
            .iter()
            .find(|r| r.iteration == 1 && r.part == "b")
            .unwrap();
        assert_eq!(b1.state, "succeeded", "the failure's record is replaced");
    });
}

/// A value that stays in its process.
struct NotSerializable;

#[test]
fn the_store_is_restored_on_resume() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let mut b = CycleBuilder::new("store");
        b.add(
            CyclePart::new("count", |ctx| {
                let n = ctx
                    .store()
                    .update("n", |n: Option<&u64>| n.copied().unwrap_or(0) + 1)
                    .unwrap();
                ctx.store().set_local("handle", NotSerializable);
                n
            }),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        cycle
            .run(Run::times(2).journal(&path).store(Arc::new(Store::new())))
            .unwrap();
        let store = Arc::new(Store::new());
        cycle
            .run(Run::times(4).journal(&path).store(Arc::clone(&store)))
            .unwrap();
        assert_eq!(
            store.get::<u64>("n").unwrap(),
            4,
            "the count went on from 2"
        );
        // Nothing left: the store comes back as recorded, without what
        // was local to the process.
        let store = Arc::new(Store::new());
        cycle
            .run(Run::times(4).journal(&path).store(Arc::clone(&store)))
            .unwrap();
        assert_eq!(store.get::<u64>("n").unwrap(), 4);
        assert!(!store.contains("handle"), "a local value was restored");
    });
}

/// A part that fails its first attempt after recording a step: the
/// retry gets the recorded value back without running the step again.
#[test]
fn a_step_is_recorded_once_and_read_back_by_later_attempts() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let created = Arc::new(AtomicU64::new(0));
        let keys = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let build = || {
            let created = Arc::clone(&created);
            let keys = Arc::clone(&keys);
            let mut b = CycleBuilder::new("steps");
            b.add(
                CyclePart::fallible("submit", move |ctx| {
                    keys.lock().push(ctx.idempotency_key());
                    let job: u64 =
                        ctx.step("create", || created.fetch_add(1, Ordering::SeqCst) + 100)?;
                    if ctx.attempt() == 1 {
                        return Err(sk_core::BoxError::from("the job is not done yet"));
                    }
                    Ok(job)
                })
                .error_mode(ErrorMode::Retry)
                .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3)),
                1,
            )
            .unwrap();
            b.build().unwrap()
        };
        let report = build().run(Run::times(2).journal(&path)).unwrap();
        assert!(!report.is_error(), "{report:?}");
        assert_eq!(created.load(Ordering::SeqCst), 2, "one job per iteration");
        assert_eq!(
            report.last().unwrap().output_get::<u64>("submit").unwrap(),
            &101
        );
        let keys = keys.lock().clone();
        assert_eq!(
            keys,
            [
                "steps/1/submit",
                "steps/1/submit",
                "steps/2/submit",
                "steps/2/submit"
            ],
            "the key is the same on every attempt"
        );

        // Outside a journaled run, a step just runs.
        let report = build().run(Run::once()).unwrap();
        assert_eq!(created.load(Ordering::SeqCst), 4);
        assert!(!report.is_error());
    });
}

#[test]
fn a_step_whose_value_does_not_serialize_fails_the_part_with_a_step_error() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let mut b = CycleBuilder::new("bad-step");
        b.add(
            CyclePart::fallible("submit", |ctx| {
                let job: f64 = ctx.step("create", || 1.5f64)?;
                // The recorded f64 read back as a string is a value error.
                let again: Result<String, StepError> = ctx.step("create", || "x".to_owned());
                match again {
                    Err(StepError::Value { .. }) => Ok(job),
                    other => Err(sk_core::BoxError::from(format!(
                        "expected a value error, got {other:?}"
                    ))),
                }
            }),
            1,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().journal(&path)).unwrap();
        assert_eq!(
            report.last().unwrap().state_of("submit"),
            Some(PartState::Succeeded),
            "{report:?}"
        );
    });
}

#[test]
fn a_continuous_run_keeps_only_its_last_iterations() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("plateau");
        b.add(counted("a", &runs, 1), 1).unwrap();
        b.add(counted("b", &runs, 2), 2).unwrap();
        let cycle = b.build().unwrap();
        cycle
            .run(Run::times(2_000).journal(&path).keep_iterations(10))
            .unwrap();
        let kept = records(&path, "plateau");
        assert_eq!(kept.len(), 20, "10 iterations of 2 parts are kept");
        assert!(kept.iter().all(|r| r.iteration > 1_990), "{kept:?}");
        // Resumed, it knows where it was.
        let report = cycle.run(Run::times(2_001).journal(&path)).unwrap();
        assert_eq!(report.resumed().unwrap().iteration(), 2_001);
        assert_eq!(runs.load(Ordering::SeqCst), 4_002);
    });
}

#[test]
fn power_loss_durability_records_the_same() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("power");
        b.add(counted("a", &runs, 7), 1).unwrap();
        b.build()
            .unwrap()
            .run(
                Run::times(3)
                    .journal(&path)
                    .durability(Durability::PowerLoss),
            )
            .unwrap();
        assert_eq!(records(&path, "power").len(), 3);
    });
}

#[sk_core::function(crate = ::sk_core)]
fn doubled(input: u64) -> u64 {
    input * 2
}

#[test]
fn parts_in_worker_processes_are_recorded_by_the_run() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let mut b = CycleBuilder::new("in-process");
        b.add(CyclePart::new("seed", |ctx| ctx.iteration() * 10), 1)
            .unwrap();
        b.add(
            CyclePart::function("doubled", SkFunction::builder("doubled").build().unwrap())
                .in_process(),
            2,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(3).journal(&path))
            .unwrap();
        assert!(!report.is_error(), "{report:?}");
        let kept = records(&path, "in-process");
        let doubled: Vec<u64> = kept
            .iter()
            .filter(|r| r.part == "doubled")
            .map(|r| {
                *sk_core::Value::from_external(r.output.clone().unwrap())
                    .unwrap()
                    .get::<u64>()
                    .unwrap()
            })
            .collect();
        assert_eq!(doubled, [20, 40, 60]);
    });
}

#[test]
fn store_writes_from_threads_a_part_starts_are_journaled() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let mut b = CycleBuilder::new("threads");
        b.add(
            CyclePart::new("w", |ctx| {
                ctx.store().set("direct", 1u64);
                std::thread::scope(|s| {
                    s.spawn(|| ctx.store().set("from_thread", 2u64));
                });
                0u8
            }),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        cycle
            .run(Run::times(1).journal(&path).store(Arc::new(Store::new())))
            .unwrap();
        let store = Arc::new(Store::new());
        cycle
            .run(Run::times(1).journal(&path).store(Arc::clone(&store)))
            .unwrap();
        assert_eq!(store.get::<u64>("direct").unwrap(), 1);
        assert_eq!(store.get::<u64>("from_thread").unwrap(), 2);
    });
}

#[test]
fn a_removed_store_key_stays_removed_in_a_store_seeded_again() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let mut b = CycleBuilder::new("removed");
        b.add(
            CyclePart::new("a", |ctx| {
                let had = ctx.store().contains("pending");
                ctx.store().remove("pending");
                had
            }),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let seeded = || {
            let store = Store::new();
            store.set("pending", 1u64);
            Arc::new(store)
        };
        let report = cycle
            .run(Run::times(1).journal(&path).store(seeded()))
            .unwrap();
        assert_eq!(
            report.last().unwrap().output_get::<bool>("a").unwrap(),
            &true
        );
        let report = cycle
            .run(Run::times(2).journal(&path).store(seeded()))
            .unwrap();
        assert_eq!(
            report.last().unwrap().output_get::<bool>("a").unwrap(),
            &false,
            "the removal was lost"
        );
    });
}

#[test]
fn a_fast_independent_lane_keeps_only_its_last_iterations() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fast_runs = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&fast_runs);
        let token = sk_core::StopToken::new();
        let stop = token.clone();
        let mut b = CycleBuilder::new("lanes");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split_with(
            [
                // At most once: it records an intent each iteration too.
                CyclePart::new("fast", move |_| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    1u8
                })
                .once(),
                // One long iteration, over while the fast lane does 500.
                CyclePart::new("slow", move |_| {
                    let deadline = std::time::Instant::now() + Duration::from_secs(60);
                    while fast_runs.load(Ordering::SeqCst) < 500
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::yield_now();
                    }
                    stop.stop();
                    1u8
                }),
            ],
            2,
            sk_cycle::Split::new().sync(sk_cycle::SyncMode::Independent),
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(
                Run::continuous()
                    .journal(&path)
                    .keep_iterations(5)
                    .stop_token(token)
                    .threads(3),
            )
            .unwrap();
        let lanes = report.lane_iterations().to_vec();
        assert!(lanes.iter().any(|&n| n >= 500), "{lanes:?}");
        let fast = records(&path, "lanes")
            .into_iter()
            .filter(|r| r.part == "fast")
            .count();
        assert!(fast <= 6, "the fast lane kept {fast} records (keep 5)");
        let intents: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM intents", [], |r| r.get(0))
            .unwrap();
        assert!(
            intents <= 6,
            "the fast lane kept {intents} intents (keep 5)"
        );
    });
}

/// A helper thread's store write racing with sibling parts' records is
/// journaled with its new value, never the old one.
#[test]
fn a_helper_threads_write_racing_records_is_journaled_with_its_value() {
    guarded(|| {
        let mut lost = 0;
        let trials = 200;
        for trial in 0..trials {
            let (_dir, path) = journal_path();
            let go = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicBool::new(false));
            let seeded = || {
                let s = Store::new();
                s.set("k", 0u64);
                Arc::new(s)
            };
            let live = seeded();
            let mut b = CycleBuilder::new("race");
            let (g, d) = (Arc::clone(&go), Arc::clone(&done));
            let helper_store = Arc::clone(&live);
            b.add(
                CyclePart::new("spawner", move |_| {
                    let store = Arc::clone(&helper_store);
                    let (g, d) = (Arc::clone(&g), Arc::clone(&d));
                    std::thread::spawn(move || {
                        g.store(true, Ordering::SeqCst);
                        for _ in 0..(trial % 64) * 16 {
                            std::hint::spin_loop();
                        }
                        store.set("k", 1u64);
                        d.store(true, Ordering::SeqCst);
                    });
                    0u8
                }),
                1,
            )
            .unwrap();
            let parts: Vec<CyclePart> = (0..6)
                .map(|i| {
                    let g = Arc::clone(&go);
                    CyclePart::new(format!("sib{i}"), move |_| {
                        while !g.load(Ordering::SeqCst) {
                            std::hint::spin_loop();
                        }
                        0u8
                    })
                })
                .collect();
            b.split(parts, 2).unwrap();
            let d = Arc::clone(&done);
            b.add(
                CyclePart::new("join", move |_| {
                    while !d.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                    }
                    0u8
                }),
                (4, 1),
            )
            .unwrap();
            let cycle = b.build().unwrap();
            cycle
                .run(
                    Run::times(1)
                        .journal(&path)
                        .store(Arc::clone(&live))
                        .threads(4),
                )
                .unwrap();
            assert_eq!(live.get::<u64>("k").unwrap(), 1);
            let restored = seeded();
            cycle
                .run(Run::times(1).journal(&path).store(Arc::clone(&restored)))
                .unwrap();
            if restored.get::<u64>("k").unwrap() != 1 {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "{lost} of {trials} runs restored the old value");
    });
}

/// Two journaled runs sharing one Store: the first to finish does not stop
/// the other's helper-thread writes being journaled.
#[test]
fn two_journaled_runs_sharing_a_store_both_journal_stray_writes() {
    guarded(|| {
        let (_d1, path_a) = journal_path();
        let (_d2, path_b) = journal_path();
        let shared = Arc::new(Store::new());
        let a_done = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&a_done);
        let b_started = Arc::new(AtomicBool::new(false));
        let b_mark = Arc::clone(&b_started);
        let mut b = CycleBuilder::new("b");
        b.add(
            CyclePart::new("w", move |ctx| {
                b_mark.store(true, Ordering::SeqCst);
                while !seen.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                std::thread::scope(|s| {
                    s.spawn(|| ctx.store().set("from_thread", 2u64));
                });
                0u8
            }),
            1,
        )
        .unwrap();
        let cycle_b = b.build().unwrap();
        let mut a = CycleBuilder::new("a");
        a.add(CyclePart::new("x", |_| 0u8), 1).unwrap();
        let cycle_a = a.build().unwrap();
        let store_b = Arc::clone(&shared);
        let pb = path_b.clone();
        let cb = cycle_b.clone();
        let t =
            std::thread::spawn(move || cb.run(Run::times(1).journal(&pb).store(store_b)).unwrap());
        // Run b is journaling (its part has started) while a runs.
        while !b_started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        cycle_a
            .run(Run::times(1).journal(&path_a).store(Arc::clone(&shared)))
            .unwrap();
        a_done.store(true, Ordering::SeqCst);
        t.join().unwrap();
        assert_eq!(shared.get::<u64>("from_thread").unwrap(), 2);
        let restored = Arc::new(Store::new());
        cycle_b
            .run(Run::times(1).journal(&path_b).store(Arc::clone(&restored)))
            .unwrap();
        assert_eq!(
            restored.get::<u64>("from_thread").ok(),
            Some(2),
            "run b's helper-thread write was not journaled"
        );
    });
}

#[test]
fn a_resumed_run_times_its_own_first_iterations_exactly() {
    guarded(|| {
        let (_dir, path) = journal_path();
        // 450 parts: a run times its first 4096 / 450 = 9 iterations
        // exactly, then samples.
        let mut b = CycleBuilder::new("resumed-stats");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        b.split((1..450).map(|i| CyclePart::new(format!("p{i}"), |_| ())), 2)
            .unwrap();
        let cycle = b.build().unwrap();
        let first = cycle.run(Run::times(10).journal(&path)).unwrap();
        assert_eq!(first.iterations(), 10);
        // Iterations 11 to 18 of the journal, the first 8 of this run.
        let report = cycle.run(Run::times(18).journal(&path)).unwrap();
        assert_eq!(report.iterations(), 8);
        for part in &report.stats().parts {
            assert_eq!(part.timing.count, 8, "{}", part.name);
        }
    });
}
