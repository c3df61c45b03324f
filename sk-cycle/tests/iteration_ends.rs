//! Many iterations of one cycle, each showing only its own ends: parts
//! are not reset as an iteration begins (each end replaces the last, see
//! `engine/lane.rs`), so every state, output, error, skip, condition,
//! fallback, gate, rate limit, join and latest read is checked iteration
//! by iteration, over two runs of the same cycle; a run after an instant
//! fail starts clean; iteration stats count a run stopped early.
//!
//! Written by an independent review of that change.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sk_cycle::{
    CycleBuilder, CyclePart, ErrorMode, Input, IterationReport, PartState, Run, Split, SyncMode,
};
use sk_testkit::guarded;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether the part salted `salt` fails in iteration `i`, about one
/// iteration in `one_in` (a fixed pseudo-random pattern).
fn fails(i: u64, salt: u64, one_in: u64) -> bool {
    (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 40_503) >> 5) % one_in == 0
}

/// Notes in `bad` where part `name` of iteration report `it` ended
/// otherwise than in `state`, with `output` and an error or not.
fn check(
    it: &IterationReport,
    name: &str,
    state: PartState,
    output: Option<u64>,
    error: bool,
    bad: &mut Vec<String>,
) {
    let i = it.iteration();
    let got = (
        it.state_of(name),
        it.output_as::<u64>(name).copied(),
        it.error_of(name).is_some(),
    );
    if got != (Some(state), output, error) {
        bad.push(format!(
            "it {i} {name}: got {got:?}, want {:?}",
            (Some(state), output, error)
        ));
    }
}

/// A cycle of skip, propagate, condition, fallback, a gate of two, a
/// rate limit, a join with reads and a latest read at the root, run for
/// `iterations` twice on `threads` threads: what each iteration showed
/// that it should not have.
fn stress(threads: usize, iterations: u64) -> Vec<String> {
    stress_in(CycleBuilder::new("stress"), threads, iterations)
}

fn stress_in(mut b: CycleBuilder, threads: usize, iterations: u64) -> Vec<String> {
    let latest = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&latest);
    let root = b
        .root(
            CyclePart::new("root", move |ctx| {
                l.lock()
                    .push((ctx.iteration(), ctx.output::<u64>("a").ok().map(|v| *v)));
                ctx.iteration()
            })
            .reads_latest(["a"]),
        )
        .unwrap();
    let a = CyclePart::fallible("a", |ctx| {
        let i = ctx.iteration();
        if fails(i, 1, 4) {
            Err::<u64, BoxError>("a".into())
        } else {
            Ok(i * 10)
        }
    })
    .error_mode(ErrorMode::Skip);
    let bb = CyclePart::fallible("b", |ctx| {
        let i = ctx.iteration();
        if fails(i, 2, 3) {
            Err::<u64, BoxError>("b".into())
        } else {
            Ok(i * 100)
        }
    })
    .error_mode(ErrorMode::Propagate);
    let c = CyclePart::new("c", |ctx| *ctx.input_as::<u64>().unwrap() + 1)
        .condition(|ctx| ctx.input_as::<u64>().is_ok_and(|&i| i % 3 != 0));
    let d = CyclePart::new("d", |ctx| ctx.iteration() * 1000);
    let e = CyclePart::new("e", |ctx| ctx.iteration() + 7).rate_limit(20_000.0);
    let f = CyclePart::fallible("f", |ctx| {
        let i = ctx.iteration();
        if fails(i, 6, 3) {
            Err::<u64, BoxError>("f".into())
        } else {
            Ok(i * 3)
        }
    })
    .error_mode(ErrorMode::FallbackSkip)
    .fallback(5u64);
    let [a, bh, c, d, e, f] = {
        let v = b
            .fork_with(root, [a, bb, c, d, e, f], Split::new().concurrency_limit(2))
            .unwrap();
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    };
    let plus1 =
        |name: &str| CyclePart::new(name.to_owned(), |ctx| *ctx.input_as::<u64>().unwrap() + 1);
    let a_child = b.then(a, plus1("a_child")).unwrap();
    b.then(
        bh,
        CyclePart::new("b_child", |ctx| match ctx.input() {
            Input::Error(_) => 0u64,
            _ => *ctx.input_as::<u64>().unwrap() + 1,
        }),
    )
    .unwrap();
    b.then(c, plus1("c_child")).unwrap();
    b.then(d, plus1("d_child")).unwrap();
    b.then(e, plus1("e_child")).unwrap();
    b.then(f, plus1("f_child")).unwrap();
    b.then(
        a_child,
        CyclePart::new("join", |ctx| {
            let mut sum = *ctx.input_as::<u64>().unwrap();
            for p in ["b_child", "c_child", "d_child", "e_child", "f_child"] {
                sum += ctx.output::<u64>(p).map(|v| *v).unwrap_or(0);
            }
            sum
        })
        .reads(["b_child", "c_child", "d_child", "e_child", "f_child"]),
    )
    .unwrap();
    for p in ["b_child", "c_child", "d_child", "e_child", "f_child"] {
        b.after("join", p).unwrap();
    }
    let bad = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&bad);
    let cycle = b.build().unwrap();
    let run = |n: u64| {
        let sink = Arc::clone(&sink);
        cycle
            .run(Run::times(n).threads(threads).on_iteration(move |it| {
                let i = it.iteration();
                let mut bad = Vec::new();
                let af = fails(i, 1, 4);
                let bf = fails(i, 2, 3);
                let ct = i % 3 != 0;
                let ff = fails(i, 6, 3);
                use PartState::*;
                check(it, "root", Succeeded, Some(i), false, &mut bad);
                if af {
                    check(it, "a", Failed, None, true, &mut bad);
                    check(it, "a_child", Skipped, None, false, &mut bad);
                    check(it, "join", Skipped, None, false, &mut bad);
                } else {
                    check(it, "a", Succeeded, Some(i * 10), false, &mut bad);
                    check(it, "a_child", Succeeded, Some(i * 10 + 1), false, &mut bad);
                }
                if bf {
                    check(it, "b", Failed, None, true, &mut bad);
                    check(it, "b_child", Succeeded, Some(0), false, &mut bad);
                } else {
                    check(it, "b", Succeeded, Some(i * 100), false, &mut bad);
                    check(it, "b_child", Succeeded, Some(i * 100 + 1), false, &mut bad);
                }
                if ct {
                    check(it, "c", Succeeded, Some(i + 1), false, &mut bad);
                    check(it, "c_child", Succeeded, Some(i + 2), false, &mut bad);
                } else {
                    check(it, "c", NotTaken, None, false, &mut bad);
                    check(it, "c_child", NotTaken, None, false, &mut bad);
                }
                check(it, "d", Succeeded, Some(i * 1000), false, &mut bad);
                check(
                    it,
                    "d_child",
                    Succeeded,
                    Some(i * 1000 + 1),
                    false,
                    &mut bad,
                );
                check(it, "e", Succeeded, Some(i + 7), false, &mut bad);
                check(it, "e_child", Succeeded, Some(i + 8), false, &mut bad);
                if ff {
                    check(it, "f", SucceededWithFallback, Some(5), true, &mut bad);
                    check(it, "f_child", Succeeded, Some(6), false, &mut bad);
                } else {
                    check(it, "f", Succeeded, Some(i * 3), false, &mut bad);
                    check(it, "f_child", Succeeded, Some(i * 3 + 1), false, &mut bad);
                }
                if !af {
                    let want = i * 10
                        + 1
                        + if bf { 0 } else { i * 100 + 1 }
                        + if ct { i + 2 } else { 0 }
                        + (i * 1000 + 1)
                        + (i + 8)
                        + if ff { 6 } else { i * 3 + 1 };
                    check(it, "join", Succeeded, Some(want), false, &mut bad);
                }
                sink.lock().extend(bad);
            }))
            .unwrap()
    };
    // Two runs of the same cycle: the second reuses the first's arrays.
    for _ in 0..2 {
        latest.lock().clear();
        let report = run(iterations);
        assert_eq!(report.iterations(), iterations);
        // reads_latest at the root: a's latest completed output, that of
        // its last success before this iteration (none before its first).
        for &(i, seen) in latest.lock().iter() {
            let want = (1..i).rev().find(|&j| !fails(j, 1, 4)).map(|j| j * 10);
            if seen != want {
                bad.lock()
                    .push(format!("it {i} root saw latest a {seen:?}, want {want:?}"));
            }
        }
    }
    std::mem::take(&mut *bad.lock())
}

#[test]
fn many_iterations_each_show_their_own_ends() {
    guarded(|| {
        for threads in [1, 2, 4] {
            let bad = stress(threads, 300);
            assert!(
                bad.is_empty(),
                "threads {threads}: {:#?}",
                &bad[..bad.len().min(20)]
            );
        }
    })
}

#[test]
fn level_sync_iterations_each_show_their_own_ends() {
    guarded(|| {
        let bad = stress_in(CycleBuilder::new("level").sync(SyncMode::Level), 2, 200);
        assert!(bad.is_empty(), "{:#?}", &bad[..bad.len().min(20)]);
    })
}

#[test]
fn a_run_after_an_instant_fail_starts_clean() {
    guarded(|| {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let fail = Arc::new(AtomicBool::new(true));
        let mut b = CycleBuilder::new("instant");
        let root = b
            .root(CyclePart::new("root", |ctx| ctx.iteration()))
            .unwrap();
        let x = common::instant_fail_at("x", 3, &fail);
        let slow = CyclePart::new("slow", |ctx| {
            std::thread::sleep(Duration::from_millis(2));
            ctx.iteration()
        });
        let [x, slow] = b.fork(root, [x, slow]).unwrap();
        let xc = b
            .then(
                x,
                CyclePart::new("xc", |ctx| *ctx.input_as::<u64>().unwrap()),
            )
            .unwrap();
        let sc = b
            .then(
                slow,
                CyclePart::new("sc", |ctx| *ctx.input_as::<u64>().unwrap()),
            )
            .unwrap();
        let _ = sc;
        b.then(
            xc,
            CyclePart::new("join", |ctx| *ctx.input_as::<u64>().unwrap()),
        )
        .unwrap();
        b.after("join", "sc").unwrap();
        let cycle = b.build().unwrap();
        let first = cycle.run(Run::times(10).threads(2)).unwrap();
        assert_eq!(first.iterations(), 3);
        assert_eq!(first.last().unwrap().state_of("x"), Some(PartState::Failed));
        fail.store(false, SeqCst);
        let states = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&states);
        let second = cycle
            .run(Run::times(4).threads(2).on_iteration(move |it| {
                s2.lock().push(
                    it.states()
                        .map(|(n, _, s)| (n.to_owned(), s))
                        .collect::<Vec<_>>(),
                );
            }))
            .unwrap();
        assert_eq!(second.iterations(), 4);
        for it in states.lock().iter() {
            for (n, s) in it {
                assert_eq!(*s, PartState::Succeeded, "{n} in {it:?}");
            }
        }
        for p in second.stats().parts.iter() {
            assert_eq!(p.count(PartState::Succeeded), 4, "{}", p.name);
            assert_eq!(p.states.total(), 4, "{}", p.name);
        }
    })
}

#[test]
fn independent_lanes_run_many_iterations() {
    guarded(|| {
        let mut b = CycleBuilder::new("lanes");
        let root = b
            .root(CyclePart::new("root", |ctx| ctx.iteration()))
            .unwrap();
        let v = b
            .fork_with(
                root,
                [
                    CyclePart::fallible("l1", |ctx| {
                        if ctx.iteration() % 4 == 0 {
                            Err::<u64, BoxError>("x".into())
                        } else {
                            Ok(ctx.iteration())
                        }
                    })
                    .error_mode(ErrorMode::Skip),
                    CyclePart::new("l2", |ctx| ctx.iteration()),
                ],
                Split::new().sync(SyncMode::Independent),
            )
            .unwrap();
        b.then(
            v[0],
            CyclePart::new("l1c", |ctx| *ctx.input_as::<u64>().unwrap()),
        )
        .unwrap();
        b.then(
            v[1],
            CyclePart::new("l2c", |ctx| *ctx.input_as::<u64>().unwrap()),
        )
        .unwrap();
        let bad = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bad);
        let report = b
            .build()
            .unwrap()
            .run(Run::times(500).threads(2).on_iteration(move |it| {
                if let Some(st) = it.state_of("l1c") {
                    let want = if it.iteration() % 4 == 0 {
                        PartState::Skipped
                    } else {
                        PartState::Succeeded
                    };
                    if st != want {
                        sink.lock().push(format!(
                            "lane {} it {} l1c {st:?}",
                            it.lane(),
                            it.iteration()
                        ));
                    }
                }
            }))
            .unwrap();
        assert_eq!(report.lane_iterations(), &[500, 500, 500]);
        assert!(bad.lock().is_empty(), "{:?}", bad.lock());
    })
}

#[test]
fn batched_iteration_stats_count_every_iteration_of_a_run_stopped_early() {
    guarded(|| {
        // Stopped by its token in iteration 1000 (mid-batch most likely).
        let stop = sk_core::StopToken::new();
        let s = stop.clone();
        let mut b = CycleBuilder::new("stop");
        b.add(
            CyclePart::new("tick", move |ctx| {
                if ctx.iteration() == 1000 {
                    s.stop();
                }
            }),
            1,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::continuous().threads(1).stop_token(stop))
            .unwrap();
        assert_eq!(report.iterations(), 1000);
        assert_eq!(report.stats().iterations.count, 1000);
        // Instant fail in iteration 777.
        let mut b = CycleBuilder::new("instant");
        b.add(
            CyclePart::fallible("tick", |ctx| {
                if ctx.iteration() == 777 {
                    Err::<(), BoxError>("x".into())
                } else {
                    Ok(())
                }
            })
            .error_mode(ErrorMode::InstantFail),
            1,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(5000).threads(1)).unwrap();
        assert_eq!(report.iterations(), 777);
        assert_eq!(report.stats().iterations.count, 777);
    })
}
