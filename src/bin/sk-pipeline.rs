//! `sk-pipeline`: the main job — a long-running sensor pipeline cycle.
//!
//! ```text
//! 1-1 sources ─ 2-1 split ─┬ 3-1 normalize ─ 4-1 aggregate ─ 5-1 publish (component "io") ─ 6-1 report
//!                          ├ 3-2 energy ──── 4-2 enrich (retry) ─ 5-2 score (worker process)
//!                          └ 3-3 anomalies
//! aggregate waits for enrich and anomalies; publish waits for score.
//! ```
//!
//! Each iteration four synthetic sensors produce a batch; three transforms
//! run in parallel; `aggregate` waits for the branches it reads (by name);
//! `score` runs in a worker process (this binary started again; see
//! `suitkaise::init()` in `main`); `publish` runs on its own long-lived
//! component thread with a timeout and a fallback; `report` keeps running
//! totals in the run's store. Ctrl-C stops the run at an iteration
//! boundary, then the workers, then the program, which exits 0.
//!
//! Runs until Ctrl-C (or SIGTERM), or `--iterations N`; prints progress,
//! then the stats of every part.
//!
//! The run is durable: it journals every part's end to
//! `sk-pipeline.journal` in the working directory (an embedded SQLite
//! database). Killed at any moment — `kill -9`, a crash, a power cut with
//! `--power-loss` — the same command resumes it where it was: parts of
//! the interrupted iteration that had ended are not run again, the
//! store's totals go on. `--journal PATH` keeps it elsewhere,
//! `--run-id ID` starts another run in it, `--no-journal` keeps none.
//!
//! ```sh
//! cargo run --release --bin sk-pipeline                    # until Ctrl-C
//! cargo run --release --bin sk-pipeline -- --iterations 500
//! cargo run --release --bin sk-pipeline -- --dot           # the cycle as Graphviz
//! cargo run --release --bin sk-pipeline -- --mermaid       # the cycle as Mermaid
//! cargo run --release --bin sk-pipeline -- --trace run.json --iterations 50
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use suitkaise::prelude::*;
use suitkaise::{ReadError, Store};

const SENSORS: usize = 4;
const SAMPLES: usize = 512;

struct Options {
    iterations: Option<u64>,
    /// Where the run is journaled (`None`: `--no-journal`).
    journal: Option<PathBuf>,
    run_id: String,
    power_loss: bool,
    interval: Duration,
    threads: Option<usize>,
    trace: Option<String>,
    dot: bool,
    mermaid: bool,
    every: u64,
}

const USAGE: &str = "usage: sk-pipeline [--iterations N] [--interval-ms MS] [--threads N] \
                     [--progress-every N] [--trace FILE] [--dot | --mermaid] \
                     [--journal PATH | --no-journal] [--run-id ID] [--power-loss]";

/// The journal's file when `--journal` does not say.
const JOURNAL: &str = "sk-pipeline.journal";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        iterations: None,
        journal: Some(PathBuf::from(JOURNAL)),
        run_id: "sensors".to_owned(),
        power_loss: false,
        interval: Duration::from_millis(10),
        threads: None,
        trace: None,
        dot: false,
        mermaid: false,
        every: 50,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{name} takes a whole number, not {text:?}"))
        };
        match arg.as_str() {
            "--iterations" => options.iterations = Some(number(&arg, value(&arg)?)?),
            "--interval-ms" => {
                options.interval = Duration::from_millis(number(&arg, value(&arg)?)?);
            }
            "--threads" => options.threads = Some(number(&arg, value(&arg)?)? as usize),
            "--progress-every" => options.every = number(&arg, value(&arg)?)?.max(1),
            "--trace" => options.trace = Some(value(&arg)?),
            "--journal" => options.journal = Some(PathBuf::from(value(&arg)?)),
            "--no-journal" => options.journal = None,
            "--run-id" => options.run_id = value(&arg)?,
            "--power-loss" => options.power_loss = true,
            "--dot" => options.dot = true,
            "--mermaid" => options.mermaid = true,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// One batch: `SENSORS` series of `SAMPLES` readings.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Batch {
    iteration: u64,
    series: Vec<Vec<f64>>,
}

/// What `aggregate` makes of a batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Summary {
    iteration: u64,
    readings: usize,
    mean: f64,
    energy: f64,
    anomalies: usize,
    calibration: f64,
}

/// A small deterministic generator (no dependency needed for demo data).
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0 - 0.5
    }
}

fn sources(ctx: &PartContext<'_>) -> Batch {
    let iteration = ctx.iteration();
    let series = (0..SENSORS)
        .map(|sensor| {
            let mut next = noise(iteration * 31 + sensor as u64 + 1);
            (0..SAMPLES)
                .map(|i| {
                    let phase = (i as f64 / 16.0) + sensor as f64;
                    // A spike now and then makes the anomaly detector earn its keep.
                    let spike = if iteration % 5 == 0 && i == 100 + sensor {
                        6.0
                    } else {
                        0.0
                    };
                    phase.sin() + 0.2 * next() + spike
                })
                .collect()
        })
        .collect();
    Batch { iteration, series }
}

fn build() -> Result<Cycle, Box<dyn std::error::Error>> {
    let mut b = CycleBuilder::new("sensors");
    b.add(CyclePart::new("sources", sources), 1)?;
    b.split(
        [
            CyclePart::fallible("normalize", |ctx| {
                let batch = ctx.input_as::<Batch>()?;
                let means: Vec<f64> = batch
                    .series
                    .iter()
                    .map(|s| s.iter().sum::<f64>() / s.len() as f64)
                    .collect();
                Ok::<_, ReadError>(means)
            }),
            CyclePart::fallible("energy", |ctx| {
                let batch = ctx.input_as::<Batch>()?;
                Ok::<_, ReadError>(batch.series.iter().flatten().map(|x| x * x).sum::<f64>())
            }),
            CyclePart::fallible("anomalies", |ctx| {
                let batch = ctx.input_as::<Batch>()?;
                let count = batch
                    .series
                    .iter()
                    .flatten()
                    .filter(|x| x.abs() > 3.0)
                    .count();
                Ok::<_, ReadError>(count)
            }),
        ],
        2,
    )?;
    // A lookup that fails on the first attempt every seventh iteration:
    // retried by its policy, within its timeout.
    b.add(
        CyclePart::fallible("enrich", |ctx| {
            let energy = *ctx.input_as::<f64>().map_err(|_| "no energy")?;
            if ctx.iteration() % 7 == 0 && ctx.attempt() == 1 {
                return Err("calibration service busy");
            }
            Ok(1.0 + energy.sqrt() / 1_000.0)
        })
        .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(3))
        .timeout(Duration::from_secs(2)),
        (4, 2),
    )?;
    b.add(
        CyclePart::function("score", SkFunction::get("score")?)
            .in_process()
            .timeout(Duration::from_secs(5))
            .error_mode(ErrorMode::FallbackSkip)
            .fallback(0.0_f64),
        (5, 2),
    )?;
    b.add(
        CyclePart::fallible("aggregate", |ctx| {
            let means = ctx.input_as::<Vec<f64>>()?;
            Ok::<_, ReadError>(Summary {
                iteration: ctx.iteration(),
                readings: SENSORS * SAMPLES,
                mean: means.iter().sum::<f64>() / means.len() as f64,
                // A branch that failed this iteration counts as empty.
                energy: ctx.output::<f64>("energy").map_or(0.0, |e| *e),
                anomalies: ctx.output::<usize>("anomalies").map_or(0, |a| *a),
                calibration: ctx.output::<f64>("enrich").map_or(1.0, |c| *c),
            })
        })
        // Ordered before it by the `after` edges below.
        .reads(["energy", "anomalies", "enrich"]),
        (4, 1),
    )?;
    b.after("aggregate", "enrich")?;
    b.after("aggregate", "anomalies")?;
    // The sink owns a single-threaded resource: it lives on its own thread.
    b.add(
        CyclePart::fallible("publish", |ctx| {
            let summary = ctx.input_as::<Summary>()?;
            // The score part may have fallen back (to 0.0) or failed.
            let score = ctx.output::<f64>("score").map_or(0.0, |s| *s);
            ctx.store().set("last_score", score);
            ctx.store()
                .update("published", |n: Option<&u64>| n.copied().unwrap_or(0) + 1)?;
            Ok::<_, ReadError>(summary.anomalies > 0)
        })
        .reads(["score"])
        .component("io")
        .timeout(Duration::from_millis(500))
        .error_mode(ErrorMode::FallbackSkip)
        .fallback(false),
        5,
    )?;
    b.after("publish", "score")?;
    b.add(
        CyclePart::fallible("report", |ctx| {
            let alerted = ctx.input_as::<bool>().is_ok_and(|&a| a);
            let store: &Store = ctx.store();
            store.update("alerts", |n: Option<&u64>| {
                n.copied().unwrap_or(0) + u64::from(alerted)
            })
        }),
        6,
    )?;
    Ok(b.build()?)
}

/// Scores a calibrated energy reading. Runs in a worker process: the
/// scoring model is the kind of thing one keeps out of the main process.
#[suitkaise::function]
fn score(input: f64) -> f64 {
    (input - 1.0).abs() * 1_000.0
}

fn main() -> ExitCode {
    // Worker processes are this binary started again: this line makes a
    // worker launch serve parts instead of running the program.
    suitkaise::init();
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let cycle = match build() {
        Ok(cycle) => cycle,
        Err(e) => {
            eprintln!("cannot build the cycle: {e}");
            return ExitCode::FAILURE;
        }
    };
    if options.dot {
        print!("{}", cycle.to_dot());
        return ExitCode::SUCCESS;
    }
    if options.mermaid {
        print!("{}", cycle.to_mermaid());
        return ExitCode::SUCCESS;
    }
    let store = Arc::new(Store::new());
    let every = options.every;
    let mut run = match options.iterations {
        Some(n) => Run::times(n),
        None => Run::continuous(),
    }
    .stop_on_ctrl_c()
    .interval(options.interval)
    .store(Arc::clone(&store))
    .trace(options.trace.is_some())
    .on_iteration(move |it| {
        if it.iteration() % every == 0 {
            if let Some(s) = it.output_as::<Summary>("aggregate") {
                println!(
                    "iteration {:>6}: {} readings, mean {:+.4}, energy {:>8.1}, {} anomalies, calibration {:.4} ({:?})",
                    s.iteration, s.readings, s.mean, s.energy, s.anomalies, s.calibration, it.duration()
                );
            }
        }
    });
    if let Some(threads) = options.threads {
        run = run.threads(threads);
    }
    if let Some(path) = &options.journal {
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        println!(
            "journal: {} (run \"{}\"; --no-journal to keep none)",
            shown.display(),
            options.run_id
        );
        run = run
            .journal(path)
            .run_id(options.run_id.clone())
            .on_resume(|resumed| {
                println!(
                    "resumed run {} at iteration {} ({} parts replayed)",
                    resumed.run,
                    resumed.iteration(),
                    resumed.replayed
                );
            });
        if options.power_loss {
            run = run.durability(suitkaise::Durability::PowerLoss);
        }
    }
    println!(
        "running cycle \"{}\" ({}) — Ctrl-C to stop",
        cycle.name(),
        options
            .iterations
            .map_or_else(|| "until stopped".to_owned(), |n| format!("{n} iterations"))
    );
    let report = match cycle.run(run) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("run failed: {}", suitkaise::error_chain(&e));
            if matches!(e, suitkaise::RunError::Journal { .. }) {
                eprintln!(
                    "(--run-id ID starts another run in the journal, --journal PATH uses \
                     another file, --no-journal keeps none)"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    if let (Some(n), Some(resumed)) = (options.iterations, report.resumed()) {
        if report.iterations() == 0 {
            println!(
                "run \"{}\" had done {} iterations already ({n} asked): --run-id ID starts another",
                resumed.run,
                resumed.iteration() - 1
            );
        }
    }
    println!(
        "\nstopped ({:?}) after {} iterations, {} in error state, in {:.2?}",
        report.stop_reason(),
        report.iterations(),
        report.error_iterations(),
        report.wall_time()
    );
    println!(
        "published {} summaries, {} with alerts",
        store.get::<u64>("published").unwrap_or(0),
        store.get::<u64>("alerts").unwrap_or(0)
    );
    print!("{}", report.stats());
    if let (Some(path), Some(trace)) = (&options.trace, report.trace()) {
        match std::fs::write(path, trace.to_chrome_json()) {
            Ok(()) => println!("trace written to {path} (open it in Perfetto or chrome://tracing)"),
            Err(e) => {
                eprintln!("cannot write the trace to {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
