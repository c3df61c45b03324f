//! [`ProcessCommander`]: the process and thread budget, split between the
//! internal (framework) and the external (user) side.
//!
//! The commander starts nothing. Managers draw a slot from their side for
//! every child they run — a process slot for a process worker, a thread
//! slot for a thread worker — and give it back when the child is removed
//! or the manager shuts down. A restarted child keeps its slot.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::BudgetError;
use crate::vocab::{Resource, Side};

/// How many processes and threads may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Worker processes.
    pub processes: usize,
    /// Worker threads.
    pub threads: usize,
}

impl Budget {
    /// A budget of `processes` worker processes and `threads` worker
    /// threads.
    pub const fn new(processes: usize, threads: usize) -> Budget {
        Budget { processes, threads }
    }

    /// How many slots of `resource` the budget holds.
    pub fn get(&self, resource: Resource) -> usize {
        match resource {
            Resource::Processes => self.processes,
            Resource::Threads => self.threads,
        }
    }

    fn get_mut(&mut self, resource: Resource) -> &mut usize {
        match resource {
            Resource::Processes => &mut self.processes,
            Resource::Threads => &mut self.threads,
        }
    }
}

impl Default for Budget {
    /// One process per available core (at least 4, so that small programs
    /// on small machines can supervise a few workers) and four threads per
    /// core (at least 16).
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Budget {
            processes: cores.max(4),
            threads: (cores * 4).max(16),
        }
    }
}

#[derive(Debug)]
struct SideState {
    side: Side,
    limit: Budget,
    used: Mutex<Budget>,
    freed: Condvar,
}

#[derive(Debug)]
struct CommanderInner {
    total: Budget,
    internal: Arc<SideState>,
    external: Arc<SideState>,
}

/// Owns the budget of processes and threads and splits it between the
/// internal (framework) and the external (user) side; each
/// [`ProcessManager`](crate::ProcessManager) draws from one side.
///
/// Clones share the same budget.
///
/// # Examples
///
/// ```
/// use sk_process::{Budget, ProcessCommander, Resource};
///
/// let commander = ProcessCommander::new(Budget::new(8, 32)).split(0.25)?;
/// assert_eq!(commander.internal().limit(), Budget::new(2, 8));
/// assert_eq!(commander.external().limit(), Budget::new(6, 24));
///
/// let slot = commander.internal().try_acquire(Resource::Processes)?;
/// assert_eq!(commander.internal().in_use().processes, 1);
/// drop(slot);
/// assert_eq!(commander.internal().in_use().processes, 0);
/// # Ok::<(), sk_process::BudgetError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ProcessCommander {
    inner: Arc<CommanderInner>,
}

impl ProcessCommander {
    /// A commander of `budget`, split evenly (the external side gets the
    /// odd slot).
    pub fn new(budget: Budget) -> ProcessCommander {
        let internal = Budget::new(budget.processes / 2, budget.threads / 2);
        ProcessCommander::with_split(budget, internal)
    }

    /// The program-wide commander, created on first use with
    /// [`Budget::default`] split evenly.
    pub fn global() -> &'static ProcessCommander {
        static GLOBAL: OnceLock<ProcessCommander> = OnceLock::new();
        GLOBAL.get_or_init(|| ProcessCommander::new(Budget::default()))
    }

    /// The same total budget, with `internal_share` of it (rounded down)
    /// for the internal side and the rest for the external side.
    ///
    /// This makes a new commander; call it before handing the commander
    /// to managers.
    ///
    /// # Errors
    ///
    /// [`BudgetError::InvalidShare`] when `internal_share` is not within
    /// `0.0..=1.0`.
    pub fn split(self, internal_share: f64) -> Result<ProcessCommander, BudgetError> {
        if !(0.0..=1.0).contains(&internal_share) {
            return Err(BudgetError::InvalidShare {
                share: internal_share,
            });
        }
        let total = self.inner.total;
        // In range: the share is within 0..=1, so the product is at most
        // `total`, which is a usize.
        let part = |n: usize| ((n as f64 * internal_share).floor() as usize).min(n);
        let internal = Budget::new(part(total.processes), part(total.threads));
        Ok(ProcessCommander::with_split(total, internal))
    }

    /// The same total budget, with exactly `internal` for the internal side
    /// and the rest for the external side.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Oversplit`] when `internal` asks for more than the
    /// total.
    pub fn split_counts(self, internal: Budget) -> Result<ProcessCommander, BudgetError> {
        let total = self.inner.total;
        for resource in [Resource::Processes, Resource::Threads] {
            if internal.get(resource) > total.get(resource) {
                return Err(BudgetError::Oversplit {
                    resource,
                    asked: internal.get(resource),
                    total: total.get(resource),
                });
            }
        }
        Ok(ProcessCommander::with_split(total, internal))
    }

    fn with_split(total: Budget, internal: Budget) -> ProcessCommander {
        let external = Budget::new(
            total.processes - internal.processes,
            total.threads - internal.threads,
        );
        let side = |side, limit| {
            Arc::new(SideState {
                side,
                limit,
                used: Mutex::new(Budget::new(0, 0)),
                freed: Condvar::new(),
            })
        };
        ProcessCommander {
            inner: Arc::new(CommanderInner {
                total,
                internal: side(Side::Internal, internal),
                external: side(Side::External, external),
            }),
        }
    }

    /// The whole budget.
    pub fn budget(&self) -> Budget {
        self.inner.total
    }

    /// The internal (framework) side.
    pub fn internal(&self) -> BudgetSide {
        self.side(Side::Internal)
    }

    /// The external (user) side.
    pub fn external(&self) -> BudgetSide {
        self.side(Side::External)
    }

    /// One side of the budget.
    pub fn side(&self, side: Side) -> BudgetSide {
        let state = match side {
            Side::Internal => &self.inner.internal,
            Side::External => &self.inner.external,
        };
        BudgetSide {
            state: Arc::clone(state),
        }
    }
}

/// One side of a [`ProcessCommander`]'s budget: what a manager draws its
/// children's slots from. Clones share the same side.
#[derive(Clone, Debug)]
pub struct BudgetSide {
    state: Arc<SideState>,
}

impl BudgetSide {
    /// Which side this is.
    pub fn side(&self) -> Side {
        self.state.side
    }

    /// The side's share of the budget.
    pub fn limit(&self) -> Budget {
        self.state.limit
    }

    /// The slots taken now.
    pub fn in_use(&self) -> Budget {
        *self.state.used.lock()
    }

    /// Takes a slot of `resource` if one is free; it is given back when
    /// the [`BudgetSlot`] is dropped.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Exhausted`] when every slot is taken.
    pub fn try_acquire(&self, resource: Resource) -> Result<BudgetSlot, BudgetError> {
        self.acquire_until(resource, None)
    }

    /// Takes a slot of `resource`, waiting at most `timeout` for one to be
    /// given back.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Exhausted`] when no slot came free in time.
    pub fn acquire_timeout(
        &self,
        resource: Resource,
        timeout: Duration,
    ) -> Result<BudgetSlot, BudgetError> {
        self.acquire_until(resource, Instant::now().checked_add(timeout))
    }

    fn acquire_until(
        &self,
        resource: Resource,
        deadline: Option<Instant>,
    ) -> Result<BudgetSlot, BudgetError> {
        let limit = self.state.limit.get(resource);
        let mut used = self.state.used.lock();
        while used.get(resource) >= limit {
            let timed_out = match deadline {
                Some(deadline) => self.state.freed.wait_until(&mut used, deadline).timed_out(),
                None => true,
            };
            if timed_out && used.get(resource) >= limit {
                return Err(BudgetError::Exhausted {
                    side: self.state.side,
                    resource,
                    limit,
                });
            }
        }
        *used.get_mut(resource) += 1;
        Ok(BudgetSlot {
            state: Arc::clone(&self.state),
            resource,
        })
    }
}

/// A taken budget slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct BudgetSlot {
    state: Arc<SideState>,
    resource: Resource,
}

impl BudgetSlot {
    /// What the slot is for.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// The side the slot was taken from.
    pub fn side(&self) -> Side {
        self.state.side
    }
}

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        let mut used = self.state.used.lock();
        let n = used.get_mut(self.resource);
        *n = n.saturating_sub(1);
        drop(used);
        self.state.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn an_even_split_gives_the_odd_slot_to_the_external_side() {
        let c = ProcessCommander::new(Budget::new(5, 3));
        assert_eq!(c.internal().limit(), Budget::new(2, 1));
        assert_eq!(c.external().limit(), Budget::new(3, 2));
        assert_eq!(c.budget(), Budget::new(5, 3));
    }

    #[test]
    fn shares_and_counts_are_checked() {
        let c = ProcessCommander::new(Budget::new(4, 4));
        for share in [-0.1, 1.5, f64::NAN] {
            let err = c.clone().split(share).unwrap_err();
            assert!(matches!(err, BudgetError::InvalidShare { .. }), "{share}");
        }
        let all = c.clone().split(1.0).unwrap();
        assert_eq!(all.internal().limit(), Budget::new(4, 4));
        assert_eq!(all.external().limit(), Budget::new(0, 0));
        let err = c.clone().split_counts(Budget::new(5, 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the internal side asks for 5 process slots but the budget has 4"
        );
        let exact = c.split_counts(Budget::new(1, 3)).unwrap();
        assert_eq!(exact.external().limit(), Budget::new(3, 1));
    }

    #[test]
    fn a_full_side_refuses_and_a_dropped_slot_is_given_back() {
        let c = ProcessCommander::new(Budget::new(4, 4));
        let side = c.external();
        let a = side.try_acquire(Resource::Processes).unwrap();
        let _b = side.try_acquire(Resource::Processes).unwrap();
        let err = side.try_acquire(Resource::Processes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the external budget is exhausted: all 2 process slots are in use"
        );
        // Threads and the other side are separate.
        let _t = side.try_acquire(Resource::Threads).unwrap();
        let _i = c.internal().try_acquire(Resource::Processes).unwrap();
        drop(a);
        assert_eq!(side.in_use(), Budget::new(1, 1));
        let _c = side.try_acquire(Resource::Processes).unwrap();
    }

    #[test]
    fn a_waiting_acquire_gets_a_slot_given_back_meanwhile() {
        sk_testkit::guarded(|| {
            let c = ProcessCommander::new(Budget::new(0, 2)).split(0.0).unwrap();
            let side = c.external();
            let held = side.try_acquire(Resource::Threads).unwrap();
            let _other = side.try_acquire(Resource::Threads).unwrap();
            let err = side
                .acquire_timeout(Resource::Threads, Duration::from_millis(20))
                .unwrap_err();
            assert!(matches!(err, BudgetError::Exhausted { limit: 2, .. }));
            let giver = thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                drop(held);
            });
            let slot = side
                .acquire_timeout(Resource::Threads, Duration::from_secs(30))
                .unwrap();
            assert_eq!(slot.side(), Side::External);
            giver.join().unwrap();
        })
    }
}
