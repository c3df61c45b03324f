//! Kill trials: one of four remote workers, each on a simulated host of
//! its own, SIGKILLed while at least 100 parts are in flight (or, when
//! the workers up hold fewer at once, once every part has started: a
//! worker replaced in the trial before may still be joining). Every trial
//! checks: no part lost (every part answered, with its output), no
//! result recorded twice (the run's journal and its record observer),
//! and no more duplicate executions than the killed worker had parts in
//! flight. The redelivery latency (kill → the part starts on another
//! worker) is printed as p50/p99/max.
//!
//! `SK_REMOTE_KILL_TRIALS` sets the number of trials (default 50).
//! Needs root (namespaces) and `nats-server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, notes, now_ns, starts};
use parking_lot::Mutex;
use sk_core::SkFunction;
use sk_cycle::{CycleBuilder, CyclePart, PartState, Run};

fn main() {
    sk_process::init();
    sk_remote::worker_main();
    common::run_tests(
        &[("killed_workers_lose_nothing", killed_workers_lose_nothing)],
        Duration::from_secs(3_000),
    );
}

const WORKERS: usize = 4;
const SLOTS: &str = "40";
const PARTS: u64 = 160;
const IN_FLIGHT: usize = 100;

fn killed_workers_lose_nothing() {
    let trials: usize = std::env::var("SK_REMOTE_KILL_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let mut cluster = Cluster::start(WORKERS);
    let args = ["--group", "k", "--concurrency", SLOTS];
    let mut slot_of_host: Vec<usize> = (0..WORKERS)
        .map(|host| cluster.worker(host, &args, "thread"))
        .collect();
    let coordinator = cluster.coordinator();
    let mut latencies: Vec<u128> = Vec::new();
    let (mut executions, mut duplicates, mut lost_at_kill) = (0usize, 0usize, 0usize);
    // Trials whose kill came once every part had started (fewer than
    // IN_FLIGHT in flight at once).
    let mut fallbacks = 0usize;
    for trial in 0..trials {
        let log = cluster.path(&format!("log-{trial}"));
        let journal = cluster.path(&format!("journal-{trial}"));
        let mut b = CycleBuilder::new("trial");
        b.add(CyclePart::new("go", |_| ()), 1).unwrap();
        let parts: Vec<CyclePart> = (0..PARTS)
            .map(|i| {
                let f = SkFunction::builder("work")
                    .arg("id", i)
                    .arg("ms", 400u64)
                    .arg("log", log.clone())
                    .build()
                    .unwrap();
                CyclePart::function(format!("p{i}"), f).remote("k")
            })
            .collect();
        b.split(parts, 2).unwrap();
        let cycle = b.build().unwrap();
        let recorded: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let seen = Arc::clone(&recorded);
        let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
        let handle = cycle
            .spawn(
                Run::once()
                    .threads(2)
                    .journal(&journal)
                    .run_id(format!("trial-{trial}"))
                    .on_recorded(move |r| *seen.lock().entry(r.part.to_string()).or_default() += 1)
                    .remote(runner),
            )
            .unwrap();
        // At least IN_FLIGHT parts started and not ended, or every part
        // started: the workers up may hold fewer than IN_FLIGHT at once
        // (a replacement still joining), and waiting for more would wait
        // for ever once the parts end.
        loop {
            let n = notes(Path::new(&log));
            let started = starts(&n).len();
            let open = n.iter().filter(|x| x.start).count() - n.iter().filter(|x| !x.start).count();
            if open >= IN_FLIGHT {
                break;
            }
            if started as u64 >= PARTS || handle.is_finished() {
                fallbacks += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let host = fastrand::usize(..WORKERS);
        let victim = cluster.pid(slot_of_host[host]);
        cluster.kill(slot_of_host[host]);
        let killed_at = now_ns();
        // The victim's parts in flight when it died.
        let at_kill = notes(Path::new(&log));
        let ended: BTreeSet<u64> = at_kill
            .iter()
            .filter(|n| !n.start && n.by(victim))
            .map(|n| n.id)
            .collect();
        let in_flight: BTreeSet<u64> = at_kill
            .iter()
            .filter(|n| n.start && n.by(victim) && !ended.contains(&n.id))
            .map(|n| n.id)
            .collect();
        lost_at_kill += in_flight.len();
        // A new worker on the host, as a supervisor would start.
        slot_of_host[host] = cluster.worker(host, &args, "thread");
        let report = handle.join().unwrap();
        let last = report.last().unwrap();
        for i in 0..PARTS {
            let name = format!("p{i}");
            assert_eq!(
                last.state_of(&name),
                Some(PartState::Succeeded),
                "trial {trial}: {name} {:?}",
                last.error_of(&name)
            );
            assert_eq!(*last.output::<u64>(&name).unwrap(), 2 * i);
        }
        // Recorded once each: by the observer and in the journal.
        let recorded = recorded.lock();
        assert_eq!(recorded.len() as u64, PARTS + 1, "trial {trial}");
        assert!(
            recorded.values().all(|&c| c == 1),
            "trial {trial}: {recorded:?}"
        );
        let records = sk_journal::Journal::open(&journal, sk_journal::Durability::ProcessDeath)
            .unwrap()
            .records(&format!("trial-{trial}"))
            .unwrap();
        let unique: BTreeSet<&str> = records.iter().map(|r| r.part.as_str()).collect();
        assert_eq!(
            unique.len(),
            records.len(),
            "trial {trial}: a result recorded twice"
        );
        assert_eq!(records.len() as u64, PARTS + 1);
        // Executed again: at most what the victim had in flight.
        let after = notes(Path::new(&log));
        let counts = starts(&after);
        let extra: usize = counts.values().map(|&c| c - 1).sum();
        assert!(
            extra <= in_flight.len(),
            "trial {trial}: {extra} duplicate executions, {} in flight on the killed worker",
            in_flight.len()
        );
        executions += counts.values().sum::<usize>();
        duplicates += extra;
        for id in &in_flight {
            let again = after
                .iter()
                .filter(|n| n.start && n.id == *id && !n.by(victim) && n.at_ns > killed_at)
                .map(|n| n.at_ns)
                .min()
                .unwrap_or_else(|| panic!("trial {trial}: part {id} never ran again"));
            latencies.push(again - killed_at);
        }
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |&ns| ns as f64 / 1e9)
    };
    // Most trials kill a worker with parts in flight.
    assert!(
        lost_at_kill > 0 && fallbacks * 2 <= trials,
        "{fallbacks} of {trials} trials killed after every part started"
    );
    println!(
        "{trials} kill trials ({fallbacks} killed once every part started): {} parts, 0 lost, \
         0 recorded twice; {executions} executions, \
         {duplicates} duplicate (killed in flight: {lost_at_kill}); redelivery after a kill: \
         p50 {:.3} s, p99 {:.3} s, max {:.3} s over {} parts",
        trials as u64 * PARTS,
        pick(0.5),
        pick(0.99),
        pick(1.0),
        latencies.len()
    );
}
