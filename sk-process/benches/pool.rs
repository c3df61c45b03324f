//! Pool throughput: a map of 10 000 trivial items (`x + 1`), so the figures
//! measure the pool's own cost (chunking, transport, bookkeeping).
//!
//! Prints items per second for 1 and 2 workers on each backend, and for a
//! range of chunk sizes on 2 process workers; then a map of 1M items on 2
//! process workers with the parent's peak memory growth (the items, the
//! outputs and the chunks in flight: the target is at most 50 MB). Run
//! with `cargo bench -p sk-process --bench pool`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sk_core::SkFunction;
use sk_process::{Backend, Pool};

#[sk_core::function(crate = ::sk_core)]
fn bench_inc(x: u64) -> u64 {
    x + 1
}

const ITEMS: u64 = 10_000;
const ROUNDS: u32 = 5;

/// The best of `ROUNDS` maps of `ITEMS` items (after one warm-up map).
fn best(pool: &Pool, f: &SkFunction) -> Duration {
    let check = |out: Vec<u64>| {
        assert_eq!(out.len(), ITEMS as usize);
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
    };
    check(pool.map(f, "x", 0..ITEMS).unwrap());
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let out: Vec<u64> = pool.map(f, "x", 0..ITEMS).unwrap();
            let took = start.elapsed();
            check(out);
            took
        })
        .min()
        .unwrap()
}

fn report(label: &str, took: Duration) {
    let per_sec = ITEMS as f64 / took.as_secs_f64();
    println!(
        "{label:<44} {:>9.2} ms  {:>12.0} items/s  {:>7.2} us/item",
        took.as_secs_f64() * 1e3,
        per_sec,
        took.as_secs_f64() * 1e6 / ITEMS as f64
    );
}

/// This process's peak resident memory since the last reset, in bytes
/// (`None` off Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A map of `n` items on 2 process workers: its time, and how much the
/// parent's peak memory grew.
fn big_map(f: &SkFunction, n: u64) {
    let pool = Pool::new(2, Backend::Process).unwrap();
    let _: Vec<u64> = pool.map(f, "x", 0..1000u64).unwrap();
    // Reset the peak to what is resident now.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss();
    let start = Instant::now();
    let out: Vec<u64> = pool.map(f, "x", 0..n).unwrap();
    let took = start.elapsed();
    let grew = peak_rss()
        .zip(before)
        .map(|(after, before)| after.saturating_sub(before));
    assert_eq!(out.len(), n as usize);
    assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
    println!(
        "process, 2 workers, {n} items: {:>9.2} ms  {:>12.0} items/s  peak memory +{} MB",
        took.as_secs_f64() * 1e3,
        n as f64 / took.as_secs_f64(),
        grew.map_or_else(|| "?".to_owned(), |g| (g >> 20).to_string())
    );
    pool.close();
}

fn main() {
    // Worker processes of this binary become workers here.
    sk_process::init();
    let f = SkFunction::builder("bench_inc").build().unwrap();

    println!("pool map of {ITEMS} trivial items, best of {ROUNDS}");
    for backend in [Backend::Process, Backend::Thread] {
        for workers in [1, 2] {
            let pool = Pool::new(workers, backend).unwrap();
            let took = best(&pool, &f);
            report(
                &format!("{backend}, {workers} worker(s), auto chunks"),
                took,
            );
            pool.close();
        }
    }
    for chunk in [1, 10, 100, 1000, 5000] {
        let pool = Pool::builder()
            .workers(2)
            .backend(Backend::Process)
            .chunk_size(chunk)
            .build()
            .unwrap();
        let took = best(&pool, &f);
        report(&format!("process, 2 workers, chunk size {chunk}"), took);
        pool.close();
    }
    // Streaming mode (an item timeout set): one report frame per item.
    let pool = Pool::builder()
        .workers(2)
        .backend(Backend::Process)
        .item_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let took = best(&pool, &f);
    report("process, 2 workers, auto chunks, item timeout", took);
    pool.close();
    big_map(&f, 1_000_000);
}
