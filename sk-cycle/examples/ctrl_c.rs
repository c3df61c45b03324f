//! Ctrl-C handling that lasts as long as a run, alone or beside the
//! program's own handler.
//!
//! `cargo run -p sk-cycle --example ctrl_c -- <mode>`, then press Ctrl-C:
//! - `after-run`: a run that watched Ctrl-C has ended; Ctrl-C ends the
//!   program, as it would have without the run;
//! - `app-handler-after`: after the run, the program installs its own
//!   handler (with the `ctrlc` crate), which then gets Ctrl-C;
//! - `app-handler-before`: the program's handler is installed first; a
//!   continuous run stops gracefully on Ctrl-C and the program's handler
//!   hears it too; after the run, the handler alone gets the next one;
//! - `second`: a part ignores its stop token; the first Ctrl-C asks for a
//!   graceful stop, a second ends the program at once.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sk_cycle::{CycleBuilder, CyclePart, Run};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A run of three iterations that watches Ctrl-C.
fn short_run() -> Result {
    let mut b = CycleBuilder::new("short");
    b.add(CyclePart::new("tick", |_| ()), 1)?;
    let report = b.build()?.run(Run::times(3).stop_on_ctrl_c())?;
    say(&format!("ran {} iterations", report.iterations()));
    Ok(())
}

/// Waits for a signal to end or interrupt the program.
fn linger(code: i32) -> ! {
    say("ready");
    std::thread::sleep(Duration::from_secs(30));
    say("still alive");
    std::process::exit(code);
}

fn app_handler_before() -> Result {
    let heard = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&heard);
    ctrlc::set_handler(move || {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        say(&format!("app heard {n}"));
        if n == 2 {
            std::process::exit(0);
        }
    })?;
    let mut b = CycleBuilder::new("forever");
    let tick = CyclePart::new("tick", |_| std::thread::sleep(Duration::from_millis(2)));
    b.add(tick, 1)?;
    let iterations = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&iterations);
    let run = Run::continuous().stop_on_ctrl_c().on_iteration(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 3 {
            say("ready");
        }
    });
    let report = b.build()?.run(run)?;
    say(&format!("stopped: {:?}", report.stop_reason()));
    linger(3);
}

fn second() -> Result {
    let mut b = CycleBuilder::new("stubborn");
    let stubborn = CyclePart::new("stubborn", |_| {
        say("ready");
        // Ignores its stop token.
        std::thread::sleep(Duration::from_secs(30));
    });
    b.add(stubborn, 1)?;
    let report = b.build()?.run(Run::continuous().stop_on_ctrl_c())?;
    say(&format!("stopped: {:?}", report.stop_reason()));
    std::process::exit(3);
}

fn main() -> Result {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "after-run" => {
            short_run()?;
            linger(3);
        }
        "app-handler-after" => {
            short_run()?;
            if let Err(e) = ctrlc::set_handler(|| {
                say("app handler");
                std::process::exit(0);
            }) {
                say(&format!("cannot install the handler: {e}"));
                std::process::exit(4);
            }
            linger(3);
        }
        "app-handler-before" => app_handler_before(),
        "second" => second(),
        other => {
            eprintln!(
                "unknown mode {other:?}: after-run, app-handler-after, app-handler-before, second"
            );
            std::process::exit(2);
        }
    }
}
