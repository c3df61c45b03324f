//! Running one part: its context, retries, validators, panics, and what
//! its error mode makes of a failure.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sk_core::{
    BoxError, Permanent, Retry, StopToken, SystemClock, Value, error_chain, panic_message,
};

use super::{Runtime, poison};
use crate::mode::{ErrorMode, PartState};
use crate::part::{Input, PartContext, PartError, PartFn, Work};
use crate::plan::PlanPart;
use crate::trace::TraceEvent;

/// How a node ended, as handed to [`Runtime::complete`].
pub(crate) struct Finish {
    pub(crate) state: PartState,
    pub(crate) output: Option<Arc<Value>>,
    pub(crate) error: Option<Arc<PartError>>,
    /// What the node passes to its data successors.
    pub(crate) poison: u8,
    pub(crate) error_state: bool,
    pub(crate) instant_fail: bool,
    /// Whether the node holds a gate permit to give back.
    pub(crate) gated: bool,
    /// When it started running, and on which thread (for stats and trace).
    pub(crate) ran: Option<(Instant, u64)>,
}

impl Finish {
    fn new(state: PartState) -> Self {
        Finish {
            state,
            output: None,
            error: None,
            poison: poison::NONE,
            error_state: false,
            instant_fail: false,
            gated: false,
            ran: None,
        }
    }

    /// A barrier node: no state.
    pub(crate) fn barrier() -> Self {
        Finish::new(PartState::Succeeded)
    }

    /// A part that did not run, ending in `state`.
    pub(crate) fn resolved(state: PartState, poison: u8) -> Self {
        Finish {
            poison,
            ..Finish::new(state)
        }
    }

    /// A part that did not run because a data parent did not provide.
    pub(crate) fn poisoned(poison: u8) -> Self {
        let state = match poison {
            poison::NOT_TAKEN => PartState::NotTaken,
            poison::SKIPPED => PartState::Skipped,
            _ => PartState::UpstreamFailed,
        };
        Finish::resolved(state, poison)
    }

    /// A timed part whose thread could not be started.
    pub(crate) fn spawn_failed(part: &PlanPart) -> Self {
        let error = PartError::Failed {
            part: part.part.name.to_string(),
            coord: part.coord,
            message: "cannot start a thread for the timed part".to_owned(),
        };
        Finish {
            error: Some(Arc::new(error)),
            poison: poison::UPSTREAM_FAILED,
            error_state: true,
            ..Finish::new(PartState::Failed)
        }
    }

    pub(crate) fn gated(mut self, gated: bool) -> Self {
        self.gated = gated;
        self
    }
}

/// A small stable number for the current thread (trace `tid`).
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: Cell<u64> = const { Cell::new(0) };
    }
    NUMBER.with(|n| {
        if n.get() == 0 {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

impl Runtime {
    fn context<'a>(
        &'a self,
        part: &'a PlanPart,
        input: &'a Input,
        env: &'a super::Env<'a>,
        stop: &'a StopToken,
        iteration: u64,
        attempt: u32,
    ) -> PartContext<'a> {
        PartContext {
            part: &part.part.name,
            coord: part.coord,
            iteration,
            attempt,
            input,
            env,
            stop,
        }
    }

    /// Whether every condition over `node` holds (a split's, then its own).
    pub(super) fn conditions_hold(&self, node: u32, input: &Input) -> bool {
        let part = &self.plan.parts[node as usize];
        if part.split_conditions.is_empty() && part.part.condition.is_none() {
            return true;
        }
        let env = self.env(part.lane);
        let iteration = self.lanes[part.lane as usize]
            .iteration
            .load(Ordering::Relaxed);
        let ctx = self.context(part, input, &env, &self.cancel, iteration, 1);
        let check = || {
            part.split_conditions
                .iter()
                .chain(part.part.condition.as_ref())
                .all(|cond| cond(&ctx))
        };
        // A panicking condition counts as false: the subtree is not taken.
        panic::catch_unwind(AssertUnwindSafe(check)).unwrap_or(false)
    }

    /// Runs a plain part (see [`PlanPart::plain`]): no validator, retry,
    /// condition, gate, component, timeout or process to consider.
    #[inline]
    pub(super) fn execute_plain(&self, node: u32, pp: &PlanPart, work: &PartFn) -> Finish {
        let input = self.input_for(node);
        let started =
            (self.options.stats || self.options.trace).then(|| (Instant::now(), thread_number()));
        let iteration = self.lanes[pp.lane as usize]
            .iteration
            .load(Ordering::Relaxed);
        let env = self.env(pp.lane);
        let ctx = self.context(pp, &input, &env, &self.cancel, iteration, 1);
        let mut finish = match panic::catch_unwind(AssertUnwindSafe(|| work(&ctx))) {
            Ok(Ok(value)) => Finish {
                output: (!pp.part.unit_output && !value.is::<()>()).then(|| Arc::new(value)),
                ..Finish::new(PartState::Succeeded)
            },
            Ok(Err(error)) => {
                let failed = PartError::Failed {
                    part: pp.part.name.to_string(),
                    coord: pp.coord,
                    message: error_chain(&*error),
                };
                self.failure(pp, failed, false)
            }
            Err(payload) => {
                let panicked = PartError::Panicked {
                    part: pp.part.name.to_string(),
                    coord: pp.coord,
                    message: panic_message(&*payload),
                };
                self.failure(pp, panicked, false)
            }
        };
        finish.ran = started;
        finish
    }

    /// Runs part `node` to its end on the calling thread.
    pub(super) fn execute(
        &self,
        node: u32,
        input: &Input,
        stop: &StopToken,
        iteration: u64,
    ) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let part = &pp.part;
        let started =
            (self.options.stats || self.options.trace).then(|| (Instant::now(), thread_number()));
        let env = self.env(pp.lane);
        let attempt = |number: u32| -> Result<Value, (PartError, bool)> {
            let invalid = |which, reason| PartError::Invalid {
                part: part.name.to_string(),
                coord: pp.coord,
                which,
                reason,
            };
            if let (Some(check), Input::Value(value)) = (&part.input_validator, input) {
                check(value).map_err(|reason| (invalid("input", reason), true))?;
            }
            let ctx = self.context(pp, input, &env, stop, iteration, number);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| match &part.work {
                Work::Context(f) => f(&ctx),
                Work::Function(f) => match f.as_handle() {
                    Some(handle) => handle
                        .execute_value_with(&crate::process::input_args(handle, input))
                        .map_err(BoxError::from),
                    None => f.execute_value().map_err(BoxError::from),
                },
            }));
            let value = match outcome {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => {
                    let retryable = !error.is::<Permanent>();
                    let failed = PartError::Failed {
                        part: part.name.to_string(),
                        coord: pp.coord,
                        message: error_chain(&*error),
                    };
                    return Err((failed, retryable));
                }
                Err(payload) => {
                    let panicked = PartError::Panicked {
                        part: part.name.to_string(),
                        coord: pp.coord,
                        message: panic_message(&*payload),
                    };
                    return Err((panicked, true));
                }
            };
            if let Some(check) = &part.validator {
                check(&value).map_err(|reason| (invalid("output", reason), true))?;
            }
            Ok(value)
        };
        let result = if part.error_mode == ErrorMode::Retry {
            let mut policy = part.retry.clone().unwrap_or_default();
            if let Some(limit) = part.timeout {
                let deadline = policy.deadline_value().map_or(limit, |d| d.min(limit));
                policy = policy.deadline(deadline);
            }
            let mut rng = fastrand::Rng::new();
            let classify = |(_, retryable): &(PartError, bool)| Retry::from(*retryable);
            policy
                .run(&SystemClock, &mut rng, classify, |a| attempt(a.number))
                .map_err(|e| match e.into_last_error() {
                    Some((error, _)) => error,
                    None => PartError::Failed {
                        part: part.name.to_string(),
                        coord: pp.coord,
                        message: "the retry policy allowed no attempt".to_owned(),
                    },
                })
        } else {
            attempt(1).map_err(|(error, _)| error)
        };
        let mut finish = match result {
            Ok(value) => {
                let output = (!part.unit_output && !value.is::<()>()).then(|| Arc::new(value));
                Finish {
                    output,
                    ..Finish::new(PartState::Succeeded)
                }
            }
            Err(error) => self.failure(pp, error, false),
        };
        finish.ran = started;
        finish
    }

    /// Runs process part `node` in a worker, with retries under
    /// [`ErrorMode::Retry`] (each attempt on a live worker).
    pub(super) fn execute_in_process(&self, node: u32, input: &Input) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let part = &pp.part;
        let started =
            (self.options.stats || self.options.trace).then(|| (Instant::now(), thread_number()));
        let failed = |message: String| PartError::Failed {
            part: part.name.to_string(),
            coord: pp.coord,
            message,
        };
        let handle = match (&part.work, &self.processes) {
            (Work::Function(f), Some(runner)) => f.as_handle().map(|handle| (handle, runner)),
            _ => None,
        };
        // Rejected when the cycle was built; kept total for safety.
        let Some((handle, runner)) = handle else {
            let mut finish = self.failure(pp, failed("not a function handle".to_owned()), false);
            finish.ran = started;
            return finish;
        };
        // (error, retryable, timed out)
        let attempt = |_: u32| -> Result<Value, (PartError, bool, bool)> {
            if let (Some(check), Input::Value(value)) = (&part.input_validator, input) {
                check(value).map_err(|reason| {
                    let e = PartError::Invalid {
                        part: part.name.to_string(),
                        coord: pp.coord,
                        which: "input",
                        reason,
                    };
                    (e, true, false)
                })?;
            }
            let value = runner
                .call(&part.placement, handle, input, part.timeout)
                .map_err(|e| match e {
                    sk_process::WorkerError::TimedOut { after, .. } => (
                        PartError::TimedOut {
                            part: part.name.to_string(),
                            coord: pp.coord,
                            after,
                        },
                        true,
                        true,
                    ),
                    other => (failed(error_chain(&other)), other.is_retryable(), false),
                })?;
            if let Some(check) = &part.validator {
                check(&value).map_err(|reason| {
                    let e = PartError::Invalid {
                        part: part.name.to_string(),
                        coord: pp.coord,
                        which: "output",
                        reason,
                    };
                    (e, true, false)
                })?;
            }
            Ok(value)
        };
        let result = if part.error_mode == ErrorMode::Retry {
            let policy = part.retry.clone().unwrap_or_default();
            let mut rng = fastrand::Rng::new();
            let classify = |(_, retryable, _): &(PartError, bool, bool)| Retry::from(*retryable);
            policy
                .run(&SystemClock, &mut rng, classify, |a| attempt(a.number))
                .map_err(|e| {
                    e.into_last_error().unwrap_or_else(|| {
                        (
                            failed("the retry policy allowed no attempt".to_owned()),
                            false,
                            false,
                        )
                    })
                })
        } else {
            attempt(1)
        };
        let mut finish = match result {
            Ok(value) => Finish {
                output: (!value.is::<()>()).then(|| Arc::new(value)),
                ..Finish::new(PartState::Succeeded)
            },
            Err((error, _, timed_out)) => self.failure(pp, error, timed_out),
        };
        finish.ran = started;
        finish
    }

    /// The end of a timed part whose deadline passed first.
    pub(super) fn timed_out(&self, node: u32, limit: Duration, started: Instant) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let error = PartError::TimedOut {
            part: pp.part.name.to_string(),
            coord: pp.coord,
            after: limit,
        };
        let mut finish = self.failure(pp, error, true);
        finish.ran = (self.options.stats || self.options.trace).then(|| (started, thread_number()));
        finish
    }

    /// What the part's error mode makes of `error`.
    fn failure(&self, pp: &PlanPart, error: PartError, timed_out: bool) -> Finish {
        let failed = if timed_out {
            PartState::TimedOut
        } else {
            PartState::Failed
        };
        let error = Some(Arc::new(error));
        let mode = pp.part.error_mode;
        match (mode, &pp.part.fallback) {
            (ErrorMode::FallbackFail | ErrorMode::FallbackSkip, Some(fallback)) => {
                let value = fallback();
                let output = (!value.is::<()>()).then(|| Arc::new(value));
                Finish {
                    output,
                    error,
                    error_state: mode == ErrorMode::FallbackFail,
                    ..Finish::new(PartState::SucceededWithFallback)
                }
            }
            (ErrorMode::Skip, _) => Finish {
                error,
                poison: poison::SKIPPED,
                ..Finish::new(failed)
            },
            (ErrorMode::Propagate, _) => Finish {
                error,
                ..Finish::new(failed)
            },
            (ErrorMode::InstantFail, _) => Finish {
                error,
                poison: poison::UPSTREAM_FAILED,
                error_state: true,
                instant_fail: true,
                ..Finish::new(failed)
            },
            // Clean fail, retry (attempts used up), and a fallback mode
            // without a fallback value (rejected when the cycle is built).
            _ => Finish {
                error,
                poison: poison::UPSTREAM_FAILED,
                error_state: true,
                ..Finish::new(failed)
            },
        }
    }

    /// Records stats and a trace event for a part that ran.
    pub(super) fn observe(&self, node: u32, iteration: u64, finish: &Finish) {
        let Some((started, tid)) = finish.ran else {
            return;
        };
        let elapsed = started.elapsed();
        if self.options.stats {
            self.stats[node as usize].lock().record(elapsed);
        }
        if self.options.trace {
            let pp = &self.plan.parts[node as usize];
            let event = TraceEvent {
                name: pp.part.name.to_string(),
                coord: pp.coord,
                lane: pp.lane,
                iteration,
                tid,
                start: started.saturating_duration_since(self.epoch),
                duration: elapsed,
                state: finish.state,
            };
            self.trace.lock().push(event);
        }
    }
}
