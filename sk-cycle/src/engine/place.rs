//! Where a part runs: the [`Place`] trait, one implementation per
//! [`Site`] a plan can give a part.
//!
//! The engine decides *whether* a part runs (cancelled, poisoned, its
//! condition, its gate and rate); its place decides *where* and *how it
//! reports back*: to its end on the calling pool thread
//! ([`Step::Done`]), or handed off, finishing through
//! [`Runtime::complete_from_outside`] ([`Step::Deferred`]).
//!
//! A new place — a durable journal that replays recorded parts around
//! another place, a remote runner — is a [`Site`] variant chosen in
//! `plan.rs` and one more implementation here; [`places`] builds one
//! instance per site at the start of a run.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Finish, Held, Runtime, Step};
use crate::context::Input;
use crate::plan::{Plan, Site};

/// Where a part runs.
pub(crate) trait Place: Send + Sync {
    /// Runs part `node` with `input` (holding a gate permit when
    /// `gated`, which its [`Finish`] must give back).
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step;
}

/// The places of a run, indexed by [`place_index`].
pub(super) fn places(plan: &Plan) -> Box<[Box<dyn Place>]> {
    let mut places: Vec<Box<dyn Place>> = vec![
        Box::new(OnPool),
        Box::new(OwnThread),
        Box::new(InProcess),
        Box::new(OnRemote),
    ];
    for index in 0..plan.components.len() {
        places.push(Box::new(OnComponent { index }));
    }
    places.into_boxed_slice()
}

/// Where the place of `site` is in [`places`].
pub(super) fn place_index(site: Site) -> usize {
    match site {
        Site::Pool => 0,
        Site::Timed => 1,
        Site::Process => 2,
        Site::Remote => 3,
        Site::Component(index) => 4 + index as usize,
    }
}

/// The run's thread pool: the part runs to its end on the calling thread.
struct OnPool;

impl Place for OnPool {
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step {
        let iteration = rt.iteration_of(node);
        Step::Done(rt.execute(node, &input, &rt.cancel, iteration).gated(gated))
    }
}

/// A thread of its own, raced by the watchdog at the part's timeout.
struct OwnThread;

impl Place for OwnThread {
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step {
        let limit = rt.plan.parts[node as usize]
            .part
            .settings()
            .timeout
            .unwrap_or(Duration::MAX);
        let iteration = rt.iteration_of(node);
        on_own_thread(rt, node, gated, "sk-part", move |rt| {
            run_claimed(&rt, node, input, limit, gated, iteration);
        });
        Step::Deferred
    }
}

/// A worker process: the call blocks a thread of its own (not the pool)
/// until the worker answers, fails, dies or is killed at the timeout.
struct InProcess;

impl Place for InProcess {
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step {
        on_own_thread(rt, node, gated, "sk-call", move |rt| {
            let finish = rt.execute_in_process(node, &input);
            rt.complete_from_outside(node, finish.gated(gated));
        });
        Step::Deferred
    }
}

/// A remote group's worker: the part is handed to the run's remote
/// runner, and completes when it calls back — no thread waits for it. A
/// part that retries waits on a thread of its own, its attempts one after
/// another with the retry policy's pauses between.
struct OnRemote;

impl Place for OnRemote {
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step {
        if rt.plan.parts[node as usize].part.error_mode == crate::ErrorMode::Retry {
            on_own_thread(rt, node, gated, "sk-remote", move |rt| {
                let finish = rt.execute_remote(node, &input);
                rt.complete_from_outside(node, finish.gated(gated));
            });
        } else {
            rt.submit_remote(node, &input, gated);
        }
        Step::Deferred
    }
}

/// A long-lived component thread (parts bound to it run there one at a
/// time, in the order they become ready).
struct OnComponent {
    index: usize,
}

impl Place for OnComponent {
    fn run(&self, rt: &Arc<Runtime>, node: u32, input: Input, gated: bool) -> Step {
        let this = rt.hold();
        let job = Box::new(move || {
            let iteration = this.iteration_of(node);
            match this.plan.parts[node as usize].part.settings().timeout {
                Some(limit) => run_claimed(&this, node, input, limit, gated, iteration),
                None => {
                    let finish = this.execute(node, &input, &this.cancel, iteration);
                    this.complete_from_outside(node, finish.gated(gated));
                }
            }
        });
        if let Err(job) = rt.components[self.index].send(job) {
            // The component thread is gone (only at shutdown): run here.
            job();
        }
        Step::Deferred
    }
}

/// Runs `body` for part `node` on a new thread named `prefix:<part>`; if
/// the thread cannot start, the part fails (and still completes).
fn on_own_thread(
    rt: &Arc<Runtime>,
    node: u32,
    gated: bool,
    prefix: &str,
    body: impl FnOnce(Held) + Send + 'static,
) {
    let part = &rt.plan.parts[node as usize];
    let this = rt.hold();
    let spawned = std::thread::Builder::new()
        .name(format!("{prefix}:{}", part.part.name))
        .spawn(move || body(this));
    match spawned {
        Ok(handle) => {
            let mut threads = rt.own_threads.lock();
            threads.retain(|t| !t.is_finished());
            threads.push(handle);
        }
        Err(_) => {
            let finish = Finish::spawn_failed(part);
            rt.complete_from_outside(node, finish.gated(gated));
        }
    }
}

/// Runs a timed part on the current thread; whichever of it and the
/// watchdog claims the completion first completes it.
fn run_claimed(
    rt: &Arc<Runtime>,
    node: u32,
    input: Input,
    limit: Duration,
    gated: bool,
    iteration: u64,
) {
    rt.timed_running.fetch_add(1, Ordering::AcqRel);
    let generation = rt.claim(node);
    let token = rt.cancel.child();
    let started = Instant::now();
    let clock = rt.start_clock(node, rt.plan.parts[node as usize].lane, iteration);
    {
        let this = rt.hold();
        let token = token.clone();
        let fire = Box::new(move || {
            if this.settle_claim(node, generation) {
                token.stop();
                let finish = this.timed_out(node, limit, clock);
                this.complete_from_outside(node, finish.gated(gated));
            }
        });
        let deadline = started + limit;
        match rt.watchdog.lock().as_ref() {
            Some(dog) => dog.schedule(deadline, fire),
            None => fire(),
        }
    }
    let finish = token.enter(|| rt.execute_clocked(node, &input, &token, iteration, clock));
    if rt.settle_claim(node, generation) {
        rt.complete_from_outside(node, finish.gated(gated));
    }
    rt.timed_running.fetch_sub(1, Ordering::AcqRel);
}
