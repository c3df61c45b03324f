//! Remote parts through what is lost and comes back: the broker killed
//! and restarted, a worker's link cut, the coordinator killed and its
//! journaled run resumed, a run id used twice, bad bytes on the subjects.
//! Nothing is lost and nothing journaled runs twice. The same set-up as
//! `remote.rs` (a real NATS server, workers on simulated hosts).
//!
//! Needs root (namespaces) and `nats-server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Cluster, assert_all_answered, fan, notes, on_broker, run, starts};
use sk_cycle::{PartState, Run};
use sk_remote::{Broker, Coordinator};

fn main() {
    sk_process::init();
    sk_remote::worker_main();
    if let Ok(spec) = std::env::var(COORDINATOR_ENV) {
        coordinator_child(&spec);
        return;
    }
    common::run_tests(
        &[
            ("broker_restart_loses_nothing", broker_restart),
            ("a_cut_link_is_redelivered", link_cut),
            ("coordinator_killed_resumes", coordinator_killed),
            ("a_reused_run_id_loses_nothing", reused_run_id),
            ("malformed_messages_are_dropped", malformed_messages),
        ],
        Duration::from_secs(300),
    );
}

fn broker_restart() {
    let mut cluster = Cluster::serving(2, &["--group", "b", "--concurrency", "4"], "thread");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let n = 120;
    let cycle = fan("restart", n, 50, &log, "b");
    let handle = {
        let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
        cycle.spawn(Run::once().threads(2).remote(runner)).unwrap()
    };
    // Once a good share has run, the broker goes down and comes back.
    while starts(&notes(std::path::Path::new(&log))).len() < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.server.kill();
    std::thread::sleep(Duration::from_millis(500));
    cluster.server.restart().unwrap();
    let report = handle.join().unwrap();
    assert_all_answered(&report, n);
}

fn link_cut() {
    let cluster = Cluster::serving(3, &["--group", "cut", "--concurrency", "8"], "thread");
    let coordinator = cluster.coordinator();
    let log = cluster.path("log");
    let n = 12;
    let cycle = fan("cut", n, 2_000, &log, "cut");
    let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
    let handle = cycle.spawn(Run::once().threads(2).remote(runner)).unwrap();
    let cut = cluster.pid(0);
    // Cut host 0 off once it runs parts (the others have free slots): no
    // reset reaches anyone.
    let in_flight = loop {
        let notes = notes(std::path::Path::new(&log));
        let mine: Vec<u64> = notes
            .iter()
            .filter(|n| n.start && n.by(cut))
            .map(|n| n.id)
            .collect();
        if mine.len() >= 2 {
            break mine;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    cluster.hosts[0].link_down().unwrap();
    let cut_at = common::now_ns();
    // The run ends while the link is still down: its parts were handed to
    // the other hosts.
    let report = handle.join().unwrap();
    assert_all_answered(&report, n);
    let notes = notes(std::path::Path::new(&log));
    let mut latest = 0u128;
    for id in &in_flight {
        let again = notes
            .iter()
            .filter(|n| n.start && n.id == *id && !n.by(cut) && n.at_ns > cut_at)
            .map(|n| n.at_ns)
            .min();
        let again = again.unwrap_or_else(|| panic!("part {id} was not redelivered"));
        latest = latest.max(again - cut_at);
    }
    println!(
        "link cut: {} parts redelivered, the last {:.2} s after the cut",
        in_flight.len(),
        latest as f64 / 1e9
    );
    cluster.hosts[0].link_up().unwrap();
}

/// The coordinator child: runs the journaled cycle of `spec`
/// (`url|journal|log|n`), printing `recorded <part>` as parts end.
const COORDINATOR_ENV: &str = "SK_TEST_REMOTE_COORDINATOR";

fn coordinator_child(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let (url, journal, log, n) = (f[0], f[1], f[2], f[3].parse::<u64>().unwrap());
    let coordinator = Coordinator::connect(&Broker::new(url)).unwrap();
    let cycle = fan("resumed", n, 150, log, "j");
    let report = cycle
        .run(
            Run::once()
                .threads(2)
                .journal(journal)
                .on_recorded(|r| println!("recorded {}", r.part))
                .remote(Arc::new(coordinator)),
        )
        .unwrap();
    let last = report.last().unwrap();
    let ok = (0..n).all(|i| last.state_of(&format!("p{i}")) == Some(PartState::Succeeded));
    println!("finished {ok}");
}

fn coordinator_killed() {
    let cluster = Cluster::serving(2, &["--group", "j", "--concurrency", "8"], "thread");
    let log = cluster.path("log");
    let journal = cluster.path("run.journal");
    let n = 64u64;
    let spec = format!("{}|{journal}|{log}|{n}", cluster.url());
    // Killed once some parts are journaled and others run.
    let (mut first, lines) =
        sk_testkit::spawn_lines(&mut common::child(&[(COORDINATOR_ENV, spec.clone())])).unwrap();
    let mut recorded = 0;
    while recorded < 20 {
        let line = lines.recv_timeout(Duration::from_secs(60)).unwrap();
        recorded += usize::from(line.starts_with("recorded "));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = common::now_ns();
    let open =
        || sk_journal::Journal::open(&journal, sk_journal::Durability::ProcessDeath).unwrap();
    let before: BTreeSet<String> = open()
        .records("resumed")
        .unwrap()
        .into_iter()
        .map(|r| r.part)
        .collect();
    assert!(before.len() >= recorded);
    let second = common::child(&[(COORDINATOR_ENV, spec)])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success() && out.contains("finished true"),
        "{out}"
    );
    let records = open().records("resumed").unwrap();
    // Every part recorded once; none lost.
    let parts: Vec<&str> = records.iter().map(|r| r.part.as_str()).collect();
    let unique: BTreeSet<&str> = parts.iter().copied().collect();
    assert_eq!(unique.len(), parts.len(), "a part recorded twice");
    assert_eq!(unique.len() as u64, n + 1);
    // Journaled parts were not run again after the kill.
    let notes = notes(std::path::Path::new(&log));
    for note in notes.iter().filter(|n| n.start && n.at_ns > killed_at) {
        assert!(
            !before.contains(&format!("p{}", note.id)),
            "p{} was journaled and ran again",
            note.id
        );
    }
}

/// Two journaled runs of one cycle in fresh journals, one after the
/// other: the same run id, so the same message ids — within the broker's
/// duplicate window. The second must not take the first's messages for
/// its own.
fn reused_run_id() {
    let cluster = Cluster::serving(1, &["--group", "again", "--concurrency", "2"], "thread");
    let coordinator = cluster.coordinator();
    for round in 0..2 {
        let log = cluster.path(&format!("log{round}"));
        let journal = cluster.path(&format!("journal{round}"));
        let report = fan("same-name", 3, 1, &log, "again")
            .run(
                Run::once()
                    .journal(&journal)
                    .remote(Arc::new(coordinator.clone())),
            )
            .unwrap();
        assert_all_answered(&report, 3);
        assert_eq!(starts(&notes(std::path::Path::new(&log))).len(), 3);
    }
}

/// Bad bytes on the work and results subjects, mid-run: dropped (the
/// worker terminates such work for good), nothing else lost, nobody down.
fn malformed_messages() {
    let cluster = Cluster::serving(1, &["--group", "bad", "--concurrency", "4"], "thread");
    let coordinator = cluster.coordinator();
    let url = cluster.url();
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let vandal = {
        let (done, sent) = (Arc::clone(&done), Arc::clone(&sent));
        on_broker(url, move |client, js| async move {
            use futures_util::StreamExt;
            // The run's results subject, from its first result.
            let mut results = client.subscribe("sk.result.>").await.unwrap();
            let first = tokio::time::timeout(Duration::from_secs(5), results.next()).await;
            let subject = match first {
                Ok(Some(result)) => result.subject.to_string(),
                _ => "sk.result.none".to_owned(),
            };
            let junk: [&[u8]; 4] = [b"", &[1], &[1, 0xff, 0xff, 0xff], &[9, 9, 9]];
            while !done.load(Ordering::Acquire) {
                for bytes in junk {
                    let bytes = bytes::Bytes::copy_from_slice(bytes);
                    let _ = js.publish("sk.work.bad.junk", bytes.clone()).await;
                    let _ = js.publish(subject.clone(), bytes).await;
                    sent.fetch_add(2, Ordering::AcqRel);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let log = cluster.path("log");
    let report = run(&fan("junk", 40, 20, &log, "bad"), &coordinator);
    done.store(true, Ordering::Release);
    vandal.join().unwrap();
    assert!(sent.load(Ordering::Acquire) > 0, "no junk was sent");
    assert_all_answered(&report, 40);
    let report = run(
        &fan("after-junk", 4, 1, &cluster.path("log2"), "bad"),
        &coordinator,
    );
    assert_all_answered(&report, 4);
}
