//! The engine's side of remote parts, through a runner made here (it
//! runs each call on a worker thread of this process, and can fail or
//! hold attempts as a test asks): what a runner is given, when, and what
//! the engine makes of its answers — retries as new attempts, failures,
//! timeouts, stops, journaled runs and their resume.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sk_core::{Encoding, RetryPolicy, SkFunction};
use sk_cycle::{
    CycleBuilder, CyclePart, ErrorMode, PartState, RemoteCall, RemoteDone, RemoteFailure,
    RemoteRunner, Run, RunError,
};
use sk_process::{Backend, CallOptions, Worker};
use sk_testkit::hang_guard;

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn plus_one(input: u64) -> u64 {
    input + 1
}

/// What the runner saw of one call.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    run: String,
    group: String,
    part: String,
    iteration: u64,
    attempt: u32,
    timeout: Option<Duration>,
    output: Encoding,
}

/// How the runner answers.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Runs every call.
    Run,
    /// Fails attempts before this one (retryable), then runs.
    FailUntil(u32),
    /// Fails every call, not retryable.
    Fail,
    /// Answers timed out.
    TimeOut,
    /// Never answers until the call's stop token is stopped.
    Hold,
}

struct Fake {
    script: Script,
    seen: Mutex<Vec<Seen>>,
    started: Mutex<Vec<(String, Vec<String>)>>,
    ended: Mutex<Vec<String>>,
}

impl Fake {
    fn new(script: Script) -> Arc<Fake> {
        Arc::new(Fake {
            script,
            seen: Mutex::new(Vec::new()),
            started: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
        })
    }
}

impl RemoteRunner for Fake {
    fn start_run(
        &self,
        run: &str,
        _cycle: &str,
        groups: &[&str],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.started.lock().push((
            run.to_owned(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
        ));
        Ok(())
    }

    fn submit(&self, call: RemoteCall, done: RemoteDone) {
        self.seen.lock().push(Seen {
            run: call.run.to_string(),
            group: call.group.to_string(),
            part: call.part.to_string(),
            iteration: call.iteration,
            attempt: call.attempt,
            timeout: call.timeout,
            output: call.output,
        });
        let script = self.script;
        std::thread::spawn(move || {
            let result = match script {
                Script::Fail => Err(RemoteFailure::Failed {
                    message: "no".to_owned(),
                    retryable: false,
                }),
                Script::FailUntil(n) if call.attempt < n => Err(RemoteFailure::Failed {
                    message: format!("attempt {} fails", call.attempt),
                    retryable: true,
                }),
                Script::TimeOut => Err(RemoteFailure::TimedOut {
                    after: call.timeout.unwrap_or_default(),
                }),
                Script::Hold => {
                    while !call.stop.wait_timeout(Duration::from_millis(5)) {}
                    Err(RemoteFailure::Stopped)
                }
                _ => {
                    let worker = Worker::spawn("fake-remote", Backend::Thread).unwrap();
                    let value = worker.call_with(
                        &call.function,
                        &call.args,
                        CallOptions::new().output(call.output),
                        &mut |_| Err("no".to_owned()),
                    );
                    worker.stop(Duration::from_secs(1));
                    value.map_err(|e| RemoteFailure::Failed {
                        message: e.to_string(),
                        retryable: false,
                    })
                }
            };
            done(result);
        });
    }

    fn end_run(&self, run: &str) {
        self.ended.lock().push(run.to_owned());
    }
}

/// `src` (on the pool) → `r1` on group `b` → `r2` on group `a` → `sink`.
fn chain(name: &str, r1: CyclePart) -> sk_cycle::Cycle {
    let mut b = CycleBuilder::new(name);
    b.add(CyclePart::new("src", |ctx| ctx.iteration() * 10), 1)
        .unwrap();
    b.add(r1, 2).unwrap();
    let f = SkFunction::builder("plus_one").build().unwrap();
    b.add(CyclePart::function("r2", f).remote("a"), 3).unwrap();
    b.add(
        CyclePart::fallible("sink", |ctx| ctx.input_as::<u64>().copied()),
        4,
    )
    .unwrap();
    b.build().unwrap()
}

fn r1() -> CyclePart {
    CyclePart::function("r1", SkFunction::builder("plus_one").build().unwrap()).remote("b")
}

#[test]
fn remote_parts_go_through_the_runner_and_feed_their_dependents() {
    hang_guard(Duration::from_secs(60), || {
        let fake = Fake::new(Script::Run);
        let cycle = chain("through", r1());
        let report = cycle
            .run(Run::times(2).remote(Arc::clone(&fake) as Arc<dyn RemoteRunner>))
            .unwrap();
        // src = 20 in iteration 2, +1, +1.
        assert_eq!(*report.last().unwrap().output::<u64>("sink").unwrap(), 22);
        let started = fake.started.lock().clone();
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].1, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(*fake.ended.lock(), vec![started[0].0.clone()]);
        let seen = fake.seen.lock().clone();
        let parts: Vec<(u64, &str, &str)> = seen
            .iter()
            .map(|s| (s.iteration, s.part.as_str(), s.group.as_str()))
            .collect();
        assert_eq!(
            parts,
            vec![
                (1, "r1", "b"),
                (1, "r2", "a"),
                (2, "r1", "b"),
                (2, "r2", "a")
            ]
        );
        assert!(
            seen.iter()
                .all(|s| s.attempt == 1 && s.run == started[0].0 && s.output == Encoding::Internal)
        );
        // Another run is another run to the workers.
        let again = Fake::new(Script::Run);
        cycle
            .run(Run::once().remote(Arc::clone(&again) as Arc<dyn RemoteRunner>))
            .unwrap();
        assert_ne!(again.started.lock()[0].0, started[0].0);
    });
}

#[test]
fn each_retry_is_a_new_attempt_and_failures_name_the_group() {
    hang_guard(Duration::from_secs(60), || {
        let fake = Fake::new(Script::FailUntil(3));
        let retried = r1()
            .error_mode(ErrorMode::Retry)
            .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(5));
        let report = chain("retries", retried)
            .run(Run::once().remote(Arc::clone(&fake) as Arc<dyn RemoteRunner>))
            .unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("r1"), Some(PartState::Succeeded));
        let attempts: Vec<u32> = fake
            .seen
            .lock()
            .iter()
            .filter(|s| s.part == "r1")
            .map(|s| s.attempt)
            .collect();
        assert_eq!(attempts, vec![1, 2, 3]);
        // r2 is not retried: its first failure is its end.
        assert_eq!(last.state_of("r2"), Some(PartState::Failed));
        let e = last.error_of("r2").unwrap().to_string();
        assert!(
            e.contains("on remote group \"a\"") && e.contains("attempt 1 fails"),
            "{e}"
        );
        assert_eq!(last.state_of("sink"), Some(PartState::UpstreamFailed));

        let fake = Fake::new(Script::Fail);
        let report = chain("fails", r1())
            .run(Run::once().remote(fake as Arc<dyn RemoteRunner>))
            .unwrap();
        assert_eq!(
            report.last().unwrap().state_of("r1"),
            Some(PartState::Failed)
        );
    });
}

#[test]
fn a_remote_timeout_is_the_parts_timeout() {
    hang_guard(Duration::from_secs(60), || {
        let fake = Fake::new(Script::TimeOut);
        let timed = r1().timeout(Duration::from_millis(250));
        let report = chain("timeouts", timed)
            .run(Run::once().remote(Arc::clone(&fake) as Arc<dyn RemoteRunner>))
            .unwrap();
        assert_eq!(
            report.last().unwrap().state_of("r1"),
            Some(PartState::TimedOut)
        );
        assert_eq!(
            fake.seen.lock()[0].timeout,
            Some(Duration::from_millis(250))
        );
    });
}

#[test]
fn an_instant_fail_stops_the_remote_parts_it_waits_for() {
    hang_guard(Duration::from_secs(60), || {
        let fake = Fake::new(Script::Hold);
        let mut b = CycleBuilder::new("stops");
        b.add(CyclePart::new("src", |_| 1u64), 1).unwrap();
        let f = SkFunction::builder("plus_one").build().unwrap();
        b.split(
            [
                CyclePart::function("held", f).remote("g"),
                CyclePart::fallible("fails", |_| {
                    std::thread::sleep(Duration::from_millis(50));
                    Err::<(), _>("stop")
                })
                .error_mode(ErrorMode::InstantFail),
            ],
            2,
        )
        .unwrap();
        let report = b
            .build()
            .unwrap()
            .run(Run::once().remote(Arc::clone(&fake) as Arc<dyn RemoteRunner>))
            .unwrap();
        let last = report.last().unwrap();
        assert_eq!(last.state_of("held"), Some(PartState::Cancelled));
        assert_eq!(fake.ended.lock().len(), 1);
    });
}

#[test]
fn a_journaled_run_gives_its_id_and_does_not_resend_recorded_parts() {
    hang_guard(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("remote.journal");
        let fake = Fake::new(Script::Run);
        let run = |n: u64| {
            chain("journaled", r1())
                .run(
                    Run::times(n)
                        .journal(&journal)
                        .run_id("night-batch")
                        .remote(Arc::clone(&fake) as Arc<dyn RemoteRunner>),
                )
                .unwrap()
        };
        run(1);
        let report = run(2);
        assert_eq!(*report.last().unwrap().output::<u64>("sink").unwrap(), 22);
        let seen = fake.seen.lock().clone();
        assert!(
            seen.iter()
                .all(|s| s.run == "night-batch" && s.output == Encoding::External)
        );
        // Iteration 1 was recorded: only iteration 2 went out again.
        let iterations: BTreeSet<(u64, String)> =
            seen.iter().map(|s| (s.iteration, s.part.clone())).collect();
        assert_eq!(seen.len(), iterations.len(), "a part sent twice: {seen:?}");
        assert_eq!(seen.len(), 4);
    });
}

#[test]
fn a_run_with_remote_parts_needs_a_runner() {
    let e = chain("no-runner", r1()).run(Run::once()).unwrap_err();
    match e {
        RunError::NoRemote { part, group, .. } => {
            assert_eq!((part.as_str(), group.as_str()), ("r1", "b"));
        }
        other => panic!("{other:?}"),
    }
}
