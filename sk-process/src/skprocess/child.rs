//! The worker side of an [`SkProcess`]: the registered runner function.
//!
//! The runner is called on the worker's executor thread, the only thread
//! that can talk to the parent ([`tell_parent`]/[`listen_parent`]). It
//! starts the hook loop on a thread of its own and stays behind as its
//! watchdog: it relays messages both ways, turns a stop request or the
//! time limit into the stop token, and notices a hook that overruns its
//! timeout — something the overrunning thread cannot report itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sk_core::{Args, BoxError, FunctionSpec, ParamSpec, StopToken, TimingStats};

use crate::vocab::Hook;

use super::{ChildMsg, HookTimings, ParentMsg, ProcessConfig, ProcessContext, SkProcess};
use crate::error::SkProcessError;
use crate::{listen_parent, tell_parent};

/// How often the watchdog looks at the parent's messages and the clocks.
const POLL: Duration = Duration::from_millis(2);

/// What the parent passes to one life besides the state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Launch {
    pub(super) config: ProcessConfig,
    pub(super) life: u32,
    /// What is left of the wall-clock limit.
    pub(super) limit: Option<Duration>,
    /// A stop was requested before this life started.
    pub(super) stopped: bool,
}

/// What one life sends back.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Report {
    pub(super) outcome: Outcome,
    pub(super) timings: HookTimings,
}

/// How a life ended.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Outcome {
    /// The output, encoded (from `result`, or a fallback from `error`).
    Finished(Vec<u8>),
    /// The process failed for good.
    Failed(Failure),
    /// A hook panicked with lives left: restart.
    Crashed(Failure),
    /// The worker was killed (thread backend); nothing more ran.
    Abandoned,
}

/// A failure, in a form that crosses the process boundary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum Failure {
    Hook {
        hook: Hook,
        run: u64,
        message: String,
    },
    Panic {
        hook: Hook,
        run: u64,
        message: String,
    },
    TimedOut {
        hook: Hook,
        after: Duration,
    },
    Abandoned,
}

impl Failure {
    pub(super) fn into_error(self, process: &str) -> SkProcessError {
        let process = process.to_owned();
        match self {
            Failure::Hook { hook, run, message } => SkProcessError::HookFailed {
                process,
                hook,
                run,
                message,
            },
            Failure::Panic { hook, run, message } => SkProcessError::HookPanicked {
                process,
                hook,
                run,
                message,
            },
            Failure::TimedOut { hook, after } => SkProcessError::HookTimedOut {
                process,
                hook,
                after,
            },
            Failure::Abandoned => SkProcessError::Killed { process },
        }
    }
}

/// The registration of `P`'s runner; what
/// [`register_process!`](crate::register_process) submits.
#[doc(hidden)]
pub fn process_spec<P: SkProcess>() -> FunctionSpec {
    let name = super::runner_name::<P>();
    let fname = name.clone();
    FunctionSpec::plain(
        name,
        [
            ParamSpec::of::<Vec<u8>>("state"),
            ParamSpec::of::<Launch>("launch"),
        ],
        move |args: &Args| -> Result<Report, BoxError> {
            let state: Vec<u8> = args.decode(&fname, "state")?;
            let launch: Launch = args.decode(&fname, "launch")?;
            let process: P = sk_cereal::Internal::decode(&state)?;
            Ok(run_life(process, launch))
        },
    )
    .in_layer(sk_reg::Layer::Internal)
}

/// What the hook thread and the watchdog share.
struct Watch {
    /// The hook running now and since when.
    current: Mutex<Option<(Hook, Instant)>>,
    timings: Mutex<[TimingStats; 6]>,
    /// Set by the watchdog when it gave up on the hook thread: it must not
    /// start another hook.
    abandoned: AtomicBool,
}

impl Watch {
    fn summaries(&self) -> HookTimings {
        let stats = self.timings.lock();
        let mut timings = HookTimings::default();
        for hook in Hook::ALL {
            *timings.slot(hook) = stats[hook.index()].summary();
        }
        timings
    }
}

/// Runs one life of `process` and reports how it ended.
fn run_life<P: SkProcess>(process: P, launch: Launch) -> Report {
    let name = super::short_name::<P>();
    let stop = StopToken::new();
    if launch.stopped {
        stop.stop();
    }
    let (out_tx, out_rx) = channel::unbounded::<ChildMsg>();
    let (in_tx, in_rx) = channel::unbounded::<Vec<u8>>();
    let (done_tx, done_rx) = channel::bounded::<Outcome>(1);
    let watch = Arc::new(Watch {
        current: Mutex::new(None),
        timings: Mutex::new(Default::default()),
        abandoned: AtomicBool::new(false),
    });
    let ctx = ProcessContext {
        name: name.clone(),
        run: 0,
        life: launch.life,
        stop: stop.clone(),
        started: Instant::now(),
        out: out_tx.clone(),
        inbox: in_rx,
    };
    let driver = Driver {
        config: launch.config.clone(),
        life: launch.life,
        watch: Arc::clone(&watch),
        out: out_tx,
    };
    let spawned = thread::Builder::new()
        .name(format!("sk-proc:{name}"))
        .spawn(move || {
            let outcome = driver.drive(process, ctx);
            let _ = done_tx.send(outcome);
        });
    if let Err(e) = spawned {
        let failure = Failure::Panic {
            hook: Hook::Prerun,
            run: 0,
            message: format!("cannot start the hook thread: {e}"),
        };
        return Report {
            outcome: Outcome::Failed(failure),
            timings: HookTimings::default(),
        };
    }
    let outcome = watchdog(&launch, &stop, &watch, &done_rx, &out_rx, &in_tx);
    // Everything the hooks said before the end goes out before the report.
    for message in out_rx.try_iter() {
        let _ = tell_parent(&message);
    }
    Report {
        outcome,
        timings: watch.summaries(),
    }
}

/// Watches the hook thread until it is done or must be given up.
fn watchdog(
    launch: &Launch,
    stop: &StopToken,
    watch: &Watch,
    done: &Receiver<Outcome>,
    out: &Receiver<ChildMsg>,
    inbox: &Sender<Vec<u8>>,
) -> Outcome {
    let deadline = launch.limit.map(|limit| Instant::now() + limit);
    // A thread worker's executor runs under the worker's token, set when
    // the worker is killed; a killed process never gets here.
    let killed = StopToken::current();
    loop {
        channel::select! {
            recv(done) -> outcome => {
                return outcome.unwrap_or_else(|_| {
                    // The hook thread catches panics of hooks; it can only
                    // end without an outcome if that machinery failed.
                    Outcome::Failed(Failure::Panic {
                        hook: Hook::Run,
                        run: 0,
                        message: "the hook thread ended without an outcome".to_owned(),
                    })
                });
            }
            recv(out) -> message => {
                if let Ok(message) = message {
                    let _ = tell_parent(&message);
                }
            }
            default(POLL) => {}
        }
        loop {
            match listen_parent::<ParentMsg>(Duration::ZERO) {
                Ok(Some(ParentMsg::User(bytes))) => {
                    let _ = inbox.send(bytes);
                }
                Ok(Some(ParentMsg::Stop)) => stop.stop(),
                // Nothing waiting, or a message that is not ours.
                Ok(None) | Err(_) => break,
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.stop();
        }
        if killed.as_ref().is_some_and(StopToken::is_stopped) {
            watch.abandoned.store(true, Ordering::Release);
            stop.stop();
            return Outcome::Abandoned;
        }
        let current = *watch.current.lock();
        if let Some((hook, since)) = current {
            if let Some(limit) = launch.config.hook_timeout(hook) {
                if since.elapsed() > limit {
                    watch.abandoned.store(true, Ordering::Release);
                    stop.stop();
                    return Outcome::Failed(Failure::TimedOut { hook, after: limit });
                }
            }
        }
    }
}

/// Runs the hooks of one life, on the hook thread.
struct Driver {
    config: ProcessConfig,
    life: u32,
    watch: Arc<Watch>,
    out: Sender<ChildMsg>,
}

impl Driver {
    fn drive<P: SkProcess>(&self, mut process: P, mut ctx: ProcessContext) -> Outcome {
        match self.lifecycle(&mut process, &mut ctx) {
            Ok(output) => match sk_cereal::Internal::encode(&output) {
                Ok(bytes) => Outcome::Finished(bytes),
                Err(e) => Outcome::Failed(Failure::Hook {
                    hook: Hook::Result,
                    run: ctx.run,
                    message: format!("cannot encode the output: {}", sk_core::error_chain(&e)),
                }),
            },
            Err(Failure::Abandoned) => Outcome::Abandoned,
            Err(failure @ Failure::TimedOut { .. }) => Outcome::Failed(failure),
            Err(failure @ Failure::Panic { .. }) if self.life < self.config.max_lives() => {
                Outcome::Crashed(failure)
            }
            Err(failure) => self.fail(&mut process, &ctx, failure),
        }
    }

    fn lifecycle<P: SkProcess>(
        &self,
        process: &mut P,
        ctx: &mut ProcessContext,
    ) -> Result<P::Output, Failure> {
        let runs = self.config.max_runs();
        while !ctx.stop.is_stopped() && runs.is_none_or(|n| ctx.run < n) {
            ctx.run += 1;
            let ctx: &ProcessContext = ctx;
            self.call(Hook::Prerun, ctx, || process.prerun(ctx))?;
            self.call(Hook::Run, ctx, || process.run(ctx))?;
            self.call(Hook::Postrun, ctx, || process.postrun(ctx))?;
        }
        let ctx: &ProcessContext = ctx;
        self.call(Hook::Onfinish, ctx, || process.onfinish(ctx))?;
        self.call(Hook::Result, ctx, || process.result(ctx))
    }

    /// Gives the `error` hook its chance at a fallback output.
    fn fail<P: SkProcess>(
        &self,
        process: &mut P,
        ctx: &ProcessContext,
        failure: Failure,
    ) -> Outcome {
        let err = failure.clone().into_error(&ctx.name);
        match self.call(Hook::Error, ctx, || Ok(process.error(ctx, &err))) {
            Ok(Some(output)) => match sk_cereal::Internal::encode(&output) {
                Ok(bytes) => Outcome::Finished(bytes),
                Err(_) => Outcome::Failed(failure),
            },
            Err(Failure::Abandoned) => Outcome::Abandoned,
            // A failing error hook does not hide the original failure.
            Ok(None) | Err(_) => Outcome::Failed(failure),
        }
    }

    /// Calls one hook: times it, catches its panic, checks its timeout.
    fn call<R>(
        &self,
        hook: Hook,
        ctx: &ProcessContext,
        f: impl FnOnce() -> Result<R, BoxError>,
    ) -> Result<R, Failure> {
        if self.watch.abandoned.load(Ordering::Acquire) {
            return Err(Failure::Abandoned);
        }
        let timeout = self.config.hook_timeout(hook);
        if let Some(timeout) = timeout {
            let _ = self.out.send(ChildMsg::HookStarted { hook, timeout });
        }
        let start = Instant::now();
        *self.watch.current.lock() = Some((hook, start));
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let took = start.elapsed();
        *self.watch.current.lock() = None;
        if timeout.is_some() {
            let _ = self.out.send(ChildMsg::HookEnded);
        }
        self.watch.timings.lock()[hook.index()].record(took);
        if self.watch.abandoned.load(Ordering::Acquire) {
            return Err(Failure::Abandoned);
        }
        // Overrunning counts even when the watchdog has not noticed yet.
        if let Some(limit) = timeout.filter(|&limit| took > limit) {
            return Err(Failure::TimedOut { hook, after: limit });
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Hook {
                hook,
                run: ctx.run,
                message: sk_core::error_chain(&*e),
            }),
            Err(payload) => Err(Failure::Panic {
                hook,
                run: ctx.run,
                message: sk_core::panic_message(payload.as_ref()),
            }),
        }
    }
}
