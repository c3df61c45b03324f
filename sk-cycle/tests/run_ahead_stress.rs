//! Random cycles run many iterations with parts run ahead of their
//! siblings (see `engine/pace.rs`): forks of 2 to 4, chains, joins
//! (`after` + `reads`), level barriers (`SyncMode::Level` splits),
//! concurrency limits (gates), conditions, skip and propagate errors, quick parts, parts of a
//! microsecond or so and parts that sleep 1 ms now and then; on 1, 2 and
//! 4 threads, stats on and off, trace on; several runs of each cycle (so
//! that paces and stats countdowns are carried from run to run). Every
//! iteration's states, outputs and errors are checked against a model,
//! every run's state counts, and its timing counts where every run is
//! timed. Each cycle runs under a hang guard.
//!
//! `SK_STRESS_CYCLES` (default 40) cycles from seed `SK_STRESS_SEED`
//! (default 1).
//!
//! Written by a review of "a quick part runs before its sibling is forked".

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sk_cycle::{
    CycleBuilder, CyclePart, ErrorMode, Input, IterationReport, PartState, Run, Split, SyncMode,
};
use sk_testkit::hang_guard;

static CHECKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z ^= z >> 31;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 29)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0, 7)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Plain,
    Skip,
    Propagate,
    Cond,
}

#[derive(Clone, Copy, Debug)]
enum Pace {
    Quick,
    /// Spins about this many ns every run.
    Spin(u64),
    /// Sleeps 1 ms in about one iteration in this many.
    Sleepy(u64),
}

#[derive(Clone, Debug)]
struct Spec {
    id: u64,
    name: String,
    parent: Option<usize>,
    kind: Kind,
    pace: Pace,
    reads: Vec<usize>,
}

fn fails(id: u64, i: u64) -> bool {
    mix(id ^ 0xFA11, i) % 5 == 0
}

fn cond_holds(id: u64, i: u64) -> bool {
    mix(id ^ 0xC0D, i) % 4 != 0
}

fn work(id: u64, i: u64, pace: Pace) {
    match pace {
        Pace::Quick => {}
        Pace::Spin(ns) => {
            let t = Instant::now();
            while t.elapsed() < Duration::from_nanos(ns) {
                std::hint::spin_loop();
            }
        }
        Pace::Sleepy(one_in) => {
            if mix(id ^ 0x51EE, i) % one_in == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn make_part(spec: &Spec, names: &[String]) -> CyclePart {
    let (id, kind, pace) = (spec.id, spec.kind, spec.pace);
    let reads: Vec<String> = spec.reads.iter().map(|&r| names[r].clone()).collect();
    let reads2 = reads.clone();
    let part = CyclePart::fallible(spec.name.clone(), move |ctx| {
        let i = ctx.iteration();
        work(id, i, pace);
        if matches!(kind, Kind::Skip | Kind::Propagate) && fails(id, i) {
            return Err::<u64, BoxError>(format!("{id} fails in {i}").into());
        }
        let mut v = mix(id, i);
        v = v.wrapping_add(match ctx.input() {
            Input::Error(_) => 0xE_0000,
            Input::None => 0,
            _ => *ctx.input_as::<u64>().unwrap(),
        });
        for r in &reads2 {
            v = v.wrapping_add(ctx.output::<u64>(r).map(|x| *x).unwrap_or(1));
        }
        Ok(v)
    });
    let part = if reads.is_empty() {
        part
    } else {
        part.reads(reads)
    };
    match kind {
        Kind::Plain => part,
        Kind::Skip => part.error_mode(ErrorMode::Skip),
        Kind::Propagate => part.error_mode(ErrorMode::Propagate),
        Kind::Cond => part.condition(move |ctx| cond_holds(id, ctx.iteration())),
    }
}

/// (state, output, error) of every part in iteration `i`, by the model.
fn expected(specs: &[Spec], i: u64) -> Vec<(PartState, Option<u64>, bool)> {
    let mut out: Vec<(PartState, Option<u64>, bool)> = Vec::with_capacity(specs.len());
    for s in specs {
        let parent = s.parent.map(|p| out[p]);
        let poisoned = match parent {
            Some((PartState::NotTaken, _, _)) => Some(PartState::NotTaken),
            Some((PartState::Skipped, _, _)) => Some(PartState::Skipped),
            // Failed under skip passes skipped; under propagate, the error.
            Some((PartState::Failed, _, _)) if specs[s.parent.unwrap()].kind == Kind::Skip => {
                Some(PartState::Skipped)
            }
            _ => None,
        };
        if let Some(p) = poisoned {
            out.push((p, None, false));
            continue;
        }
        if s.kind == Kind::Cond && !cond_holds(s.id, i) {
            out.push((PartState::NotTaken, None, false));
            continue;
        }
        if matches!(s.kind, Kind::Skip | Kind::Propagate) && fails(s.id, i) {
            out.push((PartState::Failed, None, true));
            continue;
        }
        let mut v = mix(s.id, i);
        v = v.wrapping_add(match parent {
            None => 0,
            Some((PartState::Failed, _, _)) => 0xE_0000,
            Some((_, o, _)) => o.unwrap(),
        });
        for &r in &s.reads {
            v = v.wrapping_add(match out[r] {
                (PartState::Succeeded, Some(o), _) => o,
                _ => 1,
            });
        }
        out.push((PartState::Succeeded, Some(v), false));
    }
    out
}

struct Shape {
    builder: CycleBuilder,
    specs: Vec<Spec>,
    barriers: bool,
}

fn random_cycle(seed: u64) -> Shape {
    let mut rng = Rng(seed);
    let mut b = CycleBuilder::new(format!("stress{seed}"));
    let mut specs: Vec<Spec> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut levels: Vec<u32> = Vec::new();
    let mut handles = Vec::new();
    let mut barriers = false;
    let target = 6 + rng.below(26) as usize;
    let new_spec = |rng: &mut Rng, specs: &Vec<Spec>, parent: Option<usize>| {
        let id = specs.len() as u64;
        let kind = match rng.below(10) {
            0..=4 => Kind::Plain,
            5 | 6 => Kind::Skip,
            7 | 8 => Kind::Propagate,
            _ => Kind::Cond,
        };
        let pace = match rng.below(10) {
            0..=5 => Pace::Quick,
            6 | 7 => Pace::Sleepy(2 + rng.below(40)),
            _ => Pace::Spin(200 + rng.below(3000)),
        };
        Spec {
            id: id * 1000 + seed,
            name: format!("p{id}"),
            parent,
            kind,
            pace,
            reads: Vec::new(),
        }
    };
    let root = new_spec(&mut rng, &specs, None);
    names.push(root.name.clone());
    handles.push(b.root(make_part(&root, &names)).unwrap());
    levels.push(1);
    specs.push(root);
    let mut open = vec![0usize];
    while specs.len() < target && !open.is_empty() {
        let at = rng.below(open.len() as u64) as usize;
        let leaf = open[at];
        match rng.below(10) {
            // A chain link.
            0..=3 => {
                let s = new_spec(&mut rng, &specs, Some(leaf));
                names.push(s.name.clone());
                handles.push(b.then(handles[leaf], make_part(&s, &names)).unwrap());
                levels.push(levels[leaf] + 1);
                specs.push(s);
                open[at] = specs.len() - 1;
            }
            // A fork of 2 to 4, now and then level-synced (barriers).
            4..=7 => {
                let k = 2 + rng.below(3) as usize;
                let mut parts = Vec::new();
                let first = specs.len();
                for _ in 0..k {
                    let s = new_spec(&mut rng, &specs, Some(leaf));
                    names.push(s.name.clone());
                    parts.push(make_part(&s, &names));
                    specs.push(s);
                }
                let level = rng.below(4) == 0;
                barriers |= level;
                let mut split = if level {
                    Split::new().sync(SyncMode::Level)
                } else {
                    Split::new()
                };
                if rng.below(6) == 0 {
                    split = split.concurrency_limit(1 + rng.below(2) as usize);
                }
                let hs = b.fork_with(handles[leaf], parts, split).unwrap();
                for h in hs {
                    handles.push(h);
                    levels.push(levels[leaf] + 2);
                }
                open.swap_remove(at);
                open.extend(first..specs.len());
            }
            // A join: a chain link that also waits for (and reads) one or
            // two parts at its level or above.
            _ => {
                let my_level = levels[leaf] + 1;
                let candidates: Vec<usize> = (0..specs.len())
                    .filter(|&c| c != leaf && levels[c] <= my_level)
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let mut s = new_spec(&mut rng, &specs, Some(leaf));
                for _ in 0..1 + rng.below(2) {
                    let c = candidates[rng.below(candidates.len() as u64) as usize];
                    if !s.reads.contains(&c) {
                        s.reads.push(c);
                    }
                }
                names.push(s.name.clone());
                let h = b.then(handles[leaf], make_part(&s, &names)).unwrap();
                for &r in &s.reads {
                    b.after(s.name.as_str(), names[r].as_str()).unwrap();
                }
                handles.push(h);
                levels.push(my_level);
                specs.push(s);
                open[at] = specs.len() - 1;
            }
        }
    }
    Shape {
        builder: b,
        specs,
        barriers,
    }
}

#[derive(Clone, Copy, Debug)]
struct Config {
    threads: usize,
    stats: bool,
    trace: bool,
    until: bool,
}

fn stress_one(seed: u64) -> Vec<String> {
    let Shape {
        builder,
        specs,
        barriers,
    } = random_cycle(seed);
    let specs = Arc::new(specs);
    let cycle = builder.build().unwrap();
    let mut rng = Rng(seed ^ 0xABCD);
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    // stats on, off, trace, on again: paces and countdowns carried.
    let plan = [
        (true, false),
        (false, false),
        (false, true),
        (true, false),
        (false, false),
        (true, true),
        (true, false),
    ];
    for (stats, trace) in plan {
        let cfg = Config {
            threads: [1, 2, 4][rng.below(3) as usize],
            stats,
            trace,
            until: rng.below(4) == 0,
        };
        let iterations = 40 + rng.below(160);
        let sink = Arc::clone(&bad);
        let sp = Arc::clone(&specs);
        let observer = move |it: &IterationReport| {
            let i = it.iteration();
            let want = expected(&sp, i);
            let mut local = Vec::new();
            for (s, w) in sp.iter().zip(want) {
                let got = (
                    it.state_of(&s.name).unwrap_or(PartState::Cancelled),
                    it.output_as::<u64>(&s.name).copied(),
                    it.error_of(&s.name).is_some(),
                );
                if got != w {
                    local.push(format!(
                        "seed {seed} {cfg:?} it {i} {} ({:?} {:?}): got {got:?} want {w:?}",
                        s.name, s.kind, s.pace
                    ));
                }
            }
            CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sink.lock().extend(local);
        };
        let run = if cfg.until {
            Run::until(move |it| it.iteration() >= iterations)
        } else {
            Run::times(iterations)
        };
        let report = cycle
            .run(
                run.threads(cfg.threads)
                    .stats(cfg.stats)
                    .trace(cfg.trace)
                    .on_iteration(observer),
            )
            .unwrap();
        let mut bad = bad.lock();
        if report.iterations() != iterations {
            bad.push(format!(
                "seed {seed} {cfg:?}: {} iterations, want {iterations}",
                report.iterations()
            ));
        }
        // State counts, and timing counts where every run is timed.
        let mut counts = vec![[0u64; 4]; specs.len()];
        for i in 1..=iterations {
            for (c, (st, _, _)) in counts.iter_mut().zip(expected(&specs, i)) {
                let k = match st {
                    PartState::Succeeded => 0,
                    PartState::Failed => 1,
                    PartState::Skipped => 2,
                    _ => 3,
                };
                c[k] += 1;
            }
        }
        let every_run_timed = cfg.trace || iterations * (2 * specs.len() as u64) <= 4096;
        for (s, c) in specs.iter().zip(&counts) {
            let Some(p) = report.stats().parts.iter().find(|p| *p.name == *s.name) else {
                bad.push(format!("seed {seed}: no stats for {}", s.name));
                continue;
            };
            let got = [
                p.count(PartState::Succeeded),
                p.count(PartState::Failed),
                p.count(PartState::Skipped),
                p.count(PartState::NotTaken),
            ];
            if got != *c || p.states.total() != iterations {
                bad.push(format!(
                    "seed {seed} {cfg:?} {}: state counts {got:?} (total {}), want {c:?}",
                    s.name,
                    p.states.total()
                ));
            }
            let runs = c[0] + c[1];
            let timed = p.timing.count;
            let ok = if !cfg.stats {
                timed == 0
            } else if every_run_timed && !barriers {
                timed == runs
            } else {
                timed <= runs
            };
            if !ok {
                bad.push(format!(
                    "seed {seed} {cfg:?} {}: timing.count {timed}, runs {runs}",
                    s.name
                ));
            }
        }
    }
    std::mem::take(&mut *bad.lock())
}

#[test]
fn random_cycles_with_parts_run_ahead() {
    let cycles: u64 = std::env::var("SK_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let first: u64 = std::env::var("SK_STRESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in first..first + cycles {
        let before = CHECKED.load(std::sync::atomic::Ordering::Relaxed);
        let bad = hang_guard(Duration::from_secs(60), move || stress_one(seed));
        assert!(bad.is_empty(), "{:#?}", &bad[..bad.len().min(20)]);
        assert!(CHECKED.load(std::sync::atomic::Ordering::Relaxed) > before + 7 * 40);
    }
    eprintln!(
        "iterations checked: {}",
        CHECKED.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// A quick instant-fail part run ahead of its sibling (`x`, the later of
/// the two) fails in iteration 300: the run stops there, every part's
/// end is one the error modes allow, and the next run starts clean.
#[test]
fn a_quick_part_run_ahead_that_fails_instantly_stops_the_run() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    for (threads, stats) in [(1, false), (2, false), (2, true), (4, false)] {
        hang_guard(Duration::from_secs(60), move || {
            let fail = Arc::new(AtomicBool::new(true));
            let mut b = CycleBuilder::new("instant");
            let root = b
                .root(CyclePart::new("root", |ctx| ctx.iteration()))
                .unwrap();
            let y = CyclePart::new("y", |ctx| *ctx.input_as::<u64>().unwrap() + 1);
            let x = common::instant_fail_at("x", 300, &fail);
            let [y, x] = b.fork(root, [y, x]).unwrap();
            let [_x1, _x2] = b
                .fork(
                    x,
                    [
                        CyclePart::new("x1", |ctx| *ctx.input_as::<u64>().unwrap()),
                        CyclePart::new("x2", |ctx| *ctx.input_as::<u64>().unwrap()),
                    ],
                )
                .unwrap();
            b.then(
                y,
                CyclePart::new("j", |ctx| *ctx.input_as::<u64>().unwrap()),
            )
            .unwrap();
            b.after("j", "x1").unwrap();
            b.after("j", "x2").unwrap();
            let cycle = b.build().unwrap();
            let first = cycle
                .run(Run::times(1000).threads(threads).stats(stats))
                .unwrap();
            assert_eq!(first.iterations(), 300, "threads {threads}");
            assert!(first.instant_fail().is_some());
            let last = first.last().unwrap();
            assert_eq!(last.state_of("x"), Some(PartState::Failed));
            for name in ["y", "j", "x1", "x2"] {
                let st = last.state_of(name);
                assert!(
                    matches!(
                        st,
                        Some(
                            PartState::Cancelled | PartState::Succeeded | PartState::UpstreamFailed
                        )
                    ),
                    "threads {threads}: {name} {st:?}"
                );
            }
            fail.store(false, SeqCst);
            let second = cycle
                .run(Run::times(500).threads(threads).stats(stats))
                .unwrap();
            assert_eq!(second.iterations(), 500);
            for p in &second.stats().parts {
                assert_eq!(p.count(PartState::Succeeded), 500, "{}", p.name);
            }
        });
    }
}
