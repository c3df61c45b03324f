//! Rate-limit gates: at most N parts of a scope run at once.
//!
//! A part that finds the gate full is queued instead of blocking a pool
//! thread; the part that leaves hands its permit straight to the next one
//! in the queue.

use std::collections::VecDeque;

use parking_lot::Mutex;

pub(crate) struct Gate {
    limit: usize,
    inner: Mutex<GateState>,
}

struct GateState {
    running: usize,
    waiting: VecDeque<u32>,
}

impl Gate {
    pub(crate) fn new(limit: usize) -> Self {
        Gate {
            limit,
            inner: Mutex::new(GateState {
                running: 0,
                waiting: VecDeque::new(),
            }),
        }
    }

    /// Takes a permit for `node`, or queues it and returns false.
    pub(crate) fn enter(&self, node: u32) -> bool {
        let mut state = self.inner.lock();
        if state.running < self.limit {
            state.running += 1;
            true
        } else {
            state.waiting.push_back(node);
            false
        }
    }

    /// Gives a permit back; returns the queued node that now holds it.
    pub(crate) fn leave(&self) -> Option<u32> {
        let mut state = self.inner.lock();
        match state.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                state.running = state.running.saturating_sub(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_permits_to_queued_nodes_in_order() {
        let gate = Gate::new(2);
        assert!(gate.enter(1));
        assert!(gate.enter(2));
        assert!(!gate.enter(3));
        assert!(!gate.enter(4));
        assert_eq!(gate.leave(), Some(3));
        assert_eq!(gate.leave(), Some(4));
        assert_eq!(gate.leave(), None);
        assert_eq!(gate.leave(), None);
        // Both permits are free again.
        assert!(gate.enter(5));
        assert!(gate.enter(6));
        assert!(!gate.enter(7));
    }
}
