//! Journaled runs killed with SIGKILL at random moments and started
//! again: nothing lost, nothing reported done run twice, a job made by a
//! recorded step made once, an at-most-once part never run twice.
//!
//! Each test re-executes this test binary as the run (its child side is
//! chosen by an environment variable) and kills it from here. The number
//! of kills of the main trial is `SK_KILL_TRIALS` (default 200).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sk_core::{Retry, RetryPolicy, SkFunction, SystemClock};
use sk_cycle::{
    Cycle, CycleBuilder, CyclePart, Durability, ErrorMode, PartError, PartState, Run, Store,
    SyncMode,
};
use sk_journal::{Journal, PartRecord};
use sk_testkit::hang_guard;
use std::sync::mpsc::{Receiver, RecvTimeoutError};

sk_process::worker_test!();

/// (iteration, part).
type Key = (u64, String);

/// How long a child may take before the test gives up on it.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// Appends `<iteration> <part>` to the effects file (one `write`: a kill
/// cannot leave half a line).
fn note_start(effects: &str, iteration: u64, part: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(effects)
        .expect("the effects file");
    file.write_all(format!("{iteration} {part}\n").as_bytes())
        .expect("the effects file");
}

/// How many times each (iteration, part) started, from the effects file.
fn starts(effects: &Path) -> BTreeMap<Key, u64> {
    let mut starts = BTreeMap::new();
    let text = std::fs::read_to_string(effects).unwrap_or_default();
    for line in text.lines() {
        let (iteration, part) = line.split_once(' ').expect("an effects line");
        *starts
            .entry((iteration.parse().unwrap(), part.to_owned()))
            .or_insert(0) += 1;
    }
    starts
}

/// A run of this binary as a child, its stdout lines arriving on a channel.
struct Child {
    process: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Child {
    fn spawn(test: &str, env: &[(&str, String)]) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let (process, lines) = sk_testkit::spawn_lines(&mut command).unwrap();
        Child {
            process,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, without the "test <name> ... " the test harness
    /// starts the test's first line with.
    fn next_line(&self, deadline: Instant) -> Result<String, RecvTimeoutError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(wait)?;
        Ok(
            match line
                .strip_prefix("test ")
                .and_then(|l| l.split_once(" ... "))
            {
                Some((_, rest)) => rest.to_owned(),
                None => line,
            },
        )
    }

    /// Waits for a line starting with `prefix`; `None` if the child's
    /// stdout ends first.
    fn wait_for(&mut self, prefix: &str) -> Option<String> {
        let deadline = Instant::now() + CHILD_LIMIT;
        loop {
            match self.next_line(deadline) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.process.kill();
                    panic!("no \"{prefix}\" from the child in {CHILD_LIMIT:?}");
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Kills the child at `at` unless it has ended by then; its exit
    /// status and every line it wrote.
    fn kill_at(mut self, at: Instant) -> (ExitStatus, Vec<String>) {
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return self.finish(status);
            }
            let now = Instant::now();
            if now >= at {
                let _ = self.process.kill();
                let status = self.process.wait().unwrap();
                return self.finish(status);
            }
            std::thread::sleep((at - now).min(Duration::from_millis(1)));
        }
    }

    /// Waits for the child to end by itself.
    fn wait(self) -> (ExitStatus, Vec<String>) {
        self.kill_at(Instant::now() + CHILD_LIMIT)
    }

    /// The rest of the child's lines: its stdout closes when it (and any
    /// worker process it left, which dies with it) is gone.
    fn finish(mut self, status: ExitStatus) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + CHILD_LIMIT;
        loop {
            match self.next_line(deadline) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return (status, self.seen),
                Err(RecvTimeoutError::Timeout) => panic!("the child's stdout stayed open"),
            }
        }
    }
}

fn killed(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

/// Opens the journal at `path` (its run is dead) and checks every page.
fn check_journal(path: &Path) -> Journal {
    let journal = Journal::open(path, Durability::default())
        .unwrap_or_else(|e| panic!("the journal cannot be opened after a kill: {e}"));
    journal
        .check_integrity()
        .unwrap_or_else(|e| panic!("the journal is damaged after a kill: {e}"));
    journal
}

// ---------------------------------------------------------------------
// The main trial: a cycle of nine parts, one in a worker process, each
// counting its runs in the store.
// ---------------------------------------------------------------------

const TRIAL: &str = "killed_at_random_moments_a_run_resumes_without_losing_or_repeating_work";
const TRIAL_ENV: &str = "SK_KILL_TRIAL";
const ITERATIONS: u64 = 15;
const WIDE: [&str; 6] = ["w1", "w2", "w3", "w4", "w5", "w6"];
const PARTS: [&str; 9] = ["seed", "w1", "w2", "w3", "w4", "w5", "w6", "remote", "sink"];
/// The most parts that can be running at once (the middle level).
const IN_FLIGHT: usize = 7;

/// A short random pause, so that kills land inside parts too.
fn nap() {
    std::thread::sleep(Duration::from_micros(fastrand::u64(0..3_000)));
}

/// Counts one run of `part` under `count/<part>` in the run's store.
fn count(ctx: &sk_cycle::PartContext<'_>, part: &str) {
    ctx.store()
        .update(&format!("count/{part}"), |n: Option<&u64>| {
            n.copied().unwrap_or(0) + 1
        })
        .unwrap();
}

/// The trial's part in a worker process: notes its start, counts itself
/// in the run's store (from the worker), returns `input * 3 + 1`.
#[sk_core::function(crate = ::sk_core)]
fn trial_remote(input: u64, effects: String) -> Result<u64, String> {
    let part = sk_cycle::current_part().map_err(|e| e.to_string())?;
    note_start(&effects, part.iteration(), "remote");
    nap();
    part.store()
        .update("count/remote", |n: Option<&u64>| {
            n.copied().unwrap_or(0) + 1
        })
        .map_err(|e| e.to_string())?;
    Ok(input * 3 + 1)
}

fn trial_cycle(effects: &str) -> Cycle {
    let mut b = CycleBuilder::new("trial").sync(SyncMode::Level);
    let e = effects.to_owned();
    b.add(
        CyclePart::new("seed", move |ctx| {
            note_start(&e, ctx.iteration(), "seed");
            count(ctx, "seed");
            ctx.iteration() * 1_000
        }),
        1,
    )
    .unwrap();
    let mut level: Vec<CyclePart> = WIDE
        .iter()
        .zip(1u64..)
        .map(|(&name, n)| {
            let e = effects.to_owned();
            CyclePart::new(name, move |ctx| {
                note_start(&e, ctx.iteration(), name);
                nap();
                count(ctx, name);
                ctx.input_as::<u64>().unwrap() * 10 + n
            })
        })
        .collect();
    level.push(
        CyclePart::function(
            "remote",
            SkFunction::builder("trial_remote")
                .arg("effects", effects.to_owned())
                .build()
                .unwrap(),
        )
        .in_process(),
    );
    b.split(level, 2).unwrap();
    let e = effects.to_owned();
    b.add(
        CyclePart::new("sink", move |ctx| {
            note_start(&e, ctx.iteration(), "sink");
            count(ctx, "sink");
            let mut sum = *ctx.input_as::<u64>().unwrap();
            for name in WIDE[1..].iter().chain(&["remote"]) {
                sum += *ctx.output::<u64>(name).unwrap();
            }
            sum
        })
        .reads(WIDE[1..].iter().copied().chain(["remote"])),
        4,
    )
    .unwrap();
    b.build().unwrap()
}

/// The child: runs the trial to its end (resuming), reporting each
/// committed record as `R <iteration> <part>`, then the store's counts.
fn trial_child(spec: &str) {
    let (journal, effects) = spec.split_once('|').unwrap();
    let store = Arc::new(Store::new());
    let run = Run::times(ITERATIONS)
        .journal(journal)
        .run_id("trial")
        .keep_iterations(1_000_000)
        .process_workers(2)
        .store(Arc::clone(&store))
        .on_recorded(|r| println!("R {} {}", r.iteration, r.part))
        .on_iteration(|it| {
            for (part, error) in it.errors() {
                let why = sk_core::error_chain(error);
                println!("ERROR {} {part}: {why}", it.iteration());
            }
        });
    let report = trial_cycle(effects).run(run).unwrap();
    assert!(!report.is_error(), "{report:?}");
    for part in PARTS {
        let n: u64 = store.get(&format!("count/{part}")).unwrap();
        println!("COUNT {part} {n}");
    }
    println!("DONE");
}

/// What one round of kills saw.
#[derive(Default)]
struct Round {
    kills: usize,
    /// Per kill: parts started in the killed child, not reported done
    /// there, and started again later.
    reruns: Vec<usize>,
    reported: usize,
}

/// Runs the trial in `dir` to its end, killing it at moments drawn
/// uniformly from `[0, span)` after each start, and checks what the
/// journal and the effects file say against `expected`.
fn kill_round(
    dir: &Path,
    span: Duration,
    expected: &BTreeMap<Key, (String, Option<Vec<u8>>)>,
    kills_left: usize,
) -> Round {
    let journal = dir.join("trial.journal");
    let effects = dir.join("effects");
    let spec = format!("{}|{}", journal.display(), effects.display());
    // Per child: the starts after it ended, and what it reported done.
    let mut children: Vec<(BTreeMap<Key, u64>, BTreeSet<Key>)> = Vec::new();
    let mut round = Round::default();
    let last_lines = loop {
        let child = Child::spawn(TRIAL, &[(TRIAL_ENV, spec.clone())]);
        let at = Instant::now() + span.mul_f64(fastrand::f64());
        let at = if round.kills < kills_left {
            at
        } else {
            Instant::now() + CHILD_LIMIT
        };
        let (status, lines) = child.kill_at(at);
        let reported: BTreeSet<Key> = lines
            .iter()
            .filter_map(|line| line.strip_prefix("R "))
            .map(|rest| {
                let (iteration, part) = rest.split_once(' ').unwrap();
                (iteration.parse().unwrap(), part.to_owned())
            })
            .collect();
        round.reported += reported.len();
        children.push((starts(&effects), reported));
        let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR")).collect();
        assert!(errors.is_empty(), "parts failed: {errors:#?}");
        if !killed(status) {
            assert!(
                status.success(),
                "the trial run failed: {status}\n{lines:#?}"
            );
            break lines;
        }
        round.kills += 1;
        drop(check_journal(&journal));
    };

    // Every (iteration, part) has one record, equal to the reference's.
    let records: BTreeMap<Key, (String, Option<Vec<u8>>)> = check_journal(&journal)
        .records("trial")
        .unwrap()
        .into_iter()
        .map(|r: PartRecord| ((r.iteration, r.part), (r.state, r.output)))
        .collect();
    let lost: Vec<&Key> = expected
        .keys()
        .filter(|k| !records.contains_key(k))
        .collect();
    assert!(lost.is_empty(), "lost parts: {lost:?}");
    assert_eq!(
        &records, expected,
        "the records differ from the reference run's"
    );
    for part in PARTS {
        assert!(
            last_lines.contains(&format!("COUNT {part} {ITERATIONS}")),
            "the store's count of {part} is wrong: {last_lines:#?}"
        );
    }

    // Nothing reported done ran again; re-runs of the rest are bounded.
    let last = children.last().unwrap().0.clone();
    for (k, (after, reported)) in children.iter().enumerate() {
        for key in reported {
            assert_eq!(
                last.get(key),
                after.get(key),
                "{key:?} was reported done by run {k} and ran again"
            );
        }
        if k + 1 == children.len() {
            break;
        }
        let before = k.checked_sub(1).map(|p| &children[p].0);
        let reruns = after
            .iter()
            .filter(|(key, n)| {
                let started_here = before.and_then(|b| b.get(*key)) != Some(n);
                started_here && !reported.contains(*key) && last.get(*key) > Some(n)
            })
            .count();
        round.reruns.push(reruns);
    }
    round
}

#[test]
fn killed_at_random_moments_a_run_resumes_without_losing_or_repeating_work() {
    if let Ok(spec) = std::env::var(TRIAL_ENV) {
        trial_child(&spec);
        return;
    }
    let target: usize = std::env::var("SK_KILL_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    hang_guard(Duration::from_secs(3_000), move || {
        let root = tempfile::tempdir().unwrap();
        // The reference: the same run, never killed.
        let reference = root.path().join("reference");
        std::fs::create_dir(&reference).unwrap();
        let journal = reference.join("trial.journal");
        let spec = format!(
            "{}|{}",
            journal.display(),
            reference.join("effects").display()
        );
        let started = Instant::now();
        let (status, lines) = Child::spawn(TRIAL, &[(TRIAL_ENV, spec)]).wait();
        let span = started.elapsed();
        assert!(status.success(), "the reference run failed: {lines:#?}");
        let expected: BTreeMap<Key, (String, Option<Vec<u8>>)> = check_journal(&journal)
            .records("trial")
            .unwrap()
            .into_iter()
            .map(|r| ((r.iteration, r.part), (r.state, r.output)))
            .collect();
        assert_eq!(expected.len(), ITERATIONS as usize * PARTS.len());
        assert!(expected.values().all(|(state, _)| state == "succeeded"));

        let (mut kills, mut rounds, mut reported) = (0, 0, 0);
        let mut reruns: Vec<usize> = Vec::new();
        while kills < target {
            let dir = root.path().join(format!("round-{rounds}"));
            std::fs::create_dir(&dir).unwrap();
            let round = kill_round(&dir, span, &expected, target - kills);
            kills += round.kills;
            reported += round.reported;
            reruns.extend(round.reruns);
            rounds += 1;
        }
        let most = reruns.iter().copied().max().unwrap_or(0);
        let total: usize = reruns.iter().sum();
        println!(
            "kill trials: {kills} kills in {rounds} rounds (span {span:?}); \
             {reported} completions reported, 0 re-run, 0 lost; \
             re-runs of unreported parts: {total} in all, at most {most} per kill"
        );
        // In flight, plus one commit batch: the parts that ended while the
        // writer gathered (5 ms) and committed the last batch — here at
        // most two iterations' worth.
        assert!(
            most <= IN_FLIGHT + 2 * PARTS.len(),
            "a kill cost {most} re-runs: {reruns:?}"
        );
    });
}

// ---------------------------------------------------------------------
// Durable await: a job made in a recorded step, polled until done.
// ---------------------------------------------------------------------

const AWAIT: &str = "a_job_made_in_a_step_is_made_once_however_often_the_poller_is_killed";
const AWAIT_ENV: &str = "SK_KILL_AWAIT";

/// A fake outside job service in a directory: `create` appends to
/// `creations` and returns the job's number; a job is done once the
/// file `done-<job>` exists.
struct JobService {
    dir: std::path::PathBuf,
}

impl JobService {
    fn create(&self, key: &str) -> u64 {
        let log = self.dir.join("creations");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        file.write_all(format!("{key}\n").as_bytes()).unwrap();
        std::fs::read_to_string(&log).unwrap().lines().count() as u64
    }

    fn poll(&self, job: u64) -> Result<String, String> {
        match std::fs::read_to_string(self.dir.join(format!("done-{job}"))) {
            Ok(result) => Ok(result),
            Err(_) => Err(format!("job {job} is still running")),
        }
    }

    fn creations(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("creations"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn await_child(dir: &str) {
    let service = Arc::new(JobService { dir: dir.into() });
    let mut b = CycleBuilder::new("await");
    b.add(
        CyclePart::fallible("submit", move |ctx| {
            let job: u64 = ctx.step("create", || service.create(&ctx.idempotency_key()))?;
            println!("POLLING {job}");
            let result = RetryPolicy::fixed(Duration::from_millis(2))
                .max_attempts(u32::MAX)
                .deadline(Duration::from_secs(100))
                .run(
                    &SystemClock,
                    &mut fastrand::Rng::new(),
                    |_| Retry::Yes,
                    |_| service.poll(job),
                )
                .map_err(|e| e.to_string())?;
            Ok::<_, sk_core::BoxError>(result)
        }),
        1,
    )
    .unwrap();
    let journal = Path::new(dir).join("await.journal");
    let report = b
        .build()
        .unwrap()
        .run(Run::once().journal(journal))
        .unwrap();
    let result = report
        .last()
        .unwrap()
        .output_get::<String>("submit")
        .unwrap()
        .clone();
    println!("RESULT {result}");
}

#[test]
fn a_job_made_in_a_step_is_made_once_however_often_the_poller_is_killed() {
    if let Ok(dir) = std::env::var(AWAIT_ENV) {
        await_child(&dir);
        return;
    }
    hang_guard(Duration::from_secs(600), || {
        let dir = tempfile::tempdir().unwrap();
        let env = [(AWAIT_ENV, dir.path().display().to_string())];
        let service = JobService {
            dir: dir.path().to_owned(),
        };
        let mut jobs = BTreeSet::new();
        for _ in 0..50 {
            let mut child = Child::spawn(AWAIT, &env);
            let polling = child.wait_for("POLLING ").expect("the child never polled");
            jobs.insert(polling);
            let at = Instant::now() + Duration::from_micros(fastrand::u64(0..20_000));
            let (status, _) = child.kill_at(at);
            assert!(killed(status), "the poller ended by itself: {status}");
        }
        std::fs::write(dir.path().join("done-1"), "finished").unwrap();
        let (status, lines) = Child::spawn(AWAIT, &env).wait();
        assert!(status.success(), "{lines:#?}");
        assert!(lines.contains(&"RESULT finished".to_owned()), "{lines:#?}");
        assert_eq!(
            service.creations(),
            ["await/1/submit"],
            "one job, made under the part's idempotency key"
        );
        assert_eq!(jobs.len(), 1, "every poller polled the same job: {jobs:?}");
        drop(check_journal(&dir.path().join("await.journal")));
    });
}

// ---------------------------------------------------------------------
// At most once: a part killed mid-effect is never run again.
// ---------------------------------------------------------------------

const ONCE: &str = "a_once_part_killed_mid_effect_is_not_run_again";
const ONCE_ENV: &str = "SK_KILL_ONCE";

/// `charge` (at most once, retried on failure) blocks in the child until
/// it is killed; in the parent it just notes that it ran.
fn once_cycle(effects: String, block: bool) -> Cycle {
    let mut b = CycleBuilder::new("once");
    b.add(CyclePart::new("order", |ctx| ctx.iteration()), 1)
        .unwrap();
    b.add(
        CyclePart::new("charge", move |ctx| {
            note_start(&effects, ctx.iteration(), "charge");
            if block {
                println!("CHARGING");
                std::thread::sleep(Duration::from_secs(60));
            }
            7u64
        })
        .once()
        .error_mode(ErrorMode::Retry)
        .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(5)),
        2,
    )
    .unwrap();
    b.add(
        CyclePart::new("receipt", |ctx| ctx.input_as::<u64>().copied().unwrap_or(0)),
        3,
    )
    .unwrap();
    b.build().unwrap()
}

#[test]
fn a_once_part_killed_mid_effect_is_not_run_again() {
    if let Ok(dir) = std::env::var(ONCE_ENV) {
        let dir = Path::new(&dir);
        let effects = dir.join("effects").display().to_string();
        let _ = once_cycle(effects, true).run(Run::times(2).journal(dir.join("once.journal")));
        return;
    }
    hang_guard(Duration::from_secs(300), || {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Child::spawn(ONCE, &[(ONCE_ENV, dir.path().display().to_string())]);
        child.wait_for("CHARGING").expect("the part never started");
        let (status, _) = child.kill_at(Instant::now());
        assert!(killed(status));

        let effects = dir.path().join("effects");
        let journal = dir.path().join("once.journal");
        let cycle = once_cycle(effects.display().to_string(), false);
        let report = cycle.run(Run::times(1).journal(&journal)).unwrap();
        assert_eq!(report.resumed().unwrap().unknown, 1);
        let first = report.last().unwrap();
        assert_eq!(first.iteration(), 1);
        assert_eq!(first.state_of("charge"), Some(PartState::Failed));
        assert!(
            matches!(first.error_of("charge"), Some(PartError::OutcomeUnknown { part, .. }) if part == "charge"),
            "{:?}",
            first.error_of("charge")
        );
        assert_eq!(first.state_of("receipt"), Some(PartState::UpstreamFailed));
        // Its failure is recorded: started again, it stays failed.
        let again = cycle.run(Run::times(1).journal(&journal)).unwrap();
        assert_eq!(again.iterations(), 0);
        // Iteration 2 charges once, as normal.
        let report = cycle.run(Run::times(2).journal(&journal)).unwrap();
        assert_eq!(
            report.last().unwrap().state_of("charge"),
            Some(PartState::Succeeded)
        );
        let starts = starts(&effects);
        assert_eq!(
            starts.get(&(1, "charge".to_owned())),
            Some(&1),
            "charged twice"
        );
        assert_eq!(starts.get(&(2, "charge".to_owned())), Some(&1));
    });
}
