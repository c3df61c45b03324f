//! Parts placed in worker processes (or worker threads under
//! `SK_SPAWN_BACKEND=thread`): isolation, data in and out, timeouts that
//! kill, deaths mid-part, and what cannot cross.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sk_core::{SkFunction, SkLambda};
use sk_cycle::{BuildError, CycleBuilder, CyclePart, ErrorMode, PartState, Run};
use sk_process::Backend;
use sk_reg::GlobalStorage;
use sk_testkit::guarded;

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn part_pid() -> u32 {
    std::process::id()
}

#[sk_core::function(crate = ::sk_core)]
fn square(input: u64) -> u64 {
    input * input
}

/// Sleeps up to `ms`, leaving early when its stop token is set.
#[sk_core::function(crate = ::sk_core)]
fn slow_part(ms: u64) -> u64 {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if sk_core::StopToken::current().is_some_and(|t| t.is_stopped()) {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    ms
}

/// Dies on its first call (per key): the worker process is killed with
/// SIGKILL mid-part, or, for a thread worker, the call fails as a dead
/// worker's would.
#[sk_core::function(crate = ::sk_core)]
fn dies_once(key: String) -> Result<u32, String> {
    let calls = GlobalStorage::global()
        .update(&key, |n: Option<u32>| n.unwrap_or(0) + 1)
        .map_err(|e| e.to_string())?;
    if calls == 1 {
        if sk_process::is_worker() {
            let me = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &me])
                .status();
            // Not reached: SIGKILL cannot be caught.
            std::thread::sleep(Duration::from_secs(30));
        }
        return Err("worker lost".to_owned());
    }
    Ok(calls)
}

fn backend() -> Backend {
    Backend::from_env()
}

fn handle(name: &str) -> SkFunction {
    SkFunction::builder(name).build().unwrap()
}

#[test]
fn a_process_part_runs_in_another_process_and_its_output_flows_on() {
    guarded(|| {
        let mut b = CycleBuilder::new("proc-data");
        b.add(CyclePart::new("seed", |_| 7u64), 1).unwrap();
        b.split(
            [
                CyclePart::function("square", handle("square")).in_process(),
                CyclePart::function("pid", handle("part_pid")).in_process(),
            ],
            2,
        )
        .unwrap();
        b.add(
            CyclePart::new("check", |ctx| ctx.input_as::<u64>().ok().copied()),
            (4, 1),
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(3).threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("square"), Some(PartState::Succeeded));
        assert_eq!(last.output_get::<u64>("square"), Some(&49));
        assert_eq!(last.output_as::<Option<u64>>("check"), Some(&Some(49)));
        let pid = *last.output_get::<u32>("pid").unwrap();
        match backend() {
            Backend::Process => assert_ne!(pid, std::process::id()),
            _ => assert_eq!(pid, std::process::id()),
        }
    })
}

#[test]
fn a_process_part_over_its_timeout_is_killed_and_reported_timed_out() {
    guarded(|| {
        let slow = SkFunction::builder("slow_part")
            .arg("ms", 20_000u64)
            .build()
            .unwrap();
        let mut b = CycleBuilder::new("proc-timeout");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        b.split(
            [
                CyclePart::function("slow", slow)
                    .in_process()
                    .timeout(Duration::from_millis(200))
                    .error_mode(ErrorMode::Skip),
                CyclePart::new("other", |_| 1u8),
            ],
            2,
        )
        .unwrap();
        b.add(CyclePart::new("after_slow", |_| ()), (4, 1)).unwrap();
        let started = Instant::now();
        let report = b.build().unwrap().run(Run::times(2).threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(
            last.state_of("slow"),
            Some(PartState::TimedOut),
            "{:?}",
            last.error_of("slow")
        );
        assert_eq!(last.state_of("after_slow"), Some(PartState::Skipped));
        assert_eq!(last.state_of("other"), Some(PartState::Succeeded));
        assert_eq!(report.iterations(), 2);
        // Both iterations ended by the kill, not by the 20 s sleep.
        assert!(started.elapsed() < Duration::from_secs(15));
    })
}

#[test]
fn a_worker_dying_mid_part_fails_the_part_or_retries_it() {
    guarded(|| {
        let key = format!("dies-once-clean-{}", backend());
        let dies = SkFunction::builder("dies_once")
            .arg("key", key)
            .build()
            .unwrap();
        let mut b = CycleBuilder::new("proc-death");
        b.add(CyclePart::function("fragile", dies).in_process(), 1)
            .unwrap();
        b.add(CyclePart::new("child", |_| ()), 2).unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("fragile"), Some(PartState::Failed));
        assert_eq!(last.state_of("child"), Some(PartState::UpstreamFailed));
        let err = last.error_of("fragile").unwrap().to_string();
        assert!(
            err.contains("died") || err.contains("worker lost"),
            "the error says what happened: {err}"
        );

        let key = format!("dies-once-retry-{}", backend());
        let dies = SkFunction::builder("dies_once")
            .arg("key", key)
            .build()
            .unwrap();
        let mut b = CycleBuilder::new("proc-death-retry");
        b.add(
            CyclePart::function("fragile", dies)
                .in_process()
                .retry(sk_core::RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3)),
            1,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("fragile"), Some(PartState::Succeeded));
        assert_eq!(
            last.output_get::<u32>("fragile"),
            Some(&2),
            "the second attempt ran"
        );
    })
}

#[test]
fn parts_bound_to_one_named_process_share_it() {
    guarded(|| {
        let mut b = CycleBuilder::new("proc-named");
        b.add(
            CyclePart::function("a", handle("part_pid")).in_named_process("gpu"),
            1,
        )
        .unwrap();
        b.add(
            CyclePart::function("b", handle("part_pid")).in_named_process("gpu"),
            2,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::times(3).threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.output_get::<u32>("a"), last.output_get::<u32>("b"));
    })
}

#[test]
fn closures_placed_in_a_process_are_build_errors_naming_the_part() {
    let mut b = CycleBuilder::new("proc-lambda");
    b.add(
        CyclePart::function("local", SkLambda::new("counter", || 1u8)).in_process(),
        1,
    )
    .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(err, BuildError::LocalOnlyInProcess { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("part \"local\" at 1-1"), "{msg}");
    assert!(msg.contains("SkLambda) \"counter\""), "{msg}");

    let mut b = CycleBuilder::new("proc-closure");
    b.add(CyclePart::new("ctx", |_| ()).in_named_process("p"), 1)
        .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        err.to_string().contains("a closure over its context"),
        "{err}"
    );
}

#[test]
fn a_process_part_is_traced_under_its_worker_process() {
    guarded(|| {
        let mut b = CycleBuilder::new("proc-trace");
        b.add(
            CyclePart::function("pid", handle("part_pid")).in_process(),
            1,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::times(2).threads(2).trace(true))
            .unwrap();
        let worker = *report.last().unwrap().output_get::<u32>("pid").unwrap();
        let event = report
            .trace()
            .unwrap()
            .events()
            .iter()
            .find(|e| e.name == "pid")
            .cloned()
            .unwrap();
        assert_eq!(event.pid, worker, "the worker it ran in");
        let json: serde_json::Value =
            serde_json::from_str(&report.trace().unwrap().to_chrome_json()).unwrap();
        let rows = json["traceEvents"].as_array().unwrap();
        let on_worker = rows
            .iter()
            .any(|e| e["name"] == "pid" && e["pid"].as_u64() == Some(u64::from(worker)));
        assert!(on_worker, "{json}");
        if backend() == Backend::Process {
            assert!(
                rows.iter()
                    .any(|e| e["name"] == "process_name"
                        && e["pid"].as_u64() == Some(u64::from(worker))),
                "{json}"
            );
        }
    })
}

/// A function part that reads its run through `current_part`: the store,
/// a declared output, its input's part, and some reads that must fail.
#[sk_core::function(crate = ::sk_core)]
fn scaled(input: u64) -> Result<(u64, u64, u64, Vec<String>), sk_cycle::ReadError> {
    let part = sk_cycle::current_part()?;
    assert_eq!(part.name(), "scaled");
    let factor = part.store().get::<u64>("factor")?;
    let offset = part.output::<u64>("offset")?;
    let parent = part.output::<u64>("input")?;
    assert_eq!(*parent, input);
    let calls = part
        .store()
        .update("calls", |n: Option<&u64>| n.copied().unwrap_or(0) + 1)?;
    part.store().set("last_input", input)?;
    let failures = vec![
        part.output::<u64>("nobody").unwrap_err().to_string(),
        part.output::<u64>("side").unwrap_err().to_string(),
        part.output::<String>("offset").unwrap_err().to_string(),
        part.store().get::<u64>("missing").unwrap_err().to_string(),
    ];
    Ok((input * factor + *offset, part.iteration(), calls, failures))
}

/// The latest outputs below `offset` that are `u64`s over 5.
#[sk_core::function(crate = ::sk_core)]
fn tally() -> Result<Vec<(String, u64)>, sk_cycle::ReadError> {
    let part = sk_cycle::current_part()?;
    let below = part.descendants_where::<u64, _>("offset", |_, v| *v > 5)?;
    Ok(below
        .into_iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect())
}

/// The cycle of [`a_function_part_sees_its_run_the_same_in_a_process_and_on_a_thread`],
/// its function parts in processes or not.
fn reading_cycle(in_process: bool) -> sk_cycle::Cycle {
    let place = |part: CyclePart| if in_process { part.in_process() } else { part };
    let mut b = CycleBuilder::new("reads");
    b.add(
        CyclePart::new("offset", |ctx| {
            ctx.store().set("factor", 10u64);
            ctx.store()
                .set_local("conn", std::sync::Arc::new(std::sync::Mutex::new(0u8)));
            1u64
        }),
        1,
    )
    .unwrap();
    b.split(
        [
            CyclePart::new("input", |ctx| 3 + ctx.iteration()),
            CyclePart::new("side", |_| 9u64),
        ],
        2,
    )
    .unwrap();
    b.add(
        place(CyclePart::function("scaled", handle("scaled"))).reads(["offset"]),
        (4, 1),
    )
    .unwrap();
    b.add(place(CyclePart::function("tally", handle("tally"))), (5, 1))
        .unwrap();
    b.build().unwrap()
}

#[test]
fn a_function_part_sees_its_run_the_same_in_a_process_and_on_a_thread() {
    guarded(|| {
        for in_process in [true, false] {
            let store = std::sync::Arc::new(sk_cycle::Store::new());
            let report = reading_cycle(in_process)
                .run(
                    Run::times(3)
                        .threads(2)
                        .store(std::sync::Arc::clone(&store)),
                )
                .unwrap();
            let last = report.last().unwrap();
            assert_eq!(
                last.state_of("scaled"),
                Some(PartState::Succeeded),
                "{in_process}"
            );
            let (value, iteration, calls, failures) = last
                .output_get::<(u64, u64, u64, Vec<String>)>("scaled")
                .unwrap()
                .clone();
            // Iteration 3: input 6, factor 10 from the store, offset 1.
            assert_eq!(
                (value, iteration, calls),
                (61, 3, 3),
                "in process: {in_process}"
            );
            assert_eq!(store.get::<u64>("calls").unwrap(), 3);
            assert_eq!(store.get::<u64>("last_input").unwrap(), 6);
            assert_eq!(
                failures,
                [
                    "part \"scaled\" reads \"nobody\", but the cycle has no part of that name",
                    "part \"scaled\" reads \"side\" without declaring it: add .reads([\"side\"]) \
                     (a part ordered before it) or .reads_latest([\"side\"]) to the reader",
                    "the output of part \"offset\" is a `u64`, not a `String`",
                    "the store has no value under \"missing\"",
                ],
                "in process: {in_process}"
            );
            // The u64s over 5 below "offset": its own branch's input of
            // this iteration, the other branch's latest.
            let below = last.output_get::<Vec<(String, u64)>>("tally").unwrap();
            assert_eq!(
                below,
                &[("input".to_owned(), 6), ("side".to_owned(), 9)],
                "in process: {in_process}"
            );
        }
    })
}

/// Reads a value set with `set_local` from wherever it runs.
#[sk_core::function(crate = ::sk_core)]
fn reads_local() -> String {
    let part = sk_cycle::current_part().unwrap();
    match part.store().get_value("conn") {
        Ok(_) => "read".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_value_that_cannot_leave_the_run_is_a_clear_error_in_a_process() {
    guarded(|| {
        let mut b = CycleBuilder::new("local-store");
        b.add(
            CyclePart::new("setup", |ctx| {
                ctx.store()
                    .set_local("conn", std::sync::Arc::new(std::sync::Mutex::new(0u8)));
            }),
            1,
        )
        .unwrap();
        b.split(
            [
                CyclePart::function("far", handle("reads_local")).in_process(),
                CyclePart::function("near", handle("reads_local")),
            ],
            2,
        )
        .unwrap();
        let report = b.build().unwrap().run(Run::once()).unwrap();
        let last = report.last().unwrap();
        assert_eq!(
            last.output_get::<String>("far").map(String::as_str),
            Some(
                "the store's value under \"conn\" exists only in the run's process; a part in a \
                 worker process cannot read it"
            )
        );
        assert_eq!(
            last.output_get::<String>("near").map(String::as_str),
            Some("read")
        );
    })
}

#[test]
fn current_part_outside_a_part_says_so() {
    assert!(matches!(
        sk_cycle::current_part(),
        Err(sk_cycle::ReadError::NotInPart)
    ));
    guarded(|| {
        // A worker's call made by someone other than a cycle: nobody
        // answers for a run.
        let worker = sk_process::Worker::spawn("not-a-cycle", backend()).unwrap();
        let err = worker
            .call(
                &handle("tally"),
                &sk_core::Args::new(),
                Some(Duration::from_secs(20)),
            )
            .unwrap_err();
        let text = sk_core::error_chain(&err);
        assert!(
            text.contains("cannot reach the run") && text.contains("nobody answers questions"),
            "{text}"
        );
    })
}

/// Panics: a function part that never returns.
#[sk_core::function(crate = ::sk_core)]
fn boom() -> u8 {
    panic!("boom")
}

/// The run's one-thread pool, shared by `outer` and the cycle it runs.
static SHARED_POOL: std::sync::OnceLock<std::sync::Arc<rayon::ThreadPool>> =
    std::sync::OnceLock::new();

/// Runs a cycle whose function part panics, on this same pool thread, then
/// asks who it is.
#[sk_core::function(crate = ::sk_core)]
fn outer() -> String {
    let pool = std::sync::Arc::clone(SHARED_POOL.get().expect("set by the test"));
    let mut b = CycleBuilder::new("inner");
    b.add(CyclePart::function("boom", handle("boom")), 1)
        .unwrap();
    let inner = b.build().unwrap().run(Run::once().pool(pool)).unwrap();
    assert_eq!(
        inner.last().unwrap().state_of("boom"),
        Some(PartState::Failed)
    );
    sk_cycle::current_part()
        .map(|p| p.name().to_owned())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn a_function_part_keeps_its_identity_after_a_nested_part_panics() {
    guarded(|| {
        let pool = std::sync::Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap(),
        );
        SHARED_POOL.set(std::sync::Arc::clone(&pool)).unwrap();
        // `outer` is the outer cycle's second part, `boom` the inner one's
        // first: a thread left with boom's place would name `start`.
        let mut b = CycleBuilder::new("outer-cycle");
        b.add(CyclePart::new("start", |_| ()), 1).unwrap();
        b.add(CyclePart::function("outer", handle("outer")), 2)
            .unwrap();
        let report = b.build().unwrap().run(Run::once().pool(pool)).unwrap();
        assert_eq!(
            report
                .last()
                .unwrap()
                .output_get::<String>("outer")
                .map(String::as_str),
            Some("outer")
        );
    })
}
