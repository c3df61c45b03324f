use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::*;

const LONG: Duration = Duration::from_secs(30);

/// Polls `name`'s state until `want` (the hang guard bounds the wait).
fn wait_for_state(threader: &Threader, name: &str, want: ThreadState) -> ThreadStatus {
    loop {
        let status = threader.status(name).expect("listed");
        if status.state == want {
            return status;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_named_thread_runs_and_returns_its_value() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader
            .spawn("answer", |_| {
                (thread::current().name().map(str::to_owned), 6 * 7)
            })
            .unwrap();
        assert_eq!(handle.name(), "answer");
        assert_ne!(handle.thread_id(), thread::current().id());
        let (os_name, value) = handle.join().unwrap();
        assert_eq!(os_name.as_deref(), Some("answer"));
        assert_eq!(value, 42);
        assert!(threader.threads().is_empty(), "joined threads are unlisted");
    });
}

#[test]
fn a_running_name_is_taken_until_its_thread_is_joined() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let first = threader
            .spawn("ingest", |stop| stop.wait_timeout(LONG))
            .unwrap();
        let err = threader.spawn("ingest", |_| ()).unwrap_err();
        assert!(matches!(&err, ThreadError::NameTaken { name } if name == "ingest"));
        assert_eq!(
            err.to_string(),
            "thread name \"ingest\" is taken by a running thread"
        );

        first.stop();
        assert!(first.join().unwrap());
        let second = threader.spawn("ingest", |_| 2).unwrap();
        assert_eq!(second.join().unwrap(), 2);
    });
}

#[test]
fn a_finished_but_unjoined_name_can_be_reused() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let mut first = threader.spawn("again", |_| 1).unwrap();
        wait_for_state(&threader, "again", ThreadState::Finished);
        let second = threader.spawn("again", |_| 2).unwrap();
        assert_eq!(threader.threads().len(), 1, "the finished one is replaced");
        assert_eq!(first.join_timeout(LONG).unwrap(), Some(1));
        assert_eq!(
            threader.threads().len(),
            1,
            "joining the old one keeps the new"
        );
        assert_eq!(second.join().unwrap(), 2);
    });
}

#[test]
fn invalid_names_are_refused() {
    let threader = Threader::new();
    for bad in ["", "nul\0inside"] {
        let err = threader.spawn(bad, |_| ()).unwrap_err();
        assert!(matches!(err, ThreadError::InvalidName { .. }), "{err:?}");
    }
    assert_eq!(
        threader.spawn("", |_| ()).unwrap_err().to_string(),
        "thread name \"\" is invalid: it is empty"
    );
    assert!(threader.threads().is_empty());
}

#[test]
fn init_functions_run_in_order_on_the_new_thread_before_the_body() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for label in ["first", "second"] {
            let log = Arc::clone(&log);
            threader.add_init(move |info| {
                log.lock()
                    .push((label, info.name.clone(), thread::current().id()));
            });
        }
        let body_log = Arc::clone(&log);
        let handle = threader
            .spawn("worker", move |_| {
                body_log
                    .lock()
                    .push(("body", String::new(), thread::current().id()));
            })
            .unwrap();
        let id = handle.thread_id();
        handle.join().unwrap();

        let log = log.lock();
        let labels: Vec<_> = log.iter().map(|(label, ..)| *label).collect();
        assert_eq!(labels, ["first", "second", "body"]);
        assert!(
            log.iter().all(|(.., tid)| *tid == id),
            "all on the new thread"
        );
        assert_ne!(id, thread::current().id());
        assert_eq!(log[0].1, "worker");
    });
}

#[test]
fn init_functions_added_later_apply_only_to_later_threads() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let indices = Arc::new(Mutex::new(Vec::new()));
        let early = threader.spawn("early", |_| ()).unwrap();
        early.join().unwrap();
        let seen = Arc::clone(&indices);
        threader.add_init(move |info| seen.lock().push(info.index));
        threader.spawn("late", |_| ()).unwrap().join().unwrap();
        assert_eq!(*indices.lock(), [1], "only the second spawn ran it");
    });
}

#[test]
fn a_panicking_body_is_reported_and_the_threader_stays_usable() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader
            .spawn("ingest", |_| -> u32 { panic!("index out of bounds") })
            .unwrap();
        let status = wait_for_state(&threader, "ingest", ThreadState::Panicked);
        assert!(status.ended.is_some());
        let err = handle.join().unwrap_err();
        assert!(
            matches!(&err, ThreadError::Panicked { name, message }
                if name == "ingest" && message == "index out of bounds"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "thread \"ingest\" panicked: index out of bounds"
        );

        let formatted = threader
            .spawn("formatted", |_| -> () { panic!("bad value {}", 7) })
            .unwrap();
        let err = formatted.join().unwrap_err();
        assert!(matches!(err, ThreadError::Panicked { message, .. } if message == "bad value 7"));

        let after = threader.spawn("after", |_| "still fine").unwrap();
        assert_eq!(after.join().unwrap(), "still fine");
    });
}

#[test]
fn a_panicking_init_fails_the_thread_without_running_the_body() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        threader.add_init(|info| {
            if info.name == "doomed" {
                panic!("init refused {}", info.name);
            }
        });
        let ran = Arc::new(AtomicBool::new(false));
        let body_ran = Arc::clone(&ran);
        let handle = threader
            .spawn("doomed", move |_| body_ran.store(true, Ordering::SeqCst))
            .unwrap();
        let err = handle.join().unwrap_err();
        assert!(
            matches!(&err, ThreadError::Panicked { name, message }
                if name == "doomed" && message == "init refused doomed"),
            "{err:?}"
        );
        assert!(!ran.load(Ordering::SeqCst), "the body did not run");
        threader.spawn("fine", |_| ()).unwrap().join().unwrap();
    });
}

#[test]
fn request_stop_reaches_a_body_waiting_on_its_token() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader
            .spawn("waiter", |stop| {
                let start = Instant::now();
                (stop.wait_timeout(LONG), start.elapsed())
            })
            .unwrap();
        threader.request_stop("waiter").unwrap();
        let (stopped, waited) = handle.join().unwrap();
        assert!(stopped);
        assert!(waited < LONG);

        let err = threader.request_stop("nobody").unwrap_err();
        assert!(matches!(&err, ThreadError::Unknown { name } if name == "nobody"));
        assert_eq!(err.to_string(), "no thread named \"nobody\"");
    });
}

#[test]
fn join_timeout_is_none_while_running_then_some_after_stop() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let mut handle = threader
            .spawn("slow", |stop| {
                stop.wait_timeout(LONG);
                "done"
            })
            .unwrap();
        let start = Instant::now();
        assert_eq!(
            handle.join_timeout(Duration::from_millis(20)).unwrap(),
            None
        );
        assert!(start.elapsed() < LONG, "returned at its deadline");
        assert!(!handle.is_finished());
        assert!(threader.status("slow").is_some());

        handle.stop();
        assert_eq!(handle.join_timeout(LONG).unwrap(), Some("done"));
        assert!(handle.is_finished());
        assert!(threader.status("slow").is_none(), "unlisted once joined");
        assert!(matches!(
            handle.join_timeout(LONG),
            Err(ThreadError::Joined { .. })
        ));
        let err = handle.join().unwrap_err();
        assert_eq!(err.to_string(), "thread \"slow\" was already joined");
    });
}

#[test]
fn join_all_names_threads_that_ignore_their_token() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let release = Arc::new(AtomicBool::new(false));
        let stubborn_release = Arc::clone(&release);
        // Handles dropped: the Threader owns both threads.
        drop(
            threader
                .spawn("stubborn", move |_| {
                    while !stubborn_release.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(1));
                    }
                })
                .unwrap(),
        );
        drop(
            threader
                .spawn("polite", |stop| {
                    stop.wait_timeout(LONG);
                })
                .unwrap(),
        );

        threader.stop_all();
        let err = threader.join_all(Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(&err, ThreadError::JoinTimeout { names } if names == &["stubborn"]),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "thread \"stubborn\" still running after the join timeout"
        );
        let listed: Vec<_> = threader.threads().into_iter().map(|s| s.name).collect();
        assert_eq!(
            listed,
            ["stubborn"],
            "the polite one was joined and unlisted"
        );
        assert_eq!(threader.threads()[0].state, ThreadState::Stopping);

        release.store(true, Ordering::SeqCst);
        threader.join_all(LONG).unwrap();
        assert!(threader.threads().is_empty());
    });
}

#[test]
fn join_all_waits_for_held_handles_but_leaves_their_result() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader
            .spawn("held", |stop| {
                stop.wait_timeout(LONG);
                7
            })
            .unwrap();
        threader.stop_all();
        threader.join_all(LONG).unwrap();
        assert!(handle.is_finished());
        assert_eq!(
            threader.status("held").map(|s| s.state),
            Some(ThreadState::Finished),
            "still listed for its handle"
        );
        assert_eq!(handle.join().unwrap(), 7);
        assert!(threader.threads().is_empty());
    });
}

#[test]
fn join_timeout_error_lists_every_late_thread() {
    let err = ThreadError::JoinTimeout {
        names: vec!["a".to_owned(), "b".to_owned()],
    };
    assert_eq!(
        err.to_string(),
        "threads \"a\", \"b\" still running after the join timeout"
    );
}

#[test]
fn states_move_from_running_to_stopping_to_finished() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let (gate, gate_rx) = mpsc::channel::<()>();
        let handle = threader
            .spawn("phases", move |stop| {
                stop.wait_timeout(LONG);
                // Linger after the stop request so `Stopping` can be seen.
                let _ = gate_rx.recv_timeout(LONG);
            })
            .unwrap();
        let running = threader.status("phases").unwrap();
        assert_eq!(running.state, ThreadState::Running);
        assert_eq!(running.ended, None);

        threader.request_stop("phases").unwrap();
        assert_eq!(
            threader.status("phases").unwrap().state,
            ThreadState::Stopping
        );

        gate.send(()).unwrap();
        let finished = wait_for_state(&threader, "phases", ThreadState::Finished);
        assert!(finished.state.is_ended());
        assert!(finished.ended.unwrap() >= finished.started);
        assert_eq!(finished.started, running.started);
        handle.join().unwrap();
    });
}

#[test]
fn forget_finished_unlists_only_ended_threads() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        drop(threader.spawn("quick", |_| ()).unwrap());
        let slow = threader
            .spawn("slow", |stop| {
                stop.wait_timeout(LONG);
            })
            .unwrap();
        wait_for_state(&threader, "quick", ThreadState::Finished);
        assert_eq!(threader.forget_finished(), 1);
        let listed: Vec<_> = threader.threads().into_iter().map(|s| s.name).collect();
        assert_eq!(listed, ["slow"]);
        slow.stop();
        slow.join().unwrap();
    });
}

#[test]
fn the_current_token_inside_the_body_is_the_threads_token() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let in_init = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&in_init);
        threader.add_init(move |_| *seen.lock() = StopToken::current());
        let handle = threader
            .spawn("current", |stop| {
                StopToken::current().is_some_and(|current| current.same_as(stop))
            })
            .unwrap();
        let token = handle.stop_token().clone();
        assert!(handle.join().unwrap());
        let init_token = in_init.lock().take().expect("init saw a current token");
        assert!(init_token.same_as(&token));
        assert!(
            StopToken::current().is_none(),
            "nothing leaks to the caller"
        );
    });
}

#[test]
fn dropping_a_threader_stops_its_threads() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader
            .spawn("orphaned", |stop| stop.wait_timeout(LONG))
            .unwrap();
        drop(threader);
        assert!(handle.join().unwrap());
    });
}

#[test]
fn the_global_threader_is_one_instance() {
    sk_testkit::guarded(|| {
        let a = Threader::global();
        let b = thread::spawn(Threader::global).join().unwrap();
        assert!(std::ptr::eq(a, b));
        let handle = a.spawn("threader-tests-global", |_| 5).unwrap();
        assert!(b.status("threader-tests-global").is_some());
        assert_eq!(handle.join().unwrap(), 5);
    });
}

#[test]
fn debug_output_names_the_threads() {
    sk_testkit::guarded(|| {
        let threader = Threader::new();
        let handle = threader.spawn("shown", |_| ()).unwrap();
        assert!(format!("{threader:?}").contains("\"shown\""));
        assert!(format!("{handle:?}").contains("\"shown\""));
        handle.join().unwrap();
    });
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Threader>();
    send_sync::<ThreadHandle<String>>();
    send_sync::<ThreadStatus>();
    send_sync::<ThreadInfo>();
    send_sync::<ThreadError>();
}

#[test]
fn a_parent_token_stops_threads_running_and_started_later_but_not_the_other_way() {
    sk_testkit::guarded(|| {
        let parent = StopToken::new();
        let threader = Threader::with_parent(&parent);
        let running = threader
            .spawn("running", |stop| stop.wait_timeout(LONG))
            .unwrap();
        threader.stop_all();
        assert!(running.join().unwrap(), "its own stop reached it");
        assert!(
            !parent.is_stopped(),
            "stopping the threads left the parent running"
        );

        let running = threader
            .spawn("running-2", |stop| stop.wait_timeout(LONG))
            .unwrap();
        parent.stop();
        assert!(running.join().unwrap(), "the parent's stop reached it");
        let later = threader.spawn("later", |stop| stop.is_stopped()).unwrap();
        assert!(
            later.join().unwrap(),
            "a thread started after the stop sees it"
        );
    });
}
