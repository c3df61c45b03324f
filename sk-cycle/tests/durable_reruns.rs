//! Journaled runs: parts that run again after a failure, and what comes
//! after them (`once` parts, outputs that were not recorded).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sk_cycle::{CycleBuilder, CyclePart, ErrorMode, PartState, Run, RunError};
use sk_testkit::guarded;

use common::journal::journal_path;

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
