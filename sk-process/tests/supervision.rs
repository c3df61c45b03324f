//! Supervision with real workers, on the backend `SK_SPAWN_BACKEND` selects
//! (process by default): restart strategies, restart types, intensity and
//! escalation, shutdown, and the commander's budget.
//!
//! A crash is real: a process worker runs `crash`, which exits with a
//! non-zero status; a thread worker cannot end its own thread from inside a
//! call (panics are caught per call), so the test kills it with
//! `Worker::kill`. A normal exit is `quit` (status 0) in a process and
//! `Worker::stop` for a thread. The assertions are the same on both.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::Receiver;
use sk_core::{Args, SkFunction};
use sk_process::{
    Backend, Budget, BudgetError, ChildId, ChildSpec, ChildState, Exit, ManagerError, ManagerEvent,
    ProcessCommander, ProcessManager, Resource, Restart, RestartStrategy, Side, Worker,
};
use sk_testkit::{guarded, hang_guard};

sk_process::worker_test!();

/// Ends the worker process abnormally.
#[sk_core::function(crate = ::sk_core)]
fn crash(code: i32) -> u32 {
    std::process::exit(code)
}

/// Ends the worker process normally.
#[sk_core::function(crate = ::sk_core)]
fn quit() -> u32 {
    std::process::exit(0)
}

#[sk_core::function(crate = ::sk_core)]
fn whoami() -> u32 {
    std::process::id()
}

const WAIT: Duration = Duration::from_secs(30);

fn backend() -> Backend {
    Backend::from_env()
}

/// A manager with a roomy budget of its own and a wide intensity window,
/// so a slow machine does not escalate by accident.
fn manager(name: &str, strategy: RestartStrategy) -> ProcessManager {
    let commander = ProcessCommander::new(Budget::new(16, 16));
    ProcessManager::builder(name)
        .backend(backend())
        .strategy(strategy)
        .intensity(3, Duration::from_secs(120))
        .commander(&commander, Side::External)
        .stop_grace(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn spawn(m: &ProcessManager, name: &str, restart: Restart) -> ChildId {
    m.spawn(ChildSpec::new(name).restart(restart)).unwrap()
}

/// Ends the child's current worker abnormally.
fn crash_child(m: &ProcessManager, id: ChildId) {
    let worker = m.worker(id).expect("the child has a worker");
    match backend() {
        Backend::Process => {
            let f = SkFunction::builder("crash").build().unwrap();
            let args = Args::new().with("code", &7i32).unwrap();
            let err = worker.call(&f, &args, Some(WAIT)).unwrap_err();
            assert!(
                err.is_retryable(),
                "the crash is reported as a death: {err}"
            );
            wait_dead(&worker);
            assert_eq!(worker.exit(), Some(Exit::Code(7)));
        }
        _ => {
            worker.kill();
            // `Worker::kill` drops the thread's channel before it records
            // the kill, so the thread can report a normal exit first (a
            // race in handle.rs); name it if it happens.
            let exit = worker.exit().unwrap();
            assert!(
                !exit.is_normal(),
                "Worker::kill of a thread worker was recorded as {exit:?}: \
                 the kill/ParentGone race in handle.rs"
            );
        }
    }
}

/// Ends the child's current worker normally.
fn quit_child(m: &ProcessManager, id: ChildId) {
    let worker = m.worker(id).expect("the child has a worker");
    match backend() {
        Backend::Process => {
            let f = SkFunction::builder("quit").build().unwrap();
            let _ = worker.call(&f, &Args::new(), Some(WAIT));
            wait_dead(&worker);
        }
        _ => worker.stop(WAIT),
    }
    assert_eq!(worker.exit(), Some(Exit::Normal));
}

fn wait_dead(worker: &Worker) {
    let deadline = Instant::now() + WAIT;
    while worker.is_alive() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert!(!worker.is_alive(), "worker {} ended", worker.name());
}

/// Receives events until one matches, failing with what was seen.
fn expect(events: &Receiver<ManagerEvent>, what: &str, pred: impl Fn(&ManagerEvent) -> bool) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while let Ok(event) = events.recv_deadline(deadline) {
        if pred(&event) {
            return;
        }
        seen.push(event);
    }
    panic!("no {what} event within {WAIT:?}; saw {seen:#?}");
}

fn restarted(events: &Receiver<ManagerEvent>, id: ChildId) {
    expect(
        events,
        "Restarted",
        |e| matches!(e, ManagerEvent::Restarted { id: i, .. } if *i == id),
    );
}

fn removed(events: &Receiver<ManagerEvent>, id: ChildId) {
    expect(
        events,
        "Removed",
        |e| matches!(e, ManagerEvent::Removed { id: i, .. } if *i == id),
    );
}

fn restarts_of(m: &ProcessManager, id: ChildId) -> u32 {
    m.children()
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.restarts)
        .expect("the child is supervised")
}

/// No further events for a moment: nothing else was restarted.
fn quiet(events: &Receiver<ManagerEvent>) -> Vec<ManagerEvent> {
    thread::sleep(Duration::from_millis(300));
    events.try_iter().collect()
}

/// Three children; crashes the one at `crashed`; returns the old workers
/// and whether each was restarted.
fn crash_one_of_three(strategy: RestartStrategy, crashed: usize) -> Vec<bool> {
    let m = manager(&format!("m-{strategy:?}"), strategy);
    let events = m.events();
    let ids: Vec<ChildId> = ["a", "b", "c"]
        .iter()
        .map(|n| spawn(&m, &format!("{strategy:?}-{n}"), Restart::Permanent))
        .collect();
    let old: Vec<Worker> = ids.iter().map(|&id| m.worker(id).unwrap()).collect();
    crash_child(&m, ids[crashed]);
    // Everything the strategy restarts is restarted, in start order.
    let expected: Vec<ChildId> = match strategy {
        RestartStrategy::OneForOne => vec![ids[crashed]],
        RestartStrategy::OneForAll => ids.clone(),
        _ => ids[crashed..].to_vec(),
    };
    let mut order = Vec::new();
    let mut exits = Vec::new();
    let deadline = Instant::now() + WAIT;
    while order.len() < expected.len() {
        match events.recv_deadline(deadline).expect("restart events") {
            ManagerEvent::Restarted { id, restarts, .. } => {
                assert_eq!(restarts, 1);
                order.push(id);
            }
            ManagerEvent::Exited { id, exit, .. } => exits.push((id, exit)),
            _ => {}
        }
    }
    assert_eq!(order, expected, "restarted in start order");
    let late = quiet(&events);
    assert!(late.is_empty(), "nothing else happened: {late:#?}");
    // Only the crash was an exit to supervise: siblings the manager
    // stopped itself are not fed back as crashes.
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].0, ids[crashed]);
    assert!(!exits[0].1.is_normal());

    let mut was_restarted = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let now = m.worker(id).unwrap();
        assert!(now.is_alive(), "child {i} serves");
        let again = restarts_of(&m, id) == 1;
        assert_eq!(again, !old[i].is_alive(), "child {i}: old worker ended");
        if backend() == Backend::Process {
            assert_eq!(again, now.pid() != old[i].pid(), "child {i}: pid changed");
            // The new incarnation really serves calls.
            let f = SkFunction::builder("whoami").build().unwrap();
            let pid: u32 = m
                .call(id, &f, &Args::new(), Some(WAIT))
                .unwrap()
                .take()
                .unwrap();
            assert_eq!(pid, now.pid());
        }
        was_restarted.push(again);
    }
    m.shutdown(Duration::from_secs(5)).unwrap();
    was_restarted
}

#[test]
fn one_for_one_restarts_only_the_crashed_child() {
    let restarted = guarded(|| crash_one_of_three(RestartStrategy::OneForOne, 1));
    assert_eq!(restarted, [false, true, false]);
}

#[test]
fn one_for_all_restarts_every_child() {
    let restarted = guarded(|| crash_one_of_three(RestartStrategy::OneForAll, 1));
    assert_eq!(restarted, [true, true, true]);
}

#[test]
fn rest_for_one_restarts_the_crashed_child_and_those_after_it() {
    let restarted = guarded(|| crash_one_of_three(RestartStrategy::RestForOne, 1));
    assert_eq!(restarted, [false, true, true]);
}

#[test]
fn a_permanent_child_is_restarted_after_a_normal_exit_too() {
    guarded(|| {
        let m = manager("m-permanent", RestartStrategy::OneForOne);
        let events = m.events();
        let id = spawn(&m, "perm", Restart::Permanent);
        quit_child(&m, id);
        expect(&events, "Exited", |e| {
            matches!(
                e,
                ManagerEvent::Exited {
                    exit: Exit::Normal,
                    ..
                }
            )
        });
        restarted(&events, id);
        assert_eq!(restarts_of(&m, id), 1);
        crash_child(&m, id);
        restarted(&events, id);
        assert_eq!(restarts_of(&m, id), 2);
        assert!(m.worker(id).unwrap().is_alive());
    })
}

#[test]
fn a_transient_child_is_restarted_only_after_a_crash() {
    guarded(|| {
        let m = manager("m-transient", RestartStrategy::OneForOne);
        let events = m.events();
        let crashes = spawn(&m, "trans-crash", Restart::Transient);
        let quits = spawn(&m, "trans-quit", Restart::Transient);
        crash_child(&m, crashes);
        restarted(&events, crashes);
        quit_child(&m, quits);
        removed(&events, quits);
        let children = m.children();
        assert_eq!(children.len(), 1, "{children:?}");
        assert_eq!(children[0].id, crashes);
        assert_eq!(children[0].restarts, 1);
        assert_eq!(children[0].state, ChildState::Running);
        assert!(m.worker(quits).is_none());
        let err = m
            .call(
                quits,
                &SkFunction::builder("whoami").build().unwrap(),
                &Args::new(),
                None,
            )
            .unwrap_err();
        assert!(matches!(err, ManagerError::UnknownChild { .. }), "{err}");
    })
}

#[test]
fn a_temporary_child_is_never_restarted() {
    guarded(|| {
        let m = manager("m-temporary", RestartStrategy::OneForAll);
        let events = m.events();
        let keeper = spawn(&m, "keeper", Restart::Permanent);
        let crashes = spawn(&m, "temp-crash", Restart::Temporary);
        let quits = spawn(&m, "temp-quit", Restart::Temporary);
        let keeper_worker = m.worker(keeper).unwrap();
        crash_child(&m, crashes);
        removed(&events, crashes);
        quit_child(&m, quits);
        removed(&events, quits);
        let late = quiet(&events);
        assert!(
            !late
                .iter()
                .any(|e| matches!(e, ManagerEvent::Restarted { .. })),
            "{late:#?}"
        );
        let ids: Vec<ChildId> = m.children().iter().map(|c| c.id).collect();
        assert_eq!(ids, [keeper]);
        assert!(
            keeper_worker.is_alive(),
            "a temporary exit restarts no sibling"
        );
        assert_eq!(restarts_of(&m, keeper), 0);
    })
}

#[test]
fn a_temporary_child_in_a_restart_group_is_stopped_with_it_and_removed() {
    for strategy in [RestartStrategy::OneForAll, RestartStrategy::RestForOne] {
        hang_guard(Duration::from_secs(120), move || {
            let m = manager(&format!("m-temp-group-{strategy:?}"), strategy);
            let events = m.events();
            let crasher = spawn(&m, "group-crasher", Restart::Permanent);
            let temp = spawn(&m, "group-temp", Restart::Temporary);
            let keeper = spawn(&m, "group-keeper", Restart::Permanent);
            let temp_worker = m.worker(temp).unwrap();
            crash_child(&m, crasher);
            removed(&events, temp);
            restarted(&events, keeper);
            assert!(
                !temp_worker.is_alive(),
                "{strategy:?}: the temporary child was stopped"
            );
            let ids: Vec<ChildId> = m.children().iter().map(|c| c.id).collect();
            assert_eq!(ids, [crasher, keeper], "{strategy:?}");
            assert_eq!(restarts_of(&m, crasher), 1);
            assert_eq!(restarts_of(&m, keeper), 1);
            m.shutdown(Duration::from_secs(5)).unwrap();
        });
    }
}

#[test]
fn too_many_restarts_escalate_and_the_manager_rejects_new_work() {
    hang_guard(Duration::from_secs(120), || {
        let m = manager("m-intensity", RestartStrategy::OneForOne);
        let events = m.events();
        let id = spawn(&m, "fragile", Restart::Permanent);
        let bystander = spawn(&m, "bystander", Restart::Permanent);
        for n in 1..=3 {
            crash_child(&m, id);
            restarted(&events, id);
            assert_eq!(restarts_of(&m, id), n);
            assert!(!m.is_escalated());
        }
        let last = m.worker(id).unwrap();
        let other = m.worker(bystander).unwrap();
        crash_child(&m, id);
        expect(&events, "Escalated", |e| {
            *e == ManagerEvent::Escalated {
                restarts: 3,
                within: Duration::from_secs(120),
            }
        });
        assert!(m.is_escalated());
        assert!(!last.is_alive() && !other.is_alive(), "every child stopped");
        assert!(
            m.children()
                .iter()
                .all(|c| c.state == ChildState::Stopped && c.pid.is_none()),
            "{:?}",
            m.children()
        );
        let err = m.spawn(ChildSpec::new("late")).unwrap_err();
        let ManagerError::Escalated {
            manager,
            restarts,
            within,
        } = &err
        else {
            panic!("expected Escalated, got {err:?}")
        };
        assert_eq!(
            (manager.as_str(), *restarts, *within),
            ("m-intensity", 3, Duration::from_secs(120))
        );
        assert!(err.to_string().contains("more than 3 restarts"), "{err}");
        let f = SkFunction::builder("whoami").build().unwrap();
        let err = m.call(bystander, &f, &Args::new(), None).unwrap_err();
        assert!(matches!(err, ManagerError::Escalated { .. }), "{err}");
        assert_eq!(m.budget().in_use(), Budget::new(0, 0), "budget given back");
        m.shutdown(Duration::from_secs(1)).unwrap();
    })
}

fn pid_alive(pid: u32) -> bool {
    // A zombie has exited; only a running (or sleeping) process counts.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[test]
fn shutdown_stops_every_child_and_restarts_nothing() {
    guarded(|| {
        let m = manager("m-shutdown", RestartStrategy::OneForAll);
        let events = m.events();
        let ids: Vec<ChildId> = (0..3)
            .map(|i| spawn(&m, &format!("down-{i}"), Restart::Permanent))
            .collect();
        let workers: Vec<Worker> = ids.iter().map(|&id| m.worker(id).unwrap()).collect();
        m.shutdown(Duration::from_secs(5)).unwrap();
        for w in &workers {
            assert!(!w.is_alive(), "{} stopped", w.name());
            assert_eq!(
                w.exit(),
                Some(Exit::Normal),
                "{} stopped gracefully",
                w.name()
            );
            if backend() == Backend::Process {
                assert!(!pid_alive(w.pid()), "process {} is gone", w.pid());
            }
        }
        let late = quiet(&events);
        assert!(
            !late.iter().any(|e| matches!(
                e,
                ManagerEvent::Restarted { .. } | ManagerEvent::Exited { .. }
            )),
            "shutdown exits are not supervised: {late:#?}"
        );
        assert!(ids.iter().all(|&id| m.worker(id).is_none()));
        assert_eq!(m.budget().in_use(), Budget::new(0, 0));
        let err = m.spawn(ChildSpec::new("late")).unwrap_err();
        assert!(matches!(err, ManagerError::ShutDown { .. }), "{err}");
        m.shutdown(Duration::from_secs(5)).unwrap(); // idempotent
    })
}

#[test]
fn dropping_the_manager_shuts_it_down() {
    guarded(|| {
        let m = manager("m-drop", RestartStrategy::OneForOne);
        let id = spawn(&m, "dropped", Restart::Permanent);
        let worker = m.worker(id).unwrap();
        drop(m);
        assert!(!worker.is_alive());
    })
}

#[test]
fn a_full_budget_side_refuses_a_child_until_one_is_removed() {
    guarded(|| {
        // 4 of each, split evenly: the external side has 2 of each.
        let commander = ProcessCommander::new(Budget::new(4, 4));
        let m = ProcessManager::builder("m-budget")
            .backend(backend())
            .commander(&commander, Side::External)
            .intensity(10, Duration::from_secs(60))
            .build()
            .unwrap();
        let events = m.events();
        let kept = spawn(&m, "kept", Restart::Permanent);
        let temp = spawn(&m, "temp", Restart::Temporary);

        let err = m.spawn(ChildSpec::new("third")).unwrap_err();
        let ManagerError::Budget {
            manager,
            child,
            source:
                BudgetError::Exhausted {
                    side,
                    resource,
                    limit,
                },
        } = &err
        else {
            panic!("expected an exhausted budget, got {err:?}")
        };
        assert_eq!((manager.as_str(), child.as_str()), ("m-budget", "third"));
        assert_eq!(
            (*side, *resource, *limit),
            (Side::External, Resource::of(backend()), 2)
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        let kind = Resource::of(backend());
        assert_eq!(
            source,
            format!("the external budget is exhausted: all 2 {kind} slots are in use")
        );

        // A restart reuses the child's slot, even with the side full.
        crash_child(&m, kept);
        restarted(&events, kept);

        // A temporary child that ends is removed and gives its slot back.
        crash_child(&m, temp);
        removed(&events, temp);
        let third = spawn(&m, "third", Restart::Permanent);
        assert!(matches!(
            m.spawn_wait(ChildSpec::new("fourth"), Duration::from_millis(50)),
            Err(ManagerError::Budget { .. })
        ));

        // So does an explicit removal.
        m.remove(third, Duration::from_secs(5)).unwrap();
        removed(&events, third);
        let _fourth = spawn(&m, "fourth", Restart::Permanent);
        assert_eq!(m.budget().in_use().get(kind), 2);

        // The other side is untouched, and shutdown gives everything back.
        assert_eq!(commander.internal().in_use(), Budget::new(0, 0));
        m.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(commander.external().in_use(), Budget::new(0, 0));
    })
}
