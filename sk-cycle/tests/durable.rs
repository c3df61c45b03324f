//! Journaled runs, in one process: what is recorded, what a resumed run
//! replays instead of running, and what the journal refuses. Runs killed
//! from outside are in `kill_trials.rs`.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sk_core::{RetryPolicy, SkFunction};
use sk_cycle::{
    Cycle, CycleBuilder, CyclePart, Durability, ErrorMode, JournalError, PartState, Run, RunError,
    StepError, Store,
};
use sk_journal::Journal;
use sk_testkit::guarded;

sk_process::worker_test!();

fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.journal");
    (dir, path)
}

/// A part that counts its runs in `runs` and outputs `value`.
fn counted(name: &str, runs: &Arc<AtomicU64>, value: u64) -> CyclePart {
    let runs = Arc::clone(runs);
    CyclePart::new(name.to_owned(), move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        value
    })
}

/// The journal's source error of a run's error, if it is one.
fn journal_error(error: &RunError) -> &JournalError {
    match error {
        RunError::Journal { source, .. } => source,
        other => panic!("expected a journal error, got {other:?}"),
    }
}

/// The records of `run` in the journal at `path` (no run holds it).
fn records(path: &Path, run: &str) -> Vec<sk_journal::PartRecord> {
    Journal::open(path, Durability::default())
        .unwrap()
        .records(run)
        .unwrap()
}

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

#[test]
fn resuming_with_another_plan_names_the_first_part_that_differs() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let build = |second: &str, mode: ErrorMode| {
            let mut b = CycleBuilder::new("drift");
            b.add(counted("first", &runs, 1), 1).unwrap();
            b.add(counted(second, &runs, 2).error_mode(mode), 2)
                .unwrap();
            b.build().unwrap()
        };
        build("second", ErrorMode::CleanFail)
            .run(Run::times(1).journal(&path))
            .unwrap();
        for (name, mode, named) in [
            ("renamed", ErrorMode::CleanFail, "renamed"),
            ("second", ErrorMode::Skip, "second"),
        ] {
            let err = build(name, mode)
                .run(Run::times(2).journal(&path))
                .expect_err("a changed plan resumed");
            match journal_error(&err) {
                JournalError::PlanDrift { what, run, .. } => {
                    assert_eq!(run, "drift");
                    assert!(what.contains(named), "{what}");
                }
                other => panic!("expected a plan drift, got {other:?}"),
            }
            let text = sk_core::error_chain(&err);
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "nothing of a drifted plan ran"
        );
        // Under another run id the new plan is a new run.
        build("renamed", ErrorMode::CleanFail)
            .run(Run::times(1).journal(&path).run_id("drift-2"))
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_part_whose_output_cannot_be_recorded_is_refused_unless_recomputed() {
    guarded(|| {
        let (_dir, path) = journal_path();
        struct Handle;
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(CyclePart::local("socket", |_| Handle), 2).unwrap();
        let err = b
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .expect_err("an unrecordable part in a journaled run");
        match &err {
            RunError::Unrecordable { part, coord, .. } => {
                assert_eq!(part, "socket");
                assert_eq!(coord.to_string(), "2-1");
            }
            other => panic!("expected Unrecordable, got {other:?}"),
        }
        // Not journaled, the same cycle runs.
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(CyclePart::local("socket", |_| Handle), 2).unwrap();
        assert!(!b.build().unwrap().run(Run::once()).unwrap().is_error());

        let computed = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&computed);
        let mut b = CycleBuilder::new("local");
        b.add(CyclePart::new("fine", |_| 1u8), 1).unwrap();
        b.add(
            CyclePart::local("socket", move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                Handle
            })
            .recompute_on_resume(),
            2,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(2).journal(&path))
            .unwrap();
        assert!(!report.is_error());
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        let kept = records(&path, "local");
        assert!(kept.iter().all(|r| r.part == "fine"), "{kept:?}");
    });
}

#[test]
fn a_file_that_is_not_a_good_journal_is_refused_and_left_as_it_was() {
    guarded(|| {
        let (dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let cycle = {
            let mut b = CycleBuilder::new("refused");
            b.add(counted("a", &runs, 1), 1).unwrap();
            b.build().unwrap()
        };
        // Someone else's file.
        let foreign = dir.path().join("notes.txt");
        std::fs::write(&foreign, b"these are my notes, not a journal\n".repeat(200)).unwrap();
        let before = std::fs::read(&foreign).unwrap();
        let err = cycle
            .run(Run::once().journal(&foreign))
            .expect_err("a text file as a journal");
        assert!(
            matches!(journal_error(&err), JournalError::Foreign { .. }),
            "{err:?}"
        );
        assert!(sk_core::error_chain(&err).contains("notes.txt"));
        assert_eq!(
            std::fs::read(&foreign).unwrap(),
            before,
            "the file was changed"
        );

        // Another program's SQLite database.
        let other = dir.path().join("other.db");
        rusqlite::Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
        let before = std::fs::read(&other).unwrap();
        let err = cycle
            .run(Run::once().journal(&other))
            .expect_err("another program's database as a journal");
        assert!(
            matches!(journal_error(&err), JournalError::Foreign { .. }),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&other).unwrap(), before);

        // A journal cut short.
        cycle.run(Run::times(50).journal(&path)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        assert!(whole.len() > 4096, "the journal is {} bytes", whole.len());
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let cut = std::fs::read(&path).unwrap();
        match cycle.run(Run::times(60).journal(&path)) {
            Err(err) => {
                assert!(
                    matches!(journal_error(&err), JournalError::Corrupt { .. }),
                    "{err:?}"
                );
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    cut,
                    "the cut journal was changed"
                );
            }
            Ok(report) => panic!("a cut journal was run over: {report:?}"),
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            50,
            "a part ran over a bad journal"
        );
    });
}

#[test]
fn a_journal_held_by_a_live_run_refuses_a_second_one() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let (entered_tx, entered) = crossbeam::channel::bounded::<()>(1);
        let (release, released) = crossbeam::channel::bounded::<()>(1);
        let mut b = CycleBuilder::new("held");
        b.add(
            CyclePart::new("wait", move |_| {
                let _ = entered_tx.send(());
                let _ = released.recv_timeout(Duration::from_secs(30));
                1u8
            }),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let handle = cycle.spawn(Run::once().journal(&path)).unwrap();
        entered.recv_timeout(Duration::from_secs(30)).unwrap();

        let mut other = CycleBuilder::new("held-too");
        other.add(CyclePart::new("x", |_| 1u8), 1).unwrap();
        let err = other
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .expect_err("a second run on a live journal");
        assert!(
            matches!(journal_error(&err), JournalError::Busy { .. }),
            "{err:?}"
        );

        release.send(()).unwrap();
        let report = handle.join().unwrap();
        assert!(!report.is_error());
        // Free again once the first run has ended.
        let mut again = CycleBuilder::new("held-too");
        again.add(CyclePart::new("x", |_| 1u8), 1).unwrap();
        again
            .build()
            .unwrap()
            .run(Run::once().journal(&path))
            .unwrap();
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

/// An instant-fail part that fails while `fail` is set, once `go` says
/// so: it stops the iteration with the other parts' ends recorded.
fn stopper(fail: &Arc<AtomicBool>, go: impl Fn() -> bool + Send + Sync + 'static) -> CyclePart {
    let fail = Arc::clone(fail);
    CyclePart::fallible("stopper", move |_| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !go() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        if fail.load(Ordering::SeqCst) {
            return Err::<u8, sk_core::BoxError>("stopped here".into());
        }
        Ok(0)
    })
    .error_mode(ErrorMode::InstantFail)
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
fn what_came_after_a_part_that_runs_again_runs_again_too() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fail = Arc::new(AtomicBool::new(true));
        let a_fail = Arc::clone(&fail);
        let a_done = Arc::new(AtomicBool::new(false));
        let (a_mark, b_mark) = (Arc::clone(&a_done), Arc::clone(&a_done));
        let b_ran = Arc::new(AtomicBool::new(false));
        let b_seen = Arc::clone(&b_ran);
        let mut b = CycleBuilder::new("propagate");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split(
            [
                CyclePart::fallible("a", move |_| {
                    a_mark.store(true, Ordering::SeqCst);
                    if a_fail.load(Ordering::SeqCst) {
                        return Err::<u64, sk_core::BoxError>("a fails".into());
                    }
                    Ok(10)
                })
                .error_mode(ErrorMode::Propagate),
                stopper(&fail, move || b_seen.load(Ordering::SeqCst)),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::new("b", move |ctx| {
                b_ran.store(true, Ordering::SeqCst);
                match ctx.input_as::<u64>() {
                    Ok(n) => format!("saw {n}"),
                    Err(_) => "saw an error".to_owned(),
                }
            }),
            (4, 1),
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let first = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert!(first.is_error());
        assert!(b_mark.load(Ordering::SeqCst));
        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert_eq!(
            report.last().unwrap().output_get::<String>("b").unwrap(),
            "saw 10",
            "b was replayed on a's stale error"
        );
    });
}

#[test]
fn a_once_part_runs_when_the_failure_above_it_is_run_again() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fail = Arc::new(AtomicBool::new(true));
        let a_fail = Arc::clone(&fail);
        let a_done = Arc::new(AtomicBool::new(false));
        let a_mark = Arc::clone(&a_done);
        let charges = Arc::new(AtomicU64::new(0));
        let charged = Arc::clone(&charges);
        let mut b = CycleBuilder::new("once-below");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split(
            [
                CyclePart::fallible("a", move |_| {
                    a_mark.store(true, Ordering::SeqCst);
                    if a_fail.load(Ordering::SeqCst) {
                        return Err::<u8, sk_core::BoxError>("a fails".into());
                    }
                    Ok(1)
                }),
                stopper(&fail, move || a_done.load(Ordering::SeqCst)),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::new("charge", move |_| {
                charged.fetch_add(1, Ordering::SeqCst);
                2u8
            })
            .once(),
            (4, 1),
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let _ = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert_eq!(charges.load(Ordering::SeqCst), 0);
        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert_eq!(
            report.last().unwrap().state_of("charge"),
            Some(PartState::Succeeded)
        );
        assert_eq!(
            charges.load(Ordering::SeqCst),
            1,
            "charged once, after a ran again"
        );
    });
}

#[test]
fn a_once_part_that_ended_while_an_instant_fail_stopped_the_run_is_replayed() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fail = Arc::new(AtomicBool::new(true));
        let started = Arc::new(AtomicBool::new(false));
        let (mark, seen) = (Arc::clone(&started), Arc::clone(&started));
        let stopped = Arc::new(AtomicBool::new(false));
        let (stop_mark, stop_seen) = (Arc::clone(&stopped), Arc::clone(&stopped));
        let charges = Arc::new(AtomicU64::new(0));
        let charged = Arc::clone(&charges);
        let stop_fail = Arc::clone(&fail);
        let mut b = CycleBuilder::new("once-abort");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split(
            [
                CyclePart::new("charge", move |_| {
                    mark.store(true, Ordering::SeqCst);
                    // Ends only after the stopper has failed the run.
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    while !stop_seen.load(Ordering::SeqCst) && std::time::Instant::now() < deadline
                    {
                        std::thread::yield_now();
                    }
                    charged.fetch_add(1, Ordering::SeqCst);
                    3u8
                })
                .once(),
                CyclePart::fallible("stopper", move |_| {
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    while !seen.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                    let failing = stop_fail.load(Ordering::SeqCst);
                    stop_mark.store(true, Ordering::SeqCst);
                    if failing {
                        return Err::<u8, sk_core::BoxError>("stopped here".into());
                    }
                    Ok(0)
                })
                .error_mode(ErrorMode::InstantFail),
            ],
            2,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let first = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert!(first.is_error());
        assert_eq!(charges.load(Ordering::SeqCst), 1);
        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(1).journal(&path)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(
            last.state_of("charge"),
            Some(PartState::Succeeded),
            "{:?}",
            last.error_of("charge")
        );
        assert_eq!(charges.load(Ordering::SeqCst), 1, "charged twice");
        assert_eq!(report.resumed().unwrap().unknown, 0);
    });
}

#[test]
fn a_journal_removed_under_a_live_run_fails_the_run() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let doomed = path.clone();
        let n = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("removed-file");
        b.add(
            CyclePart::new("a", move |_| {
                if n.fetch_add(1, Ordering::SeqCst) == 2 {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut file = doomed.as_os_str().to_owned();
                        file.push(suffix);
                        let _ = std::fs::remove_file(&file);
                    }
                }
                1u8
            }),
            1,
        )
        .unwrap();
        let err = b
            .build()
            .unwrap()
            .run(Run::times(6).journal(&path))
            .expect_err("the run went on without its journal");
        assert!(
            matches!(journal_error(&err), JournalError::Stopped { .. }),
            "{err:?}"
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

#[test]
fn a_journal_one_byte_short_is_refused() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let runs = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("short");
        b.add(counted("a", &runs, 1), 1).unwrap();
        let cycle = b.build().unwrap();
        cycle.run(Run::times(20).journal(&path)).unwrap();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        let err = cycle
            .run(Run::times(30).journal(&path))
            .expect_err("a journal one byte short was run over");
        assert!(
            matches!(journal_error(&err), JournalError::Corrupt { .. }),
            "{err:?}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 20);
    });
}

/// A once part not taken below a failure that runs again did not run:
/// it is not replayed as not taken.
#[test]
fn a_once_part_not_taken_below_a_part_that_runs_again_is_decided_again() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fail = Arc::new(AtomicBool::new(true));
        let a_fail = Arc::clone(&fail);
        let recorded = Arc::new(AtomicBool::new(false));
        let (rec_mark, rec_seen) = (Arc::clone(&recorded), Arc::clone(&recorded));
        let charges = Arc::new(AtomicU64::new(0));
        let charged = Arc::clone(&charges);
        let mut b = CycleBuilder::new("once-nottaken");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split(
            [
                CyclePart::fallible("a", move |_| {
                    if a_fail.load(Ordering::SeqCst) {
                        return Err::<u64, sk_core::BoxError>("a fails".into());
                    }
                    Ok(10)
                })
                .error_mode(ErrorMode::Propagate),
                stopper(&fail, move || rec_seen.load(Ordering::SeqCst)),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::new("charge", move |_| {
                charged.fetch_add(1, Ordering::SeqCst);
                2u8
            })
            .condition(|ctx| ctx.input_as::<u64>().is_ok())
            .once(),
            (4, 1),
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let first = cycle
            .run(Run::times(1).journal(&path).on_recorded(move |r| {
                if &*r.part == "charge" {
                    rec_mark.store(true, Ordering::SeqCst);
                }
            }))
            .unwrap();
        assert!(first.is_error());
        assert_eq!(
            first.last().unwrap().state_of("charge"),
            Some(PartState::NotTaken)
        );
        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert_eq!(
            report.last().unwrap().state_of("charge"),
            Some(PartState::Succeeded),
            "once part that never ran replayed NotTaken after a ran again (charges={})",
            charges.load(Ordering::SeqCst)
        );
    });
}

static FAIL_ENCODE: AtomicBool = AtomicBool::new(false);

#[derive(Clone, serde::Deserialize)]
struct Flaky(u64);
impl serde::Serialize for Flaky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if FAIL_ENCODE.load(Ordering::SeqCst) {
            return Err(serde::ser::Error::custom("not now"));
        }
        self.0.serialize(s)
    }
}

/// A part whose output could not be encoded is not recorded and runs
/// again: so does its dependent.
#[test]
fn after_a_part_whose_output_was_not_recorded_its_dependents_run_again() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let fail = Arc::new(AtomicBool::new(true));
        let recorded = Arc::new(AtomicBool::new(false));
        let (rec_mark, rec_seen) = (Arc::clone(&recorded), Arc::clone(&recorded));
        let n = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("unencodable");
        b.add(CyclePart::new("root", |_| 1u8), 1).unwrap();
        b.split(
            [
                CyclePart::new("p", move |_| Flaky(n.fetch_add(1, Ordering::SeqCst) + 1)),
                stopper(&fail, move || rec_seen.load(Ordering::SeqCst)),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::new("s", |ctx| match ctx.input_as::<Flaky>() {
                Ok(f) => format!("saw {}", f.0),
                Err(e) => format!("err {e}"),
            }),
            (4, 1),
        )
        .unwrap();
        let cycle = b.build().unwrap();
        FAIL_ENCODE.store(true, Ordering::SeqCst);
        let first = cycle
            .run(Run::times(1).journal(&path).on_recorded(move |r| {
                if &*r.part == "s" {
                    rec_mark.store(true, Ordering::SeqCst);
                }
            }))
            .unwrap();
        assert!(first.is_error());
        FAIL_ENCODE.store(false, Ordering::SeqCst);
        fail.store(false, Ordering::SeqCst);
        let report = cycle.run(Run::times(1).journal(&path)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(
            last.output_get::<String>("s").unwrap(),
            "saw 2",
            "p ran again (resumed: {:?}) but s was replayed on p's first output",
            report.resumed()
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
fn a_once_part_that_stops_every_start_runs_again_when_the_caller_says_so() {
    guarded(|| {
        let (_dir, path) = journal_path();
        let works = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let (ok, called) = (Arc::clone(&works), Arc::clone(&calls));
        let mut b = CycleBuilder::new("once-stuck");
        b.add(
            CyclePart::fallible("charge", move |_| {
                called.fetch_add(1, Ordering::SeqCst);
                if ok.load(Ordering::SeqCst) {
                    Ok(1u8)
                } else {
                    Err(sk_core::BoxError::from("the bank said no"))
                }
            })
            .once()
            .error_mode(ErrorMode::InstantFail),
            1,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let first = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert!(first.is_error());
        // Its failure is replayed: every start stops there, without a call.
        works.store(true, Ordering::SeqCst);
        let again = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert!(again.is_error());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A name that is not a once part is refused.
        let err = cycle
            .run(Run::times(1).journal(&path).rerun_once(["nope"]))
            .expect_err("an unknown part to rerun");
        assert!(matches!(err, RunError::NotOnce { .. }), "{err:?}");
        // Checked: the charge did not happen. It runs again, once.
        let report = cycle
            .run(Run::times(1).journal(&path).rerun_once(["charge"]))
            .unwrap();
        assert!(!report.is_error(), "{report:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let done = cycle.run(Run::times(1).journal(&path)).unwrap();
        assert_eq!(done.iterations(), 0, "the iteration is done");
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
