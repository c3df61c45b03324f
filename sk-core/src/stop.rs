//! Cooperative cancellation: [`StopToken`].

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A cheap, cloneable flag that asks work to stop.
///
/// Stopping is cooperative: code polls [`is_stopped`](StopToken::is_stopped)
/// (a single atomic load, fine for hot loops) or blocks in
/// [`wait_timeout`](StopToken::wait_timeout). Clones share one flag. A
/// [`child`](StopToken::child) token is stopped when its parent is, but
/// stopping the child leaves the parent running, so one part of a program can
/// be cancelled without cancelling the rest.
///
/// A token can be made the thread's *current* token with
/// [`enter`](StopToken::enter); code deep in a call stack finds it with
/// [`StopToken::current`] without having it passed down.
///
/// # Examples
///
/// ```
/// use sk_core::StopToken;
///
/// let shutdown = StopToken::new();
/// let worker = shutdown.child();
/// worker.stop();
/// assert!(worker.is_stopped());
/// assert!(!shutdown.is_stopped());
///
/// let other = shutdown.child();
/// shutdown.stop();
/// assert!(other.is_stopped());
/// ```
#[derive(Clone)]
pub struct StopToken {
    inner: Arc<Inner>,
}

struct Inner {
    stopped: AtomicBool,
    /// Held while checking the flag before waiting and while notifying, so a
    /// stop between the check and the wait cannot be missed.
    lock: Mutex<()>,
    wake: Condvar,
    /// Children to stop with this token. Weak, so dropped children are not
    /// kept alive; pruned as the list grows.
    children: Mutex<Vec<Weak<Inner>>>,
}

impl Inner {
    fn new(stopped: bool) -> Self {
        Inner {
            stopped: AtomicBool::new(stopped),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            children: Mutex::new(Vec::new()),
        }
    }

    /// Sets the flag and wakes waiters; returns the children to stop next,
    /// or nothing when this token was already stopped (its children were
    /// stopped then).
    fn stop_one(&self) -> Vec<Weak<Inner>> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Vec::new();
        }
        {
            let _guard = self.lock.lock();
            self.wake.notify_all();
        }
        std::mem::take(&mut *self.children.lock())
    }
}

thread_local! {
    static CURRENT: RefCell<Option<StopToken>> = const { RefCell::new(None) };
}

impl StopToken {
    /// A new token that is not stopped.
    pub fn new() -> Self {
        StopToken {
            inner: Arc::new(Inner::new(false)),
        }
    }

    /// Asks everything holding this token or one of its descendants to stop.
    ///
    /// Idempotent; wakes every [`wait_timeout`](StopToken::wait_timeout)
    /// caller at once.
    pub fn stop(&self) {
        // Iterative, so a deep chain of children cannot overflow the stack.
        let mut pending = self.inner.stop_one();
        while let Some(weak) = pending.pop() {
            if let Some(child) = weak.upgrade() {
                pending.extend(child.stop_one());
            }
        }
    }

    /// Whether this token (or an ancestor) has been stopped.
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// A new token that is stopped when this one is, but whose own
    /// [`stop`](StopToken::stop) does not affect this one.
    ///
    /// A child of an already stopped token starts stopped.
    pub fn child(&self) -> StopToken {
        let child = StopToken::new();
        let mut children = self.inner.children.lock();
        // Checked under the children lock: `stop` sets the flag before it
        // takes the list, so either it sees this child or we see the flag.
        if self.is_stopped() {
            drop(children);
            child.stop();
            return child;
        }
        if children.len() == children.capacity() {
            children.retain(|weak| weak.strong_count() > 0);
        }
        children.push(Arc::downgrade(&child.inner));
        child
    }

    /// Blocks until this token is stopped or `timeout` passes; returns
    /// whether it is stopped.
    ///
    /// Wakes promptly when [`stop`](StopToken::stop) is called (on this
    /// token or an ancestor). A zero timeout just reports the state.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_stopped() {
            return true;
        }
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            // Effectively forever.
            let mut guard = self.inner.lock.lock();
            while !self.is_stopped() {
                self.inner.wake.wait(&mut guard);
            }
            return true;
        };
        let mut guard = self.inner.lock.lock();
        while !self.is_stopped() {
            if self.inner.wake.wait_until(&mut guard, deadline).timed_out() {
                return self.is_stopped();
            }
        }
        true
    }

    /// The token set for this thread by the innermost
    /// [`enter`](StopToken::enter), if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_core::StopToken;
    ///
    /// assert!(StopToken::current().is_none());
    /// let token = StopToken::new();
    /// token.enter(|| {
    ///     let current = StopToken::current().unwrap();
    ///     token.stop();
    ///     assert!(current.is_stopped());
    /// });
    /// assert!(StopToken::current().is_none());
    /// ```
    pub fn current() -> Option<StopToken> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Whether the thread's current token exists and is stopped.
    pub fn current_is_stopped() -> bool {
        CURRENT.with(|current| current.borrow().as_ref().is_some_and(StopToken::is_stopped))
    }

    /// Runs `f` with this token as the thread's current token, restoring the
    /// previous one afterwards, also when `f` panics.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<StopToken>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                // `try_with` fails only while the thread-local is being torn
                // down, when there is nothing left to restore.
                let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }

    /// Whether `self` and `other` are clones of the same token.
    pub fn same_as(&self, other: &StopToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

// A panic cannot leave a token half-updated: the flag is one atomic, and the
// children list is only pushed to or taken whole, so observing it after a
// panic elsewhere is safe.
impl std::panic::UnwindSafe for StopToken {}
impl std::panic::RefUnwindSafe for StopToken {}

impl Default for StopToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StopToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopToken")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

#[cfg(test)]
mod tests;
