//! Worker IPC against the raw channel it is built on, side by side.
//!
//! (a) Round trip of a trivial call in a worker process, against a raw
//!     ping-pong of frames of the same sizes over the same kind of channel
//!     (a Unix socketpair) between this process and a child process of the
//!     same binary.
//! (b) Worker spawn to first result, against a bare spawn of the same
//!     binary that exits at once.
//!
//! Run: `cargo bench -p sk-process --bench ipc`. Prints a table with the
//! ratio ours / baseline.

// A benchmark whose setup fails should stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sk_core::{Args, SkFunction};
use sk_process::{Backend, Worker};

const ECHO_ENV: &str = "SK_BENCH_ECHO";
const EXIT_ENV: &str = "SK_BENCH_EXIT";

#[sk_core::function(crate = ::sk_core)]
fn noop() {}

/// The baseline child: echo `reply`-byte frames for every `call`-byte frame
/// read on stdin (a socket).
fn echo(call: usize, reply: usize) {
    let mut socket = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    // stdout is the same socket (dup'd by the parent).
    let mut buf = vec![0u8; call];
    let answer = vec![7u8; reply];
    while socket.read_exact(&mut buf).is_ok() {
        if out.write_all(&answer).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}

fn main() {
    if std::env::var_os(EXIT_ENV).is_some() {
        return;
    }
    if let Ok(sizes) = std::env::var(ECHO_ENV) {
        let (call, reply) = sizes.split_once(',').expect("sizes");
        echo(call.parse().unwrap(), reply.parse().unwrap());
        return;
    }
    sk_process::init();
    // `cargo bench` passes --bench; ignore arguments.
    let rounds = 20_000u32;
    let f = SkFunction::builder("noop")
        .build()
        .expect("noop is registered");
    let (call_len, reply_len) = sk_process::__private::__call_frame_sizes(&f);

    // (a) ours: a trivial call in a worker process.
    let worker = Worker::spawn("bench", Backend::Process).expect("worker");
    for _ in 0..1000 {
        worker.call(&f, &Args::new(), None).expect("call");
    }
    let start = Instant::now();
    for _ in 0..rounds {
        worker.call(&f, &Args::new(), None).expect("call");
    }
    let ours = start.elapsed() / rounds;
    worker.stop(Duration::from_secs(5));

    // (a) baseline: the same bytes over a socketpair with a child process.
    let (mut parent, child) = UnixStream::pair().expect("socketpair");
    let child_in: OwnedFd = child.try_clone().expect("dup").into();
    let child_out: OwnedFd = child.into();
    let mut echo = Command::new(std::env::current_exe().expect("exe"))
        .env(ECHO_ENV, format!("{call_len},{reply_len}"))
        .stdin(Stdio::from(child_in))
        .stdout(Stdio::from(child_out))
        .spawn()
        .expect("echo child");
    let request = vec![1u8; call_len];
    let mut reply = vec![0u8; reply_len];
    let mut exchange = || {
        parent.write_all(&request).expect("write");
        parent.read_exact(&mut reply).expect("read");
    };
    for _ in 0..1000 {
        exchange();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        exchange();
    }
    let raw = start.elapsed() / rounds;
    drop(parent);
    let _ = echo.wait();

    // (b) ours: spawn a worker and get its first result.
    let trials = 30u32;
    let mut spawn_ours = Duration::ZERO;
    let mut until_ready = Duration::ZERO;
    for i in 0..trials {
        let start = Instant::now();
        let w = Worker::spawn(format!("spawn-{i}"), Backend::Process).expect("worker");
        until_ready += start.elapsed();
        w.call(&f, &Args::new(), None).expect("first call");
        spawn_ours += start.elapsed();
        w.stop(Duration::from_secs(5));
    }
    let spawn_ours = spawn_ours / trials;
    let until_ready = until_ready / trials;
    // (b) baseline: spawn the same binary and wait for it to exit.
    let mut spawn_raw = Duration::ZERO;
    for _ in 0..trials {
        let start = Instant::now();
        let status = Command::new(std::env::current_exe().expect("exe"))
            .env(EXIT_ENV, "1")
            .stdout(Stdio::null())
            .status()
            .expect("bare spawn");
        assert!(status.success());
        spawn_raw += start.elapsed();
    }
    let spawn_raw = spawn_raw / trials;

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("case                                   ours          baseline      ratio");
    println!(
        "(a) call round trip ({call_len}/{reply_len} B frames) {:>10.2?}  {:>10.2?}  {:>6.2}x",
        ours,
        raw,
        ratio(ours, raw)
    );
    println!(
        "(b) spawn to first result             {:>10.2?}  {:>10.2?}  {:>6.2}x",
        spawn_ours,
        spawn_raw,
        ratio(spawn_ours, spawn_raw)
    );
    println!(
        "    of which: spawn until ready {:.2?}, first call {:.2?}",
        until_ready,
        spawn_ours.saturating_sub(until_ready)
    );
}
