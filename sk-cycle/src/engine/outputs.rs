//! What the run reads of its parts' ends: a part's input, its output
//! as another part or a report sees it, its state, error and counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sk_core::Value;

use super::node::{NO_INPUT, NodeRt};
use super::{Env, Runtime, UNIT};
use crate::context::Input;
use crate::error::PartError;
use crate::mode::PartState;

impl Runtime {
    /// [`input_for`](Self::input_for) node `n`, inline where it is none:
    /// no input part, or one in its lane that ended with neither output
    /// nor error (a `()` part).
    #[inline(always)]
    pub(super) fn plain_input(&self, node: u32, n: &NodeRt) -> Input {
        if n.input_from == NO_INPUT {
            return Input::None;
        }
        let from = &self.nodes[n.input_from as usize];
        if from.lane == n.lane
            && !from.has_output.load(Ordering::Acquire)
            && !from.has_error.load(Ordering::Acquire)
        {
            return Input::None;
        }
        self.input_for(node)
    }

    /// The input of part `node`: its input part's output or propagated
    /// error (the latest one, for an input part in another lane).
    #[inline(never)]
    pub(super) fn input_for(&self, node: u32) -> Input {
        let part = &self.nodes[node as usize];
        if part.input_from == NO_INPUT {
            return Input::None;
        }
        let from = part.input_from as usize;
        let n = &self.nodes[from];
        if n.lane != part.lane {
            return match self.latest[from].lock().as_ref() {
                Some(v) if !Arc::ptr_eq(v, &UNIT) => Input::Value(Arc::clone(v)),
                _ => Input::None,
            };
        }
        let state = PartState::from_u8(n.state.load(Ordering::Acquire));
        if n.has_error.load(Ordering::Acquire)
            && matches!(state, Some(PartState::Failed | PartState::TimedOut))
        {
            if let Some(error) = self.cold[from].error.lock().as_ref() {
                return Input::Error(Arc::clone(error));
            }
        }
        // An output of a part that did not succeed this time is an
        // earlier success's (its latest completed output), not an input.
        if n.has_output.load(Ordering::Acquire) && state.is_some_and(PartState::is_success) {
            if let Some(v) = n.output.lock().as_ref() {
                return Input::Value(Arc::clone(v));
            }
        }
        Input::None
    }

    /// The output of part `id` as seen from `lane`.
    pub(crate) fn output(&self, id: u32, lane: u32) -> Option<Arc<Value>> {
        if !self.plan.is_part(id) {
            return None;
        }
        let n = &self.nodes[id as usize];
        if n.lane != lane && !self.latest.is_empty() {
            return self.latest[id as usize].lock().clone();
        }
        let state = PartState::from_u8(n.state.load(Ordering::Acquire))?;
        if !state.is_success() {
            return None;
        }
        if n.has_output.load(Ordering::Acquire) {
            n.output.lock().clone()
        } else {
            Some(Arc::clone(&UNIT))
        }
    }

    /// The latest output part `id` completed with, in whatever iteration.
    pub(crate) fn latest_output(&self, id: u32) -> Option<Arc<Value>> {
        if !self.latest.is_empty() {
            return self.latest[id as usize].lock().clone();
        }
        let n = &self.nodes[id as usize];
        if n.has_output.load(Ordering::Acquire) {
            n.output.lock().clone()
        } else {
            None
        }
    }

    /// Notes that a part ended otherwise than succeeded (see
    /// [`Runtime::part_counts`]).
    #[cold]
    pub(super) fn mark_unusual(&self) {
        self.unusual.store(true, Ordering::Release);
    }

    /// How many iterations part `id` ended in each state so far.
    pub(crate) fn state_counts(&self, id: usize) -> crate::report::StateCounts {
        let (tally, node) = (self.cold[id].tally.get(), &self.nodes[id]);
        crate::report::StateCounts::from_fn(|state| match (state, tally) {
            (PartState::Succeeded, _) => node.succeeded.load(Ordering::Relaxed),
            (_, Some(tally)) => tally.0[state.index()].load(Ordering::Relaxed),
            (_, None) => 0,
        })
    }

    /// The state part `id` last ended in: in its lane's current iteration
    /// once it has ended in it, before that its last iteration's (`None`
    /// before its first end in the run).
    pub(crate) fn state(&self, id: u32) -> Option<PartState> {
        PartState::from_u8(self.nodes[id as usize].state.load(Ordering::Acquire))
    }

    /// The error part `id` ended with, if any.
    pub(crate) fn error(&self, id: u32) -> Option<Arc<PartError>> {
        if self.nodes[id as usize].has_error.load(Ordering::Acquire) {
            self.cold[id as usize].error.lock().clone()
        } else {
            None
        }
    }

    pub(crate) fn env(&self, lane: u32) -> Env<'_> {
        Env { rt: self, lane }
    }
}
