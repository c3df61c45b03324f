//! Remote parts end to end: a real NATS server with JetStream started by
//! the test, workers on simulated hosts (network namespaces), each test a
//! behaviour a user would notice — answers, failures, retries, poison
//! parts, timeouts, limits, KV storage, a drained worker, a stopped run.
//! What is lost and comes back (the broker, a link, the coordinator, bad
//! bytes) is in `recovery.rs`.
//!
//! Needs root (namespaces) and `nats-server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, assert_all_answered, fan, fan_with, notes, on_broker, run, starts};
use sk_core::{RetryPolicy, SkFunction};
use sk_cycle::{BuildError, CycleBuilder, CyclePart, ErrorMode, PartState, Run, RunError};
use sk_remote::{Broker, Coordinator, GroupConfig, RemoteError};

fn main() {
    sk_process::init();
    sk_remote::worker_main();
    common::run_tests(
        &[
            ("unreachable_broker_is_a_typed_error", unreachable_broker),
            ("placement_errors_are_named", placement_errors),
            ("credentials_pass_through", credentials),
            ("remote_parts_answer_fail_and_retry", answer_fail_retry),
            ("a_part_that_kills_its_worker_is_poison", poison),
            ("a_part_no_worker_answers_is_poison", vanishing_workers),
            ("a_part_over_its_timeout_times_out", timeout),
            ("in_flight_limit_holds_across_workers", in_flight_limit),
            ("rate_limit_paces_sending", rate_limit),
            ("kv_storage_counts_atomically", kv_storage),
            ("sigterm_drains_a_worker", sigterm_drains),
            ("a_drained_worker_hands_parts_back", sigterm_hands_back),
            ("a_stopped_run_stops_its_parts", stop_reaches_workers),
        ],
        Duration::from_secs(300),
    );
}

fn unreachable_broker() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let e = Coordinator::connect(&Broker::new(&url).connect_timeout(Duration::from_secs(1)))
        .unwrap_err();
    assert!(matches!(e, RemoteError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    // It gave up (no endless reconnect loop).
    assert!(started.elapsed() < Duration::from_secs(30));
    let e = sk_remote::RemoteWorker::new(Broker::new(&url).connect_timeout(Duration::from_secs(1)))
        .group("g")
        .run(&sk_core::StopToken::new())
        .unwrap_err();
    assert!(e.to_string().contains(&url), "{e}");
    let e = sk_remote::RemoteWorker::new(Broker::new(&url))
        .run(&sk_core::StopToken::new())
        .unwrap_err();
    assert!(e.to_string().contains("no group"), "{e}");
}

/// A broker that wants a token: without it, a typed error naming the URL
/// (coordinator and worker alike); with it, parts run.
fn credentials() {
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store = tempfile::tempdir().unwrap();
    let binary =
        std::env::var(sk_testkit::NATS_SERVER_ENV).unwrap_or_else(|_| "nats-server".into());
    let _server = Killed(
        std::process::Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--auth",
                "s3cret",
                "-sd",
            ])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let e = Coordinator::connect(&Broker::new(&url).connect_timeout(Duration::from_secs(2)))
        .unwrap_err();
    assert!(matches!(e, RemoteError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    let refused = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--sk-remote-worker",
            &url,
            "--group",
            "auth",
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&url));
    // With the token: a worker serves, a coordinator runs.
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--sk-remote-worker",
        &url,
        "--group",
        "auth",
        "--token",
        "s3cret",
    ]);
    let (worker, lines) = sk_testkit::spawn_lines(&mut command).unwrap();
    let _worker = Killed(worker);
    assert!(
        lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .contains("ready")
    );
    let coordinator = Coordinator::connect(&Broker::new(&url).token("s3cret")).unwrap();
    let log = store.path().join("log").display().to_string();
    assert_all_answered(&run(&fan("auth", 2, 1, &log, "auth"), &coordinator), 2);
}

fn placement_errors() {
    // A closure cannot go remote: a build error naming the part.
    let mut b = CycleBuilder::new("closure-remote");
    b.add(CyclePart::new("c", |_| Ok::<_, String>(1u8)).remote("g"), 1)
        .unwrap();
    let e = b.build().err().unwrap();
    assert!(
        matches!(&e, BuildError::LocalOnlyInProcess { name, .. } if name == "c"),
        "{e:?}"
    );
    // A remote part without a runner: the run does not start.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log").display().to_string();
    let cycle = fan("no-runner", 1, 0, &log, "g");
    let e = cycle.run(Run::once()).unwrap_err();
    assert!(
        matches!(&e, RunError::NoRemote { part, group, .. } if part == "p0" && group == "g"),
        "{e:?}"
    );
    // A group that cannot be a subject.
    let server = sk_testkit::NatsServer::start().unwrap();
    let coordinator = Coordinator::connect(&Broker::new(server.url())).unwrap();
    assert!(matches!(
        coordinator.group("a.b", GroupConfig::new()),
        Err(RemoteError::BadGroup { .. })
    ));
    let cycle = fan("bad-group", 1, 0, &log, "a b");
    let e = cycle
        .run(Run::once().remote(Arc::new(coordinator)))
        .unwrap_err();
    assert!(matches!(e, RunError::Remote { .. }), "{e:?}");
    assert!(format!("{:?}", std::error::Error::source(&e)).contains("a b"));
}

fn answer_fail_retry() {
    let cluster = Cluster::serving(2, &["--group", "g", "--concurrency", "4"], "process");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let n = 24;
    let counter = cluster.path("counter");
    let flaky = |fails: u64| {
        SkFunction::builder("flaky")
            .arg("counter", format!("{counter}-{fails}"))
            .arg("fails", fails)
            .build()
            .unwrap()
    };
    let extra = vec![
        CyclePart::function("retried", flaky(2))
            .remote("g")
            .error_mode(ErrorMode::Retry)
            .retry(RetryPolicy::fixed(Duration::from_millis(10)).max_attempts(5)),
        CyclePart::function("failing", flaky(100)).remote("g"),
        CyclePart::function("unknown", SkFunction::builder("work").build().unwrap()).remote("g"),
    ];
    let cycle = fan_with("answers", n, 20, &log, "g", extra);
    let report = run(&cycle, &coordinator);
    assert_all_answered(&report, n);
    let last = report.last().unwrap();
    // Retried by the coordinator, one message per attempt: the third ran.
    assert_eq!(last.state_of("retried"), Some(PartState::Succeeded));
    assert_eq!(*last.output::<u64>("retried").unwrap(), 3);
    let failing = last.error_of("failing").unwrap().to_string();
    assert!(failing.contains("call 1 fails"), "{failing}");
    assert!(failing.contains("remote group \"g\""), "{failing}");
    assert_eq!(last.state_of("unknown"), Some(PartState::Failed));
    // Both hosts' workers took parts.
    let notes = notes(std::path::Path::new(&log));
    let by: BTreeSet<u32> = notes.iter().map(|n| n.ppid).collect();
    assert!(
        by.contains(&cluster.pid(0)) && by.contains(&cluster.pid(1)),
        "{by:?}"
    );
    // Each part ran once: nobody died.
    assert!(starts(&notes).values().all(|&c| c == 1));
}

fn poison() {
    let mut cluster = Cluster::serving(2, &["--group", "g", "--concurrency", "2"], "process");
    let coordinator = cluster.coordinator();
    coordinator
        .group("g", GroupConfig::new().crash_limit(3))
        .unwrap();
    let log = cluster.path("log");
    let crash = SkFunction::builder("crash")
        .arg("log", log.clone())
        .build()
        .unwrap();
    let extra = vec![CyclePart::function("crash", crash).remote("g")];
    let report = run(&fan_with("poison", 6, 50, &log, "g", extra), &coordinator);
    let last = report.last().unwrap();
    assert_eq!(last.state_of("crash"), Some(PartState::Failed));
    let e = last.error_of("crash").unwrap().to_string();
    assert!(e.contains("worker died 3 times"), "{e}");
    // It crashed its worker exactly the crash limit times.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("C ")).count(), 3);
    // The other parts were not affected, and the workers live on.
    assert_all_answered(&report, 6);
    for w in &mut cluster.workers {
        assert!(w.as_mut().unwrap().child.try_wait().unwrap().is_none());
    }
}

/// Workers that take a part and vanish every time, before they can say
/// it is poison (here: a consumer of the group's that never acks): the
/// broker gives up at MaxDeliver, and the coordinator fails the part as
/// poison and drops its message.
fn vanishing_workers() {
    let server = sk_testkit::NatsServer::start().unwrap();
    let coordinator = Coordinator::connect(&Broker::new(server.url())).unwrap();
    coordinator
        .group(
            "ghost",
            GroupConfig::new()
                .crash_limit(1)
                .ack_wait(Duration::from_millis(200)),
        )
        .unwrap();
    let url = server.url();
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let ghost = {
        let (taken, done) = (Arc::clone(&taken), Arc::clone(&done));
        on_broker(url, move |_client, js| async move {
            use futures_util::StreamExt;
            while !done.load(Ordering::Acquire) {
                let consumer: Result<async_nats::jetstream::consumer::PullConsumer, _> = js
                    .get_consumer_from_stream("SK_WORK_group_ghost", "SK_WORK")
                    .await;
                let Ok(consumer) = consumer else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let Ok(mut batch) = consumer
                    .batch()
                    .max_messages(1)
                    .expires(Duration::from_millis(300))
                    .messages()
                    .await
                else {
                    continue;
                };
                // Taken, and never answered nor acked.
                while let Some(Ok(_message)) = batch.next().await {
                    taken.fetch_add(1, Ordering::AcqRel);
                }
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log").display().to_string();
    let report = run(&fan("ghost", 1, 0, &log, "ghost"), &coordinator);
    done.store(true, Ordering::Release);
    ghost.join().unwrap();
    let last = report.last().unwrap();
    assert_eq!(last.state_of("p0"), Some(PartState::Failed));
    let e = last.error_of("p0").unwrap().to_string();
    assert!(e.contains("worker died 3 times"), "{e}");
    // MaxDeliver is the crash limit plus 2.
    assert_eq!(taken.load(Ordering::Acquire), 3);
}

fn timeout() {
    let cluster = Cluster::serving(1, &["--group", "g", "--concurrency", "2"], "process");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let slow = SkFunction::builder("work")
        .arg("id", 99u64)
        .arg("ms", 20_000u64)
        .arg("log", log.clone())
        .build()
        .unwrap();
    let extra = vec![
        CyclePart::function("slow", slow)
            .remote("g")
            .timeout(Duration::from_millis(500)),
    ];
    let report = run(&fan_with("timeout", 2, 10, &log, "g", extra), &coordinator);
    let last = report.last().unwrap();
    assert_eq!(last.state_of("slow"), Some(PartState::TimedOut));
    assert_all_answered(&report, 2);
    // Preempted: its local process was killed.
    let notes = notes(std::path::Path::new(&log));
    let slow = notes.iter().find(|n| n.id == 99 && n.start).unwrap();
    assert!(sk_testkit::wait_dead(slow.pid, Duration::from_secs(10)));
    assert!(!notes.iter().any(|n| n.id == 99 && !n.start));
    // The worker serves on.
    let report = run(&fan("after", 3, 1, &log, "g"), &coordinator);
    assert_all_answered(&report, 3);
}

/// The most parts of the log at `log` that ran at once (from their
/// start and end notes).
fn most_at_once(log: &str) -> usize {
    let mut events: Vec<(u128, i32)> = notes(std::path::Path::new(log))
        .iter()
        .map(|n| (n.at_ns, if n.start { 1 } else { -1 }))
        .collect();
    // Ends before starts at the same instant.
    events.sort_unstable();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, step) in events {
        open += step;
        most = most.max(open);
    }
    usize::try_from(most).unwrap()
}

fn in_flight_limit() {
    let cluster = Cluster::serving(4, &["--group", "lim", "--concurrency", "4"], "thread");
    let coordinator = cluster.coordinator();
    coordinator
        .group("lim", GroupConfig::new().max_in_flight(3))
        .unwrap();
    let log = cluster.path("log");
    let report = run(&fan("limit", 40, 60, &log, "lim"), &coordinator);
    assert_all_answered(&report, 40);
    let most = most_at_once(&log);
    assert!(most <= 3, "{most} parts ran at once, limit 3");
    assert!(most >= 2, "the limit let only {most} run at once");
    // With 16 slots and no limit, more run at once.
    coordinator.group("lim", GroupConfig::new()).unwrap();
    let log = cluster.path("log2");
    let report = run(&fan("nolimit", 40, 60, &log, "lim"), &coordinator);
    assert_all_answered(&report, 40);
    assert!(most_at_once(&log) > 3);
}

fn rate_limit() {
    let cluster = Cluster::serving(1, &["--group", "r", "--concurrency", "8"], "thread");
    let coordinator = cluster.coordinator();
    coordinator
        .group("r", GroupConfig::new().rate_per_sec(20.0))
        .unwrap();
    let log = cluster.path("log");
    let report = run(&fan("rate", 30, 1, &log, "r"), &coordinator);
    assert_all_answered(&report, 30);
    let mut at: Vec<u128> = notes(std::path::Path::new(&log))
        .iter()
        .filter(|n| n.start)
        .map(|n| n.at_ns)
        .collect();
    at.sort_unstable();
    // No half second holds more than its share (10) and one in transit.
    let most = at
        .iter()
        .map(|&t| {
            at.iter()
                .filter(|&&u| u >= t && u < t + 500_000_000)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 12, "{most} starts in half a second at 20/s");
}

fn kv_storage() {
    let cluster = Cluster::serving(4, &["--group", "kv", "--concurrency", "1"], "process");
    let coordinator = cluster.coordinator();
    // Each host's worker sees the broker at its own gateway; the bucket
    // is the same.
    let mut b = CycleBuilder::new("kv");
    b.add(CyclePart::new("go", |_| ()), 1).unwrap();
    let parts: Vec<CyclePart> = (0..4)
        .map(|i| {
            let url = cluster.server.url_via(cluster.hosts[i].gateway());
            let f = SkFunction::builder("count_up")
                .arg("url", url)
                .arg("bucket", "counts".to_owned())
                .arg("key", "hits/total".to_owned())
                .arg("times", 1000u64)
                .build()
                .unwrap();
            CyclePart::function(format!("c{i}"), f).remote("kv")
        })
        .collect();
    b.split(parts, 2).unwrap();
    let report = run(&b.build().unwrap(), &coordinator);
    let last = report.last().unwrap();
    for i in 0..4 {
        let name = format!("c{i}");
        assert_eq!(
            last.state_of(&name),
            Some(PartState::Succeeded),
            "{:?}",
            last.error_of(&name)
        );
    }
    let kv = sk_remote::KvStorage::open(&Broker::new(cluster.url()), "counts").unwrap();
    let storage = sk_reg::GlobalStorage::with_backend(Arc::new(kv));
    assert_eq!(storage.get::<u64>("hits/total").unwrap(), Some(4000));
    assert_eq!(storage.keys().unwrap(), vec!["hits/total".to_owned()]);
    assert!(storage.remove("hits/total").unwrap());
    assert_eq!(storage.get::<u64>("hits/total").unwrap(), None);
}

fn sigterm_drains() {
    let mut cluster = Cluster::serving(1, &["--group", "d", "--concurrency", "4"], "process");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let cycle = fan("drain", 4, 800, &log, "d");
    let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
    let handle = cycle.spawn(Run::once().threads(2).remote(runner)).unwrap();
    while starts(&notes(std::path::Path::new(&log))).len() < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Told to stop mid-part: it finishes what it runs, then exits 0.
    let status = cluster.terminate(0);
    assert!(status.success(), "{status:?}");
    let report = handle.join().unwrap();
    assert_all_answered(&report, 4);
    assert!(
        starts(&notes(std::path::Path::new(&log)))
            .values()
            .all(|&c| c == 1)
    );
}

fn sigterm_hands_back() {
    let mut cluster = Cluster::start(2);
    let args = ["--group", "h", "--concurrency", "2", "--drain-secs", "0"];
    let first = cluster.worker(0, &args, "process");
    let log = cluster.path("log");
    let cycle = fan("hand-back", 2, 3_000, &log, "h");
    let coordinator = cluster.coordinator();
    let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
    let handle = cycle.spawn(Run::once().threads(2).remote(runner)).unwrap();
    while starts(&notes(std::path::Path::new(&log))).len() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let quitter = cluster.pid(first);
    // No drain grace: its parts go back at once, to the other worker.
    let second = cluster.worker(1, &args, "process");
    let status = cluster.terminate(first);
    assert!(status.success(), "{status:?}");
    let report = handle.join().unwrap();
    assert_all_answered(&report, 2);
    let notes = notes(std::path::Path::new(&log));
    let helper = cluster.pid(second);
    for id in 0..2 {
        assert!(notes.iter().any(|n| n.start && n.id == id && n.by(quitter)));
        // Cut short where it was, run to its end by the other.
        assert!(
            !notes
                .iter()
                .any(|n| !n.start && n.id == id && n.by(quitter))
        );
        assert!(notes.iter().any(|n| !n.start && n.id == id && n.by(helper)));
    }
}

fn stop_reaches_workers() {
    let cluster = Cluster::serving(1, &["--group", "s", "--concurrency", "4"], "process");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let log2 = log.clone();
    let extra = vec![
        CyclePart::fallible("fails", move |_| {
            // Once the remote parts run, fail the run at once.
            while starts(&notes(std::path::Path::new(&log2))).len() < 3 {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err::<(), _>("enough".to_owned())
        })
        .error_mode(ErrorMode::InstantFail),
    ];
    let cycle = fan_with("stop", 3, 30_000, &log, "s", extra);
    let started = Instant::now();
    let report = run(&cycle, &coordinator);
    assert_eq!(report.stop_reason(), sk_cycle::StopReason::InstantFail);
    for i in 0..3 {
        let state = report.last().unwrap().state_of(&format!("p{i}"));
        assert_eq!(state, Some(PartState::Cancelled));
    }
    // The worker killed the parts' local processes: none runs on.
    for note in notes(std::path::Path::new(&log)).iter().filter(|n| n.start) {
        assert!(sk_testkit::wait_dead(note.pid, Duration::from_secs(10)));
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let report = run(&fan("next", 4, 1, &cluster.path("log2"), "s"), &coordinator);
    assert_all_answered(&report, 4);
    assert!(notes(std::path::Path::new(&log)).iter().all(|n| n.start));
}
