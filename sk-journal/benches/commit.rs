//! How fast the journal commits records, at each durability level, and
//! how long reopening a journal and finding where a run was takes.
//!
//! Run with `cargo bench -p sk-journal --bench commit`. Prints records
//! committed per second when many parts finish at once (the writer's
//! group commit) and when each waits for its own commit (one part at a
//! time), and the time from `Journal::open` to `begin` returning for a
//! run with 10 000 records. `SK_BENCH_QUICK=1` for a short run.

// A benchmark whose setup fails should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sk_journal::{Durability, Fingerprint, Journal, PartRecord};

fn record(iteration: u64, n: u32) -> PartRecord {
    PartRecord {
        iteration,
        part: format!("part-{n:05}"),
        lane: 0,
        state: "succeeded".to_owned(),
        attempts: 1,
        error: None,
        output: Some(vec![7; 64]),
        store: Vec::new(),
    }
}

fn plan() -> Fingerprint {
    Fingerprint::new("parallel", [("part", "1-1")])
}

/// Records per second: `n` records sent at once, then waited for.
fn burst(durability: Durability, n: u32) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path().join("j"), durability).unwrap();
    j.begin("run", &plan()).unwrap();
    let started = Instant::now();
    let tickets: Vec<_> = (0..n).map(|i| j.record("run", record(1, i))).collect();
    for t in tickets {
        t.wait().unwrap();
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

/// Records per second: one at a time, each waiting for its commit.
fn one_by_one(durability: Durability, n: u32) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path().join("j"), durability).unwrap();
    j.begin("run", &plan()).unwrap();
    let started = Instant::now();
    for i in 0..n {
        j.record("run", record(1, i)).wait().unwrap();
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

/// Open + begin for a run whose next iteration has `n` finished parts.
fn resume(n: u32) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    {
        let j = Journal::open(&path, Durability::default()).unwrap();
        j.begin("run", &plan()).unwrap();
        for i in 0..n {
            let _ = j.record("run", record(1, i));
        }
        j.flush().unwrap();
    }
    let started = Instant::now();
    let j = Journal::open(&path, Durability::default()).unwrap();
    let resumed = j.begin("run", &plan()).unwrap();
    let took = started.elapsed();
    assert_eq!(resumed.completed.len(), n as usize);
    took
}

fn main() {
    let quick = std::env::var_os("SK_BENCH_QUICK").is_some();
    let (many, few) = if quick { (5_000, 200) } else { (50_000, 2_000) };
    println!("{:<56} {:>14}", "case", "records/s");
    for (name, level) in [
        (
            "process death (synchronous=NORMAL)",
            Durability::ProcessDeath,
        ),
        ("power loss (synchronous=FULL)", Durability::PowerLoss),
    ] {
        let best = (0..3).map(|_| burst(level, many)).fold(0.0, f64::max);
        println!("{:<56} {:>14.0}", format!("{name}, burst of {many}"), best);
        let best = (0..3).map(|_| one_by_one(level, few)).fold(0.0, f64::max);
        println!("{:<56} {:>14.0}", format!("{name}, one by one"), best);
    }
    let took = (0..3).map(|_| resume(10_000)).min().unwrap_or_default();
    println!(
        "{:<56} {:>14.2?}",
        "open + begin, 10 000 parts to resume", took
    );
}
