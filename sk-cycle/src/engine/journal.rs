//! The engine's side of a durable run (see `durable.rs`): a part's end
//! goes to the journal from [`Runtime::record`], the one completion path;
//! a resumed run's recorded ends are replayed from
//! [`Runtime::process`], the one place that decides whether a part runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sk_core::Encoding;

use super::{Finish, Poison, Runtime};
use crate::durable::{Durable, End, Replay};
use crate::error::PartError;
use crate::mode::{ErrorMode, PartState};
use crate::store::collect_writes;

impl Runtime {
    /// The run's journal, when it is durable.
    pub(crate) fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// The format worker processes send outputs back in: the external
    /// one when the run journals them (they are recorded as they came).
    pub(super) fn output_format(&self) -> Encoding {
        if self.durable.is_some() {
            Encoding::External
        } else {
            Encoding::Internal
        }
    }

    /// Runs `f`, part `node`'s work, noting the store writes it makes for
    /// the part's record in a durable run.
    #[inline]
    pub(super) fn attributed<R>(&self, node: u32, f: impl FnOnce() -> R) -> R {
        match &self.durable {
            None => f(),
            Some(durable) => {
                let (result, keys) = collect_writes(f);
                durable.wrote(node, keys);
                result
            }
        }
    }

    /// In a durable run, records (and waits for) the intent of part
    /// `node`, marked [`once`](crate::CyclePart::once), to run.
    ///
    /// # Errors
    ///
    /// The part's error when the intent cannot be committed: it must not
    /// run.
    pub(super) fn intend(&self, node: u32, iteration: u64) -> Result<(), PartError> {
        let pp = &self.plan.parts[node as usize];
        let (Some(durable), true) = (&self.durable, pp.part.once) else {
            return Ok(());
        };
        durable
            .intend(&pp.part.name, pp.lane, iteration)
            .map_err(|e| PartError::Failed {
                part: pp.part.name.to_string(),
                coord: pp.coord,
                message: format!(
                    "its intent to run cannot be journaled, so it does not run: {}",
                    sk_core::error_chain(&e)
                ),
            })
    }

    /// The recorded end of part `node` in its lane's current iteration,
    /// to replay instead of running it.
    #[cold]
    #[inline(never)]
    pub(super) fn replayed(&self, node: u32) -> Option<Finish> {
        let durable = self.durable.as_ref()?;
        let iteration = self.iteration_of(node);
        let replay = durable.take_replay(node, iteration)?;
        self.replay_left.fetch_sub(1, Ordering::Relaxed);
        let pp = &self.plan.parts[node as usize];
        let recorded = |text: Option<String>| PartError::Recorded {
            part: pp.part.name.to_string(),
            coord: pp.coord,
            text: text.unwrap_or_else(|| "failed (no error text was recorded)".to_owned()),
        };
        let mut finish = match replay {
            // Never silently run again: the error mode decides.
            Replay::Unknown => {
                let unknown = PartError::OutcomeUnknown {
                    part: pp.part.name.to_string(),
                    coord: pp.coord,
                };
                return Some(self.failure(pp, unknown, false));
            }
            Replay::Ended {
                state,
                error,
                output,
            } => {
                let output = output.map(Arc::new);
                match state {
                    PartState::Succeeded => Finish {
                        output,
                        ..Finish::resolved(PartState::Succeeded, Poison::None)
                    },
                    PartState::SucceededWithFallback => Finish {
                        output,
                        error: Some(Arc::new(recorded(error))),
                        error_state: pp.part.error_mode == ErrorMode::FallbackFail,
                        ..Finish::resolved(state, Poison::None)
                    },
                    PartState::Failed | PartState::TimedOut => {
                        self.failure(pp, recorded(error), state == PartState::TimedOut)
                    }
                    PartState::NotTaken => Finish::resolved(state, Poison::NotTaken),
                    PartState::Skipped => Finish::resolved(state, Poison::Skipped),
                    PartState::UpstreamFailed | PartState::Cancelled => {
                        Finish::resolved(state, Poison::UpstreamFailed)
                    }
                }
            }
        };
        finish.replayed = true;
        Some(finish)
    }

    /// Sends the end of part `node` to the journal — unless it was itself
    /// replayed, was cancelled (it runs again on resume), or its part is
    /// recomputed on resume.
    pub(super) fn journal_end(&self, durable: &Durable, node: u32, lane: usize, finish: &Finish) {
        let pp = &self.plan.parts[node as usize];
        if finish.replayed || finish.state == PartState::Cancelled || pp.part.recompute {
            durable.forget(node);
            return;
        }
        let end = End {
            lane: u32::try_from(lane).unwrap_or(u32::MAX),
            iteration: self.lanes[lane].iteration.load(Ordering::Relaxed),
            state: finish.state,
            attempts: if finish.state.ran() {
                finish.retries + 1
            } else {
                0
            },
            error: finish.error.as_deref(),
            output: finish.output.as_deref(),
        };
        durable.record(node, &pp.part.name, end);
    }

    /// Records in the journal, if any, that `iteration` of `lane` ended.
    pub(crate) fn iteration_ended(&self, lane: usize, iteration: u64) {
        if let Some(durable) = &self.durable {
            durable.iteration_ended(lane, iteration);
        }
    }
}
