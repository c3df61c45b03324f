//! Workers as users meet them, on the backend `SK_SPAWN_BACKEND` selects
//! (process by default): calls, failures, timeouts, deaths, bad input,
//! and no orphans. Shared storage is in `workers_storage.rs`.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sk_core::{Args, SkFunction};
use sk_process::{Backend, Exit, Worker, WorkerError};
use sk_testkit::{guarded, hang_guard};

mod common;

use common::{backend, call};

sk_process::worker_test!();

#[sk_core::function(crate = ::sk_core)]
fn total(values: Vec<u64>) -> u64 {
    println!("summing {} values", values.len());
    values.iter().sum()
}

#[sk_core::function(crate = ::sk_core)]
fn refuse(reason: String) -> Result<u32, String> {
    Err(reason)
}

/// Sleeps `ms` in small steps, leaving early if its stop token is set.
#[sk_core::function(crate = ::sk_core)]
fn nap(ms: u64) -> u64 {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if sk_core::StopToken::current().is_some_and(|t| t.is_stopped()) {
            return 0;
        }
        thread::sleep(Duration::from_millis(2));
    }
    ms
}

/// Tells the parent it started, then naps like [`nap`].
#[sk_core::function(crate = ::sk_core)]
fn told_nap(ms: u64) -> u64 {
    sk_process::tell_parent(&"napping".to_owned()).expect("a worker");
    nap(ms)
}

/// Writes bad bytes onto the worker's own channel to the parent.
#[sk_core::function(crate = ::sk_core)]
fn corrupt(kind: String) -> u32 {
    let bytes: Vec<u8> = match kind.as_str() {
        "huge" => u32::MAX.to_le_bytes().to_vec(),
        "garbage" => {
            let mut b = 16u32.to_le_bytes().to_vec();
            b.extend([0xFF; 16]);
            b
        }
        _ => vec![0x10, 0x00],
    };
    sk_process::__private::__write_raw_to_parent(&bytes).expect("a process worker");
    if kind == "truncated" {
        // End the stream inside the frame.
        sk_process::__private::__close_channel_to_parent().expect("a process worker");
    }
    // Stay alive: the parent must notice the bad input, not an exit.
    thread::sleep(Duration::from_secs(5));
    0
}

#[test]
fn a_call_runs_in_the_worker_and_returns_its_output_intact() {
    guarded(|| {
        let worker = Worker::spawn("w-basic", backend()).unwrap();
        let pid: u32 = call(&worker, "whoami", Args::new(), None).unwrap();
        match backend() {
            Backend::Process => {
                assert_ne!(pid, std::process::id(), "ran in another process");
                assert_eq!(pid, worker.pid());
            }
            _ => assert_eq!(pid, std::process::id()),
        }
        let values: Vec<u64> = (1..=1000).collect();
        let sum: u64 = call(
            &worker,
            "total",
            Args::new().with("values", &values).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(sum, 500_500);
        worker.stop(Duration::from_secs(5));
        assert_eq!(worker.exit(), Some(Exit::Normal));
    })
}

#[test]
fn a_failing_function_is_a_remote_error_and_the_worker_goes_on() {
    guarded(|| {
        let worker = Worker::spawn("w-fail", backend()).unwrap();
        let err = call::<u32>(
            &worker,
            "refuse",
            Args::new().with("reason", &"no thanks".to_owned()).unwrap(),
            None,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("function \"refuse\" failed: no thanks"),
            "{msg}"
        );
        assert!(matches!(err, WorkerError::Remote { .. }));
        let pid: u32 = call(&worker, "whoami", Args::new(), None).unwrap();
        assert!(pid > 0);
    })
}

#[test]
fn an_unregistered_function_is_a_clear_remote_error() {
    guarded(|| {
        let worker = Worker::spawn("w-unknown", backend()).unwrap();
        // A handle for a name only the parent... and nobody... knows.
        let wire = sk_cereal::Internal::encode(&(
            "no_such_fn",
            Args::new(),
            sk_core::Modifiers::default(),
        ))
        .unwrap();
        let f: SkFunction = sk_cereal::Internal::decode(&wire).unwrap();
        let err = worker.call(&f, &Args::new(), None).unwrap_err();
        assert!(
            err.to_string().contains("\"no_such_fn\" is not registered"),
            "{err}"
        );
    })
}

#[test]
fn a_call_over_its_timeout_ends_the_worker_and_is_reported_timed_out() {
    guarded(|| {
        let worker = Worker::spawn("w-timeout", backend()).unwrap();
        let err = call::<u64>(
            &worker,
            "nap",
            Args::new().with("ms", &10_000u64).unwrap(),
            Some(Duration::from_millis(100)),
        )
        .unwrap_err();
        assert!(matches!(err, WorkerError::TimedOut { .. }), "{err:?}");
        assert!(!worker.is_alive());
        let deadline = Instant::now() + Duration::from_secs(10);
        while worker.exit().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if backend() == Backend::Process {
            assert_eq!(worker.exit(), Some(Exit::Signal(libc::SIGKILL)));
        }
    })
}

#[test]
fn a_worker_killed_mid_call_fails_the_call_instead_of_hanging() {
    guarded(|| {
        let worker = Worker::spawn("w-sigkill", backend()).unwrap();
        let f = SkFunction::builder("told_nap").build().unwrap();
        let pending = worker
            .submit(&f, &Args::new().with("ms", &20_000u64).unwrap())
            .unwrap();
        // Killed once the call has surely started.
        let started: Option<String> = worker.listen(Duration::from_secs(20)).unwrap();
        assert_eq!(started.as_deref(), Some("napping"));
        match backend() {
            // SAFETY-free: an external SIGKILL, as an operator would send.
            Backend::Process => {
                let status = Command::new("kill")
                    .args(["-KILL", &worker.pid().to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            _ => worker.kill(),
        }
        let err = pending.wait(Some(Duration::from_secs(20))).unwrap_err();
        assert!(matches!(err, WorkerError::Died { .. }), "{err:?}");
        assert!(err.is_retryable());
    })
}

#[test]
fn bad_bytes_from_a_worker_are_a_protocol_error_and_end_it() {
    if backend() != Backend::Process {
        return; // Thread workers have no byte channel.
    }
    for kind in ["huge", "garbage", "truncated"] {
        hang_guard(Duration::from_secs(60), move || {
            let worker = Worker::spawn(format!("w-bad-{kind}"), Backend::Process).unwrap();
            let err = call::<u32>(
                &worker,
                "corrupt",
                Args::new().with("kind", &kind.to_owned()).unwrap(),
                Some(Duration::from_secs(30)),
            )
            .unwrap_err();
            assert!(matches!(err, WorkerError::Died { .. }), "{kind}: {err:?}");
            let exit = worker.exit().expect("ended");
            let Exit::Failed(why) = exit else {
                panic!("{kind}: expected a protocol failure, got {exit:?}")
            };
            assert!(why.starts_with("protocol error"), "{kind}: {why}");
            if kind == "huge" {
                assert!(why.contains("exceeds the limit"), "{why}");
            }
        });
    }
}

#[test]
fn bad_bytes_to_a_worker_make_it_exit_with_an_error() {
    if backend() != Backend::Process {
        return;
    }
    guarded(|| {
        let worker = Worker::spawn("w-bad-in", Backend::Process).unwrap();
        worker.__send_raw(&u32::MAX.to_le_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.is_alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(worker.exit(), Some(Exit::Code(3)));
    })
}

#[test]
#[ignore = "run as a child process by parent_sigkill_leaves_no_orphans"]
fn parent_with_workers() {
    let workers: Vec<Worker> = (0..3)
        .map(|i| Worker::spawn(format!("orphan-{i}"), Backend::Process).unwrap())
        .collect();
    let pids: Vec<String> = workers.iter().map(|w| w.pid().to_string()).collect();
    println!("SK-PIDS {}", pids.join(","));
    // Keep one busy mid-call when the parent dies.
    let f = SkFunction::builder("nap").build().unwrap();
    let _busy = workers[0].submit(&f, &Args::new().with("ms", &60_000u64).unwrap());
    thread::sleep(Duration::from_secs(60));
}

fn alive(pid: u32) -> bool {
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
fn parent_sigkill_leaves_no_orphans() {
    if backend() != Backend::Process {
        return; // Thread workers die with their process by construction.
    }
    hang_guard(Duration::from_secs(300), || {
        for trial in 0..20 {
            let mut parent = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "parent_with_workers",
                    "--include-ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = parent.stdout.take().unwrap();
            let mut pids = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some((_, list)) = line.split_once("SK-PIDS ") {
                    pids = list
                        .split(',')
                        .map(|p| p.trim().parse::<u32>().unwrap())
                        .collect();
                    break;
                }
            }
            assert_eq!(
                pids.len(),
                3,
                "trial {trial}: the parent reported its workers"
            );
            assert!(pids.iter().all(|&p| alive(p)), "trial {trial}: workers run");
            parent.kill().unwrap(); // SIGKILL
            parent.wait().unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
            assert!(
                left.is_empty(),
                "trial {trial}: workers {left:?} outlived their parent by 2 s"
            );
        }
    })
}

/// Doubles `count` numbers the parent tells it, telling each back.
#[sk_core::function(crate = ::sk_core)]
fn doubler(count: u32) -> u32 {
    let mut seen = 0;
    while seen < count {
        match sk_process::listen_parent::<u64>(Duration::from_secs(20)) {
            Ok(Some(n)) => {
                sk_process::tell_parent(&(n * 2)).expect("parent listens");
                seen += 1;
            }
            _ => break,
        }
    }
    seen
}

#[test]
fn tell_and_listen_carry_messages_both_ways_while_a_call_runs() {
    guarded(|| {
        let worker = Worker::spawn("w-messages", backend()).unwrap();
        let f = SkFunction::builder("doubler").build().unwrap();
        let pending = worker
            .submit(&f, &Args::new().with("count", &3u32).unwrap())
            .unwrap();
        for n in [1u64, 20, 300] {
            worker.tell(&n).unwrap();
            let back: Option<u64> = worker.listen(Duration::from_secs(20)).unwrap();
            assert_eq!(back, Some(n * 2));
        }
        let seen: u32 = pending
            .wait(Some(Duration::from_secs(20)))
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(seen, 3);
        // Outside a running call there is nobody to talk to.
        assert!(sk_process::tell_parent(&1u8).is_err());
    })
}

/// Set by the process init below, in every new worker process.
static INIT_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark_init() {
    INIT_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
}

sk_process::process_init!(mark_init);

/// Workers whose name says so die in their process init, before they are
/// ready.
fn die_in_init() {
    if std::env::var("SK_WORKER_NAME").is_ok_and(|n| n.starts_with("die-in-init")) {
        std::process::exit(7);
    }
}

sk_process::process_init!(die_in_init);

#[sk_core::function(crate = ::sk_core)]
fn init_ran() -> bool {
    INIT_RAN.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn registered_process_inits_run_in_every_new_worker_process() {
    if backend() != Backend::Process {
        return; // Thread workers share this process; nothing to initialise.
    }
    guarded(|| {
        // This process never ran it: only worker processes do.
        assert!(!INIT_RAN.load(std::sync::atomic::Ordering::SeqCst));
        for i in 0..2 {
            let worker = Worker::spawn(format!("w-init-{i}"), Backend::Process).unwrap();
            let ran: bool = call(&worker, "init_ran", Args::new(), None).unwrap();
            assert!(ran, "worker {i} ran the process init");
        }
    })
}

#[test]
#[ignore = "run as a child process by worker_output_is_forwarded_with_its_name"]
fn parent_of_a_printing_worker() {
    let worker = Worker::spawn("w-print", Backend::Process).unwrap();
    let values: Vec<u64> = vec![1, 2, 3];
    let _: u64 = call(
        &worker,
        "total",
        Args::new().with("values", &values).unwrap(),
        None,
    )
    .unwrap();
    // `stop` returns once the worker's end is reported, which comes only
    // after everything it printed has been forwarded.
    worker.stop(Duration::from_secs(5));
}

#[test]
fn worker_output_is_forwarded_with_its_name() {
    if backend() != Backend::Process {
        return; // A thread worker prints straight to this process's stdout.
    }
    hang_guard(Duration::from_secs(60), || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "parent_of_a_printing_worker",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("[w-print] summing 3 values"), "{stdout}");
    })
}

#[test]
fn a_worker_sending_bad_bytes_is_replaced_by_its_manager() {
    if backend() != Backend::Process {
        return; // Thread workers have no byte channel.
    }
    guarded(|| {
        use sk_process::{ChildSpec, ManagerEvent, ProcessManager};
        let manager = ProcessManager::builder("bad-bytes")
            .backend(Backend::Process)
            .build()
            .unwrap();
        let events = manager.events();
        let id = manager.spawn(ChildSpec::new("corrupted")).unwrap();
        let before = manager.worker(id).unwrap().pid();
        let f = SkFunction::builder("corrupt")
            .arg("kind", "garbage".to_owned())
            .build()
            .unwrap();
        let err = manager
            .call(id, &f, &Args::new(), Some(Duration::from_secs(30)))
            .unwrap_err();
        let chain = sk_core::error_chain(&err);
        assert!(chain.contains("died: failed: protocol error"), "{chain}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let restarted = loop {
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ManagerEvent::Restarted { id: child, .. }) if child == id => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        assert!(restarted, "the manager replaced the worker");
        let after = manager.worker(id).unwrap();
        assert_ne!(after.pid(), before);
        let pid: u32 = call(&after, "whoami", Args::new(), None).unwrap();
        assert_eq!(pid, after.pid(), "the replacement serves calls");
        manager.shutdown(Duration::from_secs(5)).unwrap();
    })
}

/// Reads the worker's standard input to its end; how many bytes came.
#[sk_core::function(crate = ::sk_core)]
fn drain_stdin() -> u64 {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).expect("stdin reads");
    bytes.len() as u64
}

/// Starts `sleep 60`, which inherits the worker's standard streams, and
/// returns its pid.
#[sk_core::function(crate = ::sk_core)]
fn start_sleeper() -> u32 {
    Command::new("sleep").arg("60").spawn().expect("sleep").id()
}

#[test]
fn code_in_a_worker_process_cannot_reach_its_channel_through_stdin() {
    if backend() != Backend::Process {
        return; // A thread worker shares this process's stdin.
    }
    guarded(|| {
        let worker = Worker::spawn("w-stdin", Backend::Process).unwrap();
        let read: u64 = call(&worker, "drain_stdin", Args::new(), None).unwrap();
        assert_eq!(read, 0, "stdin is empty, not the channel");
        // The channel is intact: calls go on.
        let pid: u32 = call(&worker, "whoami", Args::new(), None).unwrap();
        assert_eq!(pid, worker.pid());
    })
}

#[test]
fn a_program_a_worker_started_does_not_keep_its_death_from_being_reported() {
    if backend() != Backend::Process {
        return;
    }
    guarded(|| {
        let worker = Worker::spawn("w-grandparent", Backend::Process).unwrap();
        let sleeper: u32 = call(&worker, "start_sleeper", Args::new(), None).unwrap();
        let f = SkFunction::builder("nap").build().unwrap();
        let pending = worker
            .submit(&f, &Args::new().with("ms", &20_000u64).unwrap())
            .unwrap();
        let status = Command::new("kill")
            .args(["-KILL", &worker.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let err = pending.wait(Some(Duration::from_secs(20))).unwrap_err();
        let _ = Command::new("kill")
            .args(["-KILL", &sleeper.to_string()])
            .status();
        // Killed mid-call, or (when the kill beats the call) before it
        // started: either way its death is reported, not hidden.
        assert!(
            matches!(
                err,
                WorkerError::Died { .. } | WorkerError::NotDelivered { .. }
            ),
            "{err:?}"
        );
        assert_eq!(worker.exit(), Some(Exit::Signal(libc::SIGKILL)));
    })
}

#[test]
fn a_worker_started_without_waiting_serves_the_calls_sent_at_once() {
    guarded(|| {
        let workers: Vec<Worker> = (0..3)
            .map(|i| Worker::start(format!("w-start-{i}"), backend()).unwrap())
            .collect();
        let f = SkFunction::builder("whoami").build().unwrap();
        let pending: Vec<_> = workers
            .iter()
            .map(|w| w.submit(&f, &Args::new()).unwrap())
            .collect();
        for (worker, p) in workers.iter().zip(pending) {
            let pid: u32 = p
                .wait(Some(Duration::from_secs(30)))
                .unwrap()
                .take()
                .unwrap();
            assert_eq!(pid, worker.pid());
            worker.ready(Duration::from_secs(1)).unwrap();
        }
    })
}

#[test]
fn a_worker_that_dies_before_it_is_ready_fails_its_calls_with_its_exit() {
    if backend() != Backend::Process {
        return; // Only worker processes run process inits.
    }
    guarded(|| {
        let worker = Worker::start("die-in-init-start", Backend::Process).unwrap();
        let err = call::<u32>(
            &worker,
            "whoami",
            Args::new(),
            Some(Duration::from_secs(30)),
        )
        .unwrap_err();
        // It never served: the call surely never ran, and says so.
        assert!(
            matches!(&err, WorkerError::NotDelivered { status, .. } if status == "exited with status 7"),
            "{err:?}"
        );
        assert!(err.never_ran() && err.is_retryable());
        assert_eq!(worker.exit(), Some(Exit::Code(7)));

        let err = Worker::spawn("die-in-init-spawn", Backend::Process).unwrap_err();
        assert!(
            matches!(&err, WorkerError::Died { status, .. } if status == "exited with status 7"),
            "{err:?}"
        );
    })
}

/// The worker's project root.
#[sk_core::function(crate = ::sk_core)]
fn root_path() -> String {
    sk_reg::SkRoot::current().map_or_else(|e| e.to_string(), |r| r.path().display().to_string())
}

#[test]
fn a_worker_process_adopts_the_root_its_parent_fixed() {
    if backend() != Backend::Process {
        return; // A thread worker shares this process's root.
    }
    guarded(|| {
        // Not the root the worker would detect from its working directory.
        let dir = std::env::temp_dir().join(format!("sk-root-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = match sk_reg::SkRoot::set_current(sk_reg::SkRoot::at(&dir).unwrap()) {
            Ok(root) => root,
            Err(_) => sk_reg::SkRoot::current().unwrap(),
        };
        let worker = Worker::spawn("w-root", Backend::Process).unwrap();
        let seen: String = call(&worker, "root_path", Args::new(), None).unwrap();
        assert_eq!(seen, root.path().display().to_string());
        worker.stop(Duration::from_secs(5));
        let _ = std::fs::remove_dir(&dir);
    })
}

#[test]
fn a_worker_kept_in_a_thread_local_stops_cleanly_when_its_thread_ends() {
    thread_local! {
        static KEPT: std::cell::RefCell<Option<Worker>> = const { std::cell::RefCell::new(None) };
    }
    guarded(|| {
        let f = SkFunction::builder("whoami").build().unwrap();
        // The worker is kept first, then called: the thread's other
        // thread-locals (made by the call) are destroyed before it, and
        // its drop (which tells the worker to stop) runs after them.
        let pid = thread::spawn(move || {
            let worker = Worker::spawn("kept", Backend::from_env()).unwrap();
            KEPT.with(|kept| *kept.borrow_mut() = Some(worker));
            KEPT.with(|kept| {
                let kept = kept.borrow();
                let worker = kept.as_ref().unwrap();
                worker
                    .call(&f, &Args::new(), None)
                    .unwrap()
                    .take::<u32>()
                    .unwrap()
            })
        })
        .join()
        .expect("the thread ends without a panic (the process did not abort)");
        assert!(pid > 0);
    });
}
