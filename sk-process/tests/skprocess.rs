//! `SkProcess` as users meet it, on the backend `SK_SPAWN_BACKEND` selects
//! (process by default): hook order, timeouts, lives, stop vs kill,
//! messages, the wall-clock limit and timing statistics.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sk_core::BoxError;
use sk_process::{Backend, Hook, ProcessConfig, ProcessContext, SkProcess, SkProcessError, start};
use sk_testkit::{guarded, hang_guard};

sk_process::worker_test!();

fn backend() -> Backend {
    Backend::from_env()
}

/// Records every hook call; returns the record.
#[derive(Serialize, Deserialize)]
struct Recorder {
    runs: u64,
    calls: Vec<String>,
}

impl SkProcess for Recorder {
    type Output = Vec<String>;

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new().runs(self.runs)
    }
    fn prerun(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        self.calls.push(format!("prerun {}", ctx.run()));
        Ok(())
    }
    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        self.calls.push(format!("run {}", ctx.run()));
        Ok(())
    }
    fn postrun(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        self.calls.push(format!("postrun {}", ctx.run()));
        Ok(())
    }
    fn onfinish(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.calls.push("onfinish".to_owned());
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<Vec<String>, BoxError> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.push("result".to_owned());
        Ok(calls)
    }
}
sk_process::register_process!(Recorder);

#[test]
fn hooks_run_in_order_for_each_run_then_finish() {
    guarded(|| {
        let handle = start(
            Recorder {
                runs: 3,
                calls: Vec::new(),
            },
            backend(),
        )
        .unwrap();
        let calls = handle.join(Some(Duration::from_secs(30))).unwrap();
        let mut expected = Vec::new();
        for n in 1..=3 {
            expected.extend([
                format!("prerun {n}"),
                format!("run {n}"),
                format!("postrun {n}"),
            ]);
        }
        expected.extend(["onfinish".to_owned(), "result".to_owned()]);
        assert_eq!(calls, expected);
        assert!(!handle.is_running());
        assert!(matches!(
            handle.join(None),
            Err(SkProcessError::Joined { .. })
        ));
    })
}

#[test]
fn timing_stats_have_one_sample_per_hook_call() {
    guarded(|| {
        let handle = start(
            Recorder {
                runs: 5,
                calls: Vec::new(),
            },
            backend(),
        )
        .unwrap();
        handle.join(Some(Duration::from_secs(30))).unwrap();
        let timings = handle.timings();
        for hook in [Hook::Prerun, Hook::Run, Hook::Postrun] {
            assert_eq!(timings.get(hook).count, 5, "{hook}");
        }
        assert_eq!(timings.onfinish.count, 1);
        assert_eq!(timings.result.count, 1);
        assert_eq!(timings.error.count, 0);
    })
}

/// Sleeps in one hook, longer than that hook's timeout.
#[derive(Serialize, Deserialize)]
struct Sleeper {
    hook: Hook,
    run_ms: u64,
}

impl Sleeper {
    fn nap(&self, hook: Hook) {
        if hook == self.hook {
            thread::sleep(Duration::from_millis(self.run_ms));
        }
    }
}

impl SkProcess for Sleeper {
    type Output = ();

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new()
            .runs(2)
            .timeout(self.hook, Duration::from_millis(200))
    }
    fn prerun(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.nap(Hook::Prerun);
        Ok(())
    }
    fn run(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.nap(Hook::Run);
        Ok(())
    }
    fn postrun(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.nap(Hook::Postrun);
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.nap(Hook::Result);
        Ok(())
    }
}
sk_process::register_process!(Sleeper);

#[test]
fn a_hook_over_its_timeout_fails_the_process_naming_the_hook() {
    guarded(|| {
        for hook in [Hook::Run, Hook::Postrun, Hook::Result] {
            let began = Instant::now();
            let handle = start(
                Sleeper {
                    hook,
                    run_ms: 20_000,
                },
                backend(),
            )
            .unwrap();
            let err = handle.join(Some(Duration::from_secs(15))).unwrap_err();
            match &err {
                SkProcessError::HookTimedOut { hook: h, after, .. } => {
                    assert_eq!(*h, hook);
                    assert_eq!(*after, Duration::from_millis(200));
                }
                other => panic!("expected a timeout of {hook}, got {other:?}"),
            }
            assert!(
                err.to_string().contains(&format!("{hook} timed out")),
                "{err}"
            );
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "reported promptly, not after the hook's 20 s"
            );
        }
    })
}

#[test]
fn a_hook_within_its_timeout_is_fine() {
    guarded(|| {
        let handle = start(
            Sleeper {
                hook: Hook::Run,
                run_ms: 10,
            },
            backend(),
        )
        .unwrap();
        handle.join(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(handle.timings().run.count, 2);
        assert!(handle.timings().run.min >= Duration::from_millis(10));
    })
}

/// Crashes in `run` on the lives listed in `crash_on`; counts its runs.
#[derive(Serialize, Deserialize)]
struct Crasher {
    lives: u32,
    crash_on: Vec<u32>,
    counter: u64,
}

impl SkProcess for Crasher {
    type Output = (u32, u64);

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new().runs(3).lives(self.lives)
    }
    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        self.counter += 1;
        if ctx.run() == 2 && self.crash_on.contains(&ctx.life()) {
            if ctx.life() % 2 == 1 && sk_process::is_worker() {
                // A real crash of the worker process.
                std::process::exit(1);
            }
            panic!("crash on life {}", ctx.life());
        }
        Ok(())
    }
    fn result(&mut self, ctx: &ProcessContext) -> Result<(u32, u64), BoxError> {
        Ok((ctx.life(), self.counter))
    }
}
sk_process::register_process!(Crasher);

#[test]
fn a_crash_with_lives_left_restarts_from_the_original_state() {
    guarded(|| {
        let handle = start(
            Crasher {
                lives: 2,
                crash_on: vec![1],
                counter: 100,
            },
            backend(),
        )
        .unwrap();
        let (life, counter) = handle.join(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(life, 2, "the second life finished");
        // The first life counted to 102 before it crashed; the second
        // started again from 100.
        assert_eq!(counter, 103);
        assert_eq!(handle.timings().run.count, 3, "timings of the last life");
    })
}

#[test]
fn crashes_past_the_last_life_are_an_error() {
    guarded(|| {
        let handle = start(
            Crasher {
                lives: 3,
                crash_on: vec![1, 2, 3],
                counter: 0,
            },
            backend(),
        )
        .unwrap();
        let err = handle.join(Some(Duration::from_secs(30))).unwrap_err();
        match &err {
            SkProcessError::LivesExhausted { lives, last, .. } => {
                assert_eq!(*lives, 3);
                // Life 3 exits (a process worker) or panics (a thread).
                match backend() {
                    Backend::Process => assert!(last.contains("status 1"), "{last}"),
                    _ => assert!(last.contains("crash on life 3"), "{last}"),
                }
                assert!(
                    err.to_string().contains("crashed on all 3 of its lives"),
                    "{err}"
                );
            }
            other => panic!("expected lives exhausted, got {other:?}"),
        }
    })
}

#[test]
fn a_panic_with_one_life_is_a_hook_error() {
    guarded(|| {
        let handle = start(
            Crasher {
                lives: 1,
                crash_on: vec![],
                counter: 0,
            },
            backend(),
        )
        .unwrap();
        assert_eq!(handle.join(Some(Duration::from_secs(30))).unwrap(), (1, 3));

        let handle = start(
            Crasher {
                lives: 1,
                crash_on: vec![2, 1],
                counter: 0,
            },
            Backend::Thread,
        )
        .unwrap();
        // Life 1 is odd, but a thread worker is no worker process: a panic.
        let err = handle.join(Some(Duration::from_secs(30))).unwrap_err();
        assert!(
            matches!(
                &err,
                SkProcessError::HookPanicked { hook: Hook::Run, run: 2, message, .. }
                    if message == "crash on life 1"
            ),
            "{err:?}"
        );
    })
}

/// Counts runs until stopped; each run takes `run_ms`.
#[derive(Serialize, Deserialize)]
struct Ticker {
    run_ms: u64,
    limit: Option<Duration>,
    finished_runs: u64,
}

impl SkProcess for Ticker {
    type Output = u64;

    fn config(&self) -> ProcessConfig {
        let config = ProcessConfig::new().until_stopped();
        match self.limit {
            Some(limit) => config.join_in(limit),
            None => config,
        }
    }
    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        if ctx.run() == 1 {
            ctx.tell(&"started")?;
        }
        thread::sleep(Duration::from_millis(self.run_ms));
        Ok(())
    }
    fn postrun(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        self.finished_runs += 1;
        Ok(())
    }
    fn result(&mut self, ctx: &ProcessContext) -> Result<u64, BoxError> {
        assert_eq!(ctx.run(), self.finished_runs, "no run was cut short");
        Ok(self.finished_runs)
    }
}
sk_process::register_process!(Ticker);

#[test]
fn stop_lets_the_current_run_finish_and_returns_the_result() {
    guarded(|| {
        let handle = start(
            Ticker {
                run_ms: 300,
                limit: None,
                finished_runs: 0,
            },
            backend(),
        )
        .unwrap();
        let started: Option<String> = handle.listen(Duration::from_secs(20)).unwrap();
        assert_eq!(started.as_deref(), Some("started"));
        thread::sleep(Duration::from_millis(100));
        handle.stop();
        // Run 1 was mid-way: it finishes (postrun counts it), no run 2.
        assert_eq!(handle.join(Some(Duration::from_secs(20))).unwrap(), 1);
        assert_eq!(handle.timings().run.count, 1);
    })
}

#[test]
fn kill_ends_the_process_promptly_with_an_error() {
    guarded(|| {
        let handle = start(
            Ticker {
                run_ms: 5_000,
                limit: None,
                finished_runs: 0,
            },
            backend(),
        )
        .unwrap();
        let started: Option<String> = handle.listen(Duration::from_secs(20)).unwrap();
        assert_eq!(started.as_deref(), Some("started"));
        let killed_at = Instant::now();
        handle.kill();
        let err = handle.join(Some(Duration::from_secs(20))).unwrap_err();
        assert!(matches!(err, SkProcessError::Killed { .. }), "{err:?}");
        assert!(
            killed_at.elapsed() < Duration::from_secs(2),
            "did not wait for the 5 s run"
        );
    })
}

#[test]
fn join_in_ends_a_process_that_runs_until_stopped() {
    guarded(|| {
        let began = Instant::now();
        let handle = start(
            Ticker {
                run_ms: 20,
                limit: Some(Duration::from_millis(500)),
                finished_runs: 0,
            },
            backend(),
        )
        .unwrap();
        let runs = handle.join(Some(Duration::from_secs(30))).unwrap();
        let took = began.elapsed();
        assert!(runs >= 1, "it ran");
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    })
}

#[test]
fn join_with_a_timeout_leaves_a_running_process_running() {
    guarded(|| {
        let handle = start(
            Ticker {
                run_ms: 10,
                limit: None,
                finished_runs: 0,
            },
            backend(),
        )
        .unwrap();
        let err = handle.join(Some(Duration::from_millis(50))).unwrap_err();
        assert!(matches!(err, SkProcessError::JoinTimeout { .. }), "{err:?}");
        assert!(handle.is_running());
        handle.stop();
        assert!(handle.join(Some(Duration::from_secs(20))).unwrap() >= 1);
    })
}

/// Echoes every number it hears, doubled, until told 0.
#[derive(Serialize, Deserialize)]
struct Doubler;

impl SkProcess for Doubler {
    type Output = u32;

    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        if let Some(n) = ctx.listen::<u64>(Duration::from_millis(50))? {
            if n == 0 {
                ctx.stop_token().stop();
            } else {
                ctx.tell(&(n * 2))?;
            }
        }
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<u32, BoxError> {
        Ok(std::process::id())
    }
}
sk_process::register_process!(Doubler);

#[test]
fn the_parent_tells_and_the_process_answers() {
    guarded(|| {
        let handle = start(Doubler, backend()).unwrap();
        for n in [21u64, 1_000_000, 7] {
            handle.tell(&n).unwrap();
            let answer: Option<u64> = handle.listen(Duration::from_secs(20)).unwrap();
            assert_eq!(answer, Some(n * 2));
        }
        let worker_pid = handle.pid().unwrap();
        handle.tell(&0u64).unwrap();
        let pid = handle.join(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(pid, worker_pid);
        match backend() {
            Backend::Process => assert_ne!(pid, std::process::id(), "ran in another process"),
            _ => assert_eq!(pid, std::process::id()),
        }
        assert!(matches!(
            handle.tell(&1u64),
            Err(SkProcessError::Closed { .. })
        ));
    })
}

/// Fails in `run` with an error; `error` may give a fallback.
#[derive(Serialize, Deserialize)]
struct Failer {
    fallback: Option<String>,
}

impl SkProcess for Failer {
    type Output = String;

    fn config(&self) -> ProcessConfig {
        ProcessConfig::new().runs(5)
    }
    fn run(&mut self, ctx: &ProcessContext) -> Result<(), BoxError> {
        if ctx.run() == 3 {
            return Err("disk full".into());
        }
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<String, BoxError> {
        Ok("done".to_owned())
    }
    fn error(&mut self, _ctx: &ProcessContext, err: &SkProcessError) -> Option<String> {
        self.fallback.take().map(|f| format!("{f} after: {err}"))
    }
}
sk_process::register_process!(Failer);

#[test]
fn a_failing_hook_ends_the_process_unless_error_gives_a_fallback() {
    guarded(|| {
        let handle = start(Failer { fallback: None }, backend()).unwrap();
        let err = handle.join(Some(Duration::from_secs(30))).unwrap_err();
        assert!(
            matches!(
                &err,
                SkProcessError::HookFailed {
                    hook: Hook::Run,
                    run: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().ends_with("run failed in run 3: disk full"),
            "{err}"
        );
        assert_eq!(handle.timings().error.count, 1);

        let handle = start(
            Failer {
                fallback: Some("partial".to_owned()),
            },
            backend(),
        )
        .unwrap();
        let out = handle.join(Some(Duration::from_secs(30))).unwrap();
        assert!(
            out.starts_with("partial after: process \"Failer\": run failed"),
            "{out}"
        );
    })
}

/// Never registered.
#[derive(Serialize, Deserialize)]
struct Unregistered;

impl SkProcess for Unregistered {
    type Output = ();
    fn run(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        Ok(())
    }
    fn result(&mut self, _ctx: &ProcessContext) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn an_unregistered_type_is_a_clear_error() {
    hang_guard(Duration::from_secs(10), || {
        let err = start(Unregistered, backend()).unwrap_err();
        assert!(
            matches!(err, SkProcessError::NotRegistered { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("add `sk_process::register_process!(Unregistered);`"),
            "{err}"
        );
    })
}

#[test]
fn zero_lives_is_an_invalid_configuration() {
    hang_guard(Duration::from_secs(10), || {
        let err = start(
            Crasher {
                lives: 0,
                crash_on: vec![],
                counter: 0,
            },
            backend(),
        )
        .unwrap_err();
        assert!(
            matches!(err, SkProcessError::InvalidConfig { .. }),
            "{err:?}"
        );
    })
}

#[test]
fn dropping_a_running_handle_ends_its_worker() {
    if backend() != Backend::Process {
        return; // A thread worker has no pid of its own to watch.
    }
    guarded(|| {
        let handle = start(
            Ticker {
                run_ms: 10,
                limit: None,
                finished_runs: 0,
            },
            Backend::Process,
        )
        .unwrap();
        let started: Option<String> = handle.listen(Duration::from_secs(20)).unwrap();
        assert_eq!(started.as_deref(), Some("started"));
        let pid = handle.pid().unwrap();
        assert_ne!(pid, std::process::id());
        drop(handle);
        let deadline = Instant::now() + Duration::from_secs(10);
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X")
            })
        };
        while running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!running(), "worker {pid} outlived its handle");
    })
}
