//! Two parts made ready together: a quick one runs alone before its
//! sibling is offered to the pool's other threads (forking costs more
//! than it takes), and slow ones are forked, so that they run at the same
//! time (see `engine/pace.rs`).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sk_cycle::{Cycle, CycleBuilder, CyclePart, PartState, Run, RunReport};
use sk_testkit::guarded;

/// `a`, then `b` and `c` (made ready together by `a`'s end), then `d`.
fn diamond(b: CyclePart, c: CyclePart) -> Cycle {
    let mut builder = CycleBuilder::new("diamond");
    let a = builder.root(CyclePart::new("a", |_| ())).unwrap();
    let [b, _c] = builder.fork(a, [b, c]).unwrap();
    builder.then(b, CyclePart::new("d", |_| ())).unwrap();
    builder.after("d", "c").unwrap();
    builder.build().unwrap()
}

/// The tests of this file, one at a time: the quick parts of one must
/// not be preempted by the waiting parts of the other.
static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap(),
    )
}

/// Asserts that every part of `report` succeeded in all its `iterations`.
fn all_succeeded(report: &RunReport, iterations: u64, stats: bool) {
    assert_eq!(report.iterations(), iterations);
    let last = report.last().unwrap();
    for part in &report.stats().parts {
        assert_eq!(
            part.count(PartState::Succeeded),
            iterations,
            "stats {stats}: {}: last error {:?}",
            part.name,
            last.error_of(&part.name)
        );
    }
}

/// In a run of quick `b` and `c`: the iterations past the first hundred
/// in which one of them ran while the other waited on its thread's deque
/// (offered to idle threads), and how many iterations those are.
fn offered_while_quick(stats: bool) -> (u64, u64) {
    let offered = Arc::new(AtomicU64::new(0));
    let counted = Arc::new(AtomicU64::new(0));
    let part = |name: &'static str| {
        let (offered, counted) = (Arc::clone(&offered), Arc::clone(&counted));
        CyclePart::new(name, move |ctx| {
            if ctx.iteration() > 100 {
                counted.fetch_add(1, Ordering::Relaxed);
                if rayon_core::current_thread_has_pending_tasks() == Some(true) {
                    offered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let cycle = diamond(part("b"), part("c"));
    let report = cycle
        .run(Run::times(6000).pool(pool(2)).stats(stats))
        .unwrap();
    all_succeeded(&report, 6000, stats);
    (
        offered.load(Ordering::Relaxed),
        counted.load(Ordering::Relaxed) / 2,
    )
}

#[test]
fn a_quick_part_runs_before_its_sibling_is_offered() {
    guarded(|| {
        let _alone = ONE_AT_A_TIME.lock();
        for stats in [false, true] {
            let (offered, iterations) = offered_while_quick(stats);
            assert_eq!(iterations, 5900);
            // Forked, one of the two runs with the other on its deque in
            // every iteration no idle thread stole from. Run ahead,
            // neither does, but for 256 iterations after a timed run
            // that was slow (the first, cold; one preempted).
            assert!(
                offered * 2 < iterations,
                "stats {stats}: a sibling was offered in {offered} of {iterations} iterations"
            );
        }
    });
}

#[test]
fn slow_siblings_run_at_the_same_time() {
    guarded(|| {
        let _alone = ONE_AT_A_TIME.lock();
        for stats in [false, true] {
            // `b` and `c` each wait (up to 10 s) until the other has
            // started in this iteration: only forked do they both end.
            let b_at = Arc::new(AtomicU64::new(0));
            let c_at = Arc::new(AtomicU64::new(0));
            let part = |name: &'static str, mine: &Arc<AtomicU64>, other: &Arc<AtomicU64>| {
                let (mine, other) = (Arc::clone(mine), Arc::clone(other));
                CyclePart::new(name, move |ctx| {
                    let i = ctx.iteration();
                    mine.store(i, Ordering::SeqCst);
                    if common::wait_for(Duration::from_secs(10), || {
                        other.load(Ordering::SeqCst) >= i
                    }) {
                        Ok(())
                    } else {
                        Err(format!(
                            "{name}: its sibling did not start in iteration {i}"
                        ))
                    }
                })
            };
            let cycle = diamond(part("b", &b_at, &c_at), part("c", &c_at, &b_at));
            let report = cycle
                .run(Run::times(40).pool(pool(2)).stats(stats))
                .unwrap();
            all_succeeded(&report, 40, stats);
        }
    });
}

/// `b`, which notes the iteration it started in, and `c`, which sleeps
/// 1 ms in the iterations `sleeps` picks and counts those, and of those
/// the ones it ran ahead in: `b` not started, and not on its thread's
/// deque to be taken by an idle thread (a slow part delaying its
/// sibling). Whether it ran ahead is the engine's choice, whatever the
/// machine's load.
fn slow_c(sleeps: fn(u64) -> bool) -> (Cycle, Arc<[AtomicU64; 2]>) {
    let b_at = Arc::new(AtomicU64::new(0));
    let counts: Arc<[AtomicU64; 2]> = Arc::default();
    let b = {
        let b_at = Arc::clone(&b_at);
        CyclePart::new("b", move |ctx| {
            b_at.store(ctx.iteration(), Ordering::SeqCst)
        })
    };
    let c = {
        let counts = Arc::clone(&counts);
        CyclePart::new("c", move |ctx| {
            let i = ctx.iteration();
            if sleeps(i) {
                let offered = rayon_core::current_thread_has_pending_tasks() == Some(true);
                let ahead = !offered && b_at.load(Ordering::SeqCst) < i;
                counts[0].fetch_add(1, Ordering::Relaxed);
                counts[1].fetch_add(u64::from(ahead), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    (diamond(b, c), counts)
}

#[test]
fn a_quick_part_turned_slow_delays_its_sibling_at_most_ten_times() {
    guarded(|| {
        let _alone = ONE_AT_A_TIME.lock();
        for stats in [false, true] {
            // Quick for 1500 iterations (past the stats' exact ones),
            // then slow in every one.
            let (cycle, counts) = slow_c(|i| i > 1500);
            let report = cycle
                .run(Run::times(1600).pool(pool(2)).stats(stats))
                .unwrap();
            all_succeeded(&report, 1600, stats);
            let [slow, ahead] = [0, 1].map(|k| counts[k].load(Ordering::Relaxed));
            assert_eq!(slow, 100);
            // Quick for long, it was timed in one run ahead in 4 to 10:
            // its first slow runs are run ahead (its pace said quick)
            // until the next timed one, at most the tenth; from then on
            // it is forked.
            assert!(ahead <= 10, "stats {stats}: ahead in {ahead} of {slow}");
        }
    });
}

#[test]
fn a_part_slow_now_and_then_rarely_delays_its_sibling() {
    guarded(|| {
        let _alone = ONE_AT_A_TIME.lock();
        // `c` sleeps in a pseudo-random half of its runs (which comes in
        // short runs of slow and quick ones), and in every other run (a
        // period that timing one run ahead in a fixed number would miss).
        let half = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 2 == 0;
        let every_other = |i: u64| i % 2 == 0;
        for (pattern, sleeps) in [
            ("half", half as fn(u64) -> bool),
            ("every other", every_other),
        ] {
            for stats in [false, true] {
                let (cycle, counts) = slow_c(sleeps);
                let report = cycle
                    .run(Run::times(1200).pool(pool(2)).stats(stats))
                    .unwrap();
                all_succeeded(&report, 1200, stats);
                let [slow, ahead] = [0, 1].map(|k| counts[k].load(Ordering::Relaxed));
                assert!(slow > 450, "{pattern}: c slept in {slow} of 1200");
                // Once in about 256 forks at most: each slow run ahead
                // stops it running ahead for the next 256.
                assert!(
                    ahead * 20 <= slow,
                    "{pattern}, stats {stats}: ahead in {ahead} of {slow}"
                );
            }
        }
    });
}

#[test]
fn a_part_long_quick_then_slow_every_other_run_rarely_delays_its_sibling() {
    guarded(|| {
        let _alone = ONE_AT_A_TIME.lock();
        // Quick for 1500 iterations (long enough for its runs ahead to be
        // timed only now and then), then slow in every other one, on
        // either parity: a fixed number of untimed runs between timed ones
        // could keep every timed run on a quick iteration, and run every
        // slow one ahead.
        let even = |i: u64| i > 1500 && i % 2 == 0;
        let odd = |i: u64| i > 1500 && i % 2 == 1;
        for (parity, sleeps) in [("even", even as fn(u64) -> bool), ("odd", odd)] {
            for stats in [false, true] {
                let (cycle, counts) = slow_c(sleeps);
                let report = cycle
                    .run(Run::times(2300).pool(pool(2)).stats(stats))
                    .unwrap();
                all_succeeded(&report, 2300, stats);
                let [slow, ahead] = [0, 1].map(|k| counts[k].load(Ordering::Relaxed));
                assert!((399..=400).contains(&slow), "{parity}: c slept in {slow}");
                // Its first slow runs ahead until a timed one (at most the
                // tenth run), then once in about 256 forks; a tenth of them at
                // most, on a loaded machine.
                assert!(
                    ahead <= 40,
                    "{parity}, stats {stats}: ahead in {ahead} of {slow}"
                );
            }
        }
    });
}
