//! Runs: iterations, stopping, component threads, the shared store, stats
//! and traces.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::wait_for;
use parking_lot::Mutex;
use sk_cycle::{CycleBuilder, CyclePart, PartState, Run, RunError, StopReason, Store};
use sk_testkit::guarded;

/// Names of this process's threads whose name contains `marker`.
fn threads_named(marker: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.contains(marker))
        .collect()
}

#[test]
fn parts_bound_to_a_component_always_run_on_its_one_thread() {
    guarded(|| {
        let seen: Arc<Mutex<Vec<(String, std::thread::ThreadId, String)>>> = Arc::default();
        let record = |name: &str| {
            let seen = Arc::clone(&seen);
            CyclePart::new(name, move |ctx| {
                let t = std::thread::current();
                seen.lock().push((
                    ctx.name().to_owned(),
                    t.id(),
                    t.name().unwrap_or_default().to_owned(),
                ));
            })
        };
        let mut b = CycleBuilder::new("affinity");
        b.add(record("root"), 1).unwrap();
        b.split(
            [
                record("gpu_a").component("gpu"),
                record("free"),
                record("gpu_b").component("gpu"),
            ],
            2,
        )
        .unwrap();
        b.add(record("gpu_c").component("gpu"), (4, 2)).unwrap();
        let report = b.build().unwrap().run(Run::times(50).threads(4)).unwrap();
        assert_eq!(report.iterations(), 50);
        let seen = seen.lock();
        let gpu: HashSet<_> = seen
            .iter()
            .filter(|(n, _, _)| n.starts_with("gpu"))
            .map(|(_, id, _)| *id)
            .collect();
        assert_eq!(
            seen.iter().filter(|(n, _, _)| n.starts_with("gpu")).count(),
            150
        );
        assert_eq!(gpu.len(), 1, "component parts ran on {} threads", gpu.len());
        let name = &seen.iter().find(|(n, _, _)| n == "gpu_a").unwrap().2;
        assert!(name.starts_with("sk-component:affinity:gpu"), "{name}");
        // Pool parts do not run there.
        assert!(
            seen.iter()
                .filter(|(n, _, _)| n == "free")
                .all(|(_, id, _)| !gpu.contains(id))
        );
    })
}

#[test]
fn a_continuous_run_stops_at_an_iteration_boundary_and_leaves_no_thread() {
    guarded(|| {
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        let mut b = CycleBuilder::new("q7");
        b.add(
            CyclePart::new("tick", move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            1,
        )
        .unwrap();
        b.split(
            [
                CyclePart::new("on_gpu", |_| ()).component("gpu"),
                CyclePart::new("timed", |_| ()).timeout(Duration::from_secs(5)),
            ],
            2,
        )
        .unwrap();
        let cycle = b.build().unwrap();
        let handle = cycle.spawn(Run::continuous().threads(2)).unwrap();
        assert!(wait_for(Duration::from_secs(10), || count
            .load(Ordering::SeqCst)
            >= 5));
        assert!(
            !threads_named(":q7").is_empty(),
            "the run's threads are named"
        );
        handle.stop();
        let report = handle.join().unwrap();
        assert_eq!(report.stop_reason(), StopReason::Stopped);
        assert!(report.iterations() >= 5);
        // Stopped at a boundary: every part ended every iteration.
        let last = report.last().unwrap();
        assert!(last.states().all(|(_, _, s)| s == PartState::Succeeded));
        for part in &report.stats().parts {
            assert_eq!(part.states.total(), report.iterations(), "{}", part.name);
        }
        let left = threads_named(":q7");
        assert!(left.is_empty(), "threads left running: {left:?}");
    })
}

#[test]
fn a_stop_token_stops_a_foreground_run() {
    guarded(|| {
        let token = sk_core::StopToken::new();
        let stopper = token.clone();
        let mut b = CycleBuilder::new("fg-stop");
        b.add(
            CyclePart::new("work", move |ctx| {
                if ctx.iteration() == 3 {
                    stopper.stop();
                }
            }),
            1,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::continuous().stop_token(token).threads(2))
            .unwrap();
        assert_eq!(report.iterations(), 3);
        assert_eq!(report.stop_reason(), StopReason::Stopped);
    })
}

#[test]
fn until_stops_when_the_predicate_holds() {
    guarded(|| {
        let mut b = CycleBuilder::new("until");
        b.add(CyclePart::new("n", |ctx| ctx.iteration()), 1)
            .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::until(|r| r.output_as::<u64>("n") == Some(&4)).threads(2))
            .unwrap();
        assert_eq!(report.iterations(), 4);
        assert_eq!(report.stop_reason(), StopReason::Predicate);
        assert_eq!(report.last().unwrap().output_as::<u64>("n"), Some(&4));
    })
}

#[test]
fn the_store_is_shared_by_parts_and_kept_across_iterations() {
    guarded(|| {
        let store = Arc::new(Store::new());
        store.set("seed", 100u64);
        let mut b = CycleBuilder::new("store");
        b.add(
            CyclePart::new("count", |ctx| {
                let seed = ctx.store().get::<u64>("seed").unwrap();
                ctx.store()
                    .update("seen", |n: Option<&u64>| n.copied().unwrap_or(seed) + 1)
                    .unwrap()
            }),
            1,
        )
        .unwrap();
        b.add(
            CyclePart::new("read", |ctx| ctx.store().get::<u64>("seen").ok()),
            2,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(7).store(Arc::clone(&store)).threads(2))
            .unwrap();
        assert_eq!(store.get::<u64>("seen").unwrap(), 107);
        assert_eq!(
            report.last().unwrap().output_as::<Option<u64>>("read"),
            Some(&Some(107))
        );
    })
}

#[test]
fn iterations_are_spaced_by_the_interval() {
    guarded(|| {
        let mut b = CycleBuilder::new("interval");
        b.add(CyclePart::new("tick", |_| ()), 1).unwrap();
        let report = b
            .build()
            .unwrap()
            .run(
                Run::times(3)
                    .interval(Duration::from_millis(30))
                    .trace(true)
                    .threads(2),
            )
            .unwrap();
        let starts: Vec<Duration> = report
            .trace()
            .unwrap()
            .events()
            .iter()
            .filter(|e| e.kind == sk_cycle::TraceKind::Part)
            .map(|e| e.start)
            .collect();
        assert_eq!(starts.len(), 3);
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(30), "{starts:?}");
        }
    })
}

#[test]
fn a_large_run_samples_timings_and_counts_every_end() {
    guarded(|| {
        let cycle = || {
            let mut b = CycleBuilder::new("sampled");
            let root = b.root(CyclePart::new("a", |_| ())).unwrap();
            b.then(root, CyclePart::new("b", |_| ())).unwrap();
            b.build().unwrap()
        };
        let n = 20_000;
        let report = cycle().run(Run::times(n).threads(1)).unwrap();
        // Every run of the first 4096 / 2 iterations, then some: each
        // timed run counts for the runs since the last one, so the count
        // reaches every run up to the part's last timed one (at most 511
        // runs before the end).
        for part in &report.stats().parts {
            assert_eq!(part.count(PartState::Succeeded), n, "{}", part.name);
            let counted = part.timing.count;
            assert!(
                counted > n - 511 && counted <= n,
                "{counted} of {n} runs counted: {part:?}"
            );
        }
        // A trace times every run.
        let report = cycle()
            .run(Run::times(3000).threads(1).trace(true))
            .unwrap();
        for part in &report.stats().parts {
            assert_eq!(part.timing.count, 3000, "{}", part.name);
        }
    })
}

/// Spins for `d` (a part's work of a known length, not a wait).
fn spin(d: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn a_part_that_takes_microseconds_is_timed_every_run() {
    guarded(|| {
        // A part of 20 µs a run, 2 ms in one iteration past the exactly
        // timed ones: timing costs well under a share of its run, so every
        // run is timed and the slow one is its max.
        let slow = |ctx: &sk_cycle::PartContext<'_>| {
            spin(Duration::from_micros(if ctx.iteration() == 3001 {
                2000
            } else {
                20
            }))
        };
        let mut b = CycleBuilder::new("slow and quick");
        let root = b.root(CyclePart::new("slow", slow)).unwrap();
        b.then(root, CyclePart::new("quick", |_| ())).unwrap();
        let n = 4000;
        let report = b.build().unwrap().run(Run::times(n).threads(1)).unwrap();
        let slow = &report.stats().parts[0];
        assert_eq!(&*slow.name, "slow");
        assert_eq!(slow.timing.count, n);
        assert!(slow.timing.max >= Duration::from_millis(2), "{slow:?}");
    })
}

#[test]
fn sampled_timings_estimate_every_run_when_run_times_change() {
    guarded(|| {
        // 5000 runs of 20 µs (timed every run), then 95 000 of nearly
        // nothing (timed in a few): each timed quick run stands for the
        // runs since the last, so the mean is of all runs, not of the
        // timed ones (which would be mostly slow: about 10x too high).
        let slow_runs = 5000;
        let phased = move |ctx: &sk_cycle::PartContext<'_>| {
            if ctx.iteration() <= slow_runs {
                spin(Duration::from_micros(20));
            }
        };
        let mut b = CycleBuilder::new("phases");
        b.root(CyclePart::new("phased", phased)).unwrap();
        let n = 100_000;
        let report = b.build().unwrap().run(Run::times(n).threads(1)).unwrap();
        let timing = report.stats().parts[0].timing;
        assert!(timing.count > n - 511 && timing.count <= n, "{timing:?}");
        let slow_total = Duration::from_micros(20) * slow_runs as u32;
        assert!(timing.total >= slow_total, "{timing:?}");
        // All runs' mean is about slow_total / n (1 µs) plus a quick run;
        // the timed runs' mean would be over 10 µs.
        let all_runs_mean = slow_total / n as u32;
        assert!(timing.mean < all_runs_mean * 5, "{timing:?}");
        assert!(timing.mean >= all_runs_mean, "{timing:?}");
    })
}

/// A root and a split of `parts` below it.
fn wide(name: &str, parts: impl IntoIterator<Item = CyclePart>) -> sk_cycle::Cycle {
    let mut b = CycleBuilder::new(name);
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    b.split(parts, 2).unwrap();
    b.build().unwrap()
}

/// `n` no-op parts, `p0` to `p{n-1}`.
fn noops(n: usize) -> impl Iterator<Item = CyclePart> {
    (0..n).map(|i| CyclePart::new(format!("p{i}"), |_| ()))
}

#[test]
fn a_timed_out_part_counts_at_most_its_runs() {
    guarded(|| {
        // A timed-out run is recorded by the watchdog: only if its start
        // chose to time it, and then for the runs its sample stands for.
        // Before, every timed-out run was recorded with the weight meant
        // for the part's next timed run (up to 16 runs for its first).
        let cycle = wide(
            "wide with timeouts",
            (0..5000).map(|i| {
                if i % 500 == 0 {
                    CyclePart::new(format!("p{i}"), |ctx: &sk_cycle::PartContext<'_>| {
                        ctx.stop_token().wait_timeout(Duration::from_secs(5));
                    })
                    .timeout(Duration::from_millis(20))
                    .error_mode(sk_cycle::ErrorMode::Skip)
                } else {
                    CyclePart::new(format!("p{i}"), |_| ())
                }
            }),
        );
        let report = cycle.run(Run::once().threads(2)).unwrap();
        for part in &report.stats().parts {
            let runs: u64 = PartState::ALL.iter().map(|&s| part.count(s)).sum();
            assert!(
                part.timing.count <= runs,
                "{}: {} > {runs}",
                part.name,
                part.timing.count
            );
        }
    })
}

#[test]
fn a_cycle_larger_than_the_exact_budget_samples_its_first_iteration() {
    guarded(|| {
        // More than 4096 parts: no iteration is timed exactly, the first
        // one is sampled like any other (about one part in 16).
        let n = 8000;
        let cycle = wide("wide sampled", noops(n));
        // Twice: the second run reuses the first's per-part state.
        for run in 0..2 {
            let report = cycle.run(Run::once().threads(2)).unwrap();
            let timed: u64 = report.stats().parts.iter().map(|p| p.timing.count).sum();
            let parts = n as u64 + 1;
            assert!(
                timed > parts / 40 && timed < parts / 8,
                "run {run}: {timed} of {parts} part runs timed"
            );
            for part in &report.stats().parts {
                assert_eq!(part.count(PartState::Succeeded), 1, "{}", part.name);
            }
        }
    })
}

#[test]
fn a_large_cycle_run_again_counts_only_its_own_runs() {
    guarded(|| {
        // More than 4096 parts: a run goes on with the timing countdown
        // the last one left, but a part's first timed run in it stands
        // only for runs of this run.
        let cycle = wide("wide again", noops(5000));
        let k = 20;
        for run in 0..3 {
            let report = cycle.run(Run::times(k).threads(2)).unwrap();
            let parts = &report.stats().parts;
            for part in parts {
                assert_eq!(part.count(PartState::Succeeded), k, "{}", part.name);
                assert!(part.timing.count <= k, "run {run}: {part:?}");
            }
            let timed = parts.iter().filter(|p| p.timing.count > 0).count();
            assert!(timed > parts.len() / 20, "run {run}: {timed} parts timed");
        }
    })
}

#[test]
fn stats_count_every_iteration_of_every_part() {
    guarded(|| {
        let mut b = CycleBuilder::new("stats");
        let root = b.root(CyclePart::new("a", |_| ())).unwrap();
        b.then(root, CyclePart::new("b", |_| ())).unwrap();
        let report = b.build().unwrap().run(Run::times(10).threads(2)).unwrap();
        let stats = report.stats();
        assert_eq!(stats.iterations.count, 10);
        for part in &stats.parts {
            assert_eq!(part.timing.count, 10, "{}", part.name);
            assert_eq!(part.count(PartState::Succeeded), 10);
        }
        let text = stats.to_string();
        assert!(text.contains("iterations: n=10"), "{text}");
        assert!(text.contains("10 succeeded"), "{text}");
    })
}

#[test]
fn many_short_iterations_are_each_counted_and_their_total_is_within_the_run() {
    guarded(|| {
        // Iterations of a few hundred nanoseconds (timed in batches, see
        // `run/clock.rs`): each counted, their total within the run's wall
        // time.
        let mut b = CycleBuilder::new("short");
        b.add(CyclePart::new("tick", |_| ()), 1).unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(20_001).threads(1))
            .unwrap();
        let stats = &report.stats().iterations;
        assert_eq!(stats.count, 20_001);
        assert!(stats.total > Duration::ZERO, "{stats:?}");
        assert!(stats.total <= report.wall_time(), "{stats:?}");
        assert!(
            stats.min <= stats.mean && stats.mean <= stats.max,
            "{stats:?}"
        );
    })
}

#[test]
fn the_last_reports_duration_is_the_last_iterations_own() {
    guarded(|| {
        // 299 iterations of nothing, then one of 20 ms: the last report
        // says 20 ms, not the mean of a batch of short ones.
        let mut b = CycleBuilder::new("slow-last");
        b.add(
            CyclePart::new("tick", |ctx| {
                if ctx.iteration() == 300 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }),
            1,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(300).threads(1)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.iteration(), 300);
        assert!(last.duration() >= Duration::from_millis(20), "{last:?}");
        let stats = &report.stats().iterations;
        assert_eq!(stats.count, 300);
        assert_eq!(stats.max, last.duration());
    })
}

#[test]
fn a_run_counts_only_its_own_ends_after_a_run_with_failures() {
    guarded(|| {
        // The same cycle run twice: its per-part state is kept between
        // runs, and the first run's failures must not reach the second's
        // stats (nor its errors the second's report).
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = Arc::clone(&fail);
        let mut b = CycleBuilder::new("twice");
        let root = b.root(CyclePart::new("a", |_| ())).unwrap();
        let flaky = CyclePart::fallible("flaky", move |_| {
            if flag.load(Ordering::Relaxed) {
                Err::<(), _>("not this run")
            } else {
                Ok(())
            }
        })
        .error_mode(sk_cycle::ErrorMode::Skip);
        let middle = b.then(root, flaky).unwrap();
        b.then(middle, CyclePart::new("c", |_| ())).unwrap();
        let cycle = b.build().unwrap();

        let first = cycle.run(Run::times(3).stats(false)).unwrap();
        let counts = |report: &sk_cycle::RunReport, name: &str| {
            let part = report
                .stats()
                .parts
                .iter()
                .find(|p| &*p.name == name)
                .cloned();
            part.unwrap().states
        };
        assert_eq!(counts(&first, "flaky").failed, 3);
        assert_eq!(counts(&first, "c").skipped, 3);
        assert_eq!(counts(&first, "a").succeeded, 3);
        assert!(first.last().unwrap().error_of("flaky").is_some());

        fail.store(false, Ordering::Relaxed);
        let second = cycle.run(Run::times(2).stats(false)).unwrap();
        for name in ["a", "flaky", "c"] {
            let states = counts(&second, name);
            assert_eq!(states.succeeded, 2, "{name}");
            assert_eq!(states.total(), 2, "{name}: {states:?}");
        }
        assert!(second.last().unwrap().error_of("flaky").is_none());
        assert_eq!(second.last().unwrap().errors().count(), 0);

        // Failing again: this run's one failure, not the first run's too.
        fail.store(true, Ordering::Relaxed);
        let third = cycle.run(Run::once().stats(false)).unwrap();
        assert_eq!(counts(&third, "flaky").failed, 1);
        assert_eq!(counts(&third, "flaky").total(), 1);
        assert_eq!(counts(&third, "c").skipped, 1);
    })
}

#[test]
fn the_trace_is_chrome_json_with_one_complete_event_per_part_execution() {
    guarded(|| {
        let mut b = CycleBuilder::new("traced");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        b.split(
            [
                CyclePart::new("left", |_| ()),
                CyclePart::new("right", |_| ()),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::fallible("fails", |_| Err::<(), _>("no"))
                .error_mode(sk_cycle::ErrorMode::Skip),
            (4, 1),
        )
        .unwrap();
        b.add(CyclePart::new("skipped", |_| ()), (5, 1)).unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(3).trace(true).threads(2))
            .unwrap();
        let json = report.trace().unwrap().to_chrome_json();
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let all = parsed["traceEvents"].as_array().unwrap();
        let (metadata, events): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
            all.iter().partition(|e| e["ph"] == "M");
        let (iterations, parts): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
            events.iter().partition(|e| e["name"] == "iteration");
        // Four parts run each iteration; "skipped" never runs.
        assert_eq!(parts.len(), 12);
        // A span per iteration, on a row of its own.
        assert_eq!(iterations.len(), 3);
        for e in &events {
            assert_eq!(e["ph"], "X");
            assert!(e["ts"].as_f64().unwrap() >= 0.0);
            assert!(e["dur"].as_f64().unwrap() >= 0.0);
            assert!(e["tid"].as_u64().is_some());
        }
        // Every row is named: the threads parts ran on, and the lane's
        // iteration row.
        for e in &events {
            let named = metadata
                .iter()
                .any(|m| m["name"] == "thread_name" && m["tid"] == e["tid"]);
            assert!(named, "no thread_name for {e}");
        }
        assert!(
            metadata.iter().any(|m| m["args"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("sk-cycle:traced"))),
            "{metadata:?}"
        );
        let fails: Vec<_> = parts.iter().filter(|e| e["name"] == "fails").collect();
        assert_eq!(fails.len(), 3);
        assert_eq!(fails[0]["args"]["state"], "failed");
        assert_eq!(fails[0]["args"]["coord"], "4-1");
        assert_eq!(fails[0]["args"]["retries"], 0);
    })
}

#[test]
fn a_running_run_gives_live_stats_without_stopping() {
    guarded(|| {
        let mut b = CycleBuilder::new("live");
        b.add(CyclePart::new("tick", |_| ()), 1).unwrap();
        let handle = b
            .build()
            .unwrap()
            .spawn(Run::continuous().interval(Duration::from_millis(1)))
            .unwrap();
        // The counts grow while it runs.
        assert!(wait_for(Duration::from_secs(20), || {
            handle
                .stats()
                .is_some_and(|s| s.parts[0].states.succeeded >= 5)
        }));
        let earlier = handle.stats().unwrap().parts[0].states.succeeded;
        assert!(wait_for(Duration::from_secs(20), || {
            handle
                .stats()
                .is_some_and(|s| s.parts[0].states.succeeded > earlier)
        }));
        assert!(!handle.is_finished(), "reading stats does not stop it");
        handle.stop();
        let report = handle.join().unwrap();
        assert!(report.stats().parts[0].states.succeeded > earlier);
    })
}

#[test]
fn a_continuous_runs_trace_keeps_the_latest_events_within_its_capacity() {
    guarded(|| {
        let mut b = CycleBuilder::new("bounded");
        b.add(CyclePart::new("tick", |_| ()), 1).unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(50).trace(true).trace_capacity(20))
            .unwrap();
        let trace = report.trace().unwrap();
        // 50 iterations made 100 events (a part and an iteration each).
        assert_eq!(trace.events().len(), 20);
        assert_eq!(trace.dropped(), 80);
        // The latest ones are kept.
        assert!(
            trace.events().iter().all(|e| e.iteration > 40),
            "{:?}",
            trace.events()
        );
    })
}

#[test]
fn a_retried_part_shows_its_retries_in_the_trace() {
    guarded(|| {
        let mut b = CycleBuilder::new("retried");
        b.add(
            CyclePart::fallible("flaky", |ctx| {
                if ctx.attempt() < 3 {
                    Err("not yet")
                } else {
                    Ok(())
                }
            })
            .retry(sk_core::RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(5)),
            1,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().trace(true)).unwrap();
        let flaky = report
            .trace()
            .unwrap()
            .events()
            .iter()
            .find(|e| e.name == "flaky")
            .cloned()
            .unwrap();
        assert_eq!(flaky.retries, 2);
    })
}

#[test]
fn a_run_thread_that_panics_outside_any_part_is_its_own_error() {
    guarded(|| {
        let mut b = CycleBuilder::new("observer-panics");
        b.add(CyclePart::new("a", |_| 1u8), 1).unwrap();
        let handle = b
            .build()
            .unwrap()
            .spawn(Run::times(3).on_iteration(|_| panic!("the observer broke")))
            .unwrap();
        match handle.join() {
            Err(RunError::Panicked { cycle, message }) => {
                assert_eq!(cycle, "observer-panics");
                assert_eq!(message, "the observer broke");
            }
            other => panic!("expected a panicked run thread, got {other:?}"),
        }
    })
}

/// A part output that holds a reference to a shared token.
#[derive(serde::Serialize)]
struct Holding(#[serde(skip)] Arc<()>);

#[test]
fn a_cycles_next_run_counts_only_its_own_ends_and_the_last_keeps_no_output() {
    guarded(|| {
        // Run-local state lives in arrays a cycle's next run reuses: each
        // run must count only its own ends, and a finished run must hold
        // no part's output.
        let token = Arc::new(());
        let held = Arc::clone(&token);
        let mut b = CycleBuilder::new("reused");
        let root = b
            .root(CyclePart::new("make", move |_| Holding(Arc::clone(&held))))
            .unwrap();
        b.then(
            root,
            CyclePart::fallible("fail", |_| Err::<(), _>(std::io::Error::other("always")))
                .error_mode(sk_cycle::ErrorMode::Skip),
        )
        .unwrap();
        let cycle = b.build().unwrap();
        for run in 0..3 {
            let report = cycle.run(Run::times(4).threads(2)).unwrap();
            let parts = &report.stats().parts;
            let count = |name: &str, state| {
                parts
                    .iter()
                    .find(|p| &*p.name == name)
                    .unwrap()
                    .count(state)
            };
            assert_eq!(count("make", PartState::Succeeded), 4, "run {run}");
            assert_eq!(count("fail", PartState::Failed), 4, "run {run}");
            assert_eq!(count("fail", PartState::Succeeded), 0, "run {run}");
            drop(report);
            assert_eq!(Arc::strong_count(&token), 2, "run {run} kept an output");
        }
    })
}

#[test]
fn a_pause_between_iterations_is_not_part_of_either() {
    guarded(|| {
        let mut b = CycleBuilder::new("paused");
        b.add(CyclePart::new("tick", |_| ()), 1).unwrap();
        let report = b
            .build()
            .unwrap()
            .run(
                Run::times(4)
                    .interval(Duration::from_millis(40))
                    .threads(1)
                    .trace(true),
            )
            .unwrap();
        let durations: Vec<Duration> = report
            .trace()
            .unwrap()
            .events()
            .iter()
            .filter(|e| e.kind == sk_cycle::TraceKind::Iteration)
            .map(|e| e.duration)
            .collect();
        assert_eq!(durations.len(), 4);
        for d in &durations {
            assert!(*d < Duration::from_millis(40), "{durations:?}");
        }
        let stats = &report.stats().iterations;
        assert_eq!(stats.count, 4);
        assert!(stats.max < Duration::from_millis(40), "{stats:?}");
    })
}
