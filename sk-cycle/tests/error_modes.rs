//! Each error mode, timeouts and retries: what a failure does to the
//! failing part, its dependents, independent branches and the run.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::wait_for;
use sk_core::RetryPolicy;
use sk_cycle::{CycleBuilder, CyclePart, ErrorMode, Input, PartState, Run, RunReport, StopReason};
use sk_testkit::guarded;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn failing(name: &str, mode: ErrorMode) -> CyclePart {
    CyclePart::fallible(name, |_| Err::<u32, BoxError>("disk on fire".into())).error_mode(mode)
}

/// root → split [bad → bad_child, good → good_child].
fn two_branches(bad: CyclePart, run: Run) -> RunReport {
    let mut b = CycleBuilder::new("branches");
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    b.split([bad, CyclePart::new("good", |_| 1u32)], 2).unwrap();
    b.add(
        CyclePart::new("bad_child", |ctx| match ctx.input() {
            Input::Value(v) => format!("value {:?}", v.downcast_ref::<u32>()),
            Input::Error(e) => format!("recovered from: {e}"),
            Input::None => "nothing".to_owned(),
        }),
        (4, 1),
    )
    .unwrap();
    b.add(CyclePart::new("good_child", |_| 2u32), (4, 2))
        .unwrap();
    b.build().unwrap().run(run.threads(2)).unwrap()
}

#[test]
fn clean_fail_stops_dependents_lets_independents_finish_and_marks_error() {
    guarded(|| {
        let report = two_branches(failing("bad", ErrorMode::CleanFail), Run::times(3));
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::Failed));
        assert_eq!(last.state_of("bad_child"), Some(PartState::UpstreamFailed));
        assert_eq!(last.state_of("good_child"), Some(PartState::Succeeded));
        assert!(report.is_error());
        // The run goes on: clean fail ends iterations in error, not the run.
        assert_eq!(report.iterations(), 3);
        assert_eq!(report.error_iterations(), 3);
        let err = last.error_of("bad").unwrap().to_string();
        assert_eq!(err, "part \"bad\" at 3-1 failed: disk on fire");
    })
}

#[test]
fn skip_skips_dependents_without_error_state() {
    guarded(|| {
        let report = two_branches(failing("bad", ErrorMode::Skip), Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::Failed));
        assert_eq!(last.state_of("bad_child"), Some(PartState::Skipped));
        assert_eq!(last.state_of("good_child"), Some(PartState::Succeeded));
        assert!(!report.is_error());
        assert_eq!(report.error_iterations(), 0);
    })
}

#[test]
fn propagate_hands_the_error_to_the_dependent() {
    guarded(|| {
        let report = two_branches(failing("bad", ErrorMode::Propagate), Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::Failed));
        assert_eq!(last.state_of("bad_child"), Some(PartState::Succeeded));
        let out = last.output_as::<String>("bad_child").unwrap();
        assert!(out.starts_with("recovered from: part \"bad\""), "{out}");
        assert!(!report.is_error());
    })
}

#[test]
fn fallback_fail_uses_the_fallback_and_marks_error() {
    guarded(|| {
        let bad = failing("bad", ErrorMode::FallbackFail).fallback(42u32);
        let report = two_branches(bad, Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::SucceededWithFallback));
        assert_eq!(last.output_as::<u32>("bad"), Some(&42));
        assert_eq!(
            last.output_as::<String>("bad_child").map(String::as_str),
            Some("value Some(42)")
        );
        assert!(report.is_error());
    })
}

#[test]
fn fallback_skip_uses_the_fallback_without_error_state() {
    guarded(|| {
        let bad = failing("bad", ErrorMode::FallbackSkip).fallback(7u32);
        let report = two_branches(bad, Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::SucceededWithFallback));
        assert_eq!(last.state_of("bad_child"), Some(PartState::Succeeded));
        assert!(!report.is_error());
    })
}

#[test]
fn instant_fail_cancels_what_has_not_started_and_stops_the_run() {
    guarded(|| {
        let saw_stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&saw_stop);
        let mut b = CycleBuilder::new("instant");
        b.add(CyclePart::new("root", |_| ()), 1).unwrap();
        b.split(
            [
                failing("bad", ErrorMode::InstantFail),
                CyclePart::new("long", move |ctx| {
                    // Runs until the instant fail sets its stop token.
                    let stopped = ctx.stop_token().wait_timeout(Duration::from_secs(10));
                    flag.store(stopped, Ordering::SeqCst);
                }),
            ],
            2,
        )
        .unwrap();
        b.add(CyclePart::new("after_long", |_| ()), (4, 2)).unwrap();
        b.add(CyclePart::new("after_bad", |_| ()), (4, 1)).unwrap();
        let report = b.build().unwrap().run(Run::times(100).threads(4)).unwrap();
        assert!(
            saw_stop.load(Ordering::SeqCst),
            "the running part's token was set"
        );
        assert_eq!(report.stop_reason(), StopReason::InstantFail);
        assert_eq!(report.iterations(), 1);
        assert!(report.is_error());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("bad"), Some(PartState::Failed));
        // Stopped by the instant fail while it ran: cancelled, although
        // its closure returned normally.
        assert_eq!(last.state_of("long"), Some(PartState::Cancelled));
        assert!(last.output_of("long").is_none());
        // What ended before it keeps its state.
        assert_eq!(last.state_of("root"), Some(PartState::Succeeded));
        assert_eq!(last.state_of("after_long"), Some(PartState::Cancelled));
        assert!(
            report
                .instant_fail()
                .unwrap()
                .to_string()
                .contains("disk on fire")
        );
    })
}

#[test]
fn retry_repeats_by_the_policy_until_success() {
    guarded(|| {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let flaky = CyclePart::fallible("flaky", move |ctx| {
            seen.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() < 3 {
                Err::<u32, BoxError>("not yet".into())
            } else {
                Ok(ctx.attempt())
            }
        })
        .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3));
        let report = two_branches(flaky, Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("flaky"), Some(PartState::Succeeded));
        assert_eq!(last.output_as::<u32>("flaky"), Some(&3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // The stats count the two retries, and serialize with named states.
        let stats = report.stats();
        let flaky = stats.parts.iter().find(|p| &*p.name == "flaky").unwrap();
        assert_eq!(flaky.retries, 2);
        assert_eq!(flaky.states.succeeded, 1);
        let json = serde_json::to_value(stats).unwrap();
        let part = json["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "flaky")
            .unwrap();
        assert_eq!(part["states"]["succeeded"], 1);
        assert_eq!(part["retries"], 2);
    })
}

#[test]
fn retry_that_runs_out_fails_cleanly() {
    guarded(|| {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let flaky = CyclePart::fallible("flaky", move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Err::<u32, BoxError>("still down".into())
        })
        .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(2));
        let mut b = CycleBuilder::new("retry-out");
        b.add(flaky, 1).unwrap();
        b.add(CyclePart::new("child", |_| ()), 2).unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let last = report.last().unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(last.state_of("flaky"), Some(PartState::Failed));
        assert_eq!(last.state_of("child"), Some(PartState::UpstreamFailed));
        assert!(report.is_error());
    })
}

#[test]
fn retry_stops_at_the_part_timeout() {
    guarded(|| {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&calls);
        let hopeless = CyclePart::fallible("hopeless", move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
            Err::<u32, BoxError>("never".into())
        })
        .retry(RetryPolicy::fixed(Duration::from_millis(10)).max_attempts(10_000))
        .timeout(Duration::from_millis(200));
        let mut b = CycleBuilder::new("retry-timeout");
        b.add(hopeless, 1).unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        let attempts = calls.load(Ordering::SeqCst);
        assert!(attempts >= 2, "it retried ({attempts} attempts)");
        assert!(
            attempts < 10_000,
            "the timeout stopped the retries ({attempts} attempts)"
        );
        let state = report.last().unwrap().state_of("hopeless");
        assert!(
            matches!(state, Some(PartState::TimedOut | PartState::Failed)),
            "{state:?}"
        );
    })
}

#[test]
fn timed_out_part_has_its_token_set_and_the_cycle_goes_on() {
    guarded(|| {
        let saw_stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&saw_stop);
        let stuck = CyclePart::new("stuck", move |ctx| {
            let stopped = ctx.stop_token().wait_timeout(Duration::from_secs(10));
            flag.store(stopped, Ordering::SeqCst);
            1u32
        })
        .timeout(Duration::from_millis(50))
        .error_mode(ErrorMode::Skip);
        let report = two_branches(stuck, Run::times(2));
        let last = report.last().unwrap();
        assert_eq!(last.state_of("stuck"), Some(PartState::TimedOut));
        assert_eq!(last.state_of("bad_child"), Some(PartState::Skipped));
        assert_eq!(last.state_of("good_child"), Some(PartState::Succeeded));
        assert_eq!(report.iterations(), 2);
        assert!(wait_for(Duration::from_secs(10), || saw_stop.load(Ordering::SeqCst)));
        assert!(
            last.error_of("stuck")
                .unwrap()
                .to_string()
                .contains("timed out after 50ms")
        );
    })
}

#[test]
fn a_part_that_ignores_its_token_is_still_reported_on_time() {
    guarded(|| {
        let release = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&release);
        // Ignores its stop token; only the test lets it go.
        let deaf = CyclePart::new("deaf", move |_| {
            wait_for(Duration::from_secs(20), || gate.load(Ordering::SeqCst));
        })
        .timeout(Duration::from_millis(30));
        let mut b = CycleBuilder::new("deaf");
        b.add(deaf, 1).unwrap();
        b.add(CyclePart::new("child", |_| ()), 2).unwrap();
        let report = b.build().unwrap().run(Run::once().threads(2)).unwrap();
        // The run returned while the part still runs.
        assert!(!release.load(Ordering::SeqCst));
        let last = report.last().unwrap();
        assert_eq!(last.state_of("deaf"), Some(PartState::TimedOut));
        assert_eq!(last.state_of("child"), Some(PartState::UpstreamFailed));
        release.store(true, Ordering::SeqCst);
    })
}

#[test]
fn a_panicking_part_fails_by_its_mode_without_taking_the_run_down() {
    guarded(|| {
        let boom =
            CyclePart::new("boom", |_| -> u32 { panic!("kaboom") }).error_mode(ErrorMode::Skip);
        let report = two_branches(boom, Run::once());
        let last = report.last().unwrap();
        assert_eq!(last.state_of("boom"), Some(PartState::Failed));
        assert_eq!(last.state_of("bad_child"), Some(PartState::Skipped));
        let err = last.error_of("boom").unwrap().to_string();
        assert_eq!(err, "part \"boom\" at 3-1 panicked: kaboom");
    })
}

#[test]
fn every_part_ends_every_iteration_in_exactly_one_state() {
    guarded(|| {
        let report = two_branches(failing("bad", ErrorMode::CleanFail), Run::times(5));
        let stats = report.stats();
        for part in &stats.parts {
            let total: u64 = part.states.total();
            assert_eq!(
                total, 5,
                "{} ended {} times in 5 iterations",
                part.name, total
            );
        }
    })
}

#[test]
fn a_fallback_mode_without_a_fallback_value_is_a_build_error() {
    let mut b = CycleBuilder::new("no-fallback");
    b.add(failing("bad", ErrorMode::FallbackSkip), 1).unwrap();
    let err = b.build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "part \"bad\" at 1-1 uses fallback skip but has no fallback value (set one with .fallback(value))"
    );
}

#[test]
fn a_closure_in_a_process_is_reported_before_a_bad_rate_limit() {
    // The closure check came first when it ran before the plan was
    // compiled; it still does, for a part's and for the cycle's rate.
    let mut b = CycleBuilder::new("proc-and-rate");
    b.add(CyclePart::new("ctx", |_| ()).in_process(), 1)
        .unwrap();
    b.add(CyclePart::new("fast", |_| ()).rate_limit(0.0), 2)
        .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, sk_cycle::BuildError::LocalOnlyInProcess { name, .. } if name == "ctx"),
        "{err:?}"
    );
    let mut b = CycleBuilder::new("proc-and-cycle-rate").rate_limit(-1.0);
    b.add(CyclePart::new("ctx", |_| ()).in_process(), 1)
        .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, sk_cycle::BuildError::LocalOnlyInProcess { name, .. } if name == "ctx"),
        "{err:?}"
    );
}

#[test]
fn of_several_parts_without_a_fallback_the_build_error_names_the_first_by_coordinate() {
    // The build walks a split's later branches first: the error must
    // still name the part that comes first in coordinate order.
    let mut b = CycleBuilder::new("no-fallbacks");
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    b.split(
        [
            failing("first", ErrorMode::FallbackFail),
            CyclePart::new("fine", |_| ()),
            failing("third", ErrorMode::FallbackSkip),
        ],
        2,
    )
    .unwrap();
    let err = b.build().unwrap_err();
    assert!(
        matches!(&err, sk_cycle::BuildError::MissingFallback { name, .. } if name == "first"),
        "{err:?}"
    );
}

/// What each part of one iteration's report showed.
#[derive(Debug, PartialEq)]
struct Seen {
    flaky: Option<PartState>,
    flaky_output: Option<u64>,
    flaky_failed: bool,
    child: Option<PartState>,
    join: Option<PartState>,
}

#[test]
fn each_iteration_shows_only_its_own_ends() {
    guarded(|| {
        // root → fork [flaky → child, steady]; join after child and
        // steady. flaky fails under skip in iteration 2 only: its output,
        // error, its child's skip and the join's countdown of two must
        // all be that iteration's, not carried into the next (nodes are
        // not reset as an iteration begins: each end replaces the last).
        let mut b = CycleBuilder::new("iterations");
        // root, first in each iteration, reads flaky's latest completed
        // output: the last success's (iteration 1's after the failure of
        // iteration 2), as a cycle of several lanes reads it.
        let latest = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let reads = Arc::clone(&latest);
        let root = CyclePart::new("root", move |ctx| {
            reads
                .lock()
                .push(ctx.output::<u64>("flaky").ok().map(|v| *v));
        })
        .reads_latest(["flaky"]);
        let root = b.root(root).unwrap();
        let flaky = CyclePart::fallible("flaky", |ctx| match ctx.iteration() {
            2 => Err::<u64, BoxError>("second time unlucky".into()),
            i => Ok(i * 10),
        })
        .error_mode(ErrorMode::Skip);
        let [flaky, _] = b
            .fork(root, [flaky, CyclePart::new("steady", |_| ())])
            .unwrap();
        let child = b.then(flaky, CyclePart::new("child", |_| ())).unwrap();
        b.then(child, CyclePart::new("join", |_| ())).unwrap();
        b.after("join", "steady").unwrap();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let report = b
            .build()
            .unwrap()
            .run(Run::times(4).threads(2).on_iteration(move |it| {
                sink.lock().push(Seen {
                    flaky: it.state_of("flaky"),
                    flaky_output: it.output_as::<u64>("flaky").copied(),
                    flaky_failed: it.error_of("flaky").is_some(),
                    child: it.state_of("child"),
                    join: it.state_of("join"),
                })
            }))
            .unwrap();
        assert_eq!(report.iterations(), 4);
        let ok = |i: u64| Seen {
            flaky: Some(PartState::Succeeded),
            flaky_output: Some(i * 10),
            flaky_failed: false,
            child: Some(PartState::Succeeded),
            join: Some(PartState::Succeeded),
        };
        let failed = Seen {
            flaky: Some(PartState::Failed),
            flaky_output: None,
            flaky_failed: true,
            child: Some(PartState::Skipped),
            join: Some(PartState::Skipped),
        };
        assert_eq!(*seen.lock(), vec![ok(1), failed, ok(3), ok(4)]);
        assert_eq!(*latest.lock(), vec![None, Some(10), Some(10), Some(30)]);
    })
}
