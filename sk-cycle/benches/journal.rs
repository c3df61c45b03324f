//! What a journal costs a run, side by side in one process: the same
//! cycle run journaled (`Run::journal`) and not.
//!
//! Run with `cargo bench -p sk-cycle --bench journal`. Rounds alternate
//! journaled and plain runs so that both see the same noise; each figure
//! is the median of the rounds. `SK_BENCH_QUICK=1` runs one short round;
//! `SK_BENCH_ONE=plain` (or `journal`) runs only five runs of one side of
//! the 100 µs level (`SK_BENCH_NOOP=1`: no-op parts), for `perf stat` or
//! `valgrind --tool=callgrind`.
//!
//! Every figure is of whole runs, fixed costs included (opening and
//! creating the journal, checking the plan, the last commit, closing).
//!
//! - **added per part**: no-op parts, (journaled − plain) / parts, on a
//!   level of 10k parts under one root and on a chain of 10k;
//! - **wall ratio**: parts that work 100 µs each (a spin), journaled /
//!   plain, on the same two shapes;
//! - **power loss**: records committed per second by a run at
//!   `Durability::PowerLoss` (each commit waits for the disk);
//! - **resume to first part**: from `Cycle::run` until the first part that
//!   runs starts, resuming an iteration of 10k parts of which all but one
//!   had been recorded (journal opened, plan checked, 10k ends read back).

// A benchmark whose setup fails should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sk_cycle::{Cycle, CycleBuilder, CyclePart, Durability, ErrorMode, Run};

const PARTS: usize = 10_000;

/// Spins for `work` (a sleep would overshoot by more than the work).
fn spin(work: Duration) {
    let end = Instant::now() + work;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn part(name: String, work: Duration) -> CyclePart {
    CyclePart::new(name, move |_| {
        if !work.is_zero() {
            spin(work);
        }
        1u8
    })
}

/// A root and `n` parts under it.
fn level(n: usize, work: Duration) -> Cycle {
    let mut b = CycleBuilder::new("level");
    b.add(part("root".to_owned(), Duration::ZERO), 1).unwrap();
    b.split((0..n).map(|i| part(format!("p{i}"), work)), 2)
        .unwrap();
    b.build().unwrap()
}

/// `n` parts one after the other.
fn chain(n: usize, work: Duration) -> Cycle {
    let mut b = CycleBuilder::new("chain");
    for (i, level) in (0..n).zip(1u32..) {
        b.add(part(format!("p{i}"), work), level).unwrap();
    }
    b.build().unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Seconds of one run of `cycle`, journaled in a fresh file when
/// `journal` (waiting for every commit: `Cycle::run` returns once
/// everything is committed).
fn timed(cycle: &Cycle, pool: &Arc<rayon::ThreadPool>, journal: Option<Durability>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::once().pool(Arc::clone(pool));
    if let Some(durability) = journal {
        run = run
            .journal(dir.path().join("bench.journal"))
            .durability(durability);
    }
    let started = Instant::now();
    let report = cycle.run(run).expect("the run");
    let took = started.elapsed().as_secs_f64();
    assert!(!report.is_error());
    took
}

/// Median seconds of plain and journaled runs of `cycle`, alternating.
fn side_by_side(cycle: &Cycle, pool: &Arc<rayon::ThreadPool>, rounds: usize) -> (f64, f64) {
    // One of each first, to warm the allocator and the page cache.
    timed(cycle, pool, None);
    timed(cycle, pool, Some(Durability::ProcessDeath));
    let (mut plain, mut journaled) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plain.push(timed(cycle, pool, None));
        journaled.push(timed(cycle, pool, Some(Durability::ProcessDeath)));
    }
    (median(plain), median(journaled))
}

/// Milliseconds from `Cycle::run` to the first part that runs, resuming
/// an iteration of `PARTS` parts of which all but the last had ended.
fn resume_to_first_part(pool: &Arc<rayon::ThreadPool>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resume.journal");
    let fail = Arc::new(AtomicBool::new(true));
    let ran_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut b = CycleBuilder::new("resume");
    b.add(part("root".to_owned(), Duration::ZERO), 1).unwrap();
    b.split((0..PARTS).map(|i| part(format!("p{i}"), Duration::ZERO)), 2)
        .unwrap();
    let (flag, at) = (Arc::clone(&fail), Arc::clone(&ran_at));
    // The last part waits for the others, then fails the iteration with
    // an instant fail the first time: the run stops with every other end
    // recorded, as a kill there would leave it.
    b.add(
        CyclePart::fallible("last", move |_| {
            *at.lock() = Some(Instant::now());
            if flag.load(Ordering::SeqCst) {
                return Err("stopped here");
            }
            Ok(1u8)
        })
        .error_mode(ErrorMode::InstantFail),
        (4, 1),
    )
    .unwrap();
    for i in 1..PARTS {
        b.after("last", format!("p{i}").as_str()).unwrap();
    }
    let cycle = b.build().unwrap();
    let run = || Run::once().pool(Arc::clone(pool)).journal(&path);
    let first = cycle.run(run()).expect("the first run");
    assert!(first.is_error(), "the first run stops at the last part");
    fail.store(false, Ordering::SeqCst);
    let called = Instant::now();
    let report = cycle.run(run()).expect("the resumed run");
    let resumed = report.resumed().expect("it resumed");
    assert_eq!(
        resumed.replayed,
        PARTS + 1,
        "every end but the last replayed"
    );
    let ran = ran_at.lock().expect("the last part ran");
    ran.duration_since(called).as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::var_os("SK_BENCH_QUICK").is_some();
    let rounds = if quick { 1 } else { 5 };
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    println!("journal overhead, {PARTS} parts, 2 pool threads, median of {rounds} rounds\n");
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "case", "plain", "journaled", "journaled"
    );
    if let Some(which) = std::env::var_os("SK_BENCH_ONE") {
        let work = if std::env::var_os("SK_BENCH_NOOP").is_some() {
            Duration::ZERO
        } else {
            Duration::from_micros(100)
        };
        let cycle = level(PARTS, work);
        let journal = (which == "journal").then_some(Durability::ProcessDeath);
        for _ in 0..5 {
            timed(&cycle, &pool, journal);
        }
        return;
    }
    for (shape, make) in [
        ("level", level as fn(usize, Duration) -> Cycle),
        ("chain", chain),
    ] {
        let cycle = make(PARTS, Duration::ZERO);
        let (plain, journaled) = side_by_side(&cycle, &pool, rounds);
        let per = |s: f64| s * 1e9 / PARTS as f64;
        println!(
            "{:<34} {:>9.0} ns {:>9.0} ns {:>+9.2} µs added per part",
            format!("{shape}, no-op parts"),
            per(plain),
            per(journaled),
            (per(journaled) - per(plain)) / 1e3
        );
        let cycle = make(PARTS, Duration::from_micros(100));
        let (plain, journaled) = side_by_side(&cycle, &pool, rounds);
        println!(
            "{:<34} {:>9.1} ms {:>9.1} ms {:>11.3}× wall",
            format!("{shape}, 100 µs parts"),
            plain * 1e3,
            journaled * 1e3,
            journaled / plain
        );
    }
    let cycle = level(PARTS, Duration::ZERO);
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let took = timed(&cycle, &pool, Some(Durability::PowerLoss));
        rates.push((PARTS + 1) as f64 / took);
    }
    println!(
        "{:<34} {:>38.0} records/s committed",
        "power loss (synchronous=FULL)",
        median(rates)
    );
    let resumes: Vec<f64> = (0..rounds).map(|_| resume_to_first_part(&pool)).collect();
    println!(
        "{:<34} {:>38.1} ms",
        format!("resume to first part ({PARTS} ends)"),
        median(resumes)
    );
}
