//! What a run allocates does not grow with its parts: no per-part
//! `String`s, boxes or maps per run, per iteration or per report read
//! (the engine's state is built once per cycle, the report's tables once
//! per run). Counted by a global allocator that counts every allocation
//! of the process, so this binary holds one test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sk_cycle::{Cycle, CycleBuilder, CyclePart, PartState, Run};

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// A root and `n` parts after it, in one level.
fn wide(n: usize) -> Cycle {
    let mut b = CycleBuilder::new("wide");
    b.add(CyclePart::new("root", |_| ()), 1).unwrap();
    b.split((0..n).map(|i| CyclePart::new(format!("p{i}"), |_| ())), 2)
        .unwrap();
    b.build().unwrap()
}

/// `n` parts, each after the one before; part `i` outputs `i`.
fn chain(n: usize) -> Cycle {
    let mut b = CycleBuilder::new("chain");
    let mut last = b.root(CyclePart::new("p0", |_| 0usize)).unwrap();
    for i in 1..n {
        last = b
            .then(last, CyclePart::new(format!("p{i}"), move |_| i))
            .unwrap();
    }
    b.build().unwrap()
}

/// Allocations made by a run of `cycle` for `iterations` iterations on
/// `pool`, stats off, and by reading its report: the states of parts
/// `p0…` (`parts` of them), and their outputs where `outputs`.
fn allocations(
    cycle: &Cycle,
    parts: usize,
    iterations: u64,
    pool: &Arc<rayon::ThreadPool>,
    outputs: bool,
) -> (u64, u64) {
    let run = || {
        cycle
            .run(Run::times(iterations).pool(Arc::clone(pool)).stats(false))
            .unwrap()
    };
    // Once before, so that one-time set-up (the pool's threads, lazily
    // built tables) is not counted.
    drop(run());
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let report = run();
    let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(report.iterations(), iterations);
    let last = report.last().unwrap();
    // The names are the test's; made before the reads are counted.
    let names: Vec<String> = (0..parts).map(|i| format!("p{i}")).collect();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(last.state_of(name), Some(PartState::Succeeded), "{name}");
        if outputs {
            assert_eq!(*last.output::<usize>(name).unwrap(), i, "{name}");
        }
    }
    let read = ALLOCATIONS.load(Ordering::SeqCst) - before;
    (during, read)
}

#[test]
fn a_runs_allocations_do_not_grow_with_its_parts() {
    sk_testkit::hang_guard(Duration::from_secs(120), || {
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        );
        // Parts with no output (`()`), and parts whose output is a
        // `usize`: that output is kept in the run's report, held inline
        // in a handle shared with its readers (one allocation, the only
        // one that comes with a part's run).
        for (shape, build, per_output) in
            [("wide", wide as fn(usize) -> Cycle, 0), ("chain", chain, 1)]
        {
            let (small, large) = (build(500), build(5_000));
            for iterations in [1, 20] {
                let outputs = per_output > 0;
                let (few, few_read) = allocations(&small, 500, iterations, &pool, outputs);
                let (many, many_read) = allocations(&large, 5_000, iterations, &pool, outputs);
                // Ten times the parts: a per-part allocation anywhere else
                // in a run or a report read would add thousands.
                let kept = per_output * 4_500 * iterations;
                assert!(
                    many <= few + kept + 50,
                    "{shape}, {iterations} iterations: {few} allocations with 500 parts, \
                     {many} with 5000"
                );
                assert!(
                    many_read <= few_read + 8,
                    "{shape}: reading 500 parts' report allocated {few_read} times, \
                     5000 parts' {many_read}"
                );
            }
        }
    });
}
