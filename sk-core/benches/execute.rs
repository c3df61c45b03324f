//! `SkFunction::execute` by name against a direct call of the same function.
//!
//! Three ways to run `add(a, b)`:
//! - `direct`: a plain Rust call (the baseline);
//! - `handle`: a prepared handle with both arguments bound (`execute`);
//! - `by_name`: look the function up by name, bind, and execute — what a
//!   receiver of a handle pays the first time.
//!
//! The overhead figure to report is `handle - direct`, in ns.

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]
// A benchmark whose setup fails should stop loudly.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sk_core::{Execute, SkFunction};

#[sk_core::function(crate = ::sk_core)]
fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

fn execute(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute");
    group.bench_function("direct", |b| b.iter(|| add(black_box(20), black_box(22))));
    let handle = SkFunction::builder("add")
        .arg("a", 20u64)
        .arg("b", 22u64)
        .build()
        .expect("add is registered");
    group.bench_function("handle", |b| {
        b.iter(|| black_box(&handle).execute::<u64>().expect("runs"))
    });
    group.bench_function("by_name", |b| {
        b.iter(|| {
            SkFunction::builder(black_box("add"))
                .arg("a", 20u64)
                .arg("b", 22u64)
                .build()
                .and_then(|f| f.execute::<u64>())
                .expect("runs")
        })
    });
    group.finish();
}

criterion_group!(benches, execute);
criterion_main!(benches);
