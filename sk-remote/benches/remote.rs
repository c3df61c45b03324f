//! Remote parts, measured against a NATS server started here and workers
//! that are this binary (`--sk-remote-worker`), on loopback:
//!
//! - **scaling**: 20 ms I/O-bound parts (a sleep) on 1, 2 and 4 workers
//!   of 4 slots each; parts per second and the ratio to one worker;
//! - **dispatch**: a chain of no-op remote parts, one at a time: the time
//!   from sending a part to having its result recorded (p50, p90);
//! - **throughput**: no-op parts fanned out to 4 workers (batched fetch).
//!
//! `cargo bench -p sk-remote --bench remote`. Needs `nats-server`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sk_core::SkFunction;
use sk_cycle::{CycleBuilder, CyclePart, PartState, Run};
use sk_remote::{Broker, Coordinator};
use sk_testkit::NatsServer;

/// Sleeps `ms` (an I/O-bound part).
#[sk_core::function(crate = ::sk_core)]
fn io_bound(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Does nothing.
#[sk_core::function(crate = ::sk_core)]
fn noop(input: u64) -> u64 {
    input + 1
}

struct Workers(Vec<std::process::Child>);

impl Workers {
    fn start(url: &str, n: usize, group: &str, slots: usize, backend: &str) -> Workers {
        let mut children = Vec::new();
        for i in 0..n {
            let mut command = std::process::Command::new(std::env::current_exe().unwrap());
            command
                .args(["--sk-remote-worker", url, "--group", group])
                .args(["--concurrency", &slots.to_string()])
                .args(["--name", &format!("{group}-{i}")])
                .env("SK_SPAWN_BACKEND", backend)
                .stderr(std::process::Stdio::null());
            let (child, lines) = sk_testkit::spawn_lines(&mut command).unwrap();
            let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
            assert!(line.contains("ready"), "{line}");
            children.push(child);
        }
        Workers(children)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `n` parts of `f` on `group`, fanned out; the wall time.
fn fan(coordinator: &Coordinator, group: &str, n: usize, f: &SkFunction) -> Duration {
    let mut b = CycleBuilder::new(format!("fan-{group}"));
    b.add(CyclePart::new("go", |_| 1u64), 1).unwrap();
    let parts: Vec<CyclePart> = (0..n)
        .map(|i| CyclePart::function(format!("p{i}"), f.clone()).remote(group))
        .collect();
    b.split(parts, 2).unwrap();
    let cycle = b.build().unwrap();
    let started = Instant::now();
    let report = cycle
        .run(
            Run::once()
                .threads(2)
                .stats(false)
                .remote(Arc::new(coordinator.clone())),
        )
        .unwrap();
    let wall = started.elapsed();
    let last = report.last().unwrap();
    assert!((0..n).all(|i| last.state_of(&format!("p{i}")) == Some(PartState::Succeeded)));
    wall
}

fn main() {
    sk_process::init();
    sk_remote::worker_main();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let coordinator = Coordinator::connect(&Broker::new(&url)).unwrap();

    let only = std::env::var("SK_BENCH_ONLY").ok();
    let wants = |what: &str| only.as_deref().is_none_or(|o| o == what);

    // Scaling.
    if wants("scaling") {
        let sleep = SkFunction::builder("io_bound")
            .arg("ms", 20u64)
            .build()
            .unwrap();
        let mut base = 0.0;
        for (round, workers) in [1usize, 2, 4].into_iter().enumerate() {
            let group = format!("scale{workers}");
            let _w = Workers::start(&url, workers, &group, 4, "process");
            fan(&coordinator, &group, 16, &sleep); // warm the local workers
            let n = 200 * workers;
            let wall = fan(&coordinator, &group, n, &sleep);
            let rate = n as f64 / wall.as_secs_f64();
            if round == 0 {
                base = rate;
            }
            println!(
                "scaling: {workers} worker(s) x 4 slots, 20 ms parts: {rate:.0} parts/s, {:.2}x one worker",
                rate / base
            );
        }
    }

    // Dispatch: one part at a time, a chain; the part runs in a local
    // worker process, or on a worker thread.
    for backend in ["process", "thread"] {
        if !wants("dispatch") {
            break;
        }
        let group = format!("chain-{backend}");
        let _w = Workers::start(&url, 1, &group, 1, backend);
        let mut b = CycleBuilder::new("chain");
        b.add(CyclePart::new("go", |_| 0u64), 1).unwrap();
        let n = 300;
        for i in 0..n {
            let f = SkFunction::builder("noop").build().unwrap();
            b.add(
                CyclePart::function(format!("c{i}"), f).remote(group.as_str()),
                i + 2,
            )
            .unwrap();
        }
        let cycle = b.build().unwrap();
        let runner: Arc<dyn sk_cycle::RemoteRunner> = Arc::new(coordinator.clone());
        let _ = cycle.run(Run::once().remote(Arc::clone(&runner))).unwrap();
        let report = cycle.run(Run::once().remote(runner)).unwrap();
        let mut times: Vec<Duration> = report
            .stats()
            .parts
            .iter()
            .filter(|p| p.name.starts_with('c'))
            .map(|p| p.timing.median)
            .collect();
        times.sort_unstable();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "dispatch ({backend} slot): send -> result recorded, one at a time: p50 {:?}, p90 {:?}, max {:?} ({} parts)",
            at(0.5),
            at(0.9),
            at(1.0),
            times.len()
        );
    }

    // Throughput: no-op parts, batched fetch, 4 workers.
    if wants("throughput") {
        let _w = Workers::start(&url, 4, "noop", 16, "thread");
        let f = SkFunction::builder("noop").build().unwrap();
        fan(&coordinator, "noop", 500, &f);
        let n = 10_000;
        let wall = fan(&coordinator, "noop", n, &f);
        println!(
            "throughput: {n} no-op parts on 4 workers: {:.0} parts/s",
            n as f64 / wall.as_secs_f64()
        );
    }
}
