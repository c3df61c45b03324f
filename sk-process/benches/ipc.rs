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
//! ratio ours / baseline. Ours and the baseline alternate (batch by batch,
//! trial by trial) so that drift in the machine's speed hits both alike.
//! (a) is measured with both processes pinned to one core, pinned to two,
//! and unpinned; unpinned, over several fresh pairs of processes started in
//! alternating order (the scheduler's placement of a pair as it starts
//! decides its speed). `SK_BENCH_VERBOSE=1` prints every batch.

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

/// Fresh pairs of processes started for the unpinned case (see `main`).
const UNPINNED_TRIALS: usize = 8;

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
    let f = SkFunction::builder("noop")
        .build()
        .expect("noop is registered");
    let (call_len, reply_len) = sk_process::__private::__call_frame_sizes(&f);

    // (a) Where the two processes run decides a raw round trip's cost
    // more than anything either does (the same core: a switch; two
    // cores: a wake-up of an idle CPU, slow on a VM; ours tries the
    // socket for a while before it sleeps, so it is not woken that way),
    // and left alone the scheduler flips between the two from one batch
    // to the next. So each placement
    // is measured pinned, plus once unpinned. Both sides run in
    // alternating batches, so drift hits both alike; the ratio is the
    // median of the per-pair ratios.
    let cpus = online_cpus();
    // Unpinned first: a thread started while this one is pinned (the I/O
    // hub) keeps that pinning.
    let mut placements = vec![("unpinned", None), ("same core", Some((0, 0)))];
    if cpus > 1 {
        placements.push(("two cores", Some((0, 1))));
    }
    // Left alone, where the scheduler puts two processes as they start
    // decides whether a raw pair shares a core (a round trip of a few µs)
    // or not (tens of µs here), for as long as it runs, and which one
    // does changes from run to run with the order they were started in. So the unpinned case starts fresh pairs several times,
    // in alternating order, and takes the medians over all of them.
    let sizes = (call_len, reply_len);
    let mut rows = Vec::new();
    // Per unpinned trial: the median round trip of ours and of the raw pair.
    let mut trial_medians: Vec<(Duration, Duration)> = Vec::new();
    for (label, pins) in placements {
        let (ours, raw) = match pins {
            None => {
                let (mut ours, mut raw) = (Vec::new(), Vec::new());
                for trial in 0..UNPINNED_TRIALS {
                    let (o, r) = round_trips(&f, sizes, None, cpus, trial % 2 == 0, 4);
                    trial_medians.push((median(o.clone()), median(r.clone())));
                    ours.extend(o);
                    raw.extend(r);
                }
                (ours, raw)
            }
            Some(_) => round_trips(&f, sizes, pins, cpus, true, 15),
        };
        rows.push((label, ours, raw));
    }
    pin(0, &(0..cpus).collect::<Vec<_>>());

    // (b) Spawn to first result, alternating with a bare spawn of the same
    // binary that exits at once: `spawn` waits until the worker is ready,
    // then calls; `start` sends the call at once.
    let trials = 30;
    let mut spawned = Vec::new();
    let mut started = Vec::new();
    let mut until_ready = Vec::new();
    let mut bare = Vec::new();
    for i in 0..trials {
        let start = Instant::now();
        let w = Worker::spawn(format!("spawn-{i}"), Backend::Process).expect("worker");
        until_ready.push(start.elapsed());
        w.call(&f, &Args::new(), None).expect("first call");
        spawned.push(start.elapsed());
        w.stop(Duration::from_secs(5));

        let start = Instant::now();
        let w = Worker::start(format!("start-{i}"), Backend::Process).expect("worker");
        w.call(&f, &Args::new(), None).expect("first call");
        started.push(start.elapsed());
        w.stop(Duration::from_secs(5));

        let start = Instant::now();
        let status = Command::new(std::env::current_exe().expect("exe"))
            .env(EXIT_ENV, "1")
            .stdout(Stdio::null())
            .status()
            .expect("bare spawn");
        assert!(status.success());
        bare.push(start.elapsed());
    }

    let ratios = |a: &[Duration], b: &[Duration]| {
        median(
            a.iter()
                .zip(b)
                .map(|(x, y)| Duration::from_secs_f64(x.as_secs_f64() / y.as_secs_f64()))
                .collect(),
        )
        .as_secs_f64()
    };
    let (spawn_ratio, start_ratio) = (ratios(&spawned, &bare), ratios(&started, &bare));
    println!("case (medians; ratio = median of paired ratios)  ours        baseline    ratio");
    println!("(a) call round trip ({call_len}/{reply_len} B frames)");
    for (label, ours, raw) in rows {
        let ratio = ratios(&ours, &raw);
        println!(
            "    {label:<43}{:>10.2?}  {:>10.2?}  {ratio:>5.2}x",
            median(ours),
            median(raw),
        );
    }
    // A trial is fast when its median round trip is within 3x of the
    // fastest trial's (a raw pair on two cores is 10x slower or more).
    if let Some(fastest) = trial_medians.iter().map(|&(o, r)| o.min(r)).min() {
        let on_one_core = |pick: fn(&(Duration, Duration)) -> Duration| {
            trial_medians
                .iter()
                .filter(|t| pick(t) < fastest * 3)
                .count()
        };
        println!(
            "    unpinned trials at the fastest trial's speed: ours {} of {n}, raw {} of {n}",
            on_one_core(|t| t.0),
            on_one_core(|t| t.1),
            n = trial_medians.len(),
        );
    }
    println!(
        "(b) start + first call                         {:>10.2?}  {:>10.2?}  {start_ratio:>5.2}x",
        median(started),
        median(bare.clone()),
    );
    println!(
        "    spawn (until ready) + first call           {:>10.2?}  {:>10.2?}  {spawn_ratio:>5.2}x",
        median(spawned),
        median(bare),
    );
    println!(
        "    of which until ready                       {:>10.2?}",
        median(until_ready)
    );
}

/// The mean time of one of `n` runs of `f`.
fn time_per(n: u32, f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Round trips of a trivial call and of the raw exchange, in alternating
/// batches; `pins`: the CPUs of (this thread, the other process).
fn round_trips(
    f: &SkFunction,
    (call_len, reply_len): (usize, usize),
    pins: Option<(usize, usize)>,
    cpus: usize,
    worker_first: bool,
    pairs: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let all: Vec<usize> = (0..cpus).collect();
    let place = |pid: u32, theirs: usize| match pins {
        Some(_) => pin(pid, &[theirs]),
        None => pin(pid, &all),
    };
    let (mine, theirs) = pins.unwrap_or((0, 0));
    if pins.is_some() {
        pin(0, &[mine]);
    } else {
        pin(0, &all);
    }
    let spawn_worker = || {
        let worker = Worker::spawn("bench", Backend::Process).expect("worker");
        place(worker.pid(), theirs);
        worker
    };
    let early = worker_first.then(spawn_worker);
    let (mut parent, child) = UnixStream::pair().expect("socketpair");
    let child_in: OwnedFd = child.try_clone().expect("dup").into();
    let child_out: OwnedFd = child.into();
    let mut echo = Command::new(std::env::current_exe().expect("exe"))
        .env(ECHO_ENV, format!("{call_len},{reply_len}"))
        .stdin(Stdio::from(child_in))
        .stdout(Stdio::from(child_out))
        .spawn()
        .expect("echo child");
    place(echo.id(), theirs);
    let worker = early.unwrap_or_else(spawn_worker);
    let request = vec![1u8; call_len];
    let mut reply = vec![0u8; reply_len];
    let mut ours_call = || {
        worker.call(f, &Args::new(), None).expect("call");
    };
    let mut raw_exchange = || {
        parent.write_all(&request).expect("write");
        parent.read_exact(&mut reply).expect("read");
    };
    let batch = 1000u32;
    for _ in 0..batch {
        ours_call();
        raw_exchange();
    }
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..pairs {
        ours.push(time_per(batch, &mut ours_call));
        raw.push(time_per(batch, &mut raw_exchange));
        if std::env::var_os("SK_BENCH_VERBOSE").is_some() {
            eprintln!(
                "batch: ours {:?} raw {:?}",
                ours[ours.len() - 1],
                raw[raw.len() - 1]
            );
        }
    }
    worker.stop(Duration::from_secs(5));
    drop(parent);
    let _ = echo.wait();
    (ours, raw)
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Pins process (or thread) `pid` (0: the calling thread) to `cpus`.
fn pin(pid: u32, cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is valid; the set is passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of_val(&set),
            &raw const set,
        );
    }
}
