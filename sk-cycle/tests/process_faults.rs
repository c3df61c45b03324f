//! Worker processes of a run killed from outside, idle and busy, pooled
//! and named: a part fails only when a worker died under it while it ran,
//! and no result is lost, doubled or wrong.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sk_core::{RetryPolicy, SkFunction};
use sk_cycle::{CycleBuilder, CyclePart, ErrorMode, PartState, Run, SyncMode};
use sk_process::Backend;
use sk_testkit::{KillStorm, hang_guard, kill, wait_dead, worker_children};

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn worker_pid() -> u32 {
    std::process::id()
}

/// Notes its start as a line `{part}:{input}` appended to the file
/// `log` (one write: nothing is done before it), works a little, and
/// returns `input * 3`.
#[sk_core::function(crate = ::sk_core)]
fn tripled(input: u64, part: String, log: String, ms: u64) -> u64 {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("the trial's log");
    file.write_all(format!("{part}:{input}\n").as_bytes())
        .expect("the trial's log");
    std::thread::sleep(Duration::from_millis(ms));
    input * 3
}

/// How many times each `part:input` started, from the trial's log.
fn starts(log: &std::path::Path) -> BTreeMap<String, u64> {
    let mut starts = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        *starts.entry(line.to_owned()).or_insert(0) += 1;
    }
    starts
}

fn process_only() -> bool {
    // Killing a thread worker from outside would kill the test itself.
    Backend::from_env() == Backend::Process
}

/// Kills the worker whose pid a part reported, and waits until it is gone.
fn kill_reported(ctx: &sk_cycle::PartContext<'_>) {
    if let Ok(&pid) = ctx.input_as::<u32>() {
        kill(pid);
        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} lives on");
    }
}

#[test]
fn a_worker_killed_between_iterations_is_never_handed_the_next_part() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(120), || {
        for named in [false, true] {
            let part =
                CyclePart::function("pid", SkFunction::builder("worker_pid").build().unwrap());
            // The default error mode: a part that fails fails the
            // iteration; the part must not fail at all.
            let part = if named {
                part.in_named_process("solo")
            } else {
                part.in_process()
            };
            let mut b = CycleBuilder::new(if named { "idle-named" } else { "idle-pooled" });
            b.add(part, 1).unwrap();
            b.add(
                CyclePart::new("killer", |ctx| {
                    kill_reported(ctx);
                }),
                2,
            )
            .unwrap();
            let pids = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&pids);
            let report = b
                .build()
                .unwrap()
                .run(
                    Run::times(6)
                        .threads(2)
                        .process_workers(1)
                        .on_iteration(move |it| {
                            assert_eq!(
                                it.state_of("pid"),
                                Some(PartState::Succeeded),
                                "iteration {}: {:?}",
                                it.iteration(),
                                it.error_of("pid")
                            );
                            seen.lock()
                                .unwrap()
                                .push(*it.output_get::<u32>("pid").unwrap());
                        }),
                )
                .unwrap();
            assert_eq!(report.iterations(), 6);
            assert_eq!(report.error_iterations(), 0, "named: {named}");
            let mut pids = pids.lock().unwrap().clone();
            pids.sort_unstable();
            pids.dedup();
            assert_eq!(pids.len(), 6, "a fresh worker each time (named: {named})");
        }
    });
}

/// What one part ended as in one iteration.
#[derive(Debug)]
struct Seen {
    state: Option<PartState>,
    output: Option<u64>,
    error: Option<String>,
}

type Record = Arc<Mutex<BTreeMap<(u64, &'static str), Seen>>>;

const TRIAL_PARTS: [&str; 3] = ["pooled", "pooled_retry", "named"];

/// A cycle whose root gives the iteration, split into three process
/// parts that triple it: pooled, pooled in retry mode, and named.
fn trial_cycle(name: &str, log: &std::path::Path) -> CycleBuilder {
    let tripled = |part: &str, ms: u64| {
        SkFunction::builder("tripled")
            .arg("part", part.to_owned())
            .arg("log", log.display().to_string())
            .arg("ms", ms)
            .build()
            .unwrap()
    };
    let mut b = CycleBuilder::new(name);
    b.add(CyclePart::new("iter", |ctx| ctx.iteration()), 1)
        .unwrap();
    b.split(
        [
            CyclePart::function("pooled", tripled("pooled", 3)).in_process(),
            CyclePart::function("pooled_retry", tripled("pooled_retry", 1))
                .in_process()
                .error_mode(ErrorMode::Retry)
                .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(20)),
            CyclePart::function("named", tripled("named", 2)).in_named_process("trial-named"),
        ],
        2,
    )
    .unwrap();
    b
}

/// Runs `b` `iterations` times, recording what each trial part ended as.
fn run_trial(b: CycleBuilder, iterations: u64) -> Record {
    let seen: Record = Arc::default();
    let record = Arc::clone(&seen);
    let report = b
        .build()
        .unwrap()
        .run(
            Run::times(iterations)
                .threads(2)
                .process_workers(2)
                .on_iteration(move |it| {
                    let iteration = *it.output_as::<u64>("iter").unwrap();
                    for part in TRIAL_PARTS {
                        let seen = Seen {
                            state: it.state_of(part),
                            output: it.output_get::<u64>(part).copied(),
                            error: it.error_of(part).map(ToString::to_string),
                        };
                        let old = record.lock().unwrap().insert((iteration, part), seen);
                        assert!(old.is_none(), "iteration {iteration} reported twice");
                    }
                }),
        )
        .unwrap();
    assert_eq!(report.iterations(), iterations);
    assert_eq!(
        seen.lock().unwrap().len() as u64,
        iterations * TRIAL_PARTS.len() as u64,
        "nothing lost"
    );
    seen
}

fn trial_log(name: &str) -> std::path::PathBuf {
    let log = std::env::temp_dir().join(format!("sk-{name}-{}.log", std::process::id()));
    std::fs::write(&log, "").unwrap();
    log
}

#[test]
fn workers_killed_at_random_while_idle_cost_no_part_anything() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(240), || {
        const ITERATIONS: u64 = 30;
        let log = trial_log("idle-trial");
        let mut b = trial_cycle("idle-trial", &log);
        // After every part of a level has ended (a barrier per level), a
        // thread part kills some of the run's workers, now idle, at a
        // random moment.
        b = b.sync(SyncMode::Level);
        b.add(
            CyclePart::new("killer", |_| {
                let mut rng = fastrand::Rng::new();
                std::thread::sleep(Duration::from_micros(rng.u64(0..2000)));
                let mut killed = 0u32;
                for pid in worker_children("idle-trial") {
                    if rng.bool() {
                        kill(pid);
                        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} lives on");
                        killed += 1;
                    }
                }
                killed
            }),
            (4, 1),
        )
        .unwrap();
        let seen = run_trial(b, ITERATIONS);
        let starts = starts(&log);
        let _ = std::fs::remove_file(&log);
        for ((iteration, part), seen) in seen.lock().unwrap().iter() {
            assert_eq!(
                (seen.state, seen.output),
                (Some(PartState::Succeeded), Some(iteration * 3)),
                "{part} in {iteration}: {:?}",
                seen.error
            );
            // Never run twice: no kill came while a part ran.
            assert_eq!(starts.get(&format!("{part}:{iteration}")), Some(&1));
        }
    });
}

#[test]
fn a_kill_trial_loses_doubles_and_corrupts_nothing() {
    if !process_only() {
        return;
    }
    hang_guard(Duration::from_secs(240), || {
        const ITERATIONS: u64 = 60;
        let log = trial_log("kill-trial");
        let b = trial_cycle("kill-trial", &log);
        let storm = KillStorm::start(
            "kill-trial",
            Duration::from_millis(2),
            Duration::from_millis(25),
        );
        let seen = run_trial(b, ITERATIONS);
        let killed = storm.stop_killed();
        assert!(!killed.is_empty(), "the trial killed nothing");
        let starts = starts(&log);
        let _ = std::fs::remove_file(&log);
        let (mut failed, mut failed_unlogged) = (0, 0);
        for ((iteration, part), seen) in seen.lock().unwrap().iter() {
            let runs = starts
                .get(&format!("{part}:{iteration}"))
                .copied()
                .unwrap_or(0);
            match seen.state {
                Some(PartState::Succeeded) => {
                    assert_eq!(seen.output, Some(iteration * 3), "{part} in {iteration}");
                    assert!(runs >= 1);
                }
                Some(PartState::Failed) => {
                    failed += 1;
                    // Only a death, with the call in the worker's hands,
                    // of a worker the trial killed.
                    let error = seen.error.as_deref().unwrap_or_default();
                    let pid = error
                        .split("(pid ")
                        .nth(1)
                        .and_then(|rest| rest.split(')').next())
                        .and_then(|pid| pid.parse::<u32>().ok());
                    assert!(error.contains(") died: "), "{part} in {iteration}: {error}");
                    assert!(
                        pid.is_some_and(|pid| killed.contains(&pid)),
                        "{part} in {iteration}: not a worker the trial killed: {error}"
                    );
                    assert_ne!(part, &"pooled_retry", "retried past 20 deaths: {error}");
                    // A kill can land after the worker took the call and
                    // before the function's first line logged it.
                    if runs == 0 {
                        failed_unlogged += 1;
                    }
                }
                other => panic!("{part} in {iteration}: {other:?} {:?}", seen.error),
            }
        }
        println!(
            "kill trial: {} kills, {failed} parts failed under a dying worker \
             ({failed_unlogged} before their first line)",
            killed.len()
        );
    });
}
