//! Stack use of nested joins: a cycle whose forks nest as deep as the
//! engine nests joins runs on a user pool of modest stacks (a pool made
//! with rayon's defaults has 2 MiB a thread; `Run::pool` documents what
//! a run needs).
//!
//! In its own test binary: an overflow aborts the process.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sk_cycle::{CycleBuilder, CyclePart, Run};
use sk_testkit::guarded;

/// The stack each pool thread gets here, in KiB: half a default rayon
/// thread's, in an unoptimized build (which needs 0.75 to 1 MiB here;
/// an optimized one under 0.25). Overridable to find what a build needs:
/// `SK_STACK_KIB=512 cargo test -p sk-cycle --test stack_depth`.
fn stack_kib() -> usize {
    std::env::var("SK_STACK_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn forks_nested_past_the_join_depth_run_on_small_stacks() {
    guarded(|| {
        // A caterpillar: each level forks into a leaf and the next level,
        // so joins nest as deep as the engine lets them (and deeper
        // levels are spawned).
        let mut b = CycleBuilder::new("deep");
        let mut next = b.root(CyclePart::new("r", |_| 0u64)).unwrap();
        for i in 0..200 {
            let [_leaf, below] = b
                .fork(
                    next,
                    [
                        CyclePart::new(format!("l{i}"), |_| 5u64),
                        CyclePart::new(format!("n{i}"), |_| 1u64),
                    ],
                )
                .unwrap();
            next = below;
        }
        let cycle = b.build().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .stack_size(stack_kib() << 10)
            .build()
            .unwrap();
        let run = Run::times(3).pool(Arc::new(pool));
        let report = cycle.run(run).unwrap();
        assert_eq!(report.iterations(), 3);
        let last = report.last().unwrap();
        assert_eq!(last.output_as::<u64>("l199"), Some(&5));
    })
}
