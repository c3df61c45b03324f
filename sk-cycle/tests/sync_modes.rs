//! Each sync mode, tested so that the test fails if the mode is ignored.
//!
//! Several tests make one part wait (with a deadline) for something that
//! only an ignored mode would allow: under the mode, the wait runs out and
//! the order the mode promises is what the log shows.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Log, wait_for};
use sk_cycle::{CycleBuilder, CyclePart, PartState, Run, Split, SyncMode};
use sk_testkit::guarded;

const SHORT: Duration = Duration::from_millis(150);

#[test]
fn data_flows_from_parent_to_child() {
    guarded(|| {
        let mut b = CycleBuilder::new("chain");
        let a = b.root(CyclePart::new("a", |_| 1u32)).unwrap();
        let bb = b
            .then(
                a,
                CyclePart::new("b", |ctx| ctx.input_as::<u32>().unwrap() + 1),
            )
            .unwrap();
        b.then(
            bb,
            CyclePart::new("c", |ctx| ctx.input_as::<u32>().unwrap() * 10),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.output_as::<u32>("c"), Some(&20));
        assert!(last.states().all(|(_, _, s)| s == PartState::Succeeded));
        assert_eq!(
            last.output_at((2, 1)).and_then(|v| v.downcast_ref::<u32>()),
            Some(&2)
        );
    })
}

/// root → split [a, b] → a2 below a. `b` waits for a2 to start.
fn level_tree(log: &Log, sync: Option<SyncMode>) -> sk_cycle::Cycle {
    let mut b = CycleBuilder::new("levels");
    b.add(log.noop("root"), 1).unwrap();
    let wait_log = log.clone();
    let split = Split::new();
    let split = match sync {
        Some(mode) => split.sync(mode),
        None => split,
    };
    b.split_with(
        [
            log.noop("a"),
            log.part("b", move |_| {
                wait_for(SHORT, || wait_log.has("a2", "start"));
            }),
        ],
        2,
        split,
    )
    .unwrap();
    b.add(log.noop("a2"), (4, 1)).unwrap();
    b.build().unwrap()
}

#[test]
fn level_sync_holds_the_next_level_until_the_level_ends() {
    guarded(|| {
        let log = Log::default();
        level_tree(&log, Some(SyncMode::Level))
            .run(Run::once().threads(4))
            .unwrap();
        assert!(
            log.at("b", "end") < log.at("a2", "start"),
            "a level-4 part started before a level-3 part ended"
        );
    })
}

#[test]
fn cycle_wide_level_sync_overrides_the_splits() {
    guarded(|| {
        let log = Log::default();
        let mut b = CycleBuilder::new("levels-wide").sync(SyncMode::Level);
        b.add(log.noop("root"), 1).unwrap();
        let wait_log = log.clone();
        b.split_with(
            [
                log.noop("a"),
                log.part("b", move |_| {
                    wait_for(SHORT, || wait_log.has("a2", "start"));
                }),
            ],
            2,
            Split::new().sync(SyncMode::Parallel),
        )
        .unwrap();
        b.add(log.noop("a2"), (4, 1)).unwrap();
        b.build().unwrap().run(Run::once().threads(4)).unwrap();
        assert!(log.at("b", "end") < log.at("a2", "start"));
    })
}

#[test]
fn parallel_branches_run_free_and_the_iteration_waits_for_all() {
    guarded(|| {
        let log = Log::default();
        let report = level_tree(&log, None).run(Run::once().threads(4)).unwrap();
        // a2 did not wait for b: b saw it start.
        assert!(log.at("a2", "start") < log.at("b", "end"));
        let last = report.last().unwrap();
        assert_eq!(last.states().count(), 4);
        assert!(last.states().all(|(_, _, s)| s == PartState::Succeeded));
    })
}

#[test]
fn sequential_split_runs_its_parts_in_order_with_the_parent_input() {
    guarded(|| {
        let log = Log::default();
        let mut b = CycleBuilder::new("seq");
        b.add(CyclePart::new("root", |_| 7u32), 1).unwrap();
        let (l1, l2) = (log.clone(), log.clone());
        b.split_with(
            [
                log.part("x", move |ctx| {
                    wait_for(SHORT, || l1.has("y", "start"));
                    *ctx.input_as::<u32>().unwrap()
                }),
                log.part("y", move |ctx| {
                    wait_for(SHORT, || l2.has("z", "start"));
                    *ctx.input_as::<u32>().unwrap()
                }),
                log.part("z", |ctx| *ctx.input_as::<u32>().unwrap()),
            ],
            2,
            Split::new().sync(SyncMode::Sequential),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(4)).unwrap();
        assert!(log.at("x", "end") < log.at("y", "start"));
        assert!(log.at("y", "end") < log.at("z", "start"));
        let last = report.last().unwrap();
        for name in ["x", "y", "z"] {
            assert_eq!(
                last.output_as::<u32>(name),
                Some(&7),
                "{name} got the parent's output"
            );
        }
    })
}

#[test]
fn after_edge_makes_a_part_wait_for_another_branch() {
    guarded(|| {
        let log = Log::default();
        let mut b = CycleBuilder::new("after");
        b.add(log.noop("root"), 1).unwrap();
        let l = log.clone();
        b.split(
            [
                log.part("slow", move |_| {
                    wait_for(SHORT, || l.has("waiter", "start"));
                    5u8
                }),
                log.part("waiter", |ctx| ctx.output::<u8>("slow").ok().map(|v| *v))
                    .reads(["slow"]),
            ],
            2,
        )
        .unwrap();
        b.after("waiter", "slow").unwrap();
        let report = b.build().unwrap().run(Run::once().threads(4)).unwrap();
        assert!(log.at("slow", "end") < log.at("waiter", "start"));
        // A completed part's output is readable by name from another branch.
        assert_eq!(
            report.last().unwrap().output_as::<Option<u8>>("waiter"),
            Some(&Some(5))
        );
    })
}

#[test]
fn pipeline_passes_each_output_to_the_next_part() {
    guarded(|| {
        let mut b = CycleBuilder::new("pipe");
        b.add(CyclePart::new("source", |_| 1i64), 1).unwrap();
        b.split_with(
            [
                CyclePart::new("inc", |ctx| ctx.input_as::<i64>().unwrap() + 1),
                CyclePart::new("times10", |ctx| ctx.input_as::<i64>().unwrap() * 10)
                    .validate_input(|v: &i64| if v % 2 == 0 { Ok(()) } else { Err("odd input") }),
                CyclePart::new("minus5", |ctx| ctx.input_as::<i64>().unwrap() - 5),
            ],
            2,
            Split::new().sync(SyncMode::Pipeline),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        assert_eq!(report.last().unwrap().output_as::<i64>("minus5"), Some(&15));
    })
}

#[test]
fn pipeline_validator_rejection_fails_the_receiving_part() {
    guarded(|| {
        let mut b = CycleBuilder::new("pipe-reject");
        b.add(CyclePart::new("source", |_| 2i64), 1).unwrap();
        b.split_with(
            [
                CyclePart::new("inc", |ctx| ctx.input_as::<i64>().unwrap() + 1),
                CyclePart::new("even_only", |ctx| *ctx.input_as::<i64>().unwrap())
                    .validate_input(|v: &i64| if v % 2 == 0 { Ok(()) } else { Err("odd input") }),
                CyclePart::new("after", |_| ()),
            ],
            2,
            Split::new().sync(SyncMode::Pipeline),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("even_only"), Some(PartState::Failed));
        assert_eq!(last.state_of("after"), Some(PartState::UpstreamFailed));
        let err = last.error_of("even_only").unwrap().to_string();
        assert!(err.contains("input rejected: odd input"), "{err}");
        assert!(report.is_error());
    })
}

#[test]
fn independent_branches_loop_at_their_own_pace() {
    guarded(|| {
        let fast_done = Arc::new(AtomicU64::new(0));
        let seen_by_slow = Arc::new(AtomicU64::new(0));
        let mut b = CycleBuilder::new("indep");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        let (f, s, seen) = (
            Arc::clone(&fast_done),
            Arc::clone(&fast_done),
            Arc::clone(&seen_by_slow),
        );
        b.split_with(
            [
                CyclePart::new("fast", move |_| {
                    f.fetch_add(1, Ordering::SeqCst);
                }),
                CyclePart::new("slow", move |ctx| {
                    if ctx.iteration() == 1 {
                        // Only an independent lane lets `fast` loop meanwhile.
                        wait_for(Duration::from_secs(5), || s.load(Ordering::SeqCst) >= 20);
                        seen.store(s.load(Ordering::SeqCst), Ordering::SeqCst);
                    }
                }),
            ],
            2,
            Split::new().sync(SyncMode::Independent),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(20).threads(4)).unwrap();
        assert!(
            seen_by_slow.load(Ordering::SeqCst) >= 20,
            "fast ran {} iterations while slow was in its first",
            seen_by_slow.load(Ordering::SeqCst)
        );
        assert_eq!(report.lane_iterations(), &[20, 20, 20]);
    })
}

#[test]
fn conditional_parts_and_their_subtrees_are_not_taken() {
    guarded(|| {
        let mut b = CycleBuilder::new("cond");
        b.add(CyclePart::new("root", |_| 3u32), 1).unwrap();
        b.split(
            [
                CyclePart::new("big_only", |_| ())
                    .condition(|ctx| ctx.input_as::<u32>().is_ok_and(|&n| n > 10)),
                CyclePart::new("always", |_| ()),
            ],
            2,
        )
        .unwrap();
        b.add(CyclePart::new("below_big", |_| ()), (4, 1)).unwrap();
        b.split_with(
            [
                CyclePart::new("gated_a", |_| ()),
                CyclePart::new("gated_b", |_| ()),
            ],
            (4, 2),
            Split::new().condition(|_| false),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("big_only"), Some(PartState::NotTaken));
        assert_eq!(last.state_of("below_big"), Some(PartState::NotTaken));
        assert_eq!(last.state_of("always"), Some(PartState::Succeeded));
        assert_eq!(last.state_of("gated_a"), Some(PartState::NotTaken));
        assert_eq!(last.state_of("gated_b"), Some(PartState::NotTaken));
        assert!(!report.is_error());
    })
}

/// Eight parts that each hold until all eight have started (or a short
/// deadline passes), recording the highest concurrency seen: without a
/// gate all eight overlap; with one, at most the limit do.
fn concurrency_limited(limit: usize, cycle_limit: Option<usize>) -> usize {
    let running = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut b = CycleBuilder::new("rate");
    if let Some(n) = cycle_limit {
        b = b.concurrency_limit(n);
    }
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    let parts: Vec<CyclePart> = (0..8)
        .map(|i| {
            let (running, started, max) =
                (Arc::clone(&running), Arc::clone(&started), Arc::clone(&max));
            CyclePart::new(format!("p{i}"), move |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                started.fetch_add(1, Ordering::SeqCst);
                max.fetch_max(now, Ordering::SeqCst);
                wait_for(Duration::from_millis(200), || {
                    started.load(Ordering::SeqCst) == 8
                });
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    b.split_with(parts, 2, Split::new().concurrency_limit(limit))
        .unwrap();
    let report = b.build().unwrap().run(Run::once().threads(8)).unwrap();
    assert!(
        report
            .last()
            .unwrap()
            .states()
            .all(|(_, _, s)| s == PartState::Succeeded)
    );
    max.load(Ordering::SeqCst)
}

#[test]
fn concurrency_limit_caps_concurrency_and_reaches_the_cap() {
    guarded(|| assert_eq!(concurrency_limited(3, None), 3))
}

#[test]
fn cycle_wide_concurrency_limit_overrides_the_split_limit() {
    guarded(|| assert_eq!(concurrency_limited(5, Some(2)), 2))
}

/// The moments `n` iterations of a part rate-limited at `per_sec` (on the
/// part, its split or the cycle) started.
fn starts_under_rate(n: u64, per_sec: f64, on: &str) -> Vec<std::time::Instant> {
    let starts = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = Arc::clone(&starts);
    let mut part = CyclePart::new("paced", move |_| {
        seen.lock().push(std::time::Instant::now())
    });
    let mut b = CycleBuilder::new(format!("paced-{on}"));
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    let mut split = Split::new();
    match on {
        "part" => part = part.rate_limit(per_sec),
        "split" => split = split.rate_limit(per_sec),
        _ => {
            b = b.rate_limit(per_sec);
        }
    }
    b.split_with([part, CyclePart::new("free", |_| ())], 2, split)
        .unwrap();
    let report = b.build().unwrap().run(Run::times(n).threads(2)).unwrap();
    assert_eq!(report.iterations(), n);
    let last = report.last().unwrap();
    assert_eq!(last.state_of("paced"), Some(PartState::Succeeded));
    starts.lock().clone()
}

#[test]
fn a_rate_limit_spaces_part_starts_wherever_it_is_set() {
    guarded(|| {
        for on in ["part", "split", "cycle"] {
            // 40 per second: 10 gaps of at least 25 ms (less the limiter's
            // small tolerance), however fast the machine.
            let starts = starts_under_rate(11, 40.0, on);
            assert_eq!(starts.len(), 11, "{on}");
            let span = starts[10] - starts[0];
            assert!(
                span >= Duration::from_millis(225),
                "{on}: 11 starts at 40/s took only {span:?}"
            );
        }
    })
}

#[test]
fn a_rate_limit_that_is_not_a_positive_number_is_a_build_error() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut b = CycleBuilder::new("bad-rate");
        b.add(CyclePart::new("root", |_| ()).rate_limit(bad), 1)
            .unwrap();
        let err = b.build().unwrap_err();
        assert!(
            matches!(err, sk_cycle::BuildError::InvalidRateLimit { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("part \"root\" at 1-1: a rate limit"),
            "{text}"
        );
    }
    let mut b = CycleBuilder::new("bad-cycle-rate");
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    b = b.rate_limit(0.0);
    let text = b.build().unwrap_err().to_string();
    assert!(
        text.starts_with("cycle \"bad-cycle-rate\": a rate limit"),
        "{text}"
    );
}

/// Checks each part's lane, from a traced run of `b`'s cycle once,
/// against `expected` (sorted by name).
fn assert_lanes(b: CycleBuilder, expected: &[(&str, u32)]) {
    let report = b
        .build()
        .unwrap()
        .run(Run::once().threads(2).trace(true))
        .unwrap();
    let mut lanes: Vec<(String, u32)> = report
        .trace()
        .unwrap()
        .events()
        .iter()
        .filter(|e| e.kind == sk_cycle::TraceKind::Part)
        .map(|e| (e.name.clone(), e.lane))
        .collect();
    lanes.sort_unstable();
    lanes.dedup();
    let expected: Vec<(String, u32)> = expected.iter().map(|&(n, l)| (n.to_owned(), l)).collect();
    assert_eq!(lanes, expected);
}

fn noop(name: &str) -> CyclePart {
    CyclePart::new(name.to_owned(), |_| ())
}

/// Journals and traces record lane numbers, so they must not change: an
/// independent split numbers its parts' lanes when a depth-first walk
/// from the root, the last child first, reaches it (not in placement
/// order).
#[test]
fn independent_lanes_are_numbered_depth_first_from_the_last_child() {
    guarded(|| {
        let independent = || Split::new().sync(SyncMode::Independent);
        let mut b = CycleBuilder::new("lanes");
        b.add(noop("root"), 1).unwrap();
        b.split_with([noop("a"), noop("b"), noop("c")], 2, independent())
            .unwrap();
        // Placed under `a` first, but `c`'s subtree is walked first.
        b.split_with([noop("a1"), noop("a2")], (4, 1), independent())
            .unwrap();
        b.split_with([noop("c1"), noop("c2")], (4, 3), independent())
            .unwrap();
        let expected = [
            ("a", 1),
            ("a1", 6),
            ("a2", 7),
            ("b", 2),
            ("c", 3),
            ("c1", 4),
            ("c2", 5),
            ("root", 0),
        ];
        assert_lanes(b, &expected);

        // Cycle-wide: every part but the root has a lane of its own, in
        // the same walk's order.
        let mut b = CycleBuilder::new("all").sync(SyncMode::Independent);
        b.add(noop("root"), 1).unwrap();
        b.split([noop("a"), noop("b")], 2).unwrap();
        b.add(noop("x"), (4, 1)).unwrap();
        assert_lanes(b, &[("a", 2), ("b", 1), ("root", 0), ("x", 3)]);
    })
}

/// The builder checks tree, `after` and `pipe` edges for loops as they
/// are added; the edges a sequential split or a level barrier adds are
/// made at build, and a loop through them is refused there.
#[test]
fn loops_through_the_edges_a_sync_mode_adds_are_build_errors() {
    guarded(|| {
        let is_loop =
            |err: sk_cycle::BuildError| matches!(err, sk_cycle::BuildError::OrderingLoop { .. });
        // A root and a split of `a` and `b` under `mode`.
        let split = |mode: SyncMode| {
            let mut b = CycleBuilder::new(format!("{mode:?}"));
            b.add(noop("root"), 1).unwrap();
            b.split_with([noop("a"), noop("b")], 2, Split::new().sync(mode))
                .unwrap();
            b
        };
        // Sequential: `b` runs after `a`; `a` waiting for `b` is a loop.
        let mut b = split(SyncMode::Sequential);
        b.after("a", "b").unwrap();
        assert!(is_loop(b.build().unwrap_err()));

        // Level: `c` (level 4) runs after all of level 3, `b` among them;
        // `b` waiting for `c` is a loop through the barrier.
        let mut b = split(SyncMode::Level);
        b.add(noop("c"), (4, 1)).unwrap();
        b.after("b", "c").unwrap();
        assert!(is_loop(b.build().unwrap_err()));
    })
}
