//! Worker processes from an example binary: a pool, a supervised worker,
//! and a function called in another process.
//!
//! Run with `cargo run --example workers`. Set `SK_SPAWN_BACKEND=thread`
//! to run the same program with worker threads instead.

use std::error::Error;
use std::time::Duration;

use suitkaise::prelude::*;
use suitkaise::{Backend, ChildSpec, Pool, ProcessManager, Worker};

/// A deliberately CPU-bound function: the sum of the digits of 1..=n.
#[suitkaise::function]
fn digit_sum(n: u64) -> u64 {
    (1..=n)
        .map(|mut k| {
            let mut s = 0;
            while k > 0 {
                s += k % 10;
                k /= 10;
            }
            s
        })
        .sum()
}

#[suitkaise::function]
fn where_am_i() -> u32 {
    std::process::id()
}

fn main() -> Result<(), Box<dyn Error>> {
    // Worker processes are this binary started again; this turns such a
    // launch into a worker and returns at once in the program itself.
    suitkaise::init();
    let backend = Backend::from_env();
    println!("parent pid {} ({backend} backend)", std::process::id());

    let worker = Worker::spawn("solo", backend)?;
    let pid: u32 = worker
        .call(&SkFunction::get("where_am_i")?, &Args::new(), None)?
        .take()?;
    println!("worker \"solo\" answered from pid {pid}");
    worker.stop(Duration::from_secs(2));

    let pool = Pool::new(2, backend)?;
    let sums: Vec<u64> = pool.map(&SkFunction::get("digit_sum")?, "n", 1..=2_000u64)?;
    println!(
        "pool of 2: digit sums of 1..=n for n up to 2000, last = {}",
        sums.last().copied().unwrap_or_default()
    );
    pool.close();

    let manager = ProcessManager::builder("example")
        .backend(backend)
        .build()?;
    let id = manager.spawn(ChildSpec::new("supervised"))?;
    let f = SkFunction::builder("digit_sum")
        .arg("n", 100_000u64)
        .build()?;
    let total: u64 = manager
        .call(id, &f, &Args::new(), Some(Duration::from_secs(10)))?
        .take()?;
    println!("supervised worker: digit sum of 1..=100000 = {total}");
    manager.shutdown(Duration::from_secs(2))?;
    Ok(())
}
