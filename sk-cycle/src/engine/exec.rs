//! Running one part: its context, retries, validators, panics, and what
//! its error mode makes of a failure.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sk_core::Execute as _;
use sk_core::{
    BoxError, Permanent, Retry, StopToken, SystemClock, Value, error_chain, panic_message,
};

use super::timing::Started;
use super::{NodeRt, Plain, Poison, Runtime, Step};
use crate::context::{Input, PartContext};
use crate::error::PartError;
use crate::mode::{ErrorMode, PartState};
use crate::part::{PartFn, ValidatorFn, Work};
use crate::plan::PlanPart;

/// How a node ended, as handed to [`Runtime::complete`].
pub(crate) struct Finish {
    pub(crate) state: PartState,
    pub(crate) output: Option<Arc<Value>>,
    pub(crate) error: Option<Arc<PartError>>,
    /// What the node passes to its data successors.
    pub(crate) poison: Poison,
    pub(crate) error_state: bool,
    pub(crate) instant_fail: bool,
    /// Whether the node holds a gate permit to give back.
    pub(crate) gated: bool,
    /// When it started running, and on which thread (for stats and trace).
    pub(crate) ran: Option<Started>,
    /// Attempts beyond the first it took (for the trace).
    pub(crate) retries: u32,
    /// The worker process it ran in (0: this process).
    pub(crate) pid: u32,
    /// Its end was replayed from the run's journal (not run again).
    pub(crate) replayed: bool,
}

impl Finish {
    fn new(state: PartState) -> Self {
        Finish {
            state,
            output: None,
            error: None,
            poison: Poison::None,
            error_state: false,
            instant_fail: false,
            gated: false,
            ran: None,
            retries: 0,
            pid: 0,
            replayed: false,
        }
    }

    /// A barrier node: no state.
    pub(crate) fn barrier() -> Self {
        Finish::new(PartState::Succeeded)
    }

    /// A part that did not run, ending in `state`.
    pub(crate) fn resolved(state: PartState, poison: Poison) -> Self {
        Finish {
            poison,
            ..Finish::new(state)
        }
    }

    /// A part that did not run because a data parent did not provide.
    pub(crate) fn poisoned(poison: Poison) -> Self {
        let state = match poison {
            Poison::NotTaken => PartState::NotTaken,
            Poison::Skipped => PartState::Skipped,
            Poison::None | Poison::UpstreamFailed => PartState::UpstreamFailed,
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
            poison: Poison::UpstreamFailed,
            error_state: true,
            ..Finish::new(PartState::Failed)
        }
    }

    pub(crate) fn gated(mut self, gated: bool) -> Self {
        self.gated = gated;
        self
    }
}

/// A failed attempt: the error, whether a retry could help, and whether
/// it was a timeout.
struct Failure {
    error: PartError,
    retryable: bool,
    timed_out: bool,
}

impl Failure {
    fn new(error: PartError, retryable: bool) -> Self {
        Failure {
            error,
            retryable,
            timed_out: false,
        }
    }

    /// Part `pp` did not answer within `after` (a retry may).
    fn timed_out(pp: &PlanPart, after: Duration) -> Self {
        Failure {
            error: PartError::TimedOut {
                part: pp.part.name.to_string(),
                coord: pp.coord,
                after,
            },
            retryable: true,
            timed_out: true,
        }
    }
}

fn failed(pp: &PlanPart, message: String) -> PartError {
    PartError::Failed {
        part: pp.part.name.to_string(),
        coord: pp.coord,
        message,
    }
}

/// What a part's work returned, or its panic, as an attempt's outcome: a
/// [`Permanent`] error is not worth retrying.
fn caught(
    pp: &PlanPart,
    outcome: std::thread::Result<Result<Value, BoxError>>,
) -> Result<Value, Failure> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            let retryable = !error.is::<Permanent>();
            Err(Failure::new(failed(pp, error_chain(&*error)), retryable))
        }
        Err(payload) => {
            let panicked = PartError::Panicked {
                part: pp.part.name.to_string(),
                coord: pp.coord,
                message: panic_message(&*payload),
            };
            Err(Failure::new(panicked, true))
        }
    }
}

/// Runs `validator` on `value`; a rejection fails the attempt.
fn check_value(
    pp: &PlanPart,
    validator: &Option<Arc<ValidatorFn>>,
    value: &Value,
    which: &'static str,
) -> Result<(), Failure> {
    match validator {
        Some(check) => check(value).map_err(|reason| {
            let invalid = PartError::Invalid {
                part: pp.part.name.to_string(),
                coord: pp.coord,
                which,
                reason,
            };
            Failure::new(invalid, true)
        }),
        None => Ok(()),
    }
}

/// Runs the input validator on the part's input value, if any.
fn check_input(pp: &PlanPart, input: &Input) -> Result<(), Failure> {
    match input {
        Input::Value(value) => check_value(pp, &pp.part.settings().input_validator, value, "input"),
        _ => Ok(()),
    }
}

/// Runs the output validator.
fn check_output(pp: &PlanPart, value: &Value) -> Result<(), Failure> {
    check_value(pp, &pp.part.settings().validator, value, "output")
}

/// The span of one run of a part, entered — only when TRACE is on for
/// somebody (one relaxed load otherwise: no span made, entered or dropped
/// per part).
#[inline]
fn part_span(pp: &PlanPart, iteration: u64) -> Option<tracing::span::EnteredSpan> {
    tracing::level_enabled!(tracing::Level::TRACE).then(|| {
        tracing::trace_span!("part", name = %pp.part.name, coord = %pp.coord, iteration).entered()
    })
}

/// Runs `f` in [`part_span`], with no span to drop on the fast path.
#[inline(always)]
fn in_part_span<R>(pp: &PlanPart, iteration: u64, f: impl FnOnce() -> R) -> R {
    if tracing::level_enabled!(tracing::Level::TRACE) {
        let _part = part_span(pp, iteration);
        f()
    } else {
        f()
    }
}

/// Runs `attempt` once, or under [`ErrorMode::Retry`] by the part's retry
/// policy, its overall deadline shortened to `deadline` when given;
/// counts the retries in `retries`.
fn with_retries(
    pp: &PlanPart,
    deadline: Option<Duration>,
    retries: &AtomicU64,
    mut attempt: impl FnMut(u32) -> Result<Value, Failure>,
) -> Result<Value, Failure> {
    if pp.part.error_mode != ErrorMode::Retry {
        return attempt(1);
    }
    let mut policy = pp.part.settings().retry.clone().unwrap_or_default();
    if let Some(limit) = deadline {
        let limit = policy.deadline_value().map_or(limit, |d| d.min(limit));
        policy = policy.deadline(limit);
    }
    let mut rng = fastrand::Rng::new();
    let classify = |f: &Failure| Retry::from(f.retryable);
    policy
        .run(&SystemClock, &mut rng, classify, |a| {
            if a.number > 1 {
                retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(part = %pp.part.name, coord = %pp.coord, attempt = a.number, "retrying");
            }
            attempt(a.number)
        })
        .map_err(|e| {
            e.into_last_error().unwrap_or_else(|| {
                Failure::new(
                    failed(pp, "the retry policy allowed no attempt".to_owned()),
                    false,
                )
            })
        })
}

impl Runtime {
    fn context<'a>(
        &'a self,
        node: u32,
        input: &'a Input,
        env: &'a super::Env<'a>,
        stop: &'a StopToken,
        iteration: u64,
        attempt: u32,
    ) -> PartContext<'a> {
        PartContext {
            node,
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
        if part.split_conditions().is_empty() && part.part.settings().condition.is_none() {
            return true;
        }
        let env = self.env(part.lane);
        let iteration = self.lanes[part.lane as usize]
            .iteration
            .load(Ordering::Relaxed);
        let ctx = self.context(node, input, &env, &self.cancel, iteration, 1);
        let check = || {
            part.split_conditions()
                .iter()
                .chain(part.part.settings().condition.as_ref())
                .all(|cond| cond(&ctx))
        };
        // A panicking condition counts as false: the subtree is not taken.
        panic::catch_unwind(AssertUnwindSafe(check)).unwrap_or(false)
    }

    /// Runs a plain part (see [`PlanPart::plain`]): no validator, retry,
    /// condition, gate, component, timeout or process to consider.
    ///
    /// It reads the node's line, not its [`PlanPart`] (but for its
    /// coordinate's address, and on errors).
    #[inline(always)]
    pub(super) fn execute_plain(&self, node: u32, n: &NodeRt, work: &PartFn) -> Step {
        let input = self.plain_input(node, n);
        let iteration = self.lanes[n.lane as usize]
            .iteration
            .load(Ordering::Relaxed);
        let started = self.start_clock(node, n.lane, iteration);
        let env = self.env(n.lane);
        let pp = &self.plan.parts[node as usize];
        let ctx = self.context(node, &input, &env, &self.cancel, iteration, 1);
        // The work's outcome (a large `Value` inline) is made small, an
        // `Arc` or an error's box, in the frame that got it: what crosses
        // the unwinding boundary and comes back here is a few words, not
        // copies of the whole.
        let call = || panic::catch_unwind(AssertUnwindSafe(|| work(&ctx).map(|v| v.map(Arc::new))));
        // A journaled run (which `detour` covers) notes the part's store
        // writes, and a part span is made where TRACE is on; otherwise
        // nothing is wrapped around the call.
        let outcome = if self.detour.load(Ordering::Relaxed)
            || tracing::level_enabled!(tracing::Level::TRACE)
        {
            self.detoured(pp, node, iteration, call)
        } else {
            call()
        };
        match outcome {
            // The common end, made here: no `()` value, no checks.
            Ok(Ok(output)) if started.is_none() => Step::Plain(Plain { output }),
            // A timed run: its stats are taken here; a traced one takes
            // the general path (its trace event has its end state).
            Ok(Ok(output)) if !self.options.trace => {
                self.observe_run(node, iteration, started);
                Step::Plain(Plain { output })
            }
            Ok(Ok(output)) => Step::Done(Finish {
                output,
                ran: started,
                ..Finish::new(PartState::Succeeded)
            }),
            Ok(Err(error)) => Step::Done(self.finish_with(pp, caught(pp, Ok(Err(error))), started)),
            Err(panic) => Step::Done(self.finish_with(pp, caught(pp, Err(panic)), started)),
        }
    }

    /// Makes `call`, plain part `node`'s run in `iteration`, in its part
    /// span and noting its store writes (see
    /// [`execute_plain`](Self::execute_plain)). Out of line: the frame
    /// of the loop that runs plain parts stays small (nested joins stack
    /// them).
    #[inline(never)]
    fn detoured<R>(&self, pp: &PlanPart, node: u32, iteration: u64, call: impl FnOnce() -> R) -> R {
        in_part_span(pp, iteration, || self.attributed(node, call))
    }

    /// Runs part `node` to its end on the calling thread.
    pub(super) fn execute(
        &self,
        node: u32,
        input: &Input,
        stop: &StopToken,
        iteration: u64,
    ) -> Finish {
        let lane = self.plan.parts[node as usize].lane;
        let started = self.start_clock(node, lane, iteration);
        self.execute_clocked(node, input, stop, iteration, started)
    }

    /// [`execute`](Self::execute) with its clock already started (or not).
    pub(super) fn execute_clocked(
        &self,
        node: u32,
        input: &Input,
        stop: &StopToken,
        iteration: u64,
        started: Option<Started>,
    ) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let part = &pp.part;
        let _part = part_span(pp, iteration);
        let env = self.env(pp.lane);
        if let Err(error) = self.intend(node, iteration) {
            return self.finish_with(pp, Err(Failure::new(error, false)), started);
        }
        let mut attempts = 0;
        let result = self.attributed(node, || {
            with_retries(
                pp,
                part.settings().timeout,
                &self.cold[node as usize].retries,
                |number| {
                    attempts = number;
                    check_input(pp, input)?;
                    let ctx = self.context(node, input, &env, stop, iteration, number);
                    let value = caught(
                        pp,
                        panic::catch_unwind(AssertUnwindSafe(|| match &part.work {
                            Work::Context(f) => {
                                f(&ctx).map(|v| v.unwrap_or_else(|| Value::new(())))
                            }
                            // A function has no context: its code asks for the
                            // part with `current_part`.
                            Work::Function(f) => {
                                super::enter(self, pp.lane, node, iteration, number, || {
                                    match f.as_handle() {
                                        Some(handle) => handle
                                            .execute_value_with(&crate::process::input_args(
                                                handle, input,
                                            ))
                                            .map_err(BoxError::from),
                                        None => f.execute_value().map_err(BoxError::from),
                                    }
                                })
                            }
                        })),
                    )?;
                    check_output(pp, &value)?;
                    Ok(value)
                },
            )
        });
        let mut finish = self.finish_with(pp, result, started);
        finish.retries = attempts.saturating_sub(1);
        finish
    }

    /// Runs process part `node` in a worker, with retries under
    /// [`ErrorMode::Retry`] (each attempt on a live worker; the part's
    /// timeout bounds each attempt, where the worker is killed).
    pub(super) fn execute_in_process(&self, node: u32, input: &Input) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let part = &pp.part;
        let iteration = self.iteration_of(node);
        let started = self.start_clock(node, pp.lane, iteration);
        let _part = part_span(pp, iteration);
        let handle = match (&part.work, &self.processes) {
            (Work::Function(f), Some(runner)) => f.as_handle().map(|handle| (handle, runner)),
            _ => None,
        };
        // Rejected when the cycle was built; kept total for safety.
        let Some((handle, runner)) = handle else {
            let error = failed(pp, "not a function handle".to_owned());
            return self.finish_with(pp, Err(Failure::new(error, false)), started);
        };
        if let Err(error) = self.intend(node, iteration) {
            return self.finish_with(pp, Err(Failure::new(error, false)), started);
        }
        let mut pid = 0;
        let mut attempts = 0;
        let env = self.env(pp.lane);
        let result = self.attributed(node, || {
            with_retries(pp, None, &self.cold[node as usize].retries, |number| {
                attempts = number;
                check_input(pp, input)?;
                // The function's reads of its run come here as questions.
                let asker = crate::ask::Asker {
                    env: &env,
                    part: &part.name,
                    coord: pp.coord,
                    iteration,
                    attempt: number,
                };
                let options = sk_process::CallOptions::new()
                    .timeout(part.settings().timeout)
                    .output(self.output_format());
                let value = runner
                    .call(
                        &part.placement,
                        handle,
                        input,
                        options,
                        &mut pid,
                        &mut |question| asker.answer(question),
                    )
                    .map_err(|e| match e {
                        sk_process::WorkerError::TimedOut { after, .. } => {
                            Failure::timed_out(pp, after)
                        }
                        other => {
                            Failure::new(failed(pp, error_chain(&other)), other.is_retryable())
                        }
                    })?;
                check_output(pp, &value)?;
                Ok(value)
            })
        });
        let mut finish = self.finish_with(pp, result, started);
        finish.pid = pid;
        finish.retries = attempts.saturating_sub(1);
        finish
    }

    /// The call of attempt `attempt` of remote part `node`, or why there
    /// is none.
    fn remote_call(
        &self,
        node: u32,
        input: &Input,
        iteration: u64,
        attempt: u32,
    ) -> Result<(&Arc<dyn crate::RemoteRunner>, crate::RemoteCall), Failure> {
        let pp = &self.plan.parts[node as usize];
        let part = &pp.part;
        let call = match (&part.work, &part.placement, &self.remote) {
            (Work::Function(f), crate::Placement::Remote(group), Some((runner, run))) => f
                .as_handle()
                .map(|handle| (handle, group.as_str(), runner, run)),
            _ => None,
        };
        // Rejected when the cycle was built or started; kept total.
        let Some((handle, group, runner, run)) = call else {
            let error = failed(pp, "not a function handle on a remote group".to_owned());
            return Err(Failure::new(error, false));
        };
        check_input(pp, input)?;
        let call = crate::RemoteCall::new(
            Arc::clone(run),
            Arc::clone(&self.cycle),
            group,
            Arc::clone(&part.name),
            iteration,
            attempt,
            handle.clone(),
            crate::process::input_args(handle, input),
        )
        .timeout(part.settings().timeout)
        .output(self.output_format())
        .stop(self.cancel.clone());
        Ok((runner, call))
    }

    /// What a remote attempt's end makes of the part's attempt.
    fn remote_result(
        &self,
        pp: &PlanPart,
        result: Result<Value, crate::RemoteFailure>,
    ) -> Result<Value, Failure> {
        let part = &pp.part;
        let value = result.map_err(|e| match e {
            crate::RemoteFailure::TimedOut { after } => Failure::timed_out(pp, after),
            other => {
                let retryable = other.is_retryable();
                let group = match &part.placement {
                    crate::Placement::Remote(group) => group.as_str(),
                    _ => "",
                };
                Failure::new(
                    failed(pp, format!("on remote group \"{group}\": {other}")),
                    retryable,
                )
            }
        })?;
        check_output(pp, &value)?;
        Ok(value)
    }

    /// The end of remote part `node` whose attempts gave `result`.
    fn remote_finish(
        &self,
        pp: &PlanPart,
        result: Result<Value, Failure>,
        started: Option<Started>,
        attempts: u32,
    ) -> Finish {
        if result.is_err() && self.abort.load(std::sync::atomic::Ordering::Acquire) {
            // Given up on as an instant fail stopped the run.
            return Finish {
                ran: started,
                ..Finish::resolved(PartState::Cancelled, super::Poison::None)
            };
        }
        let mut finish = self.finish_with(pp, result, started);
        finish.retries = attempts.saturating_sub(1);
        finish
    }

    /// Runs part `node` on its remote group through the run's remote
    /// runner, one attempt at a time (the part's retry policy between),
    /// waiting on this thread.
    pub(super) fn execute_remote(&self, node: u32, input: &Input) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let iteration = self.iteration_of(node);
        let started = self.start_clock(node, pp.lane, iteration);
        let _part = part_span(pp, iteration);
        if let Err(error) = self.intend(node, iteration) {
            return self.finish_with(pp, Err(Failure::new(error, false)), started);
        }
        let mut attempts = 0;
        let result = with_retries(pp, None, &self.cold[node as usize].retries, |number| {
            attempts = number;
            let (runner, call) = self.remote_call(node, input, iteration, number)?;
            self.remote_result(pp, crate::remote::call_and_wait(&**runner, call))
        });
        self.remote_finish(pp, result, started, attempts)
    }

    /// Sends part `node`'s one attempt to its remote group and returns;
    /// the part completes when the runner calls back.
    pub(super) fn submit_remote(self: &Arc<Self>, node: u32, input: &Input, gated: bool) {
        let pp = &self.plan.parts[node as usize];
        let iteration = self.iteration_of(node);
        let started = self.start_clock(node, pp.lane, iteration);
        let sent = self
            .intend(node, iteration)
            .map_err(|error| Failure::new(error, false))
            .and_then(|()| self.remote_call(node, input, iteration, 1));
        let (runner, call) = match sent {
            Ok(sent) => sent,
            Err(failure) => {
                let finish = self.remote_finish(pp, Err(failure), started, 1);
                self.complete_from_outside(node, finish.gated(gated));
                return;
            }
        };
        let this = self.hold();
        runner.submit(
            call,
            Box::new(move |result| {
                let pp = &this.plan.parts[node as usize];
                let result = this.remote_result(pp, result);
                let finish = this.remote_finish(pp, result, started, 1);
                this.complete_from_outside(node, finish.gated(gated));
            }),
        );
    }

    /// The end of a part whose attempts gave `result`.
    fn finish_with(
        &self,
        pp: &PlanPart,
        result: Result<Value, Failure>,
        started: Option<Started>,
    ) -> Finish {
        let mut finish = match result {
            Ok(value) => Finish {
                output: (!pp.part.unit_output && !value.is::<()>()).then(|| Arc::new(value)),
                ..Finish::new(PartState::Succeeded)
            },
            Err(f) => self.failure(pp, f.error, f.timed_out),
        };
        finish.ran = started;
        finish
    }

    /// The end of a timed part whose deadline passed first.
    pub(super) fn timed_out(&self, node: u32, limit: Duration, clock: Option<Started>) -> Finish {
        let pp = &self.plan.parts[node as usize];
        let error = PartError::TimedOut {
            part: pp.part.name.to_string(),
            coord: pp.coord,
            after: limit,
        };
        let mut finish = self.failure(pp, error, true);
        // Timed (stats or trace) only when its own start said so: an
        // untimed run's countdown is not its sample.
        finish.ran = clock;
        finish
    }

    /// What the part's error mode makes of `error`.
    pub(super) fn failure(&self, pp: &PlanPart, error: PartError, timed_out: bool) -> Finish {
        let failed = if timed_out {
            tracing::warn!(part = %pp.part.name, coord = %pp.coord, error = %error, "part timed out");
            PartState::TimedOut
        } else {
            tracing::debug!(part = %pp.part.name, coord = %pp.coord, error = %error, "part failed");
            PartState::Failed
        };
        let error = Some(Arc::new(error));
        let mode = pp.part.error_mode;
        match (mode, &pp.part.settings().fallback) {
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
                poison: Poison::Skipped,
                ..Finish::new(failed)
            },
            (ErrorMode::Propagate, _) => Finish {
                error,
                ..Finish::new(failed)
            },
            (ErrorMode::InstantFail, _) => Finish {
                error,
                poison: Poison::UpstreamFailed,
                error_state: true,
                instant_fail: true,
                ..Finish::new(failed)
            },
            // Clean fail, retry (attempts used up), and a fallback mode
            // without a fallback value (rejected when the cycle is built).
            _ => Finish {
                error,
                poison: Poison::UpstreamFailed,
                error_state: true,
                ..Finish::new(failed)
            },
        }
    }
}
